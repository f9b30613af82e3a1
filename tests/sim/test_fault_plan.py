"""The simulator's fault plan (engine.sim.faults.FaultPlan), observed on the wire.

Every fault kind is seen by a real client (picows for the streams, aiohttp for the
WS API): sequence gaps as a ``U``/``u`` discontinuity, duplicated and reordered
frames against a fault-free run of the same market, stalls (data stops, pings
answered) and freezes (nothing flows, pings unanswered) followed by a resume,
dropped connections (CLOSE 1001 or a TCP abort), latency spikes, and the WS API
error envelopes of venue-protocols.md 3.2 / 6.1, byte for byte. Plans are
deterministic per seed, and the ``none`` profile changes nothing on the wire.
Every async test runs on asyncio and uvloop, bounded in time.
"""
from __future__ import annotations

import asyncio
import dataclasses
import time

import aiohttp
import msgspec
import pytest
import uvloop
from picows import WSListener, WSMsgType, WSTransport, ws_connect

from engine.instruments import get_builtin
from engine.sim.auth import DEFAULT_API_KEY, DEFAULT_API_SECRET, hmac_sha256_hex, ws_payload
from engine.sim.exchange import Exchange
from engine.sim.faults import (MSG_418, MSG_1003_QUEUED, MSG_1003_WEIGHT, MSG_1015, MSG_2010_BALANCE,
                               MSG_2010_WOULD_TAKE, PLAN_PROFILES, FaultPlan, WsApiFaults)
from engine.sim.market_view import StaticMarket
from engine.sim.server import start_simulator
from engine.sim.synthetic import SyntheticConfig, SyntheticSource
from engine.sim.wsapi import WsApiSession

START_MS = 1_723_161_600_000
DEPTH = "btcusdt@depth@100ms"
TRADE = "btcusdt@trade"
TICKER = "btcusdt@bookTicker"
NOW = 1_760_000_000_000
BTC = get_builtin("BTCUSDT", "spot")


@pytest.fixture(params=["asyncio", "uvloop"])
def run(request):
    """Run a coroutine to completion on a fresh loop of each kind, bounded in time."""
    factory = asyncio.new_event_loop if request.param == "asyncio" else uvloop.new_event_loop

    def runner(coro, timeout: float = 30.0):
        with asyncio.Runner(loop_factory=factory) as r:
            return r.run(asyncio.wait_for(coro, timeout))

    return runner


class Client(WSListener):
    """Stream client: TEXT messages with their arrival times, pings/pongs, how it ended."""

    def __init__(self) -> None:
        super().__init__()
        self.msgs: list[bytes] = []
        self.rx: list[float] = []
        self.rx_wall_ms: list[float] = []
        self.pongs: list[tuple[bytes, float]] = []
        self.close_codes: list[int] = []
        self.tr: WSTransport | None = None
        self.gone = asyncio.Event()

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.tr = transport

    def on_ws_frame(self, transport: WSTransport, frame) -> None:
        t = frame.msg_type
        if t == WSMsgType.TEXT:
            self.msgs.append(frame.get_payload_as_bytes())
            self.rx.append(time.monotonic())
            self.rx_wall_ms.append(time.time() * 1000.0)
        elif t == WSMsgType.PING:
            transport.send_pong(frame.get_payload_as_bytes())
        elif t == WSMsgType.PONG:
            self.pongs.append((frame.get_payload_as_bytes(), time.monotonic()))
        elif t == WSMsgType.CLOSE:
            self.close_codes.append(int(frame.get_close_code()))
            transport.disconnect()

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        self.gone.set()

    def data(self) -> list[dict]:
        return [msgspec.json.decode(m) for m in self.msgs]


async def connect(url: str) -> Client:
    _, client = await ws_connect(Client, url, enable_auto_pong=False)
    return client


def synthetic(duration_s: float | None, speed: float | None = None, seed: int = 5) -> SyntheticSource:
    return SyntheticSource(SyntheticConfig(seed=seed, start_ms=START_MS), speed=speed, duration_s=duration_s)


async def wait_for(cond, timeout: float = 10.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.005)


