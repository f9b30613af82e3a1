"""The order path: client order ids, signing (venue-protocols.md section 4 vectors), tracker, WS API encoding."""
from __future__ import annotations

import base64
import hashlib
import hmac
import pickle
import random
import re
from decimal import Decimal as D

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.bus import BUY, CANCELED, FILLED, NEW, PARTIALLY_FILLED, PENDING_NEW, REJECTED, SELL, ConnectionEvent
from engine.instruments import get_builtin
from engine.live.wsapi import OrderFormatter, WsApiClient, format_scaled
from engine.orders.ids import (ClientOrderIdGenerator, base36, is_valid_client_order_id, next_restart_epoch,
                               parse_client_order_id)
from engine.orders.signing import Ed25519Signer, HmacSigner, rest_encode, ws_payload
from engine.orders.tracker import DuplicateClientOrderId, ExecutionReport, OrderTracker

BTC = get_builtin("BTCUSDT", "spot")
FUT = get_builtin("BTCUSDT", "usdm")
SPOT_CID = re.compile(r"^[a-zA-Z0-9-_]{1,36}$")  # venue-protocols.md section 5

# Binance's illustrative key pair (venue-protocols.md 4.1).
API_KEY = "vmPUZE6mv9SD5VNHk4HlWFsOr6aKE2zvsw0MuIgwCIPy6utIco14y7Ju91duEh8A"
SECRET = "NhqPtmdSJYdKjVHjA7PZj4Mge3R5YNiP1e3UZjInClVN65XAbvqqM6A7H5fATj0j"


# -- client order ids ---------------------------------------------------------------------------
def test_ids_format_and_uniqueness():
    g = ClientOrderIdGenerator("mm01", next_restart_epoch(now_ms=1_760_000_000_000))
    ids = [g.next() for _ in range(50_000)]
    assert len(set(ids)) == len(ids)
    for cid in ids[:100] + ids[-100:]:
        assert SPOT_CID.match(cid) and is_valid_client_order_id(cid) and len(cid) <= 36
    assert parse_client_order_id(ids[0]) == ("mm01", 1_760_000_000_000, 0)
    assert parse_client_order_id(ids[-1]) == ("mm01", 1_760_000_000_000, 49_999)
    assert g.issued == 50_000 and g.owns(ids[7]) and not g.owns("x-" + ids[7])


def test_ids_unique_across_restarts_with_epoch_file(tmp_path):
    state = tmp_path / "epoch"
    # Same wall-clock ms, then a clock that went back: epochs still strictly increase.
    e1 = next_restart_epoch(state, now_ms=1_760_000_000_000)
    e2 = next_restart_epoch(state, now_ms=1_760_000_000_000)
    e3 = next_restart_epoch(state, now_ms=1_700_000_000_000)
    assert e1 < e2 < e3
    runs = [ClientOrderIdGenerator("mm", e) for e in (e1, e2, e3)]
    seen = set()
    for g in runs:
        for _ in range(2000):
            cid = g.next()
            assert cid not in seen
            seen.add(cid)
    # Without a state file two restarts in the same ms would collide: the file is what prevents it.
    assert ClientOrderIdGenerator("mm", 5).next() == ClientOrderIdGenerator("mm", 5).next()


def test_ids_refuse_bad_prefix_and_overflow():
    for bad in ("", "a-b", "a_b", "abcdefghijk", "é", "a.b"):
        with pytest.raises(ValueError):
            ClientOrderIdGenerator(bad, 1)
    # 10 + 1 + 12 + 1 + 13 = 37 characters: refused, never truncated.
    g = ClientOrderIdGenerator("abcdefghij", 36 ** 12 - 1, start=36 ** 12)
    with pytest.raises(ValueError):
        g.next()
    assert base36(0) == "0" and base36(35) == "z" and base36(36) == "10"


def test_epoch_file_must_hold_an_integer(tmp_path):
    p = tmp_path / "epoch"
    p.write_text("garbage")
    with pytest.raises(ValueError):
        next_restart_epoch(p)


