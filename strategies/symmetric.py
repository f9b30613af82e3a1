"""Symmetric quoting: one post-only bid and one post-only ask around the mid.

* Prices: with ``mid = (best_bid + best_ask) / 2`` (ticks, possibly a half
  tick), the bid is ``floor(mid - half_spread_ticks)`` and the ask
  ``ceil(mid + half_spread_ticks)`` -- bids round down, asks round up, so
  rounding never narrows the spread. Neither may cross the opposite best
  (bid <= best_ask - 1, ask >= best_bid + 1): orders are ``LIMIT_MAKER``
  (post-only) and must never take.
* Size: ``order_qty`` (base currency) floored to the step grid; if its
  notional at the quote price is below ``min_notional`` (NOTIONAL filter,
  venue-protocols.md section 7) it is raised to the smallest quantity that
  meets it, or the side is skipped (``size_up_to_min_notional=False``).
* Re-quote: when the mid has moved by ``requote_ticks`` or more since a side
  was quoted, that side is cancelled and placed again (cancel + place; the
  new order is sent in the same callback).
* Inventory: a side is not quoted when, in the worst case, it would take the
  position beyond ``max_position_steps``: ``position + open buy quantity +
  new bid <= max`` and ``position - open sell quantity - new ask >= -max``,
  counting orders whose cancel is still unconfirmed (they can still fill).
  A quoted side that becomes disallowed is cancelled.

This module imports only :mod:`engine.bus`.
"""
from __future__ import annotations

from decimal import ROUND_FLOOR, Decimal

import msgspec

from engine.bus import (BUY, NO_ASK, NO_BID, SELL, BookView, ConnectionEvent, Fill, OrderError, OrderUpdate,
                        Strategy, StrategyContext, TradingDisabled)


class SymmetricConfig(msgspec.Struct, frozen=True):
    """Parameters of :class:`SymmetricQuoter`.

    Attributes
    ----------
    symbol : str
        Venue symbol (upper case).
    half_spread_ticks : int
        Distance of each quote from the mid, ticks (>= 1).
    requote_ticks : int
        Mid move that triggers a re-quote, ticks (>= 1).
    order_qty : Decimal
        Quote size in base currency; floored to the step size.
    max_position_steps : int
        Absolute position limit, steps (>= 0).
    size_up_to_min_notional : bool
        Raise a quote below the minimum notional to the minimum (True) or skip the side.
    """

    symbol: str
    half_spread_ticks: int = 5
    requote_ticks: int = 2
    order_qty: Decimal = Decimal("0.001")
    max_position_steps: int = 1000
    size_up_to_min_notional: bool = True

    def __post_init__(self) -> None:
        if self.half_spread_ticks < 1:
            raise ValueError("half_spread_ticks must be >= 1 (a zero spread would quote both sides at the mid)")
        if self.requote_ticks < 1:
            raise ValueError("requote_ticks must be >= 1")
        if self.order_qty <= 0:
            raise ValueError("order_qty must be positive")
        if self.max_position_steps < 0:
            raise ValueError("max_position_steps must be >= 0")


# -- exact rounding helpers (pure; unit-tested) --------------------------------------------------
def bid_price_ticks(best_bid: int, best_ask: int, half_spread_ticks: int) -> int:
    """Return ``floor(mid - half_spread)`` in ticks, capped at ``best_ask - 1`` (never crosses)."""
    px = (best_bid + best_ask - 2 * half_spread_ticks) // 2
    return min(px, best_ask - 1)