async def capture(plan, path: str, duration_s: float = 4.0, seed: int = 5) -> tuple[list[bytes], object]:
    """Play the synthetic market as fast as possible to one client subscribed before the start."""
    h = await start_simulator(synthetic(duration_s, seed=seed), autostart=False, faults=plan)
    try:
        c = await connect(h.streams_url + path)
        h.start()
        await h.ended
        await asyncio.sleep(0.05)  # the last frames are on the loopback
        n = -1
        while n != len(c.msgs):
            n = len(c.msgs)
            await asyncio.sleep(0.05)
        return list(c.msgs), h
    finally:
        await h.close()


def by_stream(msgs: list[bytes]) -> dict[str, list[bytes]]:
    out: dict[str, list[bytes]] = {}
    for m in msgs:
        env = msgspec.json.decode(m)
        out.setdefault(env["stream"], []).append(msgspec.json.encode(env["data"]))
    return out


# -- the plan's API ---------------------------------------------------------------------------------
def test_profiles_and_unknown_name():
    assert list(PLAN_PROFILES) == ["none", "drops", "stalls", "gaps", "dupes", "latency", "errors", "chaos"]
    for name in PLAN_PROFILES:
        p = FaultPlan.profile(name, 1)
        assert p.name == name and p.injected == {} and p.total == 0
        assert p.active == (name != "none")
    with pytest.raises(ValueError) as e:
        FaultPlan.profile("chaotic", 1)
    assert all(n in str(e.value) for n in PLAN_PROFILES)
    # chaos mixes every kind, the WS API's included.
    c = FaultPlan.profile("chaos", 1).config
    assert all((c.stream_drop_every_s, c.ws_api_drop_every_s, c.stall_every_s, c.latency_every_s, c.gap, c.dup,
                c.reorder, 0 < c.freeze_share < 1, 0 < c.abrupt_share < 1))
    w = c.ws_api
    assert all((w.drop, w.delay, w.error_5xx, w.cut_before, w.cut_after, w.dup_events, w.reorder_events,
                w.error_1003, w.error_429, w.error_1015, w.error_418, w.error_2010))
    # A 418 is rare and short; errors hit a small fraction of requests.
    assert w.error_418 <= 0.001 and w.ban_s <= 5.0
    assert w.error_1003 + w.error_429 + w.error_1015 + w.error_418 + w.error_2010 + w.error_5xx < 0.03
    with pytest.raises(TypeError):
        FaultPlan.profile("gaps", 1, gap_rate=0.5)
    assert FaultPlan.profile("gaps", 1, gap=0.5, drop=0.25).config.ws_api.drop == 0.25


def test_faults_and_ws_api_faults_are_exclusive(run):
    async def go():
        with pytest.raises(ValueError):
            await start_simulator(synthetic(1.0), autostart=False, faults="gaps", ws_api_faults="drop")
        with pytest.raises(ValueError):
            await start_simulator(synthetic(1.0), autostart=False, faults="nonsense")
        h = await start_simulator(synthetic(1.0), autostart=False, faults="errors")
        try:
            assert h.faults.name == "errors" and h.ws_api_faults is h.faults.ws_api and h.hub.plan is None
        finally:
            await h.close()

    run(go())


# -- none = no plan ------------------------------------------------------------------------------------
def test_none_profile_is_byte_identical_to_no_plan(run):
    path = f"/stream?streams={DEPTH}/{TRADE}/{TICKER}"

    async def go():
        plain, h0 = await capture(None, path, 3.0)
        plan = FaultPlan.profile("none", 7)
        same, h1 = await capture(plan, path, 3.0)
        assert h1.hub.plan is None and h1.ws_api_faults is None and h1.faults is plan
        assert len(plain) > 500 and same == plain and plan.total == 0

    run(go())


# -- gaps, duplicates, reorders --------------------------------------------------------------------------
def test_gaps_are_u_discontinuities(run):
    async def go():
        ref, _ = await capture(None, f"/ws/{DEPTH}")
        plan = FaultPlan.profile("gaps", 3, gap=0.1)
        got, _ = await capture(plan, f"/ws/{DEPTH}")
        n = plan.injected["gap"]
        assert n >= 3 and plan.injected == {"gap": n}
        # What arrived is the reference minus exactly the withheld diffs, in order.
        it = iter(ref)
        assert all(any(g == r for r in it) for g in got)
        assert len(ref) - len(got) == n
        # Without faults every diff continues the previous one; each withheld diff shows as U > prev u + 1.
        ds = [msgspec.json.decode(m) for m in ref]
        assert all(b["U"] == a["u"] + 1 for a, b in zip(ds, ds[1:]))
        # The update ids the client never saw are exactly those of the withheld diffs (a diff
        # withheld at the very end shows no jump: nothing follows it).
        gs = [msgspec.json.decode(m) for m in got]
        jumped = {i for a, b in zip(gs, gs[1:]) for i in range(a["u"] + 1, b["U"])}
        kept = set(got)
        lost = {i for m in ref if m not in kept for d in [msgspec.json.decode(m)] if d["u"] < gs[-1]["U"]
                for i in range(d["U"], d["u"] + 1)}
        assert jumped == lost and len(jumped) > 0

    run(go())


