"""The order state machine: venue-generated histories replayed shuffled and duplicated, and the
timeout / UNKNOWN / adopt / resend-same-id / duplicate-classification paths against a fake venue.

Venue histories come from the simulator's own account (``engine.sim.exchange.Exchange``) over a
static market: its responses, executionReports and ``order.status`` answers are exactly what the
WS API would carry (venue-protocols.md 3.5, 3.6).
"""
from __future__ import annotations

import asyncio
import random
import time
from decimal import Decimal as D

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as hs

from engine.bus import BUY
from engine.instruments import get_builtin
from engine.live.wsapi import WsApiClient
from engine.orders import state as st
from engine.orders.reconcile import OrderResolver
from engine.orders.signing import HmacSigner
from engine.orders.tracker import DuplicateClientOrderId, ExecutionReport, OrderTracker
from engine.sim.exchange import Exchange, VenueError
from engine.sim.market_view import StaticMarket

BTC = get_builtin("BTCUSDT", "spot")
NOW = 1_760_000_000_000
API_KEY = "vmPUZE6mv9SD5VNHk4HlWFsOr6aKE2zvsw0MuIgwCIPy6utIco14y7Ju91duEh8A"
SECRET = "NhqPtmdSJYdKjVHjA7PZj4Mge3R5YNiP1e3UZjInClVN65XAbvqqM6A7H5fATj0j"
_er = msgspec.json.Decoder(ExecutionReport)


# -- pure transition rule -------------------------------------------------------------------------------
def test_transition_rules():
    T = st.transition
    assert T(st.PENDING_NEW, st.NEW) == st.NEW and T(st.NEW, st.PENDING_NEW) == st.NEW
    assert T(st.UNKNOWN, st.NEW) == st.NEW and T(st.UNKNOWN, st.CANCELED) == st.CANCELED
    assert T(st.PARTIALLY_FILLED, st.NEW) == st.PARTIALLY_FILLED
    assert T(st.CANCELED, st.NEW) == st.CANCELED and T(st.CANCELED, st.EXPIRED) == st.CANCELED
    assert T(st.CANCELED, st.NEW, filled_all=True) == st.FILLED
    assert st.to_unknown(st.PENDING_NEW) == st.UNKNOWN and st.to_unknown(st.NEW) == st.NEW
    assert st.to_resent(st.UNKNOWN) == st.PENDING_NEW and st.to_resent(st.NEW) == st.NEW


def test_error_classification():
    c = st.classify_place_error
    assert c(503, -1007, "Timeout") == st.OUTCOME_UNKNOWN and c(500, -1000, "x") == st.OUTCOME_UNKNOWN
    assert c(400, -1006, "Unexpected") == st.OUTCOME_UNKNOWN
    assert c(400, -2010, "Duplicate order sent.") == st.OUTCOME_DUPLICATE
    assert c(400, -4116, "ClientOrderId is duplicated.") == st.OUTCOME_DUPLICATE
    assert c(400, -2010, "Order would immediately match and take.") == st.OUTCOME_REJECTED
    assert c(429, -1015, "Too many new orders") == st.OUTCOME_REJECTED and c(400, -1021, "ts") == st.OUTCOME_REJECTED
    assert st.classify_cancel_error(400, -2011, "Unknown order sent.") == st.OUTCOME_REJECTED
    assert st.classify_cancel_error(503, -1007, "x") == st.OUTCOME_UNKNOWN


@settings(max_examples=300, deadline=None)
@given(hs.lists(hs.sampled_from(range(8)), min_size=1, max_size=12), hs.randoms(use_true_random=False))
def test_transition_is_a_join(observed, rnd):
    # Observations of one venue history: at most one terminal state.
    terminal = [o for o in observed if o in st.TERMINAL]
    obs = [o for o in observed if o not in st.TERMINAL] + terminal[:1]
    a = st.PENDING_NEW
    for o in obs:
        a = st.transition(a, o)
    shuffled = obs + [rnd.choice(obs) for _ in range(3)]
    rnd.shuffle(shuffled)
    b = st.PENDING_NEW
    for o in shuffled:
        b = st.transition(b, o)
    assert a == b


