# cython: language_level=3
"""ClickHouse Native blocks from row dicts, in C (contract: nativeblock.pyi; pure twin, the kinds
and ``layout``: _pure/nativeblock.py).

Why C: this is the exporter's per-row cost that the engine does not set. Each cell is a type check
and a memcpy or a fixed-width store into its column's growing buffer; no list per column, no
Python object made per value. Rows are read a tile at a time (TILE), each row's cells gathered in
one walk over its dict (gather_row). The rare value forms
(datetimes, ISO text, UUIDs not in canonical text) call the pure twin's converters, so the two
never disagree on them.
"""
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.dict cimport PyDict_Next
from cpython.float cimport PyFloat_AS_DOUBLE
from cpython.mem cimport PyMem_Free, PyMem_Malloc, PyMem_Realloc
from cpython.object cimport Py_EQ, PyObject, PyObject_Hash, PyObject_RichCompareBool
from cpython.ref cimport Py_XDECREF, Py_XINCREF
from libc.math cimport isfinite, rint
from libc.stdint cimport int64_t, uint64_t
from libc.string cimport memcpy

from collections.abc import Mapping as _Mapping

from fastgw._native._pure import nativeblock as _pure
from fastgw._native._pure.nativeblock import BlockError, layout

__all__ = ["BlockError", "encode_block", "layout"]

cdef extern from "Python.h":
    PyObject* PyDict_GetItemWithError(object d, object key) except? NULL
    bint PyDict_CheckExact(object o)
    bint PyUnicode_Check(object o)
    bint PyUnicode_CheckExact(object o)
    bint PyBytes_Check(object o)
    bint PyLong_Check(object o)
    bint PyLong_CheckExact(object o)
    bint PyFloat_Check(object o)
    bint PyFloat_CheckExact(object o)
    bint PyBool_Check(object o)
    const char* PyUnicode_AsUTF8AndSize(object o, Py_ssize_t* size) except NULL
    long long PyLong_AsLongLongAndOverflow(object o, int* overflow) except? -1
    unsigned long long PyLong_AsUnsignedLongLong(object o) except? -1
    double PyLong_AsDouble(object o) except? -1.0

cdef enum:
    STRING, BOOL, U8, U16, U32, U64, I8, I16, I32, I64, F64, UUID_, DT64_MS, MAP, ARRAY_TUPLE

assert (STRING, BOOL, U64, I64, F64, UUID_, DT64_MS, MAP, ARRAY_TUPLE) == (
    _pure.STRING, _pure.BOOL, _pure.U64, _pure.I64, _pure.F64, _pure.UUID_, _pure.DT64_MS, _pure.MAP,
    _pure.ARRAY_TUPLE), "the kinds must match the pure twin's"

cdef long long LOW[12]
cdef long long HIGH[12]
for _kind, (_low, _high) in _pure.INT_RANGE.items():
    if _kind != U64:
        LOW[_kind] = _low
        HIGH[_kind] = _high
cdef int WIDTH[12]
WIDTH[U8] = 1; WIDTH[U16] = 2; WIDTH[U32] = 4; WIDTH[U64] = 8
WIDTH[I8] = 1; WIDTH[I16] = 2; WIDTH[I32] = 4; WIDTH[I64] = 8


# --- the buffer -------------------------------------------------------------------------------

cdef int buf_grow(Buf* b, Py_ssize_t extra) except -1:
    cdef Py_ssize_t cap = b.cap * 2 if b.cap else 4096
    while cap < b.len + extra:
        cap *= 2
    cdef unsigned char* p = <unsigned char*>PyMem_Realloc(b.p, cap)
    if p == NULL:
        raise MemoryError()
    b.p = p
    b.cap = cap
    return 0


cdef inline int put(Buf* b, const void* src, Py_ssize_t n) except -1:
    if b.len + n > b.cap:
        buf_grow(b, n)
    memcpy(b.p + b.len, src, n)
    b.len += n
    return 0


