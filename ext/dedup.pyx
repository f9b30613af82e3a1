"""Fixed-capacity ring of recent clientOrderIds: the local duplicate guard.

Submitting an id that is in the ring is refused locally and counted
(:attr:`DedupRing.refused`); the ring also holds each recent order's state
code and an optional Python payload, so the order path can look an id up in
O(1) without a dict that grows with every order ever sent.

Design
------
* **Ring of slots.** ``capacity`` fixed-size C slots, written in insertion
  order; slot ``head`` is the next one written. When the ring is full, that
  slot holds the oldest entry, which is evicted (FIFO by insertion, not LRU:
  updating a state does not make an entry younger). Each slot stores the id's
  ASCII bytes inline (at most 36, the venue's limit), so no Python object is
  kept per id.
* **Open-addressing index.** A power-of-two table of at least ``2 * capacity``
  ``(slot, tag)`` entries (load factor <= 0.5) with linear probing maps an id
  to its slot; ``tag`` is the low 32 bits of the id's ``str`` hash (cached on
  the ``str`` object by CPython, so an id that was hashed before costs no
  hashing). Eviction deletes the old entry by backward shifting, so there are
  no tombstones and probe lengths stay short however many ids pass through.
* **Payloads** live in one Python list of ``capacity`` items allocated at
  construction (``None`` when unset), so the GC sees them.

All memory is allocated in ``__init__``; nothing grows with the number of
inserts.

Consequence of eviction
-----------------------
Once an id has been evicted (``capacity`` newer ids were inserted after it),
the ring no longer knows it and would accept it again. The ring is the
**second** line of defence: the engine's clientOrderIds are never reused in
the first place (instance prefix + restart epoch + counter,
:mod:`engine.orders.ids`). Choose ``capacity`` far above the number of orders
that can be in flight or open at once (e.g. 65,536 against a few hundred live
orders), so only long-finished orders are ever evicted.

Ids must be ``str`` of 1..36 ASCII characters (venue-protocols.md section 5);
every method that takes an id raises ``ValueError`` otherwise (``TypeError``
for a non-``str``), lookups included, so a malformed id surfaces as a bug
instead of silently reading as "absent". State codes are ints in
``[0, 2**31 - 1]``; ``get_state`` returns -1 for an absent id.
"""
cimport cython
from cpython.mem cimport PyMem_Calloc, PyMem_Free
from libc.stdint cimport INT32_MAX, int32_t, int64_t, uint8_t, uint32_t
from libc.string cimport memcmp, memcpy

__all__ = ["MAX_CAPACITY", "MAX_CID_LEN", "DedupRing"]

#: Longest clientOrderId the venue accepts (venue-protocols.md section 5).
MAX_CID_LEN = 36
# Slots and index positions are int32, and the index (2 entries of 8 bytes
# per slot, rounded up to a power of two) must stay well below 2**31: 2**24
# slots is ~1.2 GB of ring, far more than any order flow needs.
#: Largest accepted capacity.
MAX_CAPACITY = 1 << 24

cdef enum:
    # Smallest index table (entries), so a tiny ring still has room to probe.
    _MIN_INDEX = 8
    # MAX_CID_LEN as a C constant (the slot's key buffer size in dedup.pxd).
    _KEY_MAX = 36


cdef extern from "Python.h":
    bint PyUnicode_Check(object o)
    bint PyUnicode_IS_ASCII(object o)
    void* PyUnicode_DATA(object o)
    Py_ssize_t PyUnicode_GET_LENGTH(object o)
    object PyUnicode_FromStringAndSize(const char* s, Py_ssize_t n)


cdef extern from *:
    """
    /* str's own hash (cached on the object), even for a str subclass that
       overrides __hash__, so equal ids always get equal tags. */
    #define mm_str_hash(o) (PyUnicode_Type.tp_hash(o))
    """
    Py_hash_t mm_str_hash(object o) except? -1


