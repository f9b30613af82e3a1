"""Fuzzing the WS API client's response and event handlers (engine.live.wsapi.WsApiClient).

A client with a fake transport sends real requests (``order.place`` x N,
``order.cancel``, ``openOrders.cancelAll``) through its order path, then its
frame entry point ``on_ws_frame`` is fed sequences of: responses to those
requests (valid, error envelopes of every status and code, results of every
shape), responses to unknown ids, executionReports for our orders and others
with venue-style and broken amounts (garbage, NaN, Infinity, negative,
exponents), other user-data events, malformed envelopes, JSON garbage and
arbitrary bytes.

Properties, after every frame:

* nothing escapes ``on_ws_frame``;
* every frame is accounted for: it is a response or an event, or it failed to
  decode and is counted in ``handler_errors``;
* a bad input is counted: the first answer to an order request whose result has
  an unexpected shape in ``bad_responses``, an executionReport with an amount
  that is not a venue decimal in ``bad_reports`` (and it changes nothing);
* a handler failure caught by the client leaves the order tracker as it was (no
  half-applied frame);
* the tracker stays consistent: each order's state, status name and dedup-ring
  state agree, open orders are exactly the non-terminal ones, states only move
  forward (engine.orders.state.transition), positions are finite numbers;

and at the end, once every request has timed out (``expire``), no order is left
PENDING_NEW without an answer: each was answered or is in doubt (UNKNOWN).

Engine bugs these fuzzers found (bugs 5 and 6, fixed in 0a7db5f) are pinned by
regression tests at the end; the generators reach them again (no exclusions).
"""
from __future__ import annotations

import os
import re
import time
from decimal import Decimal
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from picows import WSMsgType

from engine.instruments import get_builtin
from engine.live.wsapi import WsApiClient
from engine.orders import state as S
from engine.orders.signing import HmacSigner
from engine.orders.tracker import OrderTracker
from engine.sim.auth import DEFAULT_API_KEY, DEFAULT_API_SECRET

# MM_FUZZ_EXAMPLES=5000 for a deep run; the default keeps the suite quick.
FUZZ = settings(max_examples=int(os.environ.get("MM_FUZZ_EXAMPLES", "300")), deadline=None,
                suppress_health_check=[HealthCheck.too_slow])
SYMBOL = "BTCUSDT"
INST = get_builtin(SYMBOL, "spot")


# -- fakes --------------------------------------------------------------------------------------------------
class FakeTransport:
    """Records what the client writes; never fails."""

    def __init__(self) -> None:
        self.sent: list[dict] = []
        self.is_close_frame_sent = False

    def send_reuse_external_bytearray(self, msg_type, buf, offset) -> None:
        self.sent.append(msgspec.json.decode(bytes(buf[offset:])))

    def send(self, msg_type, data) -> None:
        self.sent.append(msgspec.json.decode(data))

    def send_pong(self, data=b"") -> None:
        pass

    def send_ping(self, data=b"") -> None:
        pass

    def send_close(self, *a) -> None:
        self.is_close_frame_sent = True

    def disconnect(self, graceful: bool = True) -> None:
        pass


class Frame:
    """What picows hands to on_ws_frame: a finished TEXT frame."""

    msg_type = WSMsgType.TEXT
    fin = True

    def __init__(self, data: bytes) -> None:
        self._data = data

    def get_payload_as_bytes(self) -> bytes:
        return self._data


class Updates:
    """Order listener: every status each order went through."""

    def __init__(self) -> None:
        self.states: dict[str, list[str]] = {}

    def on_order_update(self, u) -> None:
        self.states.setdefault(u.client_order_id, []).append(u.status)

    def on_fill(self, f) -> None:
        pass


