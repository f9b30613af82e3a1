"""The strategy bus: dispatch, BookView refusing invalid books, the context's order checks, inline sending."""
from __future__ import annotations

from decimal import Decimal as D

import msgspec
import pytest

from ext.book import OrderBook
from engine.bus import (ASK, BID, BUY, NO_BID, SELL, BookInvalidError, BookView, Fill, OrderError,
                        OrderUpdate, Strategy, StrategyBus, StrategyContext, TradeEvent, TradingDisabled,
                        min_notional_units)
from engine.feed.market import MarketDataFeed
from engine.feed.messages import BookTicker, DepthSnapshot, Trade
from engine.instruments import get_builtin
from engine.orders.ids import ClientOrderIdGenerator
from engine.orders.tracker import ExecutionReport, OrderTracker

BTC = get_builtin("BTCUSDT", "spot")  # tick 0.01, step 0.00001, min notional 5
SYM = "BTCUSDT"


class FakeSender:
    """Records what would be written; ``ready`` can be switched off."""

    def __init__(self):
        self.ready = True
        self.sent: list[tuple] = []

    def send_place(self, cid, symbol, side, price_ticks, qty_steps, post_only, trigger_rx_ns):
        self.sent.append(("place", cid, symbol, side, price_ticks, qty_steps, post_only, trigger_rx_ns))

    def send_cancel(self, cid, symbol, trigger_rx_ns):
        self.sent.append(("cancel", cid, symbol, trigger_rx_ns))

    def send_cancel_all(self, symbol):
        self.sent.append(("cancel_all", symbol))


class Recorder(Strategy):
    """Records every callback; optionally keeps the BookView it was given."""

    def __init__(self, keep_view=False, raise_in=None):
        self.calls: list[tuple] = []
        self.keep_view = keep_view
        self.view = None
        self.raise_in = raise_in

    def on_start(self, ctx):
        super().on_start(ctx)
        self.calls.append(("start",))

    def on_book(self, symbol, book):
        assert book.valid
        self.calls.append(("book", symbol, book.best_bid(), book.best_ask(), book.last_update_id))
        if self.keep_view:
            self.view = book
        if self.raise_in == "book":
            raise RuntimeError("strategy bug")

    def on_bbo(self, symbol, bid_ticks, bid_lots, ask_ticks, ask_lots):
        self.calls.append(("bbo", symbol, bid_ticks, bid_lots, ask_ticks, ask_lots))

    def on_trade(self, symbol, trade):
        self.calls.append(("trade", symbol, trade))

    def on_order_update(self, update):
        self.calls.append(("update", update.client_order_id, update.status))

    def on_fill(self, fill):
        self.calls.append(("fill", fill.client_order_id, fill.trade_id, fill.qty_steps))

    def on_connection(self, event):
        self.calls.append(("conn", event.name, event.state, event.symbol))

    def on_timer(self, now_ns):
        self.calls.append(("timer", now_ns))

    def on_stop(self):
        self.calls.append(("stop",))


def make(strategy=None, cancel_on_gap=True):
    sender = FakeSender()
    tracker = OrderTracker({SYM: BTC})
    ctx = StrategyContext({SYM: BTC}, tracker, sender, ClientOrderIdGenerator("t", 1).next)
    strat = strategy or Recorder()
    snaps: list[str] = []
    bus = StrategyBus(strat, ctx, snapshot_requester=snaps.append, cancel_on_gap=cancel_on_gap)
    tracker.listener = bus
    bus.start()
    return bus, ctx, tracker, sender, strat, snaps


def hand_book(bids, asks, u=10, valid=True):
    b = OrderBook()
    for px, q in bids:
        b.set(BID, px, q)
    for px, q in asks:
        b.set(ASK, px, q)
    if valid:
        b.mark_valid(u)
    return b


