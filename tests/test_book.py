"""Tests of ``ext.book.OrderBook`` against the pure-Python ``ReferenceBook``.

Build first: ``python setup.py build_ext --inplace``.
"""
from __future__ import annotations

import gzip
import json
import os

import numpy as np
import pytest
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from ext.book import (
    ASK,
    BID,
    MAX_PRICE_TICKS,
    MIN_PRICE_TICKS,
    NO_ASK,
    NO_BID,
    BookIntegrityError,
    OrderBook,
)
from tests.reference_book import ReferenceBook

I64 = np.int64


def arr(values) -> np.ndarray:
    return np.asarray(values, dtype=I64)


def assert_same(book: OrderBook, ref: ReferenceBook, depth: int = 10) -> None:
    """Every query that does not depend on the internal layout agrees."""
    assert book.best_bid() == ref.best_bid()
    assert book.best_ask() == ref.best_ask()
    assert book.best_bid_qty() == ref.best_bid_qty()
    assert book.best_ask_qty() == ref.best_ask_qty()
    assert book.is_crossed() == ref.is_crossed()
    for side in (BID, ASK):
        assert book.n_levels(side) == ref.n_levels(side)
        prices, qtys = book.top(side, depth)
        assert prices.dtype == I64 and qtys.dtype == I64
        assert (prices.tolist(), qtys.tolist()) == ref.top(side, depth)


def snapshot_of(book: OrderBook) -> tuple:
    return tuple(
        (book.best_bid(), book.best_bid_qty(), book.best_ask(), book.best_ask_qty(),
         tuple(map(tuple, book.levels(side))))
        for side in (BID, ASK)
    )


# ---------------------------------------------------------------------------
# Unit tests
# ---------------------------------------------------------------------------


def test_module_constants():
    assert (BID, ASK) == (0, 1)
    assert NO_BID == -(2**63)
    assert NO_ASK == 2**63 - 1
    assert (MIN_PRICE_TICKS, MAX_PRICE_TICKS) == (-(2**62), 2**62 - 1)


def test_empty_book_sentinels():
    book = OrderBook()
    assert book.best_bid() == NO_BID
    assert book.best_ask() == NO_ASK
    assert book.best_bid_qty() == 0 and book.best_ask_qty() == 0
    assert book.n_levels(BID) == 0 and book.n_levels(ASK) == 0
    assert book.qty_at(BID, 100) == 0 and book.qty_at(ASK, 100) == 0
    assert not book.is_crossed()
    for side in (BID, ASK):
        prices, qtys = book.top(side, 5)
        assert prices.shape == (0,) and qtys.shape == (0,) and prices.dtype == I64
    assert book.last_update_id == 0 and not book.valid and book.updates_applied == 0
    assert book.window_ticks == 1 << 17
    book.check_integrity()
    assert "best_bid=None" in repr(book) and "levels=0/0" in repr(book)


@pytest.mark.parametrize("window", [0, 1, 63, 65, 100, -64, 1 << 27])
def test_bad_window_rejected(window):
    with pytest.raises(ValueError):
        OrderBook(window)


def test_insert_overwrite_delete():
    book = OrderBook(64)
    book.set(BID, 1000, 5)
    book.set(BID, 999, 3)
    book.set(ASK, 1002, 7)
    assert (book.best_bid(), book.best_bid_qty()) == (1000, 5)
    assert (book.best_ask(), book.best_ask_qty()) == (1002, 7)
    book.set(BID, 1000, 9)                       # overwrite the best
    assert book.best_bid_qty() == 9 and book.n_levels(BID) == 2
    book.set(BID, 999, 4)                        # overwrite a non-best level
    assert book.qty_at(BID, 999) == 4 and book.best_bid_qty() == 9
    book.set(BID, 1001, 1)                       # new best
    assert (book.best_bid(), book.best_bid_qty()) == (1001, 1)
    book.set(BID, 1001, 0)                       # delete best -> next level
    assert (book.best_bid(), book.best_bid_qty()) == (1000, 9)
    book.set(BID, 1000, 0)
    book.set(BID, 999, 0)
    assert book.best_bid() == NO_BID and book.best_bid_qty() == 0 and book.n_levels(BID) == 0
    assert book.best_ask() == 1002                # other side untouched
    assert book.qty_at(ASK, 1002) == 7 and book.qty_at(BID, 1002) == 0
    assert book.updates_applied == 9
    book.check_integrity()