def make_client(n_orders: int, cancel: bool = True,
                cancel_all: bool = True) -> tuple[WsApiClient, OrderTracker, Updates, FakeTransport, list[str]]:
    upd = Updates()
    tracker = OrderTracker({SYMBOL: INST}, listener=upd)
    client = WsApiClient("ws://127.0.0.1:1/ws-api/v3", HmacSigner(DEFAULT_API_KEY, DEFAULT_API_SECRET), tracker,
                         {SYMBOL: INST})
    tr = FakeTransport()
    client.on_ws_connected(tr)
    client.user_stream_active = True
    cids = []
    for i in range(n_orders):
        cid = f"fz-{i}"
        side = "BUY" if i % 2 == 0 else "SELL"
        tracker.on_place_sent(cid, SYMBOL, side, 6_000_000 + i, 100, True)
        client.send_place(cid, SYMBOL, side, 6_000_000 + i, 100, True, 0)
        cids.append(cid)
    if cancel:
        tracker.on_cancel_sent(cids[0])
        client.send_cancel(cids[0], SYMBOL, 0)
    if cancel_all:
        tracker.on_cancel_all_sent(SYMBOL)
        client.send_cancel_all(SYMBOL)
    assert [m["id"] for m in tr.sent] == list(range(1, n_orders + 1 + cancel + cancel_all))
    return client, tracker, upd, tr, cids


# -- frame strategies -------------------------------------------------------------------------------------------
ints = st.one_of(st.integers(-3, 3), st.integers(0, 2**40), st.integers(-(2**63), 2**63 - 1))
scalars = st.one_of(st.none(), st.booleans(), ints, st.floats(allow_nan=False, allow_infinity=False),
                    st.text(max_size=10))
values = st.recursive(scalars, lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=4), c, max_size=3),
                      max_leaves=8)
# Venue-style decimal strings, and what a broken relay or venue bug could put there instead.
VENUE_AMOUNTS = st.one_of(st.sampled_from(["0", "0.00000000", "0.00100000", "0.00050000", "0.00100", "1",
                                           "60000.00", "60000.01000000", "0.01"]),
                          st.decimals(min_value=0, max_value=10**6, places=8, allow_nan=False,
                                      allow_infinity=False).map(lambda d: format(d, "f")))
BROKEN_AMOUNTS = st.one_of(st.sampled_from(["", "NaN", "nan", "sNaN", "Infinity", "-Infinity", "-0.5", "1e400",
                                            "1E-3", "abc", " 1", "1 ", "0x10", "1,5", "1.2.3", "+1", "\u0661",
                                            ".", "1.", "123456789012345678901", "0." + "0" * 21 + "1"]),
                           st.text(max_size=8))
AMOUNTS = st.one_of(VENUE_AMOUNTS, VENUE_AMOUNTS, VENUE_AMOUNTS, BROKEN_AMOUNTS)
# A venue amount: plain ASCII decimal, no sign, no exponent, at most 20 + 20 digits.
_VENUE_AMOUNT = re.compile(r"[0-9]{1,20}(?:\.[0-9]{1,20})?", re.ASCII)


def amount_ok(v: Any) -> bool:
    return type(v) is str and _VENUE_AMOUNT.fullmatch(v) is not None


statuses = st.sampled_from(["NEW", "PARTIALLY_FILLED", "FILLED", "CANCELED", "REJECTED", "EXPIRED", "PENDING_CANCEL",
                            "EXPIRED_IN_MATCH", "PENDING_NEW", "", "BOGUS"])
exec_types = st.sampled_from(["NEW", "TRADE", "CANCELED", "REJECTED", "EXPIRED", "REPLACED", "TRADE_PREVENTION", "X"])


def one_of_or(valid, wrong=values, p_wrong: int = 4):
    """Mostly ``valid``; one time in ``p_wrong`` anything."""
    return st.integers(0, p_wrong - 1).flatmap(lambda i: wrong if i == 0 else valid)


@st.composite
def execution_report(draw, cids, plausible: bool = True):
    amounts = AMOUNTS
    cid = draw(st.sampled_from(cids + ["other-1", ""]))
    ev: dict[str, Any] = {
        "e": "executionReport", "E": draw(ints), "s": draw(st.sampled_from([SYMBOL, SYMBOL, "ETHUSDT"])),
        "c": cid, "S": draw(st.sampled_from(["BUY", "SELL"])), "o": "LIMIT_MAKER", "f": "GTC",
        "q": draw(amounts), "p": draw(amounts), "x": draw(exec_types), "X": draw(statuses),
        "r": "NONE", "i": draw(st.integers(-1, 20)), "l": draw(amounts), "z": draw(amounts), "L": draw(amounts),
        "n": draw(amounts), "N": draw(st.sampled_from([None, "USDT", "BTC", "BNB"])), "T": draw(ints),
        "t": draw(st.integers(-1, 30)), "m": draw(st.booleans()), "C": draw(st.sampled_from(["", "", *cids])),
    }
    if not plausible:
        # Structurally valid, wrongly typed: msgspec must refuse it before the tracker sees it.
        key = draw(st.sampled_from(sorted(ev)))
        ev[key] = draw(values.filter(lambda v: not isinstance(v, str) or key in ("E", "T", "i", "t", "m")))
    if draw(st.integers(0, 3)) == 0:
        ev.pop(draw(st.sampled_from(sorted(ev))))
    return {"subscriptionId": draw(st.sampled_from([0, 0, 1, None])), "event": ev}