# -- signing: official vectors (venue-protocols.md 4.1, 4.2) ---------------------------------------
REST_PAYLOAD = ("symbol=LTCBTC&side=BUY&type=LIMIT&timeInForce=GTC&quantity=1&price=0.1"
                "&recvWindow=5000&timestamp=1499827319559")


def test_rest_hmac_vector():
    s = HmacSigner(API_KEY, SECRET)
    assert s.sign_rest(REST_PAYLOAD) == "c8db56825ae71d6d79447849e617115f4a920fa2acdcab2b053c4b2838bd6b71"
    params = [("symbol", "LTCBTC"), ("side", "BUY"), ("type", "LIMIT"), ("timeInForce", "GTC"), ("quantity", 1),
              ("price", D("0.1")), ("recvWindow", 5000), ("timestamp", 1499827319559)]
    assert rest_encode(params) == REST_PAYLOAD
    assert s.signed_rest_query(params) == (
        REST_PAYLOAD + "&signature=c8db56825ae71d6d79447849e617115f4a920fa2acdcab2b053c4b2838bd6b71")


def test_rest_hmac_vector_non_ascii_is_percent_encoded():
    s = HmacSigner(API_KEY, SECRET)
    params = [("symbol", "１２３４５６"), ("side", "BUY"), ("type", "LIMIT"), ("timeInForce", "GTC"),
              ("quantity", "1"), ("price", "0.1"), ("recvWindow", "5000"), ("timestamp", "1499827319559")]
    q = rest_encode(params)
    assert q.startswith("symbol=%EF%BC%91%EF%BC%92%EF%BC%93%EF%BC%94%EF%BC%95%EF%BC%96&side=BUY")
    assert s.sign_rest(q) == "e1353ec6b14d888f1164ae9af8228a3dbd508bc82eb867db8ab6046442f33ef3"


def test_rest_hmac_vector_query_plus_body():
    s = HmacSigner(API_KEY, SECRET)
    sig = s.sign_rest("symbol=LTCBTC&side=BUY&type=LIMIT&timeInForce=GTC",
                      "quantity=1&price=0.1&recvWindow=5000&timestamp=1499827319559")
    assert sig == "0fd168b8ddb4876a0358a8d14d0c9f3da0e9b20c5d52b2a00fcf7d1c602f9a77"


WS_PARAMS = {"symbol": "BTCUSDT", "side": "SELL", "type": "LIMIT", "timeInForce": "GTC",
             "quantity": "0.01000000", "price": "52000.00", "recvWindow": 100, "timestamp": 1645423376532}


def test_ws_hmac_vector():
    s = HmacSigner(API_KEY, SECRET)
    p = s.signed_ws_params(dict(WS_PARAMS))
    assert ws_payload(p) == (
        "apiKey=vmPUZE6mv9SD5VNHk4HlWFsOr6aKE2zvsw0MuIgwCIPy6utIco14y7Ju91duEh8A&price=52000.00"
        "&quantity=0.01000000&recvWindow=100&side=SELL&symbol=BTCUSDT&timeInForce=GTC"
        "&timestamp=1645423376532&type=LIMIT")
    assert p["signature"] == "aa1b5712c094bc4e57c05a1a5c1fd8d88dcd628338ea863fec7b88e59fe2db24"
    assert p["apiKey"] == API_KEY
    # Re-signing ignores the old signature.
    assert s.signed_ws_params(p)["signature"] == "aa1b5712c094bc4e57c05a1a5c1fd8d88dcd628338ea863fec7b88e59fe2db24"


def test_ws_hmac_vectors_non_ascii_and_old_docs():
    s = HmacSigner(API_KEY, SECRET)
    na = {"symbol": "１２３４５６", "side": "BUY", "type": "LIMIT", "timeInForce": "GTC",
          "quantity": "1.00000000", "price": "0.10000000", "recvWindow": 5000, "timestamp": 1645423376532}
    assert s.signed_ws_params(na)["signature"] == \
        "b33892ae8e687c939f4468c6268ddd4c40ac1af18ad19a064864c47bae0752cd"
    old = dict(WS_PARAMS, newOrderRespType="ACK")
    assert s.signed_ws_params(old)["signature"] == \
        "cc15477742bd704c29492d96c7ead9414dfd8e0ec4a00f947bb5bb454ddbd08a"


