"""Run a strategy live: one loop, market streams + WS API, fail closed, clean shutdown, summary.

:func:`run` (async) / :func:`run_sync` (uvloop) do, in order:

1. connect the WS API (``/ws-api/v3``), read the symbol's filters (and rate
   limits) from ``exchangeInfo`` (built-in instrument as a fallback), halt the
   strategy context (nothing may be placed yet), authenticate and subscribe to
   user data (venue-protocols.md 3.3), and **reconcile**
   (:func:`engine.orders.reconcile.reconcile`: ``openOrders.status``; adopt our
   own orders by the instance prefix -- and cancel them if
   ``cancel_open_at_start`` --, cancel or leave foreign ones per
   ``foreign_orders``); the :class:`~engine.orders.reconcile.ReconcileReport` is
   logged before the first quote;
2. connect the combined market stream (1.1, section 2); the feed asks for a
   depth snapshot once the first diff is buffered and again after every gap
   (``on_snapshot_needed``, 1.5-1.6); the snapshot comes from the WS API
   ``depth`` method (1.3); start the :class:`~engine.live.supervisor.Supervisor`
   (liveness monitor, reconnects, rotation) and, on USD-M, the venue's dead
   man's switch (:class:`~engine.live.rest.DeadMansSwitch`); release the halt;
3. run the strategy inline on every frame until ``duration_s`` elapses, the
   ``stop_when`` awaitable completes (e.g. the simulator's ``ended``), market
   data stays silent for ``idle_timeout_s``, a connection is lost for good
   (reconnects exhausted), or SIGINT arrives. A watchdog expires unanswered
   order requests (``order_timeout_s``: the order becomes UNKNOWN, never failed)
   and drives the :class:`~engine.orders.reconcile.OrderResolver`;
4. shut down (graceful stop): halt (no new order can leave), close the market
   stream, call the strategy's ``on_stop``, wait (bounded) for order requests in
   flight, cancel everything by every route that works (WS API
   ``openOrders.cancelAll``, REST ``DELETE /api/v3/openOrders``) until the venue
   reports no open orders, settle orders in doubt, ask the venue for the final
   count (``open_orders_at_exit``; ``stop_clean`` and ``stop_report`` say why a
   stop was not clean), disconnect;
5. return a :class:`RunSummary`.

Fail closed (:mod:`engine.live.supervisor`): the disconnect **or stall** of the
market data or of the trading connection (no pong to our pings within
``pong_timeout_ms``; a stream silent past its ``max_staleness``) halts the
strategy context, counts a disconnect and triggers a cancel-all that is retried
until the venue confirms no open order (``cancel_all_latency_ms``: detection to
confirmation); the connection is re-established with back-off and jitter,
books are resynced from fresh snapshots and orders reconciled before the halt
is released. Connections older than ``max_connection_age_ms`` are replaced by a
new, synced one without a quoting gap. Pre-trade risk
(:class:`engine.risk.RiskManager`) is checked in ``StrategyContext.place_limit``;
its halt (circuit breaker, a 418 ban) and the **kill switch** (SIGUSR1, or the
``kill_file`` appearing) cancel everything and stop quoting for the rest of the
run. Every request goes through the shared rate limiter
(:class:`engine.ratelimit.RateLimiter`, WS API and REST alike).

Unhandled exceptions -- the loop's exception handler, and every callback guard
(frame handlers, connection callbacks, strategy callbacks, background tasks) --
are counted in ``unhandled_exceptions``.
"""
from __future__ import annotations

import asyncio
import logging
import os
import signal
import time
from decimal import Decimal
from typing import Any

import msgspec
import numpy as np

from engine.bus import HALTED, RESUMED, ConnectionEvent, Strategy, StrategyBus, StrategyContext
from engine.config import DeadMansSwitchConfig, LivenessConfig, RateLimitConfig, ReconnectConfig
from engine.feed.market import MarketDataFeed
from engine.instruments import SPOT, USDM, Instrument, InstrumentError, get_builtin, instrument_from_exchange_info
from engine.live.rest import DeadMansSwitch, RestClient
from engine.live.streams import MarketStreamClient
from engine.live.supervisor import (DISCONNECT, H_KILL, H_RISK, H_START, H_STOP, KILL, NO_RESEND_HALTS, RISK, STOP,
                                    FailSafe, RestRoute, Supervisor, WsApiRoute)
from engine.live.wsapi import WsApiClient, WsApiError
from engine.orders import state as st
from engine.orders.ids import ClientOrderIdGenerator, next_restart_epoch
from engine.orders.reconcile import CANCEL, LEAVE, OrderResolver, ReconcileReport, owned_by, reconcile
from engine.orders.tracker import DEFAULT_RING_CAPACITY, OrderTracker
from engine.ratelimit import RateLimiter
from engine.risk import RiskLimits, RiskManager

log = logging.getLogger(__name__)

# How often the shutdown sequence polls the tracker for the last cancel confirmations, s.
_POLL_S = 0.01
# Unhandled exceptions logged in full; later ones are only counted (a storm must not flood the log).
_MAX_LOGGED_ERRORS = 20