@pytest.mark.parametrize("price", [1001, 1010, 10**9, -(10**12), MIN_PRICE_TICKS, MAX_PRICE_TICKS])
def test_delete_absent_level_is_noop(price):
    book = OrderBook(64)
    book.set(BID, 1000, 5)
    book.set(ASK, 1003, 2)
    book.set(BID, 10**7, 0)          # far and absent, on a fresh book
    book.set(ASK, -(10**7), 4)       # one overflow level
    book.set(ASK, -(10**7), 0)
    before, n = snapshot_of(book), book.updates_applied
    assert n == 5
    book.set(BID, price, 0)
    book.set(ASK, price, 0)
    assert snapshot_of(book) == before
    assert book.updates_applied == n + 2
    book.check_integrity()


def test_invalid_updates_raise_and_change_nothing():
    book = OrderBook(64)
    book.set(BID, 1000, 5)
    book.set(ASK, 1003, 2)
    before, n = snapshot_of(book), book.updates_applied
    with pytest.raises(ValueError):
        book.set(BID, 1000, -1)
    with pytest.raises(ValueError):
        book.set(ASK, 2000, -5)
    with pytest.raises(ValueError):
        book.set(2, 1000, 1)
    with pytest.raises(ValueError):
        book.set(-1, 1000, 1)
    with pytest.raises(ValueError):
        book.set(BID, MAX_PRICE_TICKS + 1, 1)
    with pytest.raises(ValueError):
        book.set(ASK, MIN_PRICE_TICKS - 1, 1)
    with pytest.raises(ValueError):
        book.set(BID, NO_BID, 1)
    with pytest.raises(OverflowError):
        book.set(BID, 2**63, 1)
    # bulk: one bad element anywhere -> nothing applied
    with pytest.raises(ValueError):
        book.apply(BID, arr([1001, 1002, 999]), arr([1, 2, -3]))
    with pytest.raises(ValueError):
        book.apply(ASK, arr([1004, MAX_PRICE_TICKS + 1]), arr([1, 2]))
    with pytest.raises(ValueError):
        book.apply(BID, arr([1001, 1002]), arr([1]))
    with pytest.raises(ValueError):
        book.apply(3, arr([1001]), arr([1]))
    with pytest.raises(ValueError):               # buffer dtype mismatch
        book.apply(BID, np.array([1001], dtype=np.int32), arr([1]))
    with pytest.raises(ValueError):
        book.qty_at(5, 1000)
    with pytest.raises(ValueError):
        book.n_levels(2)
    with pytest.raises(ValueError):
        book.top(BID, -1)
    assert snapshot_of(book) == before
    assert book.updates_applied == n
    book.check_integrity()


def test_apply_bulk_matches_set():
    book, ref = OrderBook(64), ReferenceBook()
    prices = arr([1000, 999, 1000, 5, 10**8, 998, 999])
    qtys = arr([1, 2, 3, 4, 5, 0, 0])
    book.apply(BID, prices, qtys)
    for p, q in zip(prices.tolist(), qtys.tolist()):
        ref.set(BID, p, q)
    assert_same(book, ref)
    assert book.updates_applied == len(prices)
    book.apply(ASK, prices[::2] + 10**9, qtys[::2])   # strided view is fine
    for p, q in zip((prices[::2] + 10**9).tolist(), qtys[::2].tolist()):
        ref.set(ASK, p, q)
    assert_same(book, ref)
    ro = arr([1]); ro.flags.writeable = False         # read-only buffers are fine
    book.apply(BID, arr([7]), ro)
    assert book.qty_at(BID, 7) == 1


