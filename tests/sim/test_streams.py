"""The stream server with a real WebSocket client (picows), on asyncio and uvloop.

Control messages, replies and error codes: venue-protocols.md section 2 (spot
``web-socket-streams.md``, "Live Subscribing/Unsubscribing" and "Error Messages").
Byte-exact replay: shared/data/README.md section 1 (line format).
"""
from __future__ import annotations

import asyncio
import time

import msgspec
import pytest
import uvloop
from picows import WSHandshakeError, WSListener, WSMsgType, WSTransport, ws_connect

from engine.recording import iter_records
from engine.sim.playback import PlaybackSource
from engine.sim.server import describe, start_simulator
from engine.sim.streams import ControlError, StreamLimits, parse_control, valid_stream
from engine.sim.synthetic import SyntheticConfig, SyntheticSource

SPOT_FILE = "hftbacktest/spot/btcusdt_20240808.gz"
START_MS = 1_723_161_600_000


@pytest.fixture(params=["asyncio", "uvloop"])
def run(request):
    """Run a coroutine to completion on a fresh loop of each kind, bounded in time."""
    factory = asyncio.new_event_loop if request.param == "asyncio" else uvloop.new_event_loop

    def runner(coro, timeout: float = 30.0):
        with asyncio.Runner(loop_factory=factory) as r:
            return r.run(asyncio.wait_for(coro, timeout))

    return runner


class Client(WSListener):
    """Test client: keeps TEXT messages, pings and pongs; answers pings only if told to."""

    def __init__(self, answer_pings: bool = True, pong_payload: bytes | None = None) -> None:
        super().__init__()
        self.answer_pings = answer_pings
        self.pong_payload = pong_payload
        self.msgs: list[bytes] = []
        self.pings: list[bytes] = []
        self.pongs: list[bytes] = []
        self.tr: WSTransport | None = None
        self.gone = asyncio.Event()

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.tr = transport

    def on_ws_frame(self, transport: WSTransport, frame) -> None:
        t = frame.msg_type
        if t == WSMsgType.TEXT:
            self.msgs.append(frame.get_payload_as_bytes())
        elif t == WSMsgType.PING:
            self.pings.append(frame.get_payload_as_bytes())
            if self.answer_pings:
                transport.send_pong(frame.get_payload_as_bytes() if self.pong_payload is None else self.pong_payload)
        elif t == WSMsgType.PONG:
            self.pongs.append(frame.get_payload_as_bytes())
        elif t == WSMsgType.CLOSE:
            transport.disconnect()

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        self.gone.set()

    def send(self, data: bytes) -> None:
        assert self.tr is not None
        self.tr.send(WSMsgType.TEXT, data)

    async def wait_msgs(self, n: int, timeout: float = 10.0) -> list[bytes]:
        deadline = time.monotonic() + timeout
        while len(self.msgs) < n:
            if time.monotonic() > deadline:
                raise AssertionError(f"got {len(self.msgs)} of {n} messages")
            await asyncio.sleep(0.01)
        return self.msgs

    async def request(self, data: bytes) -> bytes:
        n = len(self.msgs)
        self.send(data)
        return (await self.wait_msgs(n + 1))[n]


async def connect(url: str, **kw) -> Client:
    # The client never pings on its own; server pings are answered by Client itself.
    _, client = await ws_connect(lambda: Client(**kw), url, enable_auto_pong=False)
    return client


def synthetic(duration_s: float | None = 2.0, speed: float | None = None) -> SyntheticSource:
    return SyntheticSource(SyntheticConfig(seed=5, start_ms=START_MS), speed=speed, duration_s=duration_s)


# -- control messages (no network) -------------------------------------------------------------------
def test_stream_names():
    for ok in ("btcusdt@depth", "btcusdt@depth@100ms", "btcusdt@depth@0ms", "btcusdt@trade", "btcusdt@aggTrade",
               "btcusdt@bookTicker", "btcusdt@depth5@100ms", "btcusdt@kline_1m", "!bookTicker"):
        assert valid_stream(ok), ok
    for bad in ("BTCUSDT@trade", "btcusdt@trades", "btcusdt", "btcusdt@depth@50ms", "", 5, None, "btc usdt@trade"):
        assert not valid_stream(bad), bad