def test_py_ring_api():
    r = st.PyDedupRing(3)
    assert r.insert("a", 0, "A") and not r.insert("a", 1) and r.refused == 1
    assert r.get_state("a") == 0 and r.get_payload("a") == "A" and r.get_state("zz") == -1
    assert r.set_state("a", 4) and r.get_state("a") == 4 and not r.set_state("zz", 1)
    for c in "bcd":
        r.insert(c, 0)
    assert not r.contains("a") and r.evictions == 1 and r.len() == 3 and r.inserts == 4
    assert r.set_payload("d", 5) and r.get_payload("d") == 5


# -- venue-generated histories ----------------------------------------------------------------------------
def _venue():
    m = StaticMarket([BTC], now_ms=NOW)
    m.set_book("BTCUSDT", bids=[("59990.00", "1")], asks=[("60010.00", "1")])
    ex = Exchange(m, clock_ms=lambda: NOW, balances={"USDT": 1_000_000, "BTC": 100})
    events: list[dict] = []
    ex.add_listener(events.append)
    return m, ex, events


def venue_history(ops, qty_steps=100):
    """Run one BUY order through the simulated venue; return (messages, venue final view).

    ``ops``: ``("fill", steps)``, ``("cancel",)``, ``("status",)``. Messages are what the WS API
    would deliver: ``ack``, ``er`` (executionReport), ``cancel`` (200 body), ``cancel_err``
    (code), ``status`` (order.status body).
    """
    m, ex, events = _venue()
    msgs: list[tuple[str, object]] = []

    def drain():
        for ev in events:
            if ev.get("e") == "executionReport":
                msgs.append(("er", _er.decode(msgspec.json.encode(ev))))
        events.clear()

    qty = BTC.step_size * qty_steps
    resp = ex.place_order({"symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT", "timeInForce": "GTC",
                           "price": "60000.00", "quantity": str(qty), "newClientOrderId": "a",
                           "newOrderRespType": "ACK"})
    msgs.append(("ack", resp))
    drain()
    for op in ops:
        if op[0] == "fill":
            m.push_trade("BTCUSDT", "60000.00", str(BTC.step_size * op[1]), True)
        elif op[0] == "cancel":
            try:
                msgs.append(("cancel", ex.cancel_order({"symbol": "BTCUSDT", "origClientOrderId": "a"})))
            except VenueError as e:
                msgs.append(("cancel_err", e.code))
        else:
            msgs.append(("status", ex.query_order({"symbol": "BTCUSDT", "origClientOrderId": "a"})))
        drain()
    final = ex.query_order({"symbol": "BTCUSDT", "origClientOrderId": "a"})
    btc = sum(ex.balance("BTC")) - 100
    usdt = sum(ex.balance("USDT")) - 1_000_000
    return msgs, (final["status"], D(final["executedQty"]), btc, usdt)


def feed(tr, msgs):
    for kind, m in msgs:
        if kind == "ack":
            tr.on_place_ack("a", m)
        elif kind == "er":
            tr.on_execution_report(m)
        elif kind == "cancel":
            tr.on_cancel_ack("a", m)
        elif kind == "cancel_err":
            tr.on_cancel_error("a", 400, m, "Unknown order sent.")
        else:
            tr.on_status("a", m)


def new_tracker():
    tr = OrderTracker({"BTCUSDT": BTC})
    tr.on_place_sent("a", "BTCUSDT", BUY, 6_000_000, 100, False)
    return tr


_ops = hs.lists(hs.one_of(hs.tuples(hs.just("fill"), hs.integers(1, 60)), hs.just(("cancel",)),
                          hs.just(("status",))), max_size=8)