def test_far_levels_outside_window():
    book, ref = OrderBook(64), ReferenceBook()
    mid = 6_180_000
    for side, price, qty in [
        (BID, mid - 1, 10), (ASK, mid + 1, 11),
        (BID, 500_000, 7), (BID, 500_001, 8), (BID, -(10**15), 1),   # ~5.7e6 ticks away
        (ASK, 10**12, 9), (ASK, mid + 10**6, 4),
    ]:
        book.set(side, price, qty)
        ref.set(side, price, qty)
    assert book.n_overflow(BID) == 3 and book.n_overflow(ASK) == 2
    assert_same(book, ref, depth=100)
    assert book.qty_at(BID, 500_000) == 7 and book.qty_at(ASK, 10**12) == 9
    # delete the near levels: the best must come from the overflow
    for side, price in [(BID, mid - 1), (ASK, mid + 1)]:
        book.set(side, price, 0)
        ref.set(side, price, 0)
        assert_same(book, ref, depth=100)
    assert book.best_bid() == 500_001 and book.best_ask() == mid + 10**6
    book.check_integrity()
    # deleting far absent levels is a no-op
    book.set(BID, 500_002, 0)
    book.set(ASK, 10**13, 0)
    assert_same(book, ref, depth=100)


def test_far_best_then_delete():
    """A new best far outside the window, then deleted: falls back to the window."""
    book, ref = OrderBook(64), ReferenceBook()
    for side, price, qty in [(BID, 1000, 1), (BID, 990, 2), (ASK, 10**9, 3), (ASK, 1010, 4)]:
        book.set(side, price, qty)
        ref.set(side, price, qty)
        assert_same(book, ref)
        book.check_integrity()
    for side, price in [(ASK, 1010), (ASK, 10**9)]:
        book.set(side, price, 0)
        ref.set(side, price, 0)
        assert_same(book, ref)
        book.check_integrity()


def test_recenter_after_large_drift():
    window = 256
    book, ref = OrderBook(window), ReferenceBook()
    mid = 1_000_000
    for i in range(1, 20):
        for side, price in [(BID, mid - i), (ASK, mid + i)]:
            book.set(side, price, i)
            ref.set(side, price, i)
    base0 = book.window_base_ticks
    assert base0 <= mid < base0 + window
    # walk the market up 100 windows, leaving a trail of old levels behind
    for step in range(400):
        mid += window // 4
        book.set(ASK, mid + 1, 5)
        ref.set(ASK, mid + 1, 5)
        for p in list(ref.levels(ASK)[0]):
            if p <= mid:
                book.set(ASK, p, 0)
                ref.set(ASK, p, 0)
        book.set(BID, mid - 1, step + 1)
        ref.set(BID, mid - 1, step + 1)
        assert_same(book, ref)
    assert book.recenter_count >= 50
    base = book.window_base_ticks
    assert base + window // 4 <= book.best_bid() < base + window - window // 4
    assert book.n_overflow(BID) > 0                  # the trail is kept, outside the window
    bids_b, bids_r = book.levels(BID), ref.levels(BID)
    assert (bids_b[0].tolist(), bids_b[1].tolist()) == bids_r
    book.check_integrity()
    # crash back down: levels come back from the overflow into the window
    for p in list(ref.levels(BID)[0])[:390]:
        book.set(BID, p, 0)
        ref.set(BID, p, 0)
        assert_same(book, ref)
    assert book.window_base_ticks < base
    book.check_integrity()


def test_top_ordering_across_window_and_overflow():
    book, ref = OrderBook(64), ReferenceBook()
    bids = [100, 99, 97, 60, 40, 10, -5, -10**6, 10**6]   # 10**6: a crossed outlier
    asks = [101, 103, 140, 1000, 10**10, 50]
    for p in bids:
        book.set(BID, p, p % 7 + 1)
        ref.set(BID, p, p % 7 + 1)
    for p in asks:
        book.set(ASK, p, p % 5 + 1)
        ref.set(ASK, p, p % 5 + 1)
    for n in range(0, 12):
        for side in (BID, ASK):
            p, q = book.top(side, n)
            assert (p.tolist(), q.tolist()) == ref.top(side, n)
    p, _ = book.levels(BID)
    assert p.tolist() == sorted(bids, reverse=True)
    p, _ = book.levels(ASK)
    assert p.tolist() == sorted(asks)


