"""Binance market-data stream connections over picows: routing, subscriptions, keepalive.

:class:`StreamHub` fans payloads out to the connected clients; it is a stream
listener of :class:`~engine.sim.market.VenueMarket`. :class:`StreamConnection`
is one client on ``/ws[/<stream>...]`` (raw payloads) or
``/stream?streams=a/b/c`` (combined envelope ``{"stream":..,"data":..}``) and
answers the live control messages ``SUBSCRIBE``, ``UNSUBSCRIBE``,
``LIST_SUBSCRIPTIONS``, ``SET_PROPERTY`` and ``GET_PROPERTY`` with Binance's
replies and error codes (venue-protocols.md section 2; spot
``web-socket-streams.md``, "Live Subscribing/Unsubscribing", "Error Messages").

Keepalive and limits follow section 2's table (:class:`StreamLimits`): the
server pings every ``ping_interval_s``, drops a client whose pong (echoing a
ping's payload) is older than ``pong_timeout_s``, answers client pings, drops a
client that sends more than ``max_incoming_per_s`` messages (ping, pong and
JSON all count) in one second, and drops a connection after
``max_lifetime_s``.

Fault injection for tests: :meth:`StreamHub.drop_all_connections`,
:meth:`StreamHub.stall` / :meth:`StreamHub.resume`, :attr:`StreamHub.drop_filter`
and :meth:`StreamHub.send_server_shutdown`. A fault plan
(:class:`engine.sim.faults.FaultPlan`, :attr:`StreamHub.plan`) drives the
same hub and the per-connection hooks :meth:`Connection.drop`,
:meth:`Connection.hold` / :meth:`Connection.release`,
:meth:`Connection.set_delay` and :attr:`Connection.data_stalled`; without a
plan none of them is on the path of a frame.
"""
from __future__ import annotations

import asyncio
import logging
import re
import time
from collections import deque
from dataclasses import dataclass
from typing import Any, Callable

import msgspec
from picows import WSCloseCode, WSFrame, WSListener, WSMsgType, WSTransport

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StreamLimits:
    """Connection rules of a stream server (venue-protocols.md section 2 table).

    Attributes
    ----------
    ping_interval_s : float
        Server ping period, s (spot 20 s, USD-M 3 min).
    pong_timeout_s : float
        Disconnect when no valid pong arrived for this long, s (spot 1 min, USD-M 10 min).
    max_incoming_per_s : int or None
        Incoming messages allowed per second, pings and pongs included (spot 5, USD-M 10);
        None disables the limit.
    max_streams : int
        Streams per connection (1024).
    unsolicited_pong_keeps_alive : bool
        Whether a pong that echoes no ping still counts as alive (spot no, USD-M yes).
    max_lifetime_s : float or None
        Connection lifetime, s (24 h on both).
    max_write_buffer : int
        Bytes queued to a client beyond which it is dropped as too slow.
    """

    ping_interval_s: float = 20.0
    pong_timeout_s: float = 60.0
    max_incoming_per_s: int | None = 5
    max_streams: int = 1024
    unsolicited_pong_keeps_alive: bool = False
    max_lifetime_s: float | None = 24 * 3600.0
    # Far above what a healthy loopback client queues; only a stuck client reaches it.
    max_write_buffer: int = 256 * 1024 * 1024


SPOT_LIMITS = StreamLimits()
USDM_LIMITS = StreamLimits(ping_interval_s=180.0, pong_timeout_s=600.0, max_incoming_per_s=10,
                           unsolicited_pong_keeps_alive=True)

# Stream names a Binance spot or USD-M stream server accepts (symbol lower case);
# only the diff-depth, trade, aggTrade and bookTicker streams carry data here.
_KLINE = r"kline_(?:1s|1m|3m|5m|15m|30m|1h|2h|4h|6h|8h|12h|1d|3d|1w|1M)"
STREAM_RE = re.compile(
    r"^(?:[a-z0-9_]+@(?:depth(?:@(?:0ms|100ms|250ms|500ms|1000ms))?"
    r"|depth(?:5|10|20)(?:@(?:100ms|250ms|500ms|1000ms))?"
    r"|trade|aggTrade|bookTicker|miniTicker|ticker|ticker_(?:1h|4h|1d)|avgPrice"
    r"|markPrice(?:@1s)?|forceOrder|" + _KLINE + r")"
    r"|!(?:bookTicker|miniTicker@arr|ticker@arr|ticker_(?:1h|4h|1d)@arr|markPrice@arr(?:@1s)?|forceOrder@arr))$"
)


