"""End to end: the runner against the loopback simulator's synthetic market, on asyncio and uvloop.

The simulator (engine.sim) is the venue here; the engine's live path never imports it.
Balances are cross-checked against the simulated account: the position and cash the
tracker computed from fills must equal the venue's balance changes exactly.
"""
from __future__ import annotations

import asyncio
import os
import signal
from decimal import Decimal as D

import pytest
import uvloop

from engine.bus import Strategy
from engine.live.runner import RunConfig, RunSummary, run
from engine.orders.signing import Ed25519Signer, HmacSigner
from engine.sim.auth import DEFAULT_API_KEY, DEFAULT_API_SECRET, DEFAULT_ED25519_API_KEY, default_ed25519_private_key
from engine.sim.server import start_simulator
from engine.sim.streams import StreamConnection
from engine.sim.synthetic import SyntheticConfig, SyntheticSource
from strategies.symmetric import SymmetricConfig, SymmetricQuoter

# Tight quotes and a size that trades often on the synthetic market (tick 0.01, step 0.00001).
QUOTER = dict(half_spread_ticks=1, requote_ticks=1, order_qty=D("0.01"), max_position_steps=5000)
START = {"USDT": D(1_000_000), "BTC": D(100)}


@pytest.fixture(params=["asyncio", "uvloop"])
def run_loop(request):
    """Run a coroutine on a fresh loop of each kind, bounded in time."""
    factory = asyncio.new_event_loop if request.param == "asyncio" else uvloop.new_event_loop

    def runner(coro, timeout: float = 60.0):
        with asyncio.Runner(loop_factory=factory) as r:
            return r.run(asyncio.wait_for(coro, timeout))

    return runner


def hmac_signer():
    return HmacSigner(DEFAULT_API_KEY, DEFAULT_API_SECRET)


class Checked(SymmetricQuoter):
    """The quoter, asserting it is only ever handed valid books."""

    def __init__(self, config):
        super().__init__(config)
        self.books = 0
        self.invalid_seen = 0

    def on_book(self, symbol, book):
        self.books += 1
        if not book.valid:
            self.invalid_seen += 1
        super().on_book(symbol, book)


def config(handle, strategy, **kw) -> RunConfig:
    kw.setdefault("signer", hmac_signer())
    kw.setdefault("handle_sigint", False)
    return RunConfig(streams_url=handle.streams_url, ws_api_url=handle.ws_api_url, strategy=strategy,
                     timer_interval_s=0.2, **kw)


def assert_clean(s: RunSummary, handle) -> None:
    ex = handle.exchange
    assert s.orders_sent > 0
    assert s.duplicate_client_order_ids == 0 and ex.duplicate_client_order_ids() == []
    assert s.open_orders_at_exit == 0 and ex.open_order_ids() == [] and s.tracker_open_at_exit == 0
    assert s.orders_acked + s.orders_rejected == s.orders_sent
    assert s.depth_messages > 0 and s.snapshots >= 1 and s.book_invalid_reads == 0 and s.strategy_errors == 0
    assert s.tick_to_order_us.count > 0 and 0 < s.tick_to_order_us.p50 <= s.tick_to_order_us.p99 <= s.tick_to_order_us.max
    # Exact agreement with the venue's account: fills are the only source of position and cash.
    btc = sum(ex.balance("BTC")) - START["BTC"]
    usdt = sum(ex.balance("USDT")) - START["USDT"]
    assert s.position == btc
    assert usdt == (s.pnl - s.position * s.mark_price if s.mark_price is not None else s.pnl)


def test_run_against_simulator_hmac(run_loop):
    async def main():
        handle = await start_simulator(SyntheticSource(SyntheticConfig(seed=7)))
        try:
            strat = Checked(SymmetricConfig(symbol="BTCUSDT", **QUOTER))
            s = await run(config(handle, strat, duration_s=3.0))
            return s, strat, handle
        finally:
            await handle.close()

    s, strat, handle = run_loop(main())
    assert s.end_reason == "duration" and 2.9 < s.duration_s < 10
    assert strat.books > 0 and strat.invalid_seen == 0 and strat.placed == s.orders_sent
    assert_clean(s, handle)
    assert s.cancels > 0 and s.cancel_requests > 0