def test_scan_spans_many_bitmap_words():
    """Next-best search across large empty stretches of a big window."""
    book, ref = OrderBook(1 << 17), ReferenceBook()
    center = 10**7
    prices = [center - 1, center - 3, center - 64, center - 4096, center - 4097, center - 50_000,
              center - 65_000, center - 100_000]
    for p in prices:
        book.set(BID, p, 1)
        ref.set(BID, p, 1)
        book.set(ASK, 2 * center - p, 2)
        ref.set(ASK, 2 * center - p, 2)
    for p in prices:
        assert_same(book, ref)
        book.set(BID, p, 0)
        ref.set(BID, p, 0)
        book.set(ASK, 2 * center - p, 0)
        ref.set(ASK, 2 * center - p, 0)
        book.check_integrity()
    assert_same(book, ref)


def test_crossed_detection_and_integrity():
    book = OrderBook(64)
    book.set(BID, 100, 1)
    book.set(ASK, 101, 1)
    assert not book.is_crossed()
    book.check_integrity()
    book.set(BID, 101, 2)                       # locked counts as crossed
    assert book.is_crossed()
    with pytest.raises(BookIntegrityError, match="crossed"):
        book.check_integrity()
    book.set(BID, 101, 0)
    book.set(ASK, 99, 1)
    assert book.is_crossed()
    book.set(ASK, 99, 0)
    assert not book.is_crossed()
    book.set(ASK, 101, 0)                       # one side empty: never crossed
    assert not book.is_crossed()
    book.check_integrity()


def test_clear_and_validity_flags():
    book = OrderBook(64)
    book.set(BID, 100, 1)
    book.set(ASK, 10**9, 1)
    book.mark_valid(42)
    assert book.valid and book.last_update_id == 42
    book.set_last_update_id(43)
    assert book.last_update_id == 43
    book.invalidate()
    assert not book.valid and book.n_levels(BID) == 1
    book.mark_valid(44)
    book.clear()
    assert not book.valid and book.last_update_id == 44
    assert book.best_bid() == NO_BID and book.best_ask() == NO_ASK
    assert book.n_levels(BID) == book.n_levels(ASK) == 0
    assert book.qty_at(BID, 100) == 0 and book.qty_at(ASK, 10**9) == 0
    book.check_integrity()
    # the first level after clear() centres the window
    book.set(ASK, 5 * 10**9, 3)
    assert book.window_base_ticks == 5 * 10**9 - 32
    assert book.n_overflow(ASK) == 0
    book.check_integrity()


# ---------------------------------------------------------------------------
# Property test: OrderBook == ReferenceBook under random snapshots and diffs
# ---------------------------------------------------------------------------

QTY = st.one_of(st.integers(1, 9), st.integers(1, 2**63 - 1))


