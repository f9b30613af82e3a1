"""VenueMarket: exact book, Binance sync rules, derived streams, and recorded playback.

Sync-rule cases are venue-protocols.md 1.8 (worked illustration); playback counts
come from shared/data/README.md section 1 (an independent replay of the same files).
"""
from __future__ import annotations

import gzip
from decimal import Decimal

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.instruments import get_builtin
from engine.sim.market import (BOOK_TICKER, BUY, DEPTH, SELL, SNAPSHOT, TRADE, BookUnavailable, DepthDiff,
                               MarketEvent, Snapshot, Trade, VenueMarket, format_scaled, scaled_int)
from engine.sim.playback import PlaybackSource, iter_events, session_paths

SPOT_FILES = ["hftbacktest/spot/btcusdt_20240808.gz", "hftbacktest/spot/btcusdt_20240809.gz"]
USDM_FILE = "hftbacktest/usdm/btcusdt_20240808.gz"


# -- helpers ----------------------------------------------------------------------------------
def spot_venue() -> VenueMarket:
    v = VenueMarket()
    v.register(get_builtin("BTCUSDT", "spot"))
    return v


def usdm_venue() -> VenueMarket:
    v = VenueMarket()
    v.register(get_builtin("BTCUSDT", "usdm"), price_out_decimals=2, qty_out_decimals=3)
    return v


def snap_ev(lid: int, bids=(("100.00", "1"),), asks=(("101.00", "1"),), E=1_000, T=None) -> MarketEvent:
    return MarketEvent(0, SNAPSHOT, "BTCUSDT", None, None, None, Snapshot(lid, list(bids), list(asks), E=E, T=T))


def diff_ev(U: int, u: int, b=(), a=(), pu=None, E=1_000, stream="btcusdt@depth@100ms") -> MarketEvent:
    d = DepthDiff("depthUpdate", E, "BTCUSDT", U, u, list(b), list(a), T=E if pu is not None else None, pu=pu)
    return MarketEvent(0, DEPTH, "BTCUSDT", stream, msgspec.json.encode(d), None, d)


def trade_ev(t: int, p: str, q: str, m: bool, T: int) -> MarketEvent:
    tr = Trade("trade", T, "BTCUSDT", t, p, q, T, m, True)
    return MarketEvent(0, TRADE, "BTCUSDT", "btcusdt@trade", msgspec.json.encode(tr), None, tr)


class Recorder:
    """Stream listener that keeps what the venue published."""

    def __init__(self) -> None:
        self.out: list[tuple[str, bytes, bytes | None]] = []

    def __call__(self, stream: str, payload: bytes, frame: bytes | None) -> None:
        self.out.append((stream, payload, frame))

    def streams(self, name: str) -> list[dict]:
        return [msgspec.json.decode(p) for s, p, _ in self.out if s == name]


class ClientBook:
    """A client-side book following Binance's documented procedure (1.5/1.6), independent of the venue."""

    def __init__(self, body: dict) -> None:
        self.lid = body["lastUpdateId"]
        self.bids = {Decimal(p): Decimal(q) for p, q in body["bids"]}
        self.asks = {Decimal(p): Decimal(q) for p, q in body["asks"]}
        self.applied = 0

    def apply(self, d: DepthDiff) -> None:
        if d.u <= self.lid:
            return
        assert d.U <= self.lid + 1, f"gap: U={d.U} after {self.lid}"
        for side, levels in ((self.bids, d.b), (self.asks, d.a)):
            for p, q in levels:
                if Decimal(q) == 0:
                    side.pop(Decimal(p), None)
                else:
                    side[Decimal(p)] = Decimal(q)
        self.lid = d.u
        self.applied += 1

    def top(self, n: int) -> tuple[list, list]:
        b = sorted(self.bids.items(), reverse=True)[:n]
        a = sorted(self.asks.items())[:n]
        return b, a


def body_top(body: dict, n: int) -> tuple[list, list]:
    conv = lambda lv: [(Decimal(p), Decimal(q)) for p, q in lv[:n]]  # noqa: E731
    return conv(body["bids"]), conv(body["asks"])


# -- exact conversions -------------------------------------------------------------------------
@given(st.integers(min_value=0, max_value=10**20), st.integers(min_value=0, max_value=12))
def test_scaled_int_round_trips(units, decimals):
    assert scaled_int(format_scaled(units, decimals), decimals) == units


