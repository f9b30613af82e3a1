"""Pure-Python reference L2 book (sortedcontainers): the oracle for ``ext.book.OrderBook``.

Same semantics and sentinels as ``ext.book.OrderBook``: prices in ticks, quantities in
lots, ``side`` 0 = bid / 1 = ask, qty 0 deletes (a no-op if absent), negative qty raises.
"""
from __future__ import annotations

from itertools import islice

from sortedcontainers import SortedDict

BID, ASK = 0, 1
NO_BID = -(2**63)
NO_ASK = 2**63 - 1


class ReferenceBook:
    """Both sides as ``SortedDict[price_ticks, qty_lots]`` (ascending prices)."""

    def __init__(self) -> None:
        self._sides = (SortedDict(), SortedDict())

    def set(self, side: int, price: int, qty: int) -> None:
        if side not in (BID, ASK):
            raise ValueError(f"bad side {side}")
        if qty < 0:
            raise ValueError(f"negative qty {qty}")
        if qty:
            self._sides[side][price] = qty
        else:
            self._sides[side].pop(price, None)

    def clear(self) -> None:
        for d in self._sides:
            d.clear()

    def best_bid(self) -> int:
        return self._sides[BID].peekitem(-1)[0] if self._sides[BID] else NO_BID

    def best_ask(self) -> int:
        return self._sides[ASK].peekitem(0)[0] if self._sides[ASK] else NO_ASK

    def best_bid_qty(self) -> int:
        return self._sides[BID].peekitem(-1)[1] if self._sides[BID] else 0

    def best_ask_qty(self) -> int:
        return self._sides[ASK].peekitem(0)[1] if self._sides[ASK] else 0

    def qty_at(self, side: int, price: int) -> int:
        return self._sides[side].get(price, 0)

    def top(self, side: int, n: int) -> tuple[list[int], list[int]]:
        """Best ``n`` levels, best first (bids descending, asks ascending): (prices, qtys)."""
        d = self._sides[side]
        keys = list(islice(reversed(d) if side == BID else iter(d), n))
        return keys, [d[k] for k in keys]

    def levels(self, side: int) -> tuple[list[int], list[int]]:
        return self.top(side, len(self._sides[side]))

    def is_crossed(self) -> bool:
        return bool(self._sides[BID]) and bool(self._sides[ASK]) and self.best_bid() >= self.best_ask()

    def n_levels(self, side: int) -> int:
        return len(self._sides[side])
