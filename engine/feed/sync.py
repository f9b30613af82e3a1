"""Depth synchronisation of one symbol's L2 book (snapshot + buffered diffs).

Rules, from Binance's "How to manage a local order book correctly"
(venue-protocols.md 1.5-1.7):

Spot (``web-socket-streams.md``)
    * buffer diffs until a snapshot arrives;
    * a snapshot is too old if ``lastUpdateId + 1 < U`` of the first buffered
      diff (nothing could bridge it): fetch again;
    * drop buffered diffs with ``u <= lastUpdateId``;
    * bridging: the first applied diff has ``U <= lastUpdateId + 1 <= u``;
    * continuity: then each diff has ``U == previous u + 1``; ``u <= local`` is
      stale and ignored; ``U > local + 1`` is a gap. (An overlap
      ``U <= local < u`` is applied, as the doc's update rule says; quantities
      are absolute so re-applying a known update is harmless. It is counted.)

USD-M futures (``How-to-manage-a-local-order-book-correctly``)
    * drop buffered diffs with ``u < lastUpdateId``;
    * bridging: ``U <= lastUpdateId <= u``;
    * continuity: each diff's ``pu`` equals the previous diff's ``u``
      (``U`` is not contiguous on futures); a diff with ``u <= local`` is stale.

A gap, a crossed book after a diff, or a failed bridge invalidates the book
(``book.valid`` is False: nothing reads it), records a :class:`GapEvent`,
re-buffers the offending diff and asks for a fresh snapshot.
"""
from __future__ import annotations

from collections import deque
from typing import Callable

import msgspec

from ext.book import OrderBook
from ext.parsers import DecodeError, LevelParser
from engine.feed.messages import DepthSnapshot, DepthUpdate
from engine.instruments import SPOT, Instrument

# DepthSync.on_diff / on_snapshot results.
APPLIED = 0
BUFFERED = 1
STALE = 2
GAP = 3
SYNCED = 4
SNAPSHOT_TOO_OLD = 5
SNAPSHOT_IGNORED = 6

# Binance's reference implementation keeps at most this many diffs while
# waiting for a snapshot (nautilus_trader's sync.rs uses the same bound).
DEFAULT_BUFFER_LIMIT = 10_000


class GapEvent(msgspec.Struct, frozen=True, gc=False):
    """The book lost sequence and was invalidated.

    Attributes
    ----------
    symbol : str
    reason : str
        ``gap`` (continuity broken), ``bridge`` (no diff bridges the snapshot),
        ``crossed`` (best bid >= best ask after a diff) or ``overflow`` (buffer full).
    expected : int
        Spot: the ``U`` expected (``local + 1``); futures: the ``pu`` expected (``local``).
    first_update_id, final_update_id, prev_final_update_id : int
        ``U``, ``u``, ``pu`` of the diff that revealed the gap (``pu`` -1 on spot).
    source : str
        Where the diff came from (``file:line`` in replay, ``ws`` live).
    ts_local_ns : int
    """

    symbol: str
    reason: str
    expected: int
    first_update_id: int
    final_update_id: int
    prev_final_update_id: int
    source: str
    ts_local_ns: int


