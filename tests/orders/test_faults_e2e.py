"""Order entry under injected WS API faults, end to end against the simulator, thousands of orders.

The simulator's WS API drops, delays and 5xx-answers order requests, cuts the connection before
and after the venue processed them, and duplicates and reorders executionReports
(engine.sim.faults). The engine must still: send every client order id to the venue at most once,
never leave an order open on the venue that it does not know, end every order in the venue's
state, and hold exactly the venue's position (fills are the only source of it).
"""
from __future__ import annotations

import asyncio
from decimal import Decimal as D

from churn import Churn

from engine.live.runner import RunConfig, run
from engine.orders.signing import HmacSigner
from engine.sim.auth import DEFAULT_API_KEY, DEFAULT_API_SECRET
from engine.sim.exchange import VenueError
from engine.sim.faults import WsApiFaults
from engine.sim.server import start_simulator
from engine.sim.synthetic import SyntheticConfig, SyntheticSource

START = {"USDT": D(1_000_000), "BTC": D(100)}
# The simulator charges commission in the quote asset at this rate (FeeSchedule default).
FEE_RATE = D("0.001")


def config(handle, strategy, done, **kw) -> RunConfig:
    # Short timeouts and windows keep the wall time down: a response later than 0.3 s is a
    # timeout, the recvWindow is 1 s (the resolver waits 1.5 s before "not found" is final).
    kw.setdefault("max_ws_reconnects", 20)
    return RunConfig(streams_url=handle.streams_url, ws_api_url=handle.ws_api_url,
                     signer=HmacSigner(DEFAULT_API_KEY, DEFAULT_API_SECRET), strategy=strategy,
                     timer_interval_s=0.01, duration_s=45.0, stop_when=done, handle_sigint=False,
                     order_timeout_s=0.3, recv_window_ms=1000, status_margin_ms=500, resolve_timeout_s=10.0, **kw)


async def watch(handle, strat, stop: asyncio.Event, seen: list):
    """Every 20 ms: each order open on the venue is one the engine knows, and knows to be open."""
    ex = handle.exchange
    while not stop.is_set():
        await asyncio.sleep(0.02)
        tracker = getattr(getattr(strat, "ctx", None), "tracker", None)
        if tracker is None:
            continue
        for row in ex.open_orders({"symbol": "BTCUSDT"}):
            cid = row["clientOrderId"]
            o = tracker.get(cid)
            if o is None or not o.is_open:
                seen.append((cid, None if o is None else o.status))
        seen.append(None)


async def run_with_faults(faults: WsApiFaults, strat_kw: dict, seed: int):
    handle = await start_simulator(SyntheticSource(SyntheticConfig(seed=seed)), ws_api_faults=faults)
    stop = asyncio.Event()
    seen: list = []
    try:
        done = asyncio.get_running_loop().create_future()
        strat = Churn(done=done, seed=seed, **strat_kw)
        watcher = asyncio.get_running_loop().create_task(watch(handle, strat, stop, seen))
        summary = await run(config(handle, strat, done))
        stop.set()
        await watcher
        return summary, strat, handle, seen
    finally:
        stop.set()
        await handle.close()


def check_against_venue(s, strat, handle, seen):
    ex = handle.exchange
    tracker = strat.ctx.tracker
    # Every client order id reached the venue at most once, and only ids the strategy placed.
    assert ex.duplicate_client_order_ids() == []
    assert set(ex.received_client_order_ids) <= set(strat.cids)
    assert s.local_duplicates == 0 and s.duplicate_client_order_ids == s.venue_duplicates == 0
    # Nothing open on the venue that the engine did not know (sampled during the run), nothing left.
    assert [x for x in seen if x is not None] == [] and seen.count(None) > 20
    assert ex.open_order_ids() == [] and s.open_orders_at_exit == 0 and s.unknown_left == 0
    # Every order ends in the venue's state; an abandoned one does not exist there.
    for cid in strat.cids:
        o = tracker.get(cid)
        try:
            v = ex.query_order({"symbol": "BTCUSDT", "origClientOrderId": cid})
        except VenueError as e:
            assert e.code == -2013 and o.status == "REJECTED" and o.error_code == -2013, (cid, o.status)
            continue
        assert (o.status, o.filled_qty) == (v["status"], D(v["executedQty"])), cid
    # The position is the venue's, exactly; cash too, up to the unknown commissions of fills
    # whose trade reports were lost with a connection (reconciled from order.status).
    btc = sum(ex.balance("BTC")) - START["BTC"]
    usdt = sum(ex.balance("USDT")) - START["USDT"]
    pos = tracker.positions["BTCUSDT"]
    assert s.position == btc == pos.qty
    unknown_fees = usdt - (pos.cash - pos.fees.get("USDT", D(0)))
    assert unknown_fees <= 0 and -unknown_fees <= FEE_RATE * 100_000 * s.reconciled_fill_qty
    if s.reconciled_fill_qty == 0:
        assert unknown_fees == 0


