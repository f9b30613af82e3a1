"""Graceful stop: halt, wait for orders in flight, cancel until confirmed; exit 0 only when nothing is left."""
from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import msgspec
from failclosed_helpers import Resting, Timeline, run_config, run_loop  # noqa: F401
from picows import WSListener, WSMsgType, ws_create_server

from engine.config import RateLimitConfig
from engine.live.runner import run
from engine.sim.faults import WsApiFaults
from engine.sim.server import start_simulator
from engine.sim.synthetic import SyntheticConfig, SyntheticSource

ROOT = Path(__file__).resolve().parents[2]

class _Updates(Resting):
    # Resting, plus the arrival time (monotonic ns) of every NEW acknowledgement.
    def __init__(self, **kw):
        super().__init__(**kw)
        self.acks_ns: list[int] = []

    def on_order_update(self, update):
        if update.status == "NEW":
            self.acks_ns.append(update.ts_local_ns)


def test_stop_waits_for_orders_in_flight_then_cancels(run_loop):
    async def main():
        # Every order.place is executed at once but answered 400 ms later.
        faults = WsApiFaults("none", 0, delay=1.0, delay_s=0.4, methods=("order.place",))
        handle = await start_simulator(SyntheticSource(SyntheticConfig(seed=71)), ws_api_faults=faults)
        tl = Timeline(handle.exchange)
        strat = _Updates(n=3, churn_s=0.1)
        try:
            s = await run(run_config(handle, strat, duration_s=1.5, observer=tl, order_timeout_s=2.0))
            return s, strat, tl, handle
        finally:
            await handle.close()

    s, strat, tl, handle = run_loop(main())
    stop = [p for p in tl.of("cancel_all_confirmed") if p.kind == "stop"][0]
    # The stop's cancel-all started only after the last answer to an order request came in...
    assert strat.acks_ns and stop.detected_ns >= max(strat.acks_ns)
    # ... so nothing was in doubt, nothing timed out, nothing was left.
    assert s.orders_acked == s.orders_sent and s.timeouts == 0 and s.unknown_left == 0
    assert s.stop_clean and s.stop_report == [] and s.open_orders_at_exit == 0
    assert handle.exchange.open_order_ids() == []


def test_stop_is_not_clean_when_the_venue_refuses_the_cancels(run_loop):
    async def main():
        # The venue refuses every cancel (429 -1003), and there is no REST route.
        faults = WsApiFaults("none", 0, error_1003=1.0, methods=("openOrders.cancelAll", "order.cancel"))
        handle = await start_simulator(SyntheticSource(SyntheticConfig(seed=72)), ws_api_faults=faults)
        try:
            # Bids 50 USDT under the market: they stay open (the synthetic market moves on after the run).
            s = await run(run_config(handle, Resting(n=3, depth=5000), duration_s=1.2, rest_url=None,
                                     shutdown_timeout_s=1.0,
                                     rate_limit=RateLimitConfig(backoff_initial_ms=20, backoff_max_ms=50)))
            return s, handle, len(handle.exchange.open_order_ids())
        finally:
            await handle.close()

    s, handle, venue_open = run_loop(main(), timeout=60)
    assert venue_open == 3
    assert not s.stop_clean and s.open_orders_at_exit == 3
    assert any("cancel-all not confirmed" in r for r in s.stop_report)
    assert any("the venue reports 3 open orders" in r for r in s.stop_report)


