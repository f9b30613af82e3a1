"""The embedded default market: a seeded zero-intelligence order-flow model.

Limit orders arrive around a random-walk reference price, resting orders are
cancelled at random, and market orders walk the book and produce trades
(Smith-Farmer style zero-intelligence flow, in integer ticks and lots). The
output has Binance spot's shapes and rhythm so the engine's decoders and book
sync read it unchanged (venue-protocols.md sections 1-2):

* ``<sym>@depth@100ms``: ``depthUpdate`` every 100 ms with the final quantity of every
  level changed in the window, ``U`` = first and ``u`` = last update id of the window,
  so ``U == previous u + 1`` (1.2, 1.6); no message for a window without changes;
* ``<sym>@trade`` per maker fill and ``<sym>@aggTrade`` per taker order and price;
* ``<sym>@bookTicker`` on every change of best price or quantity, ``u`` = update id.

Every book change consumes one update id and is also applied to the venue book at
once (a ``LEVEL`` event), so ``depth()`` serves the venue's current book with a
``lastUpdateId`` that runs ahead of the last diff sent, as on the real venue.

The model is deterministic for a given :class:`SyntheticConfig` (seed and ``start_ms``).
"""
from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass
from decimal import Decimal
from typing import Iterator

import msgspec
from sortedcontainers import SortedDict

from engine.instruments import SPOT, Instrument, get_builtin

from .market import (AGG_TRADE, BOOK_TICKER, BUY, DEPTH, LEVEL, SELL, SNAPSHOT, TRADE, AggTrade,
                     BookTicker, DepthDiff, LevelChange, MarketEvent, Snapshot, Trade, VenueMarket,
                     format_scaled)

_ENC = msgspec.json.Encoder()


@dataclass(frozen=True)
class SyntheticConfig:
    """Parameters of the synthetic market (rates per second of venue time).

    Attributes
    ----------
    symbol : str
        Spot symbol; its instrument comes from :func:`engine.instruments.get_builtin`
        unless ``instrument`` is given (BTCUSDT: tick 0.01, step 0.00001).
    seed : int
        Random seed; the same seed and ``start_ms`` give byte-identical output.
    start_ms : int or None
        Exchange time of the start, ms since the epoch; None takes the wall clock
        when :meth:`SyntheticSource.events` starts.
    start_price : str
        Initial reference price, quote currency.
    first_update_id, first_trade_id, first_agg_id : int
        First book update id (the snapshot's ``lastUpdateId``), trade id and aggTrade id.
    depth_interval_ms : int
        100 (``@depth@100ms``) or 1000 (``@depth``), spot update speeds (1.1).
    limit_rate : float
        Limit order arrivals per second (both sides together).
    market_rate : float
        Market order arrivals per second.
    cancel_rate : float
        Cancellation rate per resting order per second.
    near_offset_ticks, far_offset_ticks : float
        Mean distance (ticks) of new limit orders from the reference price, for
        orders near the touch and for deep-book orders.
    near_fraction : float
        Share of limit orders placed with the near distance.
    vol_ticks : float
        Standard deviation of the reference price step per depth interval, ticks.
    median_order_steps : int
        Median order size in order steps (``step_size``); sizes are log-normal.
    size_sigma : float
        Log-normal sigma of order sizes.
    initial_orders : int
        Resting orders per side at the start.
    min_orders : int
        Orders per side below which the side is refilled at the end of an interval.
    instrument : Instrument or None
        Overrides the built-in instrument of ``symbol`` (must be spot).
    """

    symbol: str = "BTCUSDT"
    seed: int = 1
    start_ms: int | None = None
    start_price: str = "60000.00"
    # Ids of Binance's order of magnitude (BTCUSDT spot update ids ~5e10, trade ids ~4e9),
    # so decoders that size their integer fields on real data read these too.
    first_update_id: int = 40_000_000_000
    first_trade_id: int = 3_000_000_000
    first_agg_id: int = 2_000_000_000
    depth_interval_ms: int = 100
    # Binance BTCUSDT spot, 2024-08-08 (shared/data README 1a): ~700 update ids/s,
    # ~46 level changes per 100 ms diff, ~30 trades/s. These rates land near that.
    limit_rate: float = 320.0
    market_rate: float = 8.0
    cancel_rate: float = 0.5
    near_offset_ticks: float = 6.0
    far_offset_ticks: float = 400.0
    near_fraction: float = 0.6
    vol_ticks: float = 20.0
    median_order_steps: int = 400
    size_sigma: float = 1.3
    initial_orders: int = 300
    min_orders: int = 60
    instrument: Instrument | None = None


