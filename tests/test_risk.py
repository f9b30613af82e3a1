"""engine.risk: every limit at its boundary, the breaker, the kill switch, exact integer arithmetic."""
from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.instruments import get_builtin
from engine.risk import (ACCEPT, BUY, HALTED, INVALID_ORDER, MAX_NOTIONAL, MAX_OPEN_ORDERS, MAX_ORDER_QTY,
                         MAX_POSITION, NO_MID, ORDER_RATE, PRICE_BAND, SELL, UNKNOWN_SYMBOL, RiskLimits, RiskManager,
                         max_notional_units)

MS = 1_000_000
SPOT_BTC = get_builtin("BTCUSDT", "spot")  # tick 0.01, step 0.00001
NO_BID = -(2**63)
NO_ASK = 2**63 - 1


class Clock:
    def __init__(self, t: int = 1_000_000_000) -> None:
        self.t = t

    def __call__(self) -> int:
        return self.t


def limits(**kw) -> RiskLimits:
    base = dict(max_position_steps=1000, max_order_steps=500, max_order_notional=Decimal("1000000"),
                price_band_ticks=0, price_band_bps=0, max_open_orders=100, max_orders_per_window=1000,
                order_rate_window_ms=1000, breaker_rejections=3, breaker_window_ms=10_000)
    base.update(kw)
    return RiskLimits(**base)


def manager(clock=None, **kw) -> RiskManager:
    return RiskManager(limits(**kw), [SPOT_BTC], clock_ns=clock or Clock())


def check(rm, side=BUY, price=6_000_000, qty=100, bid=None, ask=None, now=None):
    return rm.check_new_order("BTCUSDT", side, price, qty, bid, ask, now)


# -- per-order limits ---------------------------------------------------------------------------------
def test_accept_is_truthy_and_refusal_falsy():
    rm = manager()
    d = check(rm)
    assert d is ACCEPT and d and d.ok and d.reason == ""
    r = check(rm, qty=501)
    assert not r and r.reason == MAX_ORDER_QTY and "501" in r.detail
    assert rm.checks == 2 and rm.accepted == 1 and rm.rejections == {MAX_ORDER_QTY: 1}


def test_max_order_qty_boundary():
    rm = manager(max_order_steps=500)
    assert check(rm, qty=500)
    assert check(rm, qty=501).reason == MAX_ORDER_QTY


def test_max_notional_is_exact():
    # 100 USDT with tick 0.01 and step 0.00001: 100 / 1e-7 = 10^9 units of ticks*steps.
    rm = manager(max_order_notional=Decimal("100"))
    assert max_notional_units(SPOT_BTC, Decimal("100")) == 10**9
    assert check(rm, price=5_000_000, qty=200)  # 50000.00 * 0.002 = 100 exactly
    assert check(rm, price=5_000_000, qty=201).reason == MAX_NOTIONAL  # 100.05
    assert check(rm, price=5_000_001, qty=200).reason == MAX_NOTIONAL  # 100.00002
    # A limit that is not a whole number of units is floored, never rounded up.
    rm = manager(max_order_notional=Decimal("100.00000009"))
    assert max_notional_units(SPOT_BTC, Decimal("100.00000009")) == 10**9
    assert check(rm, price=5_000_000, qty=200)
    assert check(rm, price=1_000_000_001, qty=1).reason == MAX_NOTIONAL


def test_invalid_orders_and_floats_are_refused():
    rm = manager()
    assert check(rm, price=6_000_000.0).reason == INVALID_ORDER  # no floats on the order path
    assert check(rm, qty=100.0).reason == INVALID_ORDER
    assert check(rm, qty=True).reason == INVALID_ORDER
    assert check(rm, price=Decimal(6_000_000)).reason == INVALID_ORDER
    assert check(rm, price=0).reason == INVALID_ORDER
    assert check(rm, qty=-1).reason == INVALID_ORDER
    assert check(rm, side="buy").reason == INVALID_ORDER
    assert rm.check_new_order("ETHUSDT", BUY, 1, 1).reason == UNKNOWN_SYMBOL