def test_scaled_int_rejects_hidden_precision():
    assert scaled_int("61837.63000000", 2) == 6183763
    assert scaled_int("5", 3) == 5000
    with pytest.raises(ValueError):
        scaled_int("1.005", 2)


# -- protocol ---------------------------------------------------------------------------------------
def test_venue_market_satisfies_market_view_protocol():
    from engine.sim.market_view import MarketView

    assert isinstance(spot_venue(), MarketView)


def test_queries_on_a_seeded_book():
    v = spot_venue()
    v.process(snap_ev(1000, bids=[("100.01", "1.5"), ("100.00", "2")], asks=[("100.03", "0.25"), ("100.05", "3")]))
    assert v.symbols() == ["BTCUSDT"]
    assert v.best_bid("BTCUSDT") == (Decimal("100.01"), Decimal("1.5"))
    assert v.best_ask("BTCUSDT") == (Decimal("100.03"), Decimal("0.25"))
    assert v.qty_at("BTCUSDT", BUY, Decimal("100.00")) == Decimal(2)
    assert v.qty_at("BTCUSDT", SELL, Decimal("100.00")) == 0
    assert v.qty_at("BTCUSDT", SELL, Decimal("100.05")) == 3
    with pytest.raises(ValueError):
        v.qty_at("BTCUSDT", BUY, Decimal("100.005"))
    with pytest.raises(KeyError):
        v.instrument("ETHUSDT")
    body = v.depth("BTCUSDT", 1)
    assert list(body) == ["lastUpdateId", "bids", "asks"]
    assert body == {"lastUpdateId": 1000, "bids": [["100.01000000", "1.50000000"]],
                    "asks": [["100.03000000", "0.25000000"]]}
    full = v.depth("BTCUSDT", 10_000)
    assert [p for p, _ in full["bids"]] == ["100.01000000", "100.00000000"]
    assert [p for p, _ in full["asks"]] == ["100.03000000", "100.05000000"]
    with pytest.raises(ValueError):
        v.depth("BTCUSDT", 0)


def test_usdm_depth_has_event_and_transaction_time():
    v = usdm_venue()
    v.process(snap_ev(5000, bids=[("61800.20", "2.909")], asks=[("61800.30", "1.083")], E=1_700_000_000_123,
                      T=1_700_000_000_100))
    body = v.depth("BTCUSDT", 5)
    assert list(body) == ["lastUpdateId", "E", "T", "bids", "asks"]
    assert body["E"] == 1_700_000_000_123 and body["T"] == 1_700_000_000_100
    assert body["bids"] == [["61800.20", "2.909"]] and body["asks"] == [["61800.30", "1.083"]]


# -- sync rules (venue-protocols.md 1.5-1.8) -------------------------------------------------------------
def test_spot_sync_follows_worked_illustration():
    v = spot_venue()
    books = []
    v.add_book_listener(books.append)
    v.process(snap_ev(1000))
    v.process(diff_ev(990, 995, b=[("99.00", "5")]))          # u <= lastUpdateId: dropped
    assert v.qty_at("BTCUSDT", BUY, Decimal("99.00")) == 0
    v.process(diff_ev(996, 1002, b=[("100.00", "0"), ("99.50", "2")]))  # bridges 1000 in [996;1002]
    v.process(diff_ev(1003, 1007, a=[("101.00", "4")]))
    assert v.depth("BTCUSDT", 10)["lastUpdateId"] == 1007
    assert v.best_bid("BTCUSDT") == (Decimal("99.50"), Decimal(2))
    assert v.best_ask("BTCUSDT") == (Decimal("101.00"), Decimal(4))
    assert books == ["BTCUSDT"] * 3  # snapshot + two applied diffs, not the dropped one
    v.process(diff_ev(1010, 1012, b=[("99.60", "1")]))        # 1010 > 1007 + 1: gap
    assert not v.is_synced("BTCUSDT")
    assert v.best_bid("BTCUSDT") is None
    with pytest.raises(BookUnavailable):
        v.depth("BTCUSDT", 10)
    assert v.book("BTCUSDT").stats["gaps"] == 1
    # A new snapshot re-syncs with the diffs buffered since the gap.
    v.process(diff_ev(1013, 1015, b=[("99.70", "3")]))
    v.process(snap_ev(1011, bids=[("99.60", "1")], asks=[("101.00", "4")]))
    assert v.is_synced("BTCUSDT")
    assert v.depth("BTCUSDT", 10)["lastUpdateId"] == 1015
    assert v.best_bid("BTCUSDT") == (Decimal("99.70"), Decimal(3))


