"""Tests of ``ext.dedup.DedupRing`` against a pure-Python reference (OrderedDict, same
capacity and FIFO eviction), plus fixed-memory and input-validation checks.

Build first: ``python setup.py build_ext --inplace``.
"""
from __future__ import annotations

import gc
import os
import random
import sys
import tracemalloc
import weakref
from collections import OrderedDict

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from engine.orders.ids import ClientOrderIdGenerator
from ext.dedup import MAX_CAPACITY, MAX_CID_LEN, DedupRing


class ReferenceRing:
    """The oracle: an OrderedDict of ``cid -> [state, payload]`` in insertion order."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.d: OrderedDict[str, list] = OrderedDict()
        self.inserts = self.refused = self.evictions = 0

    def insert(self, cid: str, state: int, payload: object = None) -> bool:
        if cid in self.d:
            self.refused += 1
            return False
        if len(self.d) == self.capacity:
            self.d.popitem(last=False)
            self.evictions += 1
        self.d[cid] = [state, payload]
        self.inserts += 1
        return True

    def get_state(self, cid: str) -> int:
        e = self.d.get(cid)
        return -1 if e is None else e[0]

    def get_payload(self, cid: str) -> object:
        e = self.d.get(cid)
        return None if e is None else e[1]

    def set(self, cid: str, i: int, v: object) -> bool:
        e = self.d.get(cid)
        if e is None:
            return False
        e[i] = v
        return True

    def oldest(self) -> str | None:
        return next(iter(self.d), None)


def assert_same(ring: DedupRing, ref: ReferenceRing, probe=()) -> None:
    assert len(ring) == len(ref.d) <= ring.capacity == ref.capacity
    assert (ring.inserts, ring.refused, ring.evictions) == (ref.inserts, ref.refused, ref.evictions)
    assert ring.oldest() == ref.oldest()
    for cid, (state, payload) in ref.d.items():
        assert cid in ring and ring.contains(cid)
        assert ring.get_state(cid) == state
        assert ring.get_payload(cid) is payload
    for cid in probe:
        assert ring.contains(cid) == (cid in ref.d)
        assert ring.get_state(cid) == ref.get_state(cid)
        assert ring.get_payload(cid) is ref.get_payload(cid)


# -- unit tests ------------------------------------------------------------------------------------
def test_basic_api():
    r = DedupRing(3)
    assert (r.capacity, len(r), r.inserts, r.refused, r.evictions, r.oldest()) == (3, 0, 0, 0, 0, None)
    p = object()
    assert r.insert("a", 1, p) is True
    assert r.insert("b", 2) is True
    assert "a" in r and r.contains("b") and "c" not in r and not r.contains("c")
    assert r.get_state("a") == 1 and r.get_payload("a") is p and r.get_payload("b") is None
    assert r.get_state("c") == -1 and r.get_payload("c") is None
    assert r.set_state("b", 7) is True and r.get_state("b") == 7
    assert r.set_payload("b", "x") is True and r.get_payload("b") == "x"
    assert r.set_state("c", 1) is False and r.set_payload("c", 1) is False
    assert r.oldest() == "a" and len(r) == 2
    assert "capacity=3" in repr(r) and "len=2" in repr(r)


def test_duplicate_is_refused_and_counted_without_change():
    r = DedupRing(4)
    p = object()
    assert r.insert("mm01-x-1", 3, p)
    assert r.insert("mm01-x-1", 9, "other") is False
    assert r.insert("mm01-x-1", 9) is False
    assert (r.refused, r.inserts, len(r)) == (2, 1, 1)
    assert r.get_state("mm01-x-1") == 3 and r.get_payload("mm01-x-1") is p


def test_fifo_eviction_and_reinsert_after_eviction():
    r = DedupRing(3)
    for i, c in enumerate("abc"):
        r.insert(c, i)
    r.set_state("a", 5)  # FIFO by insertion: touching does not make "a" younger
    assert r.insert("d", 3) and r.evictions == 1
    assert "a" not in r and r.oldest() == "b" and list(map(r.contains, "bcd")) == [True] * 3
    # Once evicted, an id is accepted again (the documented consequence).
    assert r.insert("a", 0) and r.oldest() == "c" and r.evictions == 2 and r.refused == 0


def test_capacity_one():
    r = DedupRing(1)
    for i in range(100):
        assert r.insert(f"id{i}", i)
        assert r.insert(f"id{i}", i) is False
        assert len(r) == 1 and r.oldest() == f"id{i}" and r.get_state(f"id{i}") == i
        if i:
            assert f"id{i - 1}" not in r
    assert (r.inserts, r.refused, r.evictions) == (100, 100, 99)


def test_real_client_order_ids_and_36_chars():
    gen = ClientOrderIdGenerator("mm01", 1_760_000_000_000)
    r = DedupRing(1000)
    ids = [gen.next() for _ in range(5000)]
    for i, cid in enumerate(ids):
        assert r.insert(cid, i & 7)
    assert all(cid in r for cid in ids[-1000:]) and not any(cid in r for cid in ids[:-1000])
    longest = "a" * MAX_CID_LEN
    assert r.insert(longest, 1) and longest in r and r.get_state(longest) == 1
    assert "a" * 35 not in r  # prefix of a stored id is a different id


def test_invalid_ids_raise():
    r = DedupRing(4)
    r.insert("ok", 0)
    for bad in ("", "a" * 37, "é", "ordér", "x" * 36 + "é"):
        for call in (lambda c: r.insert(c, 0), r.contains, r.get_state, r.get_payload,
                     lambda c: r.set_state(c, 0), lambda c: r.set_payload(c, 0), lambda c: c in r):
            with pytest.raises(ValueError):
                call(bad)
    for bad in (b"bytes", 1, None, ("t",)):
        with pytest.raises(TypeError):
            r.insert(bad, 0)
        with pytest.raises(TypeError):
            r.contains(bad)
    assert (len(r), r.inserts, r.refused) == (1, 1, 0)


def test_invalid_state_raises_and_changes_nothing():
    r = DedupRing(2)
    r.insert("a", 1)
    for bad in (-1, -5, 2**31, 2**63):
        with pytest.raises((ValueError, OverflowError)):
            r.insert("b", bad)
        with pytest.raises((ValueError, OverflowError)):
            r.set_state("a", bad)
    with pytest.raises(TypeError):
        r.insert("b", "NEW")
    assert len(r) == 1 and "b" not in r and r.get_state("a") == 1 and r.inserts == 1
    assert r.insert("b", 2**31 - 1) and r.get_state("b") == 2**31 - 1


@pytest.mark.parametrize("cap", [0, -1, MAX_CAPACITY + 1])
def test_bad_capacity(cap):
    with pytest.raises(ValueError):
        DedupRing(cap)


def test_str_subclass_with_custom_hash_uses_str_identity():
    class Weird(str):
        def __hash__(self):
            return 1

    r = DedupRing(8)
    assert r.insert(Weird("abc"), 1)
    assert "abc" in r and r.get_state(Weird("abc")) == 1 and r.insert("abc", 2) is False
    assert type(r.oldest()) is str


def test_payload_released_on_eviction_and_overwrite():
    class P:
        pass

    r = DedupRing(2)
    p1, p2 = P(), P()
    w1, w2 = weakref.ref(p1), weakref.ref(p2)
    r.insert("a", 0, p1)
    r.insert("b", 0)
    r.set_payload("b", p2)
    del p1, p2
    assert w1() is not None and w2() is not None
    r.insert("c", 0)  # evicts "a"
    assert w1() is None
    r.set_payload("b", None)
    assert w2() is None


def test_payload_cycle_is_collected():
    class P:
        pass

    r = DedupRing(4)
    p = P()
    p.ring = r  # ring -> payload list -> payload -> ring
    r.insert("a", 0, p)
    w = weakref.ref(p)
    del r, p
    gc.collect()
    assert w() is None


def test_payload_destructor_may_reenter_the_ring():
    # Dropping an evicted payload runs its __del__ after the ring is consistent.
    seen = []

    class P:
        def __init__(self, ring, tag):
            self.ring, self.tag = ring, tag

        def __del__(self):
            seen.append((self.tag, len(self.ring), self.ring.oldest(), self.ring.insert(f"from-{self.tag}", 0)))

    r = DedupRing(2)
    r.insert("a", 0, P(r, "a"))
    r.insert("b", 0)
    r.insert("c", 0)  # evicts "a": __del__ sees {"b", "c"}, inserts "from-a" (evicting "b")
    assert seen == [("a", 2, "b", True)]
    assert "from-a" in r and "c" in r and "b" not in r and len(r) == 2


def test_wraparound_many_times_with_collisions():
    # Capacity 5 -> index of 16 entries: long probe chains and backward shifts.
    ring, ref = DedupRing(5), ReferenceRing(5)
    rng = random.Random(7)
    for i in range(20_000):
        cid = f"c{rng.randrange(23)}"
        assert ring.insert(cid, i % 11) == ref.insert(cid, i % 11)
        if i % 97 == 0:
            assert_same(ring, ref, probe=[f"c{j}" for j in range(23)])
    assert_same(ring, ref, probe=[f"c{j}" for j in range(23)])
    assert ring.evictions > 1000 and ring.refused > 1000


def test_memory_fixed_after_a_million_inserts():
    cap = 4096
    r = DedupRing(cap)
    size0 = sys.getsizeof(r)
    for i in range(cap):
        r.insert(f"mm01-lx3k9a2b-w{i}", 1)
    n = 1_000_000
    ins = r.insert
    tracemalloc.start()
    try:
        base, _ = tracemalloc.get_traced_memory()
        for i in range(n):
            ins(f"mm01-lx3k9a2b-{i:x}", i & 15)
        gc.collect()
        after, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(r) == cap and r.inserts == n + cap and r.evictions == n and r.refused == 0
    assert sys.getsizeof(r) == size0
    # Nothing is retained per insert (a million ids kept anywhere would be tens of MB).
    assert after - base < 64 * 1024, f"ring memory grew by {after - base} bytes over {n} inserts"
    assert r.oldest() == f"mm01-lx3k9a2b-{n - cap:x}"


# -- model-based test ------------------------------------------------------------------------------
# Small id pools and capacities, so that duplicates, evictions, re-inserts of evicted ids and index
# collisions (probe chains, backward-shift deletes) are all frequent.
POOL = [f"mm-{i}" for i in range(40)] + ["a" * 36, "Z", "mm-1-", "-", "_"]
CID = st.sampled_from(POOL)
STATE = st.integers(0, 2**31 - 1)
PAYLOADS = [None, "p", 0, ("t",), object(), object()]


class DedupMachine(RuleBasedStateMachine):
    @initialize(capacity=st.sampled_from([1, 2, 3, 5, 8, 13, 31, 64]))
    def init(self, capacity):
        self.ring = DedupRing(capacity)
        self.ref = ReferenceRing(capacity)
        self.fresh = 0

    @rule(cid=CID, state=STATE, payload=st.sampled_from(PAYLOADS))
    def insert(self, cid, state, payload):
        assert self.ring.insert(cid, state, payload) == self.ref.insert(cid, state, payload)

    @rule(cid=CID, state=STATE)
    def insert_default_payload(self, cid, state):
        assert self.ring.insert(cid, state) == self.ref.insert(cid, state)

    @rule(k=st.integers(1, 200))
    def insert_fresh_burst(self, k):
        """Many new ids: wraps the ring around (several times for small capacities)."""
        for _ in range(k):
            cid = f"f-{self.fresh}"
            self.fresh += 1
            assert self.ring.insert(cid, self.fresh & 0xFF) == self.ref.insert(cid, self.fresh & 0xFF)

    @rule(cid=CID)
    def lookup(self, cid):
        assert self.ring.contains(cid) == (cid in self.ring) == (cid in self.ref.d)
        assert self.ring.get_state(cid) == self.ref.get_state(cid)
        assert self.ring.get_payload(cid) is self.ref.get_payload(cid)

    @rule(cid=CID, state=STATE)
    def set_state(self, cid, state):
        assert self.ring.set_state(cid, state) == self.ref.set(cid, 0, state)

    @rule(cid=CID, payload=st.sampled_from(PAYLOADS))
    def set_payload(self, cid, payload):
        assert self.ring.set_payload(cid, payload) == self.ref.set(cid, 1, payload)

    @rule(cid=CID)
    def refuse_oldest_and_newest(self, cid):
        """Re-submitting ids that are in the ring (oldest, and cid if present) is refused."""
        old = self.ring.oldest()
        if old is not None:
            assert self.ring.insert(old, 0) is False and self.ref.insert(old, 0) is False

    @invariant()
    def agrees_with_reference(self):
        assert_same(self.ring, self.ref, probe=POOL[:8])


DedupMachine.TestCase.settings = settings(
    max_examples=int(os.environ.get("MM_DEDUP_EXAMPLES", "300")),
    stateful_step_count=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestDedupMachine = DedupMachine.TestCase