class _Level:
    __slots__ = ("total", "orders")

    def __init__(self) -> None:
        self.total = 0
        self.orders: dict[int, int] = {}  # order id -> lots, FIFO by insertion


class SyntheticSource:
    """The synthetic market as a source for :func:`engine.sim.market.run_source`.

    Parameters
    ----------
    config : SyntheticConfig, optional
    speed : float or None
        1.0 runs at real time, 10.0 ten times faster; None or 0 as fast as possible.
    duration_s : float or None
        Venue time to run, s; None runs until the simulator is closed.
    """

    def __init__(self, config: SyntheticConfig | None = None, *, speed: float | None = 1.0,
                 duration_s: float | None = None) -> None:
        self.config = cfg = config or SyntheticConfig()
        self.speed = speed
        self.duration_s = duration_s
        inst = cfg.instrument or get_builtin(cfg.symbol, SPOT)
        if inst.market != SPOT:
            raise ValueError("the synthetic market is a spot market")
        if cfg.depth_interval_ms not in (100, 1000):
            raise ValueError("depth_interval_ms must be 100 or 1000 (spot diff-depth speeds)")
        self.instrument = inst
        self.symbols = [inst.symbol]
        self.market = SPOT

    def bind(self, venue: VenueMarket) -> None:
        """Register the symbol with ``venue`` (its book follows ``LEVEL`` events); set its clock."""
        venue.register(self.instrument, from_diffs=False, derive_agg_trades=False,
                       price_out_decimals=8, qty_out_decimals=8)
        if self.config.start_ms is not None:
            venue.advance_clock(self.config.start_ms)

    def events(self) -> Iterator[MarketEvent]:
        """Yield the market's events; each call starts the same market afresh."""
        return _Model(self.config, self.instrument, self.duration_s).run()