# -- the CLI's exit status, against a venue that keeps an order --------------------------------------------
class _StuckVenue(WSListener):
    # A WS API whose account holds one order nobody can cancel.
    STUCK = {"symbol": "BTCUSDT", "orderId": 9, "clientOrderId": "stuck-1", "price": "1.00", "origQty": "1.00000",
             "executedQty": "0", "cummulativeQuoteQty": "0", "status": "NEW", "type": "LIMIT", "side": "BUY",
             "timeInForce": "GTC"}

    def on_ws_connected(self, transport):
        self.t = transport

    def on_ws_frame(self, transport, frame):
        if frame.msg_type == WSMsgType.CLOSE:
            transport.send_close(frame.get_close_code())
            transport.disconnect()
            return
        if frame.msg_type == WSMsgType.PING:
            transport.send_pong(frame.get_payload_as_bytes())
            return
        if frame.msg_type != WSMsgType.TEXT:
            return
        req = msgspec.json.decode(frame.get_payload_as_bytes())
        m, rid = req.get("method"), req.get("id")
        ok = {"userDataStream.subscribe.signature": {"subscriptionId": 0},
              "openOrders.status": [self.STUCK],
              "openOrders.cancelAll": []}
        if m in ok:
            body = {"id": rid, "status": 200, "result": ok[m]}
        elif m == "order.cancel":
            body = {"id": rid, "status": 400, "error": {"code": -2011, "msg": "Unknown order sent."}}
        else:
            body = {"id": rid, "status": 400, "error": {"code": -1020, "msg": "This operation is not supported."}}
        transport.send(WSMsgType.TEXT, msgspec.json.encode(body))


class _Silent(WSListener):
    def on_ws_frame(self, transport, frame):
        if frame.msg_type == WSMsgType.PING:
            transport.send_pong(frame.get_payload_as_bytes())
        elif frame.msg_type == WSMsgType.CLOSE:
            transport.send_close(frame.get_close_code())
            transport.disconnect()


SECRET = "s3cr3t-must-never-be-printed-0123456789abcdef"


def test_cli_exits_non_zero_with_a_report_when_the_venue_keeps_an_order(tmp_path):
    async def main():
        server = await ws_create_server(
            lambda r: _StuckVenue() if r.path.startswith(b"/ws-api") else _Silent(), "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        cfg = tmp_path / "venue.toml"
        cfg.write_text(f"""
[venue]
streams_url = "ws://127.0.0.1:{port}"
ws_api_url = "ws://127.0.0.1:{port}/ws-api/v3"
rest_url = "http://127.0.0.1:9"
[orders]
stop_timeout_ms = 800
cancel_timeout_ms = 300
""")
        env = {"MM_API_KEY": "fake-api-key-for-the-test", "MM_API_SECRET": SECRET, "PATH": "/usr/bin:/bin",
               "HOME": str(tmp_path)}
        out = tmp_path / "summary.json"
        p = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "engine.cli", "run", "--venue", "config", "--config", str(cfg), "--duration", "1",
            "--state-dir", str(tmp_path / "state"), "--summary-json", str(out),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env, cwd=str(ROOT))
        stdout, stderr = await asyncio.wait_for(p.communicate(), 60)
        server.close()
        return p.returncode, stdout.decode(), stderr.decode(), json.loads(out.read_text())

    rc, stdout, stderr, doc = asyncio.run(main())
    assert rc == 1, stderr[-2000:]
    assert "the stop was NOT clean" in stderr and "stuck-1" in stderr
    assert doc["open_orders_at_exit"] == 1 and not doc["stop_clean"] and doc["stop_report"]
    assert doc["reconciliations"][0]["errors"]  # it tried to cancel the foreign order at start
    assert SECRET not in stdout and SECRET not in stderr  # credentials never reach the output
    assert (tmp_path / "state" / "epoch-mm").read_text().strip().isdigit()


def test_cli_with_the_kill_file_present_never_quotes(tmp_path):
    kill = tmp_path / "KILL"
    kill.write_text("")
    out = tmp_path / "s.json"
    p = subprocess.run([sys.executable, "-m", "engine.cli", "run", "--duration", "2", "--state-dir",
                        str(tmp_path / "state"), "--kill-file", str(kill), "--summary-json", str(out)],
                       capture_output=True, text=True, timeout=60, cwd=str(ROOT))
    assert p.returncode == 0, p.stderr[-2000:]
    doc = json.loads(out.read_text())
    assert doc["kill_switch"] == f"kill file {kill}" and doc["orders_sent"] == 0
    assert [c["kind"] for c in doc["cancel_alls"]][:1] == ["kill"] and doc["stop_clean"]
    assert "kill file" in p.stderr
