"""WS API round trips through WsApiSession with a fake transport."""
from __future__ import annotations

from decimal import Decimal as D

import msgspec
import pytest

from engine.instruments import get_builtin, load_exchange_info
from engine.sim.auth import (
    DEFAULT_API_KEY,
    DEFAULT_API_SECRET,
    DEFAULT_ED25519_API_KEY,
    default_ed25519_private_key,
    ed25519_sign_b64,
    hmac_sha256_hex,
    ws_payload,
)
from engine.sim.exchange import Exchange
from engine.sim.market_view import StaticMarket
from engine.sim.wsapi import WsApiSession

BTC = get_builtin("BTCUSDT", "spot")
ETH = get_builtin("ETHUSDT", "spot")
NOW = 1_760_000_000_000


class Client:
    """A fake connection: records frames the session sends."""

    def __init__(self, ex: Exchange, market: StaticMarket, **kw) -> None:
        self.frames: list[dict] = []
        self.session = WsApiSession(ex, market, lambda b: self.frames.append(msgspec.json.decode(b)), **kw)
        self._id = 0

    def call(self, method: str, params: dict | None = None, **extra) -> dict:
        self._id += 1
        req = {"id": self._id, "method": method, **extra}
        if params is not None:
            req["params"] = params
        start = len(self.frames)
        self.session.on_message(msgspec.json.encode(req))
        resp = self.frames[start]
        assert resp["id"] == self._id
        return resp

    def events(self) -> list[dict]:
        return [f for f in self.frames if "subscriptionId" in f]


def hmac_signed(params: dict) -> dict:
    p = {**params, "apiKey": DEFAULT_API_KEY, "timestamp": NOW}
    text = {k: str(v) for k, v in p.items()}
    return {**p, "signature": hmac_sha256_hex(DEFAULT_API_SECRET, ws_payload(text))}


def ed_signed(params: dict) -> dict:
    p = {**params, "apiKey": DEFAULT_ED25519_API_KEY, "timestamp": NOW}
    text = {k: str(v) for k, v in p.items()}
    return {**p, "signature": ed25519_sign_b64(default_ed25519_private_key(), ws_payload(text))}


@pytest.fixture
def env():
    m = StaticMarket([BTC, ETH], now_ms=NOW - 5)
    m.set_book("BTCUSDT", bids=[("100.00", "2")], asks=[("100.10", "1"), ("100.20", "4")])
    ex = Exchange(m, clock_ms=lambda: NOW)
    return m, ex


def test_envelope_and_rate_limits(env):
    m, ex = env
    c = Client(ex, m)
    r = c.call("time")
    assert r["status"] == 200 and r["result"] == {"serverTime": NOW}
    assert r["rateLimits"][-1]["rateLimitType"] == "REQUEST_WEIGHT" and r["rateLimits"][-1]["count"] == 1
    r = c.call("ping", {"returnRateLimits": False})
    assert r == {"id": c._id, "status": 200, "result": {}}
    r = c.call("v3/ping")
    assert r["status"] == 200
    quiet = Client(ex, m, return_rate_limits=False)
    assert "rateLimits" not in quiet.call("time")
    assert "rateLimits" in quiet.call("time", {"returnRateLimits": True})


def test_malformed_requests(env):
    m, ex = env
    c = Client(ex, m)
    c.session.on_message(b"{not json")
    assert c.frames[-1] == {"id": None, "status": 400, "error": {"code": -1135, "msg": "Invalid JSON Request"}}
    c.session.on_message(b'{"id":"x1","method":"time","params":[1]}')
    assert c.frames[-1]["id"] == "x1" and c.frames[-1]["error"]["code"] == -1135
    r = c.call("order.teleport")
    assert (r["status"], r["error"]["code"]) == (400, -1020)
    c.session.on_message(b'{"id":5}')
    assert c.frames[-1]["id"] == 5 and c.frames[-1]["error"]["code"] == -1102
    assert ex.rejects_by_code[-1135] == 2


def test_depth_and_exchange_info_parse_like_a_client(env):
    m, ex = env
    c = Client(ex, m)
    r = c.call("depth", {"symbol": "BTCUSDT", "limit": 5})
    assert r["result"]["bids"] == [["100.00000000", "2.00000000"]]
    assert r["result"]["asks"][0] == ["100.10000000", "1.00000000"]
    assert r["rateLimits"][-1]["count"] == 5
    assert c.call("depth", {"symbol": "NOPE"})["error"] == {"code": -1121, "msg": "Invalid symbol."}
    info = c.call("exchangeInfo")["result"]
    assert info["timezone"] == "UTC" and {s["symbol"] for s in info["symbols"]} == {"BTCUSDT", "ETHUSDT"}
    insts = load_exchange_info(info, "spot")
    assert insts["BTCUSDT"].tick_size == BTC.tick_size and insts["BTCUSDT"].step_size == BTC.step_size
    assert insts["ETHUSDT"].min_notional == ETH.min_notional
    one = c.call("exchangeInfo", {"symbols": ["ETHUSDT"]})["result"]["symbols"]
    assert [s["symbol"] for s in one] == ["ETHUSDT"] and one[0]["baseAsset"] == "ETH"


