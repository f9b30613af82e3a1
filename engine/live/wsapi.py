"""Binance spot WebSocket API client (``/ws-api/v3``) over picows.

Envelope (venue-protocols.md 3.2): one JSON request per TEXT frame,
``{"id", "method", "params"}``; responses ``{"id", "status", "result" |
"error": {"code", "msg"}}``; user-data events ``{"subscriptionId", "event"}``
(3.6). Request ids are a per-connection counter; no two in flight share one.

Authentication (3.3):

* an Ed25519 key logs the session on (``session.logon``) and subscribes with
  ``userDataStream.subscribe``; requests then carry only ``timestamp``
  (``recvWindow``);
* any other key (HMAC) signs every request (``apiKey``, ``timestamp``,
  ``signature``, section 4.2) and subscribes with
  ``userDataStream.subscribe.signature`` (``session.logon`` is Ed25519-only).

The order methods used by :class:`engine.bus.StrategyContext`
(:meth:`WsApiClient.send_place`, :meth:`~WsApiClient.send_cancel`,
:meth:`~WsApiClient.send_cancel_all`) write the request bytes synchronously and
never await; their responses and the executionReports go to the
:class:`~engine.orders.tracker.OrderTracker`, which informs the strategy. The
moment the ``order.place`` bytes are handed to the socket is stamped
(``time.monotonic_ns``) and, if the order was triggered by a market-data
frame, the tick-to-order latency (frame arrival -> order bytes written) is kept
in :attr:`WsApiClient.tick_to_order_ns`.

Order parameters (3.4): ``LIMIT_MAKER`` (post-only; no ``timeInForce``) or
``LIMIT`` + ``timeInForce=GTC``; ``price`` / ``quantity`` as exact decimal
strings made from ticks and steps; ``newClientOrderId`` from
:mod:`engine.orders.ids`; ``newOrderRespType=ACK`` (fills come from the user
data stream).

No answer is never a failure (3.2, 6.1): an ``order.place`` without a response
after ``request_timeout_s`` makes the order UNKNOWN (:meth:`WsApiClient.expire`),
and so does losing the connection with requests in flight; unanswered cancels put
the order on the tracker's in-doubt list. A response that arrives after its
request expired is still applied (``late_responses``): it is the venue's word.
An order resent with the same client order id is a new *attempt*; responses to an
older attempt cannot reject the newer one.

Rate limits (section 6): with a :class:`~engine.ratelimit.RateLimiter`, every
request first takes its cost (:func:`~engine.ratelimit.request_cost`; cancels are
*priority* requests that may use the safety margin) and is refused locally with
:class:`RateLimited` when it does not fit or while the venue's back-off runs;
every response's ``rateLimits`` and error (status 429 / 418, ``-1003`` /
``-1015``, ``error.data.retryAfter``) goes back to the limiter
(:meth:`~engine.ratelimit.RateLimiter.on_ws_response`). A 418 (IP banned) also
calls ``on_ban``: the runner halts trading.

Liveness: PONG frames are matched against our own pings
(:class:`engine.live.liveness.Liveness`, :meth:`WsApiClient.send_ping`).
"""
from __future__ import annotations

import asyncio
import logging
import time
from array import array
from typing import Any, Callable, Mapping

import msgspec
from picows import WSFrame, WSListener, WSMsgType, WSTransport, ws_connect

from engine.live.conn import ConnectionMixin
from engine.bus import CONNECTED, DISCONNECTED, SHUTDOWN, SIDES, UNKNOWN, ConnectionEvent
from engine.feed.messages import DepthSnapshot
from engine.instruments import Instrument, decimals_of
from engine.orders.signing import ED25519, Signer
from engine.orders.tracker import ExecutionReport, OrderTracker
from engine.ratelimit import PRIORITY_METHODS, request_cost

log = logging.getLogger(__name__)

# Request kinds of the pending table.
_FUTURE = 0
_PLACE = 1
_CANCEL = 2
_CANCEL_ALL = 3
_SNAPSHOT = 4
# picows writes the frame header in front of the payload: it needs 14 bytes of room.
_HEADER_ROOM = 14
# Pause before re-requesting a snapshot whose request failed, s.
_SNAPSHOT_RETRY_S = 0.5
# Expired requests remembered so that their late responses are still applied.
_KEEP_LATE = 65536
# A result that could not be decoded (e.g. invalid UTF-8): the tracker reads it as no answer.
_UNREADABLE = object()


