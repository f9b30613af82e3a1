"""Symmetric quoting with hand-built books: rounding, min notional, inventory limit, re-quotes, post-only."""
from __future__ import annotations

from decimal import Decimal as D

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ext.book import OrderBook
from engine.bus import ASK, BID, BUY, SELL, StrategyBus, StrategyContext
from engine.instruments import Instrument, get_builtin
from engine.orders.ids import ClientOrderIdGenerator
from engine.orders.tracker import ExecutionReport, OrderTracker
from strategies.symmetric import (SymmetricConfig, SymmetricQuoter, ask_price_ticks, bid_price_ticks,
                                  qty_to_steps_floor)

BTC = get_builtin("BTCUSDT", "spot")  # tick 0.01, step 0.00001, min notional 5
SYM = "BTCUSDT"


class Sender:
    def __init__(self):
        self.ready = True
        self.sent: list[tuple] = []

    def send_place(self, cid, symbol, side, price_ticks, qty_steps, post_only, trigger_rx_ns):
        self.sent.append(("place", cid, side, price_ticks, qty_steps, post_only))

    def send_cancel(self, cid, symbol, trigger_rx_ns):
        self.sent.append(("cancel", cid))

    def send_cancel_all(self, symbol):
        self.sent.append(("cancel_all", symbol))

    def places(self):
        return [s for s in self.sent if s[0] == "place"]


class Harness:
    """Quoter + real tracker + bus over a hand-built book; the venue is simulated by hand."""

    def __init__(self, inst: Instrument = BTC, **cfg):
        self.inst = inst
        self.sender = Sender()
        self.tracker = OrderTracker({inst.symbol: inst})
        self.ctx = StrategyContext({inst.symbol: inst}, self.tracker, self.sender,
                                   ClientOrderIdGenerator("s", 1).next)
        self.strat = SymmetricQuoter(SymmetricConfig(symbol=inst.symbol, **cfg))
        self.bus = StrategyBus(self.strat, self.ctx)
        self.tracker.listener = self.bus
        self.bus.start()
        self.book = OrderBook()
        self.u = 0

    def set_bbo(self, bid: int, ask: int) -> None:
        self.book.clear()
        self.book.set(BID, bid, 10 ** 8)
        self.book.set(ASK, ask, 10 ** 8)
        self.u += 1
        self.book.mark_valid(self.u)
        self.bus.on_book(self.inst.symbol, self.book)

    def ack_all(self) -> None:
        for o in self.tracker.open_orders():
            if not o.acked:
                self.tracker.on_place_ack(o.client_order_id, {"orderId": abs(hash(o.client_order_id)) % 10 ** 9})
            if o.cancel_pending:
                self.tracker.on_cancel_ack(o.client_order_id, None)

    def fill(self, cid: str, steps: int, trade_id: int) -> None:
        o = self.tracker.get(cid)
        qty = str(self.inst.steps_to_qty(steps))
        self.tracker.on_execution_report(ExecutionReport(
            symbol=o.symbol, client_order_id=cid, side=o.side, exec_type="TRADE",
            status="FILLED" if o.filled_steps + steps >= o.qty_steps else "PARTIALLY_FILLED", order_id=o.order_id,
            last_qty=qty, cum_qty=qty, last_price=str(self.inst.ticks_to_price(o.price_ticks)), trade_id=trade_id))

    def live(self, side: str):
        return [o for o in self.tracker.open_orders() if o.side == side and not o.cancel_pending]


# -- pure rounding ------------------------------------------------------------------------------
def test_bids_round_down_asks_round_up():
    # mid = 100.5 (half tick): bid floor(100.5 - 1) = 99, ask ceil(100.5 + 1) = 102.
    assert (bid_price_ticks(100, 101, 1), ask_price_ticks(100, 101, 1)) == (99, 102)
    # mid = 101: exact.
    assert (bid_price_ticks(100, 102, 1), ask_price_ticks(100, 102, 1)) == (100, 102)
    # mid = 100.5, half spread 3: 97.5 -> 97, 103.5 -> 104.
    assert (bid_price_ticks(100, 101, 3), ask_price_ticks(100, 101, 3)) == (97, 104)


@given(st.integers(1, 10 ** 9), st.integers(1, 1000), st.integers(1, 50))
def test_rounding_never_crosses_and_never_narrows(bid, spread, hs):
    ask = bid + spread
    b, a = bid_price_ticks(bid, ask, hs), ask_price_ticks(bid, ask, hs)
    assert b < ask and a > bid and b < a           # post-only: never marketable
    assert 2 * b <= bid + ask - 2 * hs              # bid <= mid - half spread (rounded down)
    assert 2 * a >= bid + ask + 2 * hs              # ask >= mid + half spread (rounded up)
    assert 2 * b > bid + ask - 2 * hs - 2 and 2 * a < bid + ask + 2 * hs + 2  # by less than one tick


