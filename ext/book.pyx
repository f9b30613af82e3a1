# distutils: language = c++
"""L2 order book of one symbol: int64 price ticks, int64 quantity lots.

Design
------
Per side, levels live in one of two places:

* a dense ``int64`` qty array over a window of ``window_ticks`` prices,
  ``[base, base + window_ticks)``, shared by both sides (slot ``i`` holds the
  qty at price ``base + i``; 0 means no level). A two-level occupancy bitmap
  (one bit per slot, one summary bit per 64-slot word) finds the next level
  toward worse prices in a few ``clz``/``ctz`` instructions however far away;
* an ordered ``std::map<int64_t, int64_t>`` "overflow" for levels outside the
  window (far-away bids and asks).

The best price and its qty per side are cached, so reading them is O(1).
Inserting a better level updates the cache; deleting the best level rescans
the dense bitmap from the deleted slot toward worse prices and compares with
the overflow's extreme (``rbegin`` for bids, ``begin`` for asks, both O(1)).

Whenever a best price changes, the mid (or the only touch, if one side is
empty) is checked against the window: if it is not in the central half,
the window is re-centred on it (dense levels that fall outside go to the
overflow, overflow levels that fall inside come back). After ``clear()`` the
first level inserted becomes the new centre. The window placement only
affects speed, never results.

Deleting a level that is not in the book is a cheap no-op (an array read,
or a map lookup for a far price).
"""
from cython.operator cimport dereference as deref, preincrement as inc
from libc.stdint cimport int64_t, uint64_t
from libc.stdlib cimport calloc, free, malloc
from libcpp.map cimport map as cmap
from libcpp.utility cimport pair

import numpy as np

__all__ = [
    "ASK",
    "BID",
    "MAX_PRICE_TICKS",
    "MIN_PRICE_TICKS",
    "NO_ASK",
    "NO_BID",
    "BookIntegrityError",
    "OrderBook",
]

#: best_bid() of a book with no bid level (ticks): -2**63.
NO_BID = NO_BID_TICKS
#: best_ask() of a book with no ask level (ticks): 2**63 - 1.
NO_ASK = NO_ASK_TICKS
# Python MIN_PRICE_TICKS = -2**62 and MAX_PRICE_TICKS = 2**62 - 1: the accepted price
# range of ``set`` / ``apply`` (ticks). The names are taken by the cimported C constants
# inside this module, hence globals().
globals().update(MIN_PRICE_TICKS=<object>MIN_PRICE_TICKS, MAX_PRICE_TICKS=<object>MAX_PRICE_TICKS)


class BookIntegrityError(Exception):
    """The book is crossed or its internal state is inconsistent."""


ctypedef cmap[int64_t, int64_t] LevelMap
ctypedef pair[int64_t, int64_t] LevelPair

cdef extern from *:
    """
    #ifdef MM_DEBUG
    #define MM_BOOK_DEBUG 1
    #else
    #define MM_BOOK_DEBUG 0
    #endif
    """
    const bint MM_BOOK_DEBUG

cdef extern from *:
    int __builtin_clzll(unsigned long long) nogil
    int __builtin_ctzll(unsigned long long) nogil

cdef enum:
    _MIN_WINDOW = 64
    _MAX_WINDOW = 1 << 26


# ---------------------------------------------------------------------------
# Internal helpers (static C functions, inlined into the methods)
# ---------------------------------------------------------------------------

cdef inline LevelMap* _ovf(OrderBook b, int side) noexcept:
    return <LevelMap*>b._ovf[side]


cdef inline bint _bad_price(int64_t price_ticks) noexcept nogil:
    # True unless MIN_PRICE_TICKS <= price_ticks <= MAX_PRICE_TICKS.
    return ((<uint64_t>price_ticks + (<uint64_t>1 << 62)) >> 63) != 0


cdef inline void _bit_set(uint64_t* occ, uint64_t* sm, uint64_t off) noexcept nogil:
    cdef uint64_t w = off >> 6
    occ[w] |= (<uint64_t>1) << (off & 63)
    sm[w >> 6] |= (<uint64_t>1) << (w & 63)


