"""Fuzzing the market-data decoders: FrameDecoder.decode and MarketDataFeed.on_frame.

Inputs: arbitrary bytes, and structurally valid JSON with wrong values for every
message kind (depthUpdate bare and enveloped, REST/WS API snapshot, trade,
aggTrade, bookTicker, control replies), alone or interleaved with a valid
stream of one symbol.

Properties:

* ``FrameDecoder.decode`` returns a known kind or raises one of its documented
  errors (``msgspec.DecodeError``, ``msgspec.ValidationError``, ``FrameError``);
* ``MarketDataFeed.on_frame`` never raises; every frame is counted exactly once,
  in ``counts`` (by kind) or in ``errors`` (by cause), and -1 means ``errors``;
* a frame rejected with -1 leaves every book as it was, except that a broken
  diff whose ids reveal a gap invalidates its book through ``on_gap`` (levels
  and update id untouched);
* a valid book is never crossed and passes ``check_integrity()``; a valid book
  goes invalid only through the documented path (``on_gap`` in the same frame);
* interleaving rejected frames with a valid stream ends in the book a clean
  feed builds from that stream alone.

Engine bugs these fuzzers found (now fixed) are pinned by regression tests at
the end; the generators now reach beyond int64 update ids too.
"""
from __future__ import annotations

import os
import json

import msgspec
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from engine.feed import decode as d
from engine.feed.decode import FrameDecoder, FrameError
from engine.feed.market import FeedListener, MarketDataFeed
from engine.feed.sync import GapEvent
from engine.instruments import get_builtin
from ext.book import ASK, BID

# MM_FUZZ_EXAMPLES=5000 for a deep run; the default keeps the suite quick.
FUZZ = settings(max_examples=int(os.environ.get("MM_FUZZ_EXAMPLES", "300")), deadline=None,
                suppress_health_check=[HealthCheck.too_slow])
ERROR_KEYS = {"wrong_type", "malformed_json", "unknown_stream", "unexpected_event", "off_grid", "negative_number",
              "malformed_number", "bad_frame", "unknown_symbol", "snapshot_without_symbol"}
GAP_REASONS = {"gap", "bridge", "crossed", "crossed_snapshot", "overflow"}
# Update ids beyond int64 are a counted decoding error (engine bug 1, fixed; regression test below).
MAX_ID = 2**64

# -- value strategies ------------------------------------------------------------------------------------
ints = st.one_of(st.integers(-5, 5), st.integers(0, 2**40), st.integers(-MAX_ID - 1, MAX_ID))
decimals = st.one_of(
    st.from_regex(r"\A[0-9]{0,20}(\.[0-9]{0,20})?\Z"),
    st.from_regex(r"\A-?[0-9]{1,6}\.[0-9]{1,10}\Z"),
    st.sampled_from(["", ".", "-", "1e5", "NaN", "Infinity", " 1.00", "1.00 ", "+1", "0x10", "1,00", "٣.٣",
                     "1.0.0", "00000000000000000000000001", "999999999999999999.99", "0.000000000000000000001"]),
)
scalars = st.one_of(st.none(), st.booleans(), ints, st.floats(allow_nan=False, allow_infinity=False),
                    st.text(max_size=12), decimals)
values = st.recursive(scalars, lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=4), c, max_size=3),
                      max_leaves=8)
level = st.one_of(st.tuples(decimals, decimals).map(list), st.lists(decimals, max_size=3), values)
levels = st.one_of(st.lists(level, max_size=4), values)
symbols = st.sampled_from(["BTCUSDT", "ETHUSDT", "btcusdt", "", "NOSUCHPAIR", "BTC\u00e9USDT"])


def maybe(valid, wrong=values):
    """Mostly a well-typed value, sometimes anything."""
    return st.one_of(valid, valid, wrong)


