"""Hand-built matching and order-lifecycle scenarios of the simulated spot venue."""
from __future__ import annotations

from decimal import Decimal as D

import pytest

from engine.instruments import get_builtin
from engine.sim.exchange import Exchange, VenueError
from engine.sim.market_view import BUY, SELL, MarketView, StaticMarket
from engine.sim.matching import FeeSchedule, SymbolMatcher

BTC = get_builtin("BTCUSDT", "spot")
ETH = get_builtin("ETHUSDT", "spot")
NOW = 1_700_000_000_000


def make(bids=(("100.00", "2"),), asks=(("100.10", "1"),), **kw):
    m = StaticMarket([BTC, ETH], now_ms=NOW)
    m.set_book("BTCUSDT", bids=bids, asks=asks)
    ex = Exchange(m, clock_ms=lambda: NOW, **kw)
    events: list[dict] = []
    ex.add_listener(events.append)
    return m, ex, events


def order(ex, side, price, qty, tif="GTC", cid=None, type="LIMIT", **extra):
    p = {"symbol": "BTCUSDT", "side": side, "type": type, "quantity": qty, **extra}
    if price is not None:
        p["price"] = price
    if type == "LIMIT":
        p["timeInForce"] = tif
    if cid is not None:
        p["newClientOrderId"] = cid
    return ex.place_order(p)


def reject(fn, *args, **kw) -> VenueError:
    with pytest.raises(VenueError) as e:
        fn(*args, **kw)
    return e.value


def reports(events, order_id=None):
    return [e for e in events if e["e"] == "executionReport" and (order_id is None or e["i"] == order_id)]


def test_static_market_satisfies_protocol():
    m = StaticMarket([BTC])
    assert isinstance(m, MarketView)
    m.set_book("BTCUSDT", bids=[("99", "1"), ("100", "2")], asks=[("101", "3")])
    assert m.depth("BTCUSDT", 5) == {"lastUpdateId": 2, "bids": [["100.00000000", "2.00000000"],
                                                                 ["99.00000000", "1.00000000"]],
                                     "asks": [["101.00000000", "3.00000000"]]}
    assert m.best_bid("BTCUSDT") == (D("100"), D("2")) and m.qty_at("BTCUSDT", SELL, D("101")) == 3


# -- queue position ----------------------------------------------------------------------------
def test_queue_ahead_is_consumed_before_our_fill():
    m, ex, ev = make()
    oid = order(ex, BUY, "100.00", "1")["orderId"]
    assert ex.queue_ahead(oid) == D("2")
    m.push_trade("BTCUSDT", "100.00", "1.5", True)        # eats 1.5 of the 2 ahead
    assert ex.order(oid).executed_qty == 0 and ex.queue_ahead(oid) == D("0.5")
    m.push_trade("BTCUSDT", "100.00", "1", True)          # 0.5 ahead, then 0.5 for us
    o = ex.order(oid)
    assert (o.executed_qty, o.status) == (D("0.5"), "PARTIALLY_FILLED")
    trade = reports(ev, oid)[-1]
    assert (trade["x"], trade["l"], trade["L"], trade["m"], trade["w"]) == (
        "TRADE", "0.50000000", "100.00000000", True, True)


def test_trade_direction_matters():
    m, ex, _ = make(bids=(), asks=())
    bid = order(ex, BUY, "100.00", "1")["orderId"]
    ask = order(ex, SELL, "100.10", "1")["orderId"]
    m.push_trade("BTCUSDT", "100.00", "5", False)         # buyer aggressor: lifts asks only
    m.push_trade("BTCUSDT", "100.10", "5", True)          # seller aggressor at the ask price: bids only
    assert ex.order(bid).executed_qty == 0 and ex.order(ask).executed_qty == 0
    m.push_trade("BTCUSDT", "100.10", "0.25", False)
    m.push_trade("BTCUSDT", "100.00", "0.75", True)
    assert ex.order(ask).executed_qty == D("0.25") and ex.order(bid).executed_qty == D("0.75")