cdef int put_varint(Buf* b, unsigned long long n) except -1:
    cdef unsigned char tmp[10]
    cdef int k = 0
    while n >= 0x80:
        tmp[k] = <unsigned char>((n & 0x7F) | 0x80)
        n >>= 7
        k += 1
    tmp[k] = <unsigned char>n
    return put(b, tmp, k + 1)


cdef inline int put_le(Buf* b, uint64_t v, int width) except -1:
    # Little-endian whatever the host: byte by byte (the compiler folds it to one store on x86).
    cdef unsigned char tmp[8]
    cdef int k
    for k in range(width):
        tmp[k] = <unsigned char>(v >> (8 * k))
    return put(b, tmp, width)


# --- values -----------------------------------------------------------------------------------

cdef inline object get_value(object row, object name):
    cdef PyObject* v
    if PyDict_CheckExact(row):
        v = PyDict_GetItemWithError(row, name)
        return None if v == NULL else <object>v
    return row.get(name)


cdef int put_text(Buf* b, object name, object value, Py_ssize_t i) except -1:
    cdef const char* s
    cdef Py_ssize_t n
    if PyUnicode_Check(value):
        try:
            s = PyUnicode_AsUTF8AndSize(value, &n)
        except UnicodeEncodeError as exc:
            raise BlockError(f"column {name!r}, row {i}: text that is not valid Unicode ({exc.reason})") from None
    elif PyBytes_Check(value):
        s = PyBytes_AS_STRING(value)
        n = PyBytes_GET_SIZE(value)
    elif isinstance(value, bytearray):
        return put_text(b, name, bytes(value), i)
    else:
        raise BlockError(f"column {name!r}, row {i}: expected text, got {type(value).__name__}")
    put_varint(b, <unsigned long long>n)
    return put(b, s, n)


cdef inline int hexval(Py_UCS4 c) noexcept:
    if 48 <= c <= 57:  # 0-9
        return <int>c - 48
    if 97 <= c <= 102:  # a-f
        return <int>c - 87
    if 65 <= c <= 70:  # A-F
        return <int>c - 55
    return -1


cdef int put_uuid(Buf* b, object name, object value, Py_ssize_t i) except -1:
    """The canonical 36-character text is parsed here; every other form by the pure twin."""
    cdef uint64_t half[2]
    cdef Py_ssize_t k, j = 0
    cdef int h
    cdef str text
    cdef object big
    if type(value) is str and len(<str>value) == 36:
        text = <str>value
        half[0] = 0
        half[1] = 0
        for k in range(36):
            if k == 8 or k == 13 or k == 18 or k == 23:
                if text[k] != 45:  # '-'
                    break
                continue
            h = hexval(text[k])
            if h < 0:
                break
            half[j >> 4] = (half[j >> 4] << 4) | <uint64_t>h
            j += 1
        else:
            put_le(b, half[0], 8)
            return put_le(b, half[1], 8)
    big = _pure.uuid_int(name, value, i)
    put_le(b, <uint64_t>(big >> 64), 8)
    return put_le(b, <uint64_t>(big & 0xFFFFFFFFFFFFFFFF), 8)


cdef int put_ms(Buf* b, object name, object value, Py_ssize_t i) except -1:
    cdef int overflow = 0
    cdef long long v
    cdef double d
    if PyLong_CheckExact(value):
        v = PyLong_AsLongLongAndOverflow(value, &overflow)
        if not overflow and -9223372036854775 <= v <= 9223372036854775:
            return put_le(b, <uint64_t>(v * 1000), 8)
    elif PyFloat_CheckExact(value):
        d = PyFloat_AS_DOUBLE(value) * 1000.0
        if isfinite(d) and -9.2233720368547e18 < d < 9.2233720368547e18:
            return put_le(b, <uint64_t><int64_t>rint(d), 8)  # rint: half to even, like round()
    big = _pure.epoch_ms(name, value, i)
    return put_int(b, name, I64, big, i)