def valid_stream(name: Any) -> bool:
    """Return True if ``name`` is a stream name the server accepts."""
    return isinstance(name, str) and STREAM_RE.match(name) is not None


def envelope(stream: str, payload: bytes) -> bytes:
    """Wrap ``payload`` in the combined-stream envelope (venue-protocols.md section 2)."""
    return b'{"stream":"' + stream.encode() + b'","data":' + payload + b"}"


# -- control-message replies (spot web-socket-streams.md "Error Messages") ---------------------
_METHODS = ("SUBSCRIBE", "UNSUBSCRIBE", "LIST_SUBSCRIPTIONS", "SET_PROPERTY", "GET_PROPERTY")
# Binance documents ids as 64-bit signed integers, alphanumeric strings up to 36 chars or null
# (venue-protocols.md 2; the doc's own error text says "unsigned integer": inconsistent, section 10).
# Binance's official spot SDK (binance-sdk-spot) sends a hyphenated UUID (36 chars) as the
# SUBSCRIBE id by default, so the venue accepts hyphens: we do too. [derived]
_ID_STR = re.compile(r"^[A-Za-z0-9-]{1,36}$")
_INT64 = (-(2 ** 63), 2 ** 63 - 1)


class ControlError(Exception):
    """A control message is rejected with Binance's ``{"error":{"code","msg"},"id"}``."""

    def __init__(self, code: int, msg: str, id_: Any = None) -> None:
        super().__init__(msg)
        self.code = code
        self.msg = msg
        self.id = id_


def result_reply(result: Any, id_: Any) -> bytes:
    """Return ``{"result":<result>,"id":<id>}``."""
    return msgspec.json.encode({"result": result, "id": id_})


def error_reply(err: ControlError) -> bytes:
    """Return ``{"error":{"code":..,"msg":..},"id":..}``."""
    return msgspec.json.encode({"error": {"code": err.code, "msg": err.msg}, "id": err.id})


def _line_col(text: bytes, pos: int) -> tuple[int, int]:
    before = text[:pos]
    line = before.count(b"\n") + 1
    return line, pos - (before.rfind(b"\n") + 1) + 1


def parse_control(data: bytes) -> tuple[str, list, Any]:
    """Validate a control message; return ``(method, params, id)``.

    Raises
    ------
    ControlError
        code 3 for invalid JSON, 2 for a malformed request (bad id, missing or
        unknown method, parameters of the wrong shape), as in section 2.
    """
    try:
        msg = msgspec.json.decode(data)
    except msgspec.DecodeError as e:
        m = re.search(r"byte (\d+)", str(e))
        line, col = _line_col(data, int(m.group(1)) if m else len(data))
        raise ControlError(3, f"Invalid JSON: expected value at line {line} column {col}") from None
    if not isinstance(msg, dict):
        raise ControlError(3, "Invalid JSON: expected an object at line 1 column 1")
    id_ = msg.get("id")
    if "id" not in msg or not _valid_id(id_):
        raise ControlError(2, "Invalid request: request ID must be an unsigned integer")
    if "method" not in msg:
        raise ControlError(2, f"Invalid request: missing field `method` at line 1 column {len(data)}", id_)
    method = msg["method"]
    if method not in _METHODS:
        col = _value_end(data, b'"method"')
        allowed = ", ".join(f"`{m}`" for m in _METHODS)
        raise ControlError(2, f"Invalid request: unknown variant `{method}`, expected one of {allowed} "
                              f"at line 1 column {col}", id_)
    params = msg.get("params", [])
    if params is None:
        params = []
    if not isinstance(params, list):
        raise ControlError(2, "Invalid request: invalid params", id_)
    return method, params, id_


def _value_end(data: bytes, key: bytes) -> int:
    # 1-based column just past the string value of ``key`` (serde's error position).
    i = data.find(key)
    if i < 0:
        return len(data)
    j = data.find(b'"', data.find(b":", i + len(key)) + 1)
    k = data.find(b'"', j + 1) if j >= 0 else -1
    return k + 1 if k >= 0 else len(data)


def _valid_id(id_: Any) -> bool:
    if id_ is None:
        return True
    if isinstance(id_, bool):
        return False
    if isinstance(id_, int):
        return _INT64[0] <= id_ <= _INT64[1]
    return isinstance(id_, str) and _ID_STR.match(id_) is not None