def test_duplicated_and_reordered_frames(run):
    path = f"/stream?streams={DEPTH}/{TRADE}/{TICKER}"

    async def go():
        ref, _ = await capture(None, path)
        plan = FaultPlan.profile("dupes", 11, dup=0.02, reorder=0.02)
        got, _ = await capture(plan, path)
        inj = plan.injected
        assert inj["dup_frame"] >= 10 and inj["reorder_frame"] >= 10
        per_log: dict[tuple[str, str], int] = {}
        for _, kind, stream in plan.log:
            per_log[kind, stream] = per_log.get((kind, stream), 0) + 1
        r, g = by_stream(ref), by_stream(got)
        for stream in (DEPTH, TRADE, TICKER):
            want, have = r[stream], g[stream]
            dups = per_log.get(("dup_frame", stream), 0)
            swaps = per_log.get(("reorder_frame", stream), 0)
            assert len(have) == len(want) + dups
            # Duplicates arrive back to back; without them the stream is the reference with
            # `swaps` adjacent pairs exchanged.
            dedup = [m for i, m in enumerate(have) if i == 0 or m != have[i - 1]]
            assert len(have) - len(dedup) == dups
            assert sorted(dedup) == sorted(want)
            i = found = 0
            while i < len(want):
                if dedup[i] == want[i]:
                    i += 1
                    continue
                assert (dedup[i], dedup[i + 1]) == (want[i + 1], want[i]), stream
                found += 1
                i += 2
            assert found == swaps
        # On the depth stream the client sees what a gap-checking book sees: a stale copy
        # (u <= previous u) after a duplicate, a jump (U > u + 1) then an older diff after a swap.
        ds = [msgspec.json.decode(m) for m in g[DEPTH]]
        stale = sum(1 for a, b in zip(ds, ds[1:]) if b["u"] <= a["u"])
        assert stale == per_log.get(("dup_frame", DEPTH), 0) + per_log.get(("reorder_frame", DEPTH), 0)

    run(go())


# -- stalls and freezes ------------------------------------------------------------------------------------
def largest_silence(c: Client) -> int:
    """Index k of the message that ended the longest silence (rx[k] - rx[k-1] is the largest)."""
    return max(range(1, len(c.rx)), key=lambda k: c.rx[k] - c.rx[k - 1])


def test_stall_stops_data_answers_pings_and_resumes_with_a_gap(run):
    async def go():
        plan = FaultPlan.profile("stalls", 2, stall_every_s=1.5, stall_s=(1.0, 1.0), freeze_share=0.0)
        h = await start_simulator(synthetic(None, speed=1.0), faults=plan)
        try:
            c = await connect(h.streams_url + f"/ws/{DEPTH}")
            await wait_for(lambda: plan.injected.get("stall"), 5.0, "a stall")
            await asyncio.sleep(0.1)
            t_ping = time.monotonic()
            c.tr.send_ping(b"still there?")
            await wait_for(lambda: c.pongs, 0.5, "the pong")
            await asyncio.sleep(1.3)
            assert not c.gone.is_set()
            k = largest_silence(c)
            # Data stopped for the stall's second, the pong came back in the middle of it.
            assert 0.8 < c.rx[k] - c.rx[k - 1] < 1.6
            assert c.pongs[0][0] == b"still there?" and c.rx[k - 1] < t_ping < c.pongs[0][1] < c.rx[k]
            before, after = msgspec.json.decode(c.msgs[k - 1]), msgspec.json.decode(c.msgs[k])
            # The diffs of the stall were lost: about ten 100 ms windows of updates are missing.
            assert after["U"] > before["u"] + 1 and after["E"] - before["E"] >= 900
            assert plan.log[0][1:] == ("stall", "1.000 s")
        finally:
            await h.close()

    run(go())