@settings(max_examples=250, deadline=None)
@given(ops=_ops, seed=hs.integers(0, 2 ** 32 - 1), dups=hs.integers(0, 8), timeout_at=hs.integers(-1, 10))
def test_any_order_and_duplicates_end_in_the_venues_state(ops, seed, dups, timeout_at):
    msgs, (v_status, v_exec, v_btc, v_usdt) = venue_history(ops)
    rnd = random.Random(seed)
    shuffled = msgs + [rnd.choice(msgs) for _ in range(dups)]
    rnd.shuffle(shuffled)
    tr = new_tracker()
    for i, msg in enumerate(shuffled):
        if i == timeout_at:
            # A timeout can strike at any point: it never overrides what the venue said.
            tr.on_place_timeout("a")
        feed(tr, [msg])
    o = tr.get("a")
    assert o.status == v_status and tr.state_of("a") == st.code_of(v_status)
    assert o.filled_qty == v_exec
    p = tr.positions["BTCUSDT"]
    assert p.qty == v_btc and p.cash - p.fees.get("USDT", D(0)) == v_usdt
    n_trades = sum(1 for k, m in msgs if k == "er" and m.trade_id >= 0)
    assert tr.fills - tr.reconciled_fills + tr.covered_fills == n_trades


@settings(max_examples=150, deadline=None)
@given(fills=hs.lists(hs.integers(1, 30), min_size=1, max_size=5), seed=hs.integers(0, 2 ** 32 - 1),
       cancel=hs.booleans())
def test_lost_trade_reports_are_reconciled_from_order_status(fills, seed, cancel):
    # A dropped connection loses reports (the user-data stream does not replay them): the final
    # order.status brings position and cash back to the venue's, exactly.
    ops = [("fill", f) for f in fills] + ([("cancel",)] if cancel else []) + [("status",)]
    msgs, (v_status, v_exec, v_btc, v_usdt) = venue_history(ops)
    rnd = random.Random(seed)
    kept = [m for m in msgs[:-1] if not (m[0] == "er" and rnd.random() < 0.5)] + [msgs[-1]]
    rnd.shuffle(kept)
    tr = new_tracker()
    feed(tr, kept)
    p = tr.positions["BTCUSDT"]
    assert tr.get("a").status == v_status and tr.get("a").filled_qty == v_exec
    assert p.qty == v_btc and p.cash == v_usdt + p.fees.get("USDT", D(0)) + _missing_fees(msgs, kept)


def _missing_fees(msgs, kept):
    got = {m.trade_id for k, m in kept if k == "er"}
    return sum((D(m.commission) for k, m in msgs if k == "er" and m.trade_id >= 0 and m.trade_id not in got), D(0))


def test_local_duplicate_is_refused_by_the_ring_and_never_sent():
    tr = new_tracker()
    with pytest.raises(DuplicateClientOrderId):
        tr.on_place_sent("a", "BTCUSDT", BUY, 6_000_000, 100, False)
    assert tr.local_duplicates == 1 and tr.orders_sent == 1 and tr.ring.refused == 1


