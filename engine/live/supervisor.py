"""Fail closed: halt on any lost or stalled connection, cancel everything, reconnect, resync, resume.

The pieces, all on the run's one event loop:

:class:`FailSafe` -- cancel every open order, by every route that still works
    Triggered on the disconnect or stall of the market-data **or** the trading
    connection (and by the kill switch, the risk manager, the graceful stop).
    Each attempt sends ``openOrders.cancelAll`` on the WS API when it is
    connected, and falls back to REST ``DELETE /api/v3/openOrders``
    (:mod:`engine.live.rest`) when it is not or when it fails; then it asks the
    venue for the symbol's open orders (same route first, the other as a
    fallback). Only an empty answer -- with no order request of ours still in
    flight on a live connection, which could land after the query -- confirms the
    cancel-all. Attempts repeat (short back-off) until confirmed. Each trigger is
    a :class:`CancelAllEvent` with its detection time and confirmation time
    (``latency_ms``). While any event is unconfirmed the context is halted
    (:data:`H_CANCEL_ALL`): quoting can resume only after the venue confirmed.
    With ``foreign_orders="leave"`` only our own orders (instance prefix) are
    cancelled, one by one, and only ours must be gone.

:class:`Supervisor` -- the connections' lifecycle
    * **monitor** (a timer of a few ms to 250 ms): our pings and the pong
      timeout of each connection, per-stream data freshness
      (:mod:`engine.live.liveness`); a dead or stale connection is dropped and
      handled as a disconnect. It also watches the kill file, the connections'
      age, and sweeps: while halted by a failure, an order of ours seen live is
      cancelled again (fail closed).
    * **disconnect** (market data or trading): count it, halt
      (:data:`H_STREAMS` / :data:`H_WS_API`), trigger the :class:`FailSafe`,
      invalidate the books (market data), start the reconnect loop.
    * **reconnect**: exponential back-off with jitter (``[reconnect]``:
      ``initial_ms * multiplier**n`` capped at ``max_ms``, minus up to ``jitter``
      of it at random); market data: a new connection with every stream
      subscribed, every book resynced from a fresh snapshot (bounded by
      ``resync_timeout_ms``), then the halt is released; trading: a new
      connection, the session and the user-data subscription, the existing
      reconciliation (``openOrders.status``), the resolution of every order in
      doubt (``order.status``), then the halt is released. ``max_attempts``
      consecutive failures stop the run.
    * **rotation** ahead of the venue's 24-hour limit (``max_connection_age_ms``)
      and on ``serverShutdown``: a new connection is opened and synced **beside**
      the old one (a new feed with its own books, shadowing; or a new WS API
      session), then swapped in and the old one closed. No halt: the quoting
      gap is zero.

Halt reasons (keys of :meth:`engine.bus.StrategyContext.halt`) are the ``H_*``
constants; quoting resumes when none is left.
"""
from __future__ import annotations

import asyncio
import logging
import os
import random
import time
from collections import Counter
from typing import TYPE_CHECKING, Any, Callable, Sequence

import msgspec

from engine.bus import DISCONNECTED, SHUTDOWN, ConnectionEvent
from engine.feed.market import FeedListener, MarketDataFeed
from engine.live.liveness import Liveness, staleness_ns_of
from engine.live.streams import MarketStreamClient, combined_stream_url, stream_names
from engine.orders import state as st
from engine.orders.reconcile import CANCEL

if TYPE_CHECKING:  # pragma: no cover
    from engine.live.runner import _Session

log = logging.getLogger(__name__)

# Halt reasons.
H_START = "start"
H_STREAMS = "streams"
H_WS_API = "ws-api"
H_CANCEL_ALL = "cancel-all"
H_KILL = "kill"
H_RISK = "risk"
H_STOP = "stopping"
# Halts of an unsafe state: while one is set, nothing of ours may stay open on the venue.
UNSAFE_HALTS = frozenset((H_STREAMS, H_CANCEL_ALL, H_KILL, H_RISK))
# Halts during which an order in doubt must not be sent again (engine.orders.reconcile resend).
NO_RESEND_HALTS = frozenset((H_STREAMS, H_CANCEL_ALL, H_KILL, H_RISK, H_STOP))

# CancelAllEvent kinds.
DISCONNECT = "disconnect"
KILL = "kill"
RISK = "risk"
SWEEP = "sweep"
STOP = "stop"

# Pause after a failed cancel-all attempt: first, cap (s). Short: nothing matters more.
_FAILSAFE_PAUSE_S = 0.02
_FAILSAFE_PAUSE_MAX_S = 1.0
# Poll period while waiting for in-flight order requests or a resync, s.
_POLL_S = 0.005
# Monitor period bounds, s.
_MONITOR_MIN_S = 0.005
_MONITOR_MAX_S = 0.25
# How often the kill file is looked at, ns (a stat() per check).
_KILL_FILE_EVERY_NS = 100_000_000
# Least time between two sweeps, ns (each costs a cancel-all and a query).
_SWEEP_EVERY_NS = 500_000_000


