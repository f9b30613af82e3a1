"""REST front end through aiohttp's test server, on asyncio and on uvloop."""
from __future__ import annotations

import asyncio
from typing import Awaitable, Callable
from urllib.parse import urlencode

import pytest
import uvloop
from aiohttp.test_utils import TestClient, TestServer
from yarl import URL

from engine.instruments import get_builtin, load_exchange_info
from engine.sim.auth import DEFAULT_API_KEY, DEFAULT_API_SECRET, hmac_sha256_hex
from engine.sim.exchange import Exchange
from engine.sim.market_view import StaticMarket
from engine.sim.rest import make_app

BTC = get_builtin("BTCUSDT", "spot")
NOW = 1_760_000_000_000
REST_TS = 1499827319559

RUNNERS = {"asyncio": asyncio.run, "uvloop": uvloop.run}


@pytest.fixture(params=sorted(RUNNERS))
def run(request) -> Callable[[Callable[[TestClient, Exchange, StaticMarket], Awaitable[None]]], None]:
    """Run ``scenario(client, exchange, market)`` against a fresh app on the chosen loop."""

    def go(scenario, now: int = NOW) -> None:
        async def main() -> None:
            m = StaticMarket([BTC], now_ms=now)
            m.set_book("BTCUSDT", bids=[("100.00", "2")], asks=[("100.10", "1")])
            ex = Exchange(m, clock_ms=lambda: now)
            async with TestClient(TestServer(make_app(ex, m))) as client:
                await scenario(client, ex, m)

        RUNNERS[request.param](main())

    return go


def signed(pairs: list[tuple[str, str]], ts: int = NOW) -> str:
    q = urlencode([*pairs, ("timestamp", str(ts))])
    return q + "&signature=" + hmac_sha256_hex(DEFAULT_API_SECRET, q)


KEY = {"X-MBX-APIKEY": DEFAULT_API_KEY}
FORM = {"Content-Type": "application/x-www-form-urlencoded"}


def test_public_endpoints(run):
    async def scenario(c: TestClient, ex: Exchange, m: StaticMarket) -> None:
        r = await c.get("/api/v3/ping")
        assert (r.status, await r.json(), r.headers["X-MBX-USED-WEIGHT-1M"]) == (200, {}, "1")
        r = await c.get("/api/v3/time")
        assert (await r.json()) == {"serverTime": NOW}
        r = await c.get("/api/v3/depth", params={"symbol": "BTCUSDT", "limit": "500"})
        body = await r.json()
        assert body["bids"] == [["100.00000000", "2.00000000"]] and body["lastUpdateId"] == 2
        assert r.headers["X-MBX-USED-WEIGHT-1M"] == str(1 + 1 + 25)
        r = await c.get("/api/v3/exchangeInfo", params={"symbols": '["BTCUSDT"]'})
        insts = load_exchange_info(await r.read(), "spot")
        assert insts["BTCUSDT"].tick_size == BTC.tick_size
        r = await c.get("/api/v3/exchangeInfo", params={"symbol": "NOPE"})
        assert (r.status, await r.json()) == (400, {"code": -1121, "msg": "Invalid symbol."})

    run(scenario)


def test_signed_order_lifecycle(run):
    async def scenario(c: TestClient, ex: Exchange, m: StaticMarket) -> None:
        body = signed([("symbol", "BTCUSDT"), ("side", "BUY"), ("type", "LIMIT"), ("timeInForce", "GTC"),
                       ("quantity", "1"), ("price", "99.00"), ("newClientOrderId", "r1")])
        r = await c.post("/api/v3/order", data=body.encode(), headers={**KEY, **FORM})
        placed = await r.json()
        assert r.status == 200, placed
        assert (placed["status"], placed["clientOrderId"]) == ("NEW", "r1")
        assert r.headers["X-MBX-ORDER-COUNT-10S"] == "1" and r.headers["X-MBX-ORDER-COUNT-1D"] == "1"
        assert r.headers["X-MBX-USED-WEIGHT-1M"] == "0"       # successful placement costs 0 weight

        q = signed([("symbol", "BTCUSDT"), ("origClientOrderId", "r1")])
        r = await c.get(URL("/api/v3/order?" + q, encoded=True), headers=KEY)
        assert (await r.json())["orderId"] == placed["orderId"]
        r = await c.get(URL("/api/v3/openOrders?" + signed([("symbol", "BTCUSDT")]), encoded=True), headers=KEY)
        assert [o["clientOrderId"] for o in await r.json()] == ["r1"]
        assert r.headers["X-MBX-USED-WEIGHT-1M"] == str(4 + 6)

        q = signed([("symbol", "BTCUSDT"), ("orderId", str(placed["orderId"]))])
        r = await c.delete(URL("/api/v3/order?" + q, encoded=True), headers=KEY)
        cancelled = await r.json()
        assert (r.status, cancelled["status"], cancelled["origClientOrderId"]) == (200, "CANCELED", "r1")
        r = await c.delete(URL("/api/v3/openOrders?" + signed([("symbol", "BTCUSDT")]), encoded=True), headers=KEY)
        assert (r.status, await r.json()) == (400, {"code": -2011, "msg": "Unknown order sent."})
        r = await c.get(URL("/api/v3/account?" + signed([]), encoded=True), headers=KEY)
        acct = await r.json()
        assert acct["accountType"] == "SPOT" and {"asset": "BTC", "free": "100.00000000",
                                                   "locked": "0.00000000"} in acct["balances"]

    run(scenario)