def test_run_with_ed25519_session_logon_until_the_market_ends(run_loop):
    async def main():
        handle = await start_simulator(SyntheticSource(SyntheticConfig(seed=3), duration_s=2.5))
        try:
            signer = Ed25519Signer(DEFAULT_ED25519_API_KEY, default_ed25519_private_key())
            strat = SymmetricQuoter(SymmetricConfig(symbol="BTCUSDT", **QUOTER))
            s = await run(config(handle, strat, signer=signer, duration_s=20.0, stop_when=handle.ended))
            return s, handle
        finally:
            await handle.close()

    s, handle = run_loop(main())
    assert s.end_reason == "stop_when" and s.duration_s < 10
    assert_clean(s, handle)


def test_gap_is_resynced_and_never_shown(run_loop):
    async def main():
        handle = await start_simulator(SyntheticSource(SyntheticConfig(seed=11)))
        n = {"depth": 0}

        def drop(stream: str, payload: bytes) -> bool:
            # Lose the 8th depth diff: the next one reveals the gap (1.6).
            if "@depth" in stream:
                n["depth"] += 1
                return n["depth"] == 8
            return False

        handle.hub.drop_filter = drop
        try:
            strat = Checked(SymmetricConfig(symbol="BTCUSDT", **QUOTER))
            s = await run(config(handle, strat, duration_s=3.0))
            return s, strat, handle
        finally:
            await handle.close()

    s, strat, handle = run_loop(main())
    assert s.gaps >= 1 and s.book_resyncs >= 1 and s.snapshots >= 2
    assert strat.invalid_seen == 0
    assert_clean(s, handle)


def test_stream_drop_reconnects_and_resyncs(run_loop):
    async def main():
        handle = await start_simulator(SyntheticSource(SyntheticConfig(seed=5)))

        async def cut():
            await asyncio.sleep(1.2)
            for c in handle.hub.connections:
                if isinstance(c, StreamConnection):
                    c.close()

        try:
            strat = Checked(SymmetricConfig(symbol="BTCUSDT", **QUOTER))
            task = asyncio.get_running_loop().create_task(cut())
            s = await run(config(handle, strat, duration_s=3.5))
            await task
            return s, strat, handle
        finally:
            await handle.close()

    s, strat, handle = run_loop(main())
    assert s.reconnects == 1 and s.book_resyncs >= 1 and strat.invalid_seen == 0
    assert_clean(s, handle)


def test_sigint_shuts_down_cleanly(run_loop):
    async def main():
        handle = await start_simulator(SyntheticSource(SyntheticConfig(seed=9)))
        try:
            strat = SymmetricQuoter(SymmetricConfig(symbol="BTCUSDT", **QUOTER))
            loop = asyncio.get_running_loop()
            loop.call_later(1.5, os.kill, os.getpid(), signal.SIGINT)
            s = await run(config(handle, strat, duration_s=30.0, handle_sigint=True))
            return s, handle
        finally:
            await handle.close()

    s, handle = run_loop(main())
    assert s.end_reason == "sigint" and s.duration_s < 10
    assert_clean(s, handle)


def test_restart_never_reuses_client_order_ids(run_loop, tmp_path):
    async def main():
        handle = await start_simulator(SyntheticSource(SyntheticConfig(seed=2)))
        try:
            out = []
            for _ in range(2):
                strat = SymmetricQuoter(SymmetricConfig(symbol="BTCUSDT", **QUOTER))
                out.append(await run(config(handle, strat, duration_s=1.5,
                                            epoch_state_path=str(tmp_path / "epoch"))))
            return out, handle
        finally:
            await handle.close()

    (a, b), handle = run_loop(main())
    assert a.orders_sent > 0 and b.orders_sent > 0
    assert sum(handle.exchange.received_client_order_ids.values()) == a.orders_sent + b.orders_sent
    assert handle.exchange.duplicate_client_order_ids() == []
    assert b.open_orders_at_exit == 0


class Idle(Strategy):
    """Never trades."""


def test_wrong_secret_fails_at_start_without_quoting(run_loop):
    async def main():
        handle = await start_simulator(SyntheticSource(SyntheticConfig(seed=1)))
        try:
            with pytest.raises(Exception) as ei:
                await run(config(handle, Idle(), signer=HmacSigner(DEFAULT_API_KEY, "not-the-secret"),
                                 duration_s=1.0))
            return ei.value, handle
        finally:
            await handle.close()

    err, handle = run_loop(main())
    assert getattr(err, "code", None) == -1022  # INVALID_SIGNATURE (6.1)
    assert handle.exchange.received_client_order_ids == {}