class CancelAllEvent(msgspec.Struct, kw_only=True):
    """One fail-closed cancel-all, from detection to the venue's confirmation.

    Attributes
    ----------
    kind : str
        ``disconnect`` (a connection lost or stalled), ``kill``, ``risk``, ``sweep``
        (an order seen live while halted) or ``stop``.
    reason : str
    detected_ns : int
        Monotonic ns of the detection.
    confirmed_ns : int
        Monotonic ns when the venue reported no open orders (0: not confirmed).
    route : str
        Route of the cancel that was confirmed: ``ws-api`` or ``rest``.
    attempts : int
        Attempts (cancel + query) until confirmed.
    """

    kind: str
    reason: str
    detected_ns: int
    confirmed_ns: int = 0
    route: str = ""
    attempts: int = 0

    @property
    def latency_ms(self) -> float:
        """Detection to confirmation, ms (-1 if not confirmed)."""
        if not self.confirmed_ns:
            return -1.0
        return round((self.confirmed_ns - self.detected_ns) / 1e6, 3)


# -- routes ----------------------------------------------------------------------------------------
class WsApiRoute:
    """The WS API as a cancel route (``openOrders.cancelAll``, ``openOrders.status``, ``order.cancel``).

    Parameters
    ----------
    client : callable
        Returns the current :class:`~engine.live.wsapi.WsApiClient` (it changes on rotation).
    tracker : OrderTracker
    """

    name = "ws-api"

    def __init__(self, client: Callable[[], Any], tracker: Any) -> None:
        self._client = client
        self.tracker = tracker

    def available(self) -> bool:
        """True if the connection is up."""
        c = self._client()
        return c is not None and c.connected and not c.closing

    async def cancel_all(self, symbol: str, include_unknown: bool, timeout_s: float) -> list:
        """Cancel every open order of ``symbol``; the tracker is updated."""
        return await self._client().cancel_all(symbol, timeout_s, include_unknown)

    async def open_orders(self, symbol: str, timeout_s: float) -> list:
        """The venue's open orders of ``symbol``."""
        return await self._client().open_orders(symbol, timeout_s)

    async def cancel_order(self, symbol: str, cid: str, timeout_s: float) -> Any:
        """Cancel one order by client id; the tracker is updated."""
        tr = self.tracker
        tracked = tr.get(cid) is not None
        if tracked:
            tr.on_cancel_sent(cid)
        try:
            res = await self._client().cancel_order(symbol, cid, timeout_s)
        except Exception as e:
            if tracked:
                tr.on_cancel_error(cid, getattr(e, "status", 500), getattr(e, "code", 0), getattr(e, "msg", repr(e)))
            raise
        if tracked:
            tr.on_cancel_ack(cid, res)
        return res


class RestRoute:
    """REST as the fallback cancel route (``DELETE /api/v3/openOrders``, ``GET /api/v3/openOrders``).

    Parameters
    ----------
    rest : RestClient
    tracker : OrderTracker
    """

    name = "rest"

    def __init__(self, rest: Any, tracker: Any) -> None:
        self.rest = rest
        self.tracker = tracker

    def available(self) -> bool:
        """Always worth a try (no connection state to check)."""
        return True

    async def cancel_all(self, symbol: str, include_unknown: bool, timeout_s: float) -> list:
        """Cancel every open order of ``symbol``; the tracker is updated from the answer."""
        tr = self.tracker
        tr.on_cancel_all_sent(symbol, include_unknown)
        try:
            res = await self.rest.cancel_all(symbol, timeout_s)
        except asyncio.CancelledError:
            tr.on_cancel_all_timeout(symbol)
            raise
        except Exception as e:
            status = getattr(e, "status", None)
            if status is None or status >= 500:
                # No answer, or unknown outcome: every open order is in doubt until confirmed.
                tr.on_cancel_all_timeout(symbol)
            else:
                tr.on_cancel_all_error(symbol, status, getattr(e, "code", 0), getattr(e, "msg", ""))
            raise
        tr.on_cancel_all_ack(symbol, res)
        return res

    async def open_orders(self, symbol: str, timeout_s: float) -> list:
        """The venue's open orders of ``symbol``."""
        return await self.rest.open_orders(symbol, timeout_s)

    async def cancel_order(self, symbol: str, cid: str, timeout_s: float) -> Any:
        """Cancel one order by client id; the tracker is updated."""
        tr = self.tracker
        tracked = tr.get(cid) is not None
        if tracked:
            tr.on_cancel_sent(cid)
        try:
            res = await self.rest.cancel_order(symbol, cid, timeout_s)
        except Exception as e:
            if tracked:
                tr.on_cancel_error(cid, getattr(e, "status", 500) or 500, getattr(e, "code", 0),
                                   getattr(e, "msg", repr(e)))
            raise
        if tracked:
            tr.on_cancel_ack(cid, res)
        return res