@st.composite
def place_result(draw, cids):
    kind = draw(st.integers(0, 4))
    if kind == 0:
        return {}
    if kind == 4:
        return draw(values)
    res: dict[str, Any] = {"symbol": SYMBOL, "orderId": draw(st.integers(0, 20)), "orderListId": -1,
                           "clientOrderId": draw(st.sampled_from(cids)), "transactTime": draw(st.integers(0, 2**41))}
    if kind >= 2:
        res["status"] = draw(statuses)
    if kind == 3:
        res["fills"] = draw(st.lists(st.fixed_dictionaries(
            {"price": AMOUNTS, "qty": AMOUNTS, "commission": AMOUNTS,
             "commissionAsset": st.sampled_from(["USDT", "BTC"]), "tradeId": st.integers(0, 30)}), max_size=3))
    return res


@st.composite
def response(draw, n_requests, cids):
    rid = draw(st.one_of(st.integers(1, n_requests), st.integers(1, n_requests), st.integers(n_requests + 1, 999)))
    if draw(st.booleans()):
        result = draw(st.one_of(place_result(cids), st.lists(place_result(cids), max_size=2), values))
        return {"id": rid, "status": 200, "result": result}
    err: dict[str, Any] = {
        "code": draw(st.sampled_from([-1003, -1015, -2010, -2011, -2013, -1007, -1006, -1021, -2015, 0])),
        "msg": draw(st.sampled_from(["Duplicate order sent.", "Unknown order sent.", "Too many requests queued.",
                                     "Order would immediately match and take.", ""])),
    }
    if draw(st.booleans()):
        err["data"] = draw(st.one_of(st.fixed_dictionaries({"serverTime": st.integers(0, 2**41),
                                                            "retryAfter": st.integers(0, 2**41)}),
                                     st.dictionaries(st.text(max_size=4), scalars, max_size=2)))
    env = {"id": rid, "status": draw(st.sampled_from([400, 401, 403, 409, 418, 429, 500, 503])), "error": err}
    if draw(st.booleans()):
        env["rateLimits"] = [{"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10, "limit": 50,
                              "count": draw(st.integers(0, 60))}]
    return env


@st.composite
def malformed_envelope(draw, n_requests):
    """Envelope fields of the wrong type or shape (msgspec must refuse most of them)."""
    env: dict[str, Any] = {"id": draw(one_of_or(st.integers(1, n_requests), values, 2)),
                           "status": draw(one_of_or(st.sampled_from([200, 400, 503]), values, 2))}
    which = draw(st.integers(0, 4))
    if which == 0:
        env["result"] = draw(values)
    elif which == 1:
        env["error"] = draw(values)
    elif which == 2:
        env["event"] = draw(values)
        env["subscriptionId"] = draw(values)
    elif which == 3:
        env["error"] = {"code": draw(values), "msg": draw(values)}
    else:
        env.update(draw(st.dictionaries(st.text(max_size=5), values, max_size=3)))
    return env


other_events = st.sampled_from([
    {"subscriptionId": 0, "event": {"e": "outboundAccountPosition", "E": 1, "u": 1, "B": []}},
    {"subscriptionId": 0, "event": {"e": "balanceUpdate", "E": 1, "a": "BTC", "d": "1.0", "T": 1}},
    {"subscriptionId": 0, "event": {"e": "serverShutdown", "E": 1}},
    {"subscriptionId": 7, "event": {"e": "eventStreamTerminated", "E": 1}},
    {"subscriptionId": 0, "event": {"e": 5}},
    {"subscriptionId": 0, "event": []},
    {"event": "executionReport"},
])


