"""Liveness: our pings and their pongs, per-stream freshness; a stalled or frozen stream is a disconnect."""
from __future__ import annotations

import asyncio
import time

import msgspec
from failclosed_helpers import Resting, Timeline, fast_liveness, run_config, run_loop  # noqa: F401
from picows import WSListener, WSMsgType, ws_create_server

from engine.feed.decode import BOOK_TICKER, DEPTH, TRADE
from engine.feed.market import MarketDataFeed
from engine.instruments import get_builtin
from engine.live.liveness import Liveness, staleness_ns_of
from engine.live.runner import run
from engine.live.streams import MarketStreamClient
from engine.sim.server import start_simulator
from engine.sim.streams import StreamConnection
from engine.sim.synthetic import SyntheticConfig, SyntheticSource

MS = 1_000_000


# -- the state machine, on an injected clock ---------------------------------------------------------
def test_ping_pong_round_trip_and_pong_timeout():
    now = [0]
    lv = Liveness("ws-api", ping_interval_ms=1000, pong_timeout_ms=300, clock_ns=lambda: now[0])
    lv.start()
    assert lv.ping_due() is None  # not before one interval
    now[0] = 1000 * MS
    p = lv.ping_due()
    assert p is not None and len(p) == 8 and lv.ping_due() is None  # one in flight at a time
    now[0] += 7 * MS
    assert not lv.on_pong(b"\x00" * 8)  # unsolicited / foreign payload proves nothing
    assert lv.on_pong(p) and list(lv.rtt_ns) == [7 * MS] and lv.check() == ""
    now[0] = 2000 * MS
    p2 = lv.ping_due()
    assert p2 is not None and p2 != p
    now[0] += 300 * MS
    assert lv.check() == ""  # exactly at the limit: still alive
    now[0] += 1
    reason = lv.check()
    assert "no pong within 300 ms" in reason and lv.dead_reason == reason
    assert lv.pings_sent == 2 and lv.pongs_matched == 1 and lv.pongs_unmatched == 1


def test_staleness_is_per_stream_and_zero_disables():
    now = [0]
    lv = Liveness("streams", 0, 1, staleness_ns_of(depth_ms=500, trade_ms=0, book_ticker_ms=200),
                  clock_ns=lambda: now[0])
    lv.start()
    assert lv.ping_due() is None  # pings off with a 0 interval
    for t in range(0, 2000, 100):
        now[0] = t * MS
        lv.on_data(DEPTH, now[0])
        lv.on_data(BOOK_TICKER, now[0])
        assert lv.check() == ""
    # Trades may pause for ever (0 = not checked); bookTicker may not pause past 200 ms.
    now[0] = 2100 * MS
    lv.on_data(DEPTH, now[0])
    assert lv.check() == ""
    now[0] = 2201 * MS
    assert "bookTicker stream stale" in lv.check()
    lv2 = Liveness("streams", 0, 1, staleness_ns_of(500, 0, 0), clock_ns=lambda: now[0])
    lv2.start()
    lv2.on_data(TRADE, now[0] + 10_000 * MS)  # trades do not refresh depth
    now[0] += 501 * MS
    assert "depth stream stale (501 ms" in lv2.check()


# -- a fake server that never answers our pings --------------------------------------------------------
class _MutePeer(WSListener):
    # Streams bookTicker frames every 5 ms, never answers a PING.
    def on_ws_connected(self, transport):
        self.transport = transport
        self.n = 0
        self.task = asyncio.get_running_loop().create_task(self.pump())

    async def pump(self):
        while True:
            self.n += 1
            frame = msgspec.json.encode({"stream": "btcusdt@bookTicker", "data": {
                "u": self.n, "s": "BTCUSDT", "b": "60000.00", "B": "1.00000", "a": "60000.01", "A": "1.00000"}})
            self.transport.send(WSMsgType.TEXT, frame)
            await asyncio.sleep(0.005)

    def on_ws_frame(self, transport, frame):
        if frame.msg_type == WSMsgType.CLOSE:
            transport.disconnect()
        # PING: deliberately ignored.

    def on_ws_disconnected(self, transport):
        self.task.cancel()