def test_ed25519_signs_the_same_payload_base64():
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    seed = hashlib.sha256(b"test key").digest()
    s = Ed25519Signer("edkey", seed)
    p = s.signed_ws_params(dict(WS_PARAMS))
    sig = base64.b64decode(p["signature"], validate=True)
    assert len(sig) == 64
    pub = Ed25519PrivateKey.from_private_bytes(seed).public_key()
    pub.verify(sig, ws_payload(p).encode())  # raises if wrong
    with pytest.raises(Exception):
        pub.verify(sig, ws_payload(dict(p, price="52000.01")).encode())
    # PEM input gives the same key.
    from cryptography.hazmat.primitives import serialization
    pem = Ed25519PrivateKey.from_private_bytes(seed).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    assert Ed25519Signer("edkey", pem).sign("x") == s.sign("x")
    with pytest.raises(ValueError):
        Ed25519Signer("edkey", b"not a pem at all, not 32 bytes")


def test_secrets_never_in_repr_or_pickle():
    s = HmacSigner(API_KEY, SECRET)
    for text in (repr(s), str(s), f"{s}", repr([s])):
        assert SECRET not in text and SECRET[:8] not in text
    with pytest.raises(TypeError):
        pickle.dumps(s)
    e = Ed25519Signer("edkey", bytes(32))
    assert "edkey" in repr(e) and "PRIVATE" not in repr(e)
    with pytest.raises(TypeError):
        pickle.dumps(e)
    from engine.live.runner import RunConfig
    cfg = RunConfig(streams_url="ws://x", ws_api_url="ws://y", signer=s)
    assert SECRET not in repr(cfg)


# -- formatting ------------------------------------------------------------------------------------
def test_order_formatter_exact_strings():
    f = OrderFormatter(BTC)
    assert f.price(6_000_001) == "60000.01" and f.price(1) == "0.01" and f.price(100) == "1.00"
    assert f.qty(100) == "0.00100" and f.qty(1) == "0.00001" and f.qty(123_456_789) == "1234.56789"
    g = OrderFormatter(FUT)  # tick 0.10, step 0.001
    assert g.price(600_001) == "60000.1" and g.qty(5) == "0.005"
    assert format_scaled(5, 0) == "5" and format_scaled(-5, 2) == "-0.05"


@given(st.integers(1, 10 ** 12), st.integers(1, 10 ** 12))
def test_order_formatter_matches_decimal(ticks, steps):
    for inst in (BTC, FUT):
        f = OrderFormatter(inst)
        p, q = f.price(ticks), f.qty(steps)
        assert "E" not in p and "e" not in q
        assert D(p) == inst.ticks_to_price(ticks) and inst.price_to_ticks(p) == ticks
        assert D(q) == inst.steps_to_qty(steps) and inst.qty_to_steps(q) == steps


# -- tracker ---------------------------------------------------------------------------------------
class Rec:
    def __init__(self):
        self.updates = []
        self.fills = []

    def on_order_update(self, u):
        self.updates.append(u)

    def on_fill(self, f):
        self.fills.append(f)


def report(cid, x, X, *, oid=7, l="0", z="0", L="0", t=-1, C="", n="0", N=None, side=BUY, q="0.00300", p="60000.00"):
    return ExecutionReport(symbol="BTCUSDT", client_order_id=cid, side=side, exec_type=x, status=X, order_id=oid,
                           last_qty=l, cum_qty=z, last_price=L, trade_id=t, orig_client_order_id=C,
                           commission=n, commission_asset=N, qty=q, price=p)


def new_tracker():
    rec = Rec()
    return OrderTracker({"BTCUSDT": BTC}, rec), rec


