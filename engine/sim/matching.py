"""Matching of our orders against a market we cannot move.

The market (recorded or synthetic) is read through :class:`~engine.sim.market_view.MarketView`
and is never changed by our orders. This module decides *when and how much* of
our orders fill; account effects (balances, order status, events) belong to
:mod:`engine.sim.exchange`.

Queue model (all quantities in base currency, exact ``Decimal``):

* A resting limit order joins the **back** of the queue at its price:
  ``queue_ahead = market.qty_at(side, price)`` when it arrives.
* A market trade at price ``P`` whose aggressor hits our side
  (``buyer_is_maker=True``: the aggressor sold, so it hits bids; ``False``:
  it bought, so it lifts asks) consumes its quantity **once**, best price first:

  - our orders at a price strictly better than ``P`` (bid > P, ask < P) had
    their queue passed: they fill up to the remaining trade quantity, in price
    then time priority;
  - at ``P`` itself the trade first consumes the market quantity ahead of our
    orders, then our orders in time priority, then the market quantity behind
    them (which does not fill us).

* When the displayed quantity at our price drops below ``queue_ahead``
  (cancellations ahead of us), ``queue_ahead`` is clamped down to it.
* A marketable order walks the displayed opposite levels (taker). Liquidity we
  took is remembered per level until the next depth update of the symbol, so
  two orders in a row cannot take the same displayed quantity twice.

Known limits: displayed liquidity that crosses our resting price without a
trade print (e.g. a new ask below our bid) does not fill us; our own orders
never trade against each other (the market does not contain them).

Fees: :class:`FeeSchedule`, maker and taker rates as fractions of the notional,
commission always charged in the **quote** asset (a simulator simplification;
Binance charges a buyer in the base asset unless BNB fees are enabled).
"""
from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_DOWN, ROUND_HALF_UP, Decimal
from typing import Iterator, NamedTuple

from sortedcontainers import SortedDict

from engine.sim.market_view import BUY, SELL, MarketView

_ZERO = Decimal(0)
# Binance spot amounts carry 8 decimals (quoteAssetPrecision / quoteCommissionPrecision).
_COMMISSION_QUANTUM = Decimal("0.00000001")
# MarketView.depth() caps at 5000 levels per side (venue-protocols.md 1.3).
_MAX_DEPTH = 5000


@dataclass(frozen=True, slots=True)
class FeeSchedule:
    """Maker and taker fee rates, charged in the quote asset.

    Attributes
    ----------
    maker : Decimal
        Fraction of the notional charged when our resting order is hit (0.001 = 10 bp).
    taker : Decimal
        Fraction of the notional charged when our order takes liquidity.
    """

    maker: Decimal = Decimal("0.001")
    taker: Decimal = Decimal("0.001")

    def commission(self, notional: Decimal, is_maker: bool) -> Decimal:
        """Return the commission on ``notional`` (quote currency), rounded half-up to 8 decimals."""
        rate = self.maker if is_maker else self.taker
        return (notional * rate).quantize(_COMMISSION_QUANTUM, rounding=ROUND_HALF_UP)

    @property
    def max_rate(self) -> Decimal:
        """The larger of the two rates (used to reserve funds for fees)."""
        return max(self.maker, self.taker)


@dataclass(slots=True, eq=False)
class RestingOrder:
    """One of our limit orders resting in the simulated queue.

    Attributes
    ----------
    order_id : int
    side : str
        ``"BUY"`` or ``"SELL"``.
    price : Decimal
        Limit price, quote currency.
    remaining : Decimal
        Unfilled quantity, base currency.
    queue_ahead : Decimal
        Market quantity ahead of this order at its price, base currency.
    seq : int
        Arrival sequence (time priority).
    """

    order_id: int
    side: str
    price: Decimal
    remaining: Decimal
    queue_ahead: Decimal
    seq: int


class Fill(NamedTuple):
    """One execution of our order.

    ``order_id`` is 0 for taker sweep fills (the caller knows the order).
    ``price`` is quote currency, ``qty`` base currency.
    """

    order_id: int
    price: Decimal
    qty: Decimal


def opposite(side: str) -> str:
    """Return the other side."""
    return SELL if side == BUY else BUY