def test_missing_pong_is_detected_while_data_still_flows(run_loop):
    async def main():
        server = await ws_create_server(lambda _r: _MutePeer(), "127.0.0.1", 0, enable_auto_pong=False)
        port = server.sockets[0].getsockname()[1]
        inst = get_builtin("BTCUSDT", "spot")
        feed = MarketDataFeed(lambda s, f: inst, None, "BTCUSDT")
        lv = Liveness("streams", ping_interval_ms=1000, pong_timeout_ms=250,
                      staleness_ns=staleness_ns_of(0, 0, 100))
        client = MarketStreamClient(f"ws://127.0.0.1:{port}/stream?streams=btcusdt@bookTicker", feed, liveness=lv)
        try:
            await client.connect(5)
            lv.start()
            t0 = time.monotonic()
            reason = ""
            while not reason and time.monotonic() - t0 < 5:
                p = lv.ping_due()
                if p is not None:
                    client.send_ping(p)
                reason = lv.check()
                await asyncio.sleep(0.01)
            return reason, time.monotonic() - t0, client.frames, lv
        finally:
            await client.close(1)
            server.close()

    reason, elapsed, frames, lv = run_loop(main(), timeout=20)
    # Data kept coming (fresh bookTicker), yet the connection is dead: no pong 1 s + 250 ms.
    assert "no pong within 250 ms" in reason, reason
    assert 1.2 <= elapsed < 3.0 and frames > 100 and lv.pings_sent == 1 and lv.pongs_matched == 0


# -- the engine, against the simulator ---------------------------------------------------------------------
def test_stalled_stream_is_a_disconnect(run_loop):
    async def main():
        handle = await start_simulator(SyntheticSource(SyntheticConfig(seed=21)))
        tl = Timeline(handle.exchange)
        strat = Resting()

        async def stall():
            await asyncio.sleep(1.5)
            handle.hub.stall()  # connection open, pings answered, no data
            await asyncio.sleep(0.9)
            handle.hub.resume()

        try:
            task = asyncio.get_running_loop().create_task(stall())
            s = await run(run_config(handle, strat, duration_s=4.5, liveness=fast_liveness(depth_ms=400),
                                     observer=tl))
            await task
            return s, strat, tl, handle
        finally:
            await handle.close()

    s, strat, tl, handle = run_loop(main())
    assert s.stalls >= 1 and s.disconnects == s.stalls and s.pong_timeouts == 0
    assert any("depth stream stale" in r for r in tl.of("disconnect"))
    # Orders were resting when the stall was detected, none once the venue confirmed.
    assert tl.open_at_disconnect[0] > 0
    assert [n for k, _r, n in tl.open_at_confirm if k == "disconnect"] == [0] * s.disconnects
    assert s.cancel_all_on_disconnect == s.disconnects and s.cancel_all_latency_ms.count == s.disconnects
    assert 0 < s.cancel_all_latency_ms.p50 <= s.cancel_all_latency_ms.max < 1000
    # Reconnected, resynced, quoting again; never an invalid book, never an order while halted.
    assert s.reconnects >= 1 and tl.times("resynced") and s.book_resyncs >= 1
    assert any(t > tl.times("resynced")[-1] for t, *_ in strat.placements)
    assert all(valid and not halted for _t, _c, valid, halted, _r in strat.placements)
    assert s.strategy_calls_on_invalid_book == 0 and strat.invalid_books_seen == 0
    assert s.unhandled_exceptions == 0 and s.stop_clean and s.open_orders_at_exit == 0
    assert handle.exchange.open_order_ids() == []


def test_frozen_connection_is_caught_by_the_pong_timeout(run_loop):
    async def main():
        handle = await start_simulator(SyntheticSource(SyntheticConfig(seed=22)))
        tl = Timeline(handle.exchange)
        strat = Resting()

        async def freeze():
            await asyncio.sleep(1.2)
            for c in handle.hub.connections:
                if isinstance(c, StreamConnection):
                    c.hold()  # data, pings and pongs held back: our pings go unanswered

        try:
            task = asyncio.get_running_loop().create_task(freeze())
            # Staleness off: only the missing pong can reveal the frozen connection.
            s = await run(run_config(handle, strat, duration_s=5.0, observer=tl,
                                     liveness=fast_liveness(depth_ms=0, ping_ms=1000, pong_ms=300)))
            await task
            return s, tl, handle
        finally:
            await handle.close()

    s, tl, handle = run_loop(main())
    assert s.pong_timeouts >= 1 and s.stalls == 0 and s.disconnects == s.pong_timeouts
    assert any("no pong within 300 ms" in r for r in tl.of("disconnect"))
    assert s.cancel_all_on_disconnect == s.disconnects
    assert [n for k, _r, n in tl.open_at_confirm if k == "disconnect"] == [0] * s.disconnects
    assert s.ping_rtt_us.count > 0 and s.reconnects >= 1 and tl.times("resynced")
    assert s.unhandled_exceptions == 0 and s.stop_clean and handle.exchange.open_order_ids() == []
