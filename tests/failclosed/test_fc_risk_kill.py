"""Pre-trade risk in place_limit, the circuit breaker, and the kill switch (SIGUSR1, kill file)."""
from __future__ import annotations

import asyncio
import os
import signal
import time
from decimal import Decimal

import pytest
from failclosed_helpers import Resting, Timeline, run_config, run_loop  # noqa: F401

from ext.book import ASK, BID, OrderBook
from engine.bus import (BUY, SELL, RiskRefused, StrategyBus, StrategyContext, TradingDisabled)
from engine.instruments import get_builtin
from engine.live.runner import run
from engine.orders.ids import ClientOrderIdGenerator
from engine.orders.tracker import ExecutionReport, OrderTracker
from engine.risk import RiskLimits, RiskManager
from engine.sim.server import start_simulator
from engine.sim.synthetic import SyntheticConfig, SyntheticSource

BTC = get_builtin("BTCUSDT", "spot")


class _Sender:
    ready = True

    def __init__(self):
        self.sent = []

    def send_place(self, cid, symbol, side, price, qty, post_only, rx):
        self.sent.append(("place", cid, side, qty))

    def send_cancel(self, cid, symbol, rx):
        self.sent.append(("cancel", cid))

    def send_cancel_all(self, symbol):
        self.sent.append(("cancel_all", symbol))


def _book(bid, ask):
    b = OrderBook()
    b.set(BID, bid, 10 ** 6)
    b.set(ASK, ask, 10 ** 6)
    b.mark_valid(1)
    return b


def test_place_limit_runs_the_risk_checks_and_the_bus_feeds_them():
    tracker = OrderTracker({"BTCUSDT": BTC})
    risk = RiskManager(RiskLimits(max_position_steps=300, max_order_steps=200, price_band_ticks=50,
                                  price_band_bps=0, max_open_orders=2, breaker_rejections=2), [BTC])
    sender = _Sender()
    ctx = StrategyContext({"BTCUSDT": BTC}, tracker, sender, ClientOrderIdGenerator("r", 1).next, risk=risk)
    from engine.bus import Strategy
    bus = StrategyBus(Strategy(), ctx)
    tracker.listener = bus
    bus.start()
    bus.on_book("BTCUSDT", _book(6_000_000, 6_000_002))
    with pytest.raises(RiskRefused) as e:
        ctx.place_limit("BTCUSDT", BUY, 6_000_000, 201)
    assert e.value.reason == "max_order_qty"
    with pytest.raises(RiskRefused) as e:
        ctx.place_limit("BTCUSDT", BUY, 5_999_900, 100)  # 101 ticks from the mid
    assert e.value.reason == "price_band"
    a = ctx.place_limit("BTCUSDT", BUY, 6_000_000, 150)
    ctx.place_limit("BTCUSDT", SELL, 6_000_002, 150)
    with pytest.raises(RiskRefused) as e:
        ctx.place_limit("BTCUSDT", BUY, 6_000_000, 100)
    assert e.value.reason == "max_open_orders"
    assert [s[0] for s in sender.sent] == ["place", "place"] and ctx.orders_refused_risk == 3
    # A fill moves the risk position; a terminal update releases the exposure.
    tracker.on_place_ack(a, {"orderId": 1})
    tracker.on_execution_report(ExecutionReport(symbol="BTCUSDT", client_order_id=a, side=BUY, exec_type="TRADE",
                                                status="FILLED", order_id=1, last_qty="0.00150",
                                                cum_qty="0.00150", last_price="60000.00", trade_id=7))
    assert risk.position_steps("BTCUSDT") == 150 and risk.open_orders("BTCUSDT") == 1
    # Halts of the context refuse everything, cancels still leave.
    ctx.halt("streams", "test")
    with pytest.raises(TradingDisabled):
        ctx.place_limit("BTCUSDT", SELL, 6_000_002, 10)
    assert ctx.cancel(ctx.open_orders("BTCUSDT")[0].client_order_id)
    assert ctx.release("streams") and not ctx.halted


def test_breaker_counts_venue_rejections_but_not_post_only_would_take():
    tracker = OrderTracker({"BTCUSDT": BTC})
    risk = RiskManager(RiskLimits(price_band_bps=0, max_open_orders=100, breaker_rejections=2), [BTC])
    ctx = StrategyContext({"BTCUSDT": BTC}, tracker, _Sender(), ClientOrderIdGenerator("r", 1).next, risk=risk)
    from engine.bus import Strategy
    bus = StrategyBus(Strategy(), ctx)
    tracker.listener = bus
    bus.start()
    bus.on_book("BTCUSDT", _book(6_000_000, 6_000_002))
    answers = [(-2010, "Order would immediately match and take."),
               (-2010, "Account has insufficient balance for requested action."),
               (-1013, "Filter failure: PRICE_FILTER"),
               (-2010, "Account has insufficient balance for requested action.")]
    for code, msg in answers:
        assert not risk.halted
        tracker.on_place_error(ctx.place_limit("BTCUSDT", BUY, 6_000_000, 10), 400, code, msg)
    assert risk.venue_rejections == {-2010: 2, -1013: 1} and risk.breaker_trips == 1 and risk.halted
    assert risk.open_orders("BTCUSDT") == 0  # rejected orders released their exposure
    with pytest.raises(TradingDisabled):
        ctx.place_limit("BTCUSDT", BUY, 6_000_000, 10)


