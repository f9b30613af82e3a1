"""The synthetic market: deterministic, never crossed, Binance's shapes and sequencing.

Shapes and key order: spot ``web-socket-streams.md`` payload examples
(venue-protocols.md 1.2 for depthUpdate); sequencing: 1.6 (``U == previous u + 1``).
"""
from __future__ import annotations

import asyncio
import time
from collections import Counter
from decimal import Decimal
from itertools import islice

import msgspec
import pytest
import uvloop

from engine.sim.market import (AGG_TRADE, BOOK_TICKER, DEPTH, LEVEL, SNAPSHOT, TRADE, VenueMarket, run_source)
from engine.sim.synthetic import SyntheticConfig, SyntheticSource

START_MS = 1_723_161_600_000  # 2024-08-09 00:00:00 UTC


def source(seed: int = 7, duration_s: float | None = 20.0, **cfg) -> SyntheticSource:
    return SyntheticSource(SyntheticConfig(seed=seed, start_ms=START_MS, **cfg), speed=None, duration_s=duration_s)


def run_through_venue(src: SyntheticSource):
    v = VenueMarket()
    src.bind(v)
    for ev in src.events():
        v.process(ev)
        yield v, ev


@pytest.fixture(scope="module")
def twenty_seconds():
    """Events of 20 s of the default market, with the venue's top of book after each one."""
    out = []
    for v, ev in run_through_venue(source()):
        out.append((ev, v.best_bid("BTCUSDT"), v.best_ask("BTCUSDT"), v.book("BTCUSDT").last_update_id))
    return out


def test_same_seed_gives_identical_output_and_other_seeds_differ():
    def wire(seed):
        return [(ev.ts_local_ns, ev.stream, ev.payload) for ev in source(seed, duration_s=5).events()
                if ev.stream is not None]

    a, b, c = wire(7), wire(7), wire(8)
    assert len(a) > 1000
    assert a == b
    assert a != c


def test_events_calls_restart_the_same_market():
    src = source(duration_s=None)
    first = [ev.payload for ev in islice(src.events(), 3000)]
    again = [ev.payload for ev in islice(src.events(), 3000)]
    assert first == again


def test_never_crossed_and_every_change_consumes_one_update_id(twenty_seconds):
    prev_uid = None
    for ev, bid, ask, lid in twenty_seconds:
        if ev.kind == SNAPSHOT:
            prev_uid = ev.data.lastUpdateId
        if ev.kind == LEVEL:
            assert ev.data.update_id == prev_uid + 1
            prev_uid = ev.data.update_id
        assert bid is not None and ask is not None and bid[0] < ask[0]
        assert lid == prev_uid


def test_depth_diffs_are_continuous_and_binance_sized(twenty_seconds):
    snap = next(ev.data for ev, *_ in twenty_seconds if ev.kind == SNAPSHOT)
    diffs = [ev.data for ev, *_ in twenty_seconds if ev.kind == DEPTH]
    assert diffs[0].U == snap.lastUpdateId + 1
    for prev, d in zip(diffs, diffs[1:]):
        assert d.U == prev.u + 1
        assert d.E > prev.E and (d.E - START_MS) % 100 == 0  # one diff per 100 ms window at most
    assert 150 <= len(diffs) <= 200
    levels = [len(d.b) + len(d.a) for d in diffs]
    assert 20 <= sum(levels) / len(levels) <= 100  # tens of level changes per diff (README 1a: ~46)
    ids_per_s = (diffs[-1].u - snap.lastUpdateId) / 20
    assert 300 <= ids_per_s <= 1500


def test_book_ticker_matches_venue_top_at_same_update_id(twenty_seconds):
    checked = 0
    for ev, bid, ask, lid in twenty_seconds:
        if ev.kind == BOOK_TICKER:
            bt = ev.data
            assert bt.u == lid
            assert bid == (Decimal(bt.b), Decimal(bt.B)) and ask == (Decimal(bt.a), Decimal(bt.A))
            checked += 1
    assert checked > 500


def test_trades_and_agg_trades_are_consistent(twenty_seconds):
    trades = [ev.data for ev, *_ in twenty_seconds if ev.kind == TRADE]
    aggs = [ev.data for ev, *_ in twenty_seconds if ev.kind == AGG_TRADE]
    assert len(trades) > 100
    assert [t.t for t in trades] == list(range(trades[0].t, trades[0].t + len(trades)))
    assert [a.a for a in aggs] == list(range(aggs[0].a, aggs[0].a + len(aggs)))
    by_id = {t.t: t for t in trades}
    covered = []
    for a in aggs:
        parts = [by_id[i] for i in range(a.f, a.l + 1)]
        covered.extend(range(a.f, a.l + 1))
        assert {t.p for t in parts} == {a.p} and {t.m for t in parts} == {a.m}
        assert sum(Decimal(t.q) for t in parts) == Decimal(a.q)
    assert covered == [t.t for t in trades]
    assert {True, False} <= {t.m for t in trades}