# -- BookView ------------------------------------------------------------------------------------
def test_book_view_reads_a_valid_book_and_refuses_an_invalid_one():
    b = hand_book([(100, 5), (99, 7)], [(101, 3), (103, 1)])
    v = BookView(SYM, b, BTC)
    assert (v.best_bid(), v.best_bid_qty(), v.best_ask(), v.best_ask_qty()) == (100, 5, 101, 3)
    assert v.qty_at(BID, 99) == 7 and v.qty_at(ASK, 102) == 0 and v.n_levels(ASK) == 2
    px, qty = v.top(BID, 5)
    assert list(px) == [100, 99] and list(qty) == [5, 7] and v.last_update_id == 10
    b.invalidate()
    assert not v.valid and "invalid" in repr(v)
    reads = [v.best_bid, v.best_ask, v.best_bid_qty, v.best_ask_qty, lambda: v.qty_at(BID, 100),
             lambda: v.top(ASK, 1), lambda: v.n_levels(BID), lambda: v.last_update_id]
    for r in reads:
        with pytest.raises(BookInvalidError):
            r()
    assert v.invalid_reads == len(reads)
    b.mark_valid(11)
    assert v.best_bid() == 100 and v.invalid_reads == len(reads)


def test_empty_sides_use_sentinels():
    v = BookView(SYM, hand_book([], [(101, 3)]), BTC)
    assert v.best_bid() == NO_BID and v.best_bid_qty() == 0 and v.best_ask() == 101


# -- dispatch -----------------------------------------------------------------------------------
def test_on_book_dispatch_and_bbo_only_on_change():
    bus, ctx, _, _, strat, _ = make()
    b = hand_book([(100, 5)], [(101, 3)])
    bus.on_book(SYM, b)
    bus.on_book(SYM, b)  # same top: no second on_bbo
    b.set(BID, 100, 6)
    bus.on_book(SYM, b)
    got = [c for c in strat.calls if c[0] in ("bbo", "book")]
    assert got == [("bbo", SYM, 100, 5, 101, 3), ("book", SYM, 100, 101, 10), ("book", SYM, 100, 101, 10),
                   ("bbo", SYM, 100, 6, 101, 3), ("book", SYM, 100, 101, 10)]
    assert ("conn", "book", "synced", SYM) in strat.calls and bus.book_events == 3 and bus.bbo_events == 2
    assert ctx.book(SYM) is not None and ctx.book_valid(SYM)


def test_on_trade_is_converted_to_ticks_and_lots():
    bus, *_, strat, _ = make()
    bus.on_trade(SYM, Trade(SYM, 77, "60000.01", "0.00123400", True, trade_time_ms=1_700_000_000_123), 555)
    ev = strat.calls[-1][2]
    assert ev == TradeEvent(SYM, 77, 6_000_001, 123_400, True, 1_700_000_000_123_000_000, 555)
    bus.on_trade(SYM, Trade(SYM, 78, "60000.015", "1", False), 556)  # off the tick grid
    assert bus.decode_errors == 1 and bus.trades == 1


def test_book_ticker_newer_than_the_book_gives_bbo_older_is_ignored():
    bus, *_, strat, _ = make()
    b = hand_book([(100, 5)], [(101, 3)], u=50)
    bus.on_book(SYM, b)
    n = len(strat.calls)
    bus.on_book_ticker(SYM, BookTicker(49, SYM, "1.01", "1", "1.02", "1"), 0)  # older than the book
    bus.on_book_ticker(SYM, BookTicker(50, SYM, "1.01", "1", "1.02", "1"), 0)  # same update
    assert len(strat.calls) == n
    bus.on_book_ticker(SYM, BookTicker(51, SYM, "1.00", "0.00000004", "1.01", "0.00000002"), 0)
    assert strat.calls[-1] == ("bbo", SYM, 100, 4, 101, 2)
    bus.on_book_ticker(SYM, BookTicker(52, SYM, "0.00", "0.00000000", "1.01", "0.00000002"), 0)
    assert strat.calls[-1] == ("bbo", SYM, NO_BID, 0, 101, 2)
    b.invalidate()
    bus.on_book_ticker(SYM, BookTicker(60, SYM, "1.00", "1", "1.01", "1"), 0)
    assert strat.calls[-1] == ("bbo", SYM, NO_BID, 0, 101, 2)