cdef int put_int(Buf* b, object name, int kind, object value, Py_ssize_t i) except -1:
    cdef int overflow = 0
    cdef long long v
    cdef unsigned long long u
    if not PyLong_Check(value):
        raise BlockError(f"column {name!r}, row {i}: expected an integer, got {type(value).__name__}")
    v = PyLong_AsLongLongAndOverflow(value, &overflow)
    if kind == U64:
        if overflow > 0:
            try:
                u = PyLong_AsUnsignedLongLong(value)
            except OverflowError:
                raise BlockError(f"column {name!r}, row {i}: {value} is out of range") from None
            return put_le(b, u, 8)
        if overflow or v < 0:
            raise BlockError(f"column {name!r}, row {i}: {value} is out of range")
        return put_le(b, <uint64_t>v, 8)
    if overflow or v < LOW[kind] or v > HIGH[kind]:
        raise BlockError(f"column {name!r}, row {i}: {value} is out of range")
    return put_le(b, <uint64_t>v, WIDTH[kind])


cdef int put_scalar(Buf* b, object name, int kind, object value, Py_ssize_t i) except -1:
    cdef double d
    cdef unsigned char flag
    if kind == STRING:
        return put_text(b, name, value, i)
    if kind == BOOL:
        flag = 1 if value else 0
        return put(b, &flag, 1)
    if kind == F64:
        if PyFloat_Check(value):
            d = PyFloat_AS_DOUBLE(value)
        elif PyLong_Check(value):
            try:
                d = PyLong_AsDouble(value)
            except OverflowError:
                raise BlockError(f"column {name!r}, row {i}: {value} is out of range") from None
        else:
            raise BlockError(f"column {name!r}, row {i}: expected a number, got {type(value).__name__}")
        return put(b, &d, 8)  # IEEE-754 doubles are little-endian on every host CPython supports here
    if kind == UUID_:
        return put_uuid(b, name, value, i)
    if kind == DT64_MS:
        return put_ms(b, name, value, i)
    return put_int(b, name, kind, value, i)


# --- columns ----------------------------------------------------------------------------------

# Rows per pass over the columns. Going down one column of a 5,000-row batch touches 5,000 row
# dicts, more than the CPU caches hold, so each of the ~40 columns read them from memory again:
# 4.6 µs a row of the request log. Tiles of 32 rows, whose dicts stay cached while all of their
# columns are written, took it to 2.3 µs (16 to 256 rows: 2.3 to 2.7). The block is still one
# block: each column's data gathers in its own buffers, joined at the end.
cdef enum:
    TILE = 32


# The cells of a tile are gathered a row at a time before the columns are written: one walk over
# each row dict's entries (PyDict_Next), each key found among the columns in a small table by its
# cached hash, instead of a lookup of every column's name in every row (about half of this
# encoder's time went to those lookups, each touching the row's hash index again). References are
# held until the tile is written: a converter in Python may run meanwhile and change a row.
ctypedef struct Names:
    Py_ssize_t mask
    Py_ssize_t* slots  # column index by hash, -1 for an empty slot
    Py_hash_t* hashes  # each column name's hash
    PyObject** names  # each column's name (borrowed: the spec outlives the call)
    bint usable  # every name an exact str, no two equal: else every row goes by lookups


cdef int names_init(Names* t, tuple spec) except -1:
    cdef Py_ssize_t ncols = len(spec), size = 8, c, j
    cdef Py_hash_t h
    cdef object name
    t.usable = True
    while size < 4 * ncols:
        size *= 2
    t.mask = size - 1
    t.slots = <Py_ssize_t*>PyMem_Malloc(size * sizeof(Py_ssize_t))
    t.hashes = <Py_hash_t*>PyMem_Malloc((ncols + 1) * sizeof(Py_hash_t))
    t.names = <PyObject**>PyMem_Malloc((ncols + 1) * sizeof(PyObject*))
    if t.slots == NULL or t.hashes == NULL or t.names == NULL:
        raise MemoryError()
    for j in range(size):
        t.slots[j] = -1
    for c in range(ncols):
        name = (<tuple>spec[c])[0]
        t.names[c] = <PyObject*>name
        if not PyUnicode_CheckExact(name):
            t.usable = False
            continue
        h = PyObject_Hash(name)
        t.hashes[c] = h
        j = <Py_ssize_t>(<size_t>h & <size_t>t.mask)
        while t.slots[j] >= 0:
            if t.hashes[t.slots[j]] == h and name == <object>t.names[t.slots[j]]:
                t.usable = False  # a name twice: a dict lookup per column gives each its value
            j = (j + 1) & t.mask
        t.slots[j] = c
    return 0


