"""The rate limiter in the order path: every request takes its cost, 429 waits out retryAfter, 418 halts."""
from __future__ import annotations

import asyncio
import time

import msgspec
from failclosed_helpers import Resting, Timeline, run_config, run_loop  # noqa: F401
from picows import WSListener, WSMsgType, ws_create_server

from engine.instruments import get_builtin
from engine.live.runner import run
from engine.live.wsapi import RateLimited, WsApiClient
from engine.orders.signing import HmacSigner
from engine.orders.tracker import OrderTracker
from engine.ratelimit import RateLimiter
from engine.risk import RiskLimits
from engine.sim.auth import DEFAULT_API_KEY, DEFAULT_API_SECRET
from engine.sim.faults import WsApiFaults
from engine.sim.server import start_simulator
from engine.sim.synthetic import SyntheticConfig, SyntheticSource

BTC = get_builtin("BTCUSDT", "spot")


# -- the client against a scripted venue -----------------------------------------------------------------
class _Scripted(WSListener):
    # Answers order.place with the scripted (status, error) in turn, everything else with 200.
    def __init__(self, script, received):
        self.script = script
        self.received = received

    def on_ws_connected(self, transport):
        self.t = transport

    def on_ws_frame(self, transport, frame):
        if frame.msg_type != WSMsgType.TEXT:
            if frame.msg_type == WSMsgType.CLOSE:
                transport.disconnect()
            return
        req = msgspec.json.decode(frame.get_payload_as_bytes())
        self.received.append((time.monotonic(), req["method"]))
        now = time.time_ns() // 1_000_000
        rl = [{"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1, "limit": 6000,
               "count": 5000}]
        if req["method"] == "order.place" and self.script:
            status, code, after_ms = self.script.pop(0)
            body = {"id": req["id"], "status": status, "rateLimits": rl,
                    "error": {"code": code, "msg": "scripted", "data": {"serverTime": now,
                                                                        "retryAfter": now + after_ms}}}
        else:
            body = {"id": req["id"], "status": 200, "result": {"orderId": 1}, "rateLimits": rl}
        transport.send(WSMsgType.TEXT, msgspec.json.encode(body))