def test_one_trade_never_fills_more_than_its_quantity():
    m, ex, _ = make(bids=(), asks=())
    a = order(ex, BUY, "100.00", "1")["orderId"]
    b = order(ex, BUY, "100.00", "1")["orderId"]
    m.push_trade("BTCUSDT", "100.00", "1.5", True)
    assert (ex.order(a).executed_qty, ex.order(a).status) == (D("1"), "FILLED")
    assert (ex.order(b).executed_qty, ex.order(b).status) == (D("0.5"), "PARTIALLY_FILLED")
    assert ex.balance("BTC")[0] == D("101.5")


def test_trade_consumes_market_queue_between_our_orders():
    m, ex, _ = make(bids=(("100.00", "1"),))
    a = order(ex, BUY, "100.00", "1")["orderId"]        # 1 ahead
    m.set_level("BTCUSDT", BUY, "100.00", "3")          # 2 more joined behind a
    b = order(ex, BUY, "100.00", "1")["orderId"]        # 3 ahead (market), plus a
    m.push_trade("BTCUSDT", "100.00", "2.5", True)      # 1 ahead, 1 to a, 0.5 of the 2 between
    assert ex.order(a).status == "FILLED"
    assert ex.order(b).executed_qty == 0 and ex.queue_ahead(b) == D("1.5")
    m.push_trade("BTCUSDT", "100.00", "2", True)        # 1.5 between, 0.5 to b
    assert ex.order(b).executed_qty == D("0.5")


def test_trade_through_our_price_fills_us_with_queue_passed():
    m, ex, _ = make(bids=(("100.01", "5"), ("100.00", "2")))
    better = order(ex, BUY, "100.01", "1")["orderId"]   # 5 ahead at 100.01
    at = order(ex, BUY, "100.00", "1")["orderId"]        # 2 ahead at 100.00
    m.push_trade("BTCUSDT", "100.00", "1.2", True)      # printed below our 100.01 bid
    o = ex.order(better)
    assert (o.executed_qty, o.cum_quote) == (D("1"), D("100.01"))   # maker at our price
    assert ex.order(at).executed_qty == 0 and ex.queue_ahead(at) == D("1.8")


def test_queue_ahead_is_clamped_on_cancellations_ahead():
    m, ex, _ = make(bids=(("100.00", "2"),))
    oid = order(ex, BUY, "100.00", "1")["orderId"]
    m.set_level("BTCUSDT", BUY, "100.00", "0.5")
    assert ex.queue_ahead(oid) == D("0.5")
    m.set_level("BTCUSDT", BUY, "100.00", "4")          # growth behind us does not move us back
    assert ex.queue_ahead(oid) == D("0.5")
    m.push_trade("BTCUSDT", "100.00", "0.7", True)
    assert ex.order(oid).executed_qty == D("0.2")


def test_matcher_unit_on_trade_returns_fills_in_priority():
    m = StaticMarket([BTC])
    sm = SymbolMatcher("BTCUSDT", m)
    sm.rest(1, BUY, D("100.00"), D("1"))
    sm.rest(2, BUY, D("100.02"), D("1"))
    sm.rest(3, BUY, D("100.01"), D("1"))
    fills = sm.on_trade(D("100.00"), D("2.5"), True)
    assert [(f.order_id, f.price, f.qty) for f in fills] == [
        (2, D("100.02"), D("1")), (3, D("100.01"), D("1")), (1, D("100.00"), D("0.5"))]
    assert sum(f.qty for f in fills) == D("2.5")