# -- a fake venue behind the real WS API client (no network) -------------------------------------------------
class FakeVenue:
    """Answers the client's frames like the venue, with switchable faults.

    ``lose_next_place``: the request never reaches the venue (a cut before processing);
    ``drop_next_response``: processed, response lost; ``error_5xx_next``: processed, then 503 -1007.
    """

    def __init__(self):
        self.client: WsApiClient | None = None
        self.orders: dict[str, dict] = {}
        self.received: list[str] = []
        self.frames: list[dict] = []
        self.lose_next_place = False
        self.drop_next_response = False
        self.error_5xx_next = False
        self.next_id = 1

    def send_reuse_external_bytearray(self, msg_type, buf, offset):
        req = msgspec.json.decode(bytes(buf[offset:]))
        self.frames.append(req)
        resp = self.handle(req)
        if resp is not None:
            asyncio.get_running_loop().call_soon(self.client._on_message, msgspec.json.encode(resp))

    def handle(self, req):
        m, p, rid = req["method"], req.get("params", {}), req["id"]
        if m == "order.place":
            if self.lose_next_place:
                self.lose_next_place = False
                return None
            cid = p["newClientOrderId"]
            self.received.append(cid)
            if cid in self.orders and self.orders[cid]["status"] == "NEW":
                return {"id": rid, "status": 400, "error": {"code": -2010, "msg": "Duplicate order sent."}}
            self.orders[cid] = {"symbol": p["symbol"], "orderId": self.next_id, "clientOrderId": cid,
                                "status": "NEW", "executedQty": "0", "cummulativeQuoteQty": "0",
                                "origQty": p["quantity"], "price": p["price"], "side": p["side"]}
            self.next_id += 1
            if self.drop_next_response:
                self.drop_next_response = False
                return None
            if self.error_5xx_next:
                self.error_5xx_next = False
                return {"id": rid, "status": 503, "error": {"code": -1007, "msg": "Timeout"}}
            return {"id": rid, "status": 200, "result": {"orderId": self.orders[cid]["orderId"], "clientOrderId": cid}}
        if m == "order.status":
            o = self.orders.get(p["origClientOrderId"])
            if o is None:
                return {"id": rid, "status": 400, "error": {"code": -2013, "msg": "Order does not exist."}}
            return {"id": rid, "status": 200, "result": dict(o)}
        if m == "order.cancel":
            o = self.orders.get(p["origClientOrderId"])
            if o is None or o["status"] != "NEW":
                return {"id": rid, "status": 400, "error": {"code": -2011, "msg": "Unknown order sent."}}
            o["status"] = "CANCELED"
            return {"id": rid, "status": 200, "result": dict(o, origClientOrderId=o["clientOrderId"])}
        return {"id": rid, "status": 400, "error": {"code": -1020, "msg": "This operation is not supported."}}


class Clock:
    """Wall clock with an offset the test moves (the resolver's notion of "after the window")."""

    def __init__(self):
        self.offset_ms = 0

    def __call__(self):
        return time.time_ns() // 1_000_000 + self.offset_ms


def setup(**resolver_kw):
    tr = OrderTracker({"BTCUSDT": BTC})
    venue = FakeVenue()
    c = WsApiClient("ws://fake/ws-api/v3", HmacSigner(API_KEY, SECRET), tr, {"BTCUSDT": BTC},
                    recv_window_ms=1000, request_timeout_s=0.05)
    venue.client = c
    c.transport = venue
    c.connected = c.user_stream_active = True
    clock = Clock()
    res = OrderResolver(tr, c, recv_window_ms=1000, margin_ms=500, clock_ms=clock, **resolver_kw)
    return tr, venue, c, res, clock


def place(tr, c, cid):
    tr.on_place_sent(cid, "BTCUSDT", BUY, 5_000_000, 100, True)
    c.send_place(cid, "BTCUSDT", BUY, 5_000_000, 100, True, 0)


async def expire_now(c):
    c.expire(time.monotonic_ns() + 10 ** 9)
    await asyncio.sleep(0)


def test_timeout_makes_unknown_then_found_is_adopted(run_loop):
    async def main():
        tr, venue, c, res, clock = setup()
        venue.drop_next_response = True
        place(tr, c, "m-1-0")
        await asyncio.sleep(0.01)
        assert tr.get("m-1-0").status == "PENDING_NEW"
        await expire_now(c)
        o = tr.get("m-1-0")
        assert o.status == "UNKNOWN" and tr.timeouts == 1 and tr.orders_rejected == 0
        assert await res.settle(2.0)
        assert o.status == "NEW" and o.order_id == 1 and tr.resolved == 1 and res.found == 1
        assert venue.received == ["m-1-0"] and tr.resends == 0

    run_loop(main())


