"""Binance spot WebSocket API (``/ws-api/v3``) request handling, transport-independent.

One :class:`WsApiSession` per connection. The transport (the glue server)
calls :meth:`WsApiSession.on_message` with each text frame and
:meth:`WsApiSession.on_close` when the connection ends; the session answers
through the ``send(bytes)`` callable it was given.

Envelope (venue-protocols.md 3.2): request ``{"id", "method", "params"}``;
response ``{"id", "status", "result" | "error": {"code", "msg"[, "data"]},
"rateLimits"}``. User-data events are pushed as
``{"subscriptionId": n, "event": {...}}`` (3.6); by default a session sends
the response to a request before the events that request caused.

Errors for broken envelopes are not documented by the venue; the simulator
answers malformed JSON with ``-1135 "Invalid JSON Request"`` (SPOT-ERR
INVALID_JSON), non-object ``params`` with -1135 "Invalid 'params' in JSON
request; expected an object." (seen on the venue, binance-us-api-docs#126),
a missing ``method`` with -1102 and an unknown method with
``-1020 "This operation is not supported."`` (SPOT-ERR UNSUPPORTED_OPERATION),
all with status 400 **[derived]**.

Fault injection (:mod:`engine.sim.faults`): a session given ``faults`` (and
``close``, which drops its connection) routes requests and executionReports
through the fault plan (dropped, delayed, 5xx and error replies -- 429/-1003,
429/-1015, 418 with ``retryAfter``, 400/-2010 -- and connection cuts); without
it the default path below is unchanged.
"""
from __future__ import annotations

import asyncio
import logging
from typing import Any, Callable

import msgspec

from engine.sim.auth import ED25519, ApiKey, AuthError, err_mandatory, err_rejected_key
from engine.sim.exchange import Exchange, VenueError, depth_weight, get_param, parse_int
from engine.sim.market_view import MarketView

log = logging.getLogger(__name__)

_encode = msgspec.json.encode
_decode_top = msgspec.json.Decoder(dict[str, msgspec.Raw])
_decode_params = msgspec.json.Decoder(dict[str, msgspec.Raw])

# Methods whose successful calls cost 0 weight since 2026-04-02 (venue-protocols.md section 0).
_ZERO_ON_SUCCESS = frozenset(("order.place", "order.cancel", "order.cancelReplace", "openOrders.cancelAll"))
# Methods whose responses report the ORDERS counters (3.2).
_ORDER_COUNTING = frozenset(("order.place", "order.cancelReplace"))
# A session may open at most this many user-data subscriptions over its lifetime (3.4).
_MAX_SUBSCRIPTION_IDS = 65535