def frames(n_requests: int, cids: list[str]):
    enc = msgspec.json.encode
    json_frames = st.one_of(
        response(n_requests, cids).map(enc),
        execution_report(cids).map(enc),
        execution_report(cids, plausible=False).map(enc),
        malformed_envelope(n_requests).map(enc),
        other_events.map(enc),
    )

    @st.composite
    def damaged(draw):
        b = bytearray(draw(json_frames))
        i = draw(st.integers(0, max(0, len(b) - 1)))
        if draw(st.booleans()):
            del b[i:]
        else:
            b[i:i] = draw(st.binary(min_size=1, max_size=3))
        return bytes(b)

    return st.one_of(json_frames, json_frames, json_frames, damaged(), st.binary(max_size=80))


# -- invariants ------------------------------------------------------------------------------------------------
def tracker_state(tracker: OrderTracker, cids: list[str]) -> tuple:
    orders = []
    for cid in cids:
        o = tracker.get(cid)
        orders.append((o.state, o.status, o.acked, o.order_id, o.filled_qty, o.cum_quote, o.cancel_pending,
                       o.need_query, o.max_z, tuple(o.trades)))
    pos = tuple((s, p.qty, p.cash, tuple(sorted(p.fees.items()))) for s, p in sorted(tracker.positions.items()))
    return tuple(orders), pos


def check_consistent(tracker: OrderTracker, upd: Updates, cids: list[str]) -> None:
    open_ids = {o.client_order_id for o in tracker.open_orders()}
    for cid in cids:
        o = tracker.get(cid)
        assert o is not None and 0 <= o.state < len(S.NAMES)
        assert o.status == S.NAMES[o.state] and tracker.state_of(cid) == o.state
        assert (o.state not in S.TERMINAL) == (cid in open_ids), (cid, o.status)
        seen = upd.states.get(cid, [])
        for a, b in zip(["PENDING_NEW"] + seen, seen):
            ca, cb = S.CODES[a], S.CODES[b]
            # Forward only; a terminal state is kept unless the fills complete the order (FILLED).
            assert S.RANK[cb] >= S.RANK[ca] or (ca, cb) == (S.UNKNOWN, S.PENDING_NEW), (cid, seen)
            assert ca not in S.TERMINAL or cb == S.FILLED, (cid, seen)
    for p in tracker.positions.values():
        assert p.qty.is_finite() and p.cash.is_finite() and all(v.is_finite() for v in p.fees.values())


def lenient_json(data: bytes) -> tuple[Any, bool]:
    """The frame as JSON (None if it is not), and whether it holds invalid UTF-8 (then it is unreadable)."""
    try:
        return msgspec.json.decode(data), False
    except UnicodeDecodeError:
        try:
            return msgspec.json.decode(data.decode("utf-8", "replace").encode()), True
        except msgspec.DecodeError:
            return None, True
    except msgspec.DecodeError:
        return None, False


def place_ack_ok(r: Any) -> bool:
    """An order.place body of the venue's shape (3.5): ids are ints, amounts venue decimals."""
    if not isinstance(r, dict) or type(r.get("orderId", -1)) is not int or type(r.get("transactTime", 0)) is not int:
        return False
    if not (r.get("status") is None or isinstance(r.get("status"), str)):
        return False
    fills = r.get("fills")
    fills = [] if fills is None else fills
    return isinstance(fills, list) and all(
        isinstance(f, dict) and type(f.get("tradeId")) is int and amount_ok(f.get("price"))
        and amount_ok(f.get("qty")) and amount_ok(f.get("commission", "0"))
        and (f.get("commissionAsset") is None or isinstance(f.get("commissionAsset"), str)) for f in fills)


def cancel_report_ok(r: Any) -> bool:
    """An order.cancel / openOrders.cancelAll report of the venue's shape (3.5)."""
    return isinstance(r, dict) and type(r.get("orderId", -1)) is int and all(
        r.get(k) is None or isinstance(r.get(k), str) for k in ("origClientOrderId", "clientOrderId"))


