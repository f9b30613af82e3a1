"""Exact decimal parsing for venue prices and quantities, and book appliers.

Venue numbers arrive as decimal strings (``"61828.09000000"``). They are parsed
straight from the string's UTF-8 buffer into int64 units with no float and no
intermediate ``Decimal``: a price becomes **ticks**, a quantity becomes **lots**
(``10**-qty_decimals`` base units). A price off the tick grid, a negative
number or a malformed string raises a subclass of :class:`DecodeError`.

Appliers validate a whole message before touching the book, so a bad level
never leaves a half-applied diff behind.
"""
from cpython.unicode cimport PyUnicode_AsUTF8AndSize
from cpython.bytes cimport PyBytes_AsStringAndSize
from cpython.list cimport PyList_GET_SIZE, PyList_GET_ITEM
from cpython.tuple cimport PyTuple_GET_SIZE, PyTuple_GET_ITEM
from cpython.mem cimport PyMem_Malloc, PyMem_Realloc, PyMem_Free
from cpython.buffer cimport PyObject_CheckBuffer, PyObject_GetBuffer, PyBuffer_Release, PyBUF_SIMPLE
from libc.stdint cimport int64_t, INT64_MAX

from ext.book cimport OrderBook, BID, ASK, MAX_PRICE_TICKS


class DecodeError(ValueError):
    """A venue number or message cannot be decoded exactly."""


class MalformedNumberError(DecodeError):
    """A number string is empty, has stray characters or overflows int64."""


class NegativeNumberError(DecodeError):
    """A price or quantity is negative."""


class OffGridError(DecodeError):
    """A price is not a multiple of the tick size, or has more decimals than the grid."""


class BadLevelsError(DecodeError):
    """A levels array is not a JSON array of ``["price", "qty"]`` string pairs."""


cdef int64_t _POW10[19]
_POW10[0] = 1
for _i in range(1, 19):
    _POW10[_i] = _POW10[_i - 1] * 10


cdef inline const char* _chars(object s, Py_ssize_t* n) except NULL:
    cdef char* b
    if type(s) is str:
        return PyUnicode_AsUTF8AndSize(s, n)
    if type(s) is bytes:
        PyBytes_AsStringAndSize(s, &b, n)
        return b
    raise BadLevelsError(f"expected a decimal string, got {type(s).__name__}")


# Error codes of _parse_num.
cdef enum:
    _OK = 0
    _E_MALFORMED = 1
    _E_NEGATIVE = 2
    _E_OFFGRID = 3
    _E_RANGE = 4


cdef int _parse_num(const char* p, Py_ssize_t* pos, Py_ssize_t n, int decimals, bint quoted,
                    int64_t* out) noexcept nogil:
    # One pass over a decimal: digits, at most one '.', no sign, no exponent (the venue's
    # format). ``pos`` starts on the first character; with ``quoted`` the number must end
    # on a closing quote (a JSON string body; ``pos`` is left on it), else at ``n``.
    # At most 18 significant digits are kept, so the accumulator cannot overflow int64
    # and no per-digit range check is needed beyond the count.
    cdef Py_ssize_t i = pos[0]
    cdef Py_ssize_t start = i
    cdef int64_t v = 0
    cdef int frac = 0, kept = 0, digits = 0
    cdef unsigned char d
    if i < n and p[i] == 45:  # '-'
        return _E_NEGATIVE
    while i < n:
        d = <unsigned char>(p[i] - 48)
        if d > 9:
            break
        if v or d:
            kept += 1
            if kept > 18:
                return _E_RANGE
        v = v * 10 + d
        i += 1
    digits = <int>(i - start)
    if i < n and p[i] == 46:  # '.'
        i += 1
        while i < n and frac < decimals:
            d = <unsigned char>(p[i] - 48)
            if d > 9:
                break
            if v or d:
                kept += 1
                if kept > 18:
                    return _E_RANGE
            v = v * 10 + d
            frac += 1
            i += 1
        digits += frac
        while i < n and p[i] == 48:
            digits += 1
            i += 1
        if i < n and 49 <= p[i] <= 57:
            return _E_OFFGRID
    if digits == 0 or (i >= n or p[i] != 34 if quoted else i != n):
        return _E_MALFORMED
    if frac < decimals:
        if v > INT64_MAX // _POW10[decimals - frac]:
            return _E_RANGE
        v *= _POW10[decimals - frac]
    pos[0] = i
    out[0] = v
    return _OK


cdef int _raise(int code, const char* p, Py_ssize_t n, int decimals) except -1:
    text = p[:n].decode("utf-8", "replace") if n < 64 else p[:64].decode("utf-8", "replace") + "..."
    if code == _E_NEGATIVE:
        raise NegativeNumberError(f"negative number {text!r}")
    if code == _E_OFFGRID:
        raise OffGridError(f"{text!r} has more than {decimals} significant decimals")
    if code == _E_RANGE:
        raise MalformedNumberError(f"number out of range {text!r}")
    raise MalformedNumberError(f"malformed number {text!r}")