class RunConfig(msgspec.Struct, kw_only=True):
    """What :func:`run` needs.

    Attributes
    ----------
    streams_url : str
        Stream server base, e.g. ``ws://127.0.0.1:PORT`` (``/stream?streams=..`` is appended).
    ws_api_url : str
        ``ws://127.0.0.1:PORT/ws-api/v3``.
    signer : Signer
        :class:`~engine.orders.signing.HmacSigner` (signed requests +
        ``userDataStream.subscribe.signature``) or
        :class:`~engine.orders.signing.Ed25519Signer` (``session.logon``).
    symbol : str
    market : str
        ``"spot"`` (the WS API path is spot's).
    strategy : Strategy, optional
        Default: :class:`strategies.symmetric.SymmetricQuoter` with default parameters.
    duration_s : float, optional
        Run time, s; None runs until another stop condition.
    stop_when : awaitable, optional
        Stop when it completes (e.g. ``SimulatorHandle.ended``).
    idle_timeout_s : float, optional
        Stop when no market-data frame arrived for this long, s (the market ended).
    instrument : Instrument, optional
        Skip ``exchangeInfo`` and use this instrument.
    depth_limit : int
        Levels of the depth snapshot (1.3; 1000 costs weight 50).
    depth_speed : str
        ``"100ms"`` (``@depth@100ms``) or ``""`` (``@depth``, 1000 ms).
    timer_interval_s : float
        Period of the strategy's ``on_timer``, s.
    recv_window_ms : int, optional
        ``recvWindow`` of signed requests, ms (4.4).
    client_id_prefix : str
        Instance prefix of client order ids (1..10 letters/digits, section 5).
    epoch_state_path : str, optional
        File keeping the restart epoch strictly increasing across runs.
    cancel_on_gap : bool
        Pull quotes of a symbol whose book went invalid.
    cancel_open_at_start : bool
        Cancel our own orders (instance prefix) left open by an earlier run, after
        adopting them, before quoting.
    foreign_orders : str
        ``"cancel"`` or ``"leave"`` the symbol's open orders that are not ours, at
        start and after every WS API reconnect (leave them when several instances
        trade one account).
    order_timeout_s : float
        An order request unanswered for this long makes the order UNKNOWN (or its
        cancel in doubt), s.
    status_margin_ms : int
        Added to ``timestamp + recvWindow`` before "not found" is conclusive, ms
        (clock offset to the venue plus the 1000 ms a request may be ahead, 4.4).
    resend_unknown : bool
        Send a conclusively missing UNKNOWN order again with the same client order
        id (unless the strategy cancelled it); False abandons it.
    max_resends : int
        Resends per order.
    max_ws_reconnects : int or None
        WS API reconnects allowed before the run stops (0: stop on the first loss;
        None: no limit but ``reconnect.max_attempts`` consecutive failures).
    resolve_timeout_s : float
        Bound of the wait for orders in doubt after a reconnect and at shutdown, s
        (at least the venue's window is waited at shutdown).
    dedup_capacity : int
        Client order ids kept in the dedup ring.
    shutdown_timeout_s : float
        Bound of each shutdown wait, s.
    connect_timeout_s : float
    max_reconnects : int or None
        Market-stream reconnect attempts allowed before giving up (None: no limit but
        ``reconnect.max_attempts`` consecutive failures).
    handle_sigint : bool
        Install a SIGINT handler that triggers the clean shutdown.
    rest_url : str, optional
        REST base of the venue (``handle.rest_url`` of the simulator): the cancel-all
        fallback route (:mod:`engine.live.rest`); None: WS API only.
    liveness : LivenessConfig
        Our pings, pong timeout and per-stream staleness limits (``[liveness]``).
    reconnect : ReconnectConfig
        Back-off, attempts, resync bound, connection age (``[reconnect]``).
    risk : RiskLimits, optional
        Pre-trade limits checked in ``place_limit`` (``[risk]``); None: no risk manager.
    rate_limit : RateLimitConfig, optional
        The shared rate limiter's settings (``[rate_limit]``); None: no client-side limiting.
    dead_man_switch : DeadMansSwitchConfig
        USD-M ``countdownCancelAll`` heartbeat (needs ``rest_url``).
    cancel_timeout_s : float
        Bound of one fail-closed cancel-all request, s.
    kill_file : str, optional
        Kill switch file: when it appears, cancel everything and stop quoting.
    handle_sigusr1 : bool
        Install a SIGUSR1 handler: the kill switch.
    seed : int, optional
        Seed of the reconnect jitter (None: random).
    observer : callable, optional
        ``f(kind, payload)`` on the run's fail-closed events, for monitoring and tests:
        ``disconnect`` (reason), ``cancel_all_confirmed`` (CancelAllEvent), ``halted`` /
        ``resumed`` (reason), ``reconciled`` (ReconcileReport), ``resynced`` (None),
        ``reconnect_attempt`` ((connection, delay_s)), ``rotated`` (connection), ``kill`` (reason).
        Runs inline; exceptions are counted, not propagated.
    """

    streams_url: str
    ws_api_url: str
    signer: Any
    symbol: str = "BTCUSDT"
    market: str = SPOT
    strategy: Any = None
    duration_s: float | None = None
    stop_when: Any = None
    idle_timeout_s: float | None = 30.0
    instrument: Any = None
    depth_limit: int = 1000
    depth_speed: str = "100ms"
    timer_interval_s: float = 1.0
    recv_window_ms: int | None = 5000
    client_id_prefix: str = "mm"
    epoch_state_path: str | None = None
    cancel_on_gap: bool = True
    cancel_open_at_start: bool = True
    foreign_orders: str = CANCEL
    order_timeout_s: float = 5.0
    status_margin_ms: int = 1000
    resend_unknown: bool = True
    max_resends: int = 1
    max_ws_reconnects: int | None = 5
    resolve_timeout_s: float = 15.0
    dedup_capacity: int = DEFAULT_RING_CAPACITY
    shutdown_timeout_s: float = 5.0
    connect_timeout_s: float = 10.0
    max_reconnects: int | None = 5
    handle_sigint: bool = True
    rest_url: str | None = None
    liveness: LivenessConfig = LivenessConfig()
    reconnect: ReconnectConfig = ReconnectConfig()
    risk: RiskLimits | None = None
    rate_limit: RateLimitConfig | None = None
    dead_man_switch: DeadMansSwitchConfig = DeadMansSwitchConfig()
    cancel_timeout_s: float = 2.0
    kill_file: str | None = None
    handle_sigusr1: bool = True
    seed: int | None = None
    observer: Any = None


class LatencyStats(msgspec.Struct, frozen=True):
    """Latency distribution, µs (``numpy.percentile``, linear interpolation).

    Attributes
    ----------
    count : int
    p50, p99, max : float
        µs; 0.0 when ``count`` is 0.
    """

    count: int = 0
    p50: float = 0.0
    p99: float = 0.0
    max: float = 0.0

    @classmethod
    def from_ns(cls, samples_ns: Any) -> "LatencyStats":
        """Build from nanosecond samples."""
        a = np.frombuffer(samples_ns, dtype=np.int64) if not isinstance(samples_ns, np.ndarray) else samples_ns
        if a.size == 0:
            return cls()
        us = a.astype(np.float64) / 1000.0
        p50, p99 = np.percentile(us, [50.0, 99.0])
        return cls(int(a.size), round(float(p50), 3), round(float(p99), 3), round(float(us.max()), 3))