@pytest.mark.parametrize("data,code,msg,id_", [
    (b'{"method":"SUBSCRIBE",', 3, "Invalid JSON: expected value at line 1 column 23", None),
    (b"[1,2]", 3, None, None),
    (b'{"method":"SUBSCRIBE","params":[],"id":1.5}', 2, "Invalid request: request ID must be an unsigned integer", None),
    (b'{"method":"SUBSCRIBE","params":[],"id":"a_b"}', 2, "Invalid request: request ID must be an unsigned integer", None),
    (b'{"method":"SUBSCRIBE","params":[]}', 2, "Invalid request: request ID must be an unsigned integer", None),
    (b'{"params":[],"id":9}', 2, "Invalid request: missing field `method` at line 1 column 20", 9),
    (b'{"method":"SUBSCRIPTION","params":[],"id":4}', 2,
     "Invalid request: unknown variant `SUBSCRIPTION`, expected one of `SUBSCRIBE`, `UNSUBSCRIBE`, "
     "`LIST_SUBSCRIPTIONS`, `SET_PROPERTY`, `GET_PROPERTY` at line 1 column 24", 4),
])
def test_parse_control_errors(data, code, msg, id_):
    with pytest.raises(ControlError) as e:
        parse_control(data)
    assert e.value.code == code and e.value.id == id_
    if msg is not None:
        assert e.value.msg == msg


def test_parse_control_accepts_documented_ids():
    for id_ in (1, -5, 2**63 - 1, None, "abc123", "A" * 36):
        assert parse_control(msgspec.json.encode({"method": "LIST_SUBSCRIPTIONS", "id": id_}))[2] == id_
    with pytest.raises(ControlError):
        parse_control(msgspec.json.encode({"method": "LIST_SUBSCRIPTIONS", "id": 2**63}))


# -- over the wire -----------------------------------------------------------------------------------------
def test_subscribe_list_unsubscribe_and_properties_exact(run):
    async def go():
        h = await start_simulator(synthetic(), autostart=False)
        try:
            c = await connect(h.streams_url + "/ws")
            assert await c.request(b'{"method":"SUBSCRIBE","params":["btcusdt@aggTrade","btcusdt@depth@100ms",'
                                   b'"btcusdt@bookTicker"],"id":1}') == b'{"result":null,"id":1}'
            assert await c.request(b'{"method":"UNSUBSCRIBE","params":["btcusdt@bookTicker"],"id":312}') \
                == b'{"result":null,"id":312}'
            assert await c.request(b'{"method":"LIST_SUBSCRIPTIONS","id":3}') \
                == b'{"result":["btcusdt@aggTrade","btcusdt@depth@100ms"],"id":3}'
            assert await c.request(b'{"method":"GET_PROPERTY","params":["combined"],"id":2}') \
                == b'{"result":false,"id":2}'
            assert await c.request(b'{"method":"SUBSCRIBE","params":["btcusdt@depht"],"id":4}') \
                == b'{"error":{"code":2,"msg":"Invalid request: invalid stream"},"id":4}'
            await asyncio.sleep(1.0)  # stay under 5 messages per second
            assert await c.request(b'{"method":"SET_PROPERTY","params":["combined",1],"id":5}') \
                == b'{"error":{"code":1,"msg":"Invalid value type: expected Boolean"},"id":5}'
            assert await c.request(b'{"method":"SET_PROPERTY","params":["compressed",true],"id":"x7"}') \
                == b'{"error":{"code":0,"msg":"Unknown property"},"id":"x7"}'
            assert await c.request(b'{"method":"SET_PROPERTY","params":["combined",true],"id":6}') \
                == b'{"result":null,"id":6}'
            n0 = len(c.msgs)
            h.start()
            total = await h.ended
            await asyncio.sleep(0.2)
            data = [msgspec.json.decode(m) for m in c.msgs[n0:]]
            assert total > 1000 and len(data) > 30
            assert {d["stream"] for d in data} == {"btcusdt@aggTrade", "btcusdt@depth@100ms"}
            assert all(d["data"]["e"] in ("aggTrade", "depthUpdate") for d in data)
            assert all(m.startswith(b'{"stream":"btcusdt@') and b'","data":{"e":"' in m for m in c.msgs[n0:])
        finally:
            await h.close()

    run(go())