def ask_price_ticks(best_bid: int, best_ask: int, half_spread_ticks: int) -> int:
    """Return ``ceil(mid + half_spread)`` in ticks, at least ``best_bid + 1`` (never crosses)."""
    px = -((-(best_bid + best_ask + 2 * half_spread_ticks)) // 2)
    return max(px, best_bid + 1)


def qty_to_steps_floor(qty: Decimal, step_size: Decimal) -> int:
    """Return ``floor(qty / step_size)`` exactly."""
    return int((qty / step_size).to_integral_value(rounding=ROUND_FLOOR))


class _Side:
    __slots__ = ("side", "cid", "price_ticks", "mid2")

    def __init__(self, side: str) -> None:
        self.side = side
        self.cid: str | None = None
        self.price_ticks = 0
        self.mid2 = 0


class SymmetricQuoter(Strategy):
    """Quote one bid and one ask symmetrically around the mid (see the module docstring).

    Parameters
    ----------
    config : SymmetricConfig

    Attributes
    ----------
    placed, cancels, requotes, inventory_blocks, notional_bumps, notional_skips, rejects, errors : int
        Counters of what the strategy did.
    """

    def __init__(self, config: SymmetricConfig) -> None:
        self.config = config
        self.symbol = config.symbol
        self.bid = _Side(BUY)
        self.ask = _Side(SELL)
        self.base_steps = 0
        self.placed = 0
        self.cancels = 0
        self.requotes = 0
        self.inventory_blocks = 0
        self.notional_bumps = 0
        self.notional_skips = 0
        self.rejects = 0
        self.errors = 0

    def on_start(self, ctx: StrategyContext) -> None:
        """Resolve the instrument and the base size in steps."""
        self.ctx = ctx
        inst = ctx.instrument(self.symbol)
        self.base_steps = qty_to_steps_floor(self.config.order_qty, inst.step_size)

    # -- sizing ------------------------------------------------------------------------------------
    def quote_steps(self, price_ticks: int) -> int:
        """Return the quote size in steps at ``price_ticks`` (0: skip the side)."""
        need = self.ctx.min_qty_steps(self.symbol, price_ticks)
        q = self.base_steps
        if q >= need:
            return q
        if self.config.size_up_to_min_notional:
            self.notional_bumps += 1
            return need
        self.notional_skips += 1
        return 0

    def _open_exposure(self, side: str) -> int:
        return sum(o.remaining_steps for o in self.ctx.open_orders(self.symbol) if o.side == side)

    def side_allowed(self, side: str, qty_steps: int) -> bool:
        """True if quoting ``qty_steps`` on ``side`` cannot take |position| beyond ``max_position_steps``."""
        pos = self.ctx.position(self.symbol)
        lim = self.config.max_position_steps
        if side == BUY:
            return pos + self._open_exposure(BUY) + qty_steps <= lim
        return pos - self._open_exposure(SELL) - qty_steps >= -lim

    # -- callbacks -----------------------------------------------------------------------------------
    def on_book(self, symbol: str, book: BookView) -> None:
        """Re-evaluate both quotes on every applied diff."""
        if symbol == self.symbol:
            self.update_quotes(book.best_bid(), book.best_ask())

    def on_timer(self, now_ns: int) -> None:
        """Re-evaluate when the book is valid (fills or rejects may have emptied a side)."""
        view = self.ctx.book(self.symbol)
        if view is not None and view.valid:
            self.update_quotes(view.best_bid(), view.best_ask())

    def on_order_update(self, update: OrderUpdate) -> None:
        """Forget a side's order once it is no longer open."""
        if update.status in ("FILLED", "CANCELED", "REJECTED", "EXPIRED"):
            for s in (self.bid, self.ask):
                if s.cid == update.client_order_id:
                    s.cid = None
            if update.status == "REJECTED":
                self.rejects += 1

    def on_fill(self, fill: Fill) -> None:
        """Nothing to do: the position is read from the context on the next evaluation."""

    def on_connection(self, event: ConnectionEvent) -> None:
        """Forget quote anchors when the book goes invalid (the engine pulls the quotes)."""
        if event.name == "book" and event.state == "invalid":
            self.bid.mid2 = self.ask.mid2 = 0

    # -- quoting -------------------------------------------------------------------------------------
    def update_quotes(self, best_bid: int, best_ask: int) -> None:
        """Bring both sides to their target for this BBO (ticks)."""
        ctx = self.ctx
        if best_bid == NO_BID or best_ask == NO_ASK or best_bid >= best_ask:
            # One-sided or crossed: no mid to quote around; pull.
            self._cancel(self.bid)
            self._cancel(self.ask)
            return
        if not ctx.can_trade(self.symbol):
            return
        mid2 = best_bid + best_ask
        hs = self.config.half_spread_ticks
        self._update_side(self.bid, mid2, bid_price_ticks(best_bid, best_ask, hs))
        self._update_side(self.ask, mid2, ask_price_ticks(best_bid, best_ask, hs))

    def _live(self, s: _Side):
        if s.cid is None:
            return None
        o = self.ctx.order(s.cid)
        if o is None or not o.is_open or o.cancel_pending:
            s.cid = None
            return None
        return o

    def _cancel(self, s: _Side) -> bool:
        # True when the side has no live order any more (cancel sent, or nothing was live).
        # If the cancel could not be sent the order stays ours: never quote a second one.
        if self._live(s) is None:
            return True
        if self.ctx.cancel(s.cid):
            self.cancels += 1
            s.cid = None
            return True
        return False

    def _update_side(self, s: _Side, mid2: int, price_ticks: int) -> None:
        live = self._live(s)
        moved = abs(mid2 - s.mid2) >= 2 * self.config.requote_ticks
        if live is not None:
            if not moved and self.side_allowed(s.side, 0):
                return
            # Re-quote (or inventory pull): cancel first, then place at the new price.
            if not self._cancel(s):
                return
            self.requotes += 1
        qty = self.quote_steps(price_ticks) if price_ticks > 0 else 0
        if qty <= 0:
            return
        if not self.side_allowed(s.side, qty):
            self.inventory_blocks += 1
            return
        try:
            s.cid = self.ctx.place_limit(self.symbol, s.side, price_ticks, qty, post_only=True)
        except (OrderError, TradingDisabled):
            self.errors += 1
            s.cid = None
            return
        s.price_ticks = price_ticks
        s.mid2 = mid2
        self.placed += 1

    def on_stop(self) -> None:
        """The engine cancels everything after this; just forget the sides."""
        self.bid.cid = self.ask.cid = None


__all__ = ["SymmetricConfig", "SymmetricQuoter", "ask_price_ticks", "bid_price_ticks", "qty_to_steps_floor"]
