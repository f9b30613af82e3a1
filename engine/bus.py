"""The strategy callback bus: feed and order events to a :class:`Strategy`, inline.

Everything runs on the one event loop, without queues: a market-data frame is
decoded, applied to the book, dispatched here and handed to the strategy, whose
orders are encoded and written to the socket before the callback returns
(frame -> decode -> book -> bus -> strategy -> order -> bytes, one loop
iteration).

Strategies import only this module. They see

* books through :class:`BookView`, a read-only wrapper that refuses to read an
  invalid book (:class:`BookInvalidError`; attempts are counted): the feed
  only dispatches valid books, and a view kept across callbacks cannot leak a
  stale one;
* events as msgspec Structs of integers: prices in **ticks**
  (``price / tick_size``), order quantities in **steps** (``qty / step_size``),
  book quantities in **lots** (``10**-qty_decimals``), times in **ns**;
* the order path through :class:`StrategyContext` (``place_limit``, ``cancel``,
  ``cancel_all``, open orders, position in steps, instruments).

Fail closed: :meth:`StrategyContext.place_limit` refuses (:class:`TradingDisabled`)
while the engine is **halted** (``StrategyContext.halt``: a connection is down
or stalled, a cancel-all is being confirmed, orders are being reconciled, a
book is being resynced, the kill switch or the risk manager stopped trading),
while the order connection is not ready, and for a symbol whose book is known
to be invalid; it runs the pre-trade risk checks (:mod:`engine.risk`, when a
:class:`~engine.risk.RiskManager` is attached) before any byte is written, and
refuses with :class:`RiskRefused`. Cancels are never held back by a halt.

Callbacks (all optional, all on the loop, never re-entrant across frames)::

    on_start(ctx)                     once, before any market data
    on_bbo(symbol, bid_ticks, bid_lots, ask_ticks, ask_lots)
                                      best bid/offer changed (book, or a newer bookTicker)
    on_book(symbol, book)             a depth diff was applied to a valid book
    on_trade(symbol, trade)           a public trade (TradeEvent)
    on_order_update(update)           one of our orders changed status (OrderUpdate)
    on_fill(fill)                     one of our orders traded (Fill), deduplicated
    on_timer(now_ns)                  periodic, monotonic ns
    on_connection(event)              connection or book state changed (ConnectionEvent)
    on_stop()                         once, before the engine cancels everything
"""
from __future__ import annotations

import logging
import time
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Callable, Mapping, Protocol

import msgspec

from ext.book import ASK, BID, NO_ASK, NO_BID, OrderBook
from ext.parsers import DecodeError, LevelParser
from engine.feed.market import FeedListener
from engine.instruments import Instrument

if TYPE_CHECKING:  # pragma: no cover
    from engine.feed.messages import BookTicker, Trade
    from engine.feed.sync import GapEvent

log = logging.getLogger(__name__)

BUY = "BUY"
SELL = "SELL"
SIDES = (BUY, SELL)

# Order statuses (Binance ``X`` values, venue-protocols.md 3.6, SPOT-ENUM), plus
# PENDING_NEW for "sent, not yet acknowledged" and UNKNOWN for "sent, outcome in doubt"
# (no answer in time, 5xx, connection lost: engine.orders.state). An UNKNOWN order may be
# live on the venue, so it counts as open.
PENDING_NEW = "PENDING_NEW"
UNKNOWN = "UNKNOWN"
NEW = "NEW"
PARTIALLY_FILLED = "PARTIALLY_FILLED"
FILLED = "FILLED"
CANCELED = "CANCELED"
REJECTED = "REJECTED"
EXPIRED = "EXPIRED"
OPEN_STATUSES = frozenset((PENDING_NEW, UNKNOWN, NEW, PARTIALLY_FILLED))
TERMINAL_STATUSES = frozenset((FILLED, CANCELED, REJECTED, EXPIRED))

# Connection / book states of ConnectionEvent.state.
CONNECTED = "connected"
DISCONNECTED = "disconnected"
BOOK_SYNCED = "synced"
BOOK_INVALID = "invalid"
SHUTDOWN = "shutdown"
# ConnectionEvent("engine", HALTED | RESUMED, "", reason): quoting stopped / allowed again.
HALTED = "halted"
RESUMED = "resumed"