def test_client_takes_costs_waits_out_429_and_reports_418(run_loop):
    async def main():
        received: list = []
        script = [(429, -1003, 400), (418, -1003, 300)]
        server = await ws_create_server(lambda _r: _Scripted(script, received), "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        lim = RateLimiter.spot_defaults(backoff_initial_ms=100, backoff_max_ms=1000)
        tracker = OrderTracker({"BTCUSDT": BTC})
        bans: list[str] = []
        c = WsApiClient(f"ws://127.0.0.1:{port}/ws-api/v3", HmacSigner(DEFAULT_API_KEY, DEFAULT_API_SECRET),
                        tracker, {"BTCUSDT": BTC}, limiter=lim, on_ban=bans.append)
        out = {}
        try:
            await c.connect(5)

            def place(cid):
                tracker.on_place_sent(cid, "BTCUSDT", "BUY", 6_000_000, 100, True)
                try:
                    c.send_place(cid, "BTCUSDT", "BUY", 6_000_000, 100, True, 0)
                except RateLimited as e:
                    tracker.on_place_not_sent(cid, repr(e))
                    return e
                return None

            t429 = time.monotonic()
            assert place("a") is None
            await asyncio.sleep(0.05)
            out["after_429"] = tracker.get("a").status, lim.blocked
            # The venue's count (5000 of 6000, more than ours) was adopted.
            out["in_use"] = lim.bucket("REQUEST_WEIGHT", "MINUTE").in_use
            # Refused locally, never sent, while retryAfter runs (400 ms), cancels included.
            out["refused"] = [place("b"), place("c")]
            try:
                c.send_cancel("a", "BTCUSDT", 0)
            except RateLimited as e:
                out["cancel_refused"] = e
            n_before = len(received)
            while lim.blocked:
                await asyncio.sleep(0.01)
            out["waited"] = time.monotonic() - t429
            out["quiet"] = len(received) == n_before
            assert place("d") is None  # allowed again; the venue bans us (418)
            await asyncio.sleep(0.05)
            out["ban"] = (list(bans), lim.banned, lim.bans)
            out["after_ban"] = place("e")
            return out, received
        finally:
            await c.close(1)
            server.close()

    out, received = run_loop(main(), timeout=20)
    assert out["after_429"] == ("REJECTED", True) and out["in_use"] >= 5000
    assert all(isinstance(e, RateLimited) and e.wait_ns > 0 for e in out["refused"])
    assert isinstance(out["cancel_refused"], RateLimited)
    assert out["quiet"] and 0.38 <= out["waited"] < 1.0
    bans, banned, n = out["ban"]
    assert len(bans) == 1 and "418" in bans[0] and banned and n == 1
    assert isinstance(out["after_ban"], RateLimited)
    assert [m for _t, m in received].count("order.place") == 2  # a and d: nothing else ever left


# -- the engine against the simulator's error replies --------------------------------------------------
class _TimedFaults(WsApiFaults):
    # Remember when each fault was injected (monotonic s).
    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.times: list[tuple[float, str, str]] = []

    def record(self, fault, method, client_order_id=""):
        super().record(fault, method, client_order_id)
        self.times.append((time.monotonic(), fault, method))


def test_429_is_waited_out(run_loop):
    async def main():
        faults = _TimedFaults("none", 5, error_429=0.08, retry_after_s=0.4, methods=("order.place",))
        handle = await start_simulator(SyntheticSource(SyntheticConfig(seed=51)), ws_api_faults=faults)
        try:
            strat = Resting(n=2, churn_s=0.1)
            s = await run(run_config(handle, strat, duration_s=4.0))
            return s, faults, strat, handle, time.monotonic()
        finally:
            await handle.close()

    s, faults, strat, handle, t_end = run_loop(main())
    hits = [t for t, f, _m in faults.times if f == "error_429"]
    assert hits and s.rate_limit["rate_limited"] >= len(hits) >= 1
    # Inside a 429's window the venue only saw requests already on the wire when it answered.
    for t0 in hits:
        late = [t for t, f, _m in faults.times if f == "backoff_refused" and t0 < t < t0 + 0.4]
        assert all(t - t0 < 0.1 for t in late), (t0, late)
    # ... and quoting went on once the wait was over (retryAfter, at least the 1 s back-off).
    for t0 in [t for t in hits if t < t_end - 2.5]:
        assert [t for t, *_ in strat.placements if t0 + 0.4 < t < t0 + 1.6], t0
    assert s.rate_limit["local_refusals"] > 0 and not s.risk and s.kill_switch == ""
    assert s.unhandled_exceptions == 0 and s.stop_clean and handle.exchange.open_order_ids() == []


def test_418_halts_trading_and_cancels_after_the_ban(run_loop):
    async def main():
        faults = _TimedFaults("none", 3, error_418=0.15, ban_s=0.6, methods=("order.place",))
        handle = await start_simulator(SyntheticSource(SyntheticConfig(seed=52)), ws_api_faults=faults)
        tl = Timeline(handle.exchange)
        try:
            strat = Resting(n=3, churn_s=0.15)
            s = await run(run_config(handle, strat, duration_s=3.5, observer=tl,
                                     risk=RiskLimits(price_band_bps=0, max_orders_per_window=100)))
            return s, faults, strat, tl, handle
        finally:
            await handle.close()

    s, faults, strat, tl, handle = run_loop(main())
    bans = [t for t, f, _m in faults.times if f == "error_418"]
    assert len(bans) == 1 and s.rate_limit["bans"] == 1
    t0 = bans[0]
    # Halted for good by the risk manager; no order placed after the ban.
    assert s.risk["halted"] and "banned" in s.risk["halt_reason"] and "banned" in s.halt_reason
    assert not [t for t, *_ in strat.placements if t > t0 + 0.1]
    # The cancel-all waited for the ban to end (the venue refuses everything until then), then confirmed.
    risk_ev = [c for c in s.cancel_alls if c.kind == "risk"]
    assert risk_ev and risk_ev[0].latency_ms >= 500 and risk_ev[0].route
    late = [t for t, f, _m in faults.times if f == "backoff_refused" and t > t0 + 0.1]
    assert late == []
    assert [n for k, _r, n in tl.open_at_confirm if k == "risk"] == [0]
    assert s.unhandled_exceptions == 0 and s.stop_clean and handle.exchange.open_order_ids() == []