# -- price band -----------------------------------------------------------------------------------------
def test_tick_band_around_a_half_tick_mid():
    rm = manager(price_band_ticks=2)
    # bid 100, ask 101: mid 100.5; within 2 ticks: 98.5 .. 102.5, i.e. 99 .. 102.
    for p in (99, 100, 101, 102):
        assert check(rm, price=p, qty=1, bid=100, ask=101), p
    for p in (98, 103):
        assert check(rm, price=p, qty=1, bid=100, ask=101).reason == PRICE_BAND, p


def test_bps_band_is_exact():
    rm = manager(price_band_bps=10)  # 10 bps of a 10000-tick mid = 10 ticks
    for p in (9990, 10010):
        assert check(rm, price=p, qty=1, bid=9999, ask=10001), p
    for p in (9989, 10011):
        assert check(rm, price=p, qty=1, bid=9999, ask=10001).reason == PRICE_BAND, p
    # Half-tick mid 10000.5: 10 bps = 10.0005 ticks, so 10010 and 9991 pass, 10011 and 9990 do not.
    assert check(rm, price=10010, qty=1, bid=10000, ask=10001)
    assert check(rm, price=9991, qty=1, bid=10000, ask=10001)
    assert check(rm, price=10011, qty=1, bid=10000, ask=10001).reason == PRICE_BAND
    assert check(rm, price=9990, qty=1, bid=10000, ask=10001).reason == PRICE_BAND


def test_both_bands_apply():
    rm = manager(price_band_ticks=5, price_band_bps=100)  # bps band is 100 ticks here: ticks band binds
    assert check(rm, price=10005, qty=1, bid=9999, ask=10001)
    assert check(rm, price=10006, qty=1, bid=9999, ask=10001).reason == PRICE_BAND


@pytest.mark.parametrize("bid, ask", [(None, None), (100, None), (None, 101), (NO_BID, 101), (100, NO_ASK),
                                      (101, 100), (100, 100), (0, 5)])
def test_no_mid_refuses_when_a_band_is_configured(bid, ask):
    rm = manager(price_band_ticks=10)
    assert check(rm, price=100, qty=1, bid=bid, ask=ask).reason == NO_MID
    assert check(manager(), price=100, qty=1, bid=bid, ask=ask)  # no band: no mid needed


# -- open orders and position -------------------------------------------------------------------------
def test_max_open_orders_boundary_and_release():
    rm = manager(max_open_orders=2)
    assert check(rm)
    rm.on_order_sent("a", "BTCUSDT", BUY, 1)
    assert check(rm)
    rm.on_order_sent("b", "BTCUSDT", SELL, 1)
    assert check(rm).reason == MAX_OPEN_ORDERS
    rm.on_order_closed("a")
    rm.on_order_closed("a")  # idempotent
    assert rm.open_orders("BTCUSDT") == 1
    assert check(rm)


def test_max_position_buy_side_counts_position_and_open_buys():
    rm = manager(max_position_steps=1000)
    rm.on_order_sent("a", "BTCUSDT", BUY, 300)
    rm.on_fill("a", "BTCUSDT", BUY, 300)  # position 300, no open exposure left on a
    rm.on_order_sent("b", "BTCUSDT", BUY, 400)  # open buy 400
    assert rm.position_steps("BTCUSDT") == 300 and rm.open_steps("BTCUSDT", BUY) == 400
    assert check(rm, side=BUY, qty=300)  # 300 + 400 + 300 == 1000: exactly at the limit
    assert check(rm, side=BUY, qty=301).reason == MAX_POSITION
    # Sells are not limited by the buy side: 300 - 0 - 500 = -200.
    assert check(rm, side=SELL, qty=500)


def test_max_position_sell_side_and_reducing_beyond_the_limit():
    rm = manager(max_position_steps=1000, max_order_steps=5000)
    rm.on_order_sent("s", "BTCUSDT", SELL, 200)
    assert check(rm, side=SELL, qty=800)  # 0 - 200 - 800 == -1000
    assert check(rm, side=SELL, qty=801).reason == MAX_POSITION
    # Position far beyond the limit (e.g. after a restart): reducing orders still pass.
    rm.sync("BTCUSDT", 3000, [])
    assert check(rm, side=SELL, qty=500)
    assert check(rm, side=BUY, qty=1).reason == MAX_POSITION