# -- the fail-safe ---------------------------------------------------------------------------------
class FailSafe:
    """Cancel every open order of one symbol until the venue confirms none is left (see the module doc).

    Parameters
    ----------
    symbol : str
    routes : sequence
        Cancel routes in order of preference (:class:`WsApiRoute`, then :class:`RestRoute`).
    tracker : OrderTracker
    ctx : StrategyContext, optional
        Halted with :data:`H_CANCEL_ALL` while an event is unconfirmed.
    foreign : {"cancel", "leave"}
        ``leave``: cancel only ours (``owns``), one by one.
    owns : callable, optional
        ``f(client_order_id) -> bool`` (:func:`engine.orders.reconcile.owned_by`).
    attempt_timeout_s : float
        Bound of one request of an attempt, s.
    on_error : callable, optional
        ``f(where, exc)``: an unexpected exception (counted by the runner).
    on_confirmed : callable, optional
        ``f(CancelAllEvent)`` when the venue confirmed an event.

    Attributes
    ----------
    events : list of CancelAllEvent
    attempts, confirmations : int
    route_failures : Counter
        Failed requests by route name.
    """

    def __init__(self, symbol: str, routes: Sequence[Any], tracker: Any, ctx: Any = None, *,
                 foreign: str = CANCEL, owns: Callable[[str], bool] | None = None, attempt_timeout_s: float = 2.0,
                 on_error: Callable[[str, BaseException], None] | None = None,
                 on_confirmed: Callable[[CancelAllEvent], None] | None = None) -> None:
        self.symbol = symbol
        self.on_confirmed = on_confirmed
        self.routes = list(routes)
        self.tracker = tracker
        self.ctx = ctx
        self.foreign = foreign
        self.owns = owns
        self.attempt_timeout_s = attempt_timeout_s
        self.on_error = on_error
        self.events: list[CancelAllEvent] = []
        self._pending: list[CancelAllEvent] = []
        self._include_unknown = False
        self._task: asyncio.Task | None = None
        self._idle = asyncio.Event()
        self._idle.set()
        self._wake = asyncio.Event()
        self.attempts = 0
        self.confirmations = 0
        self.route_failures: Counter[str] = Counter()
        self.last_error = ""

    @property
    def idle(self) -> bool:
        """True when every event is confirmed."""
        return not self._pending

    def trigger(self, kind: str, reason: str, include_unknown: bool = False,
                detected_ns: int | None = None) -> CancelAllEvent:
        """Start (or join) a cancel-all; return its event.

        ``include_unknown`` also marks orders in doubt unwanted (never resent); use it
        when trading stops for good (kill, risk, stop).
        """
        ev = CancelAllEvent(kind=kind, reason=reason,
                            detected_ns=time.monotonic_ns() if detected_ns is None else detected_ns)
        self.events.append(ev)
        self._pending.append(ev)
        self._include_unknown = self._include_unknown or include_unknown
        self._idle.clear()
        if self.ctx is not None:
            self.ctx.halt(H_CANCEL_ALL, reason)
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run(), name="fail-safe")
            self._task.add_done_callback(self._done)
        log.warning("fail-safe: cancel-all of %s (%s: %s)", self.symbol, kind, reason)
        return ev

    def _done(self, task: asyncio.Task) -> None:
        if not task.cancelled() and task.exception() is not None and self.on_error is not None:
            self.on_error("fail-safe", task.exception())  # type: ignore[arg-type]

    async def wait_idle(self, timeout_s: float) -> bool:
        """Wait until every event is confirmed; True if so within ``timeout_s``."""
        try:
            await asyncio.wait_for(self._idle.wait(), timeout_s)
        except asyncio.TimeoutError:
            return False
        return True

    def poke(self) -> None:
        """A route may work again (a connection came back): retry now rather than after the pause."""
        self._wake.set()

    def close(self) -> None:
        """Stop retrying (the run is over)."""
        if self._task is not None:
            self._task.cancel()

    async def _run(self) -> None:
        pause = _FAILSAFE_PAUSE_S
        while self._pending:
            n = len(self._pending)
            inc = self._include_unknown
            self._include_unknown = False
            for ev in self._pending[:n]:
                ev.attempts += 1
            self.attempts += 1
            try:
                route = await self._attempt(inc)
            except asyncio.CancelledError:
                raise
            except Exception as e:  # noqa: BLE001 - a bug here must not stop the retries
                route = None
                if self.on_error is not None:
                    self.on_error("fail-safe attempt", e)
                log.exception("fail-safe attempt failed")
            if route is not None:
                now = time.monotonic_ns()
                for ev in self._pending[:n]:
                    ev.confirmed_ns = now
                    ev.route = route
                    log.warning("fail-safe: confirmed: no open orders on %s (%s: %s) after %.1f ms via %s",
                                self.symbol, ev.kind, ev.reason, ev.latency_ms, route)
                    if self.on_confirmed is not None:
                        self.on_confirmed(ev)
                del self._pending[:n]
                self.confirmations += 1
                # The venue has nothing open: what the tracker still holds as live must be
                # confirmed order by order (filled or cancelled meanwhile; order.status).
                for o in self.tracker.open_orders(self.symbol):
                    if o.state in (st.NEW, st.PARTIALLY_FILLED) and not o.need_query:
                        self.tracker.mark_need_query(o)
                pause = _FAILSAFE_PAUSE_S
                continue
            self._include_unknown = self._include_unknown or inc
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), pause)
            except asyncio.TimeoutError:
                pass
            pause = min(pause * 2, _FAILSAFE_PAUSE_MAX_S)
        if self.ctx is not None:
            self.ctx.release(H_CANCEL_ALL)
        self._idle.set()

    def _ours(self, rows: list) -> list:
        if self.foreign == CANCEL or self.owns is None:
            return rows
        return [r for r in rows if self.owns(r.get("clientOrderId") or "")]

    async def _cancel_on(self, route: Any, include_unknown: bool) -> None:
        t = self.attempt_timeout_s
        if self.foreign == CANCEL or self.owns is None:
            await route.cancel_all(self.symbol, include_unknown, t)
            return
        # Several instances share the account: only ours, one by one.
        for row in self._ours(await route.open_orders(self.symbol, t)):
            try:
                await route.cancel_order(self.symbol, row.get("clientOrderId") or "", t)
            except Exception as e:  # noqa: BLE001 - -2011: gone already; the query decides
                if getattr(e, "code", None) != -2011:
                    raise

    async def _attempt(self, include_unknown: bool) -> str | None:
        # One cancel on the first route that works, then the venue's word on what is left.
        routes = [r for r in self.routes if r.available()]
        if not routes:
            self.last_error = "no route to the venue"
            return None
        used = None
        for r in routes:
            try:
                await self._cancel_on(r, include_unknown)
            except asyncio.CancelledError:
                raise
            except Exception as e:  # noqa: BLE001 - try the next route
                self.route_failures[r.name] += 1
                self.last_error = f"{r.name} cancel: {e!r}"
                log.info("fail-safe: cancel via %s failed: %r", r.name, e)
                continue
            used = r
            break
        if used is None:
            return None
        left = None
        for r in [used] + [x for x in routes if x is not used]:
            if not r.available():
                continue
            try:
                left = await r.open_orders(self.symbol, self.attempt_timeout_s)
            except asyncio.CancelledError:
                raise
            except Exception as e:  # noqa: BLE001 - ask the other route
                self.route_failures[r.name] += 1
                self.last_error = f"{r.name} open orders: {e!r}"
                continue
            break
        if left is None:
            return None
        left = self._ours(left)
        if left:
            self.last_error = f"{len(left)} orders still open"
            return None
        # An order request still unanswered on a live connection could land after that query:
        # wait (bounded) for its answer, then go round once more.
        if self._in_flight():
            deadline = time.monotonic() + self.attempt_timeout_s
            while self._in_flight() and time.monotonic() < deadline:
                await asyncio.sleep(_POLL_S)
            self.last_error = "order requests were in flight"
            return None
        return used.name

    def _in_flight(self) -> bool:
        return any(o.state == st.PENDING_NEW for o in self.tracker.open_orders(self.symbol))

    def latencies_ns(self, kind: str | None = None) -> list[int]:
        """Detection-to-confirmation times of the confirmed events (of ``kind``), ns."""
        return [e.confirmed_ns - e.detected_ns for e in self.events
                if e.confirmed_ns and (kind is None or e.kind == kind)]


