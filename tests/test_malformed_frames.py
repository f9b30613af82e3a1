"""Malformed frames get a clear, counted error and never stop the replay."""
from __future__ import annotations

import random

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.feed import decode as d
from engine.feed.market import FeedListener, MarketDataFeed
from engine.instruments import get_builtin
from engine.recording import iter_records
from engine.replay import BboChecker
from ext.parsers import LevelParser, MalformedNumberError, NegativeNumberError, OffGridError


def _bad_frames(depth_frame: bytes) -> list[tuple[str, bytes]]:
    env = msgspec.json.decode(depth_frame)
    data = env["data"]

    def variant(**changes):
        dd = dict(data, **changes)
        return msgspec.json.encode({"stream": env["stream"], "data": dd})

    return [
        ("malformed_json", depth_frame[: len(depth_frame) // 2]),
        ("malformed_json", b"\x00\xff garbage"),
        ("wrong_type", variant(U="not-a-number")),
        ("wrong_type", variant(b=[[1.5, 2.0]])),
        ("wrong_type", variant(b="bids")),
        ("off_grid", variant(b=[["61828.091", "1.0"]])),
        ("negative_number", variant(a=[["61900.00", "-1.0"]])),
        ("malformed_number", variant(a=[["61900.00", "1e3"]])),
        ("unknown_stream", msgspec.json.encode({"stream": "btcusdt@nosuchstream", "data": data})),
        ("unexpected_event", variant(e="trade")),
        ("bad_frame", b'{"hello":"world"}'),
    ]


def _feed():
    ref: list = []
    checker = BboChecker(ref)
    feed = MarketDataFeed(lambda s, m: get_builtin(s, "spot"), checker)
    ref.append(feed)
    return feed, checker


def test_malformed_frames_are_counted_and_replay_continues(need_data):
    records = list(iter_records([need_data("hftbacktest/spot/btcusdt_20240808.gz")]))[:20000]
    clean, clean_checker = _feed()
    for r in records:
        clean.on_frame(r.frame, r.ts_local_ns, r.source)
    depth_at = [i for i, r in enumerate(records) if b"depthUpdate" in r.frame[:80]]
    rng = random.Random(7)
    # Corrupted copies of the *next* depth message, injected just before it: they
    # carry the update ids the book expects, so only the decoder can stop them.
    positions = sorted(rng.sample(range(100, depth_at[-1]), 60))
    injected: dict[str, int] = {}
    feed, checker = _feed()
    k = 0
    for i, r in enumerate(records):
        while k < len(positions) and positions[k] == i:
            nxt = next(j for j in depth_at if j >= i)
            bad = _bad_frames(records[nxt].frame)
            kind, frame = bad[k % len(bad)]
            injected[kind] = injected.get(kind, 0) + 1
            assert feed.on_frame(frame, r.ts_local_ns, "injected") == -1
            k += 1
        feed.on_frame(r.frame, r.ts_local_ns, r.source)
    assert dict(feed.errors) == injected
    s, c = feed.syncs["BTCUSDT"], clean.syncs["BTCUSDT"]
    assert s.gaps == 0 and s.valid and s.diffs_applied == c.diffs_applied
    assert checker.checks == clean_checker.checks > 100 and checker.mismatches == 0
    assert s.book.best_bid() == c.book.best_bid() and s.book.best_ask_qty() == c.book.best_ask_qty()


def test_listener_sees_each_error():
    seen = []

    class L(FeedListener):
        def on_decode_error(self, kind, error, source):
            seen.append((kind, source, str(error)))

    feed = MarketDataFeed(lambda s, m: get_builtin(s, "spot"), L())
    assert feed.on_frame(b'{"stream":"btcusdt@depth@100ms","data":{', 0, "x:1") == -1
    assert seen and seen[0][0] == "malformed_json" and seen[0][1] == "x:1"


@pytest.mark.parametrize("text,exc", [
    ("", MalformedNumberError), ("1.2.3", MalformedNumberError), ("abc", MalformedNumberError),
    (".", MalformedNumberError), ("-1.00", NegativeNumberError), ("1.001", OffGridError),
    ("99999999999999999999", MalformedNumberError),
])
def test_price_parser_rejects(text, exc):
    with pytest.raises(exc):
        LevelParser(2, 1, 8).price_ticks(text)


def test_price_parser_exact():
    p = LevelParser(2, 1, 8)
    assert p.price_ticks("61828.09000000") == 6182809
    assert p.price_ticks("61828") == 6182800
    assert p.price_ticks("0.5") == 50
    assert p.qty_lots("3.61811000") == 361811000
    assert p.qty_lots("0.00000000") == 0
    assert p.qty_lots(b"1") == 100000000
    # A 0.10 tick (USD-M BTCUSDT): 1 decimal, tick_units 1; a 0.05 tick: 2 decimals, 5 units.
    assert LevelParser(1, 1, 3).price_ticks("61800.30") == 618003
    q = LevelParser(2, 5, 3)
    assert q.price_ticks("1.05") == 21
    with pytest.raises(OffGridError):
        q.price_ticks("1.06")


def test_price_beyond_book_range_rejected_before_apply():
    from ext.book import OrderBook
    b = OrderBook()
    p = LevelParser(0, 1, 0)
    p.load_snapshot(b, [("100", "1")], [("101", "1")], 10)
    with pytest.raises(MalformedNumberError):
        p.apply_diff(b, [("100", "5")], [(str(2**62), "1")], 11)
    with pytest.raises(MalformedNumberError):
        p.apply_diff(b, b'[["100","5"]]', b'[["%d","1"]]' % 2**62, 11)
    assert b.best_bid_qty() == 1 and b.last_update_id == 10


@pytest.mark.parametrize("raw", [b"[]x", b'[["1.00","1"]] ]', 5, None])
def test_raw_levels_reject_trailing_garbage_and_non_buffers(raw):
    from ext.parsers import BadLevelsError
    with pytest.raises(BadLevelsError):
        LevelParser(2, 1, 8).validate(raw, b"[]")


def test_off_grid_diff_leaves_book_untouched():
    from ext.book import OrderBook
    b = OrderBook()
    p = LevelParser(2, 1, 8)
    p.load_snapshot(b, [("100.00", "1")], [("101.00", "1")], 10)
    with pytest.raises(OffGridError):
        p.apply_diff(b, [("100.00", "5")], [("101.001", "1")], 11)
    assert b.best_bid_qty() == 100000000 and b.last_update_id == 10


def test_stream_kinds():
    assert d.stream_kind("btcusdt@depth@100ms") == d.DEPTH
    assert d.stream_kind("btcusdt@depth@0ms") == d.DEPTH
    assert d.stream_kind("btcusdt@depth") == d.DEPTH
    assert d.stream_kind("btcusdt@markPrice@1s") == d.IGNORED
    with pytest.raises(d.UnknownStreamError):
        d.stream_kind("btcusdt@depth7")


@given(st.one_of(st.text(alphabet="0123456789.-e ", max_size=24),
                 st.from_regex(r"\A[0-9]{0,20}(\.[0-9]{0,12})?\Z")), st.integers(0, 8))
@settings(max_examples=3000, deadline=None)
def test_parser_agrees_with_decimal(text, decimals):
    """The C parser accepts exactly the plain non-negative decimals that fit the grid, and is exact.

    Documented limit: at most 18 significant digits (from the first non-zero
    digit through the last decimal kept), so the result always fits int64.
    """
    from decimal import Decimal
    p = LevelParser(0, 1, decimals)
    expect = None
    ip, _, fp = text.partition(".")
    plain = text.count(".") <= 1 and (ip + fp).isdigit() and (ip + fp) != ""
    if plain and set(fp[decimals:]) <= {"0"} and len((ip + fp[:decimals]).lstrip("0")) <= 18:
        value = int(Decimal(text).scaleb(decimals))
        expect = value if value < 2**63 else None
    if expect is None:
        with pytest.raises((MalformedNumberError, OffGridError, NegativeNumberError)):
            p.qty_lots(text)
    else:
        assert p.qty_lots(text) == expect
        assert p.validate([], ('[["1","%s"]]' % text).encode()) == 1