class BookMachine(RuleBasedStateMachine):
    """Random snapshots, diffs around a moving mid, far outliers, absent deletes, drifts."""

    @initialize(window=st.sampled_from([64, 128, 256, 1 << 13]), mid=st.integers(-(10**9), 10**9))
    def init(self, window, mid):
        self.window = window
        self.book = OrderBook(window)
        self.ref = ReferenceBook()
        self.mid = mid
        self.touched: set[tuple[int, int]] = set()

    # -- helpers --
    def prices(self, spread_windows: int = 3):
        w, mid = self.window, self.mid
        return st.one_of(
            st.integers(mid - 2 * w, mid + 2 * w),                       # near the touch
            st.integers(mid - 8, mid + 8),
            st.integers(mid - spread_windows * 10 * w, mid + spread_windows * 10 * w),  # outside
            st.integers(MIN_PRICE_TICKS, MAX_PRICE_TICKS),               # far outliers
            st.sampled_from([MIN_PRICE_TICKS, MAX_PRICE_TICKS, 0, mid + w, mid - w]),
        )

    def set(self, side, price, qty):
        self.book.set(side, price, qty)
        self.ref.set(side, price, qty)
        self.touched.add((side, price))

    def apply(self, side, prices, qtys):
        self.book.apply(side, arr(prices), arr(qtys))
        for p, q in zip(prices, qtys):
            self.ref.set(side, p, q)
            self.touched.add((side, p))

    # -- rules --
    @rule(data=st.data())
    def snapshot(self, data):
        """clear() + a Binance-like snapshot: bids below mid descending, asks above ascending."""
        w, mid = self.window, self.mid
        self.book.clear()
        self.ref.clear()
        assert not self.book.valid
        near = st.integers(1, 3 * w)
        bid_offs = data.draw(st.lists(near, max_size=60, unique=True))
        ask_offs = data.draw(st.lists(near, max_size=60, unique=True))
        bids = [mid - o for o in sorted(bid_offs)] + data.draw(st.lists(self.prices(), max_size=3))
        asks = [mid + o for o in sorted(ask_offs)] + data.draw(st.lists(self.prices(), max_size=3))
        if data.draw(st.booleans()):
            bids = data.draw(st.permutations(bids))
            asks = data.draw(st.permutations(asks))
        for side, ps in ((BID, bids), (ASK, asks)):
            self.apply(side, ps, [data.draw(QTY) for _ in ps])
        self.book.mark_valid(data.draw(st.integers(0, 2**62)))

    @rule(data=st.data(), use_apply=st.booleans())
    def diff(self, data, use_apply):
        """A depth diff of up to 46 changes; ~1 in 4 is a delete, often of an absent level."""
        changes = data.draw(st.lists(
            st.tuples(st.sampled_from([BID, ASK]), self.prices(),
                      st.one_of(st.just(0), QTY)),
            max_size=46))
        if use_apply:
            for side in (BID, ASK):
                mine = [(p, q) for s, p, q in changes if s == side]
                self.apply(side, [p for p, _ in mine], [q for _, q in mine])
        else:
            for side, p, q in changes:
                self.set(side, p, q)

    @rule(data=st.data())
    def delete_absent(self, data):
        side = data.draw(st.sampled_from([BID, ASK]))
        price = data.draw(self.prices(spread_windows=100))
        if self.ref.qty_at(side, price) == 0:
            n = self.book.updates_applied
            self.set(side, price, 0)
            assert self.book.updates_applied == n + 1

    @precondition(lambda self: self.ref.n_levels(BID) + self.ref.n_levels(ASK) > 0)
    @rule(data=st.data())
    def sweep(self, data):
        """Delete the best k levels of a side (a market order), forcing next-best scans."""
        side = data.draw(st.sampled_from([BID, ASK]))
        k = data.draw(st.integers(1, 20))
        prices, _ = self.ref.top(side, k)
        for p in prices:
            self.set(side, p, 0)

    @rule(data=st.data())
    def drift(self, data):
        """Move the market far (forces recenters): remove what the new touch crosses, quote around it."""
        w = self.window
        self.mid += data.draw(st.one_of(st.integers(-4 * w, 4 * w), st.integers(-1000 * w, 1000 * w)))
        for p in [p for p in self.ref.levels(BID)[0] if p >= self.mid]:
            self.set(BID, p, 0)
        for p in [p for p in self.ref.levels(ASK)[0] if p <= self.mid]:
            self.set(ASK, p, 0)
        for o in data.draw(st.lists(st.integers(1, 2 * w), max_size=10, unique=True)):
            self.set(BID, self.mid - o, data.draw(QTY))
            self.set(ASK, self.mid + o, data.draw(QTY))

    @rule(data=st.data())
    def bad_update(self, data):
        """Invalid input raises ValueError and changes nothing."""
        before, n = snapshot_of(self.book), self.book.updates_applied
        p = data.draw(self.prices())
        kind = data.draw(st.sampled_from(["qty", "side", "price", "bulk"]))
        with pytest.raises(ValueError):
            if kind == "qty":
                self.book.set(data.draw(st.sampled_from([BID, ASK])), p, data.draw(st.integers(-(2**63), -1)))
            elif kind == "side":
                self.book.set(data.draw(st.sampled_from([-1, 2, 7])), p, 1)
            elif kind == "price":
                self.book.set(BID, data.draw(st.sampled_from([MIN_PRICE_TICKS - 1, MAX_PRICE_TICKS + 1,
                                                               NO_BID, NO_ASK])), 1)
            else:
                ps = data.draw(st.lists(self.prices(), min_size=1, max_size=10))
                qs = [data.draw(QTY) for _ in ps]
                qs[data.draw(st.integers(0, len(ps) - 1))] = -1
                self.book.apply(data.draw(st.sampled_from([BID, ASK])), arr(ps), arr(qs))
        assert snapshot_of(self.book) == before
        assert self.book.updates_applied == n

    # -- the oracle --
    @invariant()
    def agrees_with_reference(self):
        book, ref = self.book, self.ref
        assert_same(book, ref, depth=10)
        for side, price in self.touched:
            assert book.qty_at(side, price) == ref.qty_at(side, price)
        self.touched.clear()
        for side in (BID, ASK):
            p, q = book.levels(side)
            assert (p.tolist(), q.tolist()) == ref.levels(side)
        if ref.is_crossed():
            with pytest.raises(BookIntegrityError):
                book.check_integrity()
        else:
            book.check_integrity()