def message(fields: dict, first: str | None = None):
    """A JSON object with (mostly) the given fields: some dropped, some extra, values fuzzed."""
    keys = list(fields)

    @st.composite
    def build(draw):
        drop = draw(st.sets(st.sampled_from(keys), max_size=2)) if draw(st.booleans()) else set()
        obj = {k: draw(v) for k, v in fields.items() if k not in drop}
        if draw(st.integers(0, 4)) == 0:
            obj[draw(st.text(max_size=3))] = draw(values)
        if first is not None and first in obj:
            obj = {first: obj.pop(first), **obj}
        return obj

    return build()


depth_fields = {"e": maybe(st.just("depthUpdate"), scalars), "E": maybe(ints), "s": maybe(symbols),
                "U": maybe(ints), "u": maybe(ints), "b": levels, "a": levels, "pu": maybe(ints), "T": maybe(ints)}
snapshot_fields = {"lastUpdateId": maybe(ints), "bids": levels, "asks": levels, "E": maybe(ints),
                   "T": maybe(ints), "symbol": maybe(symbols)}
trade_fields = {"e": maybe(st.just("trade"), scalars), "E": maybe(ints), "s": maybe(symbols), "t": maybe(ints),
                "p": maybe(decimals), "q": maybe(decimals), "T": maybe(ints), "m": maybe(st.booleans()),
                "M": maybe(st.booleans())}
agg_fields = {"e": maybe(st.just("aggTrade"), scalars), "E": maybe(ints), "s": maybe(symbols), "a": maybe(ints),
              "p": maybe(decimals), "q": maybe(decimals), "f": maybe(ints), "l": maybe(ints), "T": maybe(ints),
              "m": maybe(st.booleans()), "M": maybe(st.booleans())}
ticker_fields = {"u": maybe(ints), "s": maybe(symbols), "b": maybe(decimals), "B": maybe(decimals),
                 "a": maybe(decimals), "A": maybe(decimals), "e": maybe(st.just("bookTicker"), scalars)}
control_fields = {"result": values, "id": maybe(ints | st.text(max_size=36)),
                  "error": maybe(st.fixed_dictionaries({"code": ints, "msg": st.text(max_size=20)}))}

bare = st.one_of(
    message(depth_fields, "e"), message(depth_fields), message(snapshot_fields, "lastUpdateId"),
    message(snapshot_fields), message(trade_fields, "e"), message(agg_fields, "e"), message(ticker_fields, "u"),
    message(ticker_fields), message(control_fields), message(control_fields, "id"),
)
streams = st.sampled_from(["btcusdt@depth@100ms", "btcusdt@depth", "ethusdt@depth@0ms", "btcusdt@trade",
                           "btcusdt@aggTrade", "btcusdt@bookTicker", "btcusdt@kline_1m", "btcusdt@depth5",
                           "btcusdt@nosuch", "nosymbol", "", "@depth"])


@st.composite
def enveloped(draw):
    data = draw(bare)
    stream = draw(st.one_of(streams, st.text(max_size=20)))
    obj = {"stream": stream, "data": data} if draw(st.integers(0, 5)) else {"data": data, "stream": stream}
    return obj


def encode(obj) -> bytes:
    # The stdlib keeps key order and writes ints of any size; compact like the venue.
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


json_frames = st.one_of(bare, enveloped()).map(encode)


@st.composite
def corrupted(draw, frames=json_frames):
    """A JSON frame with bytes cut, flipped or inserted: mostly not JSON any more."""
    b = bytearray(draw(frames))
    for _ in range(draw(st.integers(1, 3))):
        op = draw(st.integers(0, 2))
        i = draw(st.integers(0, max(0, len(b) - 1)))
        if op == 0:
            del b[i:]
        elif op == 1 and b:
            b[i] = draw(st.integers(0, 255))
        else:
            b[i:i] = draw(st.binary(min_size=1, max_size=4))
    return bytes(b)


any_frame = st.one_of(st.binary(max_size=200), json_frames, corrupted())


# -- FrameDecoder.decode --------------------------------------------------------------------------------
DOCUMENTED = (msgspec.DecodeError, UnicodeDecodeError, msgspec.ValidationError, FrameError)