def test_not_found_waits_for_the_window_then_resends_the_same_id(run_loop):
    async def main():
        tr, venue, c, res, clock = setup()
        venue.lose_next_place = True
        place(tr, c, "m-1-0")
        await expire_now(c)
        o = tr.get("m-1-0")
        assert o.status == "UNKNOWN"
        # First "not found" is inside the window (4.4): not conclusive, no resend.
        res.step()
        await asyncio.sleep(0.02)
        assert res.not_found == 1 and res.waited_window == 1 and o.status == "UNKNOWN"
        assert o.next_check_ms == o.sent_ts_ms + 1000 + 500 and venue.received == []
        res.step()
        await asyncio.sleep(0.01)
        assert res.queries == 1  # not asked again before the window ends
        clock.offset_ms = 2000
        assert await res.settle(2.0)
        places = [f for f in venue.frames if f["method"] == "order.place"]
        assert [f["params"]["newClientOrderId"] for f in places] == ["m-1-0", "m-1-0"]
        assert venue.received == ["m-1-0"] and o.status == "NEW" and o.resends == 1 and tr.resends == 1
        assert tr.orders_sent == 1  # the same order, not a new one

    run_loop(main())


def test_not_found_after_the_window_is_abandoned_if_no_longer_wanted(run_loop):
    async def main():
        tr, venue, c, res, clock = setup()
        venue.lose_next_place = True
        place(tr, c, "m-1-0")
        await expire_now(c)
        tr.on_cancel_wanted("m-1-0")
        clock.offset_ms = 2000
        assert await res.settle(2.0)
        o = tr.get("m-1-0")
        assert o.status == "REJECTED" and o.error_code == -2013 and tr.abandoned == 1 and tr.resends == 0
        assert [f["method"] for f in venue.frames] == ["order.place", "order.status"]

    run_loop(main())


def test_5xx_is_unknown_and_resolved_by_status(run_loop):
    async def main():
        tr, venue, c, res, clock = setup()
        venue.error_5xx_next = True
        place(tr, c, "m-1-0")
        await asyncio.sleep(0.01)
        o = tr.get("m-1-0")
        assert o.status == "UNKNOWN" and tr.unknown_outcomes == 1 and tr.orders_rejected == 0
        assert await res.settle(2.0)
        assert o.status == "NEW" and venue.received == ["m-1-0"]

    run_loop(main())


def test_venue_duplicate_is_adopted_not_failed(run_loop):
    async def main():
        tr, venue, c, res, clock = setup()
        # The first attempt reached the venue but every trace of it was lost; a resend (same id)
        # meets the venue's "Duplicate order sent." (section 5): the order is adopted by query.
        venue.lose_next_place = False
        venue.drop_next_response = True
        place(tr, c, "m-1-0")
        await expire_now(c)
        o = tr.get("m-1-0")
        tr.on_place_resent("m-1-0")
        c.send_place("m-1-0", "BTCUSDT", BUY, 5_000_000, 100, True, 0)
        await asyncio.sleep(0.01)
        assert tr.venue_duplicates == 1 and o.status == "UNKNOWN" and tr.orders_rejected == 0
        assert await res.settle(2.0)
        assert o.status == "NEW" and o.order_id == 1 and len(venue.orders) == 1

    run_loop(main())


def test_late_response_after_timeout_is_applied_and_stale_errors_ignored(run_loop):
    async def main():
        tr, venue, c, res, clock = setup()
        venue.drop_next_response = True
        place(tr, c, "m-1-0")
        rid = venue.frames[-1]["id"]
        await expire_now(c)
        assert tr.get("m-1-0").status == "UNKNOWN"
        c._on_message(msgspec.json.encode({"id": rid, "status": 200, "result": {"orderId": 1}}))
        assert tr.get("m-1-0").status == "NEW" and c.late_responses == 1 and tr.resolved == 1
        assert tr.in_doubt_count() == 0
        # An error for an older attempt of a resent order cannot reject the newer attempt.
        tr.on_place_sent("m-1-1", "BTCUSDT", BUY, 5_000_000, 100, True)
        tr.on_place_timeout("m-1-1")
        tr.on_place_resent("m-1-1")
        tr.on_place_error("m-1-1", 400, -1021, "Timestamp for this request is outside of the recvWindow.", 0)
        assert tr.get("m-1-1").status == "PENDING_NEW" and tr.stale_responses == 1

    run_loop(main())


