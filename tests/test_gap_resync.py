"""Remove one depth message from a real recording: the gap is caught exactly there.

A stand-in venue (a pure-Python reference book fed the *unmodified* recording)
serves a fresh snapshot that arrives a few messages after the gap, as a REST
reply would; after the resync, the bookTicker checks match again.
"""
from __future__ import annotations

from decimal import Decimal

import msgspec

from engine.feed.market import MarketDataFeed
from engine.feed.messages import DepthSnapshot, DepthUpdate
from engine.instruments import get_builtin
from engine.recording import iter_records
from engine.replay import BboChecker
from tests.reference_book import ReferenceBook

DEPTH_DEC = msgspec.json.Decoder(dict)


def _venue_books(records, inst):
    """Yield (index, u, reference book) after each depth record of the unmodified recording.

    The oracle follows the same documented procedure in plain Python: diffs seen
    before the snapshot are buffered and those with ``u > lastUpdateId`` applied.
    """
    ref = ReferenceBook()
    lid = None
    early = []

    def qty(q):
        return int(Decimal(q).scaleb(inst.qty_decimals))

    def apply(data):
        for side, key in ((0, "b"), (1, "a")):
            for p, q in data[key]:
                ref.set(side, inst.price_to_ticks(p), qty(q))

    for i, r in enumerate(records):
        d = DEPTH_DEC.decode(r.frame)
        if "lastUpdateId" in d:
            lid = d["lastUpdateId"]
            for side, key in ((0, "bids"), (1, "asks")):
                for p, q in d[key]:
                    ref.set(side, inst.price_to_ticks(p), qty(q))
            for data in early:
                if data["u"] > lid:
                    apply(data)
            continue
        data = d.get("data", {})
        if data.get("e") != "depthUpdate":
            continue
        if lid is None:
            early.append(data)
            continue
        if data["u"] <= lid:
            continue
        apply(data)
        yield i, data["u"], ref


def _snapshot_line(ref: ReferenceBook, lid: int, inst) -> bytes:
    def side(s):
        px, q = ref.top(s, ref.n_levels(s))
        return [[str(inst.ticks_to_price(p)), str(inst.lots_to_qty(x))] for p, x in zip(px, q)]
    return msgspec.json.encode({"lastUpdateId": lid, "bids": side(0), "asks": side(1)})


class RecordingChecker(BboChecker):
    def __init__(self, ref):
        super().__init__(ref)
        self.events = []  # ("check", valid) / ("gap",)

    def _check(self, symbol, book, t):
        self.events.append(("check", book.valid, self._feed_ref[0].book(symbol) is not None))
        super()._check(symbol, book, t)

    def on_gap(self, event):
        self.events.append(("gap",))
        super().on_gap(event)


def test_removed_depth_message_gap_and_resync(need_data):
    inst = get_builtin("BTCUSDT", "spot")
    records = list(iter_records([need_data("hftbacktest/spot/btcusdt_20240808.gz")]))
    depth_idx = [i for i, r in enumerate(records) if b'"e":"depthUpdate"' in r.frame[:80]]
    removed_at = depth_idx[1500]
    removed = msgspec.json.decode(records[removed_at].frame)["data"]
    next_depth = depth_idx[1501]
    # The venue's book 20 depth messages after the hole; its snapshot reply lands 3 messages later.
    snap_point = depth_idx[1521]
    arrive_after = depth_idx[1524]
    snap = None
    for i, u, ref in _venue_books(records, inst):
        if i == snap_point:
            snap = _snapshot_line(ref, u, inst)
            break
    assert snap is not None

    ref_feed: list = []
    checker = RecordingChecker(ref_feed)
    feed = MarketDataFeed(lambda s, m: get_builtin(s, "spot"), checker, default_symbol="BTCUSDT")
    ref_feed.append(feed)
    checks_before = None
    for i, r in enumerate(records):
        if i == removed_at:
            continue
        feed.on_frame(r.frame, r.ts_local_ns, r.source)
        if i == next_depth:
            checks_before = checker.checks
            assert feed.book("BTCUSDT") is None  # invalid: nothing reads it
        if i == arrive_after:
            feed.on_frame(snap, r.ts_local_ns, "venue-snapshot")
    sync = feed.syncs["BTCUSDT"]
    assert sync.gaps == 1 and len(checker.gaps) == 1
    g = checker.gaps[0]
    assert g.reason == "gap"
    assert g.source == records[next_depth].source
    assert g.expected == removed["U"]
    assert g.first_update_id == removed["u"] + 1
    # No check ran against the invalid book; every check saw a valid book.
    assert all(e[1] and e[2] for e in checker.events if e[0] == "check")
    gap_pos = checker.events.index(("gap",))
    after = [e for e in checker.events[gap_pos:] if e[0] == "check"]
    assert sync.resyncs == 1 and sync.valid
    assert len(after) > 50
    assert checker.mismatches == 0
    assert checks_before is not None and checker.checks > checks_before
    # Final book equals the venue's final book.
    last = None
    for _, u, ref in _venue_books(records, inst):
        last = (u, ref.top(0, 20), ref.top(1, 20))
    book = sync.book
    assert book.last_update_id == last[0]
    for side in (0, 1):
        px, q = book.top(side, 20)
        assert (list(px), list(q)) == (list(last[side + 1][0]), list(last[side + 1][1]))


def test_spot_and_futures_rules_on_worked_example():
    """venue-protocols.md 1.8 worked illustration, both markets."""
    from engine.feed.sync import APPLIED, BUFFERED, GAP, STALE, SYNCED, DepthSync

    def diff(U, u, pu=-1, b=(("100.00", "1"),)):
        return DepthUpdate(symbol="BTCUSDT", first_update_id=U, final_update_id=u, bids=list(b),
                           asks=[("101.00", "1")], prev_final_update_id=pu)

    snap = DepthSnapshot(last_update_id=1000, bids=[("99.00", "2")], asks=[("102.00", "2")])
    s = DepthSync(get_builtin("BTCUSDT", "spot"))
    assert s.on_diff(diff(990, 995)) == BUFFERED
    assert s.on_diff(diff(996, 1002)) == BUFFERED
    assert s.on_snapshot(snap) == SYNCED and s.valid and s.book.last_update_id == 1002
    assert s.on_diff(diff(1003, 1007)) == APPLIED
    assert s.on_diff(diff(1005, 1007)) == STALE
    assert s.on_diff(diff(1010, 1012)) == GAP and not s.valid and not s.book.valid
    assert s.last_gap.expected == 1008

    f = DepthSync(get_builtin("BTCUSDT", "usdm"))
    assert f.on_diff(diff(980, 990, 975)) == BUFFERED
    assert f.on_diff(diff(991, 1005, 990)) == BUFFERED
    assert f.on_snapshot(snap) == SYNCED and f.book.last_update_id == 1005
    assert f.on_diff(diff(1009, 1010, 1005)) == APPLIED  # pu matches although U != 1006
    assert f.on_diff(diff(1015, 1020, 1012)) == GAP
    assert f.last_gap.expected == 1010


def test_snapshot_too_old_is_refused():
    from engine.feed.sync import BUFFERED, SNAPSHOT_TOO_OLD, DepthSync
    s = DepthSync(get_builtin("BTCUSDT", "spot"))
    assert s.on_diff(DepthUpdate("BTCUSDT", 1005, 1010, [], [])) == BUFFERED
    assert s.on_snapshot(DepthSnapshot(1000, [("1.00", "1")], [("2.00", "1")])) == SNAPSHOT_TOO_OLD
    assert not s.valid and s.snapshots_too_old == 1