def test_strategy_exceptions_are_counted_not_propagated():
    strat = Recorder(raise_in="book")
    bus, *_ = make(strat)
    bus.on_book(SYM, hand_book([(100, 5)], [(101, 3)]))
    bus.on_book(SYM, hand_book([(100, 5)], [(101, 3)]))
    assert bus.strategy_errors == 2


def test_order_events_reach_the_strategy():
    bus, ctx, tracker, sender, strat, _ = make()
    bus.on_book(SYM, hand_book([(6_000_000, 5)], [(6_000_001, 3)]))
    cid = ctx.place_limit(SYM, BUY, 6_000_000, 100)
    tracker.on_place_ack(cid, {"orderId": 1})
    tracker.on_execution_report(ExecutionReport(symbol=SYM, client_order_id=cid, side=BUY, exec_type="TRADE",
                                                status="FILLED", order_id=1, last_qty="0.00100",
                                                cum_qty="0.00100", last_price="60000.00", trade_id=9))
    assert ("update", cid, "NEW") in strat.calls and ("fill", cid, 9, 100) in strat.calls
    assert strat.calls[-1] == ("update", cid, "FILLED") and ctx.position(SYM) == 100
    bus.on_timer(123)
    bus.stop()
    assert strat.calls[-2:] == [("timer", 123), ("stop",)]


# -- the context ----------------------------------------------------------------------------------
def test_place_limit_checks_and_sends_inline():
    bus, ctx, tracker, sender, _, _ = make()
    assert min_notional_units(BTC) == 50_000_000  # 5 / (0.01 * 0.00001)
    assert ctx.min_qty_steps(SYM, 6_000_000) == 9  # 0.00009 BTC * 60000 = 5.4 >= 5; 8 steps = 4.8
    with pytest.raises(OrderError):
        ctx.place_limit(SYM, BUY, 6_000_000, 8)
    with pytest.raises(OrderError):
        ctx.place_limit(SYM, "buy", 6_000_000, 100)
    with pytest.raises(OrderError):
        ctx.place_limit(SYM, BUY, 0, 100)
    with pytest.raises(OrderError):
        ctx.place_limit(SYM, BUY, 6_000_000.0, 100)
    with pytest.raises(OrderError):
        ctx.place_limit("ETHUSDT", BUY, 6_000_000, 100)
    assert sender.sent == [] and tracker.orders_sent == 0
    ctx.trigger_rx_ns = 12345
    cid = ctx.place_limit(SYM, SELL, 6_000_001, 9)
    assert sender.sent == [("place", cid, SYM, SELL, 6_000_001, 9, True, 12345)]
    assert tracker.get(cid).status == "PENDING_NEW" and ctx.open_orders(SYM)[0].client_order_id == cid
    assert ctx.cancel(cid) and not ctx.cancel(cid)  # second cancel: already pending
    assert sender.sent[-1] == ("cancel", cid, SYM, 12345)
    assert not ctx.cancel("unknown")
    assert ctx.cancel_all(SYM) and sender.sent[-1] == ("cancel_all", SYM)
    ctx.enabled = False
    with pytest.raises(TradingDisabled):
        ctx.place_limit(SYM, BUY, 6_000_000, 100)
    ctx.enabled = True
    sender.ready = False
    with pytest.raises(TradingDisabled):
        ctx.place_limit(SYM, BUY, 6_000_000, 100)
    assert not ctx.cancel_all(SYM)


# -- feed -> bus -> strategy -> order, inline; gaps ------------------------------------------------
def diff_frame(U, u, bids, asks):
    return msgspec.json.encode({"stream": "btcusdt@depth@100ms", "data": {
        "e": "depthUpdate", "E": 1, "s": SYM, "U": U, "u": u, "b": bids, "a": asks}})


class QuoteOnBook(Recorder):
    """Places one bid per book callback, to check that the order is written inside on_frame."""

    def on_book(self, symbol, book):
        super().on_book(symbol, book)
        self.ctx.place_limit(symbol, BUY, book.best_bid(), 100)