# -- partial fills and cancels ------------------------------------------------------------------------
def test_cancel_of_partly_filled_order_releases_the_rest():
    m, ex, ev = make(bids=(), asks=())
    r = order(ex, BUY, "100.00", "2", cid="bid-1")
    lock = D("100.00") * 2 * D("1.001")
    assert ex.balance("USDT") == (D(1_000_000) - lock, lock)
    m.push_trade("BTCUSDT", "100.00", "0.5", True)
    c = ex.cancel_order({"symbol": "BTCUSDT", "orderId": str(r["orderId"]), "newClientOrderId": "cxl-1"})
    assert (c["status"], c["executedQty"], c["origClientOrderId"], c["clientOrderId"]) == (
        "CANCELED", "0.50000000", "bid-1", "cxl-1")
    fee = D("0.05")
    assert ex.balance("USDT") == (D(1_000_000) - D("50.00") - fee, 0)
    assert ex.balance("BTC") == (D("100.5"), 0)
    last = reports(ev)[-1]
    assert (last["x"], last["X"], last["c"], last["C"], last["z"]) == ("CANCELED", "CANCELED", "cxl-1", "bid-1",
                                                                      "0.50000000")
    # After the cancel the order no longer trades and cannot be cancelled again.
    m.push_trade("BTCUSDT", "100.00", "5", True)
    assert ex.order(r["orderId"]).executed_qty == D("0.5")
    e = reject(ex.cancel_order, {"symbol": "BTCUSDT", "orderId": str(r["orderId"])})
    assert (e.code, e.msg) == (-2011, "Unknown order sent.")
    assert ex.query_order({"symbol": "BTCUSDT", "origClientOrderId": "bid-1"})["status"] == "CANCELED"


def test_cancel_restrictions_and_unknown_orders():
    m, ex, _ = make(bids=(), asks=())
    oid = order(ex, BUY, "100.00", "1")["orderId"]
    e = reject(ex.cancel_order, {"symbol": "BTCUSDT", "orderId": str(oid),
                                 "cancelRestrictions": "ONLY_PARTIALLY_FILLED"})
    assert (e.code, e.msg) == (-2011, "Order was not canceled due to cancel restrictions.")
    assert reject(ex.cancel_order, {"symbol": "BTCUSDT", "orderId": str(oid), "cancelRestrictions": "X"}).code == -1145
    assert reject(ex.cancel_order, {"symbol": "BTCUSDT", "orderId": "999"}).code == -2011
    assert reject(ex.cancel_order, {"symbol": "BTCUSDT"}).code == -1102
    e = reject(ex.query_order, {"symbol": "BTCUSDT", "orderId": "999"})
    assert (e.code, e.msg) == (-2013, "Order does not exist.")
    assert reject(ex.query_order, {"symbol": "ETHUSDT", "orderId": str(oid)}).code == -2013
    assert reject(ex.query_order, {"symbol": "BTCUSDT", "orderId": str(oid), "origClientOrderId": "nope"}).code == -2013


def test_cancel_all_per_symbol():
    m, ex, ev = make(bids=(), asks=())
    ids = [order(ex, BUY, p, "1")["orderId"] for p in ("99.00", "99.50")]
    eth = ex.place_order({"symbol": "ETHUSDT", "side": BUY, "type": "LIMIT", "timeInForce": "GTC",
                          "price": "10.00", "quantity": "1"})["orderId"]
    out = ex.cancel_open_orders({"symbol": "BTCUSDT"})
    assert [o["orderId"] for o in out] == ids and all(o["status"] == "CANCELED" for o in out)
    assert ex.open_order_ids() == [eth]
    e = reject(ex.cancel_open_orders, {"symbol": "BTCUSDT"})
    assert (e.code, e.msg) == (-2011, "Unknown order sent.")


# -- taking liquidity -----------------------------------------------------------------------------------
def test_marketable_limit_walks_the_book_and_rests_the_rest():
    m, ex, ev = make(asks=(("100.01", "1"), ("100.02", "3"), ("100.05", "10")))
    r = order(ex, BUY, "100.02", "5", cid="sweep")
    assert [(f["price"], f["qty"]) for f in r["fills"]] == [("100.01000000", "1.00000000"),
                                                             ("100.02000000", "3.00000000")]
    assert (r["status"], r["executedQty"], r["cummulativeQuoteQty"]) == ("PARTIALLY_FILLED", "4.00000000",
                                                                        "400.07000000")
    fees = D("0.10001000") + D("0.30006000")
    assert [f["commission"] for f in r["fills"]] == ["0.10001000", "0.30006000"]
    assert ex.balance("USDT")[0] == D(1_000_000) - D("400.07") - fees - D("100.02") * D("1.001")
    assert ex.queue_ahead(r["orderId"]) == 0
    xs = [(e["x"], e["X"]) for e in reports(ev, r["orderId"])]
    assert xs == [("NEW", "NEW"), ("TRADE", "PARTIALLY_FILLED"), ("TRADE", "PARTIALLY_FILLED")]
    assert all(e["m"] is False for e in reports(ev, r["orderId"]))
    # The displayed liquidity we took is not available again before the next book update.
    r2 = order(ex, BUY, "100.02", "1", tif="IOC")
    assert (r2["status"], r2["executedQty"], r2["expiryReason"]) == ("EXPIRED", "0.00000000",
                                                                    "UNFILLED_IOC_QUANTITY_EXPIRED")
    m.set_level("BTCUSDT", SELL, "100.02", "3")
    assert order(ex, BUY, "100.02", "1", tif="IOC")["status"] == "FILLED"