cdef int gather_row(Names* t, tuple spec, object row, PyObject** out) except -1:
    """``out[c]``: a new reference to the row's value for column c, or NULL where it has none.

    The walk runs no Python code: it takes only exact dicts whose keys are all exact str (their
    hashes and comparisons are C), so the borrowed key and value can't be freed under it. Any
    other row (a Mapping, a dict subclass, a key of another type, which may hash or compare in
    Python and change the row meanwhile) gets a lookup per column, as dicts do it."""
    cdef Py_ssize_t pos = 0, j, c, ncols = len(spec)
    cdef PyObject* k
    cdef PyObject* v
    cdef PyObject* name
    cdef Py_hash_t h
    if t.usable and PyDict_CheckExact(row):
        while PyDict_Next(row, &pos, &k, &v):
            if not PyUnicode_CheckExact(<object>k):
                release(out, ncols)
                break
            h = PyObject_Hash(<object>k)
            j = <Py_ssize_t>(<size_t>h & <size_t>t.mask)
            while t.slots[j] >= 0:
                c = t.slots[j]
                name = t.names[c]
                if t.hashes[c] == h and (name == k or PyObject_RichCompareBool(<object>name, <object>k, Py_EQ)):
                    Py_XINCREF(v)
                    out[c] = v
                    break
                j = (j + 1) & t.mask
        else:
            return 0
    for c in range(ncols):
        value = get_value(row, (<tuple>spec[c])[0])
        if value is not None:
            Py_XINCREF(<PyObject*>value)
            out[c] = <PyObject*>value
    return 0


cdef void release(PyObject** cells, Py_ssize_t count) noexcept:
    cdef Py_ssize_t k
    for k in range(count):
        Py_XDECREF(cells[k])
        cells[k] = NULL


cdef inline object gathered(PyObject* v, object name, object default, bint required, Py_ssize_t i):
    """A column's value from its gathered cell: missing or None takes the default; a required
    column refuses."""
    if v == NULL or <object>v is None:
        if required:
            raise BlockError(f"row {i} has no {name}; the column is required")
        return default
    return <object>v


cdef int column_buffers(tuple column) except -1:
    """How many buffers a column's data needs while it is written tile by tile."""
    kind, nullable, elements = column[1], column[2], column[6]
    if kind == MAP:
        return 3  # cumulative counts, keys, values
    if kind == ARRAY_TUPLE:
        return 1 + len(elements)  # cumulative counts, then one per tuple element
    return 2 if nullable else 1  # (NULL flags,) values


cdef int put_map_row(Buf* bb, uint64_t* total, object name, object value, Py_ssize_t i) except -1:
    cdef Py_ssize_t pos = 0
    cdef PyObject* k
    cdef PyObject* v
    if not isinstance(value, dict):
        if not isinstance(value, _Mapping):
            raise BlockError(f"column {name!r}, row {i}: expected a map, got {type(value).__name__}")
        value = dict(value)
    total[0] += len(<dict>value)
    put_le(&bb[0], total[0], 8)
    while PyDict_Next(value, &pos, &k, &v):
        put_text(&bb[1], name, <object>k, i)
        put_text(&bb[2], name, <object>v, i)
    return 0