cdef inline void _bit_clear(uint64_t* occ, uint64_t* sm, uint64_t off) noexcept nogil:
    cdef uint64_t w = off >> 6
    occ[w] &= ~((<uint64_t>1) << (off & 63))
    if occ[w] == 0:
        sm[w >> 6] &= ~((<uint64_t>1) << (w & 63))


cdef inline int64_t _scan_down(const uint64_t* occ, const uint64_t* sm,
                               int64_t start) noexcept nogil:
    """Highest occupied slot <= start, or -1. Requires 0 <= start < window."""
    cdef int64_t w, sw
    cdef uint64_t word
    if start < 0:
        return -1
    w = start >> 6
    # bits 0..(start & 63); (2 << 63) wraps to 0 and 0 - 1 is all ones
    word = occ[w] & (((<uint64_t>2) << (start & 63)) - 1)
    if word:
        return (w << 6) | (63 - __builtin_clzll(word))
    if w == 0:
        return -1
    w -= 1                       # highest non-empty word <= w
    sw = w >> 6
    word = sm[sw] & (((<uint64_t>2) << (w & 63)) - 1)
    while True:
        if word:
            w = (sw << 6) | (63 - __builtin_clzll(word))
            return (w << 6) | (63 - __builtin_clzll(occ[w]))
        if sw == 0:
            return -1
        sw -= 1
        word = sm[sw]


cdef inline int64_t _scan_up(const uint64_t* occ, const uint64_t* sm, int64_t start,
                             int64_t n_words, int64_t n_sum) noexcept nogil:
    """Lowest occupied slot >= start, or -1. Requires start >= 0."""
    cdef int64_t w, sw
    cdef uint64_t word
    w = start >> 6
    if w >= n_words:
        return -1
    word = occ[w] & ((~(<uint64_t>0)) << (start & 63))
    if word:
        return (w << 6) | __builtin_ctzll(word)
    w += 1                       # lowest non-empty word >= w
    if w >= n_words:
        return -1
    sw = w >> 6
    word = sm[sw] & ((~(<uint64_t>0)) << (w & 63))
    while True:
        if word:
            w = (sw << 6) | __builtin_ctzll(word)
            return (w << 6) | __builtin_ctzll(occ[w])
        sw += 1
        if sw >= n_sum:
            return -1
        word = sm[sw]


cdef inline void _dense_add(OrderBook b, int side, uint64_t off, int64_t qty_lots) noexcept:
    """Put a new level (slot known empty) into the dense window."""
    b._qty[side][off] = qty_lots
    _bit_set(b._occ[side], b._sum[side], off)
    b._n_dense[side] += 1


cdef void _recompute_best(OrderBook b, int side, int64_t removed_ticks) noexcept:
    """Recompute the cached best of ``side`` after its best level was removed.

    Every remaining level of the side is worse than ``removed_ticks``, so the
    dense scan starts at its slot (clamped into the window).
    """
    cdef int64_t start = removed_ticks - b._base
    cdef int64_t idx = -1
    cdef int64_t best, best_qty = 0
    cdef LevelMap* m = _ovf(b, side)
    cdef LevelMap.iterator it
    cdef LevelMap.reverse_iterator rit
    if side == BID:
        best = NO_BID_TICKS
        if b._n_dense[BID] > 0:
            if start >= b._window:
                start = b._window - 1
            idx = _scan_down(b._occ[BID], b._sum[BID], start)
        if idx >= 0:
            best = b._base + idx
            best_qty = b._qty[BID][idx]
        if not m.empty():
            rit = m.rbegin()
            if deref(rit).first > best:
                best = deref(rit).first
                best_qty = deref(rit).second
    else:
        best = NO_ASK_TICKS
        if b._n_dense[ASK] > 0:
            if start < 0:
                start = 0
            idx = _scan_up(b._occ[ASK], b._sum[ASK], start, b._n_words, b._n_sum)
        if idx >= 0:
            best = b._base + idx
            best_qty = b._qty[ASK][idx]
        if not m.empty():
            it = m.begin()
            if deref(it).first < best:
                best = deref(it).first
                best_qty = deref(it).second
    b._best[side] = best
    b._best_qty[side] = best_qty