def test_ioc_fok_and_market():
    m, ex, ev = make(asks=(("100.01", "1"), ("100.02", "1")))
    fok = order(ex, BUY, "100.02", "3", tif="FOK")
    assert (fok["status"], fok["fills"], fok["expiryReason"]) == ("EXPIRED", [], "UNFILLED_FOK_ORDER_EXPIRED")
    assert [e["x"] for e in reports(ev, fok["orderId"])] == ["NEW", "EXPIRED"]
    assert reports(ev, fok["orderId"])[-1]["eR"] == "UNFILLED_FOK_ORDER_EXPIRED"
    assert ex.balance("USDT") == (D(1_000_000), 0)
    mk = order(ex, BUY, None, "3", type="MARKET")
    assert (mk["status"], mk["executedQty"], mk["expiryReason"]) == ("EXPIRED", "2.00000000", "INSUFFICIENT_LIQUIDITY")
    m.set_book("BTCUSDT", bids=(("99.00", "1"), ("98.00", "5")), asks=())
    q = ex.place_order({"symbol": "BTCUSDT", "side": SELL, "type": "MARKET", "quoteOrderQty": "148"})
    # 1 @ 99 = 99, then floor((148-99)/98 to step 0.00001) = 0.5 @ 98
    assert [(f["price"], f["qty"]) for f in q["fills"]] == [("99.00000000", "1.00000000"),
                                                             ("98.00000000", "0.50000000")]
    assert (q["status"], q["origQuoteOrderQty"]) == ("FILLED", "148.00000000")


def test_limit_maker_crossing_is_rejected():
    m, ex, ev = make()
    e = reject(order, ex, BUY, "100.10", "1", type="LIMIT_MAKER")
    assert (e.code, e.msg) == (-2010, "Order would immediately match and take.")
    assert ev == [] and ex.open_order_ids() == []
    r = order(ex, BUY, "100.09", "1", type="LIMIT_MAKER")
    assert set(r) == {"symbol", "orderId", "orderListId", "clientOrderId", "transactTime"}  # ACK default


# -- validation ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("price,qty,code,msg", [
    ("100.001", "1", -1013, "Filter failure: PRICE_FILTER"),
    ("0.00", "1", -1013, "Filter failure: PRICE_FILTER"),
    ("100.00", "0.000005", -1013, "Filter failure: LOT_SIZE"),
    ("100.00", "0.000015", -1013, "Filter failure: LOT_SIZE"),
    ("1.00", "0.001", -1013, "Filter failure: NOTIONAL"),
    ("100.000000001", "1", -1111, "Parameter 'price' has too much precision."),
    ("1e3", "1", -1100, "Illegal characters found in parameter 'price'; legal range is "
                        "'^([0-9]{1,20})(\\.[0-9]{1,20})?$'."),
])
def test_filter_failures(price, qty, code, msg):
    m, ex, ev = make()
    e = reject(order, ex, BUY, price, qty)
    assert (e.code, e.msg) == (code, msg)
    assert ev == [] and ex.open_order_ids() == []


