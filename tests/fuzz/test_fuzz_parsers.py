"""Fuzzing ext.parsers.LevelParser: numbers from arbitrary strings, levels from arbitrary raw arrays.

Properties:

* ``price_ticks`` / ``qty_lots`` return an exact non-negative int or raise a
  :class:`ext.parsers.DecodeError` subclass; on the venue's decimal format they
  agree with exact ``Decimal`` arithmetic (off-grid -> ``OffGridError``,
  negative -> ``NegativeNumberError``);
* ``validate`` / ``apply_diff`` / ``load_snapshot`` over arbitrary bytes, arbitrary
  JSON and lists of pairs raise only ``DecodeError`` and then leave the book
  exactly as it was; on success the book holds the model's levels (absolute
  quantities, 0 deletes) and the given update id;
* the in-place raw-JSON path and the list path agree on every array msgspec
  can write.
"""
from __future__ import annotations

import os
import json
import re

import msgspec
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from ext.book import ASK, BID, MAX_PRICE_TICKS, OrderBook
from ext.parsers import DecodeError, LevelParser, MalformedNumberError, NegativeNumberError, OffGridError

# MM_FUZZ_EXAMPLES=5000 for a deep run; the default keeps the suite quick.
FUZZ = settings(max_examples=int(os.environ.get("MM_FUZZ_EXAMPLES", "500")), deadline=None,
                suppress_health_check=[HealthCheck.too_slow])
_VENUE_NUMBER = re.compile(r"[0-9]*\.?[0-9]*")

# (price_decimals, tick_units, qty_decimals) of real grids: spot BTCUSDT, USD-M BTCUSDT, a 0.05 tick, integers.
grids = st.sampled_from([(2, 1, 8), (1, 1, 3), (2, 5, 8), (0, 1, 0), (8, 1, 8), (4, 25, 2)])
numbers = st.one_of(
    st.from_regex(r"\A[0-9]{0,22}(\.[0-9]{0,22})?\Z"),
    st.decimals(min_value=0, max_value=10**12, allow_nan=False, allow_infinity=False, places=10).map(str),
    st.sampled_from(["", ".", "-", "-0", "-1.5", "1e5", "1E-5", "NaN", "inf", " 1", "1 ", "+1", "0x1f", "1,5",
                     "\u0661.\u0662", "1.2.3", "1..", "..1", "\x00", "1\x00", "\uff11", "0" * 40 + "1"]),
    st.text(max_size=25),
)


def model_units(text: str, decimals: int) -> int | str:
    """What an exact parser must return for ``text``: units, or the error class name."""
    if text.startswith("-"):
        return "negative"
    if not text.isascii() or not _VENUE_NUMBER.fullmatch(text) or not any(c.isdigit() for c in text):
        return "malformed"
    whole, _, frac = text.partition(".")
    if frac[decimals:].strip("0"):
        return "off_grid"
    return int((whole or "0") + frac[:decimals].ljust(decimals, "0"))


def check_number(parse, text, decimals: int, tick_units: int = 1, is_price: bool = False) -> None:
    want = model_units(text, decimals) if isinstance(text, str) else None
    try:
        got = parse(text)
    except DecodeError as e:
        if want is None or want in ("malformed", "off_grid"):
            return  # the parser reports the first problem it meets: any DecodeError
        if want == "negative":
            assert isinstance(e, NegativeNumberError), (text, e)
        elif want >= 10**17:
            # Beyond 18 significant digits, int64 or the book's price range: refused (range or grid first).
            assert isinstance(e, (MalformedNumberError, OffGridError)), (text, want, e)
        else:
            assert is_price and want % tick_units and isinstance(e, OffGridError), (text, want, e)
        return
    assert isinstance(got, int) and got >= 0
    if want is not None:
        assert isinstance(want, int), (text, want, got)
        assert got == (want // tick_units if is_price else want) and (not is_price or want % tick_units == 0)
        assert not is_price or got <= MAX_PRICE_TICKS


@FUZZ
@given(grid=grids, text=numbers)
@example(grid=(2, 1, 8), text="61828.09000000")
@example(grid=(2, 1, 8), text="61828.091")
@example(grid=(2, 5, 8), text="0.07")
def test_numbers_are_exact_or_a_decode_error(grid, text):
    pd, tu, qd = grid
    p = LevelParser(pd, tu, qd)
    check_number(p.price_ticks, text, pd, tu, is_price=True)
    check_number(p.qty_lots, text, qd)
    check_number(p.price_ticks, text.encode("utf-8", "surrogatepass"), pd, tu, is_price=True)


@FUZZ
@given(value=st.one_of(st.none(), st.integers(), st.floats(), st.lists(st.text(max_size=3), max_size=2),
                       st.binary(max_size=30), st.text(alphabet=st.characters(codec="utf-8"), max_size=30)))
def test_number_of_any_type_is_a_decode_error_or_int(value):
    p = LevelParser(2, 1, 8)
    for parse in (p.price_ticks, p.qty_lots):
        try:
            assert parse(value) >= 0
        except DecodeError:
            pass


# -- levels ------------------------------------------------------------------------------------------------
def book_state(book: OrderBook) -> tuple:
    return (book.valid, book.last_update_id, book.updates_applied,
            tuple(map(tuple, book.levels(BID))), tuple(map(tuple, book.levels(ASK))))


def seeded_book() -> OrderBook:
    b = OrderBook(window_ticks=1 << 12)
    p = LevelParser(2, 1, 8)
    p.load_snapshot(b, [("100.00", "1"), ("99.50", "2")], [("100.10", "3"), ("250.00", "4")], 77)
    b.mark_valid(77)
    return b


pair_text = st.one_of(st.from_regex(r"\A[0-9]{1,6}\.[0-9]{2}\Z"), numbers)
pairs = st.lists(st.tuples(pair_text, pair_text), max_size=6)
json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=8), pair_text),
    lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=3), c, max_size=2), max_leaves=10)