def test_qty_floored_to_step():
    assert qty_to_steps_floor(D("0.0010099"), D("0.00001")) == 100
    assert qty_to_steps_floor(D("0.00001"), D("0.00001")) == 1
    assert qty_to_steps_floor(D("0.000009"), D("0.00001")) == 0
    assert qty_to_steps_floor(D("0.0059"), D("0.001")) == 5


# -- quoting over hand-built books ------------------------------------------------------------------
def test_quotes_one_bid_one_ask_post_only_at_rounded_prices():
    h = Harness(half_spread_ticks=2, requote_ticks=3, order_qty=D("0.0010099"), max_position_steps=1000)
    h.set_bbo(6_000_000, 6_000_001)  # mid 60000.005
    places = h.sender.places()
    assert [(p[2], p[3], p[4], p[5]) for p in places] == [(BUY, 5_999_998, 100, True), (SELL, 6_000_003, 100, True)]
    # The same book again: nothing new.
    h.ack_all()
    h.set_bbo(6_000_000, 6_000_001)
    assert len(h.sender.sent) == 2


def test_requote_only_when_mid_moves_by_requote_ticks():
    h = Harness(half_spread_ticks=1, requote_ticks=3, order_qty=D("0.001"))
    h.set_bbo(6_000_000, 6_000_002)  # mid 6_000_001
    h.ack_all()
    h.set_bbo(6_000_002, 6_000_004)  # mid +2 < 3: keep
    assert len(h.sender.sent) == 2
    h.set_bbo(6_000_003, 6_000_005)  # mid +3: cancel both, place both at the new prices
    kinds = [s[0] for s in h.sender.sent[2:]]
    assert kinds == ["cancel", "place", "cancel", "place"]
    new = h.sender.places()[-2:]
    assert [(p[2], p[3]) for p in new] == [(BUY, 6_000_003), (SELL, 6_000_005)]
    cancelled = {s[1] for s in h.sender.sent if s[0] == "cancel"}
    assert cancelled == {p[1] for p in h.sender.places()[:2]}


def test_min_notional_raises_size_or_skips_side():
    # 0.00001 BTC at 60000 = 0.6 USDT < 5: the minimum is 9 steps (5.4 USDT).
    h = Harness(order_qty=D("0.00001"))
    h.set_bbo(6_000_000, 6_000_002)
    sizes = {p[2]: p[4] for p in h.sender.places()}
    assert sizes == {BUY: 9, SELL: 9} and h.strat.notional_bumps == 2
    for p in h.sender.places():
        notional = BTC.ticks_to_price(p[3]) * BTC.steps_to_qty(p[4])
        assert notional >= BTC.min_notional
    h2 = Harness(order_qty=D("0.00001"), size_up_to_min_notional=False)
    h2.set_bbo(6_000_000, 6_000_002)
    assert h2.sender.sent == [] and h2.strat.notional_skips == 2
    # Exactly at the minimum: 5 USDT at 50000.00 is 10 steps.
    h3 = Harness(order_qty=D("0.0001"), half_spread_ticks=1)
    h3.set_bbo(5_000_000, 5_000_002)  # bid 50000.00 -> 0.0001 * 50000 = 5.0: allowed as is
    assert {p[2]: (p[3], p[4]) for p in h3.sender.places()}[BUY] == (5_000_000, 10)
    assert h3.strat.notional_bumps == 0
    # One tick lower the same size is 4.9999 USDT: raised to 11 steps.
    h4 = Harness(order_qty=D("0.0001"), half_spread_ticks=1)
    h4.set_bbo(4_999_999, 5_000_001)
    assert {p[2]: (p[3], p[4]) for p in h4.sender.places()}[BUY] == (4_999_999, 11)


def test_inventory_limit_stops_the_side_that_would_exceed():
    h = Harness(order_qty=D("0.001"), max_position_steps=250)  # 100 steps per quote
    h.tracker.positions[SYM].steps = 151  # 151 + 100 > 250: no bid
    h.set_bbo(6_000_000, 6_000_002)
    assert [p[2] for p in h.sender.places()] == [SELL] and h.strat.inventory_blocks == 1
    h = Harness(order_qty=D("0.001"), max_position_steps=250)
    h.tracker.positions[SYM].steps = -151
    h.set_bbo(6_000_000, 6_000_002)
    assert [p[2] for p in h.sender.places()] == [BUY]
    h = Harness(order_qty=D("0.001"), max_position_steps=250)
    h.tracker.positions[SYM].steps = 150  # exactly 250 after a full fill: allowed
    h.set_bbo(6_000_000, 6_000_002)
    assert sorted(p[2] for p in h.sender.places()) == [BUY, SELL]


