"""WS API fault injection (engine.sim.faults) through WsApiSession with a fake transport."""
from __future__ import annotations

import asyncio

import msgspec
import pytest
import uvloop

from engine.instruments import get_builtin
from engine.sim.auth import DEFAULT_API_KEY, DEFAULT_API_SECRET, hmac_sha256_hex, ws_payload
from engine.sim.exchange import Exchange
from engine.sim.faults import PROFILES, WsApiFaults
from engine.sim.market_view import StaticMarket
from engine.sim.wsapi import WsApiSession

BTC = get_builtin("BTCUSDT", "spot")
NOW = 1_760_000_000_000


def signed(params: dict) -> dict:
    p = {**params, "apiKey": DEFAULT_API_KEY, "timestamp": NOW}
    return {**p, "signature": hmac_sha256_hex(DEFAULT_API_SECRET, ws_payload({k: str(v) for k, v in p.items()}))}


def env():
    m = StaticMarket([BTC], now_ms=NOW - 5)
    m.set_book("BTCUSDT", bids=[("100.00", "2")], asks=[("100.10", "1")])
    return m, Exchange(m, clock_ms=lambda: NOW)


class Conn:
    """A fake connection: frames sent, and whether the session cut it."""

    def __init__(self, faults=None):
        self.m, self.ex = env()
        self.frames: list[dict] = []
        self.cut = 0
        kw = {} if faults is None else {"faults": faults, "close": self.close}
        self.session = WsApiSession(self.ex, self.m, lambda b: self.frames.append(msgspec.json.decode(b)), **kw)
        self.id = 0

    def close(self):
        self.cut += 1

    def send(self, method, params=None):
        self.id += 1
        req = {"id": self.id, "method": method}
        if params is not None:
            req["params"] = params
        self.session.on_message(msgspec.json.encode(req))
        return self.id

    def subscribe(self):
        self.send("userDataStream.subscribe.signature", signed({}))

    def place(self, cid, price="99.00"):
        return self.send("order.place", signed({"symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT_MAKER",
                                                "price": price, "quantity": "1.00000", "newClientOrderId": cid}))

    def responses(self, rid):
        return [f for f in self.frames if f.get("id") == rid]

    def reports(self):
        return [f["event"] for f in self.frames if f.get("event", {}).get("e") == "executionReport"]


def script(c: Conn):
    c.subscribe()
    for i in range(5):
        c.place(f"x-{i}")
    c.send("order.cancel", signed({"symbol": "BTCUSDT", "origClientOrderId": "x-1"}))
    c.send("order.status", signed({"symbol": "BTCUSDT", "origClientOrderId": "x-2"}))
    c.send("openOrders.status", signed({"symbol": "BTCUSDT"}))


def test_no_profile_changes_nothing():
    plain, none = Conn(), Conn(WsApiFaults("none", seed=3))
    script(plain)
    script(none)
    assert plain.frames == none.frames and none.cut == 0
    assert none.session._faults.requests == 6 and not none.session._faults.injected


def test_drop_processes_but_sends_no_response():
    c = Conn(WsApiFaults("none", drop=1.0))
    c.subscribe()
    rid = c.place("a")
    assert c.responses(rid) == [] and len(c.ex.open_order_ids()) == 1
    assert [r["X"] for r in c.reports()] == ["NEW"] and c.session._faults.injected == {"drop": 1}


def test_cut_before_never_reaches_the_venue():
    c = Conn(WsApiFaults("none", cut_before=1.0, min_requests_between_cuts=0))
    c.subscribe()
    rid = c.place("a")
    assert c.cut == 1 and c.responses(rid) == [] and c.ex.open_order_ids() == []
    assert c.ex.received_client_order_ids == {}
    assert c.session._faults.log == [(1, "order.place", "cut_before", "a")]


def test_cut_after_places_then_loses_response_and_events():
    c = Conn(WsApiFaults("none", cut_after=1.0, min_requests_between_cuts=0))
    c.subscribe()
    rid = c.place("a")
    assert c.cut == 1 and c.responses(rid) == [] and c.reports() == []
    assert len(c.ex.open_order_ids()) == 1 and c.ex.received_client_order_ids == {"a": 1}


def test_cuts_are_bounded_and_spaced():
    f = WsApiFaults("none", cut_before=1.0, max_cuts=2, min_requests_between_cuts=3)
    decisions = [f.decide("order.place") for _ in range(12)]
    assert decisions.count("cut_before") == 2 and f.cuts == 2
    assert decisions[0] == "cut_before" and decisions[1:4] == [None, None, None]


def test_5xx_after_placing():
    c = Conn(WsApiFaults("none", error_5xx=1.0))
    c.subscribe()
    rid = c.place("a")
    (r,) = c.responses(rid)
    assert r["status"] == 503 and r["error"]["code"] == -1007 and "unknown" in r["error"]["msg"]
    assert len(c.ex.open_order_ids()) == 1 and c.ex.rejects_by_code[-1007] == 1
    # A request the venue rejects keeps its real answer.
    rid = c.place("b", price="100.10")  # LIMIT_MAKER would take
    (r,) = c.responses(rid)
    assert r["status"] == 400 and r["error"]["code"] == -2010


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_delay_and_event_duplicates_and_reorder(loop):
    factory = asyncio.new_event_loop if loop == "asyncio" else uvloop.new_event_loop

    async def main():
        c = Conn(WsApiFaults("none", delay=1.0, delay_s=0.05, dup_events=1.0, reorder_events=1.0,
                             reorder_hold_s=0.02))
        c.subscribe()
        rid = c.place("a")
        assert c.responses(rid) == [] and c.reports() == []
        await asyncio.sleep(0.03)
        # Held and duplicated: two copies of the NEW report, both before the delayed response.
        assert [r["X"] for r in c.reports()] == ["NEW", "NEW"] and c.responses(rid) == []
        await asyncio.sleep(0.05)
        assert c.responses(rid)[0]["status"] == 200
        # Nothing is sent once the session is closed.
        rid = c.place("b")
        c.session.on_close()
        await asyncio.sleep(0.1)
        assert c.responses(rid) == []

    with asyncio.Runner(loop_factory=factory) as r:
        r.run(asyncio.wait_for(main(), 10))


def test_same_seed_same_faults():
    def log(seed):
        f = WsApiFaults("chaos", seed=seed, min_requests_between_cuts=5)
        return [f.decide(m, str(i)) for i, m in enumerate(["order.place", "order.cancel", "depth"] * 2000)]

    assert log(5) == log(5) and log(5) != log(6)
    assert set(PROFILES) >= {"none", "drop", "delay", "5xx", "reorder", "cut-before", "cut-after", "chaos"}