@st.composite
def raw_levels(draw):
    """The raw JSON text of a levels array: well formed, structurally wrong, or damaged bytes."""
    kind = draw(st.integers(0, 3))
    if kind == 0:
        return msgspec.json.encode([list(x) for x in draw(pairs)])
    if kind == 1:
        return json.dumps(draw(json_values), indent=draw(st.sampled_from([None, 1]))).encode()
    if kind == 2:
        b = bytearray(msgspec.json.encode([list(x) for x in draw(pairs)]))
        for _ in range(draw(st.integers(1, 3))):
            i = draw(st.integers(0, max(0, len(b) - 1)))
            if draw(st.booleans()) and b:
                b[i] = draw(st.integers(0, 255))
            else:
                del b[i:]
        return bytes(b)
    return draw(st.binary(max_size=60))


side_input = st.one_of(raw_levels(), raw_levels().map(msgspec.Raw), pairs.map(list),
                       st.lists(st.one_of(st.tuples(pair_text, pair_text).map(list), json_values), max_size=4),
                       json_values)


def model_apply(book_before: tuple, bids, asks, parser: LevelParser) -> dict:
    bid = dict(zip(*book_before[3])) if book_before[3][0] else {}
    ask = dict(zip(*book_before[4])) if book_before[4][0] else {}
    for side, levels in ((bid, bids), (ask, asks)):
        for p, q in levels:
            t, n = parser.price_ticks(p), parser.qty_lots(q)
            if n:
                side[t] = n
            else:
                side.pop(t, None)
    return {BID: dict(sorted(bid.items(), reverse=True)), ASK: dict(sorted(ask.items()))}


def as_pairs(x) -> list | None:
    """The list of (price, qty) strings a side input stands for, if it is a well-formed array."""
    if isinstance(x, (bytes, msgspec.Raw)):
        try:
            x = msgspec.json.decode(bytes(x))
        except (msgspec.DecodeError, UnicodeDecodeError):
            return None
    if isinstance(x, list) and all(isinstance(lv, (list, tuple)) and len(lv) == 2
                                   and all(isinstance(v, str) for v in lv) for lv in x):
        return [tuple(lv) for lv in x]
    return None


@FUZZ
@given(bids=side_input, asks=side_input, lid=st.integers(-(2**63), 2**63 - 1), snapshot=st.booleans())
def test_levels_apply_exactly_or_leave_the_book_untouched(bids, asks, lid, snapshot):
    p = LevelParser(2, 1, 8)
    book = seeded_book()
    before = book_state(book)
    try:
        n_valid = p.validate(bids, asks)
    except DecodeError:
        n_valid = None
    except TypeError:
        # Not a list, bytes or msgspec.Raw (API misuse; the wire path always passes msgspec.Raw).
        assert not all(isinstance(x, (list, bytes, msgspec.Raw)) for x in (bids, asks))
        return
    try:
        if snapshot:
            n = p.load_snapshot(book, bids, asks, lid)
        else:
            n = p.apply_diff(book, bids, asks, lid)
    except DecodeError:
        assert n_valid is None
        assert book_state(book) == before
        return
    assert n == n_valid
    b, a = as_pairs(bids), as_pairs(asks)
    if b is None or a is None:
        return  # accepted raw text that msgspec would not write (see the parser tests): no model
    start = (False, 0, 0, ((), ()), ((), ())) if snapshot else before
    want = model_apply(start, b, a, p)
    assert book.last_update_id == lid
    assert dict(zip(*map(list, book.levels(BID)))) == want[BID]
    assert dict(zip(*map(list, book.levels(ASK)))) == want[ASK]
    assert book.valid == (not snapshot)  # load_snapshot leaves marking valid to the caller
    book.check_integrity() if not book.is_crossed() else None


@FUZZ
@given(bids=pairs, asks=pairs)
def test_raw_and_list_paths_agree(bids, asks):
    p = LevelParser(2, 1, 8)
    raw_b, raw_a = (msgspec.Raw(msgspec.json.encode([list(x) for x in side])) for side in (bids, asks))

    def outcome(b, a):
        book = OrderBook(window_ticks=1 << 12)
        try:
            n = p.apply_diff(book, b, a, 1)
        except DecodeError:
            # The class may differ: the raw path refuses JSON escapes (never in venue numbers)
            # as a bad array, the list path sees the unescaped text as a bad number.
            return "rejected"
        return n, book_state(book)

    assert outcome(raw_b, raw_a) == outcome(list(bids), list(asks))


def test_raw_path_rejects_what_json_rejects_at_the_edges():
    p = LevelParser(2, 1, 8)
    for bad in (b"", b"[", b"[[", b'[["1.00"]]', b'[["1.00","1"],]', b'[["1.00" "1"]]', b'{"1.00":"1"}',
                b'[["1.00",1]]', b'[[1.00,"1"]]', b'[["1.0\\u0030","1"]]', b'"[]"', b"null"):
        try:
            p.validate(bad, b"[]")
        except DecodeError:
            continue
        raise AssertionError(f"accepted {bad!r}")
    assert p.validate(b' [ [ "1.00" , "2" ] ]\n', b"[]") == 1
