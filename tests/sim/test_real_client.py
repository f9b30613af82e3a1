"""Binance's official Python SDK (``binance-sdk-spot``), unchanged, against the simulator.

The SDK gets the simulator's base URLs, the test keys, timeouts and retry counts through
its own ``Configuration*`` objects; no SDK code or setting beyond those is touched. On the synthetic BTCUSDT market, on
loopback and free ports, on the default asyncio loop and on uvloop, it:

* subscribes to ``btcusdt@depth@100ms`` through its WebSocket streams client and
  checks the diffs (``U``/``u`` contiguous, levels present);
* fetches depth snapshots over REST and over the WebSocket API, and checks that the
  diffs line up with the REST snapshot (``U <= lastUpdateId + 1 <= u``);
* logs on to the WebSocket API with Ed25519 (``session.logon``) and subscribes to the
  user data stream (``userDataStream.subscribe``); events arrive through the SDK's
  handler as its own pydantic models;
* places a resting LIMIT bid over REST (HMAC-signed) and one over the WebSocket API
  (logged-on session), reads each ``executionReport`` NEW, cancels each and reads the
  ``CANCELED`` report (``clientOrderId`` round trip: ``c`` on NEW, ``C`` on CANCELED).
"""
from __future__ import annotations

import asyncio
import time
from decimal import Decimal
from typing import Any, Callable

import pytest
import uvloop
from cryptography.hazmat.primitives import serialization

pytest.importorskip("binance_sdk_spot", reason="binance-sdk-spot is in the [test] extra")

from binance_common.configuration import (  # noqa: E402
    ConfigurationRestAPI,
    ConfigurationWebSocketAPI,
    ConfigurationWebSocketStreams,
)
from binance_sdk_spot.rest_api.models import (  # noqa: E402
    DepthResponse,
    NewOrderSideEnum,
    NewOrderTimeInForceEnum,
    NewOrderTypeEnum,
)
from binance_sdk_spot.spot import Spot  # noqa: E402
from binance_sdk_spot.websocket_api.models import (  # noqa: E402
    ExecutionReport,
    OrderPlaceSideEnum,
    OrderPlaceTimeInForceEnum,
    OrderPlaceTypeEnum,
    OutboundAccountPosition,
    UserDataStreamEventsResponse,
)
from binance_sdk_spot.websocket_streams.models import (  # noqa: E402
    DiffBookDepthResponse,
    DiffBookDepthUpdateSpeedEnum,
)

from engine.sim import start_simulator  # noqa: E402
from engine.sim.auth import (  # noqa: E402
    DEFAULT_API_KEY,
    DEFAULT_API_SECRET,
    DEFAULT_ED25519_API_KEY,
    default_ed25519_private_key,
)

# The SDK's own aiohttp call (ws_connect(timeout=float)); not ours to fix.
pytestmark = pytest.mark.filterwarnings("ignore:parameter 'timeout' of type 'float' is deprecated:DeprecationWarning")

RUNNERS = {"asyncio": asyncio.run, "uvloop": uvloop.run}

SYMBOL = "BTCUSDT"
TICK = Decimal("0.01")
QTY = Decimal("0.001")
# Whole scenario / one awaited condition, seconds.
SCENARIO_TIMEOUT = 60.0
WAIT_TIMEOUT = 10.0


def _ed25519_pem() -> str:
    """The simulator's test Ed25519 key as the PKCS#8 PEM text the SDK's signer loads."""
    return default_ed25519_private_key().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