def test_frame_to_order_is_inline_and_gaps_hide_the_book():
    strat = QuoteOnBook(keep_view=True)
    bus, ctx, tracker, sender, _, snaps = make(strat)
    feed = MarketDataFeed(lambda s, f: BTC, bus, SYM)
    # First diff: buffered; the feed asks for a snapshot.
    assert feed.on_frame(diff_frame(101, 101, [["60000.00", "1"]], [["60000.02", "1"]]), 1) == 0
    assert snaps == [SYM] and not [c for c in strat.calls if c[0] == "book"]
    feed.on_snapshot(SYM, DepthSnapshot(100, [["59999.99", "2"]], [["60000.03", "2"]]))
    assert strat.calls[-1][0] == "book" and len(sender.sent) == 1  # drained buffer -> quote
    ctx.trigger_rx_ns = 999
    feed.on_frame(diff_frame(102, 102, [["60000.01", "1"]], []), 2)
    # The order for this frame was handed to the sender before on_frame returned.
    assert sender.sent[-1][:5] == ("place", sender.sent[-1][1], SYM, BUY, 6_000_001)
    assert sender.sent[-1][7] == 999
    n_books = len([c for c in strat.calls if c[0] == "book"])
    # A gap (U jumps): book invalid, strategy told, quotes pulled, snapshot requested, no on_book.
    feed.on_frame(diff_frame(110, 110, [["60000.02", "1"]], [["60000.05", "1"]]), 3)
    assert ("conn", "book", "invalid", SYM) in strat.calls
    assert sender.sent[-1] == ("cancel_all", SYM) and snaps == [SYM, SYM]
    feed.on_frame(diff_frame(111, 111, [["60000.00", "3"]], []), 4)
    assert len([c for c in strat.calls if c[0] == "book"]) == n_books
    with pytest.raises(BookInvalidError):
        strat.view.best_bid()
    assert bus.invalid_reads == 1 and bus.gaps == 1
    # Resync: book valid again, strategy sees it again.
    feed.on_snapshot(SYM, DepthSnapshot(109, [["59999.99", "2"]], [["60000.06", "2"]]))
    assert strat.calls[-1][0] == "book" and strat.view.valid
    assert [c for c in strat.calls if c[0] == "conn"][-1] == ("conn", "book", "synced", SYM)


def test_no_cancel_on_gap_when_disabled_or_nothing_open():
    bus, ctx, tracker, sender, strat, _ = make(cancel_on_gap=False)
    from engine.feed.sync import GapEvent
    ctx.place_limit(SYM, BUY, 6_000_000, 100)
    bus.on_gap(GapEvent(SYM, "gap", 1, 3, 3, -1, "ws", 0))
    assert [s[0] for s in sender.sent] == ["place"]
    bus2, ctx2, _, sender2, _, _ = make()
    bus2.on_gap(GapEvent(SYM, "gap", 1, 3, 3, -1, "ws", 0))
    assert sender2.sent == []  # nothing open: nothing to cancel


def test_events_are_int_structs():
    f = Fill(SYM, "c", 1, 2, BUY, 6_000_000, 100, True, D("0.06"), "USDT", 1, 2)
    u = OrderUpdate(SYM, "c", 1, BUY, "NEW", 6_000_000, 100, 0, 0, "", 3)
    for ev in (f, u):
        with pytest.raises(AttributeError):
            ev.symbol = "X"  # frozen
    assert msgspec.json.decode(msgspec.json.encode(f))["price_ticks"] == 6_000_000


# -- import rules ---------------------------------------------------------------------------------
def _imports(path):
    import ast
    tree = ast.parse(path.read_text())
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module)
    return out


def test_import_rules():
    from pathlib import Path
    root = Path(__file__).resolve().parents[2]
    live = [root / "engine" / "bus.py", *sorted((root / "engine" / "live").glob("*.py")),
            *sorted((root / "engine" / "orders").glob("*.py"))]
    for f in live:
        mods = _imports(f)
        assert not any(m == "engine.sim" or m.startswith("engine.sim.") for m in mods), f
        assert "engine.cli" not in mods, f
    strat = _imports(root / "strategies" / "symmetric.py")
    assert {m for m in strat if m.split(".")[0] in ("engine", "ext", "strategies")} == {"engine.bus"}
