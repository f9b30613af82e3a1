"""Run a strategy live: one loop, market streams + WS API, clean shutdown, summary.

:func:`run` (async) / :func:`run_sync` (uvloop) do, in order:

1. connect the WS API (``/ws-api/v3``), read the symbol's filters from
   ``exchangeInfo`` (built-in instrument as a fallback), authenticate and
   subscribe to user data (venue-protocols.md 3.3), and **reconcile**
   (:func:`engine.orders.reconcile.reconcile`: ``openOrders.status``; adopt our
   own orders by the instance prefix -- and cancel them if
   ``cancel_open_at_start`` --, cancel or leave foreign ones per
   ``foreign_orders``); the :class:`~engine.orders.reconcile.ReconcileReport` is
   logged before the first quote;
2. connect the combined market stream (1.1, section 2); the feed asks for a
   depth snapshot once the first diff is buffered and again after every gap
   (``on_snapshot_needed``, 1.5-1.6); the snapshot comes from the WS API
   ``depth`` method (1.3);
3. run the strategy inline on every frame until ``duration_s`` elapses, the
   ``stop_when`` awaitable completes (e.g. the simulator's ``ended``), market
   data stays silent for ``idle_timeout_s``, the order connection is lost for
   good (``max_ws_reconnects`` spent), or SIGINT arrives. A watchdog expires
   unanswered order requests (``order_timeout_s``: the order becomes UNKNOWN,
   never failed) and drives the :class:`~engine.orders.reconcile.OrderResolver`
   (``order.status`` by ``origClientOrderId``; adopt, resend with the same id
   after the venue's window, or abandon);
4. shut down: stop accepting orders, close the market stream, call the
   strategy's ``on_stop``, ``openOrders.cancelAll``, wait for the tracker to see
   every order closed, ask the venue ``openOrders.status`` (the
   ``open_orders_at_exit`` of the summary), disconnect;
5. return a :class:`RunSummary`.

If the market stream drops, quotes are pulled (``openOrders.cancelAll``), the
books are invalidated and the stream reconnects (up to ``max_reconnects``);
the book is resynced from a fresh snapshot.

If the WS API connection drops, no order can be sent (``WsApiClient.paused``)
until it is back: every request in flight is in doubt (place: UNKNOWN), every
open order is put on the in-doubt list (user-data events of the gap are lost,
they are not replayed); the runner reconnects with back-off, authenticates,
resubscribes to user data, reconciles (``openOrders.status``), resolves every
order in doubt with ``order.status`` (waiting out the venue's window where
needed, 4.4), asks for depth snapshots the feed is waiting for, and only then
lets the strategy quote again.
"""
from __future__ import annotations

import asyncio
import logging
import signal
import time
from decimal import Decimal
from typing import Any

import msgspec
import numpy as np

from engine.bus import DISCONNECTED, SHUTDOWN, ConnectionEvent, Strategy, StrategyBus, StrategyContext
from engine.feed.market import MarketDataFeed
from engine.instruments import SPOT, Instrument, InstrumentError, get_builtin, instrument_from_exchange_info
from engine.live.streams import MarketStreamClient, combined_stream_url, stream_names
from engine.live.wsapi import WsApiClient, WsApiError
from engine.orders import state as st
from engine.orders.ids import ClientOrderIdGenerator, next_restart_epoch
from engine.orders.reconcile import CANCEL, LEAVE, OrderResolver, ReconcileReport, owned_by, reconcile
from engine.orders.signing import Signer
from engine.orders.tracker import DEFAULT_RING_CAPACITY, OrderTracker

log = logging.getLogger(__name__)