__all__ = [
    "ASK", "BID", "BUY", "NO_ASK", "NO_BID", "SELL", "BookInvalidError", "BookView", "ConnectionEvent",
    "Fill", "OrderError", "OrderSender", "OrderUpdate", "RiskRefused", "Strategy", "StrategyBus", "StrategyContext",
    "TradeEvent", "TradingDisabled", "UNKNOWN", "breaker_counts", "min_notional_units",
]


# -- events ------------------------------------------------------------------------------------
class TradeEvent(msgspec.Struct, frozen=True, gc=False):
    """A public trade.

    Attributes
    ----------
    symbol : str
    trade_id : int
        Venue trade id ``t``.
    price_ticks : int
    qty_lots : int
        Quantity in book lots (``10**-qty_decimals`` base units).
    buyer_is_maker : bool
        True when the aggressor sold (``m``).
    ts_exchange_ns : int
        Trade time ``T`` (ms) as ns since the epoch.
    ts_local_ns : int
        Local receive time, ns since the epoch.
    """

    symbol: str
    trade_id: int
    price_ticks: int
    qty_lots: int
    buyer_is_maker: bool
    ts_exchange_ns: int
    ts_local_ns: int


class OrderUpdate(msgspec.Struct, frozen=True, gc=False):
    """One of our orders changed status.

    Attributes
    ----------
    symbol, client_order_id : str
    order_id : int
        Venue order id, -1 until acknowledged.
    side : str
        ``BUY`` or ``SELL``.
    status : str
        ``PENDING_NEW``, ``UNKNOWN``, ``NEW``, ``PARTIALLY_FILLED``, ``FILLED``, ``CANCELED``,
        ``REJECTED`` or ``EXPIRED``.
    price_ticks, qty_steps, filled_steps : int
    error_code : int
        Venue error code of a rejection (section 6.1), else 0.
    reason : str
        Venue message of a rejection, else "".
    ts_local_ns : int
        Monotonic ns when the update was processed.
    """

    symbol: str
    client_order_id: str
    order_id: int
    side: str
    status: str
    price_ticks: int
    qty_steps: int
    filled_steps: int
    error_code: int
    reason: str
    ts_local_ns: int


class Fill(msgspec.Struct, frozen=True, gc=False):
    """One execution of one of our orders (deduplicated by ``(symbol, trade_id)``).

    Attributes
    ----------
    symbol, client_order_id : str
    order_id, trade_id : int
    side : str
    price_ticks, qty_steps : int
    is_maker : bool
    commission : Decimal
        Exact commission amount in ``commission_asset``.
    commission_asset : str
    ts_exchange_ns : int
        Transaction time ``T`` as ns since the epoch (0 if unknown).
    ts_local_ns : int
        Monotonic ns when the fill was processed.
    """

    symbol: str
    client_order_id: str
    order_id: int
    trade_id: int
    side: str
    price_ticks: int
    qty_steps: int
    is_maker: bool
    commission: Decimal
    commission_asset: str
    ts_exchange_ns: int
    ts_local_ns: int


class ConnectionEvent(msgspec.Struct, frozen=True, gc=False):
    """A connection or a book changed state.

    Attributes
    ----------
    name : str
        ``streams``, ``ws-api`` or ``book``.
    state : str
        ``connected``, ``disconnected``, ``shutdown`` (venue announced ``serverShutdown``),
        or for books ``synced`` / ``invalid``.
    symbol : str
        Book events: the symbol; else "".
    detail : str
        Free text (gap reason, close code).
    ts_local_ns : int
        Monotonic ns.
    """

    name: str
    state: str
    symbol: str = ""
    detail: str = ""
    ts_local_ns: int = 0


# -- book view ---------------------------------------------------------------------------------
class BookInvalidError(RuntimeError):
    """A strategy read a book that is not in sync with the venue."""


