"""Order state, fills, position and PnL, fed by WS API responses and executionReports.

State machine (statuses are Binance's ``X`` values, venue-protocols.md 3.6,
plus ``PENDING_NEW`` = sent, not yet acknowledged)::

    PENDING_NEW -> NEW -> PARTIALLY_FILLED -> FILLED
         |          |            |
         +----------+------------+--> CANCELED | EXPIRED      (terminal)
         +--> REJECTED                                          (terminal)

A status only moves forward (rank PENDING_NEW < NEW < PARTIALLY_FILLED <
terminal); a terminal status is kept, except that an order whose fills add up
to its quantity is FILLED. So the tracker is **idempotent** under duplicated
reports and **order-insensitive** under reordered ones (a WS API response and
the executionReport of the same change race on the wire: the venue may send
either first, 3.6 / simulator ``events_before_response``).

Fills are deduplicated by ``(symbol, trade id)`` (executionReport ``t``,
FULL response ``fills[].tradeId``); the position (steps, and exact base
quantity) and the cash flow (exact ``Decimal`` quote) change **only** from
fills. Cancels: an executionReport for a cancel carries the cancel's new client
id in ``c`` and ours in ``C`` (section 5); the tracker looks orders up by
``C``, then ``c``, then the venue ``orderId``.

Counters: ``orders_sent``, ``orders_acked``, ``orders_rejected`` (+
``rejects_by_code``), ``fills``, ``duplicate_fills``, ``cancels_sent``,
``cancels`` (orders confirmed CANCELED), ``cancel_rejects_by_code``,
``duplicate_client_order_ids`` (a reused id refused locally, or the venue's
``-2010 "Duplicate order sent."``), ``unknown_outcomes`` (5xx, 3.2).
"""
from __future__ import annotations

import logging
import time
from collections import Counter, deque
from decimal import Decimal
from typing import Any, Iterable, Mapping

import msgspec
from msgspec import field

from engine.bus import (BUY, CANCELED, EXPIRED, FILLED, NEW, OPEN_STATUSES, PARTIALLY_FILLED, PENDING_NEW,
                        REJECTED, SELL, TERMINAL_STATUSES, Fill, OrderUpdate)
from engine.instruments import Instrument

log = logging.getLogger(__name__)

_ZERO = Decimal(0)
_RANK = {PENDING_NEW: 0, NEW: 1, PARTIALLY_FILLED: 2, FILLED: 3, CANCELED: 3, REJECTED: 3, EXPIRED: 3}
# Binance X values mapped onto ours: PENDING_CANCEL is unused on spot; EXPIRED_IN_MATCH (STP) is an expiry.
_STATUS_MAP = {"PENDING_CANCEL": NEW, "EXPIRED_IN_MATCH": EXPIRED, "PENDING_NEW": PENDING_NEW}
# -2010 message for a client id already used by an open order (venue-protocols.md section 5).
DUPLICATE_ORDER_MSG = "Duplicate order sent."
# Terminal orders kept for late reports; older ones are forgotten (a later issue adds a ring).
_KEEP_TERMINAL = 100_000
# Trade ids remembered for deduplication.
_KEEP_TRADE_IDS = 1_000_000


class DuplicateClientOrderId(ValueError):
    """A client order id was submitted twice; the order is not sent."""


class ExecutionReport(msgspec.Struct, gc=False):
    """User-data ``executionReport`` (venue-protocols.md 3.6, SPOT-UDS); only the fields we use.

    Field names are Binance's one-letter keys (case-sensitive: ``c`` client id,
    ``C`` original client id of a cancel, ``t`` trade id, ``T`` transaction time...).
    """

    symbol: str = field(name="s")
    client_order_id: str = field(name="c")
    side: str = field(name="S")
    exec_type: str = field(name="x")
    status: str = field(name="X")
    order_id: int = field(name="i")
    last_qty: str = field(name="l", default="0")
    cum_qty: str = field(name="z", default="0")
    last_price: str = field(name="L", default="0")
    trade_id: int = field(name="t", default=-1)
    orig_client_order_id: str = field(name="C", default="")
    order_type: str = field(name="o", default="")
    price: str = field(name="p", default="0")
    qty: str = field(name="q", default="0")
    commission: str = field(name="n", default="0")
    commission_asset: str | None = field(name="N", default=None)
    reject_reason: str = field(name="r", default="NONE")
    is_maker: bool = field(name="m", default=False)
    event_time_ms: int = field(name="E", default=0)
    transaction_time_ms: int = field(name="T", default=0)
    execution_id: int = field(name="I", default=0)
    event: str = field(name="e", default="executionReport")