class WsApiError(Exception):
    """An error response (venue-protocols.md 3.2 / 6.1).

    Attributes
    ----------
    status : int
        HTTP-like status (400, 401, 403, 409, 418, 429, 5xx).
    code : int
        Binance error code (section 6.1).
    msg : str
    """

    def __init__(self, status: int, code: int, msg: str) -> None:
        super().__init__(f"status {status}, code {code}: {msg}")
        self.status = status
        self.code = code
        self.msg = msg


class RateLimited(WsApiError):
    """A request refused locally by the rate limiter (never sent); ``wait_ns`` until it may fit."""

    def __init__(self, method: str, wait_ns: int) -> None:
        super().__init__(429, 0, f"{method} held back by the local rate limiter for {wait_ns // 1_000_000} ms")
        self.wait_ns = wait_ns


class _Error(msgspec.Struct, gc=False):
    code: int = 0
    msg: str = ""
    # retryAfter / serverTime (3.2), or cancelReplace's legs: any JSON, never a decode failure.
    data: Any = None


class _Incoming(msgspec.Struct, gc=False):
    # Responses and events in one decode pass; payloads stay raw until routed.
    id: int | str | None = None
    status: int = 0
    # Raw fields cannot be Optional: an empty Raw means "absent".
    result: msgspec.Raw = msgspec.Raw()
    error: _Error | None = None
    subscriptionId: int | None = None
    event: msgspec.Raw = msgspec.Raw()
    rateLimits: msgspec.Raw = msgspec.Raw()


class _EventProbe(msgspec.Struct, gc=False):
    e: str = ""


def format_scaled(units: int, decimals: int) -> str:
    """Write ``units * 10**-decimals`` as a plain decimal string (``600001, 2 -> "6000.01"``)."""
    if decimals == 0:
        return str(units)
    neg = units < 0
    s = str(-units if neg else units).rjust(decimals + 1, "0")
    return f"{'-' if neg else ''}{s[:-decimals]}.{s[-decimals:]}"


class OrderFormatter:
    """Exact price and quantity strings of one instrument, from ticks and steps.

    ``price(ticks) == str(ticks * tick_size)`` and ``qty(steps) == str(steps * step_size)``
    written with the tick's / step's decimals, no exponent, no float.
    """

    __slots__ = ("price_decimals", "tick_units", "qty_decimals", "step_units")

    def __init__(self, inst: Instrument) -> None:
        self.price_decimals = inst.price_decimals
        self.tick_units = inst.tick_units
        self.qty_decimals = decimals_of(inst.step_size)
        self.step_units = int(inst.step_size.scaleb(self.qty_decimals))

    def price(self, ticks: int) -> str:
        """Price string of ``ticks``."""
        return format_scaled(ticks * self.tick_units, self.price_decimals)

    def qty(self, steps: int) -> str:
        """Quantity string of ``steps``."""
        return format_scaled(steps * self.step_units, self.qty_decimals)