cdef int64_t parse_units(object s, int decimals) except -1:
    """Parse a non-negative decimal string into units of ``10**-decimals``.

    At most 18 significant digits (first non-zero digit through the last kept
    decimal), so every result fits int64. Raises MalformedNumberError (also for
    more digits), NegativeNumberError, or OffGridError when the string carries a
    non-zero digit beyond ``decimals`` places.
    """
    cdef Py_ssize_t n = 0, pos = 0
    cdef const char* p = _chars(s, &n)
    cdef int64_t v = 0
    cdef int code = _parse_num(p, &pos, n, decimals, False, &v)
    if code != _OK:
        _raise(code, p, n, decimals)
    return v


cdef inline Py_ssize_t _str_len(const char* p, Py_ssize_t start, Py_ssize_t n) noexcept nogil:
    # Length of a JSON string body from ``start`` to its closing quote (or the end), for errors.
    cdef Py_ssize_t i = start
    while i < n and p[i] != 34:
        i += 1
    return i - start


cdef inline Py_ssize_t _ws(const char* p, Py_ssize_t i, Py_ssize_t n) noexcept nogil:
    while i < n and (p[i] == 32 or p[i] == 10 or p[i] == 13 or p[i] == 9):
        i += 1
    return i


cdef class LevelParser:
    """Parse ``[price, qty]`` string pairs of one instrument into ticks and lots.

    Levels are accepted as a list of 2-tuples/lists of ``str``/``bytes``, or as the
    raw JSON text of the array (``msgspec.Raw`` or ``bytes``), which is parsed in
    place: the live path decodes ``b``/``a`` as ``msgspec.Raw`` so no Python
    object is created per level.

    Parameters
    ----------
    price_decimals : int
        Decimal places of the tick size (0..18).
    tick_units : int
        Tick size in units of ``10**-price_decimals`` (1 for power-of-ten ticks).
    qty_decimals : int
        Decimal places of one lot (0..18).

    Raises
    ------
    ValueError
        If a parameter is out of range.
    """

    def __cinit__(self, int price_decimals, int64_t tick_units, int qty_decimals):
        if not (0 <= price_decimals <= 18 and 0 <= qty_decimals <= 18) or tick_units <= 0:
            raise ValueError("price_decimals/qty_decimals must be in 0..18 and tick_units > 0")
        self.price_decimals = price_decimals
        self.tick_units = tick_units
        self.qty_decimals = qty_decimals
        self._cap = 0
        self._px = NULL
        self._qty = NULL
        self._reserve(256)

    def __dealloc__(self):
        PyMem_Free(self._px)
        PyMem_Free(self._qty)

    cdef int _reserve(self, Py_ssize_t n) except -1:
        cdef int64_t* a
        cdef int64_t* b
        if n <= self._cap:
            return 0
        a = <int64_t*> PyMem_Realloc(self._px, n * sizeof(int64_t))
        if a == NULL:
            raise MemoryError()
        self._px = a
        b = <int64_t*> PyMem_Realloc(self._qty, n * sizeof(int64_t))
        if b == NULL:
            raise MemoryError()
        self._qty = b
        self._cap = n
        return 0

    cpdef int64_t price_ticks(self, object s) except -1:
        """Parse a price string into ticks.

        Raises
        ------
        OffGridError
            If the price is not a multiple of the tick size.
        NegativeNumberError, MalformedNumberError
        """
        cdef int64_t v = parse_units(s, self.price_decimals)
        if self.tick_units != 1:
            if v % self.tick_units:
                raise OffGridError(f"price {s!r} is not on the tick grid")
            v //= self.tick_units
        if v > MAX_PRICE_TICKS:
            # The book's price range: checked here so a diff never half-applies.
            raise MalformedNumberError(f"price {s!r} is out of the book's range")
        return v

    cpdef int64_t qty_lots(self, object s) except -1:
        """Parse a quantity string into lots of ``10**-qty_decimals``.

        Raises
        ------
        OffGridError
            If the quantity has more significant decimals than ``qty_decimals``.
        NegativeNumberError, MalformedNumberError
        """
        return parse_units(s, self.qty_decimals)

    cdef Py_ssize_t _parse_side(self, object levels, Py_ssize_t at) except -1:
        # Parse one side into the scratch buffers from index ``at``; return the new end.
        cdef Py_ssize_t k, n
        cdef object lv
        if type(levels) is not list:
            return self._parse_raw(levels, at)
        n = PyList_GET_SIZE(levels)
        self._reserve(at + n)
        for k in range(n):
            lv = <object> PyList_GET_ITEM(levels, k)
            if type(lv) is not tuple or PyTuple_GET_SIZE(lv) != 2:
                if isinstance(lv, (list, tuple)) and len(lv) == 2:
                    lv = tuple(lv)
                else:
                    raise BadLevelsError("a level must be a [price, qty] pair")
            self._px[at + k] = self.price_ticks(<object> PyTuple_GET_ITEM(lv, 0))
            self._qty[at + k] = parse_units(<object> PyTuple_GET_ITEM(lv, 1), self.qty_decimals)
        return at + n

    cdef Py_ssize_t _parse_raw(self, object raw, Py_ssize_t at) except -1:
        # ``raw`` holds the JSON text of a ``[["price","qty"], ...]`` array (a msgspec.Raw
        # or bytes): parse it in place, with no Python object per level.
        cdef Py_buffer view
        cdef const char* p
        cdef Py_ssize_t n, i, ps, qs
        cdef int64_t v
        cdef int code
        if not PyObject_CheckBuffer(raw):
            raise BadLevelsError(f"levels must be a list or raw JSON bytes, got {type(raw).__name__}")
        PyObject_GetBuffer(raw, &view, PyBUF_SIMPLE)
        try:
            p = <const char*> view.buf
            n = view.len
            i = _ws(p, 0, n)
            if i >= n or p[i] != 91:  # '['
                raise BadLevelsError("levels must be a JSON array")
            i = _ws(p, i + 1, n)
            if i < n and p[i] == 93:  # ']'
                if _ws(p, i + 1, n) != n:
                    raise BadLevelsError("trailing characters after the levels array")
                return at
            while True:
                if i >= n or p[i] != 91:
                    raise BadLevelsError("a level must be a [price, qty] pair")
                i = _ws(p, i + 1, n)
                if i >= n or p[i] != 34:  # '"'
                    raise BadLevelsError("a price must be a JSON string")
                ps = i + 1
                i = ps
                code = _parse_num(p, &i, n, self.price_decimals, True, &v)
                if code != _OK:
                    _raise(code, p + ps, _str_len(p, ps, n), self.price_decimals)
                if self.tick_units != 1:
                    if v % self.tick_units:
                        raise OffGridError(f"price {p[ps:i].decode('ascii', 'replace')!r} is not on the tick grid")
                    v //= self.tick_units
                if v > MAX_PRICE_TICKS:
                    raise MalformedNumberError("price is out of the book's range")
                if at >= self._cap:
                    self._reserve(self._cap * 2)
                self._px[at] = v
                i = _ws(p, i + 1, n)
                if i >= n or p[i] != 44:  # ','
                    raise BadLevelsError("a level must be a [price, qty] pair")
                i = _ws(p, i + 1, n)
                if i >= n or p[i] != 34:
                    raise BadLevelsError("a quantity must be a JSON string")
                qs = i + 1
                i = qs
                code = _parse_num(p, &i, n, self.qty_decimals, True, &v)
                if code != _OK:
                    _raise(code, p + qs, _str_len(p, qs, n), self.qty_decimals)
                self._qty[at] = v
                i = _ws(p, i + 1, n)
                if i >= n or p[i] != 93:
                    raise BadLevelsError("a level must be a [price, qty] pair")
                at += 1
                i = _ws(p, i + 1, n)
                if i < n and p[i] == 44:
                    i = _ws(p, i + 1, n)
                    continue
                if i < n and p[i] == 93:
                    if _ws(p, i + 1, n) != n:
                        raise BadLevelsError("trailing characters after the levels array")
                    return at
                raise BadLevelsError("levels array is not terminated")
        finally:
            PyBuffer_Release(&view)

    cpdef Py_ssize_t validate(self, object bids, object asks) except -1:
        """Parse every level without applying it; return the level count or raise DecodeError."""
        return self._parse_side(asks, self._parse_side(bids, 0))

    cpdef Py_ssize_t apply_diff(self, OrderBook book, object bids, object asks, int64_t last_update_id) except -1:
        """Apply one depth diff (absolute quantities; 0 deletes) and set the book's update id.

        All levels are parsed first; on any DecodeError the book is untouched.
        Returns the number of level changes applied. Source of the level
        semantics: Binance spot ``web-socket-streams.md`` (venue-protocols.md 1.4).
        """
        cdef Py_ssize_t nb = self._parse_side(bids, 0)
        cdef Py_ssize_t n = self._parse_side(asks, nb)
        cdef Py_ssize_t k
        for k in range(nb):
            book.set_level(BID, self._px[k], self._qty[k])
        for k in range(nb, n):
            book.set_level(ASK, self._px[k], self._qty[k])
        book.set_last_update_id(last_update_id)
        return n

    cpdef Py_ssize_t load_snapshot(self, OrderBook book, object bids, object asks, int64_t last_update_id) except -1:
        """Replace the book's content with a depth snapshot.

        Clears the book (which leaves it invalid), applies every level and sets
        ``last_update_id``; the caller marks it valid once the bridging rule
        holds. On DecodeError the book is left untouched.
        """
        cdef Py_ssize_t nb = self._parse_side(bids, 0)
        cdef Py_ssize_t n = self._parse_side(asks, nb)
        cdef Py_ssize_t k
        book.clear()
        for k in range(nb):
            book.set_level(BID, self._px[k], self._qty[k])
        for k in range(nb, n):
            book.set_level(ASK, self._px[k], self._qty[k])
        book.set_last_update_id(last_update_id)
        return n
