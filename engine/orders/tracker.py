"""Order state, fills, position and PnL, fed by WS API responses, executionReports and status queries.

State machine (:mod:`engine.orders.state`; statuses are Binance's ``X`` values,
venue-protocols.md 3.6, plus PENDING_NEW = sent, not yet answered, and UNKNOWN =
sent, outcome in doubt)::

    PENDING_NEW -> NEW -> PARTIALLY_FILLED -> FILLED
       |  ^         |            |
       |  |         +------------+--> CANCELED | EXPIRED      (terminal)
       |  resend (same id)
       v  |
     UNKNOWN --(order.status found)--> state from the venue
       |
       +--(not found after the venue's window)--> resent, or REJECTED "abandoned"
    PENDING_NEW | UNKNOWN --> REJECTED                         (terminal)

A status only moves forward; a terminal status is kept, except that an order
whose fills add up to its quantity is FILLED. So the tracker is **idempotent**
under duplicated reports and **order-insensitive** under reordered ones (a WS
API response and the executionReport of the same change race on the wire: the
venue may send either first, 3.6 / simulator ``events_before_response``).

Every order's state code and record live in a dedup ring keyed by client order
id (``ext.dedup.DedupRing``, or the pure-Python fallback): a second submit of an
id that is in the ring is refused locally (``local_duplicates``) and never sent.

Outcome in doubt (timeout, 5xx / -1006 / -1007, connection lost, the venue's
``-2010 "Duplicate order sent."``): the order becomes UNKNOWN (never REJECTED)
and is put on the in-doubt list; :class:`engine.orders.reconcile.OrderResolver`
asks the venue (``order.status`` by ``origClientOrderId``) and feeds the answer
back through :meth:`OrderTracker.on_status`.

Fills are deduplicated by ``(symbol, trade id)`` (executionReport ``t``,
FULL response ``fills[].tradeId``); the position (steps, and exact base
quantity) and the cash flow (exact ``Decimal`` quote) change **only** from
fills. When a status query shows an order executed more than the trade reports
received cover (reports lost with a dropped connection: the user-data stream
does not replay), the difference is booked as one *reconciled fill* (trade id
-1, quote amount from ``cummulativeQuoteQty``, commission unknown); a trade
report that arrives later for that part (its cumulative quantity ``z`` is within
the reconciled prefix) adds only its commission. Position and cash stay exact
under any order of reports and queries.

Cancels: an executionReport for a cancel carries the cancel's new client id in
``c`` and ours in ``C`` (section 5); the tracker looks orders up by ``C``, then
``c``, then the venue ``orderId``.

Counters: ``orders_sent``, ``orders_acked``, ``orders_rejected`` (+
``rejects_by_code``), ``fills``, ``duplicate_fills``, ``cancels_sent``,
``cancels`` (orders confirmed CANCELED), ``cancel_rejects_by_code``,
``duplicate_client_order_ids`` (local refusals + venue duplicates),
``local_duplicates``, ``venue_duplicates``, ``unknown_outcomes`` (5xx, 3.2),
``timeouts``, ``orders_unknown`` (entries into UNKNOWN), ``resolved``,
``resends``, ``abandoned``, ``adopted``, ``reconciled_fills``,
``reconciled_fill_qty``, ``covered_fills``, ``stale_responses``.
"""
from __future__ import annotations

import logging
import re
import time
from collections import Counter
from decimal import Decimal
from typing import Any, Iterable, Mapping

import msgspec
from msgspec import field

from engine.bus import (BUY, CANCELED, OPEN_STATUSES, PENDING_NEW, REJECTED, SELL, TERMINAL_STATUSES, UNKNOWN,
                        Fill, OrderUpdate)
from engine.instruments import Instrument
from engine.orders import state as st

log = logging.getLogger(__name__)