def test_partial_fill_then_cancel_releases_only_the_rest():
    rm = manager()
    rm.on_order_sent("a", "BTCUSDT", BUY, 100)
    rm.on_fill("a", "BTCUSDT", BUY, 30)
    assert rm.position_steps("BTCUSDT") == 30 and rm.open_steps("BTCUSDT", BUY) == 70
    rm.on_order_closed("a")
    assert rm.open_steps("BTCUSDT", BUY) == 0 and rm.open_orders("BTCUSDT") == 0
    # A fill reported after the cancel confirmation moves the position only.
    rm.on_fill("a", "BTCUSDT", BUY, 10)
    assert rm.position_steps("BTCUSDT") == 40 and rm.open_steps("BTCUSDT", BUY) == 0
    # An overfill report never drives the exposure negative.
    rm.on_order_sent("b", "BTCUSDT", SELL, 5)
    rm.on_fill("b", "BTCUSDT", SELL, 7)
    assert rm.open_steps("BTCUSDT", SELL) == 0 and rm.position_steps("BTCUSDT") == 33


def test_order_not_sent_is_released():
    rm = manager(max_open_orders=1)
    rm.on_order_sent("a", "BTCUSDT", BUY, 100)
    assert check(rm).reason == MAX_OPEN_ORDERS
    rm.on_order_not_sent("a")
    assert check(rm) and rm.open_steps("BTCUSDT", BUY) == 0


def test_sync_rebases_on_the_tracker():
    rm = manager()
    rm.on_order_sent("a", "BTCUSDT", BUY, 100)
    assert rm.sync("BTCUSDT", 50, [("b", SELL, 20), ("c", BUY, 5)]) is True
    assert (rm.position_steps("BTCUSDT"), rm.open_steps("BTCUSDT", BUY), rm.open_steps("BTCUSDT", SELL),
            rm.open_orders("BTCUSDT")) == (50, 5, 20, 2)
    rm.on_order_closed("a")  # forgotten by the sync: no effect
    assert rm.open_orders("BTCUSDT") == 2
    assert rm.sync("BTCUSDT", 50, [("b", SELL, 20), ("c", BUY, 5)]) is False


# -- order rate ---------------------------------------------------------------------------------------
def test_order_rate_rolling_window_boundary():
    clock = Clock(10**12)
    rm = manager(clock, max_orders_per_window=3, order_rate_window_ms=1000)
    t0 = clock.t
    for i in range(3):
        clock.t = t0 + i * 100 * MS
        assert check(rm)
        rm.on_order_sent(f"o{i}", "BTCUSDT", BUY, 1)
        rm.on_order_closed(f"o{i}")
    clock.t = t0 + 1000 * MS - 1  # the first order is still inside the window
    assert check(rm).reason == ORDER_RATE
    clock.t = t0 + 1000 * MS  # exactly one window after the first: it has left
    assert check(rm)
    rm.on_order_sent("o3", "BTCUSDT", BUY, 1)
    clock.t = t0 + 1100 * MS - 1
    assert check(rm).reason == ORDER_RATE
    assert check(rm, now=t0 + 1100 * MS)  # explicit now_ns wins over the clock


# -- breaker and kill switch -----------------------------------------------------------------------------
def test_breaker_trips_on_n_identical_codes_within_the_window():
    clock = Clock()
    halts = []
    rm = RiskManager(limits(breaker_rejections=3, breaker_window_ms=10_000), [SPOT_BTC], clock_ns=clock,
                     on_halt=halts.append)
    t0 = clock.t
    assert rm.on_venue_reject(-2010, t0) is False
    assert rm.on_venue_reject(-1013, t0 + 1) is False  # a different code does not add up
    assert rm.on_venue_reject(-2010, t0 + 2) is False
    assert not rm.halted and check(rm)
    assert rm.on_venue_reject(-2010, t0 + 10_000 * MS) is True  # 3rd within exactly 10 s: trips
    assert rm.halted and rm.breaker_trips == 1 and len(halts) == 1
    d = check(rm)
    assert d.reason == HALTED and d.detail.startswith("halted: circuit breaker: venue error -2010 3 times")
    assert rm.venue_rejections == {-2010: 3, -1013: 1}


def test_breaker_does_not_trip_when_spread_out():
    rm = manager(breaker_rejections=3, breaker_window_ms=10_000)
    t0 = 10**12
    rm.on_venue_reject(-2010, t0)
    rm.on_venue_reject(-2010, t0 + 5_000 * MS)
    assert rm.on_venue_reject(-2010, t0 + 10_000 * MS + 1) is False  # first is 1 ns too old
    assert rm.on_venue_reject(-2010, t0 + 12_000 * MS) is True  # last three within 7 s