cdef int put_array_tuple_row(Buf* bb, uint64_t* total, object name, tuple elements, object value,
                             Py_ssize_t i) except -1:
    cdef Py_ssize_t j, width = len(elements)
    cdef object item, field
    cdef tuple element
    if not isinstance(value, (list, tuple)):
        raise BlockError(f"column {name!r}, row {i}: expected a list, got {type(value).__name__}")
    for item in value:
        if not (isinstance(item, _Mapping) or (isinstance(item, (list, tuple)) and len(item) == width)):
            raise BlockError(f"column {name!r}, row {i}: each element must be a map or a {width}-tuple")
    total[0] += len(value)
    put_le(&bb[0], total[0], 8)
    for item in value:
        for j in range(width):
            element = <tuple>elements[j]
            field = item.get(element[0]) if isinstance(item, _Mapping) else item[j]
            put_scalar(&bb[1 + j], name, <int>element[1], element[2] if field is None else field, i)
    return 0


# The column buffers are kept from one block to the next (up to KEEP_BYTES of them): fresh ones
# for every 5,000-row block cost page faults for ~25 MB each time, and the allocator decides when,
# which made the same call take 2.7 µs a row or 4.2 depending on what ran before it.
cdef enum:
    KEEP_BYTES = 64 * 1024 * 1024
cdef Buf* _arena = NULL
cdef Py_ssize_t _arena_n = 0
cdef bint _arena_busy = False


cdef Buf* take_arena(Py_ssize_t nbufs) noexcept:
    """The kept buffers, emptied, or NULL when they are in use (another thread is between calls
    back into Python in the middle of a block) or cannot grow: then the caller makes its own."""
    global _arena, _arena_n, _arena_busy
    cdef Buf* p
    cdef Py_ssize_t k
    if _arena_busy:
        return NULL
    if _arena_n < nbufs:
        p = <Buf*>PyMem_Realloc(_arena, nbufs * sizeof(Buf))
        if p == NULL:
            return NULL
        for k in range(_arena_n, nbufs):
            p[k].p = NULL
            p[k].len = 0
            p[k].cap = 0
        _arena = p
        _arena_n = nbufs
    for k in range(_arena_n):
        _arena[k].len = 0
    _arena_busy = True
    return _arena


cdef void give_back_arena() noexcept:
    global _arena_busy
    cdef Py_ssize_t k, held = 0
    for k in range(_arena_n):
        held += _arena[k].cap
    if held > KEEP_BYTES:
        for k in range(_arena_n):
            PyMem_Free(_arena[k].p)
            _arena[k].p = NULL
            _arena[k].cap = 0
    _arena_busy = False