@pytest.mark.data
def test_recorded_frames_byte_exact_on_combined_and_raw_streams(run, need_data):
    path = need_data(SPOT_FILE)
    n_lines = 3000
    combined_streams = ("btcusdt@depth@100ms", "btcusdt@trade", "btcusdt@bookTicker")
    want_frames, want_trades = [], []
    for rec in iter_records([path]):
        env = msgspec.json.decode(rec.frame) if rec.frame.startswith(b'{"stream"') else None
        if env is not None and env["stream"] in combined_streams:
            want_frames.append(rec.frame)
        if env is not None and env["stream"] == "btcusdt@trade":
            want_trades.append(rec.frame[len(b'{"stream":"btcusdt@trade","data":'):-1])
        if rec.source.endswith(f":{n_lines}"):
            break

    async def go():
        src = PlaybackSource([path], speed=None, max_records=n_lines)
        h = await start_simulator(src, autostart=False)
        try:
            comb = await connect(h.streams_url + "/stream?streams=" + "/".join(combined_streams))
            raw = await connect(h.streams_url + "/ws/btcusdt@trade")
            h.start()
            assert await h.ended == n_lines
            await comb.wait_msgs(len(want_frames))
            await raw.wait_msgs(len(want_trades))
            await asyncio.sleep(0.1)
            assert comb.msgs == want_frames
            assert raw.msgs == want_trades
        finally:
            await h.close()

    run(go())
    assert len(want_frames) > 2500 and len(want_trades) > 300


@pytest.mark.data
def test_paced_playback_follows_recorded_time(run, need_data):
    path = need_data(SPOT_FILE)

    async def go():
        # The first 400 lines span ~1.43 s of recorded local time; at speed 4 that is ~0.36 s.
        src = PlaybackSource([path], speed=4.0, max_records=400)
        first, last = [r.ts_local_ns for i, r in zip(range(400), iter_records([path]))][::399]
        h = await start_simulator(src, autostart=False)
        try:
            c = await connect(h.streams_url + "/ws/btcusdt@bookTicker")
            t0 = time.monotonic()
            h.start()
            await h.ended
            wall = time.monotonic() - t0
            expected = (last - first) / 1e9 / 4.0
            assert expected * 0.9 <= wall <= expected + 1.0
            assert len(c.msgs) > 100
        finally:
            await h.close()

    run(go())


def test_server_pings_and_drops_clients_that_do_not_pong(run):
    # Pongs count as incoming messages (section 2): 10 per second would break the spot limit of 5.
    limits = StreamLimits(ping_interval_s=0.1, pong_timeout_s=0.35, max_incoming_per_s=None)

    async def go():
        h = await start_simulator(synthetic(duration_s=None, speed=1.0), limits=limits)
        try:
            good = await connect(h.streams_url + "/ws/btcusdt@trade")
            silent = await connect(h.streams_url + "/ws/btcusdt@trade", answer_pings=False)
            # Spot: a pong that echoes no ping does not keep the connection alive (section 2).
            wrong = await connect(h.streams_url + "/ws/btcusdt@trade", pong_payload=b"")
            await asyncio.wait_for(silent.gone.wait(), 2.0)
            await asyncio.wait_for(wrong.gone.wait(), 2.0)
            await asyncio.sleep(0.3)
            assert not good.gone.is_set()
            assert len(good.pings) >= 5 and len(set(good.pings)) == len(good.pings) >= 1
            assert len(silent.pings) >= 2
            assert len(h.hub.connections) == 1
        finally:
            await h.close()

    run(go())


def test_client_ping_is_answered_and_message_rate_is_limited(run):
    async def go():
        h = await start_simulator(synthetic(), autostart=False)
        try:
            c = await connect(h.streams_url + "/ws")
            c.tr.send_ping(b"hello")
            for _ in range(100):
                if c.pongs:
                    break
                await asyncio.sleep(0.01)
            assert c.pongs == [b"hello"]
            # 1 ping + 5 requests = 6 messages within one second: over spot's 5 per second.
            for i in range(5):
                c.send(b'{"method":"LIST_SUBSCRIPTIONS","id":%d}' % i)
            await asyncio.wait_for(c.gone.wait(), 2.0)
            assert c.msgs == [b'{"result":[],"id":%d}' % i for i in range(4)]
        finally:
            await h.close()

    run(go())