class DepthSync:
    """Keep one :class:`ext.book.OrderBook` equal to the venue's book, or invalid.

    Parameters
    ----------
    instrument : Instrument
        Selects the spot or USD-M rules and the tick/lot grid.
    book : OrderBook, optional
        The book to maintain (a new one by default).
    on_applied : callable, optional
        ``on_applied(book)`` after every diff applied to a valid book, including
        buffered diffs drained after a snapshot.
    buffer_limit : int
        Maximum diffs buffered while waiting for a snapshot.
    """

    def __init__(self, instrument: Instrument, book: OrderBook | None = None,
                 on_applied: Callable[[OrderBook], None] | None = None,
                 buffer_limit: int = DEFAULT_BUFFER_LIMIT) -> None:
        self.instrument = instrument
        self.symbol = instrument.symbol
        self.spot = instrument.market == SPOT
        self.book = book if book is not None else OrderBook()
        self.parser = LevelParser(instrument.price_decimals, instrument.tick_units, instrument.qty_decimals)
        self.on_applied = on_applied
        self.buffer_limit = buffer_limit
        self._buffer: deque[tuple[DepthUpdate, str, int]] = deque()
        self._synced = False
        self._need_bridge = False
        self.snapshot_pending = True
        self.last_gap: GapEvent | None = None
        # Counters (plain ints: read by summaries and tests).
        self.diffs_applied = 0
        self.levels_applied = 0
        self.diffs_buffered = 0
        self.diffs_dropped_stale = 0
        self.overlaps = 0
        self.gaps = 0
        self.crossed = 0
        self.snapshots_loaded = 0
        self.snapshots_too_old = 0
        self.snapshots_ignored = 0
        self.resyncs = 0
        self.buffer_overflows = 0

    # -- state ---------------------------------------------------------------
    @property
    def valid(self) -> bool:
        """True when the book equals the venue's book as of ``book.last_update_id``."""
        return self._synced

    @property
    def buffered(self) -> int:
        """Number of diffs waiting for a snapshot."""
        return len(self._buffer)

    # -- diffs ---------------------------------------------------------------
    def on_diff(self, msg: DepthUpdate, source: str = "ws", ts_local_ns: int = 0) -> int:
        """Process one decoded diff; return APPLIED, BUFFERED, STALE or GAP.

        Raises ``ext.parsers.DecodeError`` if a level is malformed or off-grid;
        the book is then untouched and the hole is caught by the continuity
        rule on the next diff.
        """
        if not self._synced:
            self.parser.validate(msg.bids, msg.asks)
            if len(self._buffer) >= self.buffer_limit:
                self._buffer.popleft()
                self.buffer_overflows += 1
            self._buffer.append((msg, source, ts_local_ns))
            self.diffs_buffered += 1
            return BUFFERED
        local = self.book.last_update_id
        u = msg.final_update_id
        if self._need_bridge:
            lid = local
            if (u <= lid) if self.spot else (u < lid):
                return self._stale(msg)
            ok = (msg.first_update_id <= lid + 1) if self.spot else (msg.first_update_id <= lid)
            if not ok:
                return self._gap(msg, "bridge", lid + 1 if self.spot else lid, source, ts_local_ns)
            self._need_bridge = False
            return self._apply(msg, source, ts_local_ns)
        if self.spot:
            if u <= local:
                return self._stale(msg)
            U = msg.first_update_id
            if U != local + 1:
                if U > local + 1:
                    return self._gap(msg, "gap", local + 1, source, ts_local_ns)
                self.overlaps += 1
        else:
            if msg.prev_final_update_id != local:
                if u <= local:
                    return self._stale(msg)
                return self._gap(msg, "gap", local, source, ts_local_ns)
        return self._apply(msg, source, ts_local_ns)

    def _stale(self, msg: DepthUpdate) -> int:
        # Stale diffs are rare: validate them anyway so a malformed one is counted, not hidden.
        self.parser.validate(msg.bids, msg.asks)
        self.diffs_dropped_stale += 1
        return STALE

    def _apply(self, msg: DepthUpdate, source: str, ts_local_ns: int) -> int:
        book = self.book
        self.levels_applied += self.parser.apply_diff(book, msg.bids, msg.asks, msg.final_update_id)
        self.diffs_applied += 1
        if book.is_crossed():
            self.crossed += 1
            return self._gap(msg, "crossed", book.last_update_id, source, ts_local_ns, rebuffer=False)
        if self.on_applied is not None:
            self.on_applied(book)
        return APPLIED

    def _gap(self, msg: DepthUpdate, reason: str, expected: int, source: str, ts_local_ns: int,
             rebuffer: bool = True) -> int:
        self.gaps += 1
        self.last_gap = GapEvent(self.symbol, reason, expected, msg.first_update_id, msg.final_update_id,
                                 msg.prev_final_update_id, source, ts_local_ns)
        self.invalidate()
        if rebuffer:
            # The diff that revealed the gap may bridge the next snapshot: buffer it only if
            # its levels decode (else DecodeError propagates, after the gap was recorded).
            self.parser.validate(msg.bids, msg.asks)
            self._buffer.append((msg, source, ts_local_ns))
        return GAP

    def invalidate(self) -> None:
        """Mark the book invalid, drop sync state and wait for a fresh snapshot."""
        self._synced = False
        self._need_bridge = False
        self.book.invalidate()
        self._buffer.clear()
        self.snapshot_pending = True

    # -- snapshots -----------------------------------------------------------
    def on_snapshot(self, snap: DepthSnapshot, source: str = "rest", ts_local_ns: int = 0) -> int:
        """Load a snapshot and drain the buffer; return SYNCED, SNAPSHOT_TOO_OLD, SNAPSHOT_IGNORED or GAP.

        A snapshot arriving while the book is already valid is ignored (counted).
        Raises ``ext.parsers.DecodeError`` on a malformed snapshot (book untouched, still invalid).
        """
        if self._synced:
            self.snapshots_ignored += 1
            return SNAPSHOT_IGNORED
        lid = snap.last_update_id
        buf = self._buffer
        if buf:
            first_U = buf[0][0].first_update_id
            if (lid + 1 < first_U) if self.spot else (lid < first_U):
                self.snapshots_too_old += 1
                return SNAPSHOT_TOO_OLD
        was_resync = self.snapshots_loaded > 0
        self.parser.load_snapshot(self.book, snap.bids, snap.asks, lid)
        self.snapshots_loaded += 1
        self.snapshot_pending = False
        # Drop what the snapshot already contains.
        while buf and ((buf[0][0].final_update_id <= lid) if self.spot else (buf[0][0].final_update_id < lid)):
            buf.popleft()
            self.diffs_dropped_stale += 1
        self._synced = True
        self._need_bridge = True
        self.book.mark_valid(lid)
        if self.book.is_crossed():
            # A crossed snapshot is an integrity failure, reported like a gap.
            self.crossed += 1
            self.gaps += 1
            self.last_gap = GapEvent(self.symbol, "crossed_snapshot", lid, -1, lid, -1, source, ts_local_ns)
            self.invalidate()
            return GAP
        if was_resync:
            self.resyncs += 1
        pending = list(buf)
        buf.clear()
        for msg, src, ts in pending:
            try:
                r = self.on_diff(msg, src, ts)
            except DecodeError:
                # Buffered diffs were validated on entry, so this is defensive: the update
                # is lost, which breaks the chain like a gap.
                r = self._gap(msg, "bad_diff", self.book.last_update_id, src, ts, rebuffer=False)
            if r == GAP:
                # Keep buffering what followed the failing diff, for the next snapshot.
                idx = next(i for i, p in enumerate(pending) if p[0] is msg)
                for later in pending[idx + 1:]:
                    self._buffer.append(later)
                return GAP
        return SYNCED