def test_tracker_lifecycle_position_and_pnl_exact():
    tr, rec = new_tracker()
    tr.on_place_sent("a", "BTCUSDT", BUY, 6_000_000, 300, True)
    assert tr.get("a").status == PENDING_NEW and tr.orders_sent == 1 and tr.open_count() == 1
    tr.on_place_ack("a", {"symbol": "BTCUSDT", "orderId": 7, "clientOrderId": "a", "transactTime": 1})
    assert tr.get("a").status == NEW and tr.get("a").order_id == 7 and tr.orders_acked == 1
    tr.on_execution_report(report("a", "NEW", "NEW"))
    tr.on_execution_report(report("a", "TRADE", "PARTIALLY_FILLED", l="0.00100", z="0.00100", L="60000.00", t=11,
                                  n="0.06", N="USDT"))
    assert tr.get("a").status == PARTIALLY_FILLED and tr.position_steps("BTCUSDT") == 100
    tr.on_execution_report(report("a", "TRADE", "FILLED", l="0.00200", z="0.00300", L="59999.99", t=12,
                                  n="0.11999998", N="USDT"))
    o = tr.get("a")
    assert o.status == FILLED and o.filled_steps == 300 and not o.is_open and tr.open_count() == 0
    assert tr.position_steps("BTCUSDT") == 300 and tr.position_qty("BTCUSDT") == D("0.003")
    cash = -(D("60000.00") * D("0.001") + D("59999.99") * D("0.002"))
    assert tr.positions["BTCUSDT"].cash == cash
    assert tr.pnl("BTCUSDT", D("60001")) == cash + D("0.003") * D("60001") - D("0.17999998")
    assert [u.status for u in rec.updates] == [NEW, PARTIALLY_FILLED, FILLED]
    assert [(f.trade_id, f.qty_steps, f.price_ticks) for f in rec.fills] == [(11, 100, 6_000_000), (12, 200, 5_999_999)]
    assert tr.fills == 2 and tr.duplicate_fills == 0


def _scenario(k_fills: int, cancel: bool, complete: bool = True):
    """In-order messages of one BUY order of 10 steps: ack, NEW, k fills, maybe a cancel (c=new id, C=ours).

    ``complete=False`` (and no cancel) leaves the order open, partially filled.
    """
    msgs = [("ack", {"orderId": 7, "clientOrderId": "a"}), ("er", report("a", "NEW", "NEW", q="0.00010"))]
    filled = 0
    partial = cancel or not complete
    per = 10 if not partial and k_fills == 1 else 2
    for i in range(k_fills):
        q = per if (partial or i < k_fills - 1) else 10 - filled
        filled += q
        status = "FILLED" if filled == 10 else "PARTIALLY_FILLED"
        msgs.append(("er", report("a", "TRADE", status, l=f"0.0000{q}" if q < 10 else "0.00010",
                                  z=str(D(filled) / 100000), L="60000.00", t=100 + i, n="0.01", N="USDT",
                                  q="0.00010")))
    if cancel:
        msgs.append(("cancel", None))
        msgs.append(("er", report("venueGeneratedId", "CANCELED", "CANCELED", C="a", z=str(D(filled) / 100000),
                                  q="0.00010")))
    return msgs, filled


def _apply(tr, msgs):
    for kind, m in msgs:
        if kind == "ack":
            tr.on_place_ack("a", m)
        elif kind == "cancel":
            tr.on_cancel_ack("a", {"orderId": 7, "origClientOrderId": "a", "status": "CANCELED"})
        else:
            tr.on_execution_report(m)


def _state(tr):
    o = tr.get("a")
    p = tr.positions["BTCUSDT"]
    return (o.status, o.filled_steps, o.order_id, p.steps, p.qty, p.cash, dict(p.fees), tr.fills,
            tr.orders_acked, tr.cancels, tr.open_count())


_RANKS = {PENDING_NEW: 0, NEW: 1, PARTIALLY_FILLED: 2, FILLED: 3, CANCELED: 3}


@settings(max_examples=400, deadline=None)
@given(k=st.integers(0, 4), cancel=st.booleans(), complete=st.booleans(), seed=st.integers(0, 2 ** 32 - 1),
       dup=st.integers(0, 6))