def bad_answer(data: bytes, n_places: int) -> int | None:
    """The request id of an order-path 200 answer whose result has an unexpected shape, else None."""
    env, unreadable = lenient_json(data)
    if not isinstance(env, dict) or env.get("status") != 200 or env.get("error") is not None:
        return None
    rid = env.get("id")
    if type(rid) is not int or not 1 <= rid <= n_places + 2 or "result" not in env:
        return None
    res = env["result"]
    if rid <= n_places:
        ok = place_ack_ok(res)
    elif rid == n_places + 1:
        ok = res is None or cancel_report_ok(res)
    else:
        ok = isinstance(res, list) and all(cancel_report_ok(r) for r in res)
    return rid if unreadable or not ok else None


def bad_report(data: bytes) -> bool:
    """True if the frame is an executionReport with an amount that is not a venue decimal."""
    env, unreadable = lenient_json(data)
    ev = env.get("event") if isinstance(env, dict) else None
    if unreadable or not isinstance(ev, dict) or ev.get("e") != "executionReport":
        return False
    amounts = [ev.get(k, "0") for k in ("l", "L", "q", "p")] + [ev.get("n") or "0"]
    if ev.get("z", "") != "":
        amounts.append(ev.get("z"))
    return not all(amount_ok(a) for a in amounts if isinstance(a, str))


class Harness:
    """One client, its tracker, and the per-frame properties."""

    def __init__(self, n_orders: int) -> None:
        self.client, self.tracker, self.upd, self.tr, self.cids = make_client(n_orders)
        self.answered: set[int] = set()

    def feed(self, data: bytes) -> None:
        client, tracker, cids = self.client, self.tracker, self.cids
        before = tracker_state(tracker, cids)
        n_resp, n_ev, errs = client.responses, client.events, client.handler_errors
        bad_resp = tracker.bad_responses + client.bad_responses
        bad_rep, reports = tracker.bad_reports, client.execution_reports
        client.handler_errors = 0  # keeps the client logging every failure (it logs the first 10)
        client.on_ws_frame(client.transport, Frame(data))  # must not raise
        failed = client.handler_errors
        client.handler_errors = errs + failed
        handled = client.responses - n_resp + client.events - n_ev
        assert handled == 1 or (handled == 0 and failed >= 1), data
        if failed:
            # A frame the client gave up on changed nothing.
            assert tracker_state(tracker, cids) == before, data
        if client.responses > n_resp and not failed:
            env, _ = lenient_json(data)
            rid = bad_answer(data, len(cids))
            if rid is not None and rid not in self.answered:
                # First answer to a pending order request, of an unexpected shape: counted, no answer.
                assert tracker.bad_responses + client.bad_responses > bad_resp, data
            if isinstance(env, dict) and type(env.get("id")) is int:
                self.answered.add(env["id"])
        if client.execution_reports > reports and not failed and bad_report(data):
            # An executionReport with an unreadable amount: counted, nothing applied.
            assert tracker.bad_reports == bad_rep + 1 and tracker_state(tracker, cids) == before, data
        check_consistent(tracker, self.upd, cids)


@FUZZ
@given(data=st.data(), n_orders=st.integers(1, 4))
def test_client_handlers_never_raise_and_keep_the_tracker_consistent(data, n_orders):
    h = Harness(n_orders)
    for frame in data.draw(st.lists(frames(n_orders + 2, h.cids), max_size=25)):
        h.feed(frame)
    # Every request times out: no order is left waiting for an answer that cannot come.
    h.client.expire(time.monotonic_ns() + 10**12)
    stuck = [c for c in h.cids if h.tracker.get(c).state == S.PENDING_NEW and not h.tracker.get(c).acked]
    assert not stuck, stuck
    check_consistent(h.tracker, h.upd, h.cids)


# -- regression tests: engine bugs found by the fuzzers ------------------------------------------------------
BUG5 = ("engine bug 5: a 200 answer on the order path whose result has an unexpected shape raises in the "
        "tracker (on_place_ack / on_cancel_ack / on_cancel_all_ack) after the request left the pending table: "
        "the order is neither settled nor put in doubt, expire() cannot see it, nothing queries it; a cancel "
        "clears cancel_pending before failing")