@FUZZ
@given(any_frame)
def test_decoder_returns_a_kind_or_raises_a_documented_error(frame):
    try:
        kind, msg = FrameDecoder().decode(frame)
    except DOCUMENTED as e:
        assert d.classify_error(e) in ERROR_KEYS
        return
    assert kind in (d.DEPTH, d.TRADE, d.AGG_TRADE, d.BOOK_TICKER, d.SNAPSHOT, d.CONTROL, d.IGNORED)
    assert (msg is None) == (kind == d.IGNORED)


# -- MarketDataFeed.on_frame ------------------------------------------------------------------------------
class Recorder(FeedListener):
    def __init__(self) -> None:
        self.gaps: list[GapEvent] = []
        self.decode_errors: list[str] = []
        self.books = 0

    def on_gap(self, event: GapEvent) -> None:
        self.gaps.append(event)

    def on_decode_error(self, kind: str, error: BaseException, source: str) -> None:
        self.decode_errors.append(kind)

    def on_book(self, symbol, book) -> None:
        assert book.valid and not book.is_crossed()
        self.books += 1


def make_feed(market: str) -> tuple[MarketDataFeed, Recorder]:
    rec = Recorder()
    return MarketDataFeed(lambda s, first: get_builtin(s, market), rec), rec


def book_state(feed: MarketDataFeed) -> dict:
    out = {}
    for sym, s in feed.syncs.items():
        b = s.book
        out[sym] = (s.valid, b.valid, b.last_update_id, tuple(map(tuple, b.levels(BID))),
                    tuple(map(tuple, b.levels(ASK))))
    return out


def feed_one(feed: MarketDataFeed, rec: Recorder, frame: bytes, symbol: str | None = None) -> int:
    """on_frame with every per-frame property checked."""
    before = book_state(feed)
    n_err, n_ok, n_gaps = sum(feed.errors.values()), sum(feed.counts.values()), len(rec.gaps)
    r = feed.on_frame(frame, 0, "fuzz", symbol)
    assert isinstance(r, int)
    assert feed.frames == sum(feed.errors.values()) + sum(feed.counts.values())
    if r < 0:
        assert sum(feed.errors.values()) == n_err + 1 and sum(feed.counts.values()) == n_ok
        assert rec.decode_errors and rec.decode_errors[-1] in ERROR_KEYS
        # A rejected frame leaves every book as it was (a new symbol's sync may appear, empty) ...
        after = book_state(feed)
        for k in (k for k, v in after.items() if k in before and before[k] != v):
            # ... except a broken diff that also revealed a gap: invalid through on_gap, content kept.
            assert before[k][0] and after[k][:2] == (False, False) and after[k][2:] == before[k][2:], (frame, k)
            assert any(g.symbol == k for g in rec.gaps[n_gaps:]), (frame, k)
        assert all(v == (False, False, 0, ((), ()), ((), ())) for k, v in after.items() if k not in before)
    else:
        assert sum(feed.counts.values()) == n_ok + 1 and sum(feed.errors.values()) == n_err
    for sym, s in feed.syncs.items():
        if s.valid:
            assert s.book.valid and not s.book.is_crossed() and feed.book(sym) is s.book
            s.book.check_integrity()
        else:
            assert feed.book(sym) is None
            if before.get(sym, (False,))[0]:
                # valid -> invalid only through the documented path: a gap event, this frame.
                assert any(g.symbol == sym for g in rec.gaps[n_gaps:])
    for g in rec.gaps[n_gaps:]:
        assert g.reason in GAP_REASONS and not feed.syncs[g.symbol].valid
    return r


@pytest.mark.parametrize("market", ["spot", "usdm"])
@FUZZ
@given(frames=st.lists(st.one_of(any_frame, any_frame, st.tuples(json_frames, symbols)), max_size=25))
def test_feed_never_raises_and_counts_every_frame(market, frames):
    feed, rec = make_feed(market)
    for f in frames:
        if isinstance(f, tuple):
            feed_one(feed, rec, f[0], f[1])
        else:
            feed_one(feed, rec, f)
    assert sum(feed.errors.values()) == len(rec.decode_errors)
    assert set(feed.errors) <= ERROR_KEYS


