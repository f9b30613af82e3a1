# Contract of ext.book: the L2 order book of one symbol.
#
# Prices are int64 ticks, quantities int64 lots. No floats.
# This file is plain C: modules that cimport it need not be C++ even though
# book.pyx itself is compiled as C++ (the overflow maps are hidden behind
# void pointers below).
from libc.stdint cimport int64_t, uint64_t

# Sides. ``cpdef`` so that Python also sees ``ext.book.BID`` / ``ext.book.ASK``.
cpdef enum:
    BID = 0
    ASK = 1

# Sentinels as compile-time constants (macros), so a cimporting module pays no
# indirection. Python sees them as ``ext.book.NO_BID`` / ``ext.book.NO_ASK``.
cdef extern from *:
    """
    #include <stdint.h>
    #ifndef MM_BOOK_SENTINELS
    #define MM_BOOK_SENTINELS
    #define MM_NO_BID_TICKS INT64_MIN
    #define MM_NO_ASK_TICKS INT64_MAX
    #define MM_MIN_PRICE_TICKS (-((int64_t)1 << 62))
    #define MM_MAX_PRICE_TICKS (((int64_t)1 << 62) - 1)
    #endif
    """
    # best_bid() when there is no bid level
    const int64_t NO_BID_TICKS "MM_NO_BID_TICKS"
    # best_ask() when there is no ask level
    const int64_t NO_ASK_TICKS "MM_NO_ASK_TICKS"
    # accepted price range of set_level, inclusive: [-2**62, 2**62 - 1]
    const int64_t MIN_PRICE_TICKS "MM_MIN_PRICE_TICKS"
    const int64_t MAX_PRICE_TICKS "MM_MAX_PRICE_TICKS"


cdef class OrderBook:
    # venue sequence of the last applied update (0 initially)
    cdef readonly int64_t last_update_id
    # False until mark_valid(); the feed flips it
    cdef readonly bint valid
    # number of set_level calls applied (including no-op deletes)
    cdef readonly int64_t updates_applied

    # ---- private: see the module docstring of book.pyx for the design ----
    cdef int64_t _window          # dense window width, ticks (multiple of 64)
    cdef int64_t _base            # price (ticks) of dense slot 0
    cdef Py_ssize_t _n_words      # _window // 64: words of the level-1 bitmap
    cdef Py_ssize_t _n_sum        # words of the level-2 (summary) bitmap
    cdef int64_t* _qty[2]         # dense qty (lots) per slot, per side
    cdef uint64_t* _occ[2]        # bit i set <=> _qty[side][i] != 0
    cdef uint64_t* _sum[2]        # bit j set <=> _occ[side][j] != 0
    cdef Py_ssize_t _n_dense[2]   # non-zero dense slots per side
    cdef void* _ovf[2]            # std::map<int64_t, int64_t>*: levels outside the window
    cdef int64_t _best[2]         # best price per side (ticks) or the side's sentinel
    cdef int64_t _best_qty[2]     # qty at _best (lots), 0 if none
    cdef int64_t _recenters       # number of window moves (diagnostics)

    # absolute qty; 0 deletes (no-op if absent); qty < 0, bad side or price out of
    # [MIN_PRICE_TICKS, MAX_PRICE_TICKS] -> ValueError, book unchanged
    cdef int set_level(self, int side, int64_t price_ticks, int64_t qty_lots) except -1
    # remove all levels, keep last_update_id, valid = False
    cpdef void clear(self) noexcept
    # valid = True, set last_update_id
    cpdef void mark_valid(self, int64_t last_update_id) noexcept
    # valid = False
    cpdef void invalidate(self) noexcept
    cpdef void set_last_update_id(self, int64_t u) noexcept
    # ticks or NO_BID_TICKS / NO_ASK_TICKS; O(1)
    cpdef int64_t best_bid(self) noexcept
    cpdef int64_t best_ask(self) noexcept
    # lots, 0 if none; O(1)
    cpdef int64_t best_bid_qty(self) noexcept
    cpdef int64_t best_ask_qty(self) noexcept
    # lots, 0 if no level; bad side -> ValueError
    cpdef int64_t qty_at(self, int side, int64_t price_ticks) except? -1
    # both sides present and best_bid >= best_ask
    cpdef bint is_crossed(self) noexcept
    # number of levels of one side; bad side -> ValueError
    cpdef Py_ssize_t n_levels(self, int side) except -1