def test_breaker_exempt_codes_only_count():
    rm = manager(breaker_rejections=2, breaker_exempt_codes=(-2010,))
    for i in range(10):
        assert rm.on_venue_reject(-2010, i) is False
    assert not rm.halted and rm.venue_rejections[-2010] == 10


def test_breaker_reset_by_resume():
    rm = manager(breaker_rejections=2)
    rm.on_venue_reject(-1021, 1)
    rm.on_venue_reject(-1021, 2)
    assert rm.halted
    assert rm.resume() is True and not rm.halted and check(rm)
    # The history was forgotten: one more rejection does not trip again.
    assert rm.on_venue_reject(-1021, 3) is False
    assert rm.on_venue_reject(-1021, 4) is True
    assert rm.breaker_trips == 2
    assert manager().resume() is False


def test_halt_is_idempotent_and_blocks_everything():
    calls = []
    rm = RiskManager(limits(), [SPOT_BTC], clock_ns=Clock(), on_halt=calls.append)
    assert rm.halt("operator kill switch") is True
    assert rm.halt("something else") is False
    assert rm.halt_reason == "operator kill switch" and calls == ["operator kill switch"]
    for kwargs in ({}, {"qty": 10**9}, {"price": -1}, {"side": "X"}):
        d = check(rm, **kwargs)
        assert not d and d.reason == HALTED and d.detail == "halted: operator kill switch"
    assert rm.rejections == {HALTED: 4}
    assert rm.check_new_order("NOPE", BUY, 1, 1).reason == HALTED


def test_a_failing_halt_callback_does_not_undo_the_halt():
    def boom(reason):
        raise RuntimeError("callback failed")

    rm = RiskManager(limits(), [SPOT_BTC], on_halt=boom)
    assert rm.halt("x") and rm.halted and check(rm).reason == HALTED


def test_checks_run_in_the_documented_order():
    rm = manager(max_open_orders=1, price_band_ticks=1, max_order_notional=Decimal("1"), max_order_steps=10)
    rm.on_order_sent("a", "BTCUSDT", BUY, 10)
    args = dict(price=10**6 + 1, qty=11, bid=100, ask=101)  # 1 USDT = 10**7 units: 10 steps at 10**6 + 1 exceed it
    assert check(rm, **args).reason == MAX_ORDER_QTY
    args["qty"] = 10
    assert check(rm, **args).reason == MAX_NOTIONAL
    args["price"] = 103
    assert check(rm, **args).reason == PRICE_BAND
    args["price"] = 101
    assert check(rm, **args).reason == MAX_OPEN_ORDERS


def test_limits_validation():
    with pytest.raises(ValueError, match="max_order_notional"):
        RiskLimits(max_order_notional=Decimal(0))


# -- model-based: the O(1) accounting equals a recount --------------------------------------------------
ops = st.lists(st.tuples(st.sampled_from(["send", "fill", "close", "not_sent"]), st.integers(0, 7),
                         st.sampled_from([BUY, SELL]), st.integers(1, 50)), max_size=80)


@settings(max_examples=300, deadline=None)
@given(ops)
def test_accounting_matches_a_recount(seq):
    rm = manager()
    model: dict[str, list] = {}  # cid -> [side, remaining]
    position = 0
    for op, i, side, qty in seq:
        cid = f"c{i}"
        if op == "send":
            rm.on_order_sent(cid, "BTCUSDT", side, qty)
            model[cid] = [side, qty]
        elif op == "fill":
            o = model.get(cid)
            s = o[0] if o else side
            rm.on_fill(cid, "BTCUSDT", s, qty)
            position += qty if s == BUY else -qty
            if o:
                o[1] = max(0, o[1] - qty)
        else:
            (rm.on_order_closed if op == "close" else rm.on_order_not_sent)(cid)
            model.pop(cid, None)
        assert rm.position_steps("BTCUSDT") == position
        assert rm.open_orders("BTCUSDT") == len(model)
        assert rm.open_steps("BTCUSDT", BUY) == sum(r for s, r in model.values() if s == BUY)
        assert rm.open_steps("BTCUSDT", SELL) == sum(r for s, r in model.values() if s == SELL)