_ZERO = Decimal(0)
# Re-exported for callers of the old module.
DUPLICATE_ORDER_MSG = st.DUPLICATE_ORDER_MSG
# Client order ids kept in the dedup ring (state + record); the oldest are evicted first.
# 2**18 orders is days of quoting at a few orders per second, a few tens of MB.
DEFAULT_RING_CAPACITY = 1 << 18
# Trade ids remembered for deduplication.
_KEEP_TRADE_IDS = 1_000_000
# Venue order ids remembered for looking reports up by orderId.
_KEEP_ORDER_IDS = 1 << 18


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
    cum_qty: str = field(name="z", default="")
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
        Name of ``state``.
    state : int
        State code (:mod:`engine.orders.state`), also kept in the dedup ring.
    order_id : int
        Venue id, -1 until known.
    filled_steps : int
        Filled quantity, steps (floor of ``filled_qty``).
    filled_qty : Decimal
        Filled quantity, base currency (exact; trade reports + reconciled fills).
    cum_quote : Decimal
        Sum of ``price * qty`` of the fills, quote currency.
    qty : Decimal
        Order quantity, base currency.
    cancel_pending : bool
        An ``order.cancel`` / ``openOrders.cancelAll`` was sent and not answered.
    cancel_wanted : bool
        The strategy or the engine asked to cancel it: an in-doubt order found
        missing is abandoned, never resent; found open, it is cancelled.
    acked : bool
        The venue acknowledged the order (response 200, a report or a status query).
    error_code : int
    reason : str
    created_ns, updated_ns : int
        Monotonic ns.
    sent_ts_ms : int
        ``timestamp`` (ms, wall clock) of the last ``order.place`` written for it (4.4).
    resends : int
        Times it was sent again with the same client order id.
    need_query : bool
        Its state must be confirmed by ``order.status`` (in doubt).
    adopted : bool
        Taken over from the venue (not placed by this run).
    """

    client_order_id: str
    symbol: str
    side: str
    price_ticks: int
    qty_steps: int
    post_only: bool
    status: str = PENDING_NEW
    state: int = st.PENDING_NEW
    order_id: int = -1
    filled_steps: int = 0
    filled_qty: Decimal = _ZERO
    cum_quote: Decimal = _ZERO
    qty: Decimal = _ZERO
    cancel_pending: bool = False
    cancel_wanted: bool = False
    acked: bool = False
    error_code: int = 0
    reason: str = ""
    created_ns: int = 0
    updated_ns: int = 0
    sent_ts_ms: int = 0
    resends: int = 0
    need_query: bool = False
    adopted: bool = False
    # Fill accounting against status queries (see the module doc): trades booked one by one as
    # (cumulative qty after it, qty, quote), the reconciled prefix (qty, quote), and the highest
    # cumulative qty any report showed.
    trades: list = []
    floor_qty: Decimal = _ZERO
    floor_quote: Decimal = _ZERO
    max_z: Decimal = _ZERO
    # Resolver bookkeeping: wall-clock ms before which it is not queried again, and
    # whether a query is in flight.
    next_check_ms: int = 0
    querying: bool = False

    @property
    def remaining_steps(self) -> int:
        """Unfilled quantity, steps (0 once terminal)."""
        return 0 if self.state in st.TERMINAL else max(0, self.qty_steps - self.filled_steps)

    @property
    def is_open(self) -> bool:
        """True while PENDING_NEW, UNKNOWN, NEW or PARTIALLY_FILLED (it may be live on the venue)."""
        return self.state in st.OPEN


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


# A venue amount as Binance writes it: plain ASCII decimal, no sign, no exponent, bounded
# (< 10**20, at most 20 decimals). Anything else is unreadable (never NaN / Infinity / 1e400).
_AMOUNT = re.compile(r"[0-9]{1,20}(?:\.[0-9]{1,20})?", re.ASCII)


def parse_amount(v: Any) -> Decimal | None:
    """A venue amount string as an exact, finite, non-negative Decimal; None if unreadable."""
    if type(v) is not str or _AMOUNT.fullmatch(v) is None:
        return None
    return Decimal(v)


def _is_int(v: Any) -> bool:
    return type(v) is int


def _dec(v: Any) -> Decimal:
    # A venue decimal string (or number) as an exact Decimal; "" / None as 0.
    if v is None or v == "":
        return _ZERO
    return Decimal(v) if not isinstance(v, Decimal) else v


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
    ring : DedupRing, optional
        Holds each order's state and record by client order id; default
        :func:`engine.orders.state.make_ring` of ``ring_capacity``.
    ring_capacity : int
        Client order ids kept (oldest evicted first; open orders are also kept elsewhere).
    """

    def __init__(self, instruments: Mapping[str, Instrument], listener: Any = None,
                 assets: Mapping[str, tuple[str, str]] | None = None, ring: Any = None,
                 ring_capacity: int = DEFAULT_RING_CAPACITY) -> None:
        self.instruments = dict(instruments)
        self.listener = listener if listener is not None else OrderListener()
        self.assets = dict(assets) if assets else {}
        for s in self.instruments:
            if s not in self.assets:
                try:
                    self.assets[s] = split_symbol(s)
                except ValueError:
                    self.assets[s] = (s, "")
        self.ring = ring if ring is not None else st.make_ring(ring_capacity)
        self._open: dict[str, TrackedOrder] = {}
        self._in_doubt: dict[str, TrackedOrder] = {}
        # Terminal orders whose reports showed more executed than the fills received so far.
        self._incomplete: dict[str, TrackedOrder] = {}
        self._by_order_id: dict[tuple[str, int], str] = {}
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
        self.local_duplicates = 0
        self.venue_duplicates = 0
        self.unknown_outcomes = 0
        self.timeouts = 0
        self.orders_unknown = 0
        self.resolved = 0
        self.resends = 0
        self.abandoned = 0
        self.adopted = 0
        self.reconciled_fills = 0
        self.reconciled_fill_qty: dict[str, Decimal] = {}
        self.covered_fills = 0
        self.stale_responses = 0
        self.reports = 0
        self.unknown_reports = 0
        self.off_grid_fills = 0
        # Answers / reports with a result or amount of an unexpected shape (nothing applied).
        self.bad_responses = 0
        self.bad_reports = 0

    def __repr__(self) -> str:
        return (f"OrderTracker(open={len(self._open)}, in_doubt={len(self._in_doubt)}, sent={self.orders_sent}, "
                f"acked={self.orders_acked}, rejected={self.orders_rejected}, fills={self.fills}, "
                f"cancels={self.cancels})")

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
        """Return the order with this client id, or None (also once evicted from the ring)."""
        o = self.ring.get_payload(client_order_id)
        if o is None:
            o = self._open.get(client_order_id)
        return o

    def state_of(self, client_order_id: str) -> int:
        """Return the state code of an order as the dedup ring holds it (-1 if absent)."""
        return self.ring.get_state(client_order_id)

    def open_orders(self, symbol: str | None = None) -> list[TrackedOrder]:
        """Return open orders (PENDING_NEW, UNKNOWN, NEW, PARTIALLY_FILLED), oldest first."""
        if symbol is None:
            return list(self._open.values())
        return [o for o in self._open.values() if o.symbol == symbol]

    def open_count(self, symbol: str | None = None) -> int:
        """Number of open orders."""
        if symbol is None:
            return len(self._open)
        return sum(1 for o in self._open.values() if o.symbol == symbol)

    def in_doubt(self, symbol: str | None = None) -> list[TrackedOrder]:
        """Return the orders whose state must be confirmed by ``order.status`` (UNKNOWN or flagged)."""
        return [o for o in self._in_doubt.values() if symbol is None or o.symbol == symbol]

    def in_doubt_count(self) -> int:
        """Number of orders waiting for an ``order.status`` answer."""
        return len(self._in_doubt)

    def unknown_count(self) -> int:
        """Number of orders in state UNKNOWN."""
        return sum(1 for o in self._in_doubt.values() if o.state == st.UNKNOWN)

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
        valued at 0 (cash minus quote fees only). Commissions of reconciled fills
        are unknown until their trade reports arrive.
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
        """Record an order about to be written (PENDING_NEW) in the dedup ring.

        Raises
        ------
        DuplicateClientOrderId
            The id is in the ring (used before): refused, counted, never sent.
        """
        now = time.monotonic_ns()
        inst = self.instruments.get(symbol)
        qty = inst.step_size * qty_steps if inst is not None else _ZERO
        o = TrackedOrder(client_order_id, symbol, side, price_ticks, qty_steps, post_only, qty=qty,
                         created_ns=now, updated_ns=now)
        refused = not self.ring.insert(client_order_id, st.PENDING_NEW, o)
        if not refused and client_order_id in self._open:
            # Evicted from the ring while still open (ring too small): keep the open record.
            old = self._open[client_order_id]
            self.ring.set_payload(client_order_id, old)
            self.ring.set_state(client_order_id, old.state)
            refused = True
        if refused:
            self.local_duplicates += 1
            self.duplicate_client_order_ids += 1
            raise DuplicateClientOrderId(f"client order id {client_order_id!r} reused")
        self._open[client_order_id] = o
        self.orders_sent += 1
        return o

    def on_place_written(self, client_order_id: str, timestamp_ms: int) -> None:
        """Record the ``timestamp`` (ms) of the ``order.place`` just written (the venue's window, 4.4)."""
        o = self.get(client_order_id)
        if o is not None:
            o.sent_ts_ms = timestamp_ms

    def on_place_not_sent(self, client_order_id: str, reason: str) -> None:
        """The order could not be written: drop it as REJECTED (code 0), not counted as sent."""
        o = self.get(client_order_id)
        if o is None:
            return
        if o.resends:
            # A resend that could not be written leaves the order in doubt, as before it.
            self._to_unknown(o, reason)
            return
        self.orders_sent -= 1
        self.orders_not_sent += 1
        o.reason = reason
        self._set_state(o, st.REJECTED, time.monotonic_ns())

    def on_place_resent(self, client_order_id: str) -> TrackedOrder | None:
        """Record that an UNKNOWN order is sent again **with the same client order id** (PENDING_NEW)."""
        o = self.get(client_order_id)
        if o is None or o.state != st.UNKNOWN:
            return None
        o.resends += 1
        self.resends += 1
        o.need_query = False
        self._in_doubt.pop(client_order_id, None)
        self._set_state(o, st.to_resent(o.state), time.monotonic_ns())
        return o

    def on_cancel_sent(self, client_order_id: str) -> None:
        """Record an ``order.cancel`` written for this order."""
        self.cancels_sent += 1
        o = self.get(client_order_id)
        if o is not None:
            o.cancel_pending = True
            o.cancel_wanted = True

    def on_cancel_wanted(self, client_order_id: str) -> None:
        """Record that an in-doubt order is no longer wanted (the resolver cancels or abandons it)."""
        o = self.get(client_order_id)
        if o is not None and o.is_open:
            o.cancel_wanted = True
            o.cancel_pending = True

    def on_cancel_all_sent(self, symbol: str, include_unknown: bool = True) -> None:
        """Record an ``openOrders.cancelAll`` (WS API or REST) written for ``symbol``.

        With ``include_unknown`` False (the engine's fail-closed cancel-all after a
        disconnect) orders in doubt are not marked unwanted: the cancel-all removes
        them from the venue if they are there, and if they never reached it the
        resolver may still send them again with the same id once the venue's window
        has passed (:mod:`engine.orders.reconcile`), as before the disconnect.
        """
        self.cancel_all_sent += 1
        for o in self._open.values():
            if o.symbol == symbol and (include_unknown or o.state != st.UNKNOWN):
                o.cancel_pending = True
                o.cancel_wanted = True

    # -- no answer -----------------------------------------------------------------------------------
    def on_place_timeout(self, client_order_id: str, attempt: int | None = None) -> None:
        """No response to ``order.place`` in time: UNKNOWN, never failed (3.2, 6.1)."""
        o = self.get(client_order_id)
        if o is None or (attempt is not None and attempt != o.resends):
            return
        self.timeouts += 1
        self._to_unknown(o, "no response in time")

    def on_place_unknown(self, client_order_id: str, reason: str, attempt: int | None = None) -> None:
        """The outcome of an ``order.place`` is unknown (connection lost before its response)."""
        o = self.get(client_order_id)
        if o is None or (attempt is not None and attempt != o.resends):
            return
        self.unknown_outcomes += 1
        self._to_unknown(o, reason)

    def on_cancel_timeout(self, client_order_id: str) -> None:
        """No response to ``order.cancel`` in time (or the connection was lost): confirm by query."""
        o = self.get(client_order_id)
        if o is None:
            return
        self.timeouts += 1
        self.mark_need_query(o)

    def on_cancel_all_timeout(self, symbol: str) -> None:
        """No response to ``openOrders.cancelAll``: confirm every open order of ``symbol`` by query."""
        self.timeouts += 1
        for o in list(self._open.values()):
            if o.symbol == symbol:
                self.mark_need_query(o)

    def mark_need_query(self, o: TrackedOrder) -> None:
        """Put an order on the in-doubt list (its state is confirmed by ``order.status``)."""
        o.need_query = True
        self._in_doubt[o.client_order_id] = o

    def drop_doubt(self, client_order_id: str) -> None:
        """Take a known (acknowledged) order off the in-doubt list without a venue answer."""
        o = self._in_doubt.pop(client_order_id, None)
        if o is not None:
            o.need_query = False

    def on_connection_lost(self, symbol: str | None = None) -> int:
        """The user-data stream was interrupted: reports may be lost.

        Every open order, and every closed one whose fills are incomplete, is put
        on the in-doubt list. Returns how many.
        """
        n = 0
        for o in list(self._open.values()) + list(self._incomplete.values()):
            if symbol is None or o.symbol == symbol:
                self.mark_need_query(o)
                n += 1
        return n

    # -- WS API responses --------------------------------------------------------------------------
    def on_place_ack(self, client_order_id: str, result: Any, attempt: int | None = None) -> None:
        """Handle a 200 response to ``order.place`` (ACK, RESULT or FULL body, 3.5).

        The body is read completely before anything changes; a body of an unexpected
        shape is no answer (``bad_responses``): the order becomes UNKNOWN, as on a
        timeout (``attempt`` as in :meth:`on_place_unknown`).
        """
        o = self.get(client_order_id)
        if o is None:
            self.unknown_reports += 1
            return
        ack = _read_place_ack(result)
        if ack is None:
            self.bad_responses += 1
            self.on_place_unknown(client_order_id, "unreadable order.place response", attempt)
            return
        order_id, transact_ms, x, fills = ack
        now = time.monotonic_ns()
        self._ack(o, order_id)
        for trade_id, price, qty, commission, asset in fills:
            self._apply_trade(o, trade_id, price, qty, None, commission, asset, False, transact_ms, now)
        self._advance(o, st.code_of(x) if x is not None else st.NEW, now)

    def on_place_error(self, client_order_id: str, status: int, code: int, msg: str,
                       attempt: int | None = None) -> str:
        """Handle an error response to ``order.place``; return its class (:func:`~engine.orders.state.classify_place_error`).

        * UNKNOWN (5xx, -1006, -1007; 3.2, 6.1): the order becomes UNKNOWN and is queried;
        * DUPLICATE (-2010 "Duplicate order sent.", -4116; section 5): an open order
          with this id exists on the venue -- ours, since ids are never reused -- so it
          is adopted by querying it; not a failure;
        * REJECTED (other 4xx): nothing was placed.

        An error for an earlier attempt of a resent order (``attempt`` older than
        the order's ``resends``) is stale: it cannot reject the newer attempt.
        """
        o = self.get(client_order_id)
        outcome = st.classify_place_error(status, code, msg)
        self.rejects_by_code[code] += 1
        if o is None:
            self.unknown_reports += 1
            return outcome
        if attempt is not None and attempt != o.resends:
            self.stale_responses += 1
            return outcome
        if outcome == st.OUTCOME_UNKNOWN:
            self.unknown_outcomes += 1
            self._to_unknown(o, f"{code}: {msg}")
        elif outcome == st.OUTCOME_DUPLICATE:
            self.venue_duplicates += 1
            self.duplicate_client_order_ids += 1
            self._to_unknown(o, f"{code}: {msg}")
            self.mark_need_query(o)
        elif o.state in (st.PENDING_NEW, st.UNKNOWN) and not o.acked:
            o.error_code = code
            o.reason = msg
            self.orders_rejected += 1
            self._set_state(o, st.REJECTED, time.monotonic_ns())
        return outcome

    def on_cancel_ack(self, client_order_id: str, result: Mapping[str, Any] | None = None) -> None:
        """Handle a 200 response to ``order.cancel`` (3.5): the order is CANCELED."""
        o = self.get(client_order_id)
        if o is None:
            self.unknown_reports += 1
            return
        if result is not None and not (isinstance(result, Mapping) and _is_int(result.get("orderId", -1))):
            # Unreadable: no answer. The cancel is still pending; its outcome is confirmed by query.
            self.bad_responses += 1
            self.mark_need_query(o)
            return
        o.cancel_pending = False
        if result is not None and "orderId" in result:
            self._ack(o, result["orderId"])
        self._advance(o, st.CANCELED, time.monotonic_ns())

    def on_cancel_error(self, client_order_id: str, status: int, code: int, msg: str) -> None:
        """Handle an error response to ``order.cancel``.

        5xx: the cancel's outcome is unknown; -2011 "Unknown order sent.": the
        order is not open on the venue (6.1). Either way its state is confirmed by
        ``order.status`` unless it is already known to be closed.
        """
        o = self.get(client_order_id)
        if st.classify_cancel_error(status, code, msg) == st.OUTCOME_UNKNOWN:
            self.unknown_outcomes += 1
            if o is not None:
                self.mark_need_query(o)
            return
        self.cancel_rejects_by_code[code] += 1
        if o is not None:
            o.cancel_pending = False
            if o.is_open:
                self.mark_need_query(o)

    def on_cancel_all_ack(self, symbol: str, results: Iterable[Mapping[str, Any]]) -> None:
        """Handle a 200 response to ``openOrders.cancelAll``: each report names ``origClientOrderId``.

        A result of an unexpected shape (not a list of reports) is no answer
        (``bad_responses``): the symbol's open orders are confirmed by query.
        """
        if not _cancel_reports_ok(results):
            self.bad_responses += 1
            for o in list(self._open.values()):
                if o.symbol == symbol:
                    self.mark_need_query(o)
            return
        now = time.monotonic_ns()
        for r in results:
            cid = r.get("origClientOrderId") or r.get("clientOrderId")
            o = self.get(cid) if cid else None
            if o is None and "orderId" in r:
                c2 = self._by_order_id.get((symbol, r["orderId"]))
                o = self.get(c2) if c2 else None
            if o is None:
                self.unknown_reports += 1
                continue
            o.cancel_pending = False
            if "orderId" in r:
                self._ack(o, r["orderId"])
            self._advance(o, st.CANCELED, now)
        for o in list(self._open.values()):
            if o.symbol == symbol:
                o.cancel_pending = False
                if o.state == st.UNKNOWN:
                    # Not among the cancelled: the venue had no such open order (now).
                    self.mark_need_query(o)

    def on_cancel_all_error(self, symbol: str, status: int, code: int, msg: str) -> None:
        """Handle an error response to ``openOrders.cancelAll`` (-2011 when nothing was open)."""
        if status >= 500:
            self.unknown_outcomes += 1
            for o in list(self._open.values()):
                if o.symbol == symbol:
                    self.mark_need_query(o)
            return
        self.cancel_rejects_by_code[code] += 1
        for o in list(self._open.values()):
            if o.symbol == symbol:
                o.cancel_pending = False
                if code == st.UNKNOWN_ORDER_CANCEL and o.state != st.PENDING_NEW:
                    # The venue has nothing open: confirm what became of it.
                    self.mark_need_query(o)

    # -- status queries (order.status, openOrders.status) ---------------------------------------------
    def on_status(self, client_order_id: str, result: Mapping[str, Any]) -> TrackedOrder | None:
        """Apply a venue order object (``order.status`` / ``openOrders.status`` entry, 3.5).

        The venue's answer settles an order in doubt: its status is applied by the
        forward-only rule, its ``executedQty`` / ``cummulativeQuoteQty`` are reconciled
        with the fills received (a missing part is booked as a reconciled fill).
        """
        o = self.get(client_order_id)
        if o is None:
            return None
        now = time.monotonic_ns()
        if o.state == st.UNKNOWN:
            self.resolved += 1
        if "orderId" in result:
            self._ack(o, int(result["orderId"]))
        elif not o.acked:
            o.acked = True
            self.orders_acked += 1
        self._observe_executed(o, _dec(result.get("executedQty")), _dec(result.get("cummulativeQuoteQty")), now)
        o.need_query = False
        o.querying = False
        self._in_doubt.pop(o.client_order_id, None)
        x = result.get("status")
        code = st.code_of(x) if isinstance(x, str) else st.NEW
        self._advance(o, code if code >= 0 else st.NEW, now)
        return o

    def adopt(self, result: Mapping[str, Any]) -> TrackedOrder | None:
        """Take over an order the venue lists (``openOrders.status`` entry) that is not in the ring.

        Used for our own orders of an earlier run (same instance prefix) found at
        start or after a reconnect. Its fills before now are not ours to book: the
        record starts at the venue's ``executedQty``. Returns the new record, or
        None if the id is already tracked or the symbol is not traded.
        """
        cid = result.get("clientOrderId")
        symbol = result.get("symbol")
        inst = self.instruments.get(symbol) if isinstance(symbol, str) else None
        if not cid or inst is None or self.get(cid) is not None:
            return None
        now = time.monotonic_ns()
        try:
            price_ticks = inst.price_to_ticks(_dec(result.get("price")))
        except ValueError:
            price_ticks = 0
        qty = _dec(result.get("origQty"))
        executed = _dec(result.get("executedQty"))
        side = BUY if result.get("side") == BUY else SELL
        o = TrackedOrder(cid, symbol, side, price_ticks, int(qty // inst.step_size),
                         result.get("type") == "LIMIT_MAKER", qty=qty, created_ns=now, updated_ns=now,
                         acked=True, adopted=True, filled_qty=executed,
                         filled_steps=int(executed // inst.step_size), floor_qty=executed,
                         floor_quote=_dec(result.get("cummulativeQuoteQty")), max_z=executed)
        if not self.ring.insert(cid, st.PENDING_NEW, o):
            return None
        self._open[cid] = o
        self.adopted += 1
        if "orderId" in result:
            o.order_id = int(result["orderId"])
            self._remember_order_id(o)
        x = result.get("status")
        code = st.code_of(x) if isinstance(x, str) else st.NEW
        self._advance(o, code if code >= 0 else st.NEW, now)
        return o

    def abandon(self, client_order_id: str, reason: str, code: int = st.NO_SUCH_ORDER) -> None:
        """Close an UNKNOWN order the venue does not have (confirmed after its window): REJECTED, not resent."""
        o = self.get(client_order_id)
        if o is None or o.state != st.UNKNOWN:
            return
        self.abandoned += 1
        o.error_code = code
        o.reason = reason
        o.need_query = False
        o.querying = False
        o.cancel_pending = False
        self._in_doubt.pop(client_order_id, None)
        self._set_state(o, st.REJECTED, time.monotonic_ns())

    def reconcile_open(self, symbol: str, venue_open: Iterable[Mapping[str, Any]]) -> int:
        """Settle our open orders against an ``openOrders.status`` result (inference, last resort).

        Orders we think open but the venue does not list cannot be open: they are
        marked CANCELED (their fills, if any, arrive as executionReports). The
        engine prefers ``order.status`` per order (:mod:`engine.orders.reconcile`);
        this is its fallback at shutdown. Returns how many were settled.
        """
        venue_open = list(venue_open)
        listed = {r.get("clientOrderId") for r in venue_open}
        listed_ids = {int(r["orderId"]) for r in venue_open if "orderId" in r}
        n = 0
        now = time.monotonic_ns()
        for o in list(self._open.values()):
            if o.symbol != symbol or o.client_order_id in listed or o.order_id in listed_ids:
                continue
            if o.state == st.UNKNOWN:
                # Never placed, or placed and closed (maybe filled): only order.status can tell.
                continue
            o.cancel_pending = False
            o.reason = o.reason or "not open on the venue"
            o.need_query = False
            self._in_doubt.pop(o.client_order_id, None)
            self._set_state(o, st.CANCELED, now)
            n += 1
        return n

    # -- user data stream ----------------------------------------------------------------------------
    def on_execution_report(self, er: ExecutionReport) -> None:
        """Apply one executionReport (idempotent; any order of arrival).

        Its amounts are read first: a report with an unreadable, non-finite or
        out-of-range amount is counted (``bad_reports``) and changes nothing.
        """
        self.reports += 1
        last_qty, last_price = parse_amount(er.last_qty), parse_amount(er.last_price)
        commission = parse_amount(er.commission or "0")
        z = parse_amount(er.cum_qty) if er.cum_qty else None
        if (last_qty is None or last_price is None or commission is None or (er.cum_qty and z is None)
                or parse_amount(er.qty) is None or parse_amount(er.price) is None):
            self.bad_reports += 1
            log.warning("unreadable executionReport amounts for %s: l=%r z=%r L=%r n=%r q=%r p=%r",
                        er.client_order_id, er.last_qty, er.cum_qty, er.last_price, er.commission, er.qty,
                        er.price)
            return
        now = time.monotonic_ns()
        o = None
        if er.orig_client_order_id:
            o = self.get(er.orig_client_order_id)
        if o is None:
            o = self.get(er.client_order_id)
        if o is None and er.order_id >= 0:
            cid = self._by_order_id.get((er.symbol, er.order_id))
            if cid is not None:
                o = self.get(cid)
        if o is None:
            self.unknown_reports += 1
            if er.exec_type == "TRADE" and er.trade_id >= 0:
                # Not ours in this run (e.g. left over from a previous one): the account
                # position still changed.
                self._foreign_fill(er, last_price, last_qty, commission)
            return
        self._ack(o, er.order_id)
        if z is not None and z > o.max_z:
            o.max_z = z
        if er.exec_type == "TRADE" and er.trade_id >= 0:
            self._apply_trade(o, er.trade_id, last_price, last_qty, z, commission,
                              er.commission_asset or "", er.is_maker, er.transaction_time_ms, now)
        code = st.code_of(er.status)
        if code == st.REJECTED and o.state not in st.TERMINAL:
            self.orders_rejected += 1
            self.rejects_by_code[0] += 1
            o.reason = er.reject_reason
        if code in st.TERMINAL:
            o.cancel_pending = False
        if code >= 0:
            self._advance(o, code, now)
        self._check_complete(o)

    # -- internals -------------------------------------------------------------------------------------
    def _ack(self, o: TrackedOrder, order_id: int) -> None:
        if order_id >= 0 and o.order_id < 0:
            o.order_id = order_id
            self._remember_order_id(o)
        if not o.acked and o.state != st.REJECTED:
            o.acked = True
            self.orders_acked += 1

    def _remember_order_id(self, o: TrackedOrder) -> None:
        d = self._by_order_id
        d[(o.symbol, o.order_id)] = o.client_order_id
        if len(d) > _KEEP_ORDER_IDS:
            del d[next(iter(d))]

    def _to_unknown(self, o: TrackedOrder, reason: str) -> None:
        new = st.to_unknown(o.state)
        if new == o.state:
            return
        self.orders_unknown += 1
        o.reason = reason
        self._in_doubt[o.client_order_id] = o
        self._set_state(o, new, time.monotonic_ns())

    def _advance(self, o: TrackedOrder, observed: int, now: int) -> None:
        # Forward-only transition (engine.orders.state.transition); FILLED wins once the fills
        # cover the quantity. A FILLED status reported before all fill reports arrived is taken
        # as is (the order is no longer open); the missing fills still count when they arrive.
        new = st.transition(o.state, observed, o.qty > 0 and o.filled_qty >= o.qty)
        if new != o.state:
            if o.state == st.UNKNOWN and not o.need_query:
                # Venue evidence settled the doubt (a late response or a report).
                if self._in_doubt.pop(o.client_order_id, None) is not None:
                    self.resolved += 1
            self._set_state(o, new, now)

    def _set_state(self, o: TrackedOrder, code: int, now: int) -> None:
        o.state = code
        o.status = st.NAMES[code]
        o.updated_ns = now
        self.ring.set_state(o.client_order_id, code)
        if code in st.TERMINAL:
            if code == st.CANCELED:
                self.cancels += 1
            self._open.pop(o.client_order_id, None)
            o.cancel_pending = False
            if not o.need_query:
                self._in_doubt.pop(o.client_order_id, None)
            self._check_complete(o)
        self.listener.on_order_update(OrderUpdate(
            o.symbol, o.client_order_id, o.order_id, o.side, o.status, o.price_ticks, o.qty_steps,
            o.filled_steps, o.error_code, o.reason, now))

    def _check_complete(self, o: TrackedOrder) -> None:
        # Closed orders whose reports showed more executed than booked: re-query them if the
        # user-data stream is interrupted before the missing fills arrive.
        if o.state in st.TERMINAL and (o.max_z > o.filled_qty or (o.state == st.FILLED and o.filled_qty < o.qty)):
            self._incomplete[o.client_order_id] = o
        else:
            self._incomplete.pop(o.client_order_id, None)

    def _new_trade(self, symbol: str, trade_id: int) -> bool:
        key = (symbol, trade_id)
        if key in self._trade_ids:
            self.duplicate_fills += 1
            return False
        self._trade_ids[key] = None
        if len(self._trade_ids) > _KEEP_TRADE_IDS:
            del self._trade_ids[next(iter(self._trade_ids))]
        return True

    def _book(self, symbol: str, side: str, qty: Decimal, quote: Decimal, commission: Decimal,
              asset: str) -> int:
        # Move position and cash by one fill (qty base, quote = price * qty); return its steps.
        inst = self.instruments.get(symbol)
        p = self.positions.get(symbol)
        if p is None:
            p = self.positions[symbol] = Position(fees={})
        if side == BUY:
            p.qty += qty
            p.cash -= quote
        else:
            p.qty -= qty
            p.cash += quote
        if commission and asset:
            p.fees[asset] = p.fees.get(asset, _ZERO) + commission
        steps = 0
        if inst is not None:
            q, r = divmod(qty, inst.step_size)
            if r:
                self.off_grid_fills += 1
            steps = int(q)
            p.steps = int(p.qty // inst.step_size) if p.qty >= 0 else -int(-p.qty // inst.step_size)
        if side == BUY:
            p.bought_steps += steps
        else:
            p.sold_steps += steps
        return steps

    def _add_fee(self, symbol: str, commission: Decimal, asset: str) -> None:
        if commission and asset:
            p = self.positions.setdefault(symbol, Position(fees={}))
            p.fees[asset] = p.fees.get(asset, _ZERO) + commission

    def _credit_order(self, o: TrackedOrder, qty: Decimal, quote: Decimal, now: int) -> None:
        inst = self.instruments.get(o.symbol)
        o.filled_qty += qty
        o.cum_quote += quote
        o.filled_steps = int(o.filled_qty // inst.step_size) if inst is not None else 0
        o.updated_ns = now

    def _apply_trade(self, o: TrackedOrder, trade_id: int, price: Decimal, qty: Decimal, z: Decimal | None,
                     commission: Decimal, asset: str, is_maker: bool, ts_exchange_ms: int, now: int) -> None:
        # Amounts already read and checked (parse_amount).
        if not self._new_trade(o.symbol, trade_id):
            return
        if z is None:
            # FULL response fills: the order's first executions, in order.
            z = o.filled_qty + qty
        if z <= o.floor_qty:
            # Already in the position through a reconciled fill (a status query counted it):
            # only its commission is new.
            self._add_fee(o.symbol, commission, asset)
            self.covered_fills += 1
            return
        if z - qty < o.floor_qty:
            # The trade straddles the floor: its part up to the floor is already booked.
            qty = z - o.floor_qty
            self.covered_fills += 1
        quote = price * qty
        self._book(o.symbol, o.side, qty, quote, commission, asset)
        o.trades.append((z, qty, quote))
        self._credit_order(o, qty, quote, now)
        inst = self.instruments.get(o.symbol)
        try:
            price_ticks = inst.price_to_ticks(price) if inst is not None else 0
        except ValueError:
            price_ticks = 0
            self.off_grid_fills += 1
        steps = int(qty // inst.step_size) if inst is not None else 0
        self.fills += 1
        self.listener.on_fill(Fill(o.symbol, o.client_order_id, o.order_id, trade_id, o.side, price_ticks, steps,
                                   is_maker, commission, asset, ts_exchange_ms * 1_000_000, now))
        if o.qty > 0 and o.filled_qty >= o.qty:
            self._advance(o, st.FILLED, now)
        elif o.state in (st.PENDING_NEW, st.UNKNOWN, st.NEW):
            self._advance(o, st.PARTIALLY_FILLED, now)
        self._check_complete(o)

    def _observe_executed(self, o: TrackedOrder, executed: Decimal, cum_quote: Decimal, now: int) -> None:
        # A status query says the order executed `executed` (quote `cum_quote`) so far. The
        # position holds floor + the trades booked one by one above the floor; move the floor
        # up and book what no trade report covered as one reconciled fill.
        if executed > o.max_z:
            o.max_z = executed
        if executed <= o.floor_qty:
            return
        lo = o.floor_qty
        in_q = in_quote = _ZERO
        for z, q, quote in o.trades:
            # The part of each booked trade [z - q, z] that lies in (lo, executed].
            part = min(z, executed) - max(z - q, lo)
            if part > 0:
                in_q += part
                in_quote += quote if part == q else quote * part / q
        gap_q = executed - lo - in_q
        gap_quote = cum_quote - o.floor_quote - in_quote
        o.floor_qty = executed
        o.floor_quote = cum_quote
        if gap_q <= 0:
            return
        self._book(o.symbol, o.side, gap_q, gap_quote, _ZERO, "")
        self._credit_order(o, gap_q, gap_quote, now)
        self.fills += 1
        self.reconciled_fills += 1
        self.reconciled_fill_qty[o.symbol] = self.reconciled_fill_qty.get(o.symbol, _ZERO) + gap_q
        inst = self.instruments.get(o.symbol)
        steps = int(gap_q // inst.step_size) if inst is not None else 0
        log.info("reconciled fill of %s: %s at avg %s (trade reports missing)", o.client_order_id, gap_q,
                 gap_quote / gap_q)
        self.listener.on_fill(Fill(o.symbol, o.client_order_id, o.order_id, -1, o.side, 0, steps, False,
                                   _ZERO, "", 0, now))
        if o.qty > 0 and o.filled_qty >= o.qty:
            self._advance(o, st.FILLED, now)
        elif o.state in (st.PENDING_NEW, st.UNKNOWN, st.NEW):
            self._advance(o, st.PARTIALLY_FILLED, now)

    def _foreign_fill(self, er: ExecutionReport, price: Decimal, qty: Decimal, commission: Decimal) -> None:
        if not self._new_trade(er.symbol, er.trade_id):
            return
        side = BUY if er.side == BUY else SELL
        self._book(er.symbol, side, qty, price * qty, commission, er.commission_asset or "")
        self.foreign_fills += 1


def _read_place_ack(result: Any) -> tuple[int, int, str | None, list] | None:
    # An order.place body (3.5) as (orderId or -1, transactTime, status or None, fills as
    # (tradeId, price, qty, commission, asset)); None if any part has an unexpected shape.
    if not isinstance(result, Mapping):
        return None
    order_id, transact_ms, x = result.get("orderId", -1), result.get("transactTime", 0), result.get("status")
    if not (_is_int(order_id) and _is_int(transact_ms) and (x is None or isinstance(x, str))):
        return None
    raw = result.get("fills")
    if raw is None:
        raw = []
    if not isinstance(raw, list):
        return None
    fills = []
    for f in raw:
        if not isinstance(f, Mapping):
            return None
        trade_id, asset = f.get("tradeId"), f.get("commissionAsset")
        price, qty, commission = parse_amount(f.get("price")), parse_amount(f.get("qty")), \
            parse_amount(f.get("commission", "0"))
        if (not _is_int(trade_id) or price is None or qty is None or commission is None
                or not (asset is None or isinstance(asset, str))):
            return None
        fills.append((trade_id, price, qty, commission, asset or ""))
    return order_id, transact_ms, x, fills


def _cancel_reports_ok(results: Any) -> bool:
    # An openOrders.cancelAll result: a list of objects whose ids have the venue's types.
    if not isinstance(results, (list, tuple)):
        return False
    for r in results:
        if not isinstance(r, Mapping) or not _is_int(r.get("orderId", -1)):
            return False
        for k in ("origClientOrderId", "clientOrderId"):
            if not (r.get(k) is None or isinstance(r.get(k), str)):
                return False
    return True


__all__ = ["DEFAULT_RING_CAPACITY", "DUPLICATE_ORDER_MSG", "DuplicateClientOrderId", "ExecutionReport",
           "OrderListener", "OrderTracker", "Position", "TrackedOrder", "parse_amount", "split_symbol"]