def test_tracker_idempotent_under_duplicated_and_reordered_reports(k, cancel, complete, seed, dup):
    if k == 0 and not cancel:
        complete = False
    msgs, filled = _scenario(k, cancel, complete)
    ref, _ = new_tracker()
    ref.on_place_sent("a", "BTCUSDT", BUY, 6_000_000, 10, True)
    _apply(ref, msgs)
    expected = _state(ref)
    assert expected[0] == (CANCELED if cancel else FILLED if complete else PARTIALLY_FILLED if k else NEW)
    assert expected[1] == filled and expected[3] == filled and expected[7] == k

    rnd = random.Random(seed)
    shuffled = msgs + [rnd.choice(msgs) for _ in range(dup)]
    rnd.shuffle(shuffled)
    tr, rec = new_tracker()
    tr.on_place_sent("a", "BTCUSDT", BUY, 6_000_000, 10, True)
    _apply(tr, shuffled)
    assert _state(tr) == expected
    assert tr.duplicate_fills == sum(1 for kd, m in shuffled if kd == "er" and m.trade_id >= 0) - k
    # Updates never go backwards once terminal, and each fill is reported once.
    assert len(rec.fills) == k and len({f.trade_id for f in rec.fills}) == k
    statuses = [u.status for u in rec.updates]
    ranks = [_RANKS[x] for x in statuses]
    assert ranks == sorted(ranks) and len(set(statuses)) == len(statuses)  # forward only, no repeats
    assert statuses[-1] == expected[0]


def test_cancel_report_is_matched_by_its_original_client_id():
    # The venue's cancel report carries the cancel's own id in c and ours in C (section 5); it may
    # arrive before anything told us the orderId.
    tr, rec = new_tracker()
    tr.on_place_sent("a", "BTCUSDT", BUY, 6_000_000, 10, True)
    tr.on_execution_report(report("x7Yq2", "CANCELED", "CANCELED", oid=99, C="a"))
    assert tr.get("a").status == CANCELED and tr.get("a").order_id == 99 and tr.unknown_reports == 0
    assert tr.cancels == 1 and tr.open_count() == 0


def test_tracker_rejections_duplicates_and_unknown_outcomes():
    tr, rec = new_tracker()
    tr.on_place_sent("a", "BTCUSDT", SELL, 6_000_000, 10, True)
    tr.on_place_error("a", 400, -2010, "Order would immediately match and take.")
    assert tr.get("a").status == REJECTED and tr.orders_rejected == 1 and tr.rejects_by_code == {-2010: 1}
    assert tr.open_count() == 0 and rec.updates[-1].error_code == -2010
    with pytest.raises(DuplicateClientOrderId):
        tr.on_place_sent("a", "BTCUSDT", SELL, 6_000_000, 10, True)
    assert tr.duplicate_client_order_ids == 1 and tr.orders_sent == 1
    tr.on_place_sent("b", "BTCUSDT", SELL, 6_000_000, 10, True)
    tr.on_place_error("b", 400, -2010, "Duplicate order sent.")
    assert tr.duplicate_client_order_ids == 2 and tr.rejects_by_code[-2010] == 2
    tr.on_place_sent("c", "BTCUSDT", SELL, 6_000_000, 10, True)
    tr.on_place_error("c", 503, -1006, "Unexpected response")
    # 5xx = unknown outcome (6.1): UNKNOWN, never failed; a venue duplicate (b) is adopted, not a
    # rejection (engine.orders.state).
    assert tr.get("c").status == "UNKNOWN" and tr.unknown_outcomes == 1 and tr.orders_rejected == 1
    assert tr.get("b").status == "UNKNOWN" and tr.venue_duplicates == 1
    # The report settles the unknown outcome.
    tr.on_execution_report(report("c", "NEW", "NEW", side=SELL))
    assert tr.get("c").status == NEW and tr.orders_acked == 1