def test_auth_errors(run):
    async def scenario(c: TestClient, ex: Exchange, m: StaticMarket) -> None:
        q = signed([("symbol", "BTCUSDT")])
        r = await c.get(URL("/api/v3/openOrders?" + q, encoded=True))
        assert (r.status, await r.json()) == (401, {"code": -2014, "msg": "API-key format invalid."})
        r = await c.get(URL("/api/v3/openOrders?" + q, encoded=True), headers={"X-MBX-APIKEY": "Q" * 64})
        assert (r.status, (await r.json())["code"]) == (401, -2015)
        tampered = q.replace("BTCUSDT", "ETHUSDT")
        r = await c.get(URL("/api/v3/openOrders?" + tampered, encoded=True), headers=KEY)
        assert (r.status, await r.json()) == (400, {"code": -1022, "msg": "Signature for this request is not valid."})
        stale = signed([("symbol", "BTCUSDT")], ts=NOW - 5001)
        r = await c.get(URL("/api/v3/openOrders?" + stale, encoded=True), headers=KEY)
        assert (r.status, (await r.json())["code"]) == (400, -1021)
        dup = signed([("symbol", "BTCUSDT"), ("symbol", "BTCUSDT")])
        r = await c.get(URL("/api/v3/openOrders?" + dup, encoded=True), headers=KEY)
        assert (await r.json())["code"] == -1101
        assert ex.rejects_by_code[-1022] == 1 and ex.rejects_by_code[-2014] == 1

    run(scenario)


def test_doc_vectors_pass_signature_check(run):
    # venue-protocols.md 4.1 vectors: the signature verifies, so the request fails later on the
    # (unknown) symbol, not with -1022.
    vectors = [
        ("symbol=%EF%BC%91%EF%BC%92%EF%BC%93%EF%BC%94%EF%BC%95%EF%BC%96&side=BUY&type=LIMIT&timeInForce=GTC"
         "&quantity=1&price=0.1&recvWindow=5000&timestamp=1499827319559"
         "&signature=e1353ec6b14d888f1164ae9af8228a3dbd508bc82eb867db8ab6046442f33ef3", ""),
        ("symbol=LTCBTC&side=BUY&type=LIMIT&timeInForce=GTC",
         "quantity=1&price=0.1&recvWindow=5000&timestamp=1499827319559"
         "&signature=0fd168b8ddb4876a0358a8d14d0c9f3da0e9b20c5d52b2a00fcf7d1c602f9a77"),
    ]

    async def scenario(c: TestClient, ex: Exchange, m: StaticMarket) -> None:
        for query, body in vectors:
            r = await c.post(URL("/api/v3/order?" + query, encoded=True), data=body.encode(),
                             headers={**KEY, **FORM})
            assert (r.status, await r.json()) == (400, {"code": -1121, "msg": "Invalid symbol."})
        # Signing the unencoded text while sending the encoded one fails since 2026 (4.1).
        q = vectors[0][0].rsplit("&signature=", 1)[0]
        raw = q.replace("%EF%BC%91%EF%BC%92%EF%BC%93%EF%BC%94%EF%BC%95%EF%BC%96", "１２３４５６")
        r = await c.post(URL("/api/v3/order?" + q + "&signature=" + hmac_sha256_hex(DEFAULT_API_SECRET, raw),
                             encoded=True), headers=KEY)
        assert (await r.json())["code"] == -1022

    run(scenario, now=REST_TS + 10)


def test_cancel_replace_409_and_filter_failure(run):
    async def scenario(c: TestClient, ex: Exchange, m: StaticMarket) -> None:
        body = signed([("symbol", "BTCUSDT"), ("side", "SELL"), ("type", "LIMIT"), ("timeInForce", "GTC"),
                       ("quantity", "1"), ("price", "100.005")])
        r = await c.post("/api/v3/order", data=body.encode(), headers={**KEY, **FORM})
        assert (r.status, await r.json()) == (400, {"code": -1013, "msg": "Filter failure: PRICE_FILTER"})
        assert "X-MBX-ORDER-COUNT-10S" not in r.headers
        body = signed([("symbol", "BTCUSDT"), ("side", "SELL"), ("type", "LIMIT"), ("timeInForce", "GTC"),
                       ("quantity", "1"), ("price", "101.00"), ("newClientOrderId", "s1")])
        r = await c.post("/api/v3/order", data=body.encode(), headers={**KEY, **FORM})
        assert r.status == 200
        body = signed([("symbol", "BTCUSDT"), ("cancelReplaceMode", "STOP_ON_FAILURE"),
                       ("cancelOrigClientOrderId", "s1"), ("side", "SELL"), ("type", "LIMIT_MAKER"),
                       ("quantity", "1"), ("price", "100.00")])
        r = await c.post("/api/v3/order/cancelReplace", data=body.encode(), headers={**KEY, **FORM})
        err = await r.json()
        assert (r.status, err["code"], err["data"]["cancelResult"], err["data"]["newOrderResult"]) == (
            409, -2021, "SUCCESS", "FAILURE")

    run(scenario)