def test_chaos_thousands_of_orders(run_loop):
    faults = WsApiFaults("chaos", seed=11, delay_s=1.0)
    s, strat, handle, seen = run_loop(run_with_faults(faults, {"max_orders": 3000}, seed=11), timeout=90)
    assert s.end_reason == "stop_when" and strat.placed == 3000 and s.orders_sent == 3000
    inj = faults.injected
    for kind in ("drop", "delay", "error_5xx", "cut_before", "cut_after", "dup_event", "reorder_event"):
        assert inj[kind] > 0, (kind, dict(inj))
    # The engine saw the faults as what they are, and settled all of them.
    assert s.timeouts > 0 and s.orders_unknown > 0 and s.unknown_resolved > 0 and s.late_responses > 0
    assert s.ws_api_reconnects == faults.cuts and len(s.reconciliations) == 1 + s.ws_api_reconnects
    assert s.duplicate_fills > 0 and s.fills > 0 and s.status_queries > 0
    assert s.rejects_by_code.get(-1007, 0) > 0 and s.orders_rejected == 0
    check_against_venue(s, strat, handle, seen)


def test_requests_lost_before_the_venue_are_resent_with_the_same_id(run_loop):
    # Long-lived orders only, so the strategy still wants them when the venue's window has passed.
    faults = WsApiFaults("cut-before", seed=3, cut_before=0.02, max_cuts=3, min_requests_between_cuts=40,
                         methods=("order.place",))
    kw = {"max_orders": 300, "long_share": 1.0, "long_s": 3.0, "near_every": 1000, "target_open": 120}
    s, strat, handle, seen = run_loop(run_with_faults(faults, kw, seed=5), timeout=90)
    assert faults.cuts >= 2 and s.ws_api_reconnects == faults.cuts
    lost = {cid for _n, _m, f, cid in faults.log if f == "cut_before"}
    assert s.resends >= 1 and s.resends + s.abandoned >= 1
    tracker = strat.ctx.tracker
    resent = [c for c in strat.cids if tracker.get(c).resends]
    # Only orders in doubt at a reconnect were resent (the cut request and those written behind
    # it on the same connection); the cut request itself was resent or abandoned.
    in_doubt = {c for r in s.reconciliations for c in r.to_resolve}
    assert set(resent) <= in_doubt and len(resent) == s.resends
    for cid in lost:
        o = tracker.get(cid)
        assert o.resends == 1 or (o.status == "REJECTED" and o.error_code == -2013)
    # Resent with the same client order id and received by the venue exactly once.
    for cid in resent:
        assert handle.exchange.received_client_order_ids[cid] == 1
    check_against_venue(s, strat, handle, seen)


def test_start_adopts_our_leftovers_and_leaves_foreign_orders(run_loop):
    async def main():
        handle = await start_simulator(SyntheticSource(SyntheticConfig(seed=8)))
        try:
            ex = handle.exchange
            for cid in ("mm-1-0", "other-1"):
                # Left on the account by an earlier run of this instance, and by someone else.
                ex.place_order({"symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT_MAKER", "price": "30000.00",
                                "quantity": "0.00100", "newClientOrderId": cid})
            done = asyncio.get_running_loop().create_future()
            strat = Churn(done=done, max_orders=60)
            s = await run(config(handle, strat, done, foreign_orders="leave", cancel_open_at_start=False))
            return s, handle, strat
        finally:
            await handle.close()

    s, handle, strat = run_loop(main())
    start = s.reconciliations[0]
    assert start.reason == "start" and start.adopted == ["mm-1-0"] and start.left == ["other-1"]
    assert start.canceled == [] and s.adopted == 1 and s.orders_sent == 60
    assert strat.ctx.tracker.get("mm-1-0").status == "CANCELED"  # ours: cancelled at shutdown
    ex = handle.exchange
    assert [ex.order(i).client_order_id for i in ex.open_order_ids()] == ["other-1"]  # theirs: left
    assert s.open_orders_at_exit == 0
