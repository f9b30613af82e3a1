# Contract of ext.dedup: a fixed-capacity ring of recent clientOrderIds with
# O(1) insert / lookup / eviction of the oldest, and a small state per id.
cimport cython
from libc.stdint cimport int32_t, int64_t, uint8_t, uint32_t

# One ring slot: the id's ASCII bytes inline (no Python object per id).
cdef struct DedupSlot:
    char key[36]        # the id, not NUL-terminated
    uint32_t tag        # low 32 bits of the id's str hash
    int32_t state       # caller's state code, >= 0
    uint8_t length      # 1..36

# One open-addressing index entry; slot < 0 means empty.
cdef struct DedupIndexEntry:
    int32_t slot
    uint32_t tag


@cython.final
@cython.no_gc_clear
cdef class DedupRing:
    # number of slots, fixed at construction
    cdef readonly Py_ssize_t capacity
    # successful inserts since construction
    cdef readonly int64_t inserts
    # inserts refused because the id was already in the ring
    cdef readonly int64_t refused
    # oldest entries dropped to make room (FIFO by insertion)
    cdef readonly int64_t evictions

    # ---- private: see the module docstring of dedup.pyx ----
    cdef Py_ssize_t _count            # live entries, <= capacity
    cdef Py_ssize_t _head             # slot the next insert writes (the oldest when full)
    cdef DedupSlot* _slots            # capacity slots
    cdef DedupIndexEntry* _index      # _mask + 1 entries (power of two >= 2 * capacity)
    cdef size_t _mask
    cdef list _payloads               # capacity objects (None when unset); fixed length

    cdef Py_ssize_t _find(self, const char* key, Py_ssize_t n, uint32_t tag) noexcept nogil
    cdef void _index_add(self, int32_t slot, uint32_t tag) noexcept nogil
    cdef void _index_remove(self, int32_t slot) noexcept nogil
    cdef Py_ssize_t _lookup(self, object cid) except -2

    cpdef bint insert(self, object cid, long long state, object payload=*) except -1
    cpdef bint contains(self, object cid) except -1
    cpdef int get_state(self, object cid) except -2
    cpdef object get_payload(self, object cid)
    cpdef bint set_state(self, object cid, long long state) except -1
    cpdef bint set_payload(self, object cid, object payload) except -1
    cpdef object oldest(self)