def test_spot_snapshot_older_than_the_first_kept_diff_is_a_gap():
    v = spot_venue()
    v.process(snap_ev(1000))
    v.process(diff_ev(1002, 1005))  # U > lastUpdateId + 1: the snapshot is too old (1.5 step 3)
    assert not v.is_synced("BTCUSDT")


def test_usdm_sync_follows_worked_illustration():
    v = usdm_venue()
    v.process(snap_ev(1000, bids=[("100.00", "1")], asks=[("101.00", "1")], T=1))
    v.process(diff_ev(980, 990, pu=975, b=[("99.00", "1")], stream="btcusdt@depth@0ms"))    # u < lid: dropped
    v.process(diff_ev(991, 1005, pu=990, b=[("99.50", "2")], stream="btcusdt@depth@0ms"))   # bridges
    v.process(diff_ev(1009, 1010, pu=1005, a=[("100.50", "1")], stream="btcusdt@depth@0ms"))  # pu chains, U != 1006
    assert v.is_synced("BTCUSDT")
    assert v.depth("BTCUSDT", 5)["lastUpdateId"] == 1010
    assert v.qty_at("BTCUSDT", BUY, Decimal("99.00")) == 0
    assert v.best_ask("BTCUSDT") == (Decimal("100.50"), Decimal(1))
    v.process(diff_ev(1015, 1020, pu=1012, stream="btcusdt@depth@0ms"))  # pu != 1010: gap
    assert not v.is_synced("BTCUSDT")


def test_usdm_first_diff_must_contain_last_update_id():
    # Futures ids are not contiguous: U == lastUpdateId + 1 does not bridge (1.7 requires U <= lid).
    v = usdm_venue()
    v.process(snap_ev(1000, T=1))
    v.process(diff_ev(1001, 1005, pu=999, stream="btcusdt@depth@0ms"))
    assert not v.is_synced("BTCUSDT")


def test_usdm_bridge_with_u_equal_to_last_update_id():
    # ETHUSDT USD-M 2024-08-08 bridges with u == lastUpdateId exactly (README 1b).
    v = usdm_venue()
    v.process(snap_ev(1000, T=1))
    v.process(diff_ev(990, 1000, pu=989, b=[("99.00", "1")], stream="btcusdt@depth@0ms"))
    v.process(diff_ev(1003, 1004, pu=1000, b=[("99.10", "1")], stream="btcusdt@depth@0ms"))
    assert v.is_synced("BTCUSDT") and v.depth("BTCUSDT", 5)["lastUpdateId"] == 1004


# -- listeners and derived streams ------------------------------------------------------------------------
def test_trade_listener_and_derived_agg_trades():
    v = spot_venue()
    rec = Recorder()
    v.add_stream_listener(rec)
    trades = []
    v.add_trade_listener(lambda *a: trades.append(a))
    v.process(snap_ev(1000))
    # One taker sell hitting two orders at 100.00, then a new taker buy.
    v.process(trade_ev(7, "100.00000000", "0.50000000", True, 5000))
    v.process(trade_ev(8, "100.00000000", "0.25000000", True, 5000))
    v.process(trade_ev(9, "101.00000000", "1.00000000", False, 5001))
    assert trades[0] == ("BTCUSDT", Decimal("100.00"), Decimal("0.5"), True, 5000)
    assert [t[1:] for t in trades[1:]] == [(Decimal("100"), Decimal("0.25"), True, 5000),
                                           (Decimal("101"), Decimal("1"), False, 5001)]
    assert rec.streams("btcusdt@aggTrade") == [
        {"e": "aggTrade", "E": 5000, "s": "BTCUSDT", "a": 7, "p": "100.00000000", "q": "0.75000000",
         "f": 7, "l": 8, "T": 5000, "m": True, "M": True}]
    v.process(diff_ev(1001, 1001, E=5002))  # any other event closes the pending aggregate
    aggs = rec.streams("btcusdt@aggTrade")
    assert aggs[1]["a"] == 8 and aggs[1]["f"] == aggs[1]["l"] == 9 and aggs[1]["q"] == "1.00000000"
    # Key order is Binance's (spot web-socket-streams.md, Aggregate Trade Streams).
    raw = [p for s, p, _ in rec.out if s == "btcusdt@aggTrade"][0]
    assert raw.startswith(b'{"e":"aggTrade","E":5000,"s":"BTCUSDT","a":7,"p":')