class BookView:
    """Read-only view of one symbol's :class:`ext.book.OrderBook`.

    Every read checks ``book.valid`` first and raises :class:`BookInvalidError`
    (counting the attempt in :attr:`invalid_reads`) if the book is out of sync.
    Prices are ticks, quantities lots; ``best_bid()`` / ``best_ask()`` return
    :data:`NO_BID` / :data:`NO_ASK` for an empty side.

    Parameters
    ----------
    symbol : str
    book : OrderBook
    instrument : Instrument
    """

    __slots__ = ("symbol", "instrument", "_book", "invalid_reads")

    def __init__(self, symbol: str, book: OrderBook, instrument: Instrument) -> None:
        self.symbol = symbol
        self.instrument = instrument
        self._book = book
        self.invalid_reads = 0

    def __repr__(self) -> str:
        b = self._book
        if not b.valid:
            return f"BookView({self.symbol}, invalid)"
        return f"BookView({self.symbol}, bid={b.best_bid()} ask={b.best_ask()} ticks, u={b.last_update_id})"

    def _refuse(self) -> None:
        self.invalid_reads += 1
        raise BookInvalidError(f"the {self.symbol} book is invalid (out of sync); it must not be read")

    @property
    def valid(self) -> bool:
        """True when the book is in sync (reading it will not raise)."""
        return self._book.valid

    @property
    def last_update_id(self) -> int:
        """Venue update id of the last applied diff."""
        if not self._book.valid:
            self._refuse()
        return self._book.last_update_id

    def best_bid(self) -> int:
        """Best bid in ticks, or ``NO_BID``."""
        if not self._book.valid:
            self._refuse()
        return self._book.best_bid()

    def best_ask(self) -> int:
        """Best ask in ticks, or ``NO_ASK``."""
        if not self._book.valid:
            self._refuse()
        return self._book.best_ask()

    def best_bid_qty(self) -> int:
        """Quantity at the best bid, lots (0 if none)."""
        if not self._book.valid:
            self._refuse()
        return self._book.best_bid_qty()

    def best_ask_qty(self) -> int:
        """Quantity at the best ask, lots (0 if none)."""
        if not self._book.valid:
            self._refuse()
        return self._book.best_ask_qty()

    def qty_at(self, side: int, price_ticks: int) -> int:
        """Quantity in lots at ``price_ticks`` on ``side`` (``BID``/``ASK``), 0 if no level."""
        if not self._book.valid:
            self._refuse()
        return self._book.qty_at(side, price_ticks)

    def n_levels(self, side: int) -> int:
        """Number of price levels on ``side``."""
        if not self._book.valid:
            self._refuse()
        return self._book.n_levels(side)

    def top(self, side: int, n: int):
        """Best ``n`` levels of ``side`` as ``(prices_ticks, qtys_lots)`` numpy int64 arrays (copies)."""
        if not self._book.valid:
            self._refuse()
        return self._book.top(side, n)


# -- strategy ----------------------------------------------------------------------------------
class Strategy:
    """Base class of strategies; override the callbacks you need (all default to no-ops).

    Callbacks run inline on the event loop: keep them short and never await.
    ``self.ctx`` is the :class:`StrategyContext` from :meth:`on_start` on.
    """

    ctx: "StrategyContext"

    def on_start(self, ctx: "StrategyContext") -> None:
        """Receive the context, before any market data."""
        self.ctx = ctx

    def on_book(self, symbol: str, book: BookView) -> None:
        """A depth diff was applied; ``book`` is valid now (borrowed: do not keep it past the call)."""

    def on_bbo(self, symbol: str, bid_ticks: int, bid_lots: int, ask_ticks: int, ask_lots: int) -> None:
        """The best bid/offer changed (ticks, lots; ``NO_BID``/``NO_ASK`` for an empty side)."""

    def on_trade(self, symbol: str, trade: TradeEvent) -> None:
        """A public trade."""

    def on_order_update(self, update: OrderUpdate) -> None:
        """One of our orders changed status."""

    def on_fill(self, fill: Fill) -> None:
        """One of our orders traded (each execution exactly once)."""

    def on_timer(self, now_ns: int) -> None:
        """Periodic callback; ``now_ns`` is ``time.monotonic_ns()``."""

    def on_connection(self, event: ConnectionEvent) -> None:
        """A connection or book changed state."""

    def on_stop(self) -> None:
        """The engine is stopping; it cancels every open order after this returns."""


# -- order path --------------------------------------------------------------------------------
class OrderError(ValueError):
    """An order request the context refuses to send (bad side, size, price or notional)."""


class TradingDisabled(RuntimeError):
    """Orders are not accepted now (engine halted or stopping, order connection down, book invalid)."""


class RiskRefused(OrderError):
    """The pre-trade risk check refused the order (:mod:`engine.risk`); ``reason`` is its reason code."""

    def __init__(self, message: str, reason: str = "") -> None:
        super().__init__(message)
        self.reason = reason


# The post-only rejection "Order would immediately match and take." (-2010, 6.1) is the
# LIMIT_MAKER mechanism doing its job on a moving book, not an error to trip the breaker on.
_WOULD_TAKE = "immediately match"
# Codes of OrderUpdate.error_code that are not venue rejections: 0 (never sent), -2013 (an
# order in doubt abandoned after the venue's window, engine.orders.reconcile).
_NOT_VENUE_REJECTIONS = frozenset((0, -2013))