cdef inline const char* _key(object cid, Py_ssize_t* n, uint32_t* tag) except NULL:
    # Validate an id and return its ASCII bytes, length and hash tag.
    if not PyUnicode_Check(cid):
        raise TypeError(f"clientOrderId must be str, not {type(cid).__name__}")
    n[0] = PyUnicode_GET_LENGTH(cid)
    if not PyUnicode_IS_ASCII(cid) or n[0] < 1 or n[0] > _KEY_MAX:
        raise ValueError(f"clientOrderId must be 1..36 ASCII characters, got {cid[:40]!r} (length {n[0]})")
    tag[0] = <uint32_t>mm_str_hash(cid)
    return <const char*>PyUnicode_DATA(cid)


cdef inline int _check_state(long long state) except -1:
    if state < 0 or state > INT32_MAX:
        raise ValueError(f"state must be in [0, 2**31 - 1], got {state}")
    return 0


# binding=False: methods are plain C method descriptors, not CyFunctions, which saves
# ~8 ns per Python-level call (measured; it keeps ring.get_state on par with dict.get).
@cython.binding(False)
cdef class DedupRing:
    """Fixed-capacity FIFO ring of clientOrderIds with O(1) insert, lookup and eviction.

    Parameters
    ----------
    capacity : int
        Number of ids remembered, 1..``MAX_CAPACITY``. Memory is allocated
        once, here, and never grows.

    Notes
    -----
    When full, :meth:`insert` evicts the oldest entry (FIFO by insertion), after
    which that id would be accepted again; see the module docstring for why that
    is acceptable and how to size ``capacity``.
    """

    def __cinit__(self, Py_ssize_t capacity):
        # Allocation is in __cinit__ (not __init__) so that no instance can
        # exist without its memory, and a second __init__ cannot reallocate.
        cdef size_t size = _MIN_INDEX
        cdef size_t i
        if capacity < 1 or capacity > MAX_CAPACITY:
            raise ValueError(f"capacity must be in [1, {MAX_CAPACITY}], got {capacity}")
        while size < <size_t>(2 * capacity):
            size <<= 1
        self._slots = <DedupSlot*>PyMem_Calloc(capacity, sizeof(DedupSlot))
        self._index = <DedupIndexEntry*>PyMem_Calloc(size, sizeof(DedupIndexEntry))
        if self._slots == NULL or self._index == NULL:
            raise MemoryError()
        for i in range(size):
            self._index[i].slot = -1
        self._mask = size - 1
        self._payloads = [None] * capacity
        self.capacity = capacity

    def __dealloc__(self):
        PyMem_Free(self._slots)
        PyMem_Free(self._index)

    # -- private C helpers ---------------------------------------------------------------------
    cdef Py_ssize_t _find(self, const char* key, Py_ssize_t n, uint32_t tag) noexcept nogil:
        # Slot holding the id, or -1. Load <= 0.5 keeps the probe short.
        cdef size_t i = tag & self._mask
        cdef DedupIndexEntry e
        cdef DedupSlot* s
        while True:
            e = self._index[i]
            if e.slot < 0:
                return -1
            if e.tag == tag:
                s = &self._slots[e.slot]
                if s.length == n and memcmp(s.key, key, n) == 0:
                    return e.slot
            i = (i + 1) & self._mask

    cdef void _index_add(self, int32_t slot, uint32_t tag) noexcept nogil:
        cdef size_t i = tag & self._mask
        while self._index[i].slot >= 0:
            i = (i + 1) & self._mask
        self._index[i].slot = slot
        self._index[i].tag = tag

    cdef void _index_remove(self, int32_t slot) noexcept nogil:
        # Backward-shift deletion (no tombstones): after emptying position i,
        # pull back every later entry of the cluster whose home position is not
        # cyclically within (i, j], so that lookups never stop early.
        cdef size_t mask = self._mask
        cdef size_t i = self._slots[slot].tag & mask
        cdef size_t j, home
        while self._index[i].slot != slot:
            i = (i + 1) & mask
        j = i
        while True:
            j = (j + 1) & mask
            if self._index[j].slot < 0:
                break
            home = self._index[j].tag & mask
            if ((j - home) & mask) >= ((j - i) & mask):
                # home is at or before i (cyclically): the entry may move to i.
                self._index[i] = self._index[j]
                i = j
        self._index[i].slot = -1

    cdef Py_ssize_t _lookup(self, object cid) except -2:
        cdef Py_ssize_t n
        cdef uint32_t tag
        cdef const char* k = _key(cid, &n, &tag)
        return self._find(k, n, tag)

    # -- public API ----------------------------------------------------------------------------
    cpdef bint insert(self, object cid, long long state, object payload=None) except -1:
        """Insert ``cid`` with ``state`` and ``payload``, evicting the oldest entry if full.

        Parameters
        ----------
        cid : str
            clientOrderId, 1..36 ASCII characters.
        state : int
            State code in ``[0, 2**31 - 1]``.
        payload : object, optional
            Any object kept with the id (``None`` by default).

        Returns
        -------
        bool
            True if inserted; False if ``cid`` is already in the ring (nothing
            changes except ``refused``, which is incremented).
        """
        cdef Py_ssize_t n
        cdef uint32_t tag
        cdef const char* k = _key(cid, &n, &tag)
        cdef int32_t s
        cdef DedupSlot* slot
        _check_state(state)
        if self._find(k, n, tag) >= 0:
            self.refused += 1
            return False
        s = <int32_t>self._head
        slot = &self._slots[s]
        if self._count == self.capacity:
            self._index_remove(s)
            self.evictions += 1
        else:
            self._count += 1
        memcpy(slot.key, k, n)
        slot.length = <uint8_t>n
        slot.tag = tag
        slot.state = <int32_t>state
        self._index_add(s, tag)
        self._head = s + 1
        if self._head == self.capacity:
            self._head = 0
        self.inserts += 1
        # Last: dropping the evicted payload may run arbitrary code (__del__),
        # which must find the ring consistent.
        self._payloads[s] = payload
        return True

    @cython.always_allow_keywords(False)  # METH_O: positional id only, as dict.get
    cpdef bint contains(self, object cid) except -1:
        """Return True if ``cid`` is in the ring."""
        return self._lookup(cid) >= 0

    @cython.always_allow_keywords(False)  # METH_O: positional id only, as dict.get
    cpdef int get_state(self, object cid) except -2:
        """Return the state code of ``cid``, or -1 if it is not in the ring."""
        cdef Py_ssize_t s = self._lookup(cid)
        return self._slots[s].state if s >= 0 else -1

    @cython.always_allow_keywords(False)  # METH_O: positional id only, as dict.get
    cpdef object get_payload(self, object cid):
        """Return the payload of ``cid``, or None if it is not in the ring."""
        cdef Py_ssize_t s = self._lookup(cid)
        return self._payloads[s] if s >= 0 else None

    cpdef bint set_state(self, object cid, long long state) except -1:
        """Set the state code of ``cid``; return False if it is not in the ring.

        Does not change the entry's age (eviction order is insertion order).
        """
        cdef Py_ssize_t s
        _check_state(state)
        s = self._lookup(cid)
        if s < 0:
            return False
        self._slots[s].state = <int32_t>state
        return True

    cpdef bint set_payload(self, object cid, object payload) except -1:
        """Set the payload of ``cid``; return False if it is not in the ring."""
        cdef Py_ssize_t s = self._lookup(cid)
        if s < 0:
            return False
        self._payloads[s] = payload
        return True

    cpdef object oldest(self):
        """Return the oldest id in the ring (the next to be evicted), or None if empty."""
        cdef Py_ssize_t s
        if self._count == 0:
            return None
        s = self._head - self._count
        if s < 0:
            s += self.capacity
        return PyUnicode_FromStringAndSize(self._slots[s].key, self._slots[s].length)

    def __len__(self):
        return self._count

    def __contains__(self, cid):
        return self._lookup(cid) >= 0

    def __sizeof__(self):
        # Everything is allocated in __init__: the object, its slots, its index
        # and the payload list's pointer array (not the payloads themselves).
        return (object.__sizeof__(self) + self.capacity * sizeof(DedupSlot)
                + (self._mask + 1) * sizeof(DedupIndexEntry) + self._payloads.__sizeof__())

    def __repr__(self):
        return (f"DedupRing(capacity={self.capacity}, len={self._count}, inserts={self.inserts}, "
                f"refused={self.refused}, evictions={self.evictions})")