def test_parameter_errors():
    m, ex, _ = make()
    assert reject(ex.place_order, {"symbol": "NOPE", "side": BUY, "type": "LIMIT"}).code == -1121
    assert reject(ex.place_order, {"symbol": "BTCUSDT", "side": "HOLD", "type": "LIMIT"}).code == -1117
    assert reject(ex.place_order, {"symbol": "BTCUSDT", "side": BUY, "type": "ICEBERG"}).code == -1116
    e = reject(ex.place_order, {"symbol": "BTCUSDT", "side": BUY, "type": "LIMIT", "price": "1", "quantity": "1"})
    assert (e.code, e.msg) == (-1102, "Mandatory parameter 'timeInForce' was not sent, was empty/null, or malformed.")
    e = reject(order, ex, BUY, None, "1", type="MARKET", timeInForce="GTC")
    assert (e.code, e.msg) == (-1106, "Parameter 'timeInForce' sent when not required.")
    e = reject(order, ex, BUY, "100.00", "1", cid="has.dot")
    assert e.code == -1100 and "'^[a-zA-Z0-9-_]{1,36}$'" in e.msg
    assert reject(order, ex, BUY, "100.00", "1", cid="x" * 37).code == -1100
    e = reject(order, ex, BUY, None, "1", type="STOP_LOSS")
    assert (e.code, e.msg) == (-2010, "Stop loss orders are not supported for this symbol.")


def test_duplicate_client_order_id_of_open_order():
    m, ex, _ = make(bids=(), asks=())
    first = order(ex, BUY, "99.00", "1", cid="dup")
    e = reject(order, ex, BUY, "98.00", "1", cid="dup")
    assert (e.code, e.msg) == (-2010, "Duplicate order sent.")
    assert ex.received_client_order_ids["dup"] == 2 and ex.duplicate_client_order_ids() == ["dup"]
    # The cancel replaces the client id, which frees "dup" for a new order (section 5).
    ex.cancel_order({"symbol": "BTCUSDT", "origClientOrderId": "dup"})
    again = order(ex, BUY, "98.00", "1", cid="dup")
    assert again["orderId"] != first["orderId"]
    assert ex.query_order({"symbol": "BTCUSDT", "origClientOrderId": "dup"})["orderId"] == again["orderId"]
    # A FILLED order's id can be reused too; ids are unique per symbol.
    ex.place_order({"symbol": "ETHUSDT", "side": BUY, "type": "LIMIT", "timeInForce": "GTC", "price": "10.00",
                    "quantity": "1", "newClientOrderId": "dup"})


def test_insufficient_balance():
    m, ex, _ = make(bids=(), asks=(), balances={"USDT": "100", "BTC": "0.5"})
    e = reject(order, ex, BUY, "100.00", "1")            # needs 100 * 1.001 with the fee reserve
    assert (e.code, e.msg) == (-2010, "Account has insufficient balance for requested action.")
    assert reject(order, ex, SELL, "100.00", "0.6").code == -2010
    order(ex, SELL, "100.00", "0.5")
    assert ex.balance("BTC") == (0, D("0.5"))


def test_maker_fee_and_balances_exact():
    m, ex, _ = make(bids=(), asks=(), fees=FeeSchedule(maker=D("0.0002"), taker=D("0.0007")))
    oid = order(ex, SELL, "100.10", "0.12345")["orderId"]
    m.push_trade("BTCUSDT", "100.10", "1", False)
    o = ex.order(oid)
    assert o.status == "FILLED"
    notional = D("100.10") * D("0.12345")
    fee = (notional * D("0.0002")).quantize(D("0.00000001"))
    assert ex.balance("USDT") == (D(1_000_000) + notional - fee, 0)
    assert ex.balance("BTC") == (D(100) - D("0.12345"), 0)
    acct = ex.account()
    assert acct["makerCommission"] == 2 and acct["commissionRates"]["taker"] == "0.00070000"