# -- a valid stream with rejected frames in between ---------------------------------------------------------
# Spot BTCUSDT: bids 90.00-99.99 and asks 100.01-110.00 never cross.
@st.composite
def valid_stream(draw):
    lid = draw(st.integers(1, 10**12))
    bids = {draw(st.integers(9000, 9999)): draw(st.integers(1, 10**8)) for _ in range(draw(st.integers(1, 5)))}
    asks = {draw(st.integers(10001, 11000)): draw(st.integers(1, 10**8)) for _ in range(draw(st.integers(1, 5)))}

    def lv(side):
        return [[f"{p // 100}.{p % 100:02d}", f"{q // 10**8}.{q % 10**8:08d}"] for p, q in sorted(side.items())]

    snapshot = encode({"lastUpdateId": lid, "bids": lv(bids), "asks": lv(asks)})
    diffs = []
    first_U = lid + 1 - draw(st.integers(0, 3))   # the first diff may overlap the snapshot (bridging)
    U = first_U
    for _ in range(draw(st.integers(1, 12))):
        n = draw(st.integers(1, 4))
        u = max(U + n - 1, lid + 1) if not diffs else U + n - 1
        b = {draw(st.integers(9000, 9999)): draw(st.integers(0, 10**8)) for _ in range(draw(st.integers(0, 3)))}
        a = {draw(st.integers(10001, 11000)): draw(st.integers(0, 10**8)) for _ in range(draw(st.integers(0, 3)))}
        diffs.append(encode({"e": "depthUpdate", "E": 1, "s": "BTCUSDT", "U": U, "u": u, "b": lv(b), "a": lv(a)}))
        U = u + 1
    combined = draw(st.booleans())
    if combined:
        diffs = [b'{"stream":"btcusdt@depth@100ms","data":' + x + b"}" for x in diffs]
    snap_at = draw(st.integers(0, len(diffs)))  # snapshot after some diffs: they are buffered
    return snapshot, diffs, snap_at


WRONG_TYPES = {"U": "12", "u": 1.5, "s": 7, "E": "now", "b": {"p": "q"}, "a": [["1.00"]], "e": "trade"}
BAD_LEVELS = [[["100.001", "1"]], [["-1.00", "1"]], [["1e3", "1"]], [["99.00", "-0.5"]], [["99.00"]], [[99.0, "1"]],
              [["99.00", "1", "2"]], "[[", [["", "1"]], [["99.00", "0.000000001"]]]


@st.composite
def rejected(draw, diffs):
    """A frame the feed must reject: a diff of the stream with one field broken, or junk.

    ``diffs`` are those already fed and the next one: a broken diff with ids from the
    future legitimately reveals a gap (the book goes invalid by the documented path).
    """
    kind = draw(st.integers(0, 3))
    if kind == 0 or not diffs:
        return draw(st.one_of(st.binary(max_size=64).filter(lambda b: not b.lstrip().startswith((b"{", b"["))),
                              st.just(b""), st.just(b"null"), st.just(b"[]"), st.just(b'{"hello":1}')))
    src = msgspec.json.decode(draw(st.sampled_from(diffs)))
    env = "data" in src
    obj = src["data"] if env else src
    if kind == 1:
        key = draw(st.sampled_from(sorted(WRONG_TYPES)))
        obj[key] = WRONG_TYPES[key]
    elif kind == 2:
        obj[draw(st.sampled_from(["b", "a"]))] = draw(st.sampled_from(BAD_LEVELS))
    else:
        raw = encode(src)
        return raw[: draw(st.integers(0, len(raw) - 1))]  # truncated: never valid JSON
    return encode(src)