def test_fills_drive_the_position_and_pull_the_side():
    h = Harness(order_qty=D("0.001"), max_position_steps=150, half_spread_ticks=1, requote_ticks=5)
    h.set_bbo(6_000_000, 6_000_002)
    h.ack_all()
    bid = h.live(BUY)[0]
    h.fill(bid.client_order_id, 100, trade_id=1)  # position 100; another bid of 100 would reach 200 > 150
    assert h.ctx.position(SYM) == 100 and h.tracker.get(bid.client_order_id).status == "FILLED"
    n = len(h.sender.places())
    h.set_bbo(6_000_000, 6_000_002)
    assert len(h.sender.places()) == n and h.live(BUY) == [] and len(h.live(SELL)) == 1
    # A second bid placed before the fill (worst-case exposure) would be pulled: fill the ask back to flat.
    ask = h.live(SELL)[0]
    h.fill(ask.client_order_id, 100, trade_id=2)
    assert h.ctx.position(SYM) == 0
    h.set_bbo(6_000_000, 6_000_002)
    assert sorted(o.side for o in h.tracker.open_orders()) == [BUY, SELL]


def test_live_quote_is_cancelled_when_position_moves_past_the_limit():
    h = Harness(order_qty=D("0.001"), max_position_steps=150, half_spread_ticks=1, requote_ticks=5)
    h.set_bbo(6_000_000, 6_000_002)
    h.ack_all()
    bid = h.live(BUY)[0]
    h.tracker.positions[SYM].steps = 60  # e.g. an earlier fill: 60 + 100 open > 150
    h.set_bbo(6_000_000, 6_000_002)
    assert ("cancel", bid.client_order_id) in h.sender.sent
    assert h.sender.places()[-1][2] != BUY or h.sender.places()[-1][1] != bid.client_order_id


def test_rejected_quote_is_replaced_and_one_sided_book_pulls_quotes():
    h = Harness(order_qty=D("0.001"), half_spread_ticks=1, requote_ticks=1)
    h.set_bbo(6_000_000, 6_000_001)
    first_bid = h.sender.places()[0][1]
    h.tracker.on_place_error(first_bid, 400, -2010, "Order would immediately match and take.")
    assert h.strat.rejects == 1
    h.set_bbo(6_000_000, 6_000_001)
    assert h.sender.places()[-1][2] == BUY and h.sender.places()[-1][1] != first_bid
    # One-sided book: quotes pulled, nothing placed.
    h.ack_all()
    n = len(h.sender.places())
    h.book.clear()
    h.book.set(BID, 6_000_000, 5)
    h.book.mark_valid(999)
    h.bus.on_book(SYM, h.book)
    assert len(h.sender.places()) == n and h.tracker.open_orders() and all(
        o.cancel_pending for o in h.tracker.open_orders())


@given(st.lists(st.tuples(st.integers(5_999_900, 6_000_100), st.integers(1, 20)), min_size=1, max_size=30),
       st.integers(1, 5), st.integers(1, 4))
def test_every_order_is_post_only_on_grid_and_inside_limits(bbos, hs, rq):
    h = Harness(order_qty=D("0.0007"), half_spread_ticks=hs, requote_ticks=rq, max_position_steps=140)
    seen = 0
    for bid, spread in bbos:
        h.ack_all()
        h.set_bbo(bid, bid + spread)
        for p in h.sender.places()[seen:]:
            _, cid, side, px, qty, post_only = p
            assert post_only and qty == 70 and isinstance(px, int)
            if side == BUY:
                assert px < bid + spread and 2 * px <= 2 * bid + spread - 2 * hs
            else:
                assert px > bid and 2 * px >= 2 * bid + spread + 2 * hs
        seen = len(h.sender.places())
        # At most one live (not cancel-pending) order per side.
        assert len(h.live(BUY)) <= 1 and len(h.live(SELL)) <= 1
        worst_long = sum(o.remaining_steps for o in h.tracker.open_orders() if o.side == BUY)
        worst_short = sum(o.remaining_steps for o in h.tracker.open_orders() if o.side == SELL)
        assert worst_long <= 140 and worst_short <= 140


def test_config_validation():
    for bad in ({"half_spread_ticks": 0}, {"requote_ticks": 0}, {"order_qty": D(0)}, {"max_position_steps": -1}):
        with pytest.raises(ValueError):
            SymmetricConfig(symbol=SYM, **bad)