class LatencyMs(msgspec.Struct, frozen=True):
    """Latency distribution, ms (``numpy.percentile``, linear interpolation).

    Attributes
    ----------
    count : int
    p50, max : float
        ms; 0.0 when ``count`` is 0.
    """

    count: int = 0
    p50: float = 0.0
    max: float = 0.0

    @classmethod
    def from_ns(cls, samples_ns: Any) -> "LatencyMs":
        """Build from nanosecond samples."""
        a = np.asarray(list(samples_ns), dtype=np.int64)
        if a.size == 0:
            return cls()
        ms = a.astype(np.float64) / 1e6
        return cls(int(a.size), round(float(np.percentile(ms, 50.0)), 3), round(float(ms.max()), 3))


class CancelAllRecord(msgspec.Struct, frozen=True):
    """One fail-closed cancel-all of the run (:class:`engine.live.supervisor.CancelAllEvent`), for the summary."""

    kind: str
    reason: str
    latency_ms: float
    route: str
    attempts: int


class RunSummary(msgspec.Struct, kw_only=True):
    """What a run did. Prices and quantities exact; latencies in µs.

    Attributes
    ----------
    symbol : str
    end_reason : str
        ``duration``, ``stop_when``, ``idle``, ``sigint``, ``ws-api lost``, ``streams lost``, ``error: ...``.
    duration_s : float
    frames, depth_messages, book_resyncs, gaps, snapshots : int
        Market data: frames received, diffs, resyncs after the first sync, gaps, snapshots loaded.
    decode_errors : int
    orders_sent, orders_acked, orders_rejected : int
    rejects_by_code : dict
        Venue error code -> count (section 6.1).
    fills, duplicate_fills : int
    cancels : int
        Orders confirmed CANCELED.
    cancel_requests : int
        ``order.cancel`` + ``openOrders.cancelAll`` requests sent.
    duplicate_client_order_ids : int
    open_orders_at_exit : int
        From the venue's ``openOrders.status`` after the final cancel (-1 if it could not be asked).
    tracker_open_at_exit : int
        Orders the tracker still considered open before reconciling with that answer.
    position_steps : int
    position : Decimal
        Base currency.
    pnl : Decimal
        Quote currency at ``mark_price`` (see ``OrderTracker.pnl``).
    mark_price : Decimal or None
        Last valid mid.
    fees : dict
        Commission per asset.
    tick_to_order_us, tick_to_cancel_us, order_rtt_us : LatencyStats
        Frame arrival -> ``order.place`` bytes written; -> ``order.cancel`` bytes written;
        ``order.place`` written -> its response.
    book_invalid_reads, strategy_errors : int
    reconnects : int
        Market-stream reconnect attempts.
    ws_api_reconnects : int
        WS API reconnects that completed (session, user data, reconciliation).
    local_duplicates : int
        Orders refused by the dedup ring (client id already used): never sent.
    venue_duplicates : int
        ``-2010 "Duplicate order sent."`` / ``-4116`` answers: adopted by query, not failures.
    unknown_outcomes : int
        5xx / -1006 / -1007 answers and requests lost with the connection (3.2, 6.1).
    timeouts : int
        Order requests expired without an answer (``order_timeout_s``).
    orders_unknown : int
        Times an order entered UNKNOWN.
    unknown_resolved : int
        UNKNOWN orders settled by venue evidence (late answer, report, ``order.status``).
    unknown_left : int
        Orders still UNKNOWN at exit (should be 0).
    status_queries : int
        ``order.status`` queries of the resolver.
    resends : int
        Orders sent again with the same client order id after a conclusive "not found".
    abandoned : int
        UNKNOWN orders closed as never placed (not on the venue after the window).
    adopted : int
        Our orders found on the venue that this run did not track (earlier run).
    late_responses : int
        Responses that arrived after their request had expired (applied).
    reconciled_fills : int
        Fills booked from ``order.status`` because their trade reports were lost
        (commission unknown).
    reconciled_fill_qty : Decimal
        Their quantity, base currency.
    reconciliations : list of ReconcileReport
        Start and every reconnect.
    faults_injected : dict
        Faults the venue injected, by type (filled in by the caller that owns the
        simulator's fault plan; {} otherwise).
    disconnects : int
        Connections lost or declared dead (stall, pong timeout), market data and trading.
    stalls, pong_timeouts : int
        Of which: a stream silent past its limit; no pong to our ping in time.
    cancel_all_on_disconnect : int
        Disconnects whose cancel-all the venue confirmed (no open orders).
    cancel_all_latency_ms : LatencyMs
        Detection of a disconnect to the venue's confirmation, ms.
    cancel_alls : list of CancelAllRecord
        Every fail-closed cancel-all (disconnect, kill, risk, sweep, stop).
    unhandled_exceptions : int
        Exceptions caught by the loop's exception handler and by callback guards.
    strategy_calls_on_invalid_book : int
        Attempts to involve an invalid book (dispatch, read or order): must be 0.
    halted_ms : float
        Time quoting was halted after the start, before the stop, ms.
    halt_reason : str
        Halt reasons set when the stop began ("" if quoting was allowed).
    kill_switch : str
        What fired the kill switch ("" if it did not).
    rotations : int
        Connections replaced ahead of the venue's age limit (or on serverShutdown).
    ping_rtt_us : LatencyStats
        Round trips of our pings, every connection.
    rate_limit : dict
        The limiter's counters (granted, denied, rate_limited, bans, local refusals).
    risk : dict
        The risk manager's counters and halt state ({} without one).
    rest_requests : int
    dead_man_heartbeats : int
        USD-M ``countdownCancelAll`` heartbeats sent.
    stop_clean : bool
        The venue confirmed no open order at the end and nothing was left in doubt.
    stop_report : list of str
        Why the stop was not clean ([] when it was).
    """

    symbol: str
    end_reason: str
    duration_s: float
    frames: int = 0
    depth_messages: int = 0
    book_resyncs: int = 0
    gaps: int = 0
    snapshots: int = 0
    decode_errors: int = 0
    orders_sent: int = 0
    orders_acked: int = 0
    orders_rejected: int = 0
    rejects_by_code: dict[int, int] = {}
    fills: int = 0
    duplicate_fills: int = 0
    cancels: int = 0
    cancel_requests: int = 0
    duplicate_client_order_ids: int = 0
    open_orders_at_exit: int = -1
    tracker_open_at_exit: int = 0
    position_steps: int = 0
    position: Decimal = Decimal(0)
    pnl: Decimal = Decimal(0)
    mark_price: Decimal | None = None
    fees: dict[str, Decimal] = {}
    tick_to_order_us: LatencyStats = LatencyStats()
    tick_to_cancel_us: LatencyStats = LatencyStats()
    order_rtt_us: LatencyStats = LatencyStats()
    book_invalid_reads: int = 0
    strategy_errors: int = 0
    reconnects: int = 0
    ws_api_reconnects: int = 0
    local_duplicates: int = 0
    venue_duplicates: int = 0
    unknown_outcomes: int = 0
    timeouts: int = 0
    orders_unknown: int = 0
    unknown_resolved: int = 0
    unknown_left: int = 0
    status_queries: int = 0
    resends: int = 0
    abandoned: int = 0
    adopted: int = 0
    late_responses: int = 0
    reconciled_fills: int = 0
    reconciled_fill_qty: Decimal = Decimal(0)
    reconciliations: list[ReconcileReport] = []
    faults_injected: dict[str, int] = {}
    disconnects: int = 0
    stalls: int = 0
    pong_timeouts: int = 0
    cancel_all_on_disconnect: int = 0
    cancel_all_latency_ms: LatencyMs = LatencyMs()
    cancel_alls: list[CancelAllRecord] = []
    unhandled_exceptions: int = 0
    strategy_calls_on_invalid_book: int = 0
    halted_ms: float = 0.0
    halt_reason: str = ""
    kill_switch: str = ""
    rotations: int = 0
    ping_rtt_us: LatencyStats = LatencyStats()
    rate_limit: dict[str, int] = {}
    risk: dict[str, Any] = {}
    rest_requests: int = 0
    dead_man_heartbeats: int = 0
    stop_clean: bool = False
    stop_report: list[str] = []