def test_routes_and_handshake_errors(run):
    async def go():
        h = await start_simulator(synthetic(duration_s=1.0), autostart=False)
        try:
            with pytest.raises(WSHandshakeError) as e:
                await connect(h.streams_url + "/nope")
            assert e.value.response.status == 404
            with pytest.raises(WSHandshakeError) as e:
                await connect(h.streams_url + "/ws/btcusdt@nonsense")
            assert e.value.response.status == 400
            # USD-M's 2026 route prefix (venue-protocols.md section 0) reaches the same streams.
            c = await connect(h.streams_url + "/public/stream?streams=btcusdt@bookTicker")
            d = await connect(h.streams_url + "/market/ws/btcusdt@depth")
            h.start()
            await h.ended
            await c.wait_msgs(10)
            await d.wait_msgs(1)
            env = msgspec.json.decode(c.msgs[0])
            assert env["stream"] == "btcusdt@bookTicker" and list(env["data"]) == ["u", "s", "b", "B", "a", "A"]
            assert msgspec.json.decode(d.msgs[0])["e"] == "depthUpdate"  # derived 1 s stream, raw
        finally:
            await h.close()

    run(go())


def test_fault_injection_stall_and_drop(run):
    async def go():
        h = await start_simulator(synthetic(duration_s=None, speed=1.0))
        try:
            c = await connect(h.streams_url + "/ws/btcusdt@depth@100ms")
            await c.wait_msgs(3, timeout=3.0)
            h.hub.stall("btcusdt@depth@100ms")
            await asyncio.sleep(0.05)
            n = len(c.msgs)
            await asyncio.sleep(0.4)
            assert len(c.msgs) == n and not c.gone.is_set()
            h.hub.resume("btcusdt@depth@100ms")
            await c.wait_msgs(n + 2, timeout=3.0)
            # A gap for the client: the filter drops one diff, as a lost message would.
            dropped = []
            h.hub.drop_filter = lambda s, p: not dropped and not dropped.append(p)
            m = len(c.msgs)
            await c.wait_msgs(m + 2, timeout=3.0)
            got = [msgspec.json.decode(x) for x in c.msgs[m:m + 2]]
            assert got[0]["U"] > msgspec.json.decode(dropped[0])["u"]
            assert h.hub.drop_all_connections() == 1
            await asyncio.wait_for(c.gone.wait(), 2.0)
        finally:
            await h.close()

    run(go())


def test_ws_api_route_and_describe(run):
    async def go():
        h = await start_simulator(synthetic(duration_s=0.5), autostart=False)
        try:
            lines = describe(h)
            assert lines[0] == f"streams ws://127.0.0.1:{h.port}" and h.port > 0
            assert lines[1].startswith("ws-api ") and lines[2].startswith("rest ")
            if "ws-api" in h.unavailable:
                with pytest.raises(WSHandshakeError) as e:
                    await connect(h.ws_api_url)
                assert e.value.response.status == 503
            else:
                assert lines[1] == f"ws-api ws://127.0.0.1:{h.port}/ws-api/v3"
                c = await connect(h.ws_api_url)
                reply = msgspec.json.decode(await c.request(b'{"id":"p1","method":"ping","params":{}}'))
                assert reply["id"] == "p1" and reply["status"] == 200 and "rateLimits" in reply
                quiet = await connect(h.ws_api_url + "?returnRateLimits=false")
                reply = msgspec.json.decode(await quiet.request(b'{"id":2,"method":"ping","params":{}}'))
                assert reply["id"] == 2 and reply["status"] == 200 and "rateLimits" not in reply
                h.unavailable["ws-api"] = "switched off by the test"
                with pytest.raises(WSHandshakeError) as e:
                    await connect(h.ws_api_url)
                assert e.value.response.status == 503
            h.start()
            assert await h.ended > 100
        finally:
            await h.close()
        assert h.ended.done() and h.hub.connections == []

    run(go())


def test_close_before_the_end_cancels_ended(run):
    async def go():
        h = await start_simulator(synthetic(duration_s=None, speed=1.0))
        c = await connect(h.streams_url + "/ws/btcusdt@trade")
        await asyncio.sleep(0.1)
        await h.close()
        assert h.ended.cancelled()
        await asyncio.wait_for(c.gone.wait(), 2.0)

    run(go())