cdef int64_t _spill_side(OrderBook b, int side, int64_t* out) noexcept:
    """Empty the dense window of one side.

    Writes each removed level as a (price ticks, qty lots) pair to ``out``
    (unless ``out`` is NULL) and returns how many levels were removed. Costs
    O(levels + window_ticks / 4096), not O(window_ticks).
    """
    cdef int64_t k = 0, sw, w, slot
    cdef uint64_t word, bits
    for sw in range(b._n_sum):
        word = b._sum[side][sw]
        while word:
            w = (sw << 6) | __builtin_ctzll(word)
            word &= word - 1
            bits = b._occ[side][w]
            while bits:
                slot = (w << 6) | __builtin_ctzll(bits)
                bits &= bits - 1
                if out != NULL:
                    out[2 * k] = b._base + slot
                    out[2 * k + 1] = b._qty[side][slot]
                b._qty[side][slot] = 0
                k += 1
            b._occ[side][w] = 0
        b._sum[side][sw] = 0
    b._n_dense[side] = 0
    return k


cdef int _recenter(OrderBook b, int64_t new_base) except -1:
    """Move the dense window to start at ``new_base``; the levels are unchanged."""
    cdef int64_t n = b._n_dense[BID] + b._n_dense[ASK]
    cdef int64_t* tmp = NULL     # (price, qty) pairs of the spilled dense levels
    cdef int64_t i, n_bid, px, W = b._window
    cdef uint64_t off
    cdef int side
    cdef bint was_valid = b.valid
    cdef LevelMap* m
    cdef LevelMap.iterator it
    if new_base == b._base:
        return 0
    if n > 0:
        tmp = <int64_t*>malloc(<size_t>n * 2 * sizeof(int64_t))
        if tmp == NULL:
            raise MemoryError()
    # If a C++ allocation fails half-way the levels are wrong: leave the book invalid.
    b.valid = False
    try:
        # 1. spill every dense level to tmp (bids first), emptying the window
        n_bid = _spill_side(b, BID, tmp)
        n = n_bid + _spill_side(b, ASK, tmp + 2 * n_bid if tmp != NULL else NULL)
        # 2. move the window
        b._base = new_base
        # 3. put the spilled levels back: in the window or in the overflow
        for i in range(n):
            side = BID if i < n_bid else ASK
            px = tmp[2 * i]
            off = <uint64_t>px - <uint64_t>new_base
            if off < <uint64_t>W:
                _dense_add(b, side, off, tmp[2 * i + 1])
            else:
                _ovf(b, side).insert(LevelPair(px, tmp[2 * i + 1]))
        # 4. pull the overflow levels that are now inside the window
        for side in range(2):
            m = _ovf(b, side)
            it = m.lower_bound(new_base)
            while it != m.end() and deref(it).first < new_base + W:
                _dense_add(b, side, <uint64_t>deref(it).first - <uint64_t>new_base,
                           deref(it).second)
                it = m.erase(it)
        b._recenters += 1
    finally:
        free(tmp)
    b.valid = was_valid
    return 0


cdef inline int _maybe_recenter(OrderBook b) except -1:
    """Re-centre the window if the mid is outside its central half."""
    cdef int64_t bb = b._best[BID], ba = b._best[ASK], mid, off
    cdef int64_t quarter = b._window >> 2
    if bb != NO_BID_TICKS:
        if ba != NO_ASK_TICKS:
            mid = bb + (ba - bb) // 2
        else:
            mid = bb
    elif ba != NO_ASK_TICKS:
        mid = ba
    else:
        return 0
    off = mid - b._base
    if off < quarter or off >= b._window - quarter:
        _recenter(b, mid - (b._window >> 1))
    return 0


cdef inline bint _better(int side, int64_t a, int64_t b) noexcept nogil:
    return a > b if side == BID else a < b