def test_payloads_have_binance_key_order_and_formats(twenty_seconds):
    want = {
        DEPTH: ["e", "E", "s", "U", "u", "b", "a"],
        TRADE: ["e", "E", "s", "t", "p", "q", "T", "m", "M"],
        AGG_TRADE: ["e", "E", "s", "a", "p", "q", "f", "l", "T", "m", "M"],
        BOOK_TICKER: ["u", "s", "b", "B", "a", "A"],
    }
    streams = {DEPTH: "btcusdt@depth@100ms", TRADE: "btcusdt@trade", AGG_TRADE: "btcusdt@aggTrade",
               BOOK_TICKER: "btcusdt@bookTicker"}
    seen = Counter()
    for ev, *_ in twenty_seconds:
        if ev.kind in want and seen[ev.kind] < 50:
            seen[ev.kind] += 1
            body = msgspec.json.decode(ev.payload)
            assert list(body) == want[ev.kind]
            assert ev.stream == streams[ev.kind] and ev.frame is None
            assert msgspec.json.decode(ev.payload, type=type(ev.data)) == ev.data
            if ev.kind == DEPTH:
                p, q = (body["b"] or body["a"])[0]
                assert len(p.split(".")[1]) == 8 and len(q.split(".")[1]) == 8  # spot renders 8 decimals
    assert set(seen) == set(want)


def test_depth_taken_between_diffs_bridges_like_the_real_venue():
    """depth() runs ahead of the last diff; Binance's procedure (1.5) still converges."""
    v = VenueMarket()
    src = source(duration_s=10)
    src.bind(v)
    clients = []
    n = 0
    for ev in src.events():
        if ev.kind == DEPTH:
            for c in clients:
                if c["lid"] is None:
                    continue
                d = ev.data
                if d.u <= c["lid"]:
                    continue
                assert d.U <= c["lid"] + 1
                for side, lv in (("bids", d.b), ("asks", d.a)):
                    for p, q in lv:
                        if Decimal(q) == 0:
                            c[side].pop(Decimal(p), None)
                        else:
                            c[side][Decimal(p)] = Decimal(q)
                c["lid"] = d.u
                c["applied"] += 1
        v.process(ev)
        n += 1
        if n in (2, 1_234, 6_001):
            body = v.depth("BTCUSDT", 5000)
            clients.append({"lid": body["lastUpdateId"], "applied": 0,
                            "bids": {Decimal(p): Decimal(q) for p, q in body["bids"]},
                            "asks": {Decimal(p): Decimal(q) for p, q in body["asks"]}})
    end = v.depth("BTCUSDT", 5000)
    assert len(clients) == 3
    for c in clients:
        assert c["applied"] > 10 and c["lid"] == end["lastUpdateId"]
        assert sorted(c["bids"].items(), reverse=True) == [(Decimal(p), Decimal(q)) for p, q in end["bids"]]
        assert sorted(c["asks"].items()) == [(Decimal(p), Decimal(q)) for p, q in end["asks"]]


def test_config_is_validated():
    with pytest.raises(ValueError):
        SyntheticSource(SyntheticConfig(depth_interval_ms=250))
    one_s = [ev for ev in source(duration_s=3, depth_interval_ms=1000).events() if ev.kind == DEPTH]
    assert [ev.stream for ev in one_s] == ["btcusdt@depth"] * 3


# -- real-time pacing, on both event loops --------------------------------------------------------------
@pytest.fixture(params=["asyncio", "uvloop"])
def run(request):
    factory = asyncio.new_event_loop if request.param == "asyncio" else uvloop.new_event_loop

    def runner(coro, timeout: float = 30.0):
        with asyncio.Runner(loop_factory=factory) as r:
            return r.run(asyncio.wait_for(coro, timeout))

    return runner


@pytest.mark.parametrize("speed,duration_s", [(1.0, 0.6), (10.0, 3.0)])
def test_runs_at_real_time_or_sped_up(run, speed, duration_s):
    src = SyntheticSource(SyntheticConfig(seed=3, start_ms=START_MS), speed=speed, duration_s=duration_s)
    v = VenueMarket(speed=speed)
    src.bind(v)

    async def go():
        t0 = time.monotonic()
        n = await run_source(v, src.events(), speed)
        return n, time.monotonic() - t0

    n, wall = run(go())
    expected = duration_s / speed
    assert n > 100
    assert expected * 0.9 <= wall <= expected + 1.0
    assert v.now_ms() >= START_MS + int(duration_s * 1000) - 100