def _plain(d: Decimal) -> Decimal:
    # The same value without trailing zeros and never in exponent form (0E-8 -> 0, 1.50 -> 1.5).
    if d == d.to_integral_value():
        return d.quantize(Decimal(1))
    return d.normalize()


def _default_strategy(symbol: str) -> Strategy:
    from strategies.symmetric import SymmetricConfig, SymmetricQuoter

    return SymmetricQuoter(SymmetricConfig(symbol=symbol))


class _Session:
    # The state of one run; run() drives it, the Supervisor keeps its connections alive.

    def __init__(self, config: RunConfig) -> None:
        self.cfg = config
        self.symbol = config.symbol.upper()
        self.loop = asyncio.get_running_loop()
        self.stop = asyncio.Event()
        self.end_reason = ""
        if config.foreign_orders not in (CANCEL, LEAVE):
            raise ValueError(f"foreign_orders must be {CANCEL!r} or {LEAVE!r}")
        self.tracker = OrderTracker({}, ring_capacity=config.dedup_capacity)
        self.ids = ClientOrderIdGenerator(config.client_id_prefix, next_restart_epoch(config.epoch_state_path))
        self.guard_errors = 0
        self.loop_errors = 0
        rl = config.rate_limit
        self.limiter: RateLimiter | None = None
        if rl is not None:
            self.limiter = RateLimiter.spot_defaults(safety_margin_pct=rl.safety_margin_pct,
                                                     backoff_initial_ms=rl.backoff_initial_ms,
                                                     backoff_max_ms=rl.backoff_max_ms)
        self.rest: RestClient | None = None
        if config.rest_url:
            self.rest = RestClient(config.rest_url, config.signer, recv_window_ms=config.recv_window_ms,
                                   limiter=self.limiter, timeout_s=config.cancel_timeout_s, on_ban=self.on_ban)
        self.instrument: Instrument | None = None
        self.all_wsapi: list[WsApiClient] = []
        self.all_streams: list[MarketStreamClient] = []
        self.supervisor = Supervisor(self)
        self.wsapi = self.new_wsapi()
        # Orders are held back until the first reconciliation is done.
        self.wsapi.paused = True
        self.resolver = OrderResolver(
            self.tracker, self.wsapi,
            # The venue's default recvWindow applies when none is sent (4.4).
            recv_window_ms=config.recv_window_ms if config.recv_window_ms is not None else 5000,
            margin_ms=config.status_margin_ms, resend=config.resend_unknown, max_resends=config.max_resends,
            query_timeout_s=config.order_timeout_s, may_resend=self._may_resend)
        self.reports: list[ReconcileReport] = []
        self.ws_reconnects = 0
        self.risk: RiskManager | None = None
        self.ctx: StrategyContext | None = None
        self.failsafe: FailSafe | None = None
        self.bus: StrategyBus | None = None
        self.feed: MarketDataFeed | None = None
        self.streams: MarketStreamClient | None = None
        self.dms: DeadMansSwitch | None = None
        self.strategy: Strategy = config.strategy if config.strategy is not None else _default_strategy(self.symbol)
        self.reconnects = 0
        self.mark: Decimal | None = None
        self.tracker_open_at_exit = 0
        self.kill_reason = ""
        self._risk_cb_quiet = False
        self._halted_since_ns = 0
        self.halted_ns = 0
        self.halt_reason_at_stop = ""
        self.stop_report: list[str] = []
        self.main_task: asyncio.Task | None = asyncio.current_task()
        self._tasks: list[asyncio.Task] = []

    # -- plumbing -----------------------------------------------------------------------------------
    def new_wsapi(self) -> WsApiClient:
        """A WS API client of this run (shared tracker, rate limiter and measurement arrays)."""
        cfg = self.cfg
        c = WsApiClient(cfg.ws_api_url, cfg.signer, self.tracker, {}, recv_window_ms=cfg.recv_window_ms,
                        request_timeout_s=cfg.order_timeout_s, limiter=self.limiter, on_ban=self.on_ban,
                        liveness=self.supervisor.new_liveness("ws-api", False))
        c.on_connection = lambda ev, c=c: self.supervisor.on_ws_event(ev, c)
        if self.instrument is not None:
            c.add_instrument(self.instrument)
        if self.all_wsapi:
            first = self.all_wsapi[0]
            c.tick_to_order_ns = first.tick_to_order_ns
            c.tick_to_cancel_ns = first.tick_to_cancel_ns
            c.order_rtt_ns = first.order_rtt_ns
        self.all_wsapi.append(c)
        return c

    def adopt_wsapi(self, new: WsApiClient) -> None:
        """Make ``new`` the order connection (rotation)."""
        self.wsapi = new
        self.resolver.api = new
        if self.ctx is not None:
            self.ctx.sender = new

    def new_feed(self, listener: Any) -> MarketDataFeed:
        """A market-data feed (its own books) of this run's symbol."""
        instruments = {self.symbol: self.instrument}

        def resolve(symbol: str, _first: Any) -> Instrument:
            return instruments[symbol]  # type: ignore[return-value]

        return MarketDataFeed(resolve, listener, default_symbol=self.symbol)

    def spawn(self, coro: Any, name: str) -> asyncio.Task:
        """Run ``coro`` as a background task of the run; an exception in it is counted and logged."""
        t = self.loop.create_task(coro, name=name)
        self._tasks.append(t)
        t.add_done_callback(self._task_done)
        return t

    def _task_done(self, t: asyncio.Task) -> None:
        if not t.cancelled() and t.exception() is not None:
            self.count_error(t.get_name(), t.exception())  # type: ignore[arg-type]

    def count_error(self, where: str, exc: BaseException | None) -> None:
        """Count an exception caught by a guard (``unhandled_exceptions``) and log the first ones."""
        self.guard_errors += 1
        if self.guard_errors <= _MAX_LOGGED_ERRORS:
            log.error("unhandled exception in %s", where, exc_info=exc)

    def loop_exception(self, loop: asyncio.AbstractEventLoop, context: dict) -> None:
        """The event loop's exception handler: count and log."""
        self.loop_errors += 1
        if self.loop_errors <= _MAX_LOGGED_ERRORS:
            log.error("unhandled exception on the loop: %s", context.get("message"),
                      exc_info=context.get("exception"))

    @property
    def unhandled_exceptions(self) -> int:
        """Everything caught by the loop's handler and by callback guards."""
        n = self.guard_errors + self.loop_errors
        n += sum(c.handler_errors for c in self.all_wsapi) + sum(c.handler_errors for c in self.all_streams)
        if self.bus is not None:
            n += self.bus.strategy_errors
        return n

    def request_stop(self, reason: str) -> None:
        if not self.stop.is_set():
            self.end_reason = reason
            self.stop.set()

    def on_sigint(self) -> None:
        # First Ctrl-C: clean shutdown. A second one while shutting down: abort the run.
        if not self.stop.is_set():
            log.warning("SIGINT: stopping (cancel all, then disconnect); press Ctrl-C again to abort")
            self.request_stop("sigint")
        elif self.main_task is not None and not self.main_task.done():
            log.error("second SIGINT: aborting the shutdown")
            self.main_task.cancel()

    def _stop_when_done(self, fut: asyncio.Future) -> None:
        if not fut.cancelled() and fut.exception() is not None:
            log.warning("stop_when completed with %r", fut.exception())
        self.request_stop("stop_when")

    def notify(self, kind: str, payload: Any = None) -> None:
        """Tell the configured observer about a fail-closed event (guarded)."""
        obs = self.cfg.observer
        if obs is None:
            return
        try:
            obs(kind, payload)
        except Exception as e:  # noqa: BLE001 - an observer must not break the run
            self.count_error("observer", e)

    def _may_resend(self) -> bool:
        ctx = self.ctx
        return ctx is None or not any(k in NO_RESEND_HALTS for k in ctx.halt_reasons)

    def _on_halt_change(self, halted: bool, reason: str) -> None:
        now = time.monotonic_ns()
        if halted:
            self._halted_since_ns = now
            log.warning("quoting halted: %s", reason)
        else:
            if self._halted_since_ns:
                self.halted_ns += now - self._halted_since_ns
                self._halted_since_ns = 0
            log.info("quoting resumes (last released: %s)", reason)
        self.notify("halted" if halted else "resumed", reason)
        if self.bus is not None:
            self.bus.on_connection(ConnectionEvent("engine", HALTED if halted else RESUMED, "", reason, now))

    # -- kill switch, risk halt, ban ----------------------------------------------------------------
    def kill(self, reason: str) -> None:
        """The kill switch: cancel everything and place nothing more for the rest of the run (idempotent)."""
        if self.kill_reason:
            return
        self.kill_reason = reason
        log.error("KILL SWITCH (%s): cancelling every open order; no order will be placed any more", reason)
        self.notify("kill", reason)
        if self.ctx is None or self.failsafe is None:
            return  # before the start completed: start() halts on seeing kill_reason
        self.ctx.halt(H_KILL, reason)
        if self.risk is not None and not self.risk.halted:
            self._risk_cb_quiet = True
            try:
                self.risk.halt(f"kill switch: {reason}")
            finally:
                self._risk_cb_quiet = False
        self.failsafe.trigger(KILL, reason, include_unknown=True)

    def _on_risk_halt(self, reason: str) -> None:
        if self._risk_cb_quiet or self.ctx is None or self.failsafe is None:
            return
        self.ctx.halt(H_RISK, reason)
        self.failsafe.trigger(RISK, reason, include_unknown=True)

    def on_ban(self, detail: str) -> None:
        """A 418 (IP banned, 6.1): halt trading (risk), everything is cancelled once the ban allows."""
        reason = f"IP banned by the venue: {detail}"
        if self.risk is not None:
            self.risk.halt(reason)
        elif self.ctx is not None and self.failsafe is not None and not self.ctx.is_halted_by(H_RISK):
            self.ctx.halt(H_RISK, reason)
            self.failsafe.trigger(RISK, reason, include_unknown=True)

    def sync_risk(self) -> None:
        """Re-base the risk manager's accounting on the tracker (after a reconciliation)."""
        if self.risk is None:
            return
        opens = [(o.client_order_id, o.side, o.remaining_steps) for o in self.tracker.open_orders(self.symbol)]
        self.risk.sync(self.symbol, self.tracker.position_steps(self.symbol), opens)

    # -- phases ---------------------------------------------------------------------------------
    async def start(self) -> None:
        cfg = self.cfg
        if self.rest is not None:
            await self.rest.start()
        await self.wsapi.connect(cfg.connect_timeout_s)
        self.wsapi.liveness.start()
        inst, assets = await self._instrument()
        self.instrument = inst
        self.tracker.add_instrument(inst, assets)
        self.wsapi.add_instrument(inst)
        instruments = {self.symbol: inst}
        if cfg.risk is not None:
            self.risk = RiskManager(cfg.risk, instruments, on_halt=self._on_risk_halt)
        ctx = self.ctx = StrategyContext(instruments, self.tracker, self.wsapi, self.ids.next, risk=self.risk)
        ctx.require_book = True
        ctx.on_halt_change = self._on_halt_change
        ctx.halt(H_START, "connecting and reconciling")
        routes: list[Any] = [WsApiRoute(lambda: self.wsapi, self.tracker)]
        if self.rest is not None:
            routes.append(RestRoute(self.rest, self.tracker))
        self.failsafe = FailSafe(self.symbol, routes, self.tracker, ctx, foreign=cfg.foreign_orders,
                                 owns=owned_by(cfg.client_id_prefix), attempt_timeout_s=cfg.cancel_timeout_s,
                                 on_error=self.count_error,
                                 on_confirmed=lambda ev: self.notify("cancel_all_confirmed", ev))
        await asyncio.wait_for(self.wsapi.start_session(), cfg.connect_timeout_s)
        await self.reconcile("start")
        self.spawn(self._watchdog(), "order-watchdog")
        await self.resolver.settle(cfg.resolve_timeout_s)
        self.sync_risk()
        self.wsapi.paused = False
        self.bus = StrategyBus(self.strategy, ctx, snapshot_requester=self._request_snapshot,
                               cancel_on_gap=cfg.cancel_on_gap)
        self.tracker.listener = self.bus
        self.feed = self.new_feed(self.bus)
        self.wsapi.feed = self.feed
        self.bus.start()
        self.streams = self.supervisor.new_stream_client(self.feed, ctx)
        await self.streams.connect(cfg.connect_timeout_s)
        self.streams.liveness.start()
        self.supervisor.start()
        dm = cfg.dead_man_switch
        if cfg.market == USDM and dm.enabled and self.rest is not None:
            self.dms = DeadMansSwitch(self.rest, self.symbol, dm.countdown_ms, dm.heartbeat_ms)
            self.dms.start()
        if self.kill_reason or (cfg.kill_file and os.path.exists(cfg.kill_file)):
            reason, self.kill_reason = self.kill_reason or f"kill file {cfg.kill_file}", ""
            self.kill(reason)
        if cfg.handle_sigusr1:
            try:
                self.loop.add_signal_handler(signal.SIGUSR1, self.kill, "SIGUSR1")
                self._sigusr1 = True
            except (NotImplementedError, RuntimeError, ValueError):
                log.debug("SIGUSR1 handler not installed (not the main thread?)")
        ctx.release(H_START)
        self._halted_since_ns = time.monotonic_ns() if ctx.halted else 0
        self.halted_ns = 0

    _sigusr1 = False

    async def _instrument(self) -> tuple[Instrument, tuple[str, str] | None]:
        cfg = self.cfg
        if cfg.instrument is not None:
            return cfg.instrument, None
        try:
            info = await self.wsapi.exchange_info(self.symbol, cfg.connect_timeout_s)
            if self.limiter is not None and isinstance(info.get("rateLimits"), list):
                # The venue's own limits replace the documented defaults (6.2).
                self.limiter.observe_rate_limits(info["rateLimits"])
            for entry in info.get("symbols", ()):
                if entry.get("symbol") == self.symbol:
                    assets = None
                    if entry.get("baseAsset") and entry.get("quoteAsset"):
                        assets = (str(entry["baseAsset"]), str(entry["quoteAsset"]))
                    return instrument_from_exchange_info(entry, cfg.market), assets
            raise InstrumentError(f"exchangeInfo does not list {self.symbol}")
        except (WsApiError, InstrumentError, asyncio.TimeoutError, KeyError, AttributeError) as e:
            log.warning("exchangeInfo unusable (%s); using the built-in %s instrument", e, self.symbol)
            return get_builtin(self.symbol, cfg.market), None

    async def reconcile(self, reason: str) -> ReconcileReport:
        """Reconcile the tracker with the venue's open orders (start, every WS API reconnect)."""
        cfg = self.cfg
        rep = await reconcile(self.wsapi, self.tracker, self.symbol, owned_by(cfg.client_id_prefix), reason=reason,
                              foreign=cfg.foreign_orders, cancel_own=cfg.cancel_open_at_start and reason == "start",
                              timeout_s=cfg.connect_timeout_s)
        self.reports.append(rep)
        self.notify("reconciled", rep)
        return rep

    async def _watchdog(self) -> None:
        # Expire unanswered order requests and drive the resolver; the period is a fraction of
        # the timeout so an expiry is late by at most a quarter of it.
        period = max(0.005, min(0.05, self.cfg.order_timeout_s / 4))
        while True:
            await asyncio.sleep(period)
            try:
                self.wsapi.expire()
                self.resolver.step()
            except Exception as e:  # noqa: BLE001 - the watchdog must keep running
                self.count_error("order watchdog", e)

    def _request_snapshot(self, symbol: str) -> None:
        # Called by the feed inline while it handles the first diff (or a gap): send the
        # request after this frame is done, so the diff is buffered before the snapshot
        # can possibly be applied (1.5 step 1-2).
        self.loop.call_soon(self._send_snapshot_request, symbol)

    def _send_snapshot_request(self, symbol: str) -> None:
        self.wsapi.request_snapshot(symbol, self.cfg.depth_limit, self.feed)

    async def wait(self) -> None:
        cfg = self.cfg
        loop = self.loop
        if cfg.duration_s is not None:
            loop.call_later(cfg.duration_s, self.request_stop, "duration")
        if cfg.stop_when is not None:
            # Not ours to cancel (e.g. the simulator's `ended`): only watch it.
            fut = asyncio.ensure_future(cfg.stop_when)
            fut.add_done_callback(self._stop_when_done)
        self.spawn(self._timer(), "strategy-timer")
        if cfg.idle_timeout_s:
            self.spawn(self._idle_watch(cfg.idle_timeout_s), "idle-watch")
        await self.stop.wait()

    async def _timer(self) -> None:
        assert self.bus is not None
        while True:
            await asyncio.sleep(self.cfg.timer_interval_s)
            self.bus.on_timer(time.monotonic_ns())

    async def _idle_watch(self, idle_s: float) -> None:
        idle_ns = int(idle_s * 1e9)
        start = time.monotonic_ns()
        while True:
            await asyncio.sleep(min(idle_s / 4, 1.0))
            last = max([c.last_frame_ns for c in self.all_streams] + [start])
            if time.monotonic_ns() - last > idle_ns:
                self.request_stop("idle")
                return

    def _capture_mark(self) -> None:
        if self.feed is None or self.instrument is None:
            return
        book = self.feed.book(self.symbol)
        if book is not None and book.n_levels(0) and book.n_levels(1):
            # Mid = (bid + ask) / 2 ticks, exact.
            self.mark = _plain(self.instrument.tick_size * (book.best_bid() + book.best_ask()) / 2)

    async def _venue_open(self, timeout_s: float) -> list[dict] | None:
        # The venue's open orders (ours only with foreign_orders="leave"), asked on the first
        # route that answers; None if none did.
        assert self.failsafe is not None
        owns = owned_by(self.cfg.client_id_prefix)
        for route in self.failsafe.routes:
            if not route.available():
                continue
            try:
                rows = await route.open_orders(self.symbol, timeout_s)
            except Exception as e:  # noqa: BLE001 - ask the next route
                log.warning("open orders via %s failed: %r", route.name, e)
                continue
            if self.cfg.foreign_orders == LEAVE:
                rows = [r for r in rows if owns(r.get("clientOrderId") or "")]
            return rows
        return None

    async def shutdown(self) -> int:
        """Graceful stop: halt, cancel everything until confirmed, settle; return the venue's open count (-1: unknown)."""
        cfg = self.cfg
        ctx = self.ctx
        report = self.stop_report
        if ctx is not None:
            self.halt_reason_at_stop = ctx.halt_reason
            if self._halted_since_ns:
                self.halted_ns += time.monotonic_ns() - self._halted_since_ns
                self._halted_since_ns = 0
            ctx.on_halt_change = None
            ctx.enabled = False
            ctx.halt(H_STOP, self.end_reason)
        self.supervisor.stop()
        for t in self._tasks:
            t.cancel()
        self._capture_mark()
        for c in self.all_streams:
            if c.connected:
                c.closing = True
                try:
                    await c.close(cfg.shutdown_timeout_s)
                except Exception:  # noqa: BLE001 - shutting down regardless
                    log.exception("closing the market stream failed")
        if self.bus is not None:
            self.bus.stop()
        # No new order from here; the resolver still settles what is in doubt.
        self.wsapi.paused = True
        if self.failsafe is None:
            report.append("the run never started trading")
            return -1
        stop_s = max(cfg.shutdown_timeout_s, cfg.cancel_timeout_s)
        # Order requests written and not answered yet may still place orders: wait for their
        # answers (bounded) before the cancel-all, so none lands behind it.
        deadline = time.monotonic() + min(cfg.order_timeout_s, stop_s)
        while (self.wsapi.connected and time.monotonic() < deadline
               and any(o.state == st.PENDING_NEW for o in self.tracker.open_orders(self.symbol))):
            self.wsapi.expire()
            await asyncio.sleep(_POLL_S)
        # Every order is now unwanted: found open it is cancelled, missing after its window it
        # is abandoned (never resent).
        for o in self.tracker.open_orders(self.symbol):
            o.cancel_wanted = True
        self.failsafe.trigger(STOP, f"stop ({self.end_reason})", include_unknown=True)
        if not await self.failsafe.wait_idle(stop_s):
            report.append(f"cancel-all not confirmed within {stop_s:g} s: {self.failsafe.last_error}")
        # Waiting out the venue's window is what makes "not on the venue" final (4.4).
        window_s = (self.resolver.recv_window_ms + self.resolver.margin_ms) / 1000.0
        await self._settle_all(max(cfg.shutdown_timeout_s, window_s + 1.0))
        # Wait until the tracker has seen every order closed (responses and reports).
        deadline = time.monotonic() + cfg.shutdown_timeout_s
        while self.tracker.open_count(self.symbol) and time.monotonic() < deadline:
            await asyncio.sleep(_POLL_S)
        venue_open = -1
        left: list[dict] | None = None
        for _attempt in range(3):
            left = await self._venue_open(cfg.shutdown_timeout_s)
            if left is None:
                break
            venue_open = len(left)
            if not left:
                break
            log.warning("%d orders still open on %s after the cancel-all; cancelling again", len(left), self.symbol)
            self.failsafe.trigger(STOP, "orders still open at the stop", include_unknown=True)
            await self.failsafe.wait_idle(stop_s)
        self.tracker_open_at_exit = self.tracker.open_count(self.symbol)
        if venue_open == 0:
            # The venue has nothing open: anything the tracker still holds was closed.
            self.tracker.reconcile_open(self.symbol, [])
        elif left is None:
            report.append("could not ask the venue for its open orders (no route answered)")
        else:
            ids = ", ".join(str(r.get("clientOrderId")) for r in left[:20])
            report.append(f"the venue reports {venue_open} open orders: {ids}")
        if self.tracker.unknown_count():
            report.append(f"{self.tracker.unknown_count()} orders still in doubt (UNKNOWN)")
        if self.dms is not None:
            await self.dms.stop(disarm=venue_open == 0)
        return venue_open

    async def _settle_all(self, timeout_s: float) -> None:
        # The watchdog is stopped at shutdown: expire and resolve here until nothing is in doubt.
        # Orders found open are cancelled by the resolver (they are all unwanted now); what is
        # still open afterwards is the final cancel-all's business.
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and self.wsapi.connected:
            self.wsapi.expire()
            self.resolver.step()
            if self.tracker.in_doubt_count() == 0 and self.resolver.in_flight == 0:
                return
            await asyncio.sleep(_POLL_S)

    async def close(self) -> None:
        self.resolver.cancel_tasks()
        self.supervisor.stop()
        if self.failsafe is not None:
            self.failsafe.close()
        for t in self._tasks:
            t.cancel()
        if self._sigusr1:
            self.loop.remove_signal_handler(signal.SIGUSR1)
            self._sigusr1 = False
        if self.dms is not None:
            await self.dms.stop(disarm=False)
        for c in self.all_streams:
            if c.connected:
                c.closing = True
                await c.close(self.cfg.shutdown_timeout_s)
        for w in self.all_wsapi:
            if w.connected:
                await w.close(self.cfg.shutdown_timeout_s)
        if self.rest is not None:
            await self.rest.close()

    def summary(self, duration_s: float, open_at_exit: int) -> RunSummary:
        tr = self.tracker
        feed = self.feed
        syncs = [s for f in {id(c.feed): c.feed for c in self.all_streams}.values() for s in f.syncs.values()]
        if not syncs and feed is not None:
            syncs = list(feed.syncs.values())
        pos = tr.positions.get(self.symbol)
        sup = self.supervisor
        fs = self.failsafe
        events = fs.events if fs is not None else []
        disc = [e for e in events if e.kind == DISCONNECT]
        rtts = [x for c in self.all_streams if c.liveness is not None for x in c.liveness.rtt_ns]
        rtts += [x for c in self.all_wsapi if c.liveness is not None for x in c.liveness.rtt_ns]
        lim = self.limiter
        rate = {}
        if lim is not None:
            rate = {"granted": lim.granted, "denied": lim.denied, "rate_limited": lim.rate_limited, "bans": lim.bans,
                    "corrections": lim.corrections}
        rate["local_refusals"] = sum(c.rate_limited_local for c in self.all_wsapi) + (
            self.rest.rate_limited_local if self.rest is not None else 0)
        risk: dict[str, Any] = {}
        if self.risk is not None:
            r = self.risk
            risk = {"checks": r.checks, "accepted": r.accepted, "rejections": dict(r.rejections),
                    "venue_rejections": {str(k): v for k, v in r.venue_rejections.items()},
                    "breaker_trips": r.breaker_trips, "halted": r.halted, "halt_reason": r.halt_reason}
        ok = open_at_exit == 0 and tr.unknown_count() == 0 and not self.stop_report
        return RunSummary(
            symbol=self.symbol,
            end_reason=self.end_reason,
            duration_s=round(duration_s, 3),
            frames=sum(c.frames for c in self.all_streams),
            depth_messages=sum(f.depth_messages for f in {id(c.feed): c.feed for c in self.all_streams}.values()),
            book_resyncs=sum(s.resyncs for s in syncs),
            gaps=sum(s.gaps for s in syncs),
            snapshots=sum(s.snapshots_loaded for s in syncs),
            decode_errors=sum(sum(f.errors.values()) for f in {id(c.feed): c.feed for c in self.all_streams}.values()),
            orders_sent=tr.orders_sent,
            orders_acked=tr.orders_acked,
            orders_rejected=tr.orders_rejected,
            rejects_by_code=dict(tr.rejects_by_code),
            fills=tr.fills,
            duplicate_fills=tr.duplicate_fills,
            cancels=tr.cancels,
            cancel_requests=tr.cancels_sent + tr.cancel_all_sent,
            duplicate_client_order_ids=tr.duplicate_client_order_ids,
            open_orders_at_exit=open_at_exit,
            tracker_open_at_exit=self.tracker_open_at_exit,
            position_steps=tr.position_steps(self.symbol),
            position=tr.position_qty(self.symbol),
            pnl=_plain(tr.pnl(self.symbol, self.mark)),
            mark_price=self.mark,
            fees=dict(pos.fees) if pos is not None else {},
            tick_to_order_us=LatencyStats.from_ns(self.wsapi.tick_to_order_ns),
            tick_to_cancel_us=LatencyStats.from_ns(self.wsapi.tick_to_cancel_ns),
            order_rtt_us=LatencyStats.from_ns(self.wsapi.order_rtt_ns),
            book_invalid_reads=self.bus.invalid_reads if self.bus is not None else 0,
            strategy_errors=self.bus.strategy_errors if self.bus is not None else 0,
            reconnects=self.reconnects,
            ws_api_reconnects=self.ws_reconnects,
            local_duplicates=tr.local_duplicates,
            venue_duplicates=tr.venue_duplicates,
            unknown_outcomes=tr.unknown_outcomes,
            timeouts=tr.timeouts,
            orders_unknown=tr.orders_unknown,
            unknown_resolved=tr.resolved,
            unknown_left=tr.unknown_count(),
            status_queries=self.resolver.queries,
            resends=tr.resends,
            abandoned=tr.abandoned,
            adopted=tr.adopted,
            late_responses=sum(c.late_responses for c in self.all_wsapi),
            reconciled_fills=tr.reconciled_fills,
            reconciled_fill_qty=tr.reconciled_fill_qty.get(self.symbol, Decimal(0)),
            reconciliations=list(self.reports),
            disconnects=sup.disconnects,
            stalls=sup.stalls,
            pong_timeouts=sup.pong_timeouts,
            cancel_all_on_disconnect=sum(1 for e in disc if e.confirmed_ns),
            cancel_all_latency_ms=LatencyMs.from_ns(e.confirmed_ns - e.detected_ns for e in disc if e.confirmed_ns),
            cancel_alls=[CancelAllRecord(e.kind, e.reason, e.latency_ms, e.route, e.attempts) for e in events],
            unhandled_exceptions=self.unhandled_exceptions,
            strategy_calls_on_invalid_book=self.bus.strategy_calls_on_invalid_book if self.bus is not None else 0,
            halted_ms=round(self.halted_ns / 1e6, 3),
            halt_reason=self.halt_reason_at_stop,
            kill_switch=self.kill_reason,
            rotations=sup.rotations_streams + sup.rotations_ws_api,
            ping_rtt_us=LatencyStats.from_ns(np.asarray(rtts, dtype=np.int64)),
            rate_limit=rate,
            risk=risk,
            rest_requests=self.rest.requests if self.rest is not None else 0,
            dead_man_heartbeats=self.dms.heartbeats if self.dms is not None else 0,
            stop_clean=ok,
            stop_report=list(self.stop_report),
        )