cdef int _overflow_set(OrderBook b, int side, int64_t price_ticks, int64_t qty_lots) except -1:
    """``set_level`` for a price outside the dense window (arguments valid)."""
    cdef LevelMap* m = _ovf(b, side)
    cdef LevelMap.iterator it
    cdef pair[LevelMap.iterator, bint] ins
    if qty_lots == 0:
        it = m.find(price_ticks)
        if it == m.end():
            return 0                         # absent: no-op
        m.erase(it)
        if price_ticks == b._best[side]:
            _recompute_best(b, side, price_ticks)
            _maybe_recenter(b)
        return 0
    if (b._n_dense[BID] == 0 and b._n_dense[ASK] == 0
            and _ovf(b, BID).empty() and _ovf(b, ASK).empty()):
        # first level of an empty book: centre the window on it
        b._base = price_ticks - (b._window >> 1)
        _dense_add(b, side, <uint64_t>(b._window >> 1), qty_lots)
    else:
        ins = m.insert(LevelPair(price_ticks, qty_lots))   # one search: insert or find
        if not ins.second:
            deref(ins.first).second = qty_lots
            if price_ticks == b._best[side]:
                b._best_qty[side] = qty_lots
            return 0
    if _better(side, price_ticks, b._best[side]):
        b._best[side] = price_ticks
        b._best_qty[side] = qty_lots
        _maybe_recenter(b)
    return 0


cdef int _debug_check(OrderBook b, int side, int64_t price_ticks, int64_t qty_lots) except -1:
    """O(1) post-conditions of set_level, compiled in only with MM_DEBUG."""
    cdef uint64_t off = <uint64_t>price_ticks - <uint64_t>b._base
    cdef bint bit
    if b.qty_at(side, price_ticks) != qty_lots:
        raise BookIntegrityError(f"qty_at({side}, {price_ticks}) != {qty_lots} after set_level")
    if off < <uint64_t>b._window:
        bit = (b._occ[side][off >> 6] >> (off & 63)) & 1
        if bit != (qty_lots != 0):
            raise BookIntegrityError(f"occupancy bit of slot {off} disagrees with qty {qty_lots}")
    if (b._best_qty[side] > 0) != (b._best[side] != (NO_BID_TICKS if side == BID else NO_ASK_TICKS)):
        raise BookIntegrityError(f"best qty {b._best_qty[side]} disagrees with best {b._best[side]}")
    if qty_lots != 0 and _better(side, price_ticks, b._best[side]):
        raise BookIntegrityError(f"level {price_ticks} is better than best {b._best[side]}")
    if b._n_dense[side] < 0 or b._n_dense[side] > b._window:
        raise BookIntegrityError(f"dense level count {b._n_dense[side]} out of range")
    return 0


cdef inline int _check_side(int side) except -1:
    if <unsigned int>side > 1:
        raise ValueError(f"side must be BID (0) or ASK (1), got {side}")
    return 0


cdef int _raise_bad_level(int side, int64_t price_ticks, int64_t qty_lots) except -1:
    """Raise the ValueError for invalid set_level arguments (kept out of the hot path)."""
    _check_side(side)
    if qty_lots < 0:
        raise ValueError(f"qty_lots must be >= 0, got {qty_lots}")
    raise ValueError(
        f"price_ticks must be in [{MIN_PRICE_TICKS}, {MAX_PRICE_TICKS}], got {price_ticks}")


# ---------------------------------------------------------------------------
# The book
# ---------------------------------------------------------------------------