class SymbolMatcher:
    """Queue positions and fills of our orders on one symbol.

    Parameters
    ----------
    symbol : str
    market : MarketView
    """

    def __init__(self, symbol: str, market: MarketView) -> None:
        self.symbol = symbol
        self._market = market
        self._orders: dict[int, RestingOrder] = {}
        # price -> list of our orders in time priority, one map per side.
        self._levels: dict[str, SortedDict] = {BUY: SortedDict(), SELL: SortedDict()}
        # Displayed liquidity we already took, per (liquidity side, price), until the next book update.
        self._taken: dict[tuple[str, Decimal], Decimal] = {}
        self._seq = 0

    # -- resting orders --------------------------------------------------------------
    def rest(self, order_id: int, side: str, price: Decimal, qty: Decimal) -> RestingOrder:
        """Put an order at the back of the queue at ``price``.

        The queue ahead is the displayed market quantity on the order's own side
        at ``price`` now.
        """
        self._seq += 1
        ahead = self._market.qty_at(self.symbol, side, price)
        o = RestingOrder(order_id, side, price, qty, ahead, self._seq)
        self._orders[order_id] = o
        self._levels[side].setdefault(price, []).append(o)
        return o

    def remove(self, order_id: int) -> RestingOrder | None:
        """Take an order out of the queue (cancel); return it, or ``None`` if not resting."""
        o = self._orders.pop(order_id, None)
        if o is not None:
            self._unlink(o)
        return o

    def get(self, order_id: int) -> RestingOrder | None:
        """Return the resting order, or ``None``."""
        return self._orders.get(order_id)

    def orders(self) -> Iterator[RestingOrder]:
        """Iterate over resting orders (no particular order)."""
        return iter(list(self._orders.values()))

    # -- market events ----------------------------------------------------------------
    def on_trade(self, price: Decimal, qty: Decimal, buyer_is_maker: bool) -> list[Fill]:
        """Apply one market trade to our resting orders and return our fills.

        The trade quantity is consumed once across all our orders. Fully filled
        orders leave the queue.
        """
        side = BUY if buyer_is_maker else SELL
        book = self._levels[side]
        if not book:
            return []
        if side == BUY:
            prices = list(book.irange(minimum=price, reverse=True))
        else:
            prices = list(book.irange(maximum=price))
        remaining = qty
        fills: list[Fill] = []
        for lvl in prices:
            if remaining <= 0:
                break
            queue = list(book[lvl])
            if lvl != price:
                # Strictly better than the print: the whole market queue at lvl was passed.
                for o in queue:
                    if remaining <= 0:
                        break
                    o.queue_ahead = _ZERO
                    take = min(remaining, o.remaining)
                    remaining -= take
                    fills.append(self._fill(o, take))
                continue
            consumed_market = _ZERO
            for o in queue:
                if remaining <= 0:
                    break
                ahead = o.queue_ahead - consumed_market
                if ahead > 0:
                    take = min(remaining, ahead)
                    consumed_market += take
                    remaining -= take
                    if remaining <= 0:
                        break
                take = min(remaining, o.remaining)
                remaining -= take
                fills.append(self._fill(o, take))
            for o in book.get(lvl, ()):
                o.queue_ahead = max(_ZERO, o.queue_ahead - consumed_market)
        return fills

    def on_book(self) -> None:
        """Clamp queue positions to the displayed quantity and forget taken liquidity.

        Called after each depth update of this symbol.
        """
        self._taken.clear()
        if self._market.best_bid(self.symbol) is None and self._market.best_ask(self.symbol) is None:
            # An empty book is taken for an unavailable one (a resync), not for cancellations
            # of everything ahead of us; queue positions are kept until levels reappear.
            return
        for o in self._orders.values():
            if o.queue_ahead > 0:
                shown = self._market.qty_at(self.symbol, o.side, o.price)
                if shown < o.queue_ahead:
                    o.queue_ahead = shown

    # -- taking liquidity ----------------------------------------------------------------
    def would_take(self, side: str, price: Decimal) -> bool:
        """Return True if a limit order at ``price`` would cross the displayed book."""
        if side == BUY:
            best = self._market.best_ask(self.symbol)
            return best is not None and price >= best[0]
        best = self._market.best_bid(self.symbol)
        return best is not None and price <= best[0]

    def sweep(
        self,
        side: str,
        *,
        qty: Decimal | None = None,
        quote_qty: Decimal | None = None,
        limit_price: Decimal | None = None,
        step: Decimal | None = None,
    ) -> list[Fill]:
        """Walk the displayed opposite levels without changing anything (dry run).

        Parameters
        ----------
        side : str
            Side of our order (``BUY`` walks the asks).
        qty : Decimal, optional
            Base quantity to fill.
        quote_qty : Decimal, optional
            Quote amount to spend/receive instead of ``qty`` (MARKET ``quoteOrderQty``);
            each level's take is floored to ``step``.
        limit_price : Decimal, optional
            Worst acceptable price; ``None`` for MARKET.
        step : Decimal, optional
            Quantity grid used with ``quote_qty``.

        Returns
        -------
        list of Fill
            ``order_id`` 0, best price first; may fill less than asked.
        """
        liq = opposite(side)
        try:
            book = self._market.depth(self.symbol, _MAX_DEPTH)["asks" if side == BUY else "bids"]
        except LookupError:
            # The venue book is not available (e.g. resynchronising): nothing to take.
            return []
        fills: list[Fill] = []
        left_qty = qty
        left_quote = quote_qty
        for p_s, q_s in book:
            p = Decimal(p_s)
            if limit_price is not None and (p > limit_price if side == BUY else p < limit_price):
                break
            if left_quote is not None and step is not None and left_quote < step * p:
                break
            avail = Decimal(q_s) - self._taken.get((liq, p), _ZERO)
            if avail <= 0:
                continue
            if left_qty is not None:
                take = min(avail, left_qty)
                left_qty -= take
            else:
                assert left_quote is not None
                take = min(avail, left_quote / p)
                if step is not None:
                    take = (take / step).to_integral_value(rounding=ROUND_DOWN) * step
                left_quote -= take * p
            if take > 0:
                fills.append(Fill(0, p, take))
            if left_qty is not None and left_qty <= 0:
                break
        return fills

    def commit_taken(self, side: str, fills: list[Fill]) -> None:
        """Remember the liquidity taken by a sweep of an order on ``side``."""
        liq = opposite(side)
        for f in fills:
            key = (liq, f.price)
            self._taken[key] = self._taken.get(key, _ZERO) + f.qty

    # -- internals ------------------------------------------------------------------------
    def _fill(self, o: RestingOrder, take: Decimal) -> Fill:
        o.remaining -= take
        if o.remaining <= 0:
            self._orders.pop(o.order_id, None)
            self._unlink(o)
        return Fill(o.order_id, o.price, take)

    def _unlink(self, o: RestingOrder) -> None:
        book = self._levels[o.side]
        queue = book.get(o.price)
        if queue is None:
            return
        try:
            queue.remove(o)
        except ValueError:
            return
        if not queue:
            del book[o.price]