async def run(config: RunConfig) -> RunSummary:
    """Run ``config.strategy`` live until a stop condition; cancel everything; return the summary.

    Raises
    ------
    ConnectionError, OSError, asyncio.TimeoutError, WsApiError
        If the start-up (connect, authenticate, subscribe) fails; nothing was quoted then.
    """
    s = _Session(config)
    t0 = time.monotonic()
    sigint = False
    prev_handler = s.loop.get_exception_handler()
    s.loop.set_exception_handler(s.loop_exception)
    if config.handle_sigint:
        try:
            s.loop.add_signal_handler(signal.SIGINT, s.on_sigint)
            sigint = True
        except (NotImplementedError, RuntimeError, ValueError):
            log.debug("SIGINT handler not installed (not the main thread?)")
    open_at_exit = -1
    try:
        try:
            await s.start()
        except BaseException:
            await s.close()
            raise
        try:
            await s.wait()
        except asyncio.CancelledError:
            s.request_stop("cancelled")
            raise
        finally:
            try:
                open_at_exit = await s.shutdown()
            finally:
                await s.close()
    finally:
        if sigint:
            s.loop.remove_signal_handler(signal.SIGINT)
        s.loop.set_exception_handler(prev_handler)
    return s.summary(time.monotonic() - t0, open_at_exit)


def run_sync(config: RunConfig) -> RunSummary:
    """Run :func:`run` on a new uvloop event loop (the production loop)."""
    import uvloop

    return uvloop.run(run(config))


__all__ = ["CancelAllRecord", "LatencyMs", "LatencyStats", "RunConfig", "RunSummary", "run", "run_sync"]
