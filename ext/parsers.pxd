# Contract of ext.parsers: exact decimal-string -> integer conversion and the
# diff/snapshot appliers that feed ext.book.OrderBook without Python objects in between.
from libc.stdint cimport int64_t
from ext.book cimport OrderBook

cdef int64_t parse_units(object s, int decimals) except -1

cdef class LevelParser:
    cdef readonly int price_decimals
    cdef readonly int64_t tick_units
    cdef readonly int qty_decimals
    cdef int64_t* _px
    cdef int64_t* _qty
    cdef Py_ssize_t _cap

    cdef int _reserve(self, Py_ssize_t n) except -1
    cdef Py_ssize_t _parse_side(self, object levels, Py_ssize_t at) except -1
    cdef Py_ssize_t _parse_raw(self, object raw, Py_ssize_t at) except -1
    cpdef int64_t price_ticks(self, object s) except -1
    cpdef int64_t qty_lots(self, object s) except -1
    cpdef Py_ssize_t validate(self, object bids, object asks) except -1
    cpdef Py_ssize_t apply_diff(self, OrderBook book, object bids, object asks, int64_t last_update_id) except -1
    cpdef Py_ssize_t load_snapshot(self, OrderBook book, object bids, object asks, int64_t last_update_id) except -1
