"""Cancel-all on disconnect: by the WS API, by REST when the WS API is down or mute; USD-M's dead man's switch."""
from __future__ import annotations

import asyncio
import hashlib
import hmac
from urllib.parse import parse_qsl

from aiohttp import web
from failclosed_helpers import (Resting, Timeline, drop_streams_at, drop_ws_api_at, fast_reconnect,  # noqa: F401
                                run_config, run_loop)

from engine.live.rest import DeadMansSwitch, RestClient, RestError
from engine.live.runner import run
from engine.orders.signing import HmacSigner
from engine.sim.auth import DEFAULT_API_KEY, DEFAULT_API_SECRET
from engine.sim.faults import WsApiFaults
from engine.sim.server import start_simulator
from engine.sim.synthetic import SyntheticConfig, SyntheticSource


def _clean(s, handle):
    assert s.unhandled_exceptions == 0 and s.strategy_calls_on_invalid_book == 0
    assert s.duplicate_client_order_ids == 0 and handle.exchange.duplicate_client_order_ids() == []
    assert s.stop_clean and s.open_orders_at_exit == 0 and handle.exchange.open_order_ids() == []


def test_market_data_loss_cancels_everything_by_the_ws_api(run_loop):
    async def main():
        handle = await start_simulator(SyntheticSource(SyntheticConfig(seed=31)))
        tl = Timeline(handle.exchange)
        try:
            task = asyncio.get_running_loop().create_task(drop_streams_at(handle, 1.5))
            s = await run(run_config(handle, Resting(), duration_s=3.5, observer=tl))
            dropped = await task
            return s, tl, handle, dropped
        finally:
            await handle.close()

    s, tl, handle, dropped = run_loop(main())
    assert dropped == 1 and s.disconnects == 1 and tl.open_at_disconnect == [3]
    # Confirmed by the venue (nothing open) through the WS API, which was up; latency measured.
    assert [(k, r, n) for k, r, n in tl.open_at_confirm if k == "disconnect"] == [("disconnect", "ws-api", 0)]
    assert s.cancel_all_on_disconnect == 1 and s.cancel_all_latency_ms.count == 1
    assert 0 < s.cancel_all_latency_ms.max < 1000
    ev = [c for c in s.cancel_alls if c.kind == "disconnect"][0]
    assert ev.route == "ws-api" and ev.latency_ms == s.cancel_all_latency_ms.max
    _clean(s, handle)


def test_trading_connection_loss_cancels_everything_by_rest(run_loop):
    async def main():
        handle = await start_simulator(SyntheticSource(SyntheticConfig(seed=32)))
        tl = Timeline(handle.exchange)
        try:
            task = asyncio.get_running_loop().create_task(drop_ws_api_at(handle, 1.5))
            # The WS API stays down at least 400 ms (back-off): only REST can cancel meanwhile.
            s = await run(run_config(handle, Resting(), duration_s=4.0, observer=tl,
                                     reconnect=fast_reconnect(initial_ms=500, jitter=0.2)))
            dropped = await task
            return s, tl, handle, dropped
        finally:
            await handle.close()

    s, tl, handle, dropped = run_loop(main())
    assert dropped == 1 and s.disconnects == 1 and tl.open_at_disconnect == [3]
    assert [(k, r, n) for k, r, n in tl.open_at_confirm if k == "disconnect"] == [("disconnect", "rest", 0)]
    assert s.cancel_all_on_disconnect == 1 and 0 < s.cancel_all_latency_ms.max < 1000
    # The confirmation came before the WS API was back.
    confirmed = [t for t, k, p in tl.items if k == "cancel_all_confirmed" and p.kind == "disconnect"][0]
    reconciled = [t for t, k, p in tl.items if k == "reconciled" and p.reason == "reconnect"][0]
    assert confirmed < reconciled and s.ws_api_reconnects == 1 and s.rest_requests >= 2
    _clean(s, handle)