class _Model:
    # Implementation of the order-flow model; one instance per run.

    def __init__(self, cfg: SyntheticConfig, inst: Instrument, duration_s: float | None) -> None:
        self.cfg = cfg
        self.inst = inst
        self.rng = random.Random(cfg.seed)
        self.start_ms = cfg.start_ms if cfg.start_ms is not None else time.time_ns() // 1_000_000
        self.end_ms = None if duration_s is None else duration_s * 1000.0
        self.sym = inst.symbol
        low = inst.symbol.lower()
        self.s_depth = low + ("@depth@100ms" if cfg.depth_interval_ms == 100 else "@depth")
        self.s_trade = low + "@trade"
        self.s_agg = low + "@aggTrade"
        self.s_bt = low + "@bookTicker"
        # Spot renders prices and quantities with 8 decimals.
        self.px_mult = inst.tick_units * 10 ** (8 - inst.price_decimals)
        self.qty_mult = 10 ** (8 - inst.qty_decimals)
        self.sides: dict[str, SortedDict] = {BUY: SortedDict(), SELL: SortedDict()}
        self.orders: dict[int, tuple[str, int]] = {}   # order id -> (side, ticks)
        self.order_ids: list[int] = []                 # for uniform random cancels
        self.order_pos: dict[int, int] = {}
        self.count = {BUY: 0, SELL: 0}
        self.next_oid = 1
        self.uid = cfg.first_update_id
        self.tid = cfg.first_trade_id
        self.aid = cfg.first_agg_id
        self.ref = float(inst.price_to_ticks(Decimal(cfg.start_price)))
        self.t = 0.0  # ms since start
        self.win_first: int | None = None
        self.changed: dict[str, dict[int, int]] = {BUY: {}, SELL: {}}
        self.top: tuple[int, int, int, int] | None = None
        self.mu = math.log(max(1, cfg.median_order_steps))

    # -- formatting ---------------------------------------------------------------------
    def px(self, ticks: int) -> str:
        return format_scaled(ticks * self.px_mult, 8)

    def qty(self, lots: int) -> str:
        return format_scaled(lots * self.qty_mult, 8)

    def ts_ns(self) -> int:
        return self.start_ms * 1_000_000 + int(self.t * 1_000_000)

    def ms(self) -> int:
        return self.start_ms + int(self.t)

    # -- book primitives ----------------------------------------------------------------
    def best(self, side: str) -> int | None:
        book = self.sides[side]
        if not book:
            return None
        return book.peekitem(-1)[0] if side == BUY else book.peekitem(0)[0]

    def size_lots(self) -> int:
        steps = max(1, int(round(self.rng.lognormvariate(self.mu, self.cfg.size_sigma))))
        return steps * self.inst.lots_per_step

    def limit_price(self, side: str) -> int:
        cfg = self.cfg
        mean = cfg.near_offset_ticks if self.rng.random() < cfg.near_fraction else cfg.far_offset_ticks
        d = int(self.rng.expovariate(1.0 / mean))
        base = math.floor(self.ref)
        if side == BUY:
            ask = self.best(SELL)
            p = base - d
            return min(p, ask - 1) if ask is not None else p
        bid = self.best(BUY)
        p = base + 1 + d
        return max(p, bid + 1) if bid is not None else p

    def add_order(self, side: str, ticks: int, lots: int) -> int:
        book = self.sides[side]
        lvl = book.get(ticks)
        if lvl is None:
            lvl = book[ticks] = _Level()
        oid = self.next_oid
        self.next_oid += 1
        lvl.orders[oid] = lots
        lvl.total += lots
        self.orders[oid] = (side, ticks)
        self.order_pos[oid] = len(self.order_ids)
        self.order_ids.append(oid)
        self.count[side] += 1
        return lvl.total

    def remove_order(self, oid: int) -> None:
        side, _ = self.orders.pop(oid)
        i = self.order_pos.pop(oid)
        last = self.order_ids.pop()
        if last != oid:
            self.order_ids[i] = last
            self.order_pos[last] = i
        self.count[side] -= 1

    def level_total(self, side: str, ticks: int, lvl: _Level) -> int:
        if lvl.total == 0:
            del self.sides[side][ticks]
        return lvl.total

    # -- event emission -------------------------------------------------------------------
    def changed_level(self, side: str, ticks: int, lots: int) -> Iterator[MarketEvent]:
        self.uid += 1
        if self.win_first is None:
            self.win_first = self.uid
        self.changed[side][ticks] = lots
        ts = self.ts_ns()
        yield MarketEvent(ts, LEVEL, self.sym, None, None, None,
                          LevelChange(side, ticks, lots, self.uid, self.ms()))
        bid = self.best(BUY)
        ask = self.best(SELL)
        if bid is None or ask is None:
            return
        top = (bid, self.sides[BUY][bid].total, ask, self.sides[SELL][ask].total)
        if top != self.top:
            self.top = top
            bt = BookTicker(self.uid, self.sym, self.px(top[0]), self.qty(top[1]), self.px(top[2]), self.qty(top[3]))
            yield MarketEvent(ts, BOOK_TICKER, self.sym, self.s_bt, _ENC.encode(bt), None, bt)

    def flush_window(self) -> Iterator[MarketEvent]:
        if self.win_first is None:
            return
        b = [(self.px(t), self.qty(q)) for t, q in sorted(self.changed[BUY].items(), reverse=True)]
        a = [(self.px(t), self.qty(q)) for t, q in sorted(self.changed[SELL].items())]
        diff = DepthDiff("depthUpdate", self.ms(), self.sym, self.win_first, self.uid, b, a)
        self.win_first = None
        self.changed = {BUY: {}, SELL: {}}
        yield MarketEvent(self.ts_ns(), DEPTH, self.sym, self.s_depth, _ENC.encode(diff), None, diff)

    # -- order flow -----------------------------------------------------------------------
    def on_limit(self, side: str | None = None) -> Iterator[MarketEvent]:
        if side is None:
            side = BUY if self.rng.random() < 0.5 else SELL
        ticks = self.limit_price(side)
        if ticks <= 0:
            return
        total = self.add_order(side, ticks, self.size_lots())
        yield from self.changed_level(side, ticks, total)

    def on_cancel(self) -> Iterator[MarketEvent]:
        oid = self.order_ids[self.rng.randrange(len(self.order_ids))]
        side, ticks = self.orders[oid]
        if self.count[side] <= 1:
            return  # never empty a side
        lvl = self.sides[side][ticks]
        lvl.total -= lvl.orders.pop(oid)
        self.remove_order(oid)
        yield from self.changed_level(side, ticks, self.level_total(side, ticks, lvl))

    def on_market(self) -> Iterator[MarketEvent]:
        cfg = self.cfg
        bid, ask = self.best(BUY), self.best(SELL)
        if bid is None or ask is None:
            return
        mid = (bid + ask) / 2.0
        # More buying when the reference is above the book, so the book follows it.
        p_buy = 0.5 + 0.45 * math.tanh((self.ref - mid) / (4.0 * cfg.near_offset_ticks))
        taker = BUY if self.rng.random() < p_buy else SELL
        maker = SELL if taker == BUY else BUY
        book = self.sides[maker]
        left = self.size_lots() * 2
        m = taker == SELL  # the buyer is the maker when the taker sells
        ms = self.ms()
        while left > 0 and len(book) > 1:  # never take the last level of a side
            ticks = book.peekitem(0)[0] if maker == SELL else book.peekitem(-1)[0]
            lvl = book[ticks]
            first_tid = self.tid
            filled = 0
            while left > 0 and lvl.orders:
                oid, lots = next(iter(lvl.orders.items()))
                q = min(lots, left)
                left -= q
                filled += q
                lvl.total -= q
                if q == lots:
                    del lvl.orders[oid]
                    self.remove_order(oid)
                else:
                    lvl.orders[oid] = lots - q
                yield from self.changed_level(maker, ticks, self.level_total(maker, ticks, lvl))
                tr = Trade("trade", ms, self.sym, self.tid, self.px(ticks), self.qty(q), ms, m, True)
                self.tid += 1
                yield MarketEvent(self.ts_ns(), TRADE, self.sym, self.s_trade, _ENC.encode(tr), None, tr)
            ag = AggTrade("aggTrade", ms, self.sym, self.aid, self.px(ticks), self.qty(filled),
                          first_tid, self.tid - 1, ms, m, True)
            self.aid += 1
            yield MarketEvent(self.ts_ns(), AGG_TRADE, self.sym, self.s_agg, _ENC.encode(ag), None, ag)

    # -- main loop ------------------------------------------------------------------------------
    def snapshot(self) -> Snapshot:
        bids = [(self.px(t), self.qty(lvl.total)) for t, lvl in reversed(self.sides[BUY].items())]
        asks = [(self.px(t), self.qty(lvl.total)) for t, lvl in self.sides[SELL].items()]
        return Snapshot(self.uid, bids, asks, E=self.start_ms)

    def run(self) -> Iterator[MarketEvent]:
        cfg = self.cfg
        rng = self.rng
        for _ in range(cfg.initial_orders):
            for side in (BUY, SELL):
                self.add_order(side, self.limit_price(side), self.size_lots())
        yield MarketEvent(self.ts_ns(), SNAPSHOT, self.sym, None, None, None, self.snapshot())
        interval = float(cfg.depth_interval_ms)
        window_end = interval
        while self.end_ms is None or self.t < self.end_ms:
            rate = cfg.limit_rate + cfg.market_rate + cfg.cancel_rate * len(self.order_ids)
            dt = rng.expovariate(rate) * 1000.0
            if self.t + dt >= window_end:
                # Poisson arrivals are memoryless: restarting the draw at the boundary is exact.
                self.t = window_end
                yield from self.flush_window()
                if self.end_ms is not None and self.t >= self.end_ms:
                    return
                self.ref += rng.gauss(0.0, cfg.vol_ticks)
                for side in (BUY, SELL):
                    while self.count[side] < cfg.min_orders:
                        yield from self.on_limit(side)
                window_end += interval
                continue
            self.t += dt
            r = rng.random() * rate
            if r < cfg.limit_rate:
                yield from self.on_limit()
            elif r < cfg.limit_rate + cfg.market_rate:
                yield from self.on_market()
            else:
                yield from self.on_cancel()
        yield from self.flush_window()


__all__ = ["SyntheticConfig", "SyntheticSource"]