async def _until(cond: Callable[[], Any], what: str, timeout: float = WAIT_TIMEOUT) -> Any:
    """Poll ``cond()`` until it returns something truthy; fail after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        got = cond()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.01)


def _reports(events: list[UserDataStreamEventsResponse]) -> list[ExecutionReport]:
    return [e.actual_instance for e in events if isinstance(e.actual_instance, ExecutionReport)]


def _report(events: list, order_id: int, exec_type: str) -> ExecutionReport | None:
    """The first executionReport of ``order_id`` with execution type ``exec_type``."""
    for r in _reports(events):
        if r.i == order_id and r.x == exec_type:
            return r
    return None


def _check_levels(levels: list[list[str]], descending: bool) -> None:
    assert levels, "no levels"
    prices = [Decimal(p) for p, _q in levels]
    assert all(Decimal(q) > 0 for _p, q in levels)
    assert prices == sorted(prices, reverse=descending)


def _check_new(r: ExecutionReport, order_id: int, cid: str, price: Decimal) -> None:
    # The SDK picks the model by "e"; ExecutionReport itself has no "e" field.
    assert (r.s, r.c, r.C, r.i) == (SYMBOL, cid, "", order_id)
    assert (r.x, r.X, r.S, r.o, r.f) == ("NEW", "NEW", "BUY", "LIMIT", "GTC")
    assert (Decimal(r.p), Decimal(r.q), Decimal(r.z)) == (price, QTY, 0)
    assert r.w is True and r.E > 0 and r.O > 0


def _check_canceled(r: ExecutionReport, order_id: int, cid: str) -> None:
    assert (r.s, r.C, r.i, r.x, r.X) == (SYMBOL, cid, order_id, "CANCELED", "CANCELED")
    # A cancel without newClientOrderId gets a generated id (Binance: 22 characters).
    assert r.c and r.c != cid
    assert Decimal(r.z) == 0 and r.w is False


async def _scenario() -> None:
    h = await start_simulator()  # synthetic BTCUSDT, 127.0.0.1, free ports
    assert h.rest_url is not None and not h.unavailable, h.unavailable
    client = Spot(
        config_rest_api=ConfigurationRestAPI(
            api_key=DEFAULT_API_KEY, api_secret=DEFAULT_API_SECRET, base_path=h.rest_url,
            timeout=5000, retries=0,  # a retried POST would place a second order
        ),
        config_ws_api=ConfigurationWebSocketAPI(
            api_key=DEFAULT_ED25519_API_KEY, private_key=_ed25519_pem(), stream_url=h.ws_api_url,
            timeout=5000, reconnect_attempts=1,
        ),
        config_ws_streams=ConfigurationWebSocketStreams(stream_url=h.streams_url, reconnect_attempts=1),
    )
    streams = ws = None
    try:
        # -- market data: diff depth stream --------------------------------------------------
        # create_connection() logs and returns None instead of raising when it cannot connect.
        streams = await client.websocket_streams.create_connection()
        assert streams is not None and len(streams.connections) == 1
        stream_errors: list[Any] = []
        streams.on_connection("error", stream_errors.append)
        # The SDK's default SUBSCRIBE id is a hyphenated UUID string; the simulator accepts it.
        diffs: list[DiffBookDepthResponse] = []
        # The enum member itself would render as "@DiffBookDepthUpdateSpeedEnum.UPDATE_SPEED_100ms".
        depth_stream = await streams.diff_book_depth(
            symbol=SYMBOL, update_speed=DiffBookDepthUpdateSpeedEnum.UPDATE_SPEED_100ms.value)
        depth_stream.on("message", diffs.append)
        await _until(lambda: diffs, "a btcusdt@depth@100ms diff")
        d0 = diffs[0]
        assert isinstance(d0, DiffBookDepthResponse)
        assert (d0.e, d0.s) == ("depthUpdate", SYMBOL)
        assert 0 < d0.U <= d0.u and d0.E > 0
        assert d0.b or d0.a
        assert all(len(lv) == 2 and Decimal(lv[0]) > 0 and Decimal(lv[1]) >= 0 for lv in (d0.b or []) + (d0.a or []))

        # -- depth snapshots: REST and WS API --------------------------------------------------
        # The REST client is synchronous (requests); run it off the loop the simulator runs on.
        rest_depth = await asyncio.to_thread(client.rest_api.depth, symbol=SYMBOL, limit=100)
        assert rest_depth.status == 200
        snap = rest_depth.data()
        assert isinstance(snap, DepthResponse)
        assert snap.last_update_id > 0
        _check_levels(snap.bids, descending=True)
        _check_levels(snap.asks, descending=False)
        best_bid, best_ask = Decimal(snap.bids[0][0]), Decimal(snap.asks[0][0])
        assert best_bid < best_ask
        # Binance's local-book recipe: some diff spans lastUpdateId + 1, and diffs are contiguous.
        last_id = snap.last_update_id
        await _until(lambda: diffs[-1].u > last_id, "a diff after the REST snapshot")
        assert any(d.U <= last_id + 1 <= d.u for d in diffs), [(d.U, d.u) for d in diffs]
        assert all(b.U == a.u + 1 for a, b in zip(diffs, diffs[1:])), [(d.U, d.u) for d in diffs]

        ws = await client.websocket_api.create_connection()
        assert ws is not None and len(ws.connections) == 1
        ws_depth = (await ws.depth(symbol=SYMBOL, limit=5)).data()
        assert ws_depth.status == 200, ws_depth
        assert ws_depth.result.last_update_id >= last_id
        assert len(ws_depth.result.bids) == 5 and len(ws_depth.result.asks) == 5
        _check_levels(ws_depth.result.bids, descending=True)

        # -- Ed25519 session.logon + user data stream -------------------------------------------
        logon = (await ws.session_logon()).data()
        assert logon.status == 200, logon
        assert logon.result.api_key == DEFAULT_ED25519_API_KEY and logon.result.authorized_since > 0
        sub = await ws.user_data_stream_subscribe()
        assert sub.response.data().status == 200
        assert isinstance(sub.response.data().result.subscription_id, int)
        events: list[UserDataStreamEventsResponse] = []
        sub.stream.on("message", events.append)

        # A bid 10% under the touch, on the tick: rests, does not fill.
        price = (best_bid * Decimal("0.9")).quantize(TICK)

        # -- REST, HMAC-signed: place, executionReport NEW, cancel, executionReport CANCELED ---
        cid_rest = "sdkRest-1_hmac"
        placed = await asyncio.to_thread(
            client.rest_api.new_order, symbol=SYMBOL, side=NewOrderSideEnum.BUY, type=NewOrderTypeEnum.LIMIT,
            time_in_force=NewOrderTimeInForceEnum.GTC, price=float(price), quantity=float(QTY),
            new_client_order_id=cid_rest)
        assert placed.status == 200
        o = placed.data()
        assert (o.symbol, o.client_order_id, o.status, o.side, o.type) == (SYMBOL, cid_rest, "NEW", "BUY", "LIMIT")
        assert (Decimal(o.price), Decimal(o.orig_qty), Decimal(o.executed_qty)) == (price, QTY, 0)
        assert o.order_id > 0 and o.fills == []
        rep = await _until(lambda: _report(events, o.order_id, "NEW"), "executionReport NEW (REST order)")
        _check_new(rep, o.order_id, cid_rest, price)
        pos = await _until(lambda: [e.actual_instance for e in events
                                    if isinstance(e.actual_instance, OutboundAccountPosition)],
                           "outboundAccountPosition")
        usdt = {b.a: b for b in pos[-1].B}["USDT"]
        assert Decimal(usdt.l) >= price * QTY  # the bid's quote is locked

        canceled = await asyncio.to_thread(client.rest_api.delete_order, symbol=SYMBOL,
                                           orig_client_order_id=cid_rest)
        assert canceled.status == 200
        c = canceled.data()
        assert (c.order_id, c.orig_client_order_id, c.status) == (o.order_id, cid_rest, "CANCELED")
        rep = await _until(lambda: _report(events, o.order_id, "CANCELED"),
                           "executionReport CANCELED (REST order)")
        _check_canceled(rep, o.order_id, cid_rest)
        assert rep.c == c.client_order_id

        # -- WS API on the logged-on session: place, NEW, cancel, CANCELED ---------------------
        cid_ws = "sdkWs-2_ed25519"
        placed_ws = (await ws.order_place(
            symbol=SYMBOL, side=OrderPlaceSideEnum.BUY, type=OrderPlaceTypeEnum.LIMIT,
            time_in_force=OrderPlaceTimeInForceEnum.GTC, price=float(price), quantity=float(QTY),
            new_client_order_id=cid_ws)).data()
        assert placed_ws.status == 200, placed_ws
        ow = placed_ws.result
        assert (ow.client_order_id, ow.status, Decimal(ow.price)) == (cid_ws, "NEW", price)
        assert ow.order_id > o.order_id
        rep = await _until(lambda: _report(events, ow.order_id, "NEW"), "executionReport NEW (WS API order)")
        _check_new(rep, ow.order_id, cid_ws, price)

        open_now = (await ws.open_orders_status(symbol=SYMBOL)).data()
        assert open_now.status == 200 and [x.client_order_id for x in open_now.result] == [cid_ws]

        canceled_ws = (await ws.order_cancel(symbol=SYMBOL, orig_client_order_id=cid_ws)).data()
        assert canceled_ws.status == 200, canceled_ws
        cw = canceled_ws.result
        assert (cw.order_id, cw.orig_client_order_id, cw.status) == (ow.order_id, cid_ws, "CANCELED")
        rep = await _until(lambda: _report(events, ow.order_id, "CANCELED"),
                           "executionReport CANCELED (WS API order)")
        _check_canceled(rep, ow.order_id, cid_ws)

        open_after = (await ws.open_orders_status(symbol=SYMBOL)).data()
        assert open_after.status == 200 and open_after.result == []
        # Every executionReport the account produced, in order, and nothing the SDK could not parse.
        assert [(r.i, r.x) for r in _reports(events)] == [
            (o.order_id, "NEW"), (o.order_id, "CANCELED"), (ow.order_id, "NEW"), (ow.order_id, "CANCELED")]
        assert all(isinstance(e.actual_instance, (ExecutionReport, OutboundAccountPosition)) for e in events)
        assert stream_errors == []
        assert h.exchange.rejects_by_code == {}
    finally:
        for conn in (ws, streams):
            if conn is not None:
                await conn.close_connection(close_session=True)
        await h.close()


@pytest.mark.parametrize("loop", sorted(RUNNERS))
def test_official_sdk_against_simulator(loop: str) -> None:
    RUNNERS[loop](asyncio.wait_for(_scenario(), SCENARIO_TIMEOUT))