@FUZZ
@given(data=st.data())
def test_rejected_frames_never_change_the_book(data):
    snapshot, diffs, snap_at = data.draw(valid_stream())
    clean, crec = make_feed("spot")
    for x in diffs[:snap_at]:
        feed_one(clean, crec, x)
    feed_one(clean, crec, snapshot, "BTCUSDT")
    for x in diffs[snap_at:]:
        feed_one(clean, crec, x)
    assume(clean.book("BTCUSDT") is not None)

    feed, rec = make_feed("spot")
    sequence = diffs[:snap_at] + [None] + diffs[snap_at:]
    fed = 0
    for x in sequence:
        for junk in data.draw(st.lists(rejected(diffs[:fed + 1]), max_size=3)):
            assert feed_one(feed, rec, junk) == -1, junk
        if x is None:
            feed_one(feed, rec, snapshot, "BTCUSDT")
        else:
            feed_one(feed, rec, x)
            fed += 1
    assert book_state(feed) == book_state(clean)
    assert rec.gaps == [] and feed.syncs["BTCUSDT"].gaps == 0


# -- regression tests: engine bugs found by the fuzzers ------------------------------------------------------
SNAP = b'{"lastUpdateId":100,"bids":[["100.00","1"]],"asks":[["101.00","1"]]}'


def diff(U: int, u: int) -> bytes:
    return b'{"e":"depthUpdate","E":1,"s":"BTCUSDT","U":%d,"u":%d,"b":[["100.00","2"]],"a":[]}' % (U, u)


def test_bug1_diff_update_id_beyond_int64_is_counted():
    feed, rec = make_feed("spot")
    feed.on_frame(diff(101, 101))
    feed.on_frame(SNAP, symbol="BTCUSDT")
    assert feed.on_frame(diff(102, 2**63)) == -1 and sum(feed.errors.values()) == 1


def test_bug1_snapshot_update_id_beyond_int64_is_counted():
    feed, rec = make_feed("spot")
    feed.on_frame(diff(101, 101))
    assert feed.on_frame(b'{"lastUpdateId":%d,"bids":[],"asks":[]}' % 2**63, symbol="BTCUSDT") == -1


def test_bug2_invalid_utf8_is_malformed_json():
    feed, rec = make_feed("spot")
    frame = b'{"e":"trade","E":1,"s":"BTC\xffUSDT","t":1,"p":"1.00","q":"1.0","T":1,"m":true}'
    assert feed.on_frame(frame) == -1
    assert dict(feed.errors) == {"malformed_json": 1}


def test_bug3_malformed_stale_diff_is_counted_as_an_error():
    feed, rec = make_feed("spot")
    feed.on_frame(diff(101, 101))
    feed.on_frame(SNAP, symbol="BTCUSDT")
    assert feed.on_frame(b'{"e":"depthUpdate","E":1,"s":"BTCUSDT","U":101,"u":101,"b":[["1.00"]],"a":"x"}') == -1


def test_bug4_malformed_gap_diff_is_counted_and_not_buffered():
    """Regression (engine bug 4): a malformed diff that reveals a gap invalidates the book, is
    counted as a decoding error and is not buffered, so the next snapshot syncs cleanly."""
    feed, rec = make_feed("spot")
    feed.on_frame(b'{"e":"depthUpdate","E":1,"s":"BTCUSDT","U":2,"u":2,"b":[],"a":[]}')
    feed.on_frame(b'{"lastUpdateId":1,"bids":[["90.00","1"]],"asks":[["100.01","1"]]}', symbol="BTCUSDT")
    # U=4 after u=2: a gap (the book goes invalid); its levels are off the tick grid.
    assert feed.on_frame(b'{"e":"depthUpdate","E":1,"s":"BTCUSDT","U":4,"u":4,"b":[["100.001","1"]],"a":[]}') == -1
    assert feed.book("BTCUSDT") is None and dict(feed.errors) == {"off_grid": 1}
    s = feed.syncs["BTCUSDT"]
    assert s.gaps == 1 and s.buffered == 0
    r = feed.on_frame(b'{"lastUpdateId":3,"bids":[["91.00","1"]],"asks":[["100.01","1"]]}', symbol="BTCUSDT")
    assert r == d.SNAPSHOT and s.valid and s.book.last_update_id == 3
    assert dict(feed.errors) == {"off_grid": 1}