def test_connection_loss_makes_in_flight_orders_unknown(run_loop):
    async def main():
        tr, venue, c, res, clock = setup()
        venue.drop_next_response = True
        place(tr, c, "m-1-0")
        tr.on_place_sent("m-1-1", "BTCUSDT", BUY, 5_000_000, 100, True)
        c.send_place("m-1-1", "BTCUSDT", BUY, 5_000_000, 100, True, 0)
        await asyncio.sleep(0.01)
        assert tr.get("m-1-1").status == "NEW"
        c.on_ws_disconnected(venue)
        assert tr.get("m-1-0").status == "UNKNOWN" and tr.unknown_outcomes == 1
        assert tr.on_connection_lost() == 2 and tr.in_doubt_count() == 2

    run_loop(main())


# -- reconciliation at start / after a reconnect ----------------------------------------------------------
class FakeApi:
    """openOrders.status / order.cancel of a venue holding ``orders`` (client id -> order object)."""

    def __init__(self, orders):
        self.orders = orders
        self.cancelled: list[str] = []

    async def open_orders(self, symbol, timeout):
        return [dict(o) for o in self.orders.values() if o["status"] in ("NEW", "PARTIALLY_FILLED")]

    async def cancel_order(self, symbol, cid, timeout):
        o = self.orders[cid]
        o["status"] = "CANCELED"
        self.cancelled.append(cid)
        return dict(o, origClientOrderId=cid)


def _vo(cid, oid, status="NEW", executed="0"):
    return {"symbol": "BTCUSDT", "orderId": oid, "clientOrderId": cid, "status": status, "side": "BUY",
            "type": "LIMIT_MAKER", "price": "50000.00", "origQty": "0.00100", "executedQty": executed,
            "cummulativeQuoteQty": str(D(executed) * 50000)}


@pytest.mark.parametrize("foreign,cancel_own", [("cancel", True), ("leave", False)])
def test_reconcile_adopts_own_cancels_or_leaves_foreign(run_loop, foreign, cancel_own):
    from engine.orders.reconcile import owned_by, reconcile

    async def main():
        tr = OrderTracker({"BTCUSDT": BTC})
        tr.on_place_sent("mm-k0-1", "BTCUSDT", BUY, 5_000_000, 100, True)   # tracked, listed
        tr.on_place_sent("mm-k0-2", "BTCUSDT", BUY, 5_000_000, 100, True)   # tracked, not listed
        api = FakeApi({"mm-k0-1": _vo("mm-k0-1", 1), "mm-jz-9": _vo("mm-jz-9", 2, "PARTIALLY_FILLED", "0.0004"),
                       "other-7": _vo("other-7", 3)})
        rep = await reconcile(api, tr, "BTCUSDT", owned_by("mm"), reason="start", foreign=foreign,
                              cancel_own=cancel_own)
        assert rep.venue_open == 3 and rep.confirmed == ["mm-k0-1"] and rep.adopted == ["mm-jz-9"]
        assert rep.to_resolve == ["mm-k0-2"] and tr.get("mm-k0-2").need_query and tr.in_doubt_count() == 1
        adopted = tr.get("mm-jz-9")
        assert adopted.adopted and adopted.filled_qty == D("0.0004") and tr.position_qty("BTCUSDT") == 0
        assert tr.get("mm-k0-1").status == "NEW" and tr.get("mm-k0-1").order_id == 1
        if foreign == "cancel":
            assert sorted(rep.canceled) == ["mm-jz-9", "other-7"] and rep.left == []
            assert adopted.status == "CANCELED" and tr.get("other-7") is None
        else:
            assert rep.canceled == [] and rep.left == ["other-7"] and adopted.status == "PARTIALLY_FILLED"
        assert "adopted 1 [mm-jz-9]" in rep.text()

    run_loop(main())