def test_mute_ws_api_falls_back_to_rest(run_loop):
    async def main():
        # The venue executes openOrders.cancelAll but its answer never comes back.
        faults = WsApiFaults("none", 0, drop=1.0, methods=("openOrders.cancelAll",))
        handle = await start_simulator(SyntheticSource(SyntheticConfig(seed=33)), ws_api_faults=faults)
        tl = Timeline(handle.exchange)
        try:
            task = asyncio.get_running_loop().create_task(drop_streams_at(handle, 1.5))
            s = await run(run_config(handle, Resting(), duration_s=3.5, observer=tl, cancel_timeout_s=0.3))
            await task
            return s, tl, handle, faults
        finally:
            await handle.close()

    s, tl, handle, faults = run_loop(main())
    assert faults.injected["drop"] >= 1 and s.disconnects == 1
    assert [(k, r, n) for k, r, n in tl.open_at_confirm if k == "disconnect"] == [("disconnect", "rest", 0)]
    # The WS API attempt waited its 300 ms bound, then REST confirmed.
    assert 300 <= s.cancel_all_latency_ms.max < 2000
    _clean(s, handle)


# -- USD-M countdownCancelAll (the simulator has no such endpoint: a fake venue) -------------------------
class _FakeFutures:
    def __init__(self, fail_first: int = 0) -> None:
        self.calls: list[dict] = []
        self.fail_first = fail_first

    async def countdown(self, request: web.Request) -> web.Response:
        raw = request.rel_url.raw_query_string
        params = dict(parse_qsl(raw))
        payload = raw[:raw.index("&signature=")]
        good = hmac.new(DEFAULT_API_SECRET.encode(), payload.encode(), hashlib.sha256).hexdigest()
        ok_sig = params.get("signature") == good and request.headers.get("X-MBX-APIKEY") == DEFAULT_API_KEY
        self.calls.append(dict(params, _ok=ok_sig, _method=request.method))
        if self.fail_first > 0:
            self.fail_first -= 1
            return web.json_response({"code": -1008, "msg": "Server is currently overloaded"}, status=503)
        if not ok_sig:
            return web.json_response({"code": -1022, "msg": "Signature for this request is not valid."}, status=400)
        return web.json_response({"symbol": params["symbol"], "countdownTime": params["countdownTime"]},
                                 headers={"X-MBX-USED-WEIGHT-1M": str(10 * len(self.calls))})


def test_dead_mans_switch_heartbeat_and_disarm(run_loop):
    async def main():
        fake = _FakeFutures(fail_first=1)
        app = web.Application()
        app.router.add_post("/fapi/v1/countdownCancelAll", fake.countdown)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        rest = RestClient(f"http://127.0.0.1:{port}", HmacSigner(DEFAULT_API_KEY, DEFAULT_API_SECRET),
                          recv_window_ms=5000)
        dms = DeadMansSwitch(rest, "BTCUSDT", countdown_ms=1200, heartbeat_ms=150)
        try:
            dms.start()
            await asyncio.sleep(0.7)
            await dms.stop(disarm=True)
            return fake.calls, dms
        finally:
            await rest.close()
            await runner.cleanup()

    calls, dms = run_loop(main(), timeout=20)
    # A failed beat (503) is counted and the next beat re-arms; every call is signed and carries the countdown.
    assert dms.errors == 1 and dms.heartbeats >= 3 and not dms.armed
    assert all(c["_ok"] and c["_method"] == "POST" and c["symbol"] == "BTCUSDT" for c in calls)
    assert [c["countdownTime"] for c in calls[:-1]] == ["1200"] * (len(calls) - 1)
    assert calls[-1]["countdownTime"] == "0"  # disarmed at the clean stop
    assert len(calls) == dms.heartbeats + dms.errors + 1


def test_rest_errors_carry_the_venue_code(run_loop):
    async def main():
        handle = await start_simulator(SyntheticSource(SyntheticConfig(seed=34)))
        rest = RestClient(handle.rest_url, HmacSigner(DEFAULT_API_KEY, "wrong-secret"))
        good = RestClient(handle.rest_url, HmacSigner(DEFAULT_API_KEY, DEFAULT_API_SECRET))
        try:
            try:
                await rest.open_orders("BTCUSDT")
            except RestError as e:
                err = e
            # Nothing open: DELETE openOrders answers -2011, which the client reads as "nothing to cancel".
            return err, await good.cancel_all("BTCUSDT"), await good.open_orders("BTCUSDT")
        finally:
            await rest.close()
            await good.close()
            await handle.close()

    err, cancelled, left = run_loop(main(), timeout=20)
    assert err.status == 400 and err.code == -1022
    assert cancelled == [] and left == []