def test_hmac_signed_order_roundtrip_and_bad_signature(env):
    m, ex = env
    c = Client(ex, m)
    p = hmac_signed({"symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT", "timeInForce": "GTC",
                     "price": "99.00", "quantity": "0.5", "newClientOrderId": "h1"})
    r = c.call("order.place", p)
    assert r["status"] == 200 and r["result"]["clientOrderId"] == "h1" and r["result"]["status"] == "NEW"
    assert [x["rateLimitType"] for x in r["rateLimits"]] == ["ORDERS", "ORDERS", "REQUEST_WEIGHT"]
    assert r["rateLimits"][0]["count"] == 1 and r["rateLimits"][-1]["count"] == 0  # 0 weight on success
    bad = {**p, "price": "98.00"}
    r = c.call("order.place", bad)
    assert r["error"] == {"code": -1022, "msg": "Signature for this request is not valid."}
    stale = hmac_signed({"symbol": "BTCUSDT"})
    stale["timestamp"] = NOW - 6000
    stale["signature"] = hmac_sha256_hex(DEFAULT_API_SECRET, ws_payload({k: str(v) for k, v in stale.items()}))
    assert c.call("openOrders.status", stale)["error"]["code"] == -1021
    assert c.call("openOrders.status", {"symbol": "BTCUSDT"})["error"]["code"] == -1102
    r = c.call("order.place", {**p, "apiKey": "Z" * 64})
    assert (r["status"], r["error"]["code"]) == (401, -2015)
    assert ex.rejects_by_code[-1022] == 1 and ex.open_order_ids() == [1]


def test_logon_subscribe_place_cancel_status_cancel_all(env):
    m, ex = env
    c = Client(ex, m)
    other = Client(ex, m)   # a second connection, not subscribed
    r = c.call("session.logon", ed_signed({}))
    assert r["result"]["apiKey"] == DEFAULT_ED25519_API_KEY and r["result"]["authorizedSince"] == NOW
    assert c.call("userDataStream.subscribe")["result"] == {"subscriptionId": 0}
    assert c.call("session.status")["result"]["userDataStream"] is True
    assert c.call("userDataStream.subscribe")["error"]["code"] == -2035

    # Logged on: no apiKey/signature, but a timestamp is still required.
    base = {"symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT", "timeInForce": "GTC", "quantity": "1"}
    assert c.call("order.place", {**base, "price": "99.00"})["error"]["code"] == -1102
    start = len(c.frames)
    r = c.call("order.place", {**base, "price": "99.00", "newClientOrderId": "w1", "timestamp": NOW})
    oid = r["result"]["orderId"]
    after = c.frames[start:]
    assert after[0] is r                                   # response before its events
    evs = [f["event"] for f in after[1:]]
    assert [e["e"] for e in evs] == ["executionReport", "outboundAccountPosition"]
    assert all(f["subscriptionId"] == 0 for f in after[1:])
    assert (evs[0]["x"], evs[0]["i"], evs[0]["c"], evs[0]["p"]) == ("NEW", oid, "w1", "99.00000000")
    assert other.frames == []

    # A market trade fills us; the event goes to the subscribed session only.
    m.push_trade("BTCUSDT", "99.00", "0.4", True, trade_time_ms=NOW - 1)
    fill = c.events()[-2]["event"]
    assert (fill["x"], fill["X"], fill["l"], fill["m"], fill["T"]) == ("TRADE", "PARTIALLY_FILLED", "0.40000000",
                                                                      True, NOW - 1)

    st = c.call("order.status", {"symbol": "BTCUSDT", "origClientOrderId": "w1", "timestamp": NOW})["result"]
    assert (st["status"], st["executedQty"], st["isWorking"]) == ("PARTIALLY_FILLED", "0.40000000", True)

    r = c.call("order.cancel", {"symbol": "BTCUSDT", "orderId": oid, "timestamp": NOW})
    assert (r["result"]["status"], r["result"]["origClientOrderId"]) == ("CANCELED", "w1")
    cx = c.events()[-2]["event"]
    assert (cx["x"], cx["C"], cx["c"]) == ("CANCELED", "w1", r["result"]["clientOrderId"])

    for px in ("98.00", "97.00"):
        c.call("order.place", {**base, "price": px, "timestamp": NOW})
    opened = c.call("openOrders.status", {"symbol": "BTCUSDT", "timestamp": NOW})["result"]
    assert [o["price"] for o in opened] == ["98.00000000", "97.00000000"]
    r = c.call("openOrders.cancelAll", {"symbol": "BTCUSDT", "timestamp": NOW})
    assert [o["status"] for o in r["result"]] == ["CANCELED", "CANCELED"]
    assert c.call("openOrders.cancelAll", {"symbol": "BTCUSDT", "timestamp": NOW})["error"] == {
        "code": -2011, "msg": "Unknown order sent."}
    acct = c.call("account.status", {"timestamp": NOW, "omitZeroBalances": True})["result"]
    bal = {b["asset"]: b for b in acct["balances"]}
    assert bal["BTC"]["free"] == "100.40000000" and bal["USDT"]["locked"] == "0.00000000"

    # Logout ends the logon subscription with eventStreamTerminated.
    r = c.call("session.logout")
    assert r["result"]["apiKey"] is None and r["result"]["userDataStream"] is False
    assert c.frames[-1] == {"subscriptionId": 0, "event": {"e": "eventStreamTerminated", "E": NOW - 5}}
    assert c.call("order.status", {"symbol": "BTCUSDT", "orderId": oid, "timestamp": NOW})["error"]["code"] == -1102