# -- back-off ----------------------------------------------------------------------------------------
class Backoff:
    """Delays of consecutive reconnect attempts (``[reconnect]``: exponential, capped, with jitter).

    Parameters
    ----------
    config : ReconnectConfig
    rng : random.Random, optional
    """

    def __init__(self, config: Any, rng: random.Random | None = None) -> None:
        self.config = config
        self.rng = rng if rng is not None else random.Random()
        self.failures = 0

    def next_delay_s(self) -> float:
        """Delay before the next attempt, s (grows with :attr:`failures`)."""
        return self.config.delay_ms(self.failures, self.rng.random()) / 1000.0

    def failed(self) -> bool:
        """Count a failed attempt; True if ``max_attempts`` consecutive failures are reached."""
        self.failures += 1
        return self.failures >= max(1, self.config.max_attempts)

    def reset(self) -> None:
        """A successful attempt: start over from ``initial_ms``."""
        self.failures = 0


class _ShadowListener(FeedListener):
    # A new connection's feed while it syncs beside the current one: no strategy callbacks;
    # snapshots are asked for on its behalf.
    def __init__(self, request: Callable[[str], None]) -> None:
        self.request = request

    def on_snapshot_needed(self, symbol: str) -> None:
        self.request(symbol)


# -- the supervisor -------------------------------------------------------------------------------------
class Supervisor:
    """Liveness monitor, disconnect handling, reconnects and rotations of one run (see the module doc).

    Parameters
    ----------
    session : engine.live.runner._Session
        The run: connections, feed, context, tracker, fail-safe and configuration.
    """

    def __init__(self, session: "_Session") -> None:
        self.s = session
        cfg = session.cfg
        self.liveness_cfg = cfg.liveness
        self.reconnect_cfg = cfg.reconnect
        rng = random.Random(cfg.seed) if cfg.seed is not None else random.Random()
        self.streams_backoff = Backoff(cfg.reconnect, rng)
        self.ws_backoff = Backoff(cfg.reconnect, rng)
        st_cfg = cfg.liveness.max_staleness
        self.staleness = staleness_ns_of(st_cfg.depth_ms, st_cfg.trade_ms, st_cfg.book_ticker_ms)
        self._handled: set[int] = set()
        self._streams_task: asyncio.Task | None = None
        self._ws_task: asyncio.Task | None = None
        self._rotate_streams_task: asyncio.Task | None = None
        self._rotate_ws_task: asyncio.Task | None = None
        self._monitor_task: asyncio.Task | None = None
        self._candidates: list[tuple[Any, Liveness]] = []
        self._kill_checked_ns = 0
        self._rotation_after_ns = 0
        self._sweep_after_ns = 0
        # Counters.
        self.disconnects = 0
        self.streams_disconnects = 0
        self.ws_api_disconnects = 0
        self.stalls = 0
        self.pong_timeouts = 0
        self.rotations_streams = 0
        self.rotations_ws_api = 0
        self.rotation_failures = 0
        self.resyncs = 0
        self.resync_failures = 0
        self.sweeps = 0
        self.server_shutdowns = 0
        self.monitor_errors = 0

    # -- factories ---------------------------------------------------------------------------------------
    def new_liveness(self, name: str, data: bool) -> Liveness:
        """A :class:`Liveness` for a new connection (data freshness only for market data)."""
        c = self.liveness_cfg
        return Liveness(name, c.ping_interval_ms, c.pong_timeout_ms, self.staleness if data else None)

    def new_stream_client(self, feed: MarketDataFeed, ctx: Any) -> MarketStreamClient:
        """A market-stream client (every stream of the run) feeding ``feed``."""
        s = self.s
        url = combined_stream_url(s.cfg.streams_url, stream_names([s.symbol], s.cfg.depth_speed))
        client = MarketStreamClient(url, feed, ctx, liveness=self.new_liveness("streams", True))
        client.on_connection = lambda ev, c=client: self.on_stream_event(ev, c)
        s.all_streams.append(client)
        return client

    # -- lifecycle ---------------------------------------------------------------------------------------
    def start(self) -> None:
        """Start the monitor."""
        if self._monitor_task is None:
            self._monitor_task = self.s.spawn(self._monitor(), "liveness-monitor")

    def stop(self) -> None:
        """Stop the monitor, reconnects and rotations (shutdown)."""
        for t in (self._monitor_task, self._streams_task, self._ws_task, self._rotate_streams_task,
                  self._rotate_ws_task):
            if t is not None and not t.done():
                t.cancel()

    def monitor_period_s(self) -> float:
        """Period of the monitor: a quarter of the tightest threshold, within [5 ms, 250 ms]."""
        c = self.liveness_cfg
        ms = [c.pong_timeout_ms] + [v // 1_000_000 for v in self.staleness.values()]
        return min(_MONITOR_MAX_S, max(_MONITOR_MIN_S, min(ms) / 4000.0))

    # -- events ------------------------------------------------------------------------------------------
    def on_stream_event(self, ev: ConnectionEvent, client: MarketStreamClient) -> None:
        """A market-stream connection changed state."""
        s = self.s
        if client is s.streams and s.bus is not None:
            s.bus.on_connection(ev)
        if ev.state == SHUTDOWN and client is s.streams:
            # The venue will close it (section 2): move to a new connection now.
            self.server_shutdowns += 1
            self.rotate_streams("serverShutdown")
            return
        if ev.state != DISCONNECTED or client is not s.streams or client.closing or id(client) in self._handled:
            return
        self._handled.add(id(client))
        if s.stop.is_set():
            return
        self.streams_lost(f"market stream disconnected: {ev.detail}")

    def on_ws_event(self, ev: ConnectionEvent, client: Any) -> None:
        """A WS API connection changed state."""
        s = self.s
        if client is s.wsapi and s.bus is not None:
            s.bus.on_connection(ev)
        if ev.state == SHUTDOWN and client is s.wsapi:
            self.server_shutdowns += 1
            log.warning("the venue announced serverShutdown on the WS API; rotating")
            self.rotate_ws_api("serverShutdown")
            return
        if ev.state != DISCONNECTED or client is not s.wsapi or client.closing or id(client) in self._handled:
            return
        self._handled.add(id(client))
        if client.connected:
            # The session, not the socket, was lost (user stream ended, key revoked): start over.
            client.abort()
        if s.stop.is_set():
            return
        self.ws_api_lost(f"WS API connection lost: {ev.detail}")

    def connection_dead(self, client: Any, reason: str) -> None:
        """The monitor found ``client`` dead (pong timeout) or stale: drop it and handle the loss."""
        s = self.s
        if id(client) in self._handled:
            return
        self._handled.add(id(client))
        if "pong" in reason:
            self.pong_timeouts += 1
        else:
            self.stalls += 1
        log.warning("%s; dropping the connection", reason)
        client.abort()
        if s.stop.is_set():
            return
        if client is s.streams:
            self.streams_lost(reason)
        elif client is s.wsapi:
            self.ws_api_lost(reason)

    # -- disconnects -----------------------------------------------------------------------------------
    def _disconnect(self, reason: str) -> None:
        s = self.s
        self.disconnects += 1
        s.notify("disconnect", reason)
        s.failsafe.trigger(DISCONNECT, reason)

    def streams_lost(self, reason: str) -> None:
        """Market data lost or stalled: halt, cancel everything, invalidate the books, reconnect."""
        s = self.s
        self.streams_disconnects += 1
        s.ctx.halt(H_STREAMS, reason)
        self._disconnect(reason)
        if s.feed is not None:
            for sym, sync in s.feed.syncs.items():
                sync.invalidate()
                if s.bus is not None:
                    s.bus.book_invalidated(sym, "stream disconnected")
        if self._rotate_streams_task is not None and not self._rotate_streams_task.done():
            self._rotate_streams_task.cancel()
        if self._streams_task is None or self._streams_task.done():
            self._streams_task = s.spawn(self._reconnect_streams(), "reconnect-streams")

    def ws_api_lost(self, reason: str) -> None:
        """Trading connection lost or stalled: halt, cancel everything (REST), reconnect and reconcile."""
        s = self.s
        self.ws_api_disconnects += 1
        s.ctx.halt(H_WS_API, reason)
        s.wsapi.paused = True
        # Requests in flight are already in doubt (WsApiClient.on_ws_disconnected); the
        # user-data events of the gap are lost: every open order must be confirmed.
        s.tracker.on_connection_lost()
        self._disconnect(reason)
        if self._rotate_ws_task is not None and not self._rotate_ws_task.done():
            self._rotate_ws_task.cancel()
        if self._ws_task is None or self._ws_task.done():
            self._ws_task = s.spawn(self._reconnect_ws_api(), "reconnect-ws-api")

    # -- reconnects ------------------------------------------------------------------------------------
    async def _reconnect_streams(self) -> None:
        s = self.s
        cfg = s.cfg
        rc = self.reconnect_cfg
        b = self.streams_backoff
        while not s.stop.is_set():
            if cfg.max_reconnects is not None and s.reconnects >= cfg.max_reconnects:
                s.request_stop("streams lost")
                return
            delay = b.next_delay_s()
            s.notify("reconnect_attempt", ("streams", delay))
            await asyncio.sleep(delay)
            s.reconnects += 1
            assert s.feed is not None
            client = self.new_stream_client(s.feed, s.ctx)
            s.streams = client
            try:
                await client.connect(rc.connect_timeout_ms / 1000.0)
            except Exception as e:  # noqa: BLE001 - any failure: back off and retry
                log.warning("stream reconnect failed: %r", e)
                self._handled.add(id(client))
                if b.failed():
                    s.request_stop("streams lost")
                    return
                continue
            client.liveness.start()
            ok = await self.resync(s.feed, client, rc.resync_timeout_ms / 1000.0)
            if not ok:
                self.resync_failures += 1
                if client.connected:
                    log.warning("books not resynced within %d ms after the stream reconnect; retrying",
                                rc.resync_timeout_ms)
                    self._handled.add(id(client))
                    client.abort()
                if b.failed():
                    s.request_stop("streams lost")
                    return
                continue
            b.reset()
            self.resyncs += 1
            s.notify("resynced", None)
            s.ctx.release(H_STREAMS)
            log.info("market stream back, every book resynced")
            return

    async def resync(self, feed: MarketDataFeed, client: MarketStreamClient, timeout_s: float) -> bool:
        """Wait until every book of ``feed`` is valid (fresh snapshots requested as needed); False on timeout."""
        s = self.s
        deadline = time.monotonic() + timeout_s
        while not s.stop.is_set() and time.monotonic() < deadline:
            if not client.connected:
                return False
            syncs = feed.syncs
            if syncs and all(sync.valid for sync in syncs.values()) and len(syncs) >= 1:
                return True
            for sym, sync in syncs.items():
                if not sync.valid and sync.buffered > 0:
                    # No-op while one is in flight for this feed; refused (and retried) by the limiter.
                    s.wsapi.request_snapshot(sym, s.cfg.depth_limit, feed)
            await asyncio.sleep(_POLL_S * 4)
        return False

    async def _reconnect_ws_api(self) -> None:
        s = self.s
        cfg = s.cfg
        rc = self.reconnect_cfg
        b = self.ws_backoff
        timeout = rc.connect_timeout_ms / 1000.0
        while not s.stop.is_set():
            if cfg.max_ws_reconnects is not None and s.ws_reconnects >= cfg.max_ws_reconnects:
                s.request_stop("ws-api lost")
                return
            delay = b.next_delay_s()
            s.notify("reconnect_attempt", ("ws-api", delay))
            await asyncio.sleep(delay)
            c = s.wsapi
            try:
                if c.connected:
                    await c.close(cfg.shutdown_timeout_s)
                self._handled.discard(id(c))
                await c.connect(timeout)
                c.liveness.start()
                # The WS API route works again: a pending cancel-all goes first.
                s.failsafe.poke()
                await asyncio.wait_for(c.start_session(), timeout)
                await s.reconcile("reconnect")
            except Exception as e:  # noqa: BLE001 - any failure: back off and retry
                log.warning("WS API reconnect failed: %r", e)
                if c.connected:
                    self._handled.add(id(c))
                    c.abort()
                if b.failed():
                    s.request_stop("ws-api lost")
                    return
                continue
            s.ws_reconnects += 1
            b.reset()
            # Quote again only once every order in doubt is settled (bounded wait).
            if not await s.resolver.settle(cfg.resolve_timeout_s):
                log.warning("%d orders still in doubt after the reconnect; quoting resumes anyway",
                            s.tracker.in_doubt_count())
            s.sync_risk()
            if c.connected and not s.stop.is_set():
                c.paused = False
                if s.feed is not None:
                    for sym, sync in s.feed.syncs.items():
                        if not sync.valid and sync.buffered > 0:
                            c.request_snapshot(sym, cfg.depth_limit)
                s.ctx.release(H_WS_API)
                log.info("WS API back (session, user data, reconciliation done)")
                return

    # -- rotation ----------------------------------------------------------------------------------------
    def rotate_streams(self, why: str) -> None:
        """Replace the market-stream connection by a new, synced one (no halt)."""
        s = self.s
        if (self._streams_task is not None and not self._streams_task.done()) or s.stop.is_set():
            return
        if self._rotate_streams_task is None or self._rotate_streams_task.done():
            self._rotate_streams_task = s.spawn(self._rotate_streams(why), "rotate-streams")

    def rotate_ws_api(self, why: str) -> None:
        """Replace the WS API connection by a new session (no halt)."""
        s = self.s
        if (self._ws_task is not None and not self._ws_task.done()) or s.stop.is_set():
            return
        if self._rotate_ws_task is None or self._rotate_ws_task.done():
            self._rotate_ws_task = s.spawn(self._rotate_ws_api(why), "rotate-ws-api")

    async def _rotate_streams(self, why: str) -> None:
        s = self.s
        rc = self.reconnect_cfg
        old = s.streams
        old_feed = s.feed
        assert old is not None and old_feed is not None and s.bus is not None
        log.info("rotating the market stream (%s)", why)
        feed = s.new_feed(None)
        feed.listener = _ShadowListener(lambda sym: s.loop.call_soon(self._shadow_snapshot, feed, sym))
        client = self.new_stream_client(feed, None)
        ok = False
        try:
            await client.connect(rc.connect_timeout_ms / 1000.0)
            client.liveness.start()
            self._candidates.append((client, client.liveness))
            ok = await self.resync(feed, client, rc.resync_timeout_ms / 1000.0)
        except asyncio.CancelledError:
            self._handled.add(id(client))
            if client.connected:
                client.abort()
            raise
        except Exception as e:  # noqa: BLE001 - the old connection keeps serving
            log.warning("stream rotation: connecting failed: %r", e)
        finally:
            self._candidates = [(c, lv) for c, lv in self._candidates if c is not client]
        if not ok or s.streams is not old or s.stop.is_set() or not old.connected:
            self.rotation_failures += 1
            self._handled.add(id(client))
            if client.connected:
                client.abort()
            # Try again later (a failed rotation must not be retried in a tight loop).
            self._rotation_after_ns = time.monotonic_ns() + self.reconnect_cfg.max_ms * 1_000_000
            return
        # Swap: the new feed's books become the strategy's; the old connection is closed.
        feed.listener = s.bus
        bus = s.bus
        for sym, sync in feed.syncs.items():
            # A sync binds its listener when it is created (engine.feed.market): re-point the
            # books synced under the shadow listener at the strategy's bus.
            sync.on_applied = (lambda book, _sym=sym: bus.on_book(_sym, book))
        client.ctx = s.ctx
        s.feed = feed
        s.wsapi.feed = feed
        for sym, sync in feed.syncs.items():
            s.bus.replace_book(sym, sync.book)
        s.streams = client
        old.closing = True
        for sync in old_feed.syncs.values():
            # Views kept by the strategy across callbacks must not read the retired books.
            sync.invalidate()
        self.rotations_streams += 1
        s.notify("rotated", "streams")
        log.info("market stream rotated (%s)", why)
        try:
            await old.close(s.cfg.shutdown_timeout_s)
        except Exception:  # noqa: BLE001 - it is retired either way
            old.abort()

    def _shadow_snapshot(self, feed: MarketDataFeed, symbol: str) -> None:
        self.s.wsapi.request_snapshot(symbol, self.s.cfg.depth_limit, feed)

    async def _rotate_ws_api(self, why: str) -> None:
        s = self.s
        rc = self.reconnect_cfg
        old = s.wsapi
        log.info("rotating the WS API connection (%s)", why)
        new = s.new_wsapi()
        timeout = rc.connect_timeout_ms / 1000.0
        try:
            await new.connect(timeout)
            new.liveness.start()
            self._candidates.append((new, new.liveness))
            await asyncio.wait_for(new.start_session(), timeout)
        except asyncio.CancelledError:
            self._handled.add(id(new))
            new.closing = True
            if new.connected:
                new.abort()
            raise
        except Exception as e:  # noqa: BLE001 - the old connection keeps serving
            log.warning("WS API rotation failed: %r", e)
            self.rotation_failures += 1
            self._handled.add(id(new))
            new.closing = True
            if new.connected:
                new.abort()
            self._rotation_after_ns = time.monotonic_ns() + self.reconnect_cfg.max_ms * 1_000_000
            return
        finally:
            self._candidates = [(c, lv) for c, lv in self._candidates if c is not new]
        if s.wsapi is not old or s.stop.is_set() or not old.connected:
            self._handled.add(id(new))
            new.closing = True
            await new.close(s.cfg.shutdown_timeout_s)
            return
        # Both sessions receive our executionReports now (the tracker is idempotent); swap.
        new.feed = old.feed
        new.paused = old.paused
        s.adopt_wsapi(new)
        self.rotations_ws_api += 1
        s.notify("rotated", "ws-api")
        log.info("WS API connection rotated (%s)", why)
        # Let the old connection answer what is in flight on it, then close it.
        deadline = time.monotonic() + s.cfg.order_timeout_s + 1.0
        while old._pending and old.connected and time.monotonic() < deadline:
            await asyncio.sleep(_POLL_S * 4)
        old.closing = True
        try:
            await old.close(s.cfg.shutdown_timeout_s)
        except Exception:  # noqa: BLE001
            old.abort()

    # -- the monitor -------------------------------------------------------------------------------------
    async def _monitor(self) -> None:
        period = self.monitor_period_s()
        while True:
            await asyncio.sleep(period)
            try:
                self.check(time.monotonic_ns())
            except Exception as e:  # noqa: BLE001 - the monitor must keep running
                self.monitor_errors += 1
                self.s.count_error("monitor", e)

    def check(self, now: int) -> None:
        """One monitor pass: pings, liveness verdicts, kill file, rotation, sweep."""
        s = self.s
        conns: list[tuple[Any, Liveness]] = []
        if s.streams is not None:
            conns.append((s.streams, s.streams.liveness))
        conns.append((s.wsapi, s.wsapi.liveness))
        conns.extend(self._candidates)
        for client, liv in conns:
            if liv is None or not client.connected or client.closing or id(client) in self._handled:
                continue
            if liv.started_ns == 0:
                continue
            p = liv.ping_due(now)
            if p is not None:
                client.send_ping(p)
            reason = liv.check(now)
            if reason:
                if (client, liv) in self._candidates:
                    # A rotation candidate: give it up, the current connection serves on.
                    self._handled.add(id(client))
                    client.abort()
                else:
                    self.connection_dead(client, reason)
        if s.cfg.kill_file and now - self._kill_checked_ns >= _KILL_FILE_EVERY_NS:
            self._kill_checked_ns = now
            if os.path.exists(s.cfg.kill_file):
                s.kill(f"kill file {s.cfg.kill_file}")
        age = self.reconnect_cfg.max_connection_age_ms * 1_000_000
        if age and now >= self._rotation_after_ns and not s.stop.is_set():
            st_ = s.streams
            if st_ is not None and st_.connected and st_.liveness.started_ns and st_.liveness.age_ns(now) >= age:
                self.rotate_streams(f"connection age over {self.reconnect_cfg.max_connection_age_ms} ms")
            w = s.wsapi
            if w.connected and w.liveness.started_ns and w.liveness.age_ns(now) >= age:
                self.rotate_ws_api(f"connection age over {self.reconnect_cfg.max_connection_age_ms} ms")
        self._sweep()

    def _sweep(self) -> None:
        # While trading is halted for an unsafe reason, nothing of ours may stay live on the venue.
        s = self.s
        ctx = s.ctx
        if not ctx.halted or not s.failsafe.idle or s.stop.is_set():
            return
        if not any(k in UNSAFE_HALTS for k in ctx.halt_reasons):
            return
        now = time.monotonic_ns()
        if now < self._sweep_after_ns:
            return
        live = [o for o in s.tracker.open_orders(s.symbol)
                if o.state in (st.NEW, st.PARTIALLY_FILLED) and not o.cancel_pending and not o.need_query]
        if live and (s.wsapi.connected or s.rest is not None):
            self._sweep_after_ns = now + _SWEEP_EVERY_NS
            self.sweeps += 1
            s.failsafe.trigger(SWEEP, f"{len(live)} orders live while halted ({ctx.halt_reason})",
                               include_unknown=bool({H_KILL, H_RISK} & set(ctx.halt_reasons)))


__all__ = ["Backoff", "CancelAllEvent", "DISCONNECT", "FailSafe", "H_CANCEL_ALL", "H_KILL", "H_RISK", "H_START",
           "H_STOP", "H_STREAMS", "H_WS_API", "KILL", "NO_RESEND_HALTS", "RISK", "RestRoute", "STOP", "SWEEP",
           "Supervisor", "UNSAFE_HALTS", "WsApiRoute"]