class _Breaker(Resting):
    """Rests a few bids, and now and then sends an order the account cannot pay for."""

    def __init__(self):
        super().__init__(n=2)
        self.huge = []

    def on_timer(self, now_ns):
        super().on_timer(now_ns)
        v = self.ctx.book(self.symbol)
        if v is None or not v.valid or len(self.huge) >= 10:
            return
        try:
            # 30 BTC at the bid: 1.8 M USDT of a 1 M account -> -2010 insufficient balance.
            self.huge.append(self.ctx.place_limit(self.symbol, BUY, v.best_bid() - 5, 3_000_000, post_only=True))
        except Exception:  # noqa: BLE001 - refused once halted
            pass


def test_circuit_breaker_halts_and_cancels_everything(run_loop):
    async def main():
        handle = await start_simulator(SyntheticSource(SyntheticConfig(seed=61)))
        tl = Timeline(handle.exchange)
        strat = _Breaker()
        limits = RiskLimits(max_position_steps=10_000_000, max_order_steps=5_000_000,
                            max_order_notional=Decimal("100000000"), price_band_bps=0, max_orders_per_window=100,
                            breaker_rejections=3, breaker_window_ms=10_000)
        try:
            s = await run(run_config(handle, strat, duration_s=3.0, observer=tl, risk=limits))
            return s, strat, tl, handle
        finally:
            await handle.close()

    s, strat, tl, handle = run_loop(main())
    assert s.risk["breaker_trips"] == 1 and s.risk["halted"] and "circuit breaker" in s.halt_reason
    assert len(strat.huge) == 3 and s.rejects_by_code == {-2010: 3}
    halted_at = tl.times("cancel_all_confirmed")[0]
    assert [c.kind for c in s.cancel_alls][:1] == ["risk"] and tl.open_at_confirm[0] == ("risk", "ws-api", 0)
    assert not [t for t, *_ in strat.placements if t > halted_at]
    assert s.stop_clean and handle.exchange.open_order_ids() == [] and s.unhandled_exceptions == 0


def _kill_checks(s, strat, tl, handle, why):
    assert s.kill_switch == why and "kill" in s.halt_reason
    kills = [c for c in s.cancel_alls if c.kind == "kill"]
    assert len(kills) == 1 and kills[0].latency_ms > 0
    assert ("kill", "ws-api", 0) in tl.open_at_confirm
    t_kill = tl.times("kill")[0]
    assert [t for t, *_ in strat.placements if t < t_kill]  # it was quoting
    assert not [t for t, *_ in strat.placements if t > t_kill]  # and never again
    assert s.stop_clean and handle.exchange.open_order_ids() == [] and s.unhandled_exceptions == 0


def test_sigusr1_kills(run_loop):
    async def main():
        handle = await start_simulator(SyntheticSource(SyntheticConfig(seed=62)))
        tl = Timeline(handle.exchange)
        strat = Resting(churn_s=0.2)
        try:
            asyncio.get_running_loop().call_later(1.5, os.kill, os.getpid(), signal.SIGUSR1)
            s = await run(run_config(handle, strat, duration_s=3.0, observer=tl, handle_sigusr1=True))
            return s, strat, tl, handle
        finally:
            await handle.close()

    _kill_checks(*run_loop(main()), "SIGUSR1")


def test_kill_file_kills(run_loop, tmp_path):
    kill = tmp_path / "KILL"

    async def main():
        handle = await start_simulator(SyntheticSource(SyntheticConfig(seed=63)))
        tl = Timeline(handle.exchange)
        strat = Resting(churn_s=0.2)
        created = []

        def touch():
            kill.write_text("stop\n")
            created.append(time.monotonic())

        try:
            asyncio.get_running_loop().call_later(1.5, touch)
            s = await run(run_config(handle, strat, duration_s=3.0, observer=tl, kill_file=str(kill)))
            return s, strat, tl, handle, created[0]
        finally:
            await handle.close()

    s, strat, tl, handle, created = run_loop(main())
    _kill_checks(s, strat, tl, handle, f"kill file {kill}")
    # Seen within the kill file's 100 ms polling plus the monitor's period.
    assert 0 <= tl.times("kill")[0] - created < 1.0