def test_subscribe_needs_logon_signature_subscription_and_close(env):
    m, ex = env
    c = Client(ex, m)
    assert c.call("userDataStream.subscribe")["error"]["code"] == -2015
    assert c.call("session.logon", hmac_signed({}))["error"]["code"] == -2015   # Ed25519 only
    r = c.call("userDataStream.subscribe.signature", hmac_signed({}))
    assert r["result"] == {"subscriptionId": 0}
    placer = Client(ex, m)
    placer.call("order.place", hmac_signed({"symbol": "BTCUSDT", "side": "SELL", "type": "LIMIT",
                                             "timeInForce": "GTC", "price": "101.00", "quantity": "1"}))
    assert c.events()[-2]["event"]["x"] == "NEW" and placer.frames[-1]["status"] == 200
    assert c.call("session.subscriptions")["result"] == [{"subscriptionId": 0}]
    assert c.call("userDataStream.unsubscribe")["result"] == {}
    assert c.frames[-1]["event"]["e"] == "eventStreamTerminated"
    r = c.call("userDataStream.subscribe.signature", hmac_signed({}))
    assert r["result"] == {"subscriptionId": 1}
    c.session.on_close()
    n = len(c.frames)
    m.push_trade("BTCUSDT", "101.00", "1", False)
    assert ex.order(1).status == "FILLED" and len(c.frames) == n


def test_events_before_response_option(env):
    m, ex = env
    c = Client(ex, m, events_before_response=True)
    c.call("userDataStream.subscribe.signature", hmac_signed({}))
    start = len(c.frames)
    c.session.on_message(msgspec.json.encode({"id": "p", "method": "order.place", "params": hmac_signed(
        {"symbol": "BTCUSDT", "side": "BUY", "type": "MARKET", "quantity": "1.5"})}))
    kinds = ["event" if "event" in f else "response" for f in c.frames[start:]]
    assert kinds == ["event"] * 4 + ["response"]           # NEW, TRADE, TRADE, outboundAccountPosition
    resp = c.frames[-1]["result"]
    assert resp["status"] == "FILLED" and D(resp["cummulativeQuoteQty"]) == D("100.10") + D("0.5") * D("100.20")


def test_cancel_replace_status_codes(env):
    m, ex = env
    c = Client(ex, m)
    c.call("order.place", hmac_signed({"symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT", "timeInForce": "GTC",
                                        "price": "99.00", "quantity": "1", "newClientOrderId": "cr"}))
    r = c.call("order.cancelReplace", hmac_signed({
        "symbol": "BTCUSDT", "cancelReplaceMode": "STOP_ON_FAILURE", "cancelOrigClientOrderId": "cr",
        "side": "BUY", "type": "LIMIT_MAKER", "price": "100.10", "quantity": "1"}))
    assert (r["status"], r["error"]["code"], r["error"]["msg"]) == (
        409, -2021, "Order cancel-replace partially failed.")
    assert r["error"]["data"]["cancelResponse"]["status"] == "CANCELED"