class WsApiClient(ConnectionMixin, WSListener):
    """One ``/ws-api/v3`` connection: requests, order path, user data.

    Parameters
    ----------
    url : str
        ``ws://host:port/ws-api/v3`` (or ``wss://ws-api.binance.com:443/ws-api/v3``).
    signer : Signer
        :class:`~engine.orders.signing.HmacSigner` or :class:`~engine.orders.signing.Ed25519Signer`.
    tracker : OrderTracker
    instruments : mapping
        Symbol -> Instrument of the traded symbols (order formatting).
    feed : MarketDataFeed, optional
        Receives depth snapshots requested with :meth:`request_snapshot`.
    recv_window_ms : int, optional
        ``recvWindow`` sent with signed requests (4.4); None sends none (venue default 5000).
    on_connection : callable, optional
        ``f(ConnectionEvent)`` on connect, disconnect, ``serverShutdown``, user-stream end.
    request_timeout_s : float
        An order request unanswered for this long is expired by :meth:`expire`: the
        order becomes UNKNOWN (place) or in doubt (cancel), never failed.
    limiter : RateLimiter, optional
        Shared rate limiter (section 6); None sends without limiting.
    on_ban : callable, optional
        ``f(detail)`` on a 418 response (IP banned, 6.1).
    liveness : Liveness, optional
        Matches PONG frames to our pings (:mod:`engine.live.liveness`).
    """

    conn_name = "ws-api"

    def __init__(self, url: str, signer: Signer, tracker: OrderTracker, instruments: Mapping[str, Instrument],
                 feed: Any = None, recv_window_ms: int | None = None,
                 on_connection: Callable[[ConnectionEvent], None] | None = None,
                 request_timeout_s: float = 5.0, limiter: Any = None,
                 on_ban: Callable[[str], None] | None = None, liveness: Any = None) -> None:
        super().__init__()
        self.url = url
        self.limiter = limiter
        self.on_ban = on_ban
        self.liveness = liveness
        self.signer = signer
        self.tracker = tracker
        self.feed = feed
        self.recv_window_ms = recv_window_ms
        self.on_connection = on_connection
        self.fmt = {s: OrderFormatter(i) for s, i in instruments.items()}
        self.transport: WSTransport | None = None
        self.connected = False
        self.logged_on = False
        self.subscription_id: int | None = None
        self.user_stream_active = False
        self.closing = False
        self.paused = False
        self.request_timeout_s = request_timeout_s
        self.disconnected: asyncio.Future[None] | None = None
        self._next_id = 1
        self._pending: dict[int, tuple[int, Any]] = {}
        self._sent_ns: dict[int, int] = {}
        self._late: dict[int, tuple[int, Any]] = {}
        self._snapshots_in_flight: set[tuple[int, str]] = set()
        self._buf = bytearray(_HEADER_ROOM)
        self._enc = msgspec.json.Encoder()
        self._dec = msgspec.json.Decoder(_Incoming)
        self._dec_er = msgspec.json.Decoder(ExecutionReport)
        self._dec_probe = msgspec.json.Decoder(_EventProbe)
        self._dec_snap = msgspec.json.Decoder(DepthSnapshot)
        self._fragments: list[bytes] = []
        # Measurements (ns): tick-to-order (place), tick-to-cancel, request round trips of orders.
        self.tick_to_order_ns = array("q")
        self.tick_to_cancel_ns = array("q")
        self.order_rtt_ns = array("q")
        # Counters.
        self.requests_sent = 0
        self.responses = 0
        self.events = 0
        self.execution_reports = 0
        self.pings_answered = 0
        self.handler_errors = 0
        self.unmatched_responses = 0
        # 200 answers whose result could not be decoded (see also tracker.bad_responses).
        self.bad_responses = 0
        self.errors_by_code: dict[int, int] = {}
        self.snapshots_requested = 0
        self.snapshots_received = 0
        self.server_shutdown = False
        self.expired_requests = 0
        self.late_responses = 0
        self.connects = 0
        self.rate_limited_local = 0
        self.bans = 0
        self.pongs = 0

    def __repr__(self) -> str:
        return (f"WsApiClient({self.url}, signer={self.signer!r}, connected={self.connected}, "
                f"user_stream={self.user_stream_active})")

    def add_instrument(self, inst: Instrument) -> None:
        """Make ``inst``'s symbol tradable on this connection (order formatting)."""
        self.fmt[inst.symbol] = OrderFormatter(inst)

    # -- connection ------------------------------------------------------------------------------
    async def connect(self, timeout: float = 10.0) -> None:
        """Open the connection (pings are answered by this client, echoing the payload, section 2)."""
        loop = asyncio.get_running_loop()
        self.disconnected = loop.create_future()
        self.closing = False
        await asyncio.wait_for(
            ws_connect(lambda: self, self.url, enable_auto_pong=False, websocket_handshake_timeout=timeout,
                       logger_name="mm.wsapi"),
            timeout)

    async def start_session(self) -> None:
        """Authenticate and subscribe to user data (3.3): logon + subscribe for Ed25519, else signed subscribe."""
        if self.signer.kind == ED25519:
            await self.request("session.logon", self._auth_params({}, force_sign=True))
            self.logged_on = True
            res = await self.request("userDataStream.subscribe")
        else:
            res = await self.request("userDataStream.subscribe.signature", self._auth_params({}, force_sign=True))
        self.subscription_id = int(res["subscriptionId"])
        self.user_stream_active = True

    @property
    def ready(self) -> bool:
        """True when connected with an active user-data subscription and not paused (orders may be sent).

        ``paused`` is set by the runner while it reconciles (at start, after a
        reconnect): no new order before the venue's state is known.
        """
        return self.connected and self.user_stream_active and not self.closing and not self.paused

    # -- picows callbacks -------------------------------------------------------------------------
    def on_ws_connected(self, transport: WSTransport) -> None:
        self.transport = transport
        self.connected = True
        self.connects += 1
        self._event(CONNECTED, "")

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        self.connected = False
        self.user_stream_active = False
        self.logged_on = False
        pending, self._pending = self._pending, {}
        self._sent_ns.clear()
        # A new connection never answers an old request id.
        self._late.clear()
        self._snapshots_in_flight.clear()
        for kind, ctx in pending.values():
            if kind == _FUTURE and not ctx.done():
                ctx.set_exception(ConnectionError("WS API connection closed"))
            elif kind == _PLACE:
                # The outcome of an unanswered order is unknown until reconciled (3.2, 6.1).
                self.tracker.on_place_unknown(ctx[0], "connection lost before the response", ctx[1])
            elif kind == _CANCEL:
                self.tracker.on_cancel_timeout(ctx)
            elif kind == _CANCEL_ALL:
                self.tracker.on_cancel_all_timeout(ctx)
        if self.disconnected is not None and not self.disconnected.done():
            self.disconnected.set_result(None)
        self._event(DISCONNECTED, "closing" if self.closing else "lost")

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        t = frame.msg_type
        if t == WSMsgType.TEXT or (t == WSMsgType.CONTINUATION and self._fragments):
            if not frame.fin:
                self._fragments.append(frame.get_payload_as_bytes())
                return
            data = frame.get_payload_as_bytes()
            if self._fragments:
                self._fragments.append(data)
                data = b"".join(self._fragments)
                self._fragments.clear()
            try:
                self._on_message(data)
            except Exception:
                self.handler_errors += 1
                if self.handler_errors <= 10:
                    log.exception("WS API message handling failed")
        elif t == WSMsgType.PING:
            # The venue requires the pong to echo the ping's payload (section 2, 3.1).
            transport.send_pong(frame.get_payload_as_bytes())
            self.pings_answered += 1
        elif t == WSMsgType.PONG:
            self.pongs += 1
            if self.liveness is not None:
                self.liveness.on_pong(frame.get_payload_as_bytes())
        elif t == WSMsgType.CLOSE:
            if not transport.is_close_frame_sent:
                transport.send_close(frame.get_close_code(), frame.get_close_message())
            transport.disconnect()


    # -- incoming ---------------------------------------------------------------------------------
    def _on_message(self, data: bytes) -> None:
        msg = self._dec.decode(data)
        if len(msg.event):
            self.events += 1
            self._on_user_event(msg.event, msg.subscriptionId)
            return
        self.responses += 1
        rid = msg.id
        entry = self._pending.pop(rid, None) if isinstance(rid, int) else None
        if entry is None and isinstance(rid, int):
            entry = self._late.pop(rid, None)
            if entry is not None:
                self.late_responses += 1
        if self.limiter is not None or msg.status == 418:
            self._rate_feedback(msg)
        if entry is None:
            self.unmatched_responses += 1
            if msg.error is not None:
                self._count_error(msg.error.code)
                log.warning("WS API error for unknown request id %r: status %d code %d %s",
                            rid, msg.status, msg.error.code, msg.error.msg)
                if msg.status == 401:
                    # Session revoked (3.3): no more orders on this connection.
                    self.user_stream_active = False
                    self._event(DISCONNECTED, f"session revoked: {msg.error.msg}")
            return
        sent = self._sent_ns.pop(rid, 0)
        kind, ctx = entry
        ok = msg.status == 200 and msg.error is None
        if not ok:
            err = msg.error or _Error(0, "")
            self._count_error(err.code)
        # Order path: the tracker checks the result's shape before changing anything and
        # treats an unreadable one as no answer (place UNKNOWN, cancel in doubt).
        if kind == _PLACE:
            if sent:
                self.order_rtt_ns.append(time.monotonic_ns() - sent)
            cid, attempt = ctx
            if ok:
                self.tracker.on_place_ack(cid, self._result(msg, {}), attempt)
            else:
                self.tracker.on_place_error(cid, msg.status, err.code, err.msg, attempt)
        elif kind == _CANCEL:
            if ok:
                self.tracker.on_cancel_ack(ctx, self._result(msg, None))
            else:
                self.tracker.on_cancel_error(ctx, msg.status, err.code, err.msg)
        elif kind == _CANCEL_ALL:
            if ok:
                self.tracker.on_cancel_all_ack(ctx, self._result(msg, []))
            else:
                self.tracker.on_cancel_all_error(ctx, msg.status, err.code, err.msg)
        elif kind == _SNAPSHOT:
            self._on_snapshot(ctx, msg, ok)
        else:
            fut: asyncio.Future = ctx
            if fut.done():
                return
            if ok:
                fut.set_result(msgspec.json.decode(msg.result) if len(msg.result) else None)
            else:
                fut.set_exception(WsApiError(msg.status, err.code, err.msg))

    def _result(self, msg: _Incoming, absent: Any) -> Any:
        # The decoded result of a 200 answer; ``absent`` if there is none, _UNREADABLE if it
        # cannot be decoded (counted in ``bad_responses``).
        if not len(msg.result):
            return absent
        try:
            return msgspec.json.decode(msg.result)
        except (msgspec.DecodeError, UnicodeDecodeError):
            self.bad_responses += 1
            return _UNREADABLE

    def _count_error(self, code: int) -> None:
        self.errors_by_code[code] = self.errors_by_code.get(code, 0) + 1

    def _rate_feedback(self, msg: _Incoming) -> None:
        # Every response: the venue's counts, then its verdict (6.1, 6.2).
        err = msg.error
        lim = self.limiter
        if lim is not None:
            try:
                data = err.data if err is not None and isinstance(err.data, dict) else None
                lim.on_ws_response(msg.status, bytes(msg.rateLimits) if len(msg.rateLimits) else None,
                                   err.code if err is not None else None, data)
            except Exception:  # noqa: BLE001 - a malformed rateLimits must not drop the response
                self.handler_errors += 1
                log.exception("rate-limit feedback failed")
        if msg.status == 418:
            self.bans += 1
            if self.on_ban is not None:
                self.on_ban(f"418 from the WS API: {err.code if err else ''} {err.msg if err else ''}")

    def _acquire(self, method: str, params: Mapping[str, Any] | None) -> None:
        # Take the request's cost from the shared budget, or refuse it locally (never sent).
        lim = self.limiter
        if lim is None:
            return
        cost = request_cost(method, params)
        priority = method in PRIORITY_METHODS
        if lim.try_acquire(cost.weight, cost.orders, priority=priority):
            return
        self.rate_limited_local += 1
        try:
            wait = lim.wait_time_ns(cost.weight, cost.orders, priority=priority)
        except Exception:  # noqa: BLE001 - never fits: report a long wait
            wait = 60_000_000_000
        raise RateLimited(method, wait)

    def _on_user_event(self, raw: msgspec.Raw, subscription_id: int | None) -> None:
        b = bytes(raw)
        if b.startswith(b'{"e":"executionReport"'):
            kind = "executionReport"
        else:
            kind = self._dec_probe.decode(b).e
        if kind == "executionReport":
            self.execution_reports += 1
            self.tracker.on_execution_report(self._dec_er.decode(b))
        elif kind == "serverShutdown":
            # The venue will close this connection soon (section 0, 3.1).
            self.server_shutdown = True
            self._event(SHUTDOWN, "serverShutdown")
        elif kind == "eventStreamTerminated":
            if subscription_id is None or subscription_id == self.subscription_id:
                self.user_stream_active = False
                self._event(DISCONNECTED, "eventStreamTerminated")
        # outboundAccountPosition, balanceUpdate, ...: balances are not tracked here.

    def _on_snapshot(self, ctx: tuple[str, Any], msg: _Incoming, ok: bool) -> None:
        symbol, feed = ctx
        self._snapshots_in_flight.discard((id(feed), symbol))
        if not ok or not len(msg.result):
            log.warning("depth snapshot for %s failed: %s", symbol, msg.error)
            if feed is not None and self.connected:
                # Ask again through the feed's normal path, after a pause so a failing
                # venue is not hammered (depth costs 5..250 weight, 1.3).
                self._retry_snapshot(feed, symbol, _SNAPSHOT_RETRY_S)
            return
        self.snapshots_received += 1
        snap = self._dec_snap.decode(msg.result)
        if feed is not None:
            feed.on_snapshot(symbol, snap, "ws-api", time.time_ns())

    def _retry_snapshot(self, feed: Any, symbol: str, delay_s: float) -> None:
        def again() -> None:
            try:
                feed.listener.on_snapshot_needed(symbol)
            except Exception:  # noqa: BLE001
                self.handler_errors += 1
                log.exception("snapshot retry failed")
        asyncio.get_running_loop().call_later(delay_s, again)

    # -- outgoing ---------------------------------------------------------------------------------
    def _write(self, rid: int, method: str, params: dict[str, Any] | None) -> int:
        tr = self.transport
        if tr is None or not self.connected:
            raise ConnectionError("WS API not connected")
        req = {"id": rid, "method": method}
        if params is not None:
            req["params"] = params
        # Encode behind picows' header room and send without copying the payload.
        self._enc.encode_into(req, self._buf, _HEADER_ROOM)
        tr.send_reuse_external_bytearray(WSMsgType.TEXT, self._buf, _HEADER_ROOM)
        t = time.monotonic_ns()
        self._sent_ns[rid] = t
        self.requests_sent += 1
        return t

    def _new_id(self) -> int:
        rid = self._next_id
        self._next_id = rid + 1
        return rid

    def _auth_params(self, params: dict[str, Any], force_sign: bool = False) -> dict[str, Any]:
        # SIGNED request (4.2 / 4.4): timestamp always; apiKey + signature unless the session is logged on.
        params["timestamp"] = time.time_ns() // 1_000_000
        if self.recv_window_ms is not None:
            params["recvWindow"] = self.recv_window_ms
        if force_sign or not self.logged_on:
            self.signer.signed_ws_params(params)
        return params

    def request(self, method: str, params: dict[str, Any] | None = None) -> asyncio.Future:
        """Send one request; return a future of its decoded ``result`` (raises :class:`WsApiError`).

        ``params`` are sent as given: call :meth:`signed_params` first for SIGNED methods.
        Raises :class:`RateLimited` (before sending) when the rate limiter refuses it.
        """
        self._acquire(method, params)
        return self._request_acquired(method, params)

    def _request_acquired(self, method: str, params: dict[str, Any] | None) -> asyncio.Future:
        # The request's cost was already taken from the rate limiter.
        fut = asyncio.get_running_loop().create_future()
        rid = self._new_id()
        self._pending[rid] = (_FUTURE, fut)
        try:
            self._write(rid, method, params)
        except Exception:
            self._pending.pop(rid, None)
            raise
        return fut

    def signed_params(self, params: dict[str, Any] | None = None) -> dict[str, Any]:
        """Return ``params`` with ``timestamp`` (+ ``recvWindow``) and, unless logged on, ``apiKey`` + ``signature``."""
        return self._auth_params(dict(params or {}))

    async def call_signed(self, method: str, params: dict[str, Any] | None = None, timeout: float = 10.0) -> Any:
        """Send a SIGNED request and await its result."""
        return await asyncio.wait_for(self.request(method, self.signed_params(params)), timeout)

    async def exchange_info(self, symbol: str, timeout: float = 10.0) -> Any:
        """Return the ``exchangeInfo`` result for ``symbol`` (public method)."""
        return await asyncio.wait_for(self.request("exchangeInfo", {"symbol": symbol}), timeout)

    async def depth(self, symbol: str, limit: int = 1000, timeout: float = 10.0) -> DepthSnapshot:
        """Return a depth snapshot (method ``depth``, 1.3)."""
        res = await asyncio.wait_for(self.request("depth", {"symbol": symbol, "limit": limit}), timeout)
        return msgspec.convert(res, DepthSnapshot) if not isinstance(res, DepthSnapshot) else res

    async def open_orders(self, symbol: str, timeout: float = 10.0) -> list[dict]:
        """Return ``openOrders.status`` for ``symbol`` (SIGNED, weight 6)."""
        return await self.call_signed("openOrders.status", {"symbol": symbol}, timeout)

    async def cancel_all(self, symbol: str, timeout: float = 10.0, include_unknown: bool = True) -> list[dict]:
        """Send ``openOrders.cancelAll`` and await it; the tracker is updated. [] if nothing was open (-2011).

        ``include_unknown`` False leaves orders in doubt wanted (see
        :meth:`~engine.orders.tracker.OrderTracker.on_cancel_all_sent`).
        """
        params = self.signed_params({"symbol": symbol})
        # Refused locally before anything is marked (the caller retries).
        self._acquire("openOrders.cancelAll", params)
        self.tracker.on_cancel_all_sent(symbol, include_unknown)
        try:
            res = await asyncio.wait_for(self._request_acquired("openOrders.cancelAll", params), timeout)
        except WsApiError as e:
            self.tracker.on_cancel_all_error(symbol, e.status, e.code, e.msg)
            if e.code == -2011:
                return []
            raise
        except (asyncio.TimeoutError, ConnectionError):
            # No answer: every open order of the symbol is in doubt until confirmed.
            self.tracker.on_cancel_all_timeout(symbol)
            raise
        self.tracker.on_cancel_all_ack(symbol, res if res is not None else [])
        return res

    def request_snapshot(self, symbol: str, limit: int = 1000, feed: Any = None) -> bool:
        """Request a depth snapshot for ``symbol`` without waiting; the result goes to ``feed.on_snapshot``.

        ``feed`` defaults to :attr:`feed` (a new connection's feed is passed explicitly while
        it syncs beside the current one). Returns False if one is already in flight for that
        feed, the connection is down, or the rate limiter refused it (a retry is then
        scheduled after the limiter's wait: snapshot re-fetches draw on the same budget).
        """
        feed = self.feed if feed is None else feed
        key = (id(feed), symbol)
        if key in self._snapshots_in_flight or not self.connected:
            return False
        params = {"symbol": symbol, "limit": limit}
        try:
            self._acquire("depth", params)
        except RateLimited as e:
            if feed is not None:
                self._retry_snapshot(feed, symbol, max(e.wait_ns / 1e9, _SNAPSHOT_RETRY_S))
            return False
        rid = self._new_id()
        self._pending[rid] = (_SNAPSHOT, (symbol, feed))
        try:
            self._write(rid, "depth", params)
        except Exception:
            self._pending.pop(rid, None)
            return False
        self._snapshots_in_flight.add(key)
        self.snapshots_requested += 1
        return True

    def expire(self, now_ns: int | None = None) -> int:
        """Expire order requests unanswered for ``request_timeout_s``; return how many.

        ``order.place``: the order becomes UNKNOWN (never failed, 3.2 / 6.1);
        ``order.cancel`` / ``openOrders.cancelAll``: the orders go on the in-doubt
        list; a depth request is forgotten so the feed can ask again. Expired
        entries are kept so a late response is still applied. Futures of
        :meth:`request` are dropped once their awaiting side gave up.
        """
        now = time.monotonic_ns() if now_ns is None else now_ns
        cutoff = now - int(self.request_timeout_s * 1e9)
        n = 0
        for rid, sent in list(self._sent_ns.items()):
            if sent > cutoff:
                # Ids grow with time: the rest are younger.
                break
            entry = self._pending.get(rid)
            if entry is None:
                self._sent_ns.pop(rid, None)
                continue
            kind, ctx = entry
            if kind == _FUTURE:
                if ctx.done():
                    self._pending.pop(rid, None)
                    self._sent_ns.pop(rid, None)
                continue
            self._pending.pop(rid, None)
            self._sent_ns.pop(rid, None)
            self.expired_requests += 1
            n += 1
            if kind == _PLACE:
                self.tracker.on_place_timeout(ctx[0], ctx[1])
            elif kind == _CANCEL:
                self.tracker.on_cancel_timeout(ctx)
            elif kind == _CANCEL_ALL:
                self.tracker.on_cancel_all_timeout(ctx)
            elif kind == _SNAPSHOT:
                self._snapshots_in_flight.discard((id(ctx[1]), ctx[0]))
                continue
            self._late[rid] = entry
            if len(self._late) > _KEEP_LATE:
                del self._late[next(iter(self._late))]
        return n

    async def order_status(self, symbol: str, client_order_id: str, timeout: float = 10.0) -> dict:
        """Return ``order.status`` by ``origClientOrderId`` (SIGNED, weight 4); raises :class:`WsApiError` (-2013)."""
        return await self.call_signed("order.status", {"symbol": symbol, "origClientOrderId": client_order_id},
                                      timeout)

    async def cancel_order(self, symbol: str, client_order_id: str, timeout: float = 10.0) -> dict:
        """Send ``order.cancel`` by ``origClientOrderId`` and await its result (reconciliation)."""
        return await self.call_signed("order.cancel", {"symbol": symbol, "origClientOrderId": client_order_id},
                                      timeout)

    # -- the order path (engine.bus.OrderSender) -----------------------------------------------------
    def send_place(self, client_order_id: str, symbol: str, side: str, price_ticks: int, qty_steps: int,
                   post_only: bool, trigger_rx_ns: int) -> None:
        """Write ``order.place`` (LIMIT_MAKER, or LIMIT GTC) and stamp the write time."""
        f = self.fmt[symbol]
        if side not in SIDES:
            raise ValueError(f"bad side {side!r}")
        if post_only:
            params: dict[str, Any] = {"symbol": symbol, "side": side, "type": "LIMIT_MAKER"}
        else:
            params = {"symbol": symbol, "side": side, "type": "LIMIT", "timeInForce": "GTC"}
        params["price"] = f.price(price_ticks)
        params["quantity"] = f.qty(qty_steps)
        params["newClientOrderId"] = client_order_id
        params["newOrderRespType"] = "ACK"
        self._acquire("order.place", None)
        rid = self._new_id()
        o = self.tracker.get(client_order_id)
        self._pending[rid] = (_PLACE, (client_order_id, o.resends if o is not None else 0))
        try:
            t = self._write(rid, "order.place", self._auth_params(params))
        except Exception:
            self._pending.pop(rid, None)
            raise
        if o is not None:
            # The venue's window for this attempt starts at its timestamp (4.4).
            o.sent_ts_ms = params["timestamp"]
        if trigger_rx_ns:
            self.tick_to_order_ns.append(t - trigger_rx_ns)

    def resend_place(self, client_order_id: str) -> bool:
        """Send an UNKNOWN order again **with the same client order id** (never a new one).

        Only for an order the venue confirmed it does not have after the original
        request's window passed (``timestamp + recvWindow``, 4.4): the original can
        no longer be executed, so at most one of the two attempts can exist.
        Returns False if the order is not UNKNOWN or the connection is down.
        """
        o = self.tracker.get(client_order_id)
        if o is None or o.status != UNKNOWN:
            return False
        if not self.connected or not self.user_stream_active or self.closing:
            return False
        self.tracker.on_place_resent(client_order_id)
        try:
            self.send_place(client_order_id, o.symbol, o.side, o.price_ticks, o.qty_steps, o.post_only, 0)
        except Exception as e:  # noqa: BLE001 - the order stays in doubt
            self.tracker.on_place_not_sent(client_order_id, f"resend failed: {e!r}")
            return False
        return True

    def send_cancel(self, client_order_id: str, symbol: str, trigger_rx_ns: int) -> None:
        """Write ``order.cancel`` by ``origClientOrderId`` (the venue assigns the cancel's own id, section 5)."""
        self._acquire("order.cancel", None)
        rid = self._new_id()
        self._pending[rid] = (_CANCEL, client_order_id)
        try:
            t = self._write(rid, "order.cancel",
                            self._auth_params({"symbol": symbol, "origClientOrderId": client_order_id}))
        except Exception:
            self._pending.pop(rid, None)
            raise
        if trigger_rx_ns:
            self.tick_to_cancel_ns.append(t - trigger_rx_ns)

    def send_cancel_all(self, symbol: str) -> None:
        """Write ``openOrders.cancelAll`` for ``symbol``."""
        self._acquire("openOrders.cancelAll", None)
        rid = self._new_id()
        self._pending[rid] = (_CANCEL_ALL, symbol)
        try:
            self._write(rid, "openOrders.cancelAll", self._auth_params({"symbol": symbol}))
        except Exception:
            self._pending.pop(rid, None)
            raise


__all__ = ["OrderFormatter", "RateLimited", "WsApiClient", "WsApiError", "format_scaled"]