def test_coarser_depth_stream_merges_windows():
    v = spot_venue()
    rec = Recorder()
    v.add_stream_listener(rec)
    v.process(snap_ev(1000))
    v.process(diff_ev(1001, 1003, b=[("99.00", "1")], E=10_000))
    v.process(diff_ev(1004, 1006, b=[("99.00", "2"), ("98.00", "1")], E=10_100))
    v.process(diff_ev(1007, 1009, a=[("102.00", "1")], E=10_900))
    assert rec.streams("btcusdt@depth") == []  # the 1 s window [10000, 11000) is still open
    v.process(diff_ev(1010, 1012, a=[("102.00", "0")], E=11_000))
    v.process(diff_ev(1013, 1013, E=12_050))
    v.finish()
    merged = rec.streams("btcusdt@depth")
    assert [(m["U"], m["u"]) for m in merged] == [(1001, 1009), (1010, 1012), (1013, 1013)]
    assert merged[0]["b"] == [["99.00", "2"], ["98.00", "1"]] and merged[0]["a"] == [["102.00", "1"]]
    assert merged[1]["a"] == [["102.00", "0"]]
    assert all(m["e"] == "depthUpdate" and m["s"] == "BTCUSDT" for m in merged)
    # The 100 ms source stream went out unchanged.
    assert len(rec.streams("btcusdt@depth@100ms")) == 5


# -- playback of real recordings --------------------------------------------------------------------------
def recorded_lines(path) -> list[bytes]:
    with gzip.open(path, "rb") as f:
        return [line.rstrip(b"\n").split(b" ", 1)[1] for line in f if line.strip()]


@pytest.mark.data
def test_playback_publishes_recorded_frames_byte_exact_in_order(need_data):
    path = need_data(SPOT_FILES[0])
    src = PlaybackSource([path], speed=None)
    v = VenueMarket()
    src.bind(v)
    assert v.now_ms() == 1723161255208  # the venue clock starts at the first recorded E, not wall time
    rec = Recorder()
    v.add_stream_listener(rec)
    for ev in src.events():
        v.process(ev)
    assert v.now_ms() == 1723161601271  # last E of the 0808 file (README 1a)
    lines = [ln for ln in recorded_lines(path) if not ln.startswith(b'{"lastUpdateId"')]
    native = [(s, p, f) for s, p, f in rec.out if f is not None]
    assert len(native) == len(lines) == 41_248
    assert [f for _, _, f in native] == lines
    for s, p, f in native[:2000]:
        env = msgspec.json.decode(f)
        assert env["stream"] == s and msgspec.json.decode(p) == env["data"]
        assert f == b'{"stream":"' + s.encode() + b'","data":' + p + b"}"


def check_book_against_book_tickers(paths, rec=None) -> tuple[VenueMarket, str, int]:
    src = PlaybackSource(paths, speed=None)
    v = VenueMarket()
    src.bind(v)
    if rec is not None:
        v.add_stream_listener(rec)
    (sym,) = src.symbols
    after_diff: dict[int, tuple] = {}
    tickers: dict[int, tuple] = {}
    for ev in src.events():
        v.process(ev)
        if ev.kind == DEPTH and v.is_synced(sym) and v.book(sym).last_update_id == ev.data.u:
            assert not v.book(sym).crossed()
            after_diff[ev.data.u] = (v.best_bid(sym), v.best_ask(sym))
        elif ev.kind == BOOK_TICKER:
            d = ev.data
            tickers[d.u] = ((Decimal(d.b), Decimal(d.B)), (Decimal(d.a), Decimal(d.A)))
    common = sorted(set(after_diff) & set(tickers))
    mismatches = [u for u in common if after_diff[u] != tickers[u]]
    assert mismatches == [], mismatches[:5]
    return v, sym, len(common)


@pytest.mark.data
def test_spot_playback_book_matches_every_book_ticker(need_data):
    v, sym, checks = check_book_against_book_tickers([need_data(f) for f in SPOT_FILES])
    stats = v.book(sym).stats
    assert checks == 1072  # README 1a
    assert stats["applied"] == 6493 and stats["dropped"] == 2 and stats["gaps"] == 0 and stats["crossed"] == 0
    assert v.depth(sym, 1)["lastUpdateId"] == 50093696318
    assert v.now_ms() == 1723161905809  # last recorded event time (2024-08-09 00:05:05.809)