def test_freeze_holds_everything_then_delivers_it_in_order(run):
    async def go():
        plan = FaultPlan.profile("stalls", 4, stall_every_s=1.5, stall_s=(1.0, 1.0), freeze_share=1.0)
        h = await start_simulator(synthetic(None, speed=1.0), faults=plan)
        try:
            c = await connect(h.streams_url + f"/ws/{DEPTH}")
            await wait_for(lambda: plan.injected.get("freeze"), 5.0, "a freeze")
            await asyncio.sleep(0.1)
            t_ping = time.monotonic()
            c.tr.send_ping(b"hello?")
            await asyncio.sleep(0.4)
            assert c.pongs == [] and not c.gone.is_set()  # not answered while frozen
            await wait_for(lambda: c.pongs, 2.0, "the late pong")
            await asyncio.sleep(0.3)
            k = largest_silence(c)
            assert 0.8 < c.rx[k] - c.rx[k - 1] < 1.6
            assert c.pongs[0][0] == b"hello?" and c.rx[k - 1] < t_ping and c.pongs[0][1] - t_ping > 0.5
            # Nothing was lost: the diffs held during the freeze arrived late, in a burst, contiguous.
            ds = c.data()
            assert all(b["U"] == a["u"] + 1 for a, b in zip(ds, ds[1:]))
            burst = [t for t in c.rx[k:] if t - c.rx[k] < 0.05]
            assert len(burst) >= 5 and ds[k + len(burst) - 1]["E"] - ds[k]["E"] >= 400
            assert plan.log[0][1:] == ("freeze", "1.000 s")
        finally:
            await h.close()

    run(go())


# -- dropped connections -------------------------------------------------------------------------------------
@pytest.mark.parametrize("abrupt", [False, True])
def test_stream_and_ws_api_connections_are_dropped(run, abrupt):
    async def go():
        plan = FaultPlan.profile("drops", 6, stream_drop_every_s=1.0, ws_api_drop_every_s=1.0,
                                 abrupt_share=1.0 if abrupt else 0.0)
        h = await start_simulator(synthetic(None, speed=2.0), faults=plan)
        try:
            c = await connect(h.streams_url + f"/stream?streams={DEPTH}")
            async with aiohttp.ClientSession() as s:
                async with s.ws_connect(h.ws_api_url) as ws:
                    await asyncio.wait_for(c.gone.wait(), 5.0)
                    msg = await asyncio.wait_for(ws.receive(), 5.0)
                    assert msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR)
                    ws_code = ws.close_code
            assert len(c.msgs) > 0
            if abrupt:
                assert c.close_codes == []  # a TCP abort: no CLOSE frame
                assert ws_code != 1001
            else:
                assert c.close_codes == [1001] and ws_code == 1001
            inj = plan.injected
            assert inj["stream_drop"] >= 1 and inj["ws_api_conn_drop"] >= 1
            assert {k for _, k, _ in plan.log} <= {"stream_drop", "ws_api_conn_drop"}
            assert all(d == ("abort" if abrupt else "close 1001") for _, _, d in plan.log)
            # A new connection works.
            c2 = await connect(h.streams_url + f"/ws/{DEPTH}")
            await wait_for(lambda: c2.msgs, 3.0, "data on a new connection")
        finally:
            await h.close()

    run(go())


