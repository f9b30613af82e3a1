"""Reconnect with back-off: books resynced and orders reconciled before quoting; rotation without a gap."""
from __future__ import annotations

import asyncio
import random

from failclosed_helpers import (Resting, Timeline, drop_streams_at, drop_ws_api_at, fast_reconnect,  # noqa: F401
                                run_config, run_loop)

from engine.config import ReconnectConfig
from engine.live.runner import run
from engine.live.supervisor import Backoff
from engine.sim.server import start_simulator
from engine.sim.synthetic import SyntheticConfig, SyntheticSource


def test_backoff_is_exponential_capped_and_jittered():
    cfg = ReconnectConfig(initial_ms=100, max_ms=1000, multiplier=2.0, jitter=0.25, max_attempts=6)
    b = Backoff(cfg, random.Random(7))
    delays, gave_up = [], False
    for _ in range(6):
        delays.append(b.next_delay_s())
        gave_up = b.failed()
    nominal = [0.1, 0.2, 0.4, 0.8, 1.0, 1.0]
    for d, n in zip(delays, nominal):
        assert n * 0.75 - 1e-9 <= d <= n + 1e-9
    assert delays[3] > delays[0] and len(set(delays)) == 6  # jittered: no two alike
    assert gave_up and b.failures == 6
    b.reset()
    assert b.failures == 0 and b.next_delay_s() <= 0.1
    # No jitter: exactly the nominal schedule.
    b0 = Backoff(ReconnectConfig(initial_ms=100, max_ms=1000, jitter=0.0), random.Random(1))
    seq = []
    for _ in range(5):
        seq.append(b0.next_delay_s())
        b0.failed()
    assert seq == [0.1, 0.2, 0.4, 0.8, 1.0]


def _phases_respected(tl: Timeline, strat: Resting) -> None:
    """Every order placed after a disconnect was placed after the halt was lifted, which came after
    the cancel-all was confirmed and after the resync (market data) / reconciliation (trading)."""
    halted = tl.times("halted")
    resumed = tl.times("resumed")
    for td, kind, reason in [(t, k, p) for t, k, p in tl.items if k == "disconnect"]:
        # The first resume after the disconnect...
        after = [t for t in resumed if t > td]
        assert after, f"never resumed after {reason}"
        r = after[0]
        # ... came after the confirmed cancel-all and after the resync or reconciliation.
        confirms = [t for t, k, p in tl.items if k == "cancel_all_confirmed" and td <= t <= r]
        assert confirms, f"no confirmed cancel-all between {reason} and the resume"
        if "stream" in reason:
            assert [t for t in tl.times("resynced") if td < t <= r], f"resumed without a resync after {reason}"
        else:
            assert [t for t, k, p in tl.items if k == "reconciled" and p.reason == "reconnect" and td < t <= r], \
                f"resumed without a reconciliation after {reason}"
        # Nothing was placed between the disconnect and that resume.
        assert not [t for t, *_ in strat.placements if td <= t < r]
    assert len(halted) >= 1
    assert all(valid and not h and ready for _t, _c, valid, h, ready in strat.placements)


def test_reconnects_resync_and_reconcile_before_quoting(run_loop):
    async def main():
        handle = await start_simulator(SyntheticSource(SyntheticConfig(seed=41)))
        tl = Timeline(handle.exchange)
        strat = Resting()
        loop = asyncio.get_running_loop()
        try:
            tasks = [loop.create_task(drop_streams_at(handle, 1.2)),
                     loop.create_task(drop_ws_api_at(handle, 2.6)),
                     # Both at once: market data and trading lost together.
                     loop.create_task(drop_streams_at(handle, 4.0)),
                     loop.create_task(drop_ws_api_at(handle, 4.0))]
            s = await run(run_config(handle, strat, duration_s=6.5, observer=tl))
            dropped = [await t for t in tasks]
            return s, strat, tl, handle, dropped
        finally:
            await handle.close()

    s, strat, tl, handle, dropped = run_loop(main(), timeout=90)
    assert dropped == [1, 1, 1, 1]
    assert s.disconnects == 4 and s.cancel_all_on_disconnect == 4
    assert s.reconnects >= 2 and s.ws_api_reconnects == 2 and len(s.reconciliations) == 3
    assert s.book_resyncs >= 2 and len(tl.times("resynced")) == 2
    # Each reconnect waited its back-off (initial 100 ms, jitter 20 %).
    attempts = tl.of("reconnect_attempt")
    assert attempts and all(0.08 - 1e-9 <= d <= 0.8 for _name, d in attempts)
    assert [n for k, _r, n in tl.open_at_confirm if k == "disconnect"] == [0, 0, 0, 0]
    _phases_respected(tl, strat)
    # Quoting resumed after the last incident.
    assert [t for t, *_ in strat.placements if t > tl.times("resumed")[-1]]
    assert s.strategy_calls_on_invalid_book == 0 and strat.invalid_books_seen == 0
    assert s.unhandled_exceptions == 0 and s.stop_clean and handle.exchange.open_order_ids() == []
    assert handle.exchange.duplicate_client_order_ids() == []


def test_rotation_ahead_of_the_age_limit_has_no_quoting_gap(run_loop):
    async def main():
        handle = await start_simulator(SyntheticSource(SyntheticConfig(seed=42)))
        tl = Timeline(handle.exchange)
        # About 5 orders a second: well inside the venue's 50 per 10 s (the limiter would hold more back).
        strat = Resting(n=2, churn_s=0.4)
        try:
            s = await run(run_config(handle, strat, duration_s=5.6, observer=tl,
                                     reconnect=fast_reconnect(max_connection_age_ms=1500)))
            return s, strat, tl, handle
        finally:
            await handle.close()

    s, strat, tl, handle = run_loop(main(), timeout=60)
    rotated = tl.of("rotated")
    assert rotated.count("streams") >= 2 and rotated.count("ws-api") >= 2 and s.rotations == len(rotated)
    # A rotation is not a disconnect: no halt, no cancel-all, the orders stayed on the venue.
    assert s.disconnects == 0 and s.halted_ms == 0
    assert [r for r in tl.of("halted") if not r.startswith("start")] == []
    assert [c.kind for c in s.cancel_alls] == ["stop"]
    # Quoting went on across every swap: orders placed after the last one (the new connection's
    # book and session in use), and never a pause much longer than the strategy's own churn.
    last = max(t for t, k, _ in tl.items if k == "rotated")
    times = [t for t, *_ in strat.placements]
    assert [t for t in times if t > last] and all(valid for _t, _c, valid, _h, _r in strat.placements)
    # The strategy is still called on every diff of the new connection's book.
    assert len([t for t in strat.books if t > last + 0.2]) >= 2
    assert max(b - a for a, b in zip(strat.books, strat.books[1:])) < 1.0
    assert max(b - a for a, b in zip(times, times[1:])) < 1.2
    assert s.strategy_calls_on_invalid_book == 0 and s.unhandled_exceptions == 0
    assert s.snapshots >= 3  # each new stream connection synced its own book before the swap
    assert s.stop_clean and handle.exchange.open_order_ids() == []