@pytest.mark.parametrize("result", [b"null", b"[]", b'"ok"', b"1", b'{"orderId":"x1"}'])
def test_bug5_malformed_place_ack_leaves_the_order_in_doubt(result):
    client, tracker, upd, tr, cids = make_client(1)
    client.on_ws_frame(client.transport, Frame(b'{"id":1,"status":200,"result":' + result + b"}"))
    client.expire(time.monotonic_ns() + 10**12)
    # An answer the client cannot read is no answer: the outcome is unknown (UNKNOWN, then order.status).
    assert tracker.get(cids[0]).state == S.UNKNOWN and tracker.bad_responses + client.bad_responses == 1


@pytest.mark.parametrize("request_,result", [("cancel", b"false"), ("cancel", b'"orderId"'),
                                             ("cancel", b'{"orderId":"x"}'), ("cancel_all", b"[1,2]"),
                                             ("cancel_all", b'[{"origClientOrderId":"fz-0","orderId":"x"}]')])
def test_bug5_malformed_cancel_ack_puts_the_order_in_doubt(request_, result):
    client, tracker, upd, tr, cids = make_client(1, cancel=request_ == "cancel", cancel_all=request_ == "cancel_all")
    client.on_ws_frame(client.transport, Frame(b'{"id":1,"status":200,"result":{"orderId":5}}'))
    client.on_ws_frame(client.transport, Frame(b'{"id":2,"status":200,"result":' + result + b"}"))
    client.expire(time.monotonic_ns() + 10**12)
    o = tracker.get(cids[0])
    # Either the cancel was applied, or its outcome is in doubt and will be queried.
    assert o.state == S.CANCELED or cids[0] in {x.client_order_id for x in tracker.in_doubt()}


def report(cid: str, **changes: Any) -> bytes:
    ev = {"e": "executionReport", "E": 1, "s": SYMBOL, "c": cid, "S": "BUY", "o": "LIMIT_MAKER", "f": "GTC",
          "q": "0.00100000", "p": "60000.00", "x": "TRADE", "X": "PARTIALLY_FILLED", "r": "NONE", "i": 5,
          "l": "0.00050000", "z": "0.00050000", "L": "60000.00", "n": "0", "N": "USDT", "T": 1, "t": 11, "m": True,
          "C": ""}
    ev.update(changes)
    return msgspec.json.encode({"subscriptionId": 0, "event": ev})


BUG6 = ("engine bug 6: executionReport amounts are parsed after the tracker was changed (order acked, trade id "
        "registered, position booked): a report with an unreadable or non-finite amount leaves NaN/Infinity in the "
        "position, or burns the trade id so that the genuine report of that trade is dropped as a duplicate")


@pytest.mark.parametrize("bad", [{"l": "abc"}, {"l": "0.000x5"}, {"l": "NaN"}])
def test_bug6_unreadable_report_does_not_swallow_the_genuine_one(bad):
    client, tracker, upd, tr, cids = make_client(1)
    client.on_ws_frame(client.transport, Frame(b'{"id":1,"status":200,"result":{"orderId":5}}'))
    client.on_ws_frame(client.transport, Frame(report(cids[0], **bad)))
    assert tracker.bad_reports == 1 and tracker.positions[SYMBOL].qty == 0
    client.on_ws_frame(client.transport, Frame(report(cids[0])))
    assert tracker.positions[SYMBOL].qty == Decimal("0.0005") and tracker.get(cids[0]).filled_qty == Decimal("0.0005")


@pytest.mark.parametrize("bad", [{"l": "NaN"}, {"l": "Infinity", "z": "Infinity"}, {"n": "NaN"}, {"L": "NaN"},
                                 {"L": "1e400"}])
def test_bug6_non_finite_amounts_never_reach_the_position(bad):
    client, tracker, upd, tr, cids = make_client(1)
    client.on_ws_frame(client.transport, Frame(b'{"id":1,"status":200,"result":{"orderId":5}}'))
    client.on_ws_frame(client.transport, Frame(report(cids[0], **bad)))
    p = tracker.positions[SYMBOL]
    assert p.qty.is_finite() and p.cash.is_finite() and all(v.is_finite() for v in p.fees.values())
    assert abs(p.cash) < 10**12