@pytest.mark.data
def test_usdm_playback_book_matches_every_book_ticker(need_data):
    rec = Recorder()
    v, sym, checks = check_book_against_book_tickers([need_data(USDM_FILE)], rec)
    stats = v.book(sym).stats
    assert checks == 629  # README 1b
    assert stats["applied"] == 6547 and stats["gaps"] == 0
    body = v.depth(sym, 3)
    assert body["lastUpdateId"] == 5123135475514 and list(body) == ["lastUpdateId", "E", "T", "bids", "asks"]
    assert body["bids"][0][0].count(".") == 1 and len(body["bids"][0][0].split(".")[1]) == 2  # "61659.70"
    # Derived USD-M streams: aggTrade in USD-M's key order covering every trade id once,
    # and @depth@100ms windows chained by pu (1.7).
    trades = rec.streams("btcusdt@trade")
    aggs = rec.streams("btcusdt@aggTrade")
    assert list(aggs[0]) == ["e", "E", "a", "s", "p", "q", "f", "l", "T", "m"]
    assert [t for a in aggs for t in range(a["f"], a["l"] + 1)] == [t["t"] for t in trades]
    assert sum(Decimal(a["q"]) for a in aggs) == sum(Decimal(t["q"]) for t in trades)
    d100 = rec.streams("btcusdt@depth@100ms")
    assert len(d100) > 3000 and all(list(d) == ["e", "E", "T", "s", "U", "u", "pu", "b", "a"] for d in d100[:10])
    assert all(b["pu"] == a["u"] for a, b in zip(d100, d100[1:]))


@pytest.mark.data
def test_depth_snapshots_bridge_the_recorded_stream(need_data):
    """A client that takes depth() at any point and applies later diffs ends with the venue's book."""
    src = PlaybackSource([need_data(SPOT_FILES[0])], speed=None, max_records=12_000)
    v = VenueMarket()
    src.bind(v)
    clients: list[ClientBook] = []
    n = 0
    for ev in src.events():
        if ev.kind == DEPTH:
            for c in clients:
                c.apply(ev.data)
        v.process(ev)
        n += 1
        if n in (1, 5, 500, 3_001, 7_777):  # before the bridging diff, and later at random points
            body = v.depth("BTCUSDT", 5000)
            assert body["lastUpdateId"] == v.book("BTCUSDT").last_update_id
            b, a = body["bids"], body["asks"]
            assert [Decimal(p) for p, _ in b] == sorted((Decimal(p) for p, _ in b), reverse=True)
            assert [Decimal(p) for p, _ in a] == sorted(Decimal(p) for p, _ in a)
            assert Decimal(b[0][0]) < Decimal(a[0][0])
            assert (Decimal(b[0][0]), Decimal(b[0][1])) == v.best_bid("BTCUSDT")
            clients.append(ClientBook(body))
    end = v.depth("BTCUSDT", 5000)
    assert len(clients) == 5 and all(c.applied > 0 for c in clients[:-1])
    for c in clients:
        assert c.lid == end["lastUpdateId"]
        assert c.top(1000) == body_top(end, 1000)


@pytest.mark.data
def test_recording_without_snapshot_streams_but_serves_no_book(need_data):
    path = need_data("hftbacktest/spot/btcusdt_20230405.dat.gz")
    src = PlaybackSource([path], speed=None)
    assert not src.has_snapshot and src.market == "spot"
    v = VenueMarket()
    src.bind(v)
    rec = Recorder()
    v.add_stream_listener(rec)
    for ev in src.events():
        v.process(ev)
    assert sum(1 for s, _, _ in rec.out if s == "btcusdt@depth@100ms") == 3929  # README 1a
    assert not v.is_synced("BTCUSDT") and v.best_bid("BTCUSDT") is None
    with pytest.raises(BookUnavailable):
        v.depth("BTCUSDT", 10)


@pytest.mark.data
def test_session_paths_follow_the_next_day(need_data):
    first = need_data(SPOT_FILES[0])
    assert session_paths(first) == [first, need_data(SPOT_FILES[1])]
    assert session_paths(need_data(USDM_FILE)) == [need_data(USDM_FILE)]


@pytest.mark.data
def test_iter_events_keeps_snapshot_in_place(need_data):
    evs = list(zip(range(10), iter_events([need_data(SPOT_FILES[0])])))
    kinds = [ev.kind for _, ev in evs]
    assert kinds.index(SNAPSHOT) == 7  # line 8 of the file (README 1a)
    assert evs[7][1].data.lastUpdateId == 50093239218