def test_cancel_replace():
    m, ex, ev = make(bids=(), asks=(("100.10", "1"),))
    old = order(ex, BUY, "99.00", "1", cid="q1")
    ok = ex.cancel_replace({"symbol": "BTCUSDT", "cancelReplaceMode": "STOP_ON_FAILURE",
                            "cancelOrigClientOrderId": "q1", "side": BUY, "type": "LIMIT", "timeInForce": "GTC",
                            "price": "99.50", "quantity": "1", "newClientOrderId": "q1"})
    assert (ok["cancelResult"], ok["newOrderResult"]) == ("SUCCESS", "SUCCESS")
    assert ok["cancelResponse"]["origClientOrderId"] == "q1" and ok["newOrderResponse"]["clientOrderId"] == "q1"
    assert ex.order(old["orderId"]).status == "CANCELED"
    # New leg rejected (post-only would cross): cancel stays done, 409 -2021.
    new_id = ok["newOrderResponse"]["orderId"]
    e = reject(ex.cancel_replace, {"symbol": "BTCUSDT", "cancelReplaceMode": "STOP_ON_FAILURE",
                                   "cancelOrderId": str(new_id), "side": BUY, "type": "LIMIT_MAKER",
                                   "price": "100.10", "quantity": "1"})
    assert (e.code, e.status, e.data["cancelResult"], e.data["newOrderResult"]) == (-2021, 409, "SUCCESS", "FAILURE")
    assert e.data["newOrderResponse"] == {"code": -2010, "msg": "Order would immediately match and take."}
    assert ex.open_order_ids() == []
    # Unknown cancel in STOP_ON_FAILURE: nothing is attempted.
    e = reject(ex.cancel_replace, {"symbol": "BTCUSDT", "cancelReplaceMode": "STOP_ON_FAILURE", "cancelOrderId": "999",
                                   "side": BUY, "type": "LIMIT", "timeInForce": "GTC", "price": "99.00",
                                   "quantity": "1"})
    assert (e.code, e.status, e.data["newOrderResult"], e.data["newOrderResponse"]) == (
        -2022, 400, "NOT_ATTEMPTED", None)
    assert e.data["cancelResponse"] == {"code": -2011, "msg": "Unknown order sent."}
    # ALLOW_FAILURE places the new order anyway: 409.
    e = reject(ex.cancel_replace, {"symbol": "BTCUSDT", "cancelReplaceMode": "ALLOW_FAILURE", "cancelOrderId": "999",
                                   "side": BUY, "type": "LIMIT", "timeInForce": "GTC", "price": "99.00",
                                   "quantity": "1"})
    assert (e.code, e.data["newOrderResult"]) == (-2021, "SUCCESS") and len(ex.open_order_ids()) == 1


def test_events_carry_venue_fields_and_account_position():
    m, ex, ev = make(bids=(), asks=())
    r = order(ex, BUY, "100.00", "1", cid="ev1", strategyId="7", strategyType="1000000")
    new = reports(ev, r["orderId"])[0]
    required = set("e E s c S o f q p P F g C x X r i l z L n N T t I w m M O Z Y Q W V".split())
    assert required <= set(new)
    assert (new["x"], new["X"], new["c"], new["N"], new["t"], new["j"], new["J"]) == (
        "NEW", "NEW", "ev1", None, -1, 7, 1000000)
    pos = [e for e in ev if e["e"] == "outboundAccountPosition"][-1]
    assert {b["a"]: (b["f"], b["l"]) for b in pos["B"]}["USDT"] == ("999899.90000000", "100.10000000")
    assert r["strategyId"] == 7


class _Resyncing(StaticMarket):
    """A market whose book is temporarily unavailable (as during a depth resync)."""

    unavailable = False

    def depth(self, symbol: str, limit: int) -> dict:
        if self.unavailable:
            raise LookupError("book not synchronised")
        return super().depth(symbol, limit)


def test_unavailable_book_means_no_liquidity_and_keeps_queue_positions():
    m = _Resyncing([BTC], now_ms=NOW)
    m.set_book("BTCUSDT", bids=[("100.00", "3")], asks=[("100.10", "1")])
    ex = Exchange(m, clock_ms=lambda: NOW)
    oid = order(ex, BUY, "100.00", "1")["orderId"]
    m.unavailable = True
    m.set_book("BTCUSDT")                                # both sides empty: resync, not cancellations
    assert ex.queue_ahead(oid) == D("3")
    r = order(ex, BUY, None, "1", type="MARKET")
    assert (r["status"], r["executedQty"]) == ("EXPIRED", "0.00000000")
    e = reject(ex.depth, {"symbol": "BTCUSDT"})
    assert (e.code, e.status) == (-1008, 503)
    m.unavailable = False
    m.set_book("BTCUSDT", bids=[("100.00", "1")], asks=[("100.10", "1")])
    assert ex.queue_ahead(oid) == D("1")