# -- latency spikes ------------------------------------------------------------------------------------------
def test_latency_spike_delays_every_frame_in_order(run):
    async def go():
        plan = FaultPlan.profile("latency", 8, latency_every_s=1.0, latency_s=(1.5, 1.5), latency_ms=(300, 300),
                                 delay=0.0)
        # start_ms None: event times follow the wall clock, so arrival - E is the frame's delay.
        h = await start_simulator(SyntheticSource(SyntheticConfig(seed=5), speed=1.0, duration_s=None),
                                  faults=plan)
        try:
            c = await connect(h.streams_url + f"/ws/{DEPTH}")
            async with aiohttp.ClientSession() as s:
                async with s.ws_connect(h.ws_api_url) as ws:
                    await wait_for(lambda: plan.injected.get("latency_spike"), 5.0, "a latency spike")
                    t = time.monotonic()
                    await ws.send_str('{"id":1,"method":"ping"}')
                    reply = await asyncio.wait_for(ws.receive_json(), 3.0)
                    rtt = time.monotonic() - t
            assert reply["status"] == 200 and 0.28 < rtt < 1.0
            assert plan.injected["latency_spike"] == 2  # both connections
            await asyncio.sleep(2.0)
            ds = c.data()
            lag_ms = sorted(rx - d["E"] for rx, d in zip(c.rx_wall_ms, ds))
            assert all(b["U"] == a["u"] + 1 for a, b in zip(ds, ds[1:]))  # delayed, never reordered
            assert lag_ms[-1] > 250 and lag_ms[len(lag_ms) // 5] < 100
        finally:
            await h.close()

    run(go())


# -- WS API error envelopes --------------------------------------------------------------------------------------
def signed(params: dict, ts: int = NOW) -> dict:
    p = {**params, "apiKey": DEFAULT_API_KEY, "timestamp": ts}
    return {**p, "signature": hmac_sha256_hex(DEFAULT_API_SECRET, ws_payload({k: str(v) for k, v in p.items()}))}


class Session:
    """A WsApiSession with a fake transport and a settable server clock."""

    def __init__(self, faults: WsApiFaults) -> None:
        self.m = StaticMarket([BTC], now_ms=NOW - 5)
        self.m.set_book("BTCUSDT", bids=[("100.00", "2")], asks=[("100.10", "1")])
        self.now = NOW
        self.ex = Exchange(self.m, clock_ms=lambda: self.now)
        self.raw: list[bytes] = []
        self.s = WsApiSession(self.ex, self.m, self.raw.append, faults=faults, close=lambda: None)
        self.id = 0

    def call(self, method: str, params: dict | None = None) -> bytes:
        self.id += 1
        req = {"id": self.id, "method": method}
        if params is not None:
            req["params"] = params
        n = len(self.raw)
        self.s.on_message(msgspec.json.encode(req))
        return self.raw[n]

    def place(self, cid: str, type_: str = "LIMIT_MAKER") -> bytes:
        p = {"symbol": "BTCUSDT", "side": "BUY", "type": type_, "price": "99.00", "quantity": "1.00000",
             "newClientOrderId": cid}
        if type_ == "LIMIT":
            p["timeInForce"] = "GTC"
        return self.call("order.place", signed(p, self.now))


def rate_limits(orders10s: int, weight: int, orders: bool = True) -> list[dict]:
    rl = [{"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10, "limit": 50, "count": orders10s},
          {"rateLimitType": "ORDERS", "interval": "DAY", "intervalNum": 1, "limit": 160000, "count": orders10s}]
    return (rl if orders else []) + [{"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1,
                                      "limit": 6000, "count": weight}]


def test_error_429_with_retry_after_then_backoff():
    c = Session(WsApiFaults(FaultPlan.profile("errors", 1, error_5xx=0.0, error_1003=0.0, error_1015=0.0,
                                              error_418=0.0, error_2010=0.0, error_429=1.0).config.ws_api))
    until = NOW + 2000
    err = {"code": -1003, "msg": MSG_1003_WEIGHT, "data": {"serverTime": NOW, "retryAfter": until}}
    assert c.place("a") == msgspec.json.encode(
        {"id": 1, "status": 429, "error": err, "rateLimits": rate_limits(0, 1)})
    assert MSG_1003_WEIGHT.startswith(
        "Too much request weight used; current limit is 6000 request weight per 1 MINUTE.")
    assert c.ex.open_order_ids() == [] and c.ex.received_client_order_ids == {}
    # Until retryAfter every request is refused the same way, whatever its method.
    c.now = NOW + 1999
    r = msgspec.json.decode(c.call("ping"))
    assert r == {"id": 2, "status": 429, "error": {**err, "data": {"serverTime": NOW + 1999, "retryAfter": until}},
                 "rateLimits": rate_limits(0, 2, orders=False)}
    c.now = until
    assert msgspec.json.decode(c.call("ping"))["status"] == 200
    inj = c.s._faults.injected
    assert inj == {"error_429": 1, "backoff_refused": 1} and c.ex.rejects_by_code[-1003] == 2


def test_error_418_ban_is_short_and_exact():
    c = Session(WsApiFaults(FaultPlan.profile("errors", 1, error_5xx=0.0, error_1003=0.0, error_1015=0.0,
                                              error_418=1.0, error_2010=0.0, error_429=0.0, ban_s=3.0).config.ws_api))
    raw = c.call("order.cancel", signed({"symbol": "BTCUSDT", "origClientOrderId": "x"}))
    until = NOW + 3000
    assert raw == msgspec.json.encode({"id": 1, "status": 418, "error": {
        "code": -1003, "msg": f"Way too much request weight used; IP banned until {until}. "
                              "Please use WebSocket Streams for live updates to avoid bans.",
        "data": {"serverTime": NOW, "retryAfter": until}}, "rateLimits": rate_limits(0, 1, orders=False)})
    assert MSG_418.format(until=until) in raw.decode()
    c.now = NOW + 2500
    assert msgspec.json.decode(c.place("b"))["status"] == 418 and c.ex.open_order_ids() == []
    c.now = until
    c.s._faults.enabled = False  # the ban is over; no new fault
    assert msgspec.json.decode(c.place("c"))["status"] == 200


@pytest.mark.parametrize("kind,status,code,msg", [
    ("error_1003", 429, -1003, MSG_1003_QUEUED),
    ("error_1015", 429, -1015, MSG_1015),
    ("error_2010", 400, -2010, None),
])
def test_other_error_replies_exact(kind, status, code, msg):
    rates = {k: 0.0 for k in ("error_5xx", "error_1003", "error_429", "error_1015", "error_418", "error_2010")}
    c = Session(WsApiFaults(FaultPlan.profile("errors", 1, **{**rates, kind: 1.0}).config.ws_api))
    msgs = set()
    for i in range(20):
        raw = c.place(f"o{i}", "LIMIT_MAKER" if i % 2 else "LIMIT")
        r = msgspec.json.decode(raw)
        assert list(r) == ["id", "status", "error", "rateLimits"] and list(r["error"]) == ["code", "msg"]
        assert (r["id"], r["status"], r["error"]["code"]) == (i + 1, status, code)
        assert r["rateLimits"] == rate_limits(0, i + 1)
        if msg is not None:
            assert r["error"]["msg"] == msg
        msgs.add((i % 2, r["error"]["msg"]))
    assert c.ex.open_order_ids() == [] and c.s._faults.injected == {kind: 20}
    if kind == "error_2010":
        # LIMIT: insufficient balance; LIMIT_MAKER: either venue message.
        assert msgs == {(0, MSG_2010_BALANCE), (1, MSG_2010_BALANCE), (1, MSG_2010_WOULD_TAKE)}
    assert MSG_1015 == "Too many new orders; current limit is 50 orders per 10 SECOND."
    # -1015 and -2010 are new-order rejections: a cancel is processed (and fails on its own terms).
    r = msgspec.json.decode(c.call("order.cancel", signed({"symbol": "BTCUSDT", "origClientOrderId": "o1"})))
    assert r["error"]["code"] == (-1003 if kind == "error_1003" else -2011)


ERROR_RATES = {k: 0.0 for k in ("error_5xx", "error_1003", "error_429", "error_1015", "error_418", "error_2010")}


def expected_error(kind: str, server_ms: int, retry_ms: int) -> tuple[int, dict]:
    data = {"serverTime": server_ms, "retryAfter": retry_ms}
    return {
        "error_1003": (429, {"code": -1003, "msg": "Too many requests queued."}),
        "error_429": (429, {"code": -1003, "msg": MSG_1003_WEIGHT, "data": data}),
        "error_1015": (429, {"code": -1015, "msg": "Too many new orders; current limit is 50 orders per 10 SECOND."}),
        "error_418": (418, {"code": -1003, "msg": f"Way too much request weight used; IP banned until {retry_ms}. "
                                                  "Please use WebSocket Streams for live updates to avoid bans.",
                            "data": data}),
        "error_2010": (400, {"code": -2010, "msg": "Account has insufficient balance for requested action."}),
    }[kind]


@pytest.mark.parametrize("kind", ["error_1003", "error_429", "error_1015", "error_418", "error_2010"])
def test_error_envelopes_on_the_wire(run, kind):
    async def go():
        plan = FaultPlan.profile("errors", 9, **{**ERROR_RATES, kind: 1.0}, retry_after_s=1.0, ban_s=1.0)
        h = await start_simulator(synthetic(None, speed=1.0), faults=plan)
        try:
            async with aiohttp.ClientSession() as s:
                async with s.ws_connect(h.ws_api_url) as ws:
                    t0 = time.time_ns() // 1_000_000
                    req = {"id": "o-1", "method": "order.place", "params": signed(
                        {"symbol": "BTCUSDT", "side": "SELL", "type": "LIMIT", "timeInForce": "GTC",
                         "price": "70000.00", "quantity": "0.00100", "newClientOrderId": "x-1"}, t0)}
                    await ws.send_bytes(msgspec.json.encode(req))
                    text = (await asyncio.wait_for(ws.receive(), 5.0)).data
                    got = msgspec.json.decode(text)
                    server_ms = got["error"].get("data", {}).get("serverTime", 0)
                    retry_ms = got["error"].get("data", {}).get("retryAfter", 0)
                    status, err = expected_error(kind, server_ms, retry_ms)
                    # Byte for byte: key order id, status, error{code, msg[, data{serverTime, retryAfter}]}, rateLimits.
                    assert text == msgspec.json.encode({"id": "o-1", "status": status, "error": err,
                                                        "rateLimits": got["rateLimits"]}).decode()
                    assert [r["rateLimitType"] for r in got["rateLimits"]] == ["ORDERS", "ORDERS", "REQUEST_WEIGHT"]
                    if "data" in err:
                        assert t0 - 50 <= server_ms <= t0 + 1000 and retry_ms == server_ms + 1000
                    # Within retryAfter every request is refused alike; afterwards requests go through.
                    await ws.send_str('{"id":2,"method":"ping","params":{}}')
                    r = await asyncio.wait_for(ws.receive_json(), 5.0)
                    if kind in ("error_429", "error_418"):
                        assert (r["id"], r["status"], r["error"]["code"]) == (2, status, -1003)
                        assert r["error"]["data"]["retryAfter"] == retry_ms and r["error"]["msg"] == err["msg"]
                        await asyncio.sleep(max(0.0, (retry_ms - time.time_ns() // 1_000_000) / 1000) + 0.05)
                        await ws.send_str('{"id":3,"method":"ping","params":{}}')
                        r = await asyncio.wait_for(ws.receive_json(), 5.0)
                    assert r["status"] == 200
            assert h.exchange.open_order_ids() == [] and h.exchange.received_client_order_ids == {}
            inj = plan.injected
            assert inj[kind] == 1 and inj.get("backoff_refused", 0) == (kind in ("error_429", "error_418"))
        finally:
            await h.close()

    run(go())


def test_ws_api_delayed_dropped_and_cut_on_the_wire(run):
    async def go():
        plan = FaultPlan.profile("latency", 4, delay=1.0, delay_s=0.3, delay_max_s=0.3, latency_every_s=None)
        h = await start_simulator(synthetic(None, speed=1.0), faults=plan)

        async def place(ws, cid: str, rid: int) -> None:
            await ws.send_bytes(msgspec.json.encode({"id": rid, "method": "order.place", "params": signed(
                {"symbol": "BTCUSDT", "side": "SELL", "type": "LIMIT", "timeInForce": "GTC", "price": "70000.00",
                 "quantity": "0.00100", "newClientOrderId": cid}, time.time_ns() // 1_000_000)}))

        try:
            async with aiohttp.ClientSession() as s:
                async with s.ws_connect(h.ws_api_url) as ws:
                    t = time.monotonic()
                    await place(ws, "late-1", 1)
                    r = await asyncio.wait_for(ws.receive_json(), 3.0)
                    assert r["id"] == 1 and r["status"] == 200 and 0.28 < time.monotonic() - t < 1.0
                    plan.ws_api.profile = dataclasses.replace(plan.ws_api.profile, delay=0.0, drop=1.0)
                    await place(ws, "lost-2", 2)
                    with pytest.raises(asyncio.TimeoutError):
                        await asyncio.wait_for(ws.receive_json(), 0.5)
                    assert "lost-2" in h.exchange.received_client_order_ids  # processed, answer dropped
                    plan.ws_api.profile = dataclasses.replace(plan.ws_api.profile, drop=0.0, cut_after=1.0,
                                                              min_requests_between_cuts=0)
                    await place(ws, "cut-3", 3)
                    msg = await asyncio.wait_for(ws.receive(), 3.0)
                    assert msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
            assert len(h.exchange.open_order_ids()) == 3
            assert plan.injected == {"delay": 1, "drop": 1, "cut_after": 1}
        finally:
            await h.close()

    run(go())


# -- determinism --------------------------------------------------------------------------------------------------
def test_same_seed_same_faults_on_the_wire(run):
    path = f"/stream?streams={DEPTH}/{TRADE}/{TICKER}"

    async def go():
        # chaos without the faults that cut or pause the client's connection: what it
        # receives is then a pure function of the seed.
        kw = dict(stream_drop_every_s=None, stall_every_s=None, latency_every_s=None, gap=0.05, dup=0.02,
                  reorder=0.02)
        a_plan, b_plan, c_plan = (FaultPlan.profile("chaos", s, **kw) for s in (21, 21, 22))
        a, _ = await capture(a_plan, path, 10.0)
        b, _ = await capture(b_plan, path, 10.0)
        c, _ = await capture(c_plan, path, 10.0)
        assert a == b and a_plan.log == b_plan.log and a_plan.injected == b_plan.injected
        assert a_plan.total > 20 and set(a_plan.injected) == {"gap", "dup_frame", "reorder_frame"}
        assert a != c and a_plan.log != c_plan.log

    run(go())


def test_schedules_follow_the_market_clock_at_any_speed(run):
    async def go():
        logs = []
        for speed in (None, 8.0):
            p = FaultPlan.profile("chaos", 5, gap=0.0, dup=0.0, reorder=0.0, stall_every_s=4.0,
                                  latency_every_s=3.0, stream_drop_every_s=5.0)
            h = await start_simulator(synthetic(12.0, speed=speed), autostart=False, faults=p)
            try:
                c = await connect(h.streams_url + f"/ws/{DEPTH}")
                api = await connect(h.ws_api_url)  # latency spikes also hit the WS API
                h.start()
                await h.ended
            finally:
                await h.close()
            assert c.gone.is_set() and api.gone.is_set()
            logs.append(p.log)
        # The same faults at the same market times, played 8x or as fast as possible.
        assert logs[0] == logs[1]
        kinds = [k for _, k, _ in logs[0]]
        assert kinds.count("stream_drop") == 1 and kinds.count("latency_spike") >= 2
        assert {"stall", "freeze"} & set(kinds)

    run(go(), timeout=40.0)


def test_ws_api_decisions_per_seed():
    def decisions(seed):
        f = FaultPlan.profile("chaos", seed).ws_api
        return [f.decide(m, str(i)) for i, m in enumerate(["order.place", "order.cancel", "depth"] * 3000)]

    a, b, c = decisions(1), decisions(1), decisions(2)
    assert a == b and a != c
    kinds = {x for x in a if x}
    assert kinds >= {"drop", "delay", "error_5xx", "error_1003", "error_429", "error_1015", "error_418", "error_2010"}
    # -1015 and -2010 never hit anything but order.place.
    methods = ["order.place", "order.cancel", "depth"] * 3000
    assert all(m == "order.place" for m, x in zip(methods, a) if x in ("error_1015", "error_2010"))


# -- volume under chaos ----------------------------------------------------------------------------------------------
def test_chaos_yields_over_50_faults_in_three_market_minutes(run):
    async def go():
        plan = FaultPlan.profile("chaos", 1)
        h = await start_simulator(synthetic(180.0, seed=3), autostart=False, faults=plan)
        url = h.streams_url + f"/stream?streams={DEPTH}/{TRADE}/{TICKER}"
        clients = [await connect(url)]

        async def reconnect():
            while True:
                await clients[-1].gone.wait()
                clients.append(await connect(url))

        task = asyncio.get_running_loop().create_task(reconnect())
        try:
            h.start()
            await h.ended
        finally:
            task.cancel()
            await h.close()
        inj = plan.injected
        assert plan.total > 50, inj
        assert {"gap", "dup_frame", "reorder_frame", "stream_drop", "latency_spike"} <= set(inj), inj
        assert inj.get("stall", 0) + inj.get("freeze", 0) >= 1
        assert len(clients) >= inj["stream_drop"]
        assert sum(len(c.msgs) for c in clients) > 20_000

    run(go(), timeout=60.0)
