"""A fast churn strategy for fault tests: many far-from-touch post-only orders, a few marketable ones.

Not a test module (no ``test_`` prefix); imported by the e2e tests of this folder.
"""
from __future__ import annotations

import asyncio
import heapq
import random

from engine.bus import BUY, SELL, OrderError, Strategy, TradingDisabled


class Churn(Strategy):
    """Keep up to ``target_open`` orders on the book, replacing them quickly.

    * Most orders are ``LIMIT_MAKER`` ``far`` ticks away from the touch (never
      rejected, rarely filled); every ``near_every``-th order is a ``LIMIT`` GTC at
      the opposite best price (trades at once, so positions move).
    * Each order lives ``short_s`` (or ``long_s`` for a ``long_share`` of them),
      then the strategy cancels it; ``max_orders`` bounds the run.
    * The side of a marketable order pulls the position back towards 0.
    """

    def __init__(self, symbol: str = "BTCUSDT", *, max_orders: int = 3000, target_open: int = 100,
                 per_tick: int = 6, far=(150, 600), near_every: int = 25, short_s: float = 0.05,
                 long_s: float = 2.5, long_share: float = 0.05, seed: int = 1, done=None,
                 tail_s: float = 0.5) -> None:
        self.symbol = symbol
        # Resolved ``tail_s`` after the last order was placed (a run's ``stop_when``).
        self.done = done
        self.tail_s = tail_s
        self.max_orders = max_orders
        self.target_open = target_open
        self.per_tick = per_tick
        self.far = far
        self.near_every = near_every
        self.short_ns = int(short_s * 1e9)
        self.long_ns = int(long_s * 1e9)
        self.long_share = long_share
        self.rng = random.Random(seed)
        self.expiry: list[tuple[int, str]] = []
        self.placed = 0
        self.cancel_calls = 0
        self.refused = 0
        self.cids: list[str] = []

    def on_timer(self, now_ns: int) -> None:
        self.churn(now_ns)

    def on_book(self, symbol, book) -> None:
        self.churn(self.ctx.now_ns())

    def churn(self, now: int) -> None:
        ctx = self.ctx
        while self.expiry and self.expiry[0][0] <= now:
            _, cid = heapq.heappop(self.expiry)
            o = ctx.order(cid)
            if o is not None and o.is_open and not o.cancel_pending:
                if ctx.cancel(cid):
                    self.cancel_calls += 1
                else:
                    # Not sendable now (connection paused): try again a little later.
                    heapq.heappush(self.expiry, (now + self.short_ns, cid))
        if self.placed >= self.max_orders or not ctx.can_trade(self.symbol):
            return
        view = ctx.book(self.symbol)
        bid, ask = view.best_bid(), view.best_ask()
        if bid >= ask:
            return
        for _ in range(self.per_tick):
            if self.placed >= self.max_orders or len(ctx.open_orders(self.symbol)) >= self.target_open:
                return
            near = self.placed % self.near_every == self.near_every - 1
            if near:
                pos = ctx.position(self.symbol)
                side = (BUY if self.rng.random() < 0.5 else SELL) if abs(pos) < 2000 else (SELL if pos > 0 else BUY)
                price = ask if side == BUY else bid
            else:
                side = BUY if self.rng.random() < 0.5 else SELL
                d = self.rng.randint(*self.far)
                price = bid - d if side == BUY else ask + d
            qty = ctx.min_qty_steps(self.symbol, price)
            try:
                cid = ctx.place_limit(self.symbol, side, price, qty, post_only=not near)
            except (OrderError, TradingDisabled):
                self.refused += 1
                return
            self.placed += 1
            self.cids.append(cid)
            if self.placed >= self.max_orders and self.done is not None:
                asyncio.get_running_loop().call_later(
                    self.tail_s, lambda: self.done.done() or self.done.set_result(self.placed))
            life = self.long_ns if self.rng.random() < self.long_share else self.short_ns
            heapq.heappush(self.expiry, (now + life, cid))