def encode_block(tuple spec, rows, Py_ssize_t tile=TILE):
    """The block, written ``tile`` rows at a time into per-column buffers (see TILE)."""
    cdef Py_ssize_t n = len(rows), ncols = len(spec)
    cdef Py_ssize_t c, i, start, stop, nbufs = 0, total_len, at, want
    cdef int kind, k
    cdef bint nullable, required, kept = False
    cdef unsigned char flag
    cdef object name, default, value, header, elements
    cdef tuple column
    cdef Buf* bufs = NULL
    cdef Buf* bb
    cdef Buf head
    cdef Py_ssize_t* first = NULL
    cdef uint64_t* totals = NULL
    cdef Names names
    cdef PyObject** cells = NULL
    cdef PyObject** row_cells
    cdef Py_ssize_t held = 0
    cdef bytes out
    cdef char* dst
    if tile < 1:
        raise ValueError("tile must be at least 1")
    head.p = NULL
    head.len = 0
    head.cap = 0
    names.slots = NULL
    names.hashes = NULL
    names.names = NULL
    try:
        names_init(&names, spec)
        held = min(tile, n) * ncols
        cells = <PyObject**>PyMem_Malloc((held + 1) * sizeof(PyObject*))
        if cells == NULL:
            raise MemoryError()
        for k in range(held):
            cells[k] = NULL
        first = <Py_ssize_t*>PyMem_Malloc((ncols + 1) * sizeof(Py_ssize_t))
        totals = <uint64_t*>PyMem_Malloc((ncols + 1) * sizeof(uint64_t))
        if first == NULL or totals == NULL:
            raise MemoryError()
        for c in range(ncols):
            first[c] = nbufs
            totals[c] = 0
            nbufs += column_buffers(<tuple>spec[c])
        first[ncols] = nbufs
        bufs = take_arena(nbufs)
        kept = bufs != NULL
        if not kept:
            bufs = <Buf*>PyMem_Malloc((nbufs + 1) * sizeof(Buf))
            if bufs == NULL:
                raise MemoryError()
            for k in range(nbufs):
                bufs[k].p = NULL
                bufs[k].len = 0
                bufs[k].cap = 0
        try:
            for start in range(0, n, tile):
                stop = min(start + tile, n)
                for i in range(start, stop):
                    gather_row(&names, spec, rows[i], cells + (i - start) * ncols)
                for c in range(ncols):
                    column = <tuple>spec[c]
                    name, kind, nullable, default, required, header, elements = column
                    bb = bufs + first[c]
                    row_cells = cells + c
                    if kind == MAP:
                        for i in range(start, stop):
                            put_map_row(bb, &totals[c], name,
                                        gathered(row_cells[(i - start) * ncols], name, default, required, i), i)
                    elif kind == ARRAY_TUPLE:
                        for i in range(start, stop):
                            put_array_tuple_row(bb, &totals[c], name, elements,
                                                gathered(row_cells[(i - start) * ncols], name, default, required, i), i)
                    elif nullable:
                        for i in range(start, stop):
                            value = gathered(row_cells[(i - start) * ncols], name, default, required, i)
                            flag = 1 if value is None else 0
                            put(&bb[0], &flag, 1)
                            put_scalar(&bb[1], name, kind, _pure._ZERO.get(kind, 0) if value is None else value, i)
                    else:
                        for i in range(start, stop):
                            put_scalar(&bb[0], name, kind,
                                       gathered(row_cells[(i - start) * ncols], name, default, required, i), i)
                release(cells, (stop - start) * ncols)
                if start == 0 and stop < n:
                    # Size every buffer for the whole block from the first tile, rather than
                    # doubling each of them a dozen times (every doubling copies what it holds).
                    for k in range(nbufs):
                        want = bufs[k].len * n // stop + bufs[k].len // 8 + 64
                        if want > bufs[k].cap:
                            buf_grow(&bufs[k], want - bufs[k].len)
        except BlockError:
            # Tiles meet bad values in another order than a column at a time does. A batch with
            # one is rare (the exporter then writes its rows one by one), so the pure twin, which
            # goes a column at a time, says which value is refused: both twins name the same one.
            return _pure.encode_block(spec, rows)
        put_varint(&head, <unsigned long long>ncols)
        put_varint(&head, <unsigned long long>n)
        total_len = head.len
        for c in range(ncols):
            total_len += PyBytes_GET_SIZE(<bytes>(<tuple>spec[c])[5])
        for k in range(nbufs):
            total_len += bufs[k].len
        out = PyBytes_FromStringAndSize(NULL, total_len)
        dst = PyBytes_AS_STRING(out)
        memcpy(dst, head.p, head.len)
        at = head.len
        for c in range(ncols):
            header = (<tuple>spec[c])[5]
            memcpy(dst + at, PyBytes_AS_STRING(header), PyBytes_GET_SIZE(header))
            at += PyBytes_GET_SIZE(header)
            for k in range(first[c], first[c + 1]):
                if bufs[k].len:
                    memcpy(dst + at, bufs[k].p, bufs[k].len)
                    at += bufs[k].len
        return out
    finally:
        if cells != NULL:
            release(cells, held)
            PyMem_Free(cells)
        PyMem_Free(names.slots)
        PyMem_Free(names.hashes)
        PyMem_Free(names.names)
        if kept:
            give_back_arena()
        elif bufs != NULL:
            for k in range(nbufs):
                PyMem_Free(bufs[k].p)
            PyMem_Free(bufs)
        PyMem_Free(first)
        PyMem_Free(totals)
        PyMem_Free(head.p)