class TrackedOrder(msgspec.Struct):
    """One of our orders (read-only for strategies).

    Attributes
    ----------
    client_order_id, symbol, side : str
    price_ticks, qty_steps : int
    post_only : bool
    status : str
    order_id : int
        Venue id, -1 until known.
    filled_steps : int
        Sum of deduplicated fills, steps.
    cum_quote : Decimal
        Sum of ``price * qty`` of the fills, quote currency.
    cancel_pending : bool
        An ``order.cancel`` / ``openOrders.cancelAll`` was sent and not answered.
    acked : bool
        The venue acknowledged the order (response 200 or a report).
    error_code : int
    reason : str
    created_ns, updated_ns : int
        Monotonic ns.
    """

    client_order_id: str
    symbol: str
    side: str
    price_ticks: int
    qty_steps: int
    post_only: bool
    status: str = PENDING_NEW
    order_id: int = -1
    filled_steps: int = 0
    cum_quote: Decimal = _ZERO
    cancel_pending: bool = False
    acked: bool = False
    error_code: int = 0
    reason: str = ""
    created_ns: int = 0
    updated_ns: int = 0

    @property
    def remaining_steps(self) -> int:
        """Unfilled quantity, steps (0 once terminal)."""
        return 0 if self.status in TERMINAL_STATUSES else max(0, self.qty_steps - self.filled_steps)

    @property
    def is_open(self) -> bool:
        """True while PENDING_NEW, NEW or PARTIALLY_FILLED."""
        return self.status in OPEN_STATUSES


class Position(msgspec.Struct):
    """Position and cash of one symbol, from fills only (exact).

    Attributes
    ----------
    qty : Decimal
        Base quantity (+ long).
    steps : int
        ``qty`` in steps.
    cash : Decimal
        Quote received minus quote paid for fills (fees excluded).
    fees : dict
        Commission paid per asset.
    bought_steps, sold_steps : int
    """

    qty: Decimal = _ZERO
    steps: int = 0
    cash: Decimal = _ZERO
    fees: dict[str, Decimal] = {}
    bought_steps: int = 0
    sold_steps: int = 0


class OrderListener:
    """Receiver of tracker events (the strategy bus implements these)."""

    def on_order_update(self, update: OrderUpdate) -> None:
        """An order changed status."""

    def on_fill(self, fill: Fill) -> None:
        """A new (deduplicated) fill."""


def split_symbol(symbol: str, quotes: Iterable[str] = ("FDUSD", "USDT", "USDC", "TUSD", "BUSD", "BTC",
                                                        "ETH", "BNB", "EUR", "TRY", "BRL", "DAI")) -> tuple[str, str]:
    """Split ``BTCUSDT`` into ``("BTC", "USDT")`` by its quote-asset suffix (ValueError if unknown)."""
    for q in quotes:
        if symbol.endswith(q) and len(symbol) > len(q):
            return symbol[: -len(q)], q
    raise ValueError(f"cannot split {symbol!r} into base and quote asset")