def breaker_counts(error_code: int, reason: str) -> bool:
    """True if a REJECTED update with this code and message is a venue rejection for the circuit breaker."""
    if error_code in _NOT_VENUE_REJECTIONS:
        return False
    return not (error_code == -2010 and _WOULD_TAKE in reason)


class OrderSender(Protocol):
    """What :class:`StrategyContext` needs from the order connection (``engine.live.wsapi``)."""

    @property
    def ready(self) -> bool:
        """True when requests can be written."""

    def send_place(self, client_order_id: str, symbol: str, side: str, price_ticks: int, qty_steps: int,
                   post_only: bool, trigger_rx_ns: int) -> None:
        """Write an ``order.place`` request."""

    def send_cancel(self, client_order_id: str, symbol: str, trigger_rx_ns: int) -> None:
        """Write an ``order.cancel`` request by ``origClientOrderId``."""

    def send_cancel_all(self, symbol: str) -> None:
        """Write an ``openOrders.cancelAll`` request."""


class _Tracker(Protocol):
    def on_place_sent(self, client_order_id: str, symbol: str, side: str, price_ticks: int,
                      qty_steps: int, post_only: bool) -> Any: ...
    def on_place_not_sent(self, client_order_id: str, reason: str) -> None: ...
    def on_cancel_sent(self, client_order_id: str) -> None: ...
    def on_cancel_all_sent(self, symbol: str) -> None: ...
    def on_cancel_wanted(self, client_order_id: str) -> None: ...
    def get(self, client_order_id: str) -> Any: ...
    def open_orders(self, symbol: str | None = None) -> list: ...
    def position_steps(self, symbol: str) -> int: ...