def test_tracker_full_response_fills_deduplicated_with_reports():
    tr, rec = new_tracker()
    tr.on_place_sent("a", "BTCUSDT", BUY, 6_000_000, 10, False)
    tr.on_place_ack("a", {"orderId": 9, "status": "FILLED", "transactTime": 5,
                          "fills": [{"price": "60000.00", "qty": "0.00010", "commission": "0.006",
                                     "commissionAsset": "USDT", "tradeId": 55}]})
    tr.on_execution_report(report("a", "TRADE", "FILLED", oid=9, l="0.00010", z="0.00010", L="60000.00", t=55,
                                  n="0.006", N="USDT", q="0.00010"))
    assert tr.fills == 1 and tr.duplicate_fills == 1 and tr.position_steps("BTCUSDT") == 10
    assert tr.get("a").status == FILLED and tr.positions["BTCUSDT"].fees == {"USDT": D("0.006")}


def test_tracker_cancel_all_and_foreign_fills():
    tr, rec = new_tracker()
    for c in ("a", "b", "c"):
        tr.on_place_sent(c, "BTCUSDT", BUY, 6_000_000, 10, True)
    tr.on_cancel_all_sent("BTCUSDT")
    assert all(o.cancel_pending for o in tr.open_orders())
    tr.on_cancel_all_ack("BTCUSDT", [{"origClientOrderId": "a", "orderId": 1, "clientOrderId": "x1"},
                                     {"origClientOrderId": "b", "orderId": 2, "clientOrderId": "x2"}])
    assert tr.get("a").status == CANCELED and tr.get("b").status == CANCELED and tr.cancels == 2
    assert [o.client_order_id for o in tr.open_orders()] == ["c"] and not tr.get("c").cancel_pending
    assert tr.reconcile_open("BTCUSDT", [{"clientOrderId": "c", "orderId": 3}]) == 0
    assert tr.reconcile_open("BTCUSDT", []) == 1 and tr.open_count() == 0
    # A fill of an order this run does not know still moves the account's position.
    tr.on_execution_report(report("old-run-1", "TRADE", "FILLED", oid=999, l="0.00020", L="60000.00", t=77,
                                  side=SELL))
    assert tr.foreign_fills == 1 and tr.position_steps("BTCUSDT") == -20 and tr.unknown_reports == 1


# -- WS API client encoding and routing (no network) ------------------------------------------------
class FakeTransport:
    def __init__(self):
        self.frames: list[dict] = []

    def send_reuse_external_bytearray(self, msg_type, buf, offset):
        self.frames.append(msgspec.json.decode(bytes(buf[offset:])))


class FakeFeed:
    def __init__(self):
        self.snaps = []

    def on_snapshot(self, symbol, snap, source, ts):
        self.snaps.append((symbol, snap.last_update_id, source))


def connected_client(signer=None, **kw):
    tr, rec = new_tracker()
    events: list[ConnectionEvent] = []
    c = WsApiClient("ws://test/ws-api/v3", signer or HmacSigner(API_KEY, SECRET), tr, {"BTCUSDT": BTC},
                    recv_window_ms=5000, on_connection=events.append, **kw)
    c.transport = FakeTransport()
    c.connected = True
    c.user_stream_active = True
    c.subscription_id = 0
    return c, tr, rec, events


def test_wsapi_order_place_params_and_signature():
    c, tr, rec, _ = connected_client()
    tr.on_place_sent("mm-1-0", "BTCUSDT", BUY, 6_000_001, 100, True)
    c.send_place("mm-1-0", "BTCUSDT", BUY, 6_000_001, 100, True, trigger_rx_ns=1)
    f = c.transport.frames[-1]
    assert f["method"] == "order.place" and isinstance(f["id"], int)
    p = f["params"]
    assert p["type"] == "LIMIT_MAKER" and "timeInForce" not in p  # LIMIT_MAKER takes no timeInForce (3.4)
    assert (p["price"], p["quantity"], p["newClientOrderId"]) == ("60000.01", "0.00100", "mm-1-0")
    assert p["apiKey"] == API_KEY and p["recvWindow"] == 5000 and isinstance(p["timestamp"], int)
    want = hmac.new(SECRET.encode(), ws_payload(p).encode(), hashlib.sha256).hexdigest()
    assert p["signature"] == want
    assert len(c.tick_to_order_ns) == 1 and c.tick_to_order_ns[0] > 0
    c.send_place("mm-1-1", "BTCUSDT", SELL, 6_000_001, 100, False, trigger_rx_ns=0)
    p = c.transport.frames[-1]["params"]
    assert p["type"] == "LIMIT" and p["timeInForce"] == "GTC"
    assert len(c.tick_to_order_ns) == 1  # no market frame triggered it
    ids = [fr["id"] for fr in c.transport.frames]
    assert len(set(ids)) == len(ids)