# -- connections ----------------------------------------------------------------------------------
# Kinds of the frames queued by a delayed or held connection.
_TEXT = 0
_PING = 1
_PONG = 2
# A queued frame due within this much is sent with the current batch (loop timer resolution, s).
_DRAIN_SLACK_S = 0.0005


class Connection(WSListener):
    """A client connection with Binance's keepalive and incoming-message limit.

    Parameters
    ----------
    hub : StreamHub
        Registry that pings the connection and may drop it.
    limit_incoming : bool
        Apply ``max_incoming_per_s`` (market-data streams; the WS API has its own limits).
    """

    def __init__(self, hub: "StreamHub", limit_incoming: bool = True) -> None:
        super().__init__()
        self.hub = hub
        self.transport: WSTransport | None = None
        now = time.monotonic()
        self.connected_at = now
        self.last_alive = now
        self.next_ping = now + hub.limits.ping_interval_s
        self.closing = False
        self._pings: deque[bytes] = deque(maxlen=8)
        self._incoming: deque[float] = deque()
        self._limit = hub.limits.max_incoming_per_s if limit_incoming else None
        # Fault injection (engine.sim.faults): data frames of the hub are not sent while
        # data_stalled; with _piped every outgoing frame goes through _out (delay / hold).
        self.data_stalled = False
        self._piped = False
        self._held = False
        self._delay_s = 0.0
        self._out: deque[tuple[float, int, bytes]] = deque()
        self._drain_handle: asyncio.TimerHandle | None = None

    # -- picows callbacks -------------------------------------------------------------------
    def on_ws_connected(self, transport: WSTransport) -> None:
        self.transport = transport
        self.hub._connections[self] = None
        self.connected()

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        self.closing = True
        self.hub._forget(self)
        if self._piped:
            self._clear_pipe()
        self.disconnected()

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        t = frame.msg_type
        if t == WSMsgType.CLOSE:
            transport.send_close(frame.get_close_code(), frame.get_close_message())
            transport.disconnect()
            return
        if self._limit is not None and self._over_limit():
            self.close(WSCloseCode.POLICY_VIOLATION, "Too many messages")
            return
        if t == WSMsgType.PING:
            if self._piped:
                self._enqueue(_PONG, frame.get_payload_as_bytes())
            else:
                transport.send_pong(frame.get_payload_as_bytes())
        elif t == WSMsgType.PONG:
            payload = frame.get_payload_as_bytes()
            if payload in self._pings or self.hub.limits.unsolicited_pong_keeps_alive:
                self.last_alive = time.monotonic()
        elif t in (WSMsgType.TEXT, WSMsgType.BINARY):
            self.on_message(frame.get_payload_as_bytes())

    # -- hooks for subclasses ---------------------------------------------------------------
    def connected(self) -> None:
        """Handle a completed handshake (subclass hook)."""

    def disconnected(self) -> None:
        """Handle the end of the connection (subclass hook)."""

    def on_message(self, data: bytes) -> None:
        """Handle one TEXT/BINARY message (subclass hook)."""

    # -- sending ------------------------------------------------------------------------------
    def send(self, data: bytes) -> None:
        """Send one TEXT message; drop the client if its write buffer overflows."""
        tr = self.transport
        if tr is None or self.closing:
            return
        if self._piped:
            self._enqueue(_TEXT, data)
            return
        tr.send(WSMsgType.TEXT, data)
        if tr.underlying_transport.get_write_buffer_size() > self.hub.limits.max_write_buffer:
            log.warning("dropping a client that does not read (write buffer over %d bytes)",
                        self.hub.limits.max_write_buffer)
            self.close(WSCloseCode.POLICY_VIOLATION, "Client too slow", graceful=False)

    def ping(self, now: float) -> None:
        """Send a ping whose payload the pong must echo (section 2)."""
        tr = self.transport
        if tr is None or self.closing:
            return
        payload = str(time.time_ns() // 1_000_000).encode()
        self._pings.append(payload)
        if self._piped:
            self._enqueue(_PING, payload)
        else:
            tr.send_ping(payload)
        self.next_ping = now + self.hub.limits.ping_interval_s

    def close(self, code: WSCloseCode = WSCloseCode.GOING_AWAY, reason: str = "", graceful: bool = True) -> None:
        """Send a CLOSE frame and disconnect."""
        tr = self.transport
        if tr is None or self.closing:
            return
        self.closing = True
        self.hub._forget(self)
        if self._piped:
            self._clear_pipe()
        tr.send_close(code, reason.encode())
        tr.disconnect(graceful)

    # -- fault injection (engine.sim.faults) ---------------------------------------------------
    def drop(self, abrupt: bool = False) -> None:
        """Drop the connection: CLOSE 1001 "going away", or (``abrupt``) a TCP abort with no CLOSE frame."""
        if not abrupt:
            self.close(WSCloseCode.GOING_AWAY, "")
            return
        tr = self.transport
        if tr is None or self.closing:
            return
        self.closing = True
        self.hub._forget(self)
        if self._piped:
            self._clear_pipe()
        tr.disconnect(False)

    def hold(self) -> None:
        """Freeze the connection: every outgoing frame (data, control replies, pings, pongs) waits."""
        self._held = True
        self._piped = True

    def release(self) -> None:
        """End :meth:`hold`: the frames held go out now, in order."""
        self._held = False
        self._schedule_drain()
        self._unpipe_if_idle()

    def set_delay(self, delay_s: float) -> None:
        """Delay every frame sent from now on by ``delay_s`` (wall s; 0 ends the delay, order kept)."""
        self._delay_s = delay_s
        if delay_s > 0:
            self._piped = True
        else:
            self._unpipe_if_idle()

    def _enqueue(self, kind: int, data: bytes) -> None:
        self._out.append((time.monotonic() + self._delay_s, kind, data))
        if len(self._out) == 1:
            self._schedule_drain()

    def _schedule_drain(self) -> None:
        if self._held or self._drain_handle is not None or not self._out or self.closing:
            return
        delay = self._out[0][0] - time.monotonic()
        self._drain_handle = asyncio.get_running_loop().call_later(max(0.0, delay), self._drain)

    def _drain(self) -> None:
        # Frames leave in the order they were sent; each not before its due time.
        self._drain_handle = None
        tr = self.transport
        q = self._out
        now = time.monotonic() + _DRAIN_SLACK_S
        while q and not self._held and q[0][0] <= now:
            if tr is None or self.closing:
                q.clear()
                break
            _, kind, data = q.popleft()
            if kind == _TEXT:
                tr.send(WSMsgType.TEXT, data)
            elif kind == _PONG:
                tr.send_pong(data)
            else:
                tr.send_ping(data)
        if q:
            self._schedule_drain()
        else:
            self._unpipe_if_idle()

    def _unpipe_if_idle(self) -> None:
        if not self._held and self._delay_s == 0 and not self._out:
            self._piped = False

    def _clear_pipe(self) -> None:
        self._out.clear()
        if self._drain_handle is not None:
            self._drain_handle.cancel()
            self._drain_handle = None

    def _over_limit(self) -> bool:
        now = time.monotonic()
        q = self._incoming
        q.append(now)
        while q and now - q[0] >= 1.0:
            q.popleft()
        assert self._limit is not None
        return len(q) > self._limit


class StreamConnection(Connection):
    """One market-data client: raw (``/ws``) or combined (``/stream``).

    Parameters
    ----------
    hub : StreamHub
    streams : list of str
        Streams named in the URL (already validated).
    combined : bool
        Wrap payloads in the combined envelope (``/stream``) or not (``/ws``).
    """

    def __init__(self, hub: "StreamHub", streams: list[str], combined: bool) -> None:
        super().__init__(hub)
        self.combined = combined
        self.subscriptions: dict[str, None] = {}
        self._initial = streams

    def connected(self) -> None:
        for s in self._initial:
            self.hub._subscribe(self, s)

    def on_message(self, data: bytes) -> None:
        try:
            reply = self.control(data)
        except ControlError as e:
            reply = error_reply(e)
        self.send(reply)

    def control(self, data: bytes) -> bytes:
        """Execute one control message and return the reply (raise :class:`ControlError`)."""
        method, params, id_ = parse_control(data)
        if method in ("SUBSCRIBE", "UNSUBSCRIBE"):
            if not all(valid_stream(p) for p in params):
                raise ControlError(2, "Invalid request: invalid stream", id_)
            if method == "SUBSCRIBE":
                new = [p for p in params if p not in self.subscriptions]
                if len(self.subscriptions) + len(new) > self.hub.limits.max_streams:
                    raise ControlError(2, "Invalid request: too many streams", id_)
                for p in new:
                    self.hub._subscribe(self, p)
            else:
                for p in params:
                    self.hub._unsubscribe(self, p)
            return result_reply(None, id_)
        if method == "LIST_SUBSCRIPTIONS":
            if params:
                raise ControlError(2, "Invalid request: too many parameters", id_)
            return result_reply(list(self.subscriptions), id_)
        # SET_PROPERTY / GET_PROPERTY: the only property is "combined".
        if not params or not isinstance(params[0], str):
            raise ControlError(2, "Invalid request: property name must be a string", id_)
        if params[0] != "combined":
            raise ControlError(0, "Unknown property", id_)
        if method == "GET_PROPERTY":
            if len(params) > 1:
                raise ControlError(2, "Invalid request: too many parameters", id_)
            return result_reply(self.combined, id_)
        if len(params) != 2 or not isinstance(params[1], bool):
            raise ControlError(1, "Invalid value type: expected Boolean", id_)
        self.combined = params[1]
        return result_reply(None, id_)


# -- the hub ----------------------------------------------------------------------------------------
class StreamHub:
    """Routes outgoing payloads to subscribed connections and keeps connections alive.

    Parameters
    ----------
    limits : StreamLimits
    """

    def __init__(self, limits: StreamLimits = SPOT_LIMITS) -> None:
        self.limits = limits
        self._connections: dict[Connection, None] = {}
        self._subs: dict[str, dict[StreamConnection, None]] = {}
        self._stalled: set[str] = set()
        self._stall_all = False
        self._task: asyncio.Task | None = None
        self.drop_filter: Callable[[str, bytes], bool] | None = None
        """Fault injection: ``f(stream, payload) -> True`` drops that payload for every client."""
        self.plan: Any = None
        """Fault plan (:class:`engine.sim.faults.FaultPlan`) consulted per payload; None: no faults."""
        # Payloads held back by the plan (reordered), per stream: (payload, frame).
        self._held: dict[str, tuple[bytes, bytes | None]] = {}
        self.published = 0
        self.delivered = 0

    @property
    def connections(self) -> list[Connection]:
        """The open connections (streams and WS API)."""
        return list(self._connections)

    def subscribers(self, stream: str) -> int:
        """Return the number of connections subscribed to ``stream``."""
        return len(self._subs.get(stream, ()))

    def stream_connections(self) -> list["StreamConnection"]:
        """The open market-data stream connections."""
        return [c for c in self._connections if isinstance(c, StreamConnection) and not c.closing]

    def other_connections(self) -> list[Connection]:
        """The open connections that are not market-data streams (the WS API)."""
        return [c for c in self._connections if not isinstance(c, StreamConnection) and not c.closing]

    # -- publishing ----------------------------------------------------------------------------
    def publish(self, stream: str, payload: bytes, frame: bytes | None = None) -> None:
        """Send ``payload`` to the subscribers of ``stream`` (a ``VenueMarket`` stream listener).

        Raw subscribers get ``payload``; combined ones get ``frame`` (the recorded envelope,
        byte-exact) or a freshly built envelope.
        """
        self.published += 1
        if self.plan is not None:
            self._publish_faulty(stream, payload, frame)
            return
        conns = self._subs.get(stream)
        if not conns:
            return
        if self._stall_all or stream in self._stalled:
            return
        if self.drop_filter is not None and self.drop_filter(stream, payload):
            return
        env = frame
        for c in list(conns):
            if c.combined:
                if env is None:
                    env = envelope(stream, payload)
                c.send(env)
            else:
                c.send(payload)
            self.delivered += 1

    def _publish_faulty(self, stream: str, payload: bytes, frame: bytes | None) -> None:
        # publish() under a fault plan: scheduled faults by the market clock, then one
        # per-payload decision (drawn whether or not anyone subscribed: determinism).
        plan = self.plan
        plan.tick(self)
        action = plan.frame_action(stream)
        held = self._held.pop(stream, None) if self._held else None
        conns = self._subs.get(stream)
        if not conns:
            return
        if self._stall_all or stream in self._stalled:
            return
        if self.drop_filter is not None and self.drop_filter(stream, payload):
            return
        if held is not None:
            # The payload held back goes out after this one; nothing else happens to either.
            self._deliver(conns, stream, payload, frame)
            self._deliver(conns, stream, held[0], held[1])
            return
        if action is None:
            self._deliver(conns, stream, payload, frame)
            return
        from engine.sim import faults as F

        if action == F.GAP:
            pass  # not sent: the next diff's U reveals the gap
        elif action == F.DUP_FRAME:
            self._deliver(conns, stream, payload, frame)
            self._deliver(conns, stream, payload, frame)
        else:
            self._held[stream] = (payload, frame)
        plan.count_frame(action, stream)

    def _deliver(self, conns: dict["StreamConnection", None], stream: str, payload: bytes,
                 frame: bytes | None) -> None:
        env = frame
        for c in list(conns):
            if c.data_stalled:
                continue
            if c.combined:
                if env is None:
                    env = envelope(stream, payload)
                c.send(env)
            else:
                c.send(payload)
            self.delivered += 1

    def flush_held(self) -> None:
        """Send the payloads a fault plan held back (the market has ended)."""
        held, self._held = self._held, {}
        for stream, (payload, frame) in held.items():
            conns = self._subs.get(stream)
            if conns:
                self._deliver(conns, stream, payload, frame)

    def _subscribe(self, conn: StreamConnection, stream: str) -> None:
        conn.subscriptions[stream] = None
        self._subs.setdefault(stream, {})[conn] = None

    def _unsubscribe(self, conn: StreamConnection, stream: str) -> None:
        conn.subscriptions.pop(stream, None)
        subs = self._subs.get(stream)
        if subs is not None:
            subs.pop(conn, None)
            if not subs:
                del self._subs[stream]

    def _forget(self, conn: Connection) -> None:
        self._connections.pop(conn, None)
        if isinstance(conn, StreamConnection):
            for s in list(conn.subscriptions):
                self._unsubscribe(conn, s)

    # -- keepalive -----------------------------------------------------------------------------
    def start(self) -> None:
        """Start the keepalive task on the running loop."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._keepalive())

    async def stop(self) -> None:
        """Stop the keepalive task and drop every connection."""
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None
        self.drop_all_connections(WSCloseCode.GOING_AWAY, "server closing")

    async def _keepalive(self) -> None:
        lim = self.limits
        # Check often enough that a deadline is missed by at most a quarter period.
        tick = min(lim.ping_interval_s, lim.pong_timeout_s) / 4.0
        while True:
            await asyncio.sleep(tick)
            self.check_connections(time.monotonic())

    def check_connections(self, now: float) -> None:
        """Drop clients past the pong timeout or lifetime; ping those that are due."""
        lim = self.limits
        for c in list(self._connections):
            if now - c.last_alive > lim.pong_timeout_s:
                log.info("dropping a client that did not answer pings for %.1f s", now - c.last_alive)
                c.close(WSCloseCode.POLICY_VIOLATION, "Pong timeout")
            elif lim.max_lifetime_s is not None and now - c.connected_at > lim.max_lifetime_s:
                c.close(WSCloseCode.GOING_AWAY, "Connection lifetime expired")
            elif now >= c.next_ping:
                c.ping(now)

    # -- fault injection -----------------------------------------------------------------------
    def drop_all_connections(self, code: WSCloseCode = WSCloseCode.GOING_AWAY, reason: str = "") -> int:
        """Close every connection (streams and WS API); return how many were closed."""
        conns = list(self._connections)
        for c in conns:
            c.close(code, reason)
        return len(conns)

    def stall(self, stream: str | None = None) -> None:
        """Stop delivering ``stream`` (every stream if None); connections stay open."""
        if stream is None:
            self._stall_all = True
        else:
            self._stalled.add(stream)

    def resume(self, stream: str | None = None) -> None:
        """Resume delivering ``stream`` (every stream if None); stalled payloads are lost."""
        if stream is None:
            self._stall_all = False
            self._stalled.clear()
        else:
            self._stalled.discard(stream)

    def send_server_shutdown(self, event_ms: int) -> None:
        """Send the spot ``serverShutdown`` event to every stream client (section 2)."""
        payload = msgspec.json.encode({"e": "serverShutdown", "E": event_ms})
        for c in list(self._connections):
            if isinstance(c, StreamConnection):
                c.send(envelope("!serverShutdown", payload) if c.combined else payload)


__all__ = [
    "ControlError", "Connection", "SPOT_LIMITS", "STREAM_RE", "StreamConnection", "StreamHub",
    "StreamLimits", "USDM_LIMITS", "envelope", "error_reply", "parse_control",
    "result_reply", "valid_stream",
]