class StrategyContext:
    """The strategy's handle on instruments, books, positions and the order path.

    Parameters
    ----------
    instruments : mapping
        Symbol -> :class:`~engine.instruments.Instrument` of the traded symbols.
    tracker : OrderTracker
        :class:`engine.orders.tracker.OrderTracker` (order state, position).
    sender : OrderSender
        The order connection.
    new_client_order_id : callable
        Returns a fresh client order id (:class:`engine.orders.ids.ClientOrderIdGenerator`).

    Attributes
    ----------
    trigger_rx_ns : int
        Monotonic ns at which the market-data frame being processed arrived
        (0 outside a frame); stamped by the stream client and passed with each
        order so the sender can measure tick-to-order latency.
    enabled : bool
        False while stopping: ``place_limit`` raises :class:`TradingDisabled`.
    halted : bool
        True while any halt reason is set (:meth:`halt` / :meth:`release`): ``place_limit``
        raises :class:`TradingDisabled`; cancels still go out.
    risk : RiskManager or None
        Pre-trade checks run by ``place_limit`` (:mod:`engine.risk`).
    require_book : bool
        Refuse orders for a symbol whose book has never been synced (the live runner sets it).
    on_halt_change : callable or None
        ``f(halted: bool, reason: str)`` when the context becomes halted or resumes.
    orders_refused, orders_refused_halted, orders_refused_risk, orders_on_invalid_book : int
        Refusals: notional below the minimum; while halted; by the risk checks; for a
        symbol whose book is invalid (a strategy bug: it was told the book went invalid).
    """

    def __init__(self, instruments: Mapping[str, Instrument], tracker: _Tracker, sender: OrderSender,
                 new_client_order_id: Callable[[], str], risk: Any = None) -> None:
        self.instruments = dict(instruments)
        self.tracker = tracker
        self.sender = sender
        self._new_id = new_client_order_id
        self.trigger_rx_ns = 0
        self.enabled = True
        self.halted = False
        self.halt_reasons: dict[str, str] = {}
        self.risk = risk
        self.require_book = False
        self.on_halt_change: Callable[[bool, str], None] | None = None
        self.views: dict[str, BookView] = {}
        # Smallest price_ticks * qty_steps product meeting min notional, per symbol (exact).
        self._min_units: dict[str, int] = {s: min_notional_units(i) for s, i in self.instruments.items()}
        self.orders_refused = 0
        self.orders_refused_halted = 0
        self.orders_refused_risk = 0
        self.orders_on_invalid_book = 0
        self.cancels_not_sent = 0

    # -- halting -------------------------------------------------------------------------------
    @property
    def halt_reason(self) -> str:
        """The halt reasons set now, ``"key: detail; ..."`` ("" when not halted)."""
        return "; ".join(f"{k}: {v}" if v else k for k, v in self.halt_reasons.items())

    def halt(self, key: str, detail: str = "") -> bool:
        """Set halt reason ``key`` (no new order leaves until every reason is released).

        Returns True if the context was not halted before. Setting a reason again
        only updates its detail.
        """
        was = self.halted
        self.halt_reasons[key] = detail
        self.halted = True
        if not was and self.on_halt_change is not None:
            self.on_halt_change(True, self.halt_reason)
        return not was

    def release(self, key: str) -> bool:
        """Clear halt reason ``key``; return True if that resumed quoting (no reason left)."""
        self.halt_reasons.pop(key, None)
        resumed = self.halted and not self.halt_reasons
        self.halted = bool(self.halt_reasons)
        if resumed and self.on_halt_change is not None:
            self.on_halt_change(False, key)
        return resumed

    def is_halted_by(self, key: str) -> bool:
        """True if halt reason ``key`` is set."""
        return key in self.halt_reasons

    # -- reading -------------------------------------------------------------------------------
    def instrument(self, symbol: str) -> Instrument:
        """Return the instrument of ``symbol`` (KeyError if not traded)."""
        return self.instruments[symbol]

    def book(self, symbol: str) -> BookView | None:
        """Return the :class:`BookView` of ``symbol`` once its book has been synced (None before)."""
        return self.views.get(symbol)

    def book_valid(self, symbol: str) -> bool:
        """True if ``symbol``'s book is in sync now."""
        v = self.views.get(symbol)
        return v is not None and v.valid

    def position(self, symbol: str) -> int:
        """Return the position of ``symbol`` in steps (+ long, - short), from fills only."""
        return self.tracker.position_steps(symbol)

    def open_orders(self, symbol: str | None = None) -> list:
        """Return our open orders (``TrackedOrder``, read-only), optionally of one symbol."""
        return self.tracker.open_orders(symbol)

    def order(self, client_order_id: str):
        """Return the ``TrackedOrder`` of ``client_order_id`` or None."""
        return self.tracker.get(client_order_id)

    def now_ns(self) -> int:
        """Monotonic clock, ns."""
        return time.monotonic_ns()

    def can_trade(self, symbol: str) -> bool:
        """True if orders for ``symbol`` would be sent now (enabled, not halted, connected, book valid)."""
        return self.enabled and not self.halted and self.sender.ready and self.book_valid(symbol)

    def min_qty_steps(self, symbol: str, price_ticks: int) -> int:
        """Smallest quantity in steps whose notional at ``price_ticks`` meets ``min_notional`` (section 7)."""
        if price_ticks <= 0:
            raise OrderError("price must be positive")
        u = self._min_units[symbol]
        return max(1, -(-u // price_ticks))

    # -- orders --------------------------------------------------------------------------------
    def place_limit(self, symbol: str, side: str, price_ticks: int, qty_steps: int, post_only: bool = True) -> str:
        """Send a GTC limit order; return its client order id.

        Parameters
        ----------
        symbol : str
        side : {"BUY", "SELL"}
        price_ticks : int
            Limit price in ticks (> 0).
        qty_steps : int
            Quantity in steps (> 0); ``price * qty`` must meet the instrument's
            ``min_notional`` (NOTIONAL filter, venue-protocols.md section 7).
        post_only : bool
            True sends ``LIMIT_MAKER`` (rejected by the venue instead of taking,
            3.4 / 6.1 -2010 "Order would immediately match and take."); False
            sends ``LIMIT`` ``GTC``.

        Raises
        ------
        OrderError
            Bad side, non-positive price or quantity, or notional below the minimum.
        RiskRefused
            A pre-trade risk limit refused the order (an :class:`OrderError`).
        TradingDisabled
            Engine halted or stopping, order connection not ready, or the symbol's book invalid.
        """
        if not self.enabled:
            raise TradingDisabled("the engine is stopping")
        if self.halted:
            self.orders_refused_halted += 1
            raise TradingDisabled(f"halted: {self.halt_reason}")
        if not self.sender.ready:
            raise TradingDisabled("the order connection is not ready")
        if side is not BUY and side is not SELL and side not in SIDES:
            raise OrderError(f"side must be BUY or SELL, got {side!r}")
        if type(price_ticks) is not int or type(qty_steps) is not int:
            raise OrderError("price_ticks and qty_steps must be int")
        if price_ticks <= 0 or qty_steps <= 0:
            raise OrderError(f"price_ticks and qty_steps must be positive, got {price_ticks}, {qty_steps}")
        u = self._min_units.get(symbol)
        if u is None:
            raise OrderError(f"{symbol} is not a traded symbol")
        if price_ticks * qty_steps < u:
            self.orders_refused += 1
            raise OrderError(f"{symbol}: notional of {qty_steps} steps at {price_ticks} ticks is below min_notional")
        view = self.views.get(symbol)
        if view is None:
            if self.require_book:
                self.orders_on_invalid_book += 1
                raise TradingDisabled(f"the {symbol} book has not been synced")
        elif not view._book.valid:
            self.orders_on_invalid_book += 1
            raise TradingDisabled(f"the {symbol} book is invalid (out of sync)")
        risk = self.risk
        if risk is not None:
            bid = ask = None
            if view is not None:
                b = view._book
                bid, ask = b.best_bid(), b.best_ask()
            d = risk.check_new_order(symbol, side, price_ticks, qty_steps, bid, ask)
            if not d.ok:
                self.orders_refused_risk += 1
                if d.reason == "halted":
                    raise TradingDisabled(d.detail)
                raise RiskRefused(d.detail, d.reason)
        cid = self._new_id()
        self.tracker.on_place_sent(cid, symbol, side, price_ticks, qty_steps, post_only)
        try:
            self.sender.send_place(cid, symbol, side, price_ticks, qty_steps, post_only, self.trigger_rx_ns)
        except Exception as e:
            self.tracker.on_place_not_sent(cid, f"send failed: {e!r}")
            raise TradingDisabled(f"order not sent: {e!r}") from e
        if risk is not None:
            risk.on_order_sent(cid, symbol, side, qty_steps)
        return cid

    def cancel(self, client_order_id: str) -> bool:
        """Send ``order.cancel`` for an open order; return False if it is not open or already being cancelled.

        An order whose outcome is in doubt (``UNKNOWN``) is not cancelled by
        request: the wish is recorded and the engine's resolver cancels it if the
        venue has it, or abandons it (never resends it) if not. Returns True then.
        """
        o = self.tracker.get(client_order_id)
        if o is None or o.status not in OPEN_STATUSES or o.cancel_pending:
            return False
        if o.status == UNKNOWN:
            self.tracker.on_cancel_wanted(client_order_id)
            return True
        if not self.sender.ready:
            return False
        self.tracker.on_cancel_sent(client_order_id)
        try:
            self.sender.send_cancel(client_order_id, o.symbol, self.trigger_rx_ns)
        except Exception as e:  # noqa: BLE001 - e.g. rate limited locally: the order stays open
            self.cancels_not_sent += 1
            o.cancel_pending = False
            log.debug("cancel of %s not sent: %r", client_order_id, e)
            return False
        return True

    def cancel_all(self, symbol: str) -> bool:
        """Send ``openOrders.cancelAll`` for ``symbol`` if we have open orders there; return True if sent."""
        if not self.sender.ready or not self.tracker.open_orders(symbol):
            return False
        self.tracker.on_cancel_all_sent(symbol)
        try:
            self.sender.send_cancel_all(symbol)
        except Exception as e:  # noqa: BLE001 - the orders stay open; the engine's fail-safe retries
            self.cancels_not_sent += 1
            for o in self.tracker.open_orders(symbol):
                o.cancel_pending = False
            log.debug("cancelAll of %s not sent: %r", symbol, e)
            return False
        return True


def min_notional_units(inst: Instrument) -> int:
    """Return ``ceil(min_notional / (tick_size * step_size))``: the least ``ticks * steps`` product allowed."""
    unit = inst.tick_size * inst.step_size
    q, r = divmod(inst.min_notional, unit)
    return int(q) + (1 if r else 0)


# -- the bus -----------------------------------------------------------------------------------
class StrategyBus(FeedListener):
    """Dispatch feed and order events to one strategy (a :class:`~engine.feed.market.FeedListener`).

    Parameters
    ----------
    strategy : Strategy
    ctx : StrategyContext
    snapshot_requester : callable, optional
        ``f(symbol)``: fetch a depth snapshot (the feed asks on the first diff and on every gap).
    cancel_on_gap : bool
        Pull our quotes of a symbol whose book went invalid (style habit 7).

    Attributes
    ----------
    strategy_errors : int
        Exceptions raised by strategy callbacks (logged, not propagated: the
        feed and order path must keep running).
    invalid_book_calls : int
        Book callbacks refused because the book was invalid (never handed to the strategy).
    gaps, decode_errors, trades, bbo_events, book_events : int
    """

    def __init__(self, strategy: Strategy, ctx: StrategyContext,
                 snapshot_requester: Callable[[str], None] | None = None, cancel_on_gap: bool = True) -> None:
        self.strategy = strategy
        self.ctx = ctx
        self.snapshot_requester = snapshot_requester
        self.cancel_on_gap = cancel_on_gap
        self._parsers = {s: LevelParser(i.price_decimals, i.tick_units, i.qty_decimals)
                         for s, i in ctx.instruments.items()}
        self._bbo: dict[str, tuple[int, int, int, int]] = {}
        self._synced: dict[str, bool] = {}
        self.strategy_errors = 0
        self.gaps = 0
        self.decode_errors = 0
        self.trades = 0
        self.bbo_events = 0
        self.book_events = 0
        self.ignored_symbols = 0
        self.invalid_book_calls = 0
        self._retired_invalid_reads = 0
        self.started = False

    # -- lifecycle -----------------------------------------------------------------------------
    def start(self) -> None:
        """Call the strategy's ``on_start``."""
        if not self.started:
            self.started = True
            self._call(self.strategy.on_start, self.ctx)

    def stop(self) -> None:
        """Call the strategy's ``on_stop`` (once)."""
        if self.started:
            self.started = False
            self._call(self.strategy.on_stop)

    @property
    def invalid_reads(self) -> int:
        """Reads of invalid books refused by the :class:`BookView` s."""
        return sum(v.invalid_reads for v in self.ctx.views.values()) + self._retired_invalid_reads

    @property
    def strategy_calls_on_invalid_book(self) -> int:
        """Every attempt to involve an invalid book: refused dispatches, refused reads, refused orders."""
        return self.invalid_book_calls + self.invalid_reads + self.ctx.orders_on_invalid_book

    def replace_book(self, symbol: str, book: OrderBook) -> None:
        """Point ``symbol``'s view at another book (a new connection's feed took over)."""
        inst = self.ctx.instruments.get(symbol)
        if inst is None:
            return
        old = self.ctx.views.get(symbol)
        if old is not None:
            self._retired_invalid_reads += old.invalid_reads
        self.ctx.views[symbol] = BookView(symbol, book, inst)

    def _call(self, fn: Callable[..., None], *args: Any) -> None:
        try:
            fn(*args)
        except Exception:
            self.strategy_errors += 1
            if self.strategy_errors <= 10:
                log.exception("strategy callback %s failed", getattr(fn, "__name__", fn))

    # -- market data (FeedListener) -------------------------------------------------------------
    def on_book(self, symbol: str, book: OrderBook) -> None:
        """A diff was applied to a valid book: emit ``on_bbo`` if the top changed, then ``on_book``."""
        if not book.valid:
            # The feed never does this; refuse and count rather than show an invalid book.
            self.invalid_book_calls += 1
            return
        view = self.ctx.views.get(symbol)
        if view is None or view._book is not book:
            inst = self.ctx.instruments.get(symbol)
            if inst is None:
                self.ignored_symbols += 1
                return
            if view is not None:
                self._retired_invalid_reads += view.invalid_reads
            view = self.ctx.views[symbol] = BookView(symbol, book, inst)
        if not self._synced.get(symbol, False):
            self._synced[symbol] = True
            self.on_connection(ConnectionEvent("book", BOOK_SYNCED, symbol, "", time.monotonic_ns()))
        self.book_events += 1
        s = self.strategy
        bbo = (book.best_bid(), book.best_bid_qty(), book.best_ask(), book.best_ask_qty())
        if bbo != self._bbo.get(symbol):
            self._bbo[symbol] = bbo
            self.bbo_events += 1
            try:
                s.on_bbo(symbol, *bbo)
            except Exception:
                self._err(s.on_bbo)
        try:
            s.on_book(symbol, view)
        except Exception:
            self._err(s.on_book)

    def _err(self, fn: Any) -> None:
        self.strategy_errors += 1
        if self.strategy_errors <= 10:
            log.exception("strategy callback %s failed", getattr(fn, "__name__", fn))

    def on_book_ticker(self, symbol: str, ticker: "BookTicker", ts_local_ns: int) -> None:
        """Emit ``on_bbo`` from a bookTicker newer than the (valid) book; older ones are ignored."""
        view = self.ctx.views.get(symbol)
        if view is None or not view._book.valid or ticker.update_id <= view._book.last_update_id:
            return
        p = self._parsers.get(symbol)
        if p is None:
            return
        try:
            bq = p.qty_lots(ticker.bid_qty)
            aq = p.qty_lots(ticker.ask_qty)
            # An empty side has quantity 0; its price is meaningless, use the book's sentinel.
            bbo = (p.price_ticks(ticker.bid_price) if bq else NO_BID, bq,
                   p.price_ticks(ticker.ask_price) if aq else NO_ASK, aq)
        except DecodeError:
            self.decode_errors += 1
            return
        if bbo != self._bbo.get(symbol):
            self._bbo[symbol] = bbo
            self.bbo_events += 1
            self._call(self.strategy.on_bbo, symbol, *bbo)

    def on_trade(self, symbol: str, trade: "Trade", ts_local_ns: int) -> None:
        """Convert a ``trade`` event to a :class:`TradeEvent` (ticks, lots) and dispatch it."""
        p = self._parsers.get(symbol)
        if p is None:
            self.ignored_symbols += 1
            return
        try:
            ev = TradeEvent(symbol, trade.trade_id, p.price_ticks(trade.price), p.qty_lots(trade.qty),
                            trade.buyer_is_maker, trade.trade_time_ms * 1_000_000, ts_local_ns)
        except DecodeError:
            self.decode_errors += 1
            return
        self.trades += 1
        self._call(self.strategy.on_trade, symbol, ev)

    def on_gap(self, event: "GapEvent") -> None:
        """A book went invalid: tell the strategy and (by default) pull our quotes of that symbol."""
        self.gaps += 1
        self._synced[event.symbol] = False
        self.on_connection(ConnectionEvent("book", BOOK_INVALID, event.symbol, event.reason, time.monotonic_ns()))
        if self.cancel_on_gap:
            self.ctx.cancel_all(event.symbol)

    def book_invalidated(self, symbol: str, reason: str) -> None:
        """Record that ``symbol``'s book was invalidated outside the feed (e.g. stream reconnect)."""
        if self._synced.get(symbol, False):
            self._synced[symbol] = False
            self.on_connection(ConnectionEvent("book", BOOK_INVALID, symbol, reason, time.monotonic_ns()))

    def on_snapshot_needed(self, symbol: str) -> None:
        """Forward to the snapshot requester."""
        if self.snapshot_requester is not None:
            self.snapshot_requester(symbol)

    def on_decode_error(self, kind: str, error: BaseException, source: str) -> None:
        """Count (and log the first few) undecodable frames."""
        self.decode_errors += 1
        if self.decode_errors <= 10:
            log.warning("undecodable frame from %s (%s): %s", source, kind, error)

    # -- order events (tracker listener) ----------------------------------------------------------
    def on_order_update(self, update: OrderUpdate) -> None:
        """Feed the risk manager (closed orders, venue rejections), then dispatch an :class:`OrderUpdate`."""
        risk = self.ctx.risk
        if risk is not None and update.status in TERMINAL_STATUSES:
            try:
                risk.on_order_closed(update.client_order_id)
                if update.status == REJECTED and breaker_counts(update.error_code, update.reason):
                    risk.on_venue_reject(update.error_code)
            except Exception:  # noqa: BLE001 - accounting must not break the order path
                self._err(risk.on_order_closed)
        self._call(self.strategy.on_order_update, update)

    def on_fill(self, fill: Fill) -> None:
        """Feed the risk manager's position, then dispatch a :class:`Fill`."""
        risk = self.ctx.risk
        if risk is not None:
            try:
                risk.on_fill(fill.client_order_id, fill.symbol, fill.side, fill.qty_steps)
            except Exception:  # noqa: BLE001
                self._err(risk.on_fill)
        self._call(self.strategy.on_fill, fill)

    # -- other -------------------------------------------------------------------------------------
    def on_timer(self, now_ns: int) -> None:
        """Dispatch the periodic timer."""
        self._call(self.strategy.on_timer, now_ns)

    def on_connection(self, event: ConnectionEvent) -> None:
        """Dispatch a :class:`ConnectionEvent`."""
        self._call(self.strategy.on_connection, event)