cdef class OrderBook:
    """L2 order book of one symbol in integer ticks and lots.

    Parameters
    ----------
    window_ticks : int, default 1 << 17
        Width of the dense price window in ticks; a multiple of 64 in
        ``[64, 2**26]``. Levels within the window cost an array access, levels
        outside it a ``std::map`` operation. Memory: about
        ``16 * window_ticks`` bytes.

    Raises
    ------
    ValueError
        If ``window_ticks`` is not a multiple of 64 in range.
    MemoryError
        If the window cannot be allocated.

    Notes
    -----
    ``side`` is ``BID`` (0) or ``ASK`` (1) everywhere. Prices are int64 ticks
    in ``[MIN_PRICE_TICKS, MAX_PRICE_TICKS]`` = ``[-2**62, 2**62 - 1]``,
    quantities int64 lots ``>= 0``; a quantity of 0 deletes the level.
    Empty sides report ``NO_BID`` (-2**63) / ``NO_ASK`` (2**63 - 1) and qty 0.
    """

    def __cinit__(self, int64_t window_ticks=1 << 17):
        cdef int side
        if window_ticks < _MIN_WINDOW or window_ticks > _MAX_WINDOW or window_ticks % 64 != 0:
            raise ValueError(
                f"window_ticks must be a multiple of 64 in [64, {_MAX_WINDOW}], got {window_ticks}")
        self._window = window_ticks
        self._n_words = window_ticks >> 6
        self._n_sum = (self._n_words + 63) >> 6
        self._base = -(window_ticks >> 1)
        for side in range(2):
            self._best_qty[side] = 0
            self._n_dense[side] = 0
            self._qty[side] = <int64_t*>calloc(<size_t>window_ticks, sizeof(int64_t))
            self._occ[side] = <uint64_t*>calloc(<size_t>self._n_words, sizeof(uint64_t))
            self._sum[side] = <uint64_t*>calloc(<size_t>self._n_sum, sizeof(uint64_t))
            if self._qty[side] == NULL or self._occ[side] == NULL or self._sum[side] == NULL:
                raise MemoryError()
            self._ovf[side] = <void*>(new LevelMap())
        self._best[BID] = NO_BID_TICKS
        self._best[ASK] = NO_ASK_TICKS

    def __dealloc__(self):
        cdef int side
        cdef LevelMap* m
        for side in range(2):
            free(self._qty[side])
            free(self._occ[side])
            free(self._sum[side])
            m = _ovf(self, side)
            del m
            self._ovf[side] = NULL

    # ---- mutation ----------------------------------------------------------

    cdef int set_level(self, int side, int64_t price_ticks, int64_t qty_lots) except -1:
        cdef uint64_t off
        cdef int64_t* slot
        cdef int64_t old
        if (<unsigned int>side > 1) | (qty_lots < 0) | _bad_price(price_ticks):
            return _raise_bad_level(side, price_ticks, qty_lots)   # cold path, out of line
        self.updates_applied += 1
        off = <uint64_t>price_ticks - <uint64_t>self._base
        if off >= <uint64_t>self._window:
            _overflow_set(self, side, price_ticks, qty_lots)
        else:
            slot = self._qty[side] + off
            old = slot[0]
            if qty_lots == 0:
                if old != 0:
                    slot[0] = 0
                    _bit_clear(self._occ[side], self._sum[side], off)
                    self._n_dense[side] -= 1
                    if price_ticks == self._best[side]:
                        _recompute_best(self, side, price_ticks)
                        _maybe_recenter(self)
            else:
                slot[0] = qty_lots
                if old == 0:
                    _bit_set(self._occ[side], self._sum[side], off)
                    self._n_dense[side] += 1
                    if _better(side, price_ticks, self._best[side]):
                        self._best[side] = price_ticks
                        self._best_qty[side] = qty_lots
                        _maybe_recenter(self)
                elif price_ticks == self._best[side]:
                    self._best_qty[side] = qty_lots
        if MM_BOOK_DEBUG:
            _debug_check(self, side, price_ticks, qty_lots)
        return 0

    def set(self, int side, int64_t price_ticks, int64_t qty_lots):
        """Set the absolute quantity of one level.

        Parameters
        ----------
        side : int
            ``BID`` (0) or ``ASK`` (1).
        price_ticks : int
            Price in ticks, in ``[MIN_PRICE_TICKS, MAX_PRICE_TICKS]``.
        qty_lots : int
            New quantity in lots, ``>= 0``. 0 deletes the level; deleting a
            level that is not in the book is a no-op (still counted in
            ``updates_applied``).

        Raises
        ------
        ValueError
            Bad side, negative quantity or price out of range. The book is
            unchanged.
        OverflowError
            An argument does not fit in a C int / int64.
        """
        self.set_level(side, price_ticks, qty_lots)

    def apply(self, int side, const int64_t[:] prices, const int64_t[:] qtys):
        """Set many levels of one side, in order (e.g. one side of a depth diff).

        Every argument is validated before anything is applied, so a bad
        input never leaves the book half-updated.

        Parameters
        ----------
        side : int
            ``BID`` (0) or ``ASK`` (1).
        prices : numpy.ndarray of int64, shape (n,)
            Prices in ticks, in ``[MIN_PRICE_TICKS, MAX_PRICE_TICKS]``.
        qtys : numpy.ndarray of int64, shape (n,)
            Absolute quantities in lots, ``>= 0`` (0 deletes).

        Raises
        ------
        ValueError
            Bad side, lengths differ, a negative quantity, a price out of
            range, or an array that is not 1-D int64 (buffer dtype mismatch).
            The book is unchanged.
        """
        cdef Py_ssize_t i, n = prices.shape[0]
        _check_side(side)
        if qtys.shape[0] != n:
            raise ValueError(f"prices and qtys differ in length: {n} != {qtys.shape[0]}")
        for i in range(n):
            if qtys[i] < 0:
                raise ValueError(f"qtys[{i}] must be >= 0, got {qtys[i]}")
            if _bad_price(prices[i]):
                raise ValueError(
                    f"prices[{i}] must be in [{MIN_PRICE_TICKS}, {MAX_PRICE_TICKS}], got {prices[i]}")
        for i in range(n):
            self.set_level(side, prices[i], qtys[i])

    cpdef void clear(self) noexcept:
        """Remove every level; keep ``last_update_id``; set ``valid`` to False.

        Costs O(levels), not O(window_ticks). The next level inserted becomes
        the centre of the dense window.
        """
        cdef int side
        for side in range(2):
            _spill_side(self, side, NULL)
            _ovf(self, side).clear()
            self._best_qty[side] = 0
        self._best[BID] = NO_BID_TICKS
        self._best[ASK] = NO_ASK_TICKS
        self.valid = False

    cpdef void mark_valid(self, int64_t last_update_id) noexcept:
        """Declare the book in sync with the venue as of ``last_update_id``.

        Parameters
        ----------
        last_update_id : int
            Venue sequence number of the last update applied.
        """
        self.last_update_id = last_update_id
        self.valid = True

    cpdef void invalidate(self) noexcept:
        """Declare the book out of sync (``valid = False``); levels are kept."""
        self.valid = False

    cpdef void set_last_update_id(self, int64_t u) noexcept:
        """Record ``u`` as the venue sequence of the last applied update.

        Parameters
        ----------
        u : int
            Venue update id (e.g. Binance ``u``).
        """
        self.last_update_id = u

    # ---- queries -----------------------------------------------------------

    cpdef int64_t best_bid(self) noexcept:
        """Best (highest) bid price in ticks, or ``NO_BID`` (-2**63) if none. O(1)."""
        return self._best[BID]

    cpdef int64_t best_ask(self) noexcept:
        """Best (lowest) ask price in ticks, or ``NO_ASK`` (2**63 - 1) if none. O(1)."""
        return self._best[ASK]

    cpdef int64_t best_bid_qty(self) noexcept:
        """Quantity in lots at the best bid, 0 if there is no bid. O(1)."""
        return self._best_qty[BID]

    cpdef int64_t best_ask_qty(self) noexcept:
        """Quantity in lots at the best ask, 0 if there is no ask. O(1)."""
        return self._best_qty[ASK]

    cpdef int64_t qty_at(self, int side, int64_t price_ticks) except? -1:
        """Quantity in lots at one price of one side, 0 if there is no level.

        Parameters
        ----------
        side : int
            ``BID`` (0) or ``ASK`` (1).
        price_ticks : int
            Price in ticks (any int64; out-of-range prices hold no level).

        Returns
        -------
        int
            Quantity in lots, ``>= 0``.

        Raises
        ------
        ValueError
            Bad side.
        """
        cdef uint64_t off
        cdef LevelMap* m
        cdef LevelMap.iterator it
        _check_side(side)
        if _bad_price(price_ticks):
            return 0
        off = <uint64_t>price_ticks - <uint64_t>self._base
        if off < <uint64_t>self._window:
            return self._qty[side][off]
        m = _ovf(self, side)
        it = m.find(price_ticks)
        if it == m.end():
            return 0
        return deref(it).second

    cpdef bint is_crossed(self) noexcept:
        """True if both sides have levels and best bid >= best ask."""
        # The sentinels make this false whenever a side is empty.
        return self._best[BID] >= self._best[ASK]

    cpdef Py_ssize_t n_levels(self, int side) except -1:
        """Number of price levels on one side.

        Parameters
        ----------
        side : int
            ``BID`` (0) or ``ASK`` (1).

        Raises
        ------
        ValueError
            Bad side.
        """
        _check_side(side)
        return self._n_dense[side] + <Py_ssize_t>_ovf(self, side).size()

    def top(self, int side, Py_ssize_t n):
        """The best ``n`` levels of one side, best first.

        Parameters
        ----------
        side : int
            ``BID`` (0) or ``ASK`` (1).
        n : int
            Maximum number of levels, ``>= 0``.

        Returns
        -------
        prices : numpy.ndarray of int64, shape (min(n, n_levels(side)),)
            Prices in ticks: descending for bids, ascending for asks.
        qtys : numpy.ndarray of int64, same shape
            Quantities in lots.

        Raises
        ------
        ValueError
            Bad side or negative ``n``.
        """
        cdef Py_ssize_t k, total
        cdef int64_t idx, dpx, opx, W = self._window
        cdef LevelMap* m
        cdef LevelMap.iterator it
        cdef LevelMap.reverse_iterator rit
        cdef int64_t[::1] out_p, out_q
        _check_side(side)
        if n < 0:
            raise ValueError(f"n must be >= 0, got {n}")
        total = self.n_levels(side)
        if n > total:
            n = total
        prices = np.empty(n, dtype=np.int64)
        qtys = np.empty(n, dtype=np.int64)
        out_p = prices
        out_q = qtys
        m = _ovf(self, side)
        if side == BID:
            # merge dense slots (descending) with the map (reverse order)
            idx = _scan_down(self._occ[BID], self._sum[BID], W - 1)
            rit = m.rbegin()
            for k in range(n):
                dpx = self._base + idx if idx >= 0 else NO_BID_TICKS
                opx = deref(rit).first if rit != m.rend() else NO_BID_TICKS
                if dpx > opx:
                    out_p[k] = dpx
                    out_q[k] = self._qty[BID][idx]
                    idx = _scan_down(self._occ[BID], self._sum[BID], idx - 1)
                else:
                    out_p[k] = opx
                    out_q[k] = deref(rit).second
                    inc(rit)
        else:
            idx = _scan_up(self._occ[ASK], self._sum[ASK], 0, self._n_words, self._n_sum)
            it = m.begin()
            for k in range(n):
                dpx = self._base + idx if idx >= 0 else NO_ASK_TICKS
                opx = deref(it).first if it != m.end() else NO_ASK_TICKS
                if dpx < opx:
                    out_p[k] = dpx
                    out_q[k] = self._qty[ASK][idx]
                    idx = _scan_up(self._occ[ASK], self._sum[ASK], idx + 1,
                                   self._n_words, self._n_sum)
                else:
                    out_p[k] = opx
                    out_q[k] = deref(it).second
                    inc(it)
        return prices, qtys

    def levels(self, int side):
        """All levels of one side, best first.

        Parameters
        ----------
        side : int
            ``BID`` (0) or ``ASK`` (1).

        Returns
        -------
        prices : numpy.ndarray of int64, shape (n_levels(side),)
            Prices in ticks: descending for bids, ascending for asks.
        qtys : numpy.ndarray of int64, same shape
            Quantities in lots.

        Raises
        ------
        ValueError
            Bad side.
        """
        return self.top(side, self.n_levels(side))

    def check_integrity(self):
        """Verify the book from scratch (O(window_ticks + levels)); for tests and debugging.

        Checks that the book is not crossed, that every dense quantity is
        ``>= 0`` and matches the occupancy bitmaps and level counts, that
        overflow levels lie outside the window with quantities ``> 0``, and
        that the cached best prices and quantities are the true extremes.

        Raises
        ------
        BookIntegrityError
            On the first violation found.
        """
        cdef int side
        cdef Py_ssize_t i, w, count
        cdef uint64_t word
        cdef int64_t q, best, best_qty, W = self._window
        cdef LevelMap* m
        cdef LevelMap.iterator it
        for side in range(2):
            count = 0
            best = NO_BID_TICKS if side == BID else NO_ASK_TICKS
            best_qty = 0
            for w in range(self._n_words):
                word = 0
                for i in range(w << 6, (w + 1) << 6):
                    q = self._qty[side][i]
                    if q < 0:
                        raise BookIntegrityError(f"side {side}: negative qty {q} at slot {i}")
                    if q != 0:
                        word |= (<uint64_t>1) << (i & 63)
                        count += 1
                        if best_qty == 0 or _better(side, self._base + i, best):
                            best = self._base + i
                            best_qty = q
                if word != self._occ[side][w]:
                    raise BookIntegrityError(f"side {side}: occupancy word {w} disagrees with qtys")
                if (word != 0) != ((self._sum[side][w >> 6] >> (w & 63)) & 1):
                    raise BookIntegrityError(f"side {side}: summary bit {w} disagrees")
            for w in range(self._n_words, self._n_sum << 6):
                if (self._sum[side][w >> 6] >> (w & 63)) & 1:
                    raise BookIntegrityError(f"side {side}: summary bit {w} beyond the window")
            if count != self._n_dense[side]:
                raise BookIntegrityError(
                    f"side {side}: dense level count {self._n_dense[side]} != actual {count}")
            m = _ovf(self, side)
            it = m.begin()
            while it != m.end():
                if <uint64_t>deref(it).first - <uint64_t>self._base < <uint64_t>W:
                    raise BookIntegrityError(
                        f"side {side}: overflow level {deref(it).first} is inside the window")
                if deref(it).second <= 0:
                    raise BookIntegrityError(
                        f"side {side}: overflow level {deref(it).first} has qty {deref(it).second}")
                if best_qty == 0 or _better(side, deref(it).first, best):
                    best = deref(it).first
                    best_qty = deref(it).second
                inc(it)
            if best != self._best[side] or best_qty != self._best_qty[side]:
                raise BookIntegrityError(
                    f"side {side}: cached best {self._best[side]} x {self._best_qty[side]} "
                    f"!= actual {best} x {best_qty}")
        if self.is_crossed():
            raise BookIntegrityError(
                f"crossed book: best bid {self._best[BID]} >= best ask {self._best[ASK]}")

    # ---- diagnostics -------------------------------------------------------

    @property
    def window_ticks(self):
        """Width of the dense window in ticks (int)."""
        return self._window

    @property
    def window_base_ticks(self):
        """Price in ticks of the first slot of the dense window (int)."""
        return self._base

    @property
    def recenter_count(self):
        """Number of times the dense window has moved (int)."""
        return self._recenters

    def n_overflow(self, int side):
        """Number of levels of one side kept outside the dense window (int).

        Raises
        ------
        ValueError
            Bad side.
        """
        _check_side(side)
        return <Py_ssize_t>_ovf(self, side).size()

    def __repr__(self):
        bb = self._best[BID]
        ba = self._best[ASK]
        return (
            f"OrderBook(best_bid={bb if bb != NO_BID_TICKS else None} x {self._best_qty[BID]}, "
            f"best_ask={ba if ba != NO_ASK_TICKS else None} x {self._best_qty[ASK]}, "
            f"levels={self.n_levels(BID)}/{self.n_levels(ASK)}, "
            f"valid={bool(self.valid)}, last_update_id={self.last_update_id})"
        )