class OrderTracker:
    """Track our orders, fills, position and PnL.

    Parameters
    ----------
    instruments : mapping
        Symbol -> :class:`~engine.instruments.Instrument`.
    listener : OrderListener, optional
        Receives :class:`~engine.bus.OrderUpdate` and :class:`~engine.bus.Fill`.
    assets : mapping, optional
        Symbol -> ``(base, quote)``; default splits the symbol by known quote assets.
    """

    def __init__(self, instruments: Mapping[str, Instrument], listener: Any = None,
                 assets: Mapping[str, tuple[str, str]] | None = None) -> None:
        self.instruments = dict(instruments)
        self.listener = listener if listener is not None else OrderListener()
        self.assets = dict(assets) if assets else {}
        for s in self.instruments:
            if s not in self.assets:
                try:
                    self.assets[s] = split_symbol(s)
                except ValueError:
                    self.assets[s] = (s, "")
        self._orders: dict[str, TrackedOrder] = {}
        self._open: dict[str, TrackedOrder] = {}
        self._by_order_id: dict[tuple[str, int], str] = {}
        self._terminal: deque[str] = deque()
        self._trade_ids: dict[tuple[str, int], None] = {}
        self.positions: dict[str, Position] = {s: Position(fees={}) for s in self.instruments}
        # Counters.
        self.orders_sent = 0
        self.orders_not_sent = 0
        self.orders_acked = 0
        self.orders_rejected = 0
        self.rejects_by_code: Counter[int] = Counter()
        self.fills = 0
        self.duplicate_fills = 0
        self.foreign_fills = 0
        self.cancels_sent = 0
        self.cancel_all_sent = 0
        self.cancels = 0
        self.cancel_rejects_by_code: Counter[int] = Counter()
        self.duplicate_client_order_ids = 0
        self.unknown_outcomes = 0
        self.reports = 0
        self.unknown_reports = 0
        self.off_grid_fills = 0

    def __repr__(self) -> str:
        return (f"OrderTracker(open={len(self._open)}, sent={self.orders_sent}, acked={self.orders_acked}, "
                f"rejected={self.orders_rejected}, fills={self.fills}, cancels={self.cancels})")

    def add_instrument(self, inst: Instrument, assets: tuple[str, str] | None = None) -> None:
        """Start tracking a symbol (instrument known only after connecting, e.g. from exchangeInfo)."""
        self.instruments[inst.symbol] = inst
        if assets is not None:
            self.assets[inst.symbol] = assets
        elif inst.symbol not in self.assets:
            try:
                self.assets[inst.symbol] = split_symbol(inst.symbol)
            except ValueError:
                self.assets[inst.symbol] = (inst.symbol, "")
        self.positions.setdefault(inst.symbol, Position(fees={}))

    # -- queries ---------------------------------------------------------------------------------
    def get(self, client_order_id: str) -> TrackedOrder | None:
        """Return the order with this client id (also a cancel's replacement id), or None."""
        return self._orders.get(client_order_id)

    def open_orders(self, symbol: str | None = None) -> list[TrackedOrder]:
        """Return open orders (PENDING_NEW, NEW, PARTIALLY_FILLED), oldest first."""
        if symbol is None:
            return list(self._open.values())
        return [o for o in self._open.values() if o.symbol == symbol]

    def open_count(self, symbol: str | None = None) -> int:
        """Number of open orders."""
        if symbol is None:
            return len(self._open)
        return sum(1 for o in self._open.values() if o.symbol == symbol)

    def position_steps(self, symbol: str) -> int:
        """Position in steps (+ long), from fills only."""
        p = self.positions.get(symbol)
        return 0 if p is None else p.steps

    def position_qty(self, symbol: str) -> Decimal:
        """Position in base currency (exact)."""
        p = self.positions.get(symbol)
        return _ZERO if p is None else p.qty

    def pnl(self, symbol: str, mark_price: Decimal | None) -> Decimal:
        """Return the PnL of ``symbol`` in quote currency at ``mark_price`` (exact Decimal).

        ``cash + qty * mark - fees``: quote-asset fees at face value, base-asset
        fees valued at ``mark``; fees in other assets are not included (see
        ``positions[symbol].fees``). With ``mark_price`` None the position is
        valued at 0 (cash minus quote fees only).
        """
        p = self.positions.get(symbol)
        if p is None:
            return _ZERO
        base, quote = self.assets.get(symbol, (symbol, ""))
        mark = mark_price if mark_price is not None else _ZERO
        out = p.cash + p.qty * mark
        out -= p.fees.get(quote, _ZERO)
        out -= p.fees.get(base, _ZERO) * mark
        return out

    # -- requests sent -----------------------------------------------------------------------------
    def on_place_sent(self, client_order_id: str, symbol: str, side: str, price_ticks: int, qty_steps: int,
                      post_only: bool) -> TrackedOrder:
        """Record an order about to be written (PENDING_NEW).

        Raises
        ------
        DuplicateClientOrderId
            The id was used before in this run (counted; never sent).
        """
        if client_order_id in self._orders:
            self.duplicate_client_order_ids += 1
            raise DuplicateClientOrderId(f"client order id {client_order_id!r} reused")
        now = time.monotonic_ns()
        o = TrackedOrder(client_order_id, symbol, side, price_ticks, qty_steps, post_only,
                         created_ns=now, updated_ns=now)
        self._orders[client_order_id] = o
        self._open[client_order_id] = o
        self.orders_sent += 1
        return o

    def on_place_not_sent(self, client_order_id: str, reason: str) -> None:
        """The order could not be written: drop it as REJECTED (code 0), not counted as sent."""
        o = self._orders.get(client_order_id)
        if o is None:
            return
        self.orders_sent -= 1
        self.orders_not_sent += 1
        o.reason = reason
        self._set_status(o, REJECTED, time.monotonic_ns())

    def on_cancel_sent(self, client_order_id: str) -> None:
        """Record an ``order.cancel`` written for this order."""
        self.cancels_sent += 1
        o = self._orders.get(client_order_id)
        if o is not None:
            o.cancel_pending = True

    def on_cancel_all_sent(self, symbol: str) -> None:
        """Record an ``openOrders.cancelAll`` written for ``symbol``."""
        self.cancel_all_sent += 1
        for o in self._open.values():
            if o.symbol == symbol:
                o.cancel_pending = True

    # -- WS API responses --------------------------------------------------------------------------
    def on_place_ack(self, client_order_id: str, result: Mapping[str, Any]) -> None:
        """Handle a 200 response to ``order.place`` (ACK, RESULT or FULL body, 3.5)."""
        o = self._orders.get(client_order_id)
        if o is None:
            self.unknown_reports += 1
            return
        now = time.monotonic_ns()
        self._ack(o, int(result.get("orderId", -1)))
        fills = result.get("fills")
        if fills:
            for f in fills:
                self._apply_fill(o, int(f["tradeId"]), f["price"], f["qty"], f.get("commission", "0"),
                                 f.get("commissionAsset") or "", False, int(result.get("transactTime", 0)), now)
        st = result.get("status")
        status = _STATUS_MAP.get(st, st) if isinstance(st, str) else NEW
        if status in _RANK:
            self._advance(o, status, now)
        else:
            self._advance(o, NEW, now)

    def on_place_error(self, client_order_id: str, status: int, code: int, msg: str) -> None:
        """Handle an error response to ``order.place``.

        4xx: the order was not placed (REJECTED, counted by code). 5xx: the
        outcome is unknown (3.2): the order stays PENDING_NEW until a report or
        an ``openOrders.status`` query settles it.
        """
        o = self._orders.get(client_order_id)
        if status >= 500 or code in (-1006, -1007):
            self.unknown_outcomes += 1
            return
        self.rejects_by_code[code] += 1
        if code == -2010 and msg == DUPLICATE_ORDER_MSG:
            self.duplicate_client_order_ids += 1
        if o is None:
            self.unknown_reports += 1
            return
        if o.status in TERMINAL_STATUSES or o.acked:
            # A report already settled it (cannot happen for a rejected request; be safe).
            return
        o.error_code = code
        o.reason = msg
        self.orders_rejected += 1
        self._set_status(o, REJECTED, time.monotonic_ns())

    def on_cancel_ack(self, client_order_id: str, result: Mapping[str, Any] | None = None) -> None:
        """Handle a 200 response to ``order.cancel`` (3.5): the order is CANCELED."""
        o = self._orders.get(client_order_id)
        if o is None:
            self.unknown_reports += 1
            return
        o.cancel_pending = False
        if result is not None and "orderId" in result:
            self._ack(o, int(result["orderId"]))
        self._advance(o, CANCELED, time.monotonic_ns())

    def on_cancel_error(self, client_order_id: str, status: int, code: int, msg: str) -> None:
        """Handle an error response to ``order.cancel`` (e.g. -2011 "Unknown order sent.": already done)."""
        o = self._orders.get(client_order_id)
        if status >= 500:
            self.unknown_outcomes += 1
            return
        self.cancel_rejects_by_code[code] += 1
        if o is not None:
            o.cancel_pending = False

    def on_cancel_all_ack(self, symbol: str, results: Iterable[Mapping[str, Any]]) -> None:
        """Handle a 200 response to ``openOrders.cancelAll``: each report names ``origClientOrderId``."""
        now = time.monotonic_ns()
        for r in results:
            cid = r.get("origClientOrderId") or r.get("clientOrderId")
            o = self._orders.get(cid) if cid else None
            if o is None and "orderId" in r:
                c2 = self._by_order_id.get((symbol, int(r["orderId"])))
                o = self._orders.get(c2) if c2 else None
            if o is None:
                self.unknown_reports += 1
                continue
            o.cancel_pending = False
            self._advance(o, CANCELED, now)
        for o in self._open.values():
            if o.symbol == symbol:
                o.cancel_pending = False

    def on_cancel_all_error(self, symbol: str, status: int, code: int, msg: str) -> None:
        """Handle an error response to ``openOrders.cancelAll`` (-2011 when nothing was open)."""
        if status >= 500:
            self.unknown_outcomes += 1
            return
        self.cancel_rejects_by_code[code] += 1
        for o in self._open.values():
            if o.symbol == symbol:
                o.cancel_pending = False

    def reconcile_open(self, symbol: str, venue_open: Iterable[Mapping[str, Any]]) -> int:
        """Settle our open orders against an ``openOrders.status`` result.

        Orders we think open but the venue does not list, and that are acknowledged
        or older than the query, cannot be open: they are marked CANCELED (their
        fills, if any, arrive as executionReports). Returns how many were settled.
        """
        listed = {r.get("clientOrderId") for r in venue_open}
        listed_ids = {int(r["orderId"]) for r in venue_open if "orderId" in r}
        n = 0
        now = time.monotonic_ns()
        for o in list(self._open.values()):
            if o.symbol != symbol or o.client_order_id in listed or o.order_id in listed_ids:
                continue
            o.cancel_pending = False
            o.reason = o.reason or "not open on the venue"
            self._advance(o, CANCELED, now)
            n += 1
        return n

    # -- user data stream ----------------------------------------------------------------------------
    def on_execution_report(self, er: ExecutionReport) -> None:
        """Apply one executionReport (idempotent; any order of arrival)."""
        self.reports += 1
        now = time.monotonic_ns()
        o = None
        if er.orig_client_order_id:
            o = self._orders.get(er.orig_client_order_id)
        if o is None:
            o = self._orders.get(er.client_order_id)
        if o is None and er.order_id >= 0:
            cid = self._by_order_id.get((er.symbol, er.order_id))
            if cid is not None:
                o = self._orders.get(cid)
        if o is None:
            self.unknown_reports += 1
            if er.exec_type == "TRADE" and er.trade_id >= 0:
                # Not ours in this run (e.g. left over from a previous one): the account
                # position still changed.
                self._foreign_fill(er, now)
            return
        self._ack(o, er.order_id)
        if er.exec_type == "TRADE" and er.trade_id >= 0:
            self._apply_fill(o, er.trade_id, er.last_price, er.last_qty, er.commission,
                             er.commission_asset or "", er.is_maker, er.transaction_time_ms, now)
        status = _STATUS_MAP.get(er.status, er.status)
        if status == REJECTED and o.status not in TERMINAL_STATUSES:
            self.orders_rejected += 1
            self.rejects_by_code[0] += 1
            o.reason = er.reject_reason
        if status in TERMINAL_STATUSES:
            o.cancel_pending = False
        if status in _RANK:
            self._advance(o, status, now)

    # -- internals -------------------------------------------------------------------------------------
    def _ack(self, o: TrackedOrder, order_id: int) -> None:
        if order_id >= 0 and o.order_id < 0:
            o.order_id = order_id
            self._by_order_id[(o.symbol, order_id)] = o.client_order_id
        if not o.acked and o.status != REJECTED:
            o.acked = True
            self.orders_acked += 1

    def _advance(self, o: TrackedOrder, status: str, now: int) -> None:
        # Forward-only transition; FILLED wins once the fills cover the quantity. A FILLED
        # status reported before all fill reports arrived is taken as is (the order is no
        # longer open); the missing fills still count when they arrive.
        if o.filled_steps >= o.qty_steps:
            status = FILLED
        cur = o.status
        if cur == status:
            return
        if cur in TERMINAL_STATUSES:
            if status != FILLED:
                return
        elif _RANK[status] < _RANK[cur]:
            return
        self._set_status(o, status, now)

    def _set_status(self, o: TrackedOrder, status: str, now: int) -> None:
        o.status = status
        o.updated_ns = now
        if status in TERMINAL_STATUSES:
            if status == CANCELED:
                self.cancels += 1
            if self._open.pop(o.client_order_id, None) is not None:
                self._terminal.append(o.client_order_id)
                if len(self._terminal) > _KEEP_TERMINAL:
                    old = self._orders.pop(self._terminal.popleft(), None)
                    if old is not None:
                        self._by_order_id.pop((old.symbol, old.order_id), None)
        self.listener.on_order_update(OrderUpdate(
            o.symbol, o.client_order_id, o.order_id, o.side, status, o.price_ticks, o.qty_steps,
            o.filled_steps, o.error_code, o.reason, now))

    def _new_trade(self, symbol: str, trade_id: int) -> bool:
        key = (symbol, trade_id)
        if key in self._trade_ids:
            self.duplicate_fills += 1
            return False
        self._trade_ids[key] = None
        if len(self._trade_ids) > _KEEP_TRADE_IDS:
            del self._trade_ids[next(iter(self._trade_ids))]
        return True

    def _book_fill(self, symbol: str, side: str, price: Decimal, qty: Decimal, commission: Decimal,
                   asset: str) -> int:
        inst = self.instruments.get(symbol)
        p = self.positions.get(symbol)
        if p is None:
            p = self.positions[symbol] = Position(fees={})
        if side == BUY:
            p.qty += qty
            p.cash -= price * qty
        else:
            p.qty -= qty
            p.cash += price * qty
        if commission and asset:
            p.fees[asset] = p.fees.get(asset, _ZERO) + commission
        steps = 0
        if inst is not None:
            q, r = divmod(qty, inst.step_size)
            if r:
                self.off_grid_fills += 1
            steps = int(q)
            pq, pr = divmod(p.qty, inst.step_size)
            p.steps = int(pq)
        if side == BUY:
            p.bought_steps += steps
        else:
            p.sold_steps += steps
        return steps

    def _apply_fill(self, o: TrackedOrder, trade_id: int, price_s: str, qty_s: str, commission_s: str,
                    asset: str, is_maker: bool, ts_exchange_ms: int, now: int) -> None:
        if not self._new_trade(o.symbol, trade_id):
            return
        price, qty, commission = Decimal(price_s), Decimal(qty_s), Decimal(commission_s or "0")
        steps = self._book_fill(o.symbol, o.side, price, qty, commission, asset)
        inst = self.instruments.get(o.symbol)
        try:
            price_ticks = inst.price_to_ticks(price) if inst is not None else 0
        except ValueError:
            price_ticks = 0
            self.off_grid_fills += 1
        o.filled_steps += steps
        o.cum_quote += price * qty
        o.updated_ns = now
        self.fills += 1
        self.listener.on_fill(Fill(o.symbol, o.client_order_id, o.order_id, trade_id, o.side, price_ticks, steps,
                                   is_maker, commission, asset, ts_exchange_ms * 1_000_000, now))
        if o.filled_steps >= o.qty_steps:
            self._advance(o, FILLED, now)
        elif o.status in (PENDING_NEW, NEW):
            self._advance(o, PARTIALLY_FILLED, now)

    def _foreign_fill(self, er: ExecutionReport, now: int) -> None:
        if not self._new_trade(er.symbol, er.trade_id):
            return
        side = BUY if er.side == BUY else SELL
        self._book_fill(er.symbol, side, Decimal(er.last_price), Decimal(er.last_qty),
                        Decimal(er.commission or "0"), er.commission_asset or "")
        self.foreign_fills += 1


__all__ = ["DuplicateClientOrderId", "ExecutionReport", "OrderListener", "OrderTracker", "Position",
           "TrackedOrder", "split_symbol"]