class WsApiSession:
    """One WebSocket API connection.

    Parameters
    ----------
    exchange : Exchange
        The simulated venue (account, orders, keys via ``exchange.auth``).
    market : MarketView
        The market (depth, exchangeInfo symbols).
    send : callable
        ``send(frame: bytes)`` writes one text frame to the client.
    return_rate_limits : bool
        Connection default for ``rateLimits`` in responses (URL
        ``?returnRateLimits=false`` sets it False; 3.2).
    events_before_response : bool
        Push the user-data events caused by a request *before* its response
        (default: after). Both orders happen on the venue.
    faults : engine.sim.faults.WsApiFaults, optional
        Fault plan (drop / delay / cut / 5xx responses, duplicate / reorder events).
    close : callable, optional
        ``close()`` drops this session's connection (needed by the cut faults).
    """

    def __init__(
        self,
        exchange: Exchange,
        market: MarketView,
        send: Callable[[bytes], Any],
        *,
        return_rate_limits: bool = True,
        events_before_response: bool = False,
        faults: Any = None,
        close: Callable[[], Any] | None = None,
    ) -> None:
        self.exchange = exchange
        self.market = market
        self._send = send
        self._faults = faults
        self._close_conn = close
        # Events go out through here: straight to the client unless a fault plan is set.
        self._emit = send if faults is None else self._emit_faulty
        self.return_rate_limits = return_rate_limits
        self.events_before_response = events_before_response
        self.connected_since_ms = exchange.server_time_ms()
        self._logon_key: ApiKey | None = None
        self._authorized_since: int | None = None
        # subscriptionId -> "logon" or "signature"
        self._subs: dict[int, str] = {}
        self._next_sub_id = 0
        self._listening = False
        self._in_request = False
        self._pending: list[bytes] = []
        self._closed = False
        self._handlers: dict[str, Callable[[dict[str, str], dict[str, Any]], Any]] = {
            "ping": self._ping,
            "time": self._time,
            "depth": self._depth,
            "exchangeInfo": self._exchange_info,
            "session.logon": self._logon,
            "session.status": self._status,
            "session.logout": self._logout,
            "session.subscriptions": self._subscriptions,
            "order.place": self._signed(exchange.place_order),
            "order.cancel": self._signed(exchange.cancel_order),
            "order.cancelReplace": self._signed(exchange.cancel_replace),
            "order.status": self._signed(exchange.query_order),
            "openOrders.status": self._signed(exchange.open_orders),
            "openOrders.cancelAll": self._signed(exchange.cancel_open_orders),
            "account.status": self._signed(exchange.account),
            "userDataStream.subscribe": self._subscribe,
            "userDataStream.subscribe.signature": self._subscribe_signature,
            "userDataStream.unsubscribe": self._unsubscribe,
        }

    def __repr__(self) -> str:
        key = "none" if self._logon_key is None else self._logon_key.api_key[:6] + "..."
        return f"WsApiSession(logon={key}, subscriptions={sorted(self._subs)})"

    @property
    def subscription_ids(self) -> list[int]:
        """Active user-data subscription ids."""
        return sorted(self._subs)

    # -- transport entry points ---------------------------------------------------------------
    def on_message(self, data: bytes | str) -> None:
        """Handle one request frame and send its response (and any events it caused)."""
        if self._closed:
            return
        raw = data.encode() if isinstance(data, str) else data
        if self._faults is not None:
            self._on_message_faulty(raw)
            return
        self._in_request = True
        try:
            frame = self._handle(raw)
        finally:
            self._in_request = False
        pending, self._pending = self._pending, []
        if self.events_before_response:
            for p in pending:
                self._send(p)
            self._send(frame)
        else:
            self._send(frame)
            for p in pending:
                self._send(p)

    def on_close(self) -> None:
        """Release the session: stop listening to account events."""
        self._closed = True
        self._subs.clear()
        self._update_listening()
        self._pending.clear()

    # -- request handling ------------------------------------------------------------------------
    def _handle(self, raw: bytes) -> bytes:
        req_id: Any = None
        try:
            try:
                top = _decode_top.decode(raw)
            except (msgspec.DecodeError, msgspec.ValidationError):
                raise VenueError(-1135, "Invalid JSON Request") from None
            if "id" in top:
                req_id = msgspec.json.decode(top["id"])
                if not (req_id is None or isinstance(req_id, (int, str))) or isinstance(req_id, bool):
                    req_id = None
                    raise VenueError(-1102, "Mandatory parameter 'id' was not sent, was empty/null, or malformed.")
            method = msgspec.json.decode(top["method"]) if "method" in top else None
            if not isinstance(method, str) or not method:
                raise VenueError(-1102, "Mandatory parameter 'method' was not sent, was empty/null, or malformed.")
            params, objs = self._params(top.get("params"))
        except VenueError as e:
            return self._error(req_id, e, with_rate_limits=False)
        if method.startswith("v3/"):
            method = method[3:]
        rl = self.return_rate_limits
        flag = params.pop("returnRateLimits", None)
        if flag is not None:
            rl = flag == "true"
        handler = self._handlers.get(method)
        if handler is None:
            return self._error(req_id, VenueError(-1020, "This operation is not supported."), rl)
        weight = self._weight(method, params)
        try:
            self.exchange.rate.check_weight()
            result = handler(params, objs)
        except (VenueError, AuthError) as e:
            self.exchange.rate.add_weight(weight)
            return self._error(req_id, e, rl, method in _ORDER_COUNTING)
        except Exception:  # noqa: BLE001 - a simulator bug must not kill the connection
            log.exception("ws-api %s failed", method)
            return self._error(req_id, VenueError(
                -1000, "An unknown error occurred while processing the request.", 500), rl)
        self.exchange.rate.add_weight(0 if method in _ZERO_ON_SUCCESS else weight)
        resp: dict[str, Any] = {"id": req_id, "status": 200, "result": result}
        if rl:
            resp["rateLimits"] = self.exchange.rate.rate_limits(method in _ORDER_COUNTING)
        return _encode(resp)

    @staticmethod
    def _params(raw: msgspec.Raw | None) -> tuple[dict[str, str], dict[str, Any]]:
        # Each value as its text: strings unquoted, numbers/booleans as their JSON text
        # (the WS API signs the values' text, venue-protocols.md 4.2). Arrays/objects are
        # also decoded into `objs`. Nulls count as absent.
        if raw is None:
            return {}, {}
        try:
            fields = _decode_params.decode(raw)
        except (msgspec.DecodeError, msgspec.ValidationError):
            raise VenueError(-1135, "Invalid 'params' in JSON request; expected an object.") from None
        texts: dict[str, str] = {}
        objs: dict[str, Any] = {}
        for k, v in fields.items():
            b = bytes(v).strip()
            if b[:1] == b'"':
                texts[k] = msgspec.json.decode(b)
            elif b[:1] in (b"[", b"{"):
                texts[k] = b.decode()
                objs[k] = msgspec.json.decode(b)
            elif b != b"null":
                texts[k] = b.decode()
        return texts, objs

    def _weight(self, method: str, params: dict[str, str]) -> int:
        # Request weights of venue-protocols.md 3.4.
        if method == "depth":
            try:
                lim = parse_int(params, "limit")
            except VenueError:
                lim = None
            return depth_weight(100 if lim is None else lim)
        if method == "exchangeInfo" or method == "account.status":
            return 20
        if method == "order.status":
            return 4
        if method == "openOrders.status":
            return 6 if "symbol" in params else 80
        if method.startswith("session.") or method.startswith("userDataStream."):
            return 2
        return 1

    def _error(self, req_id: Any, e: VenueError | AuthError, with_rate_limits: bool,
               with_orders: bool = False) -> bytes:
        self.exchange.record_error(e.code)
        if isinstance(e, VenueError):
            body = e.body()
        else:
            body = {"code": e.code, "msg": e.msg}
        resp: dict[str, Any] = {"id": req_id, "status": e.status, "error": body}
        if with_rate_limits:
            resp["rateLimits"] = self.exchange.rate.rate_limits(with_orders)
        return _encode(resp)

    # -- authentication ----------------------------------------------------------------------------
    def _authorize(self, params: dict[str, str]) -> ApiKey:
        # Per-request signature, or the session.logon key (3.3); timestamp is always required.
        if "signature" in params:
            return self.exchange.auth.verify_ws(params)
        if self._logon_key is not None:
            if params.get("apiKey", self._logon_key.api_key) != self._logon_key.api_key:
                raise err_mandatory("signature")
            self.exchange.auth.check_timestamp(params.get("timestamp"), params.get("recvWindow"))
            return self._logon_key
        if "apiKey" not in params:
            raise err_mandatory("apiKey")
        raise err_mandatory("signature")

    def _signed(self, fn: Callable[[dict[str, str]], Any]) -> Callable[[dict[str, str], dict[str, Any]], Any]:
        def call(params: dict[str, str], _objs: dict[str, Any]) -> Any:
            self._authorize(params)
            return fn(params)
        return call

    # -- public methods ------------------------------------------------------------------------------
    def _ping(self, params: dict[str, str], objs: dict[str, Any]) -> dict:
        return {}

    def _time(self, params: dict[str, str], objs: dict[str, Any]) -> dict:
        return {"serverTime": self.exchange.server_time_ms()}

    def _depth(self, params: dict[str, str], objs: dict[str, Any]) -> dict:
        return self.exchange.depth(params)

    def _exchange_info(self, params: dict[str, str], objs: dict[str, Any]) -> dict:
        sym = get_param(params, "symbol")
        if sym is not None:
            return self.exchange.exchange_info([sym])
        if "symbols" in objs:
            syms = objs["symbols"]
            if not isinstance(syms, list) or not all(isinstance(s, str) for s in syms):
                raise VenueError(-1100, "Illegal characters found in parameter 'symbols'; legal range is "
                                        "'^\\[\"[A-Z0-9-_.]{1,20}\"(,\"[A-Z0-9-_.]{1,20}\"){0,}\\]$'.")
            return self.exchange.exchange_info(syms)
        return self.exchange.exchange_info()

    # -- session -------------------------------------------------------------------------------------
    def _status_dict(self) -> dict:
        return {
            "apiKey": None if self._logon_key is None else self._logon_key.api_key,
            "authorizedSince": self._authorized_since,
            "connectedSince": self.connected_since_ms,
            "returnRateLimits": self.return_rate_limits,
            "serverTime": self.exchange.server_time_ms(),
            "userDataStream": bool(self._subs),
        }

    def _logon(self, params: dict[str, str], objs: dict[str, Any]) -> dict:
        key = self.exchange.auth.verify_ws(params)
        if key.kind != ED25519:
            # session.logon supports Ed25519 keys only (3.3); the venue's code is not documented.
            raise err_rejected_key()
        self._logon_key = key
        self._authorized_since = self.exchange.server_time_ms()
        return self._status_dict()

    def _status(self, params: dict[str, str], objs: dict[str, Any]) -> dict:
        return self._status_dict()

    def _logout(self, params: dict[str, str], objs: dict[str, Any]) -> dict:
        # Logout ends the logon subscription only, not signature subscriptions (3.4).
        for sid, kind in list(self._subs.items()):
            if kind == "logon":
                self._close_subscription(sid)
        self._logon_key = None
        self._authorized_since = None
        return self._status_dict()

    def _subscriptions(self, params: dict[str, str], objs: dict[str, Any]) -> list:
        return [{"subscriptionId": s} for s in sorted(self._subs)]

    # -- user data stream -------------------------------------------------------------------------------
    def _open_subscription(self, kind: str) -> dict:
        # One account per connection at most once (3.4); the simulator has one account.
        if self._subs:
            raise VenueError(-2035, "User Data Stream subscription already active.")
        if self._next_sub_id >= _MAX_SUBSCRIPTION_IDS:
            raise VenueError(-2042, "Maximum subscription ID reached for this connection.")
        sid = self._next_sub_id
        self._next_sub_id += 1
        self._subs[sid] = kind
        self._update_listening()
        return {"subscriptionId": sid}

    def _subscribe(self, params: dict[str, str], objs: dict[str, Any]) -> dict:
        if self._logon_key is None:
            # Needs a session.logon'd connection (3.3); the venue's code is not documented.
            raise err_rejected_key()
        return self._open_subscription("logon")

    def _subscribe_signature(self, params: dict[str, str], objs: dict[str, Any]) -> dict:
        self.exchange.auth.verify_ws(params)
        return self._open_subscription("signature")

    def _unsubscribe(self, params: dict[str, str], objs: dict[str, Any]) -> dict:
        sid = parse_int(params, "subscriptionId")
        if sid is None:
            for s in list(self._subs):
                self._close_subscription(s)
        elif sid in self._subs:
            self._close_subscription(sid)
        return {}

    def _close_subscription(self, sid: int) -> None:
        del self._subs[sid]
        self._update_listening()
        now = self.market.now_ms()
        self._push(_encode({"subscriptionId": sid, "event": {"e": "eventStreamTerminated", "E": now}}))

    def _update_listening(self) -> None:
        want = bool(self._subs)
        if want and not self._listening:
            self.exchange.add_listener(self._on_event)
        elif not want and self._listening:
            self.exchange.remove_listener(self._on_event)
        self._listening = want

    def _on_event(self, event: dict) -> None:
        for sid in self._subs:
            self._push(_encode({"subscriptionId": sid, "event": event}))

    def _push(self, frame: bytes) -> None:
        if self._closed:
            return
        if self._in_request:
            self._pending.append(frame)
        else:
            self._emit(frame)

    # -- fault injection (engine.sim.faults) ----------------------------------------------------------
    def _on_message_faulty(self, raw: bytes) -> None:
        from engine.sim import faults as F

        req_id, method, cid = _peek(raw)
        now_ms = self.exchange.server_time_ms()
        fault = self._faults.decide(method, cid, now_ms)
        if fault == F.CUT_BEFORE:
            self._cut()
            return
        if fault in F.REFUSALS:
            # Rejected before processing (rate limit, ban, new-order rejection): no order, no event.
            self._send(self._refusal(raw, req_id, method, fault, now_ms))
            return
        self._in_request = True
        try:
            frame: bytes | None = self._handle(raw)
        finally:
            self._in_request = False
        pending, self._pending = self._pending, []
        if fault == F.CUT_AFTER:
            # Processed; the response and its events die with the connection.
            self._cut()
            return
        if fault == F.ERROR_5XX and frame is not None and b'"status":200' in frame[:64]:
            self.exchange.record_error(F.ERROR_5XX_CODE)
            frame = _encode({"id": req_id, "status": F.ERROR_5XX_STATUS,
                             "error": {"code": F.ERROR_5XX_CODE, "msg": F.ERROR_5XX_MSG}})
        elif fault == F.DROP:
            frame = None
        elif fault == F.DELAY:
            asyncio.get_running_loop().call_later(self._faults.next_delay_s(), self._send_open, frame)
            frame = None
        if frame is not None and not self.events_before_response:
            self._send(frame)
        for p in pending:
            self._emit(p)
        if frame is not None and self.events_before_response:
            self._send(frame)

    def _refusal(self, raw: bytes, req_id: Any, method: str, fault: str, now_ms: int) -> bytes:
        # The venue's error envelope for an injected rejection (3.2, 6.1), with rateLimits
        # as a real rejection of this method would carry them.
        try:
            params, _ = self._params(_decode_top.decode(raw).get("params"))
        except (msgspec.DecodeError, msgspec.ValidationError, VenueError):
            params = {}
        status, err = self._faults.error_reply(fault, now_ms, params.get("type", ""))
        self.exchange.record_error(err["code"])
        self.exchange.rate.add_weight(self._weight(method, params))
        resp: dict[str, Any] = {"id": req_id, "status": status, "error": err}
        rl = self.return_rate_limits
        flag = params.get("returnRateLimits")
        if flag is not None:
            rl = flag == "true"
        if rl:
            resp["rateLimits"] = self.exchange.rate.rate_limits(method in _ORDER_COUNTING)
        return _encode(resp)

    def _emit_faulty(self, frame: bytes) -> None:
        if b'"executionReport"' not in frame:
            self._send(frame)
            return
        dup, hold = self._faults.decide_event()
        hold_s = self._faults.profile.reorder_hold_s
        if hold:
            asyncio.get_running_loop().call_later(hold_s, self._send_open, frame)
        else:
            self._send(frame)
        if dup:
            asyncio.get_running_loop().call_later(hold_s, self._send_open, frame)

    def _send_open(self, frame: bytes) -> None:
        if not self._closed:
            self._send(frame)

    def _cut(self) -> None:
        self._closed = True
        if self._close_conn is not None:
            self._close_conn()


def _peek(raw: bytes) -> tuple[Any, str, str]:
    # id, method and client order id of a request, for the fault plan (never raises).
    try:
        top = _decode_top.decode(raw)
        req_id = msgspec.json.decode(top["id"]) if "id" in top else None
        method = msgspec.json.decode(top["method"]) if "method" in top else ""
        cid = ""
        if "params" in top:
            params = _decode_params.decode(top["params"])
            for k in ("newClientOrderId", "origClientOrderId"):
                if k in params:
                    cid = msgspec.json.decode(params[k])
                    break
        return req_id, method if isinstance(method, str) else "", cid if isinstance(cid, str) else ""
    except (msgspec.DecodeError, msgspec.ValidationError, KeyError):
        return None, "", ""