BookMachine.TestCase.settings = settings(
    max_examples=int(os.environ.get("MM_BOOK_EXAMPLES", "250")),
    stateful_step_count=30,
    deadline=None,
    # One bug at a time and no 'explain' phase: a failure shrinks in seconds, not minutes.
    report_multiple_bugs=False,
    phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.target, Phase.shrink],
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
TestBookMachine = BookMachine.TestCase


# ---------------------------------------------------------------------------
# Replay of real Binance data (skipped if the recorded data is absent)
# ---------------------------------------------------------------------------

def _scaled(s: str, decimals: int) -> int:
    """Exact integer of a decimal string times 10**decimals."""
    whole, _, frac = s.partition(".")
    frac = frac.ljust(decimals, "0")
    assert not frac[decimals:].strip("0"), f"{s} has more than {decimals} decimals"
    v = int(whole.lstrip("-") or "0") * 10**decimals + int(frac[:decimals] or "0")
    return -v if s.startswith("-") else v


def _levels(levels):
    # BTCUSDT spot: tick 0.01; quantities (sums of orders) carry 8 decimals
    return arr([_scaled(p, 2) for p, _ in levels]), arr([_scaled(q, 8) for _, q in levels])


@pytest.mark.data
@pytest.mark.parametrize("window", [1 << 17, 1024])
def test_replay_binance_spot_btcusdt(need_data, window):
    """Snapshot + every diff of a real session; small window: recenters on real prices."""
    path = need_data("hftbacktest/spot/btcusdt_20240808.gz")
    book, ref = OrderBook(window), ReferenceBook()
    snap_id = None
    pending = []                     # diffs received before the snapshot
    n_diffs = 0

    def apply_diff(data):
        for side, key in ((BID, "b"), (ASK, "a")):
            prices, qtys = _levels(data[key])
            book.apply(side, prices, qtys)
            for p, q in zip(prices.tolist(), qtys.tolist()):
                ref.set(side, p, q)
        book.set_last_update_id(data["u"])
        assert_same(book, ref, depth=5)

    with gzip.open(path, "rt") as f:
        for line in f:
            msg = json.loads(line.partition(" ")[2])
            if "lastUpdateId" in msg:
                book.clear()
                ref.clear()
                for side, key in ((BID, "bids"), (ASK, "asks")):
                    prices, qtys = _levels(msg[key])
                    book.apply(side, prices, qtys)
                    for p, q in zip(prices.tolist(), qtys.tolist()):
                        ref.set(side, p, q)
                snap_id = msg["lastUpdateId"]
                book.mark_valid(snap_id)
                for data in pending:
                    if data["u"] > snap_id:
                        apply_diff(data)
                        n_diffs += 1
                continue
            data = msg.get("data", {})
            if data.get("e") != "depthUpdate":
                continue
            if snap_id is None:
                pending.append(data)
            elif data["u"] > snap_id:
                apply_diff(data)
                n_diffs += 1
    assert n_diffs > 1000
    for side in (BID, ASK):
        p, q = book.levels(side)
        assert (p.tolist(), q.tolist()) == ref.levels(side)
    assert not book.is_crossed()
    book.check_integrity()