def test_wsapi_logged_on_session_sends_only_timestamp():
    c, tr, _, _ = connected_client(Ed25519Signer("edkey", bytes(32)))
    c.logged_on = True
    c.send_cancel("mm-1-0", "BTCUSDT", 0)
    p = c.transport.frames[-1]["params"]
    assert c.transport.frames[-1]["method"] == "order.cancel"
    assert set(p) == {"symbol", "origClientOrderId", "timestamp", "recvWindow"}


def test_wsapi_routes_responses_and_events():
    c, tr, rec, events = connected_client()
    feed = FakeFeed()
    c.feed = feed
    tr.on_place_sent("a", "BTCUSDT", BUY, 6_000_000, 10, True)
    c.send_place("a", "BTCUSDT", BUY, 6_000_000, 10, True, 0)
    rid = c.transport.frames[-1]["id"]
    tr.on_place_sent("b", "BTCUSDT", BUY, 6_000_000, 10, True)
    c.send_place("b", "BTCUSDT", BUY, 6_000_000, 10, True, 0)
    rid_b = c.transport.frames[-1]["id"]
    # Event before the response (the venue may order them either way).
    ev = {"subscriptionId": 0, "event": {"e": "executionReport", "E": 1, "s": "BTCUSDT", "c": "a", "S": "BUY",
                                         "o": "LIMIT_MAKER", "f": "GTC", "q": "0.00010", "p": "60000.00",
                                         "x": "NEW", "X": "NEW", "i": 5, "l": "0", "z": "0", "L": "0",
                                         "t": -1, "C": "", "T": 1, "m": False, "w": True, "I": 1, "O": 1}}
    c._on_message(msgspec.json.encode(ev))
    c._on_message(msgspec.json.encode({"id": rid, "status": 200, "result": {"orderId": 5, "clientOrderId": "a"}}))
    c._on_message(msgspec.json.encode({"id": rid_b, "status": 400,
                                       "error": {"code": -2010, "msg": "Order would immediately match and take."}}))
    assert tr.get("a").status == NEW and tr.get("a").order_id == 5 and tr.orders_acked == 1
    assert tr.get("b").status == REJECTED and tr.rejects_by_code == {-2010: 1}
    assert c.execution_reports == 1 and len(c.order_rtt_ns) == 2 and not c._pending
    # Snapshot request -> feed.on_snapshot.
    assert c.request_snapshot("BTCUSDT", 100) and not c.request_snapshot("BTCUSDT", 100)
    rid = c.transport.frames[-1]["id"]
    assert c.transport.frames[-1] == {"id": rid, "method": "depth", "params": {"symbol": "BTCUSDT", "limit": 100}}
    c._on_message(msgspec.json.encode({"id": rid, "status": 200, "result": {
        "lastUpdateId": 42, "bids": [["60000.00", "1.0"]], "asks": [["60000.01", "2.0"]]}}))
    assert feed.snaps == [("BTCUSDT", 42, "ws-api")] and c.snapshots_received == 1
    # serverShutdown and the end of the user stream are reported.
    c._on_message(b'{"event":{"e":"serverShutdown","E":5}}')
    c._on_message(b'{"subscriptionId":0,"event":{"e":"eventStreamTerminated","E":6}}')
    assert [(e.name, e.state) for e in events] == [("ws-api", "shutdown"), ("ws-api", "disconnected")]
    assert c.server_shutdown and not c.ready
    c._on_message(b'{"subscriptionId":0,"event":{"e":"outboundAccountPosition","E":1,"u":1,"B":[]}}')
    assert c.events == 4 and c.handler_errors == 0