# How often the shutdown sequence polls the tracker for the last cancel confirmations, s.
_POLL_S = 0.01
# Reconnect back-off: first delay and cap, s.
_RECONNECT_FIRST_S = 0.2
_RECONNECT_MAX_S = 5.0


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
    max_ws_reconnects : int
        WS API reconnects allowed before the run stops (0: stop on the first loss).
    resolve_timeout_s : float
        Bound of the wait for orders in doubt after a reconnect and at shutdown, s
        (at least the venue's window is waited at shutdown).
    dedup_capacity : int
        Client order ids kept in the dedup ring.
    shutdown_timeout_s : float
        Bound of each shutdown wait, s.
    connect_timeout_s : float
    max_reconnects : int
        Market-stream reconnects allowed before giving up.
    handle_sigint : bool
        Install a SIGINT handler that triggers the clean shutdown.
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
    max_ws_reconnects: int = 5
    resolve_timeout_s: float = 15.0
    dedup_capacity: int = DEFAULT_RING_CAPACITY
    shutdown_timeout_s: float = 5.0
    connect_timeout_s: float = 10.0
    max_reconnects: int = 5
    handle_sigint: bool = True


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


def _plain(d: Decimal) -> Decimal:
    # The same value without trailing zeros and never in exponent form (0E-8 -> 0, 1.50 -> 1.5).
    if d == d.to_integral_value():
        return d.quantize(Decimal(1))
    return d.normalize()


def _default_strategy(symbol: str) -> Strategy:
    from strategies.symmetric import SymmetricConfig, SymmetricQuoter

    return SymmetricQuoter(SymmetricConfig(symbol=symbol))


class _Session:
    # The state of one run; run() drives it.

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
        signer: Signer = config.signer
        self.wsapi = WsApiClient(config.ws_api_url, signer, self.tracker, {}, recv_window_ms=config.recv_window_ms,
                                 on_connection=self._on_connection, request_timeout_s=config.order_timeout_s)
        # Orders are held back until the first reconciliation is done.
        self.wsapi.paused = True
        self.resolver = OrderResolver(
            self.tracker, self.wsapi,
            # The venue's default recvWindow applies when none is sent (4.4).
            recv_window_ms=config.recv_window_ms if config.recv_window_ms is not None else 5000,
            margin_ms=config.status_margin_ms, resend=config.resend_unknown, max_resends=config.max_resends,
            query_timeout_s=config.order_timeout_s)
        self.reports: list[ReconcileReport] = []
        self.ws_reconnects = 0
        self.ws_reconnecting = False
        self.instrument: Instrument | None = None
        self.ctx: StrategyContext | None = None
        self.bus: StrategyBus | None = None
        self.feed: MarketDataFeed | None = None
        self.streams: MarketStreamClient | None = None
        self.strategy: Strategy = config.strategy if config.strategy is not None else _default_strategy(self.symbol)
        self.reconnects = 0
        self.mark: Decimal | None = None
        self.tracker_open_at_exit = 0
        self.main_task: asyncio.Task | None = asyncio.current_task()
        self._tasks: list[asyncio.Task] = []

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

    # -- events ---------------------------------------------------------------------------------
    def _on_connection(self, ev: ConnectionEvent) -> None:
        if self.bus is not None:
            self.bus.on_connection(ev)
        if ev.name == "ws-api" and ev.state == DISCONNECTED and not self.wsapi.closing:
            self._on_ws_api_lost(ev.detail)
        elif ev.name == "ws-api" and ev.state == SHUTDOWN:
            log.warning("the venue announced serverShutdown on the WS API")
        elif ev.name == "streams" and ev.state == DISCONNECTED and self.streams is not None \
                and not self.streams.closing and not self.stop.is_set():
            self._on_streams_lost()

    def _on_ws_api_lost(self, detail: str) -> None:
        # Requests in flight are already in doubt (WsApiClient.on_ws_disconnected); the
        # user-data events of the gap are lost: every open order must be confirmed.
        self.wsapi.paused = True
        self.tracker.on_connection_lost()
        if self.stop.is_set() or self.ws_reconnecting:
            return
        if self.ws_reconnects >= self.cfg.max_ws_reconnects:
            self.request_stop("ws-api lost")
            return
        log.warning("WS API connection lost (%s); reconnecting", detail)
        self.ws_reconnecting = True
        self._tasks.append(self.loop.create_task(self._reconnect_ws_api()))

    async def _reconnect_ws_api(self) -> None:
        cfg = self.cfg
        delay = _RECONNECT_FIRST_S
        try:
            while not self.stop.is_set():
                if self.ws_reconnects >= cfg.max_ws_reconnects:
                    self.request_stop("ws-api lost")
                    return
                await asyncio.sleep(delay)
                try:
                    if self.wsapi.connected:
                        # The session, not the socket, was lost (user stream ended): start over.
                        await self.wsapi.close(cfg.shutdown_timeout_s)
                        self.wsapi.closing = False
                    await self.wsapi.connect(cfg.connect_timeout_s)
                    await asyncio.wait_for(self.wsapi.start_session(), cfg.connect_timeout_s)
                    await self._reconcile("reconnect")
                except Exception as e:  # noqa: BLE001 - any failure: back off and retry
                    log.warning("WS API reconnect failed: %r", e)
                    delay = min(delay * 2, _RECONNECT_MAX_S)
                    if self.wsapi.connected:
                        self.wsapi.transport.disconnect()
                    continue
                self.ws_reconnects += 1
                # Quote again only once every order in doubt is settled (bounded wait).
                if not await self.resolver.settle(cfg.resolve_timeout_s):
                    log.warning("%d orders still in doubt after the reconnect; quoting resumes anyway",
                                self.tracker.in_doubt_count())
                if self.wsapi.connected and not self.stop.is_set():
                    self.wsapi.paused = False
                    if self.feed is not None:
                        for s, sync in self.feed.syncs.items():
                            if not sync.valid and sync.buffered > 0:
                                self.wsapi.request_snapshot(s, cfg.depth_limit)
                    log.info("WS API back; quoting resumes")
                return
        finally:
            self.ws_reconnecting = False

    async def _reconcile(self, reason: str) -> ReconcileReport:
        cfg = self.cfg
        rep = await reconcile(self.wsapi, self.tracker, self.symbol, owned_by(cfg.client_id_prefix), reason=reason,
                              foreign=cfg.foreign_orders, cancel_own=cfg.cancel_open_at_start and reason == "start",
                              timeout_s=cfg.connect_timeout_s)
        self.reports.append(rep)
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
            except Exception:  # noqa: BLE001 - the watchdog must keep running
                log.exception("order watchdog failed")

    def _request_snapshot(self, symbol: str) -> None:
        # Called by the feed inline while it handles the first diff (or a gap): send the
        # request after this frame is done, so the diff is buffered before the snapshot
        # can possibly be applied (1.5 step 1-2).
        self.loop.call_soon(self.wsapi.request_snapshot, symbol, self.cfg.depth_limit)

    def _on_streams_lost(self) -> None:
        log.warning("market stream lost; pulling quotes and reconnecting")
        assert self.feed is not None and self.bus is not None and self.ctx is not None
        for sym, sync in self.feed.syncs.items():
            sync.invalidate()
            self.bus.book_invalidated(sym, "stream disconnected")
            if self.cfg.cancel_on_gap:
                self.ctx.cancel_all(sym)
        self._tasks.append(self.loop.create_task(self._reconnect_streams()))

    async def _reconnect_streams(self) -> None:
        delay = _RECONNECT_FIRST_S
        while not self.stop.is_set():
            if self.reconnects >= self.cfg.max_reconnects:
                self.request_stop("streams lost")
                return
            self.reconnects += 1
            await asyncio.sleep(delay)
            try:
                assert self.streams is not None
                await self.streams.connect(self.cfg.connect_timeout_s)
            except Exception as e:  # noqa: BLE001 - any failure: back off and retry
                log.warning("stream reconnect failed: %r", e)
                delay = min(delay * 2, _RECONNECT_MAX_S)
                continue
            # The sync exists, so the feed will not ask for a snapshot by itself: ask once the
            # first diff has been buffered.
            await self._snapshot_after_first_diff()
            return

    async def _snapshot_after_first_diff(self) -> None:
        assert self.feed is not None
        deadline = time.monotonic() + self.cfg.connect_timeout_s
        while not self.stop.is_set() and time.monotonic() < deadline:
            pending = [s for s, sync in self.feed.syncs.items() if not sync.valid and sync.buffered > 0]
            if pending:
                for s in pending:
                    self.wsapi.request_snapshot(s, self.cfg.depth_limit)
                return
            await asyncio.sleep(_POLL_S)

    # -- phases ---------------------------------------------------------------------------------
    async def start(self) -> None:
        cfg = self.cfg
        await self.wsapi.connect(cfg.connect_timeout_s)
        inst, assets = await self._instrument()
        self.instrument = inst
        self.tracker.add_instrument(inst, assets)
        self.wsapi.add_instrument(inst)
        await asyncio.wait_for(self.wsapi.start_session(), cfg.connect_timeout_s)
        await self._reconcile("start")
        self._tasks.append(self.loop.create_task(self._watchdog()))
        await self.resolver.settle(cfg.resolve_timeout_s)
        self.wsapi.paused = False
        instruments = {self.symbol: inst}
        self.ctx = StrategyContext(instruments, self.tracker, self.wsapi, self.ids.next)
        self.bus = StrategyBus(self.strategy, self.ctx, snapshot_requester=self._request_snapshot,
                               cancel_on_gap=cfg.cancel_on_gap)
        self.tracker.listener = self.bus

        def resolve(symbol: str, _first: Any) -> Instrument:
            return instruments[symbol]

        self.feed = MarketDataFeed(resolve, self.bus, default_symbol=self.symbol)
        self.wsapi.feed = self.feed
        self.bus.start()
        url = combined_stream_url(cfg.streams_url, stream_names([self.symbol], cfg.depth_speed))
        self.streams = MarketStreamClient(url, self.feed, self.ctx, on_connection=self._on_connection)
        await self.streams.connect(cfg.connect_timeout_s)

    async def _instrument(self) -> tuple[Instrument, tuple[str, str] | None]:
        cfg = self.cfg
        if cfg.instrument is not None:
            return cfg.instrument, None
        try:
            info = await self.wsapi.exchange_info(self.symbol, cfg.connect_timeout_s)
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

    async def wait(self) -> None:
        cfg = self.cfg
        loop = self.loop
        if cfg.duration_s is not None:
            loop.call_later(cfg.duration_s, self.request_stop, "duration")
        if cfg.stop_when is not None:
            # Not ours to cancel (e.g. the simulator's `ended`): only watch it.
            fut = asyncio.ensure_future(cfg.stop_when)
            fut.add_done_callback(self._stop_when_done)
        self._tasks.append(loop.create_task(self._timer()))
        if cfg.idle_timeout_s:
            self._tasks.append(loop.create_task(self._idle_watch(cfg.idle_timeout_s)))
        await self.stop.wait()

    async def _timer(self) -> None:
        assert self.bus is not None
        while True:
            await asyncio.sleep(self.cfg.timer_interval_s)
            self.bus.on_timer(time.monotonic_ns())

    async def _idle_watch(self, idle_s: float) -> None:
        assert self.streams is not None
        idle_ns = int(idle_s * 1e9)
        start = time.monotonic_ns()
        while True:
            await asyncio.sleep(min(idle_s / 4, 1.0))
            last = self.streams.last_frame_ns or start
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

    async def shutdown(self) -> int:
        """Cancel everything and return the venue's open-order count (-1 if unknown)."""
        cfg = self.cfg
        if self.ctx is not None:
            self.ctx.enabled = False
        for t in self._tasks:
            t.cancel()
        self._capture_mark()
        if self.streams is not None:
            try:
                await self.streams.close(cfg.shutdown_timeout_s)
            except Exception:  # noqa: BLE001 - shutting down regardless
                log.exception("closing the market stream failed")
        if self.bus is not None:
            self.bus.stop()
        # No new order from here; the resolver still settles what is in doubt.
        self.wsapi.paused = True
        if not self.wsapi.connected:
            self.resolver.cancel_tasks()
            return -1
        venue_open = -1
        owns = owned_by(cfg.client_id_prefix)
        try:
            await self._cancel_everything_ours()
            # Every order in doubt is now unwanted: found open it is cancelled, missing after
            # its window it is abandoned (never resent). Waiting out the window is what makes
            # "not on the venue" final (4.4).
            for o in self.tracker.open_orders(self.symbol):
                o.cancel_wanted = True
            window_s = (self.resolver.recv_window_ms + self.resolver.margin_ms) / 1000.0
            await self._settle_all(max(cfg.shutdown_timeout_s, window_s + 1.0))
            # Wait until the tracker has seen every order closed (responses and reports).
            deadline = time.monotonic() + cfg.shutdown_timeout_s
            while self.tracker.open_count(self.symbol) and time.monotonic() < deadline:
                await asyncio.sleep(_POLL_S)
            for _attempt in range(2):
                left = await self.wsapi.open_orders(self.symbol, cfg.shutdown_timeout_s)
                if cfg.foreign_orders == LEAVE:
                    left = [r for r in left if owns(r.get("clientOrderId") or "")]
                venue_open = len(left)
                if not left:
                    break
                log.warning("%d orders still open on %s after the final cancel; cancelling again", len(left),
                            self.symbol)
                if cfg.foreign_orders == LEAVE:
                    for r in left:
                        await self.wsapi.cancel_order(self.symbol, r["clientOrderId"], cfg.shutdown_timeout_s)
                else:
                    await self.wsapi.cancel_all(self.symbol, cfg.shutdown_timeout_s)
            self.tracker_open_at_exit = self.tracker.open_count(self.symbol)
            if venue_open == 0:
                # The venue has nothing open: anything the tracker still holds was closed.
                self.tracker.reconcile_open(self.symbol, [])
        except (WsApiError, ConnectionError, asyncio.TimeoutError) as e:
            log.error("final cancel failed: %r", e)
        return venue_open

    async def _cancel_everything_ours(self) -> None:
        # openOrders.cancelAll cancels every order of the symbol, foreign ones too: with
        # foreign_orders="leave" only our own orders are cancelled, one by one.
        if self.cfg.foreign_orders != LEAVE:
            await self.wsapi.cancel_all(self.symbol, self.cfg.shutdown_timeout_s)
            return
        for o in self.tracker.open_orders(self.symbol):
            if o.state in (st.NEW, st.PARTIALLY_FILLED) and not o.cancel_pending:
                self.tracker.on_cancel_sent(o.client_order_id)
                self.wsapi.send_cancel(o.client_order_id, o.symbol, 0)
            else:
                self.tracker.on_cancel_wanted(o.client_order_id)

    async def _settle_all(self, timeout_s: float) -> None:
        # The watchdog is stopped at shutdown: expire and resolve here, until nothing is in doubt
        # and no order is open that is not being cancelled.
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and self.wsapi.connected:
            self.wsapi.expire()
            self.resolver.step()
            if self.tracker.in_doubt_count() == 0 and self.resolver.in_flight == 0:
                if not any(o.is_open and not o.cancel_pending for o in self.tracker.open_orders(self.symbol)):
                    return
                for o in self.tracker.open_orders(self.symbol):
                    if not o.cancel_pending and o.state in (st.NEW, st.PARTIALLY_FILLED):
                        self.tracker.on_cancel_sent(o.client_order_id)
                        try:
                            self.wsapi.send_cancel(o.client_order_id, o.symbol, 0)
                        except Exception:  # noqa: BLE001 - the final cancelAll covers it
                            pass
            await asyncio.sleep(_POLL_S)

    async def close(self) -> None:
        self.resolver.cancel_tasks()
        for t in self._tasks:
            t.cancel()
        if self.streams is not None and self.streams.connected:
            await self.streams.close(self.cfg.shutdown_timeout_s)
        if self.wsapi.connected:
            await self.wsapi.close(self.cfg.shutdown_timeout_s)

    def summary(self, duration_s: float, open_at_exit: int) -> RunSummary:
        tr = self.tracker
        feed = self.feed
        syncs = feed.syncs.values() if feed is not None else ()
        pos = tr.positions.get(self.symbol)
        return RunSummary(
            symbol=self.symbol,
            end_reason=self.end_reason,
            duration_s=round(duration_s, 3),
            frames=self.streams.frames if self.streams is not None else 0,
            depth_messages=feed.depth_messages if feed is not None else 0,
            book_resyncs=sum(s.resyncs for s in syncs),
            gaps=sum(s.gaps for s in syncs),
            snapshots=sum(s.snapshots_loaded for s in syncs),
            decode_errors=sum(feed.errors.values()) if feed is not None else 0,
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
            late_responses=self.wsapi.late_responses,
            reconciled_fills=tr.reconciled_fills,
            reconciled_fill_qty=tr.reconciled_fill_qty.get(self.symbol, Decimal(0)),
            reconciliations=list(self.reports),
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
            open_at_exit = await s.shutdown()
            await s.close()
    finally:
        if sigint:
            s.loop.remove_signal_handler(signal.SIGINT)
    return s.summary(time.monotonic() - t0, open_at_exit)


def run_sync(config: RunConfig) -> RunSummary:
    """Run :func:`run` on a new uvloop event loop (the production loop)."""
    import uvloop

    return uvloop.run(run(config))


__all__ = ["LatencyStats", "RunConfig", "RunSummary", "run", "run_sync"]
