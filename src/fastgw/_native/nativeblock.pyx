# cython: language_level=3
"""ClickHouse Native blocks from row dicts, in C (contract: nativeblock.pyi; pure twin, the kinds
and ``layout``: _pure/nativeblock.py).

Why C: this is the exporter's per-row cost that the engine does not set. Each column is one loop
over the rows: a borrowed dict lookup, a type check, and a memcpy or a fixed-width store into one
growing buffer; no list per column, no Python object made per value. The rare value forms
(datetimes, ISO text, UUIDs not in canonical text) call the pure twin's converters, so the two
never disagree on them.
"""
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.dict cimport PyDict_Next
from cpython.float cimport PyFloat_AS_DOUBLE
from cpython.mem cimport PyMem_Free, PyMem_Malloc, PyMem_Realloc
from cpython.object cimport PyObject
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


cdef inline object cell(object row, object name, object default, bint required, Py_ssize_t i):
    """The row's value for a column: missing or None takes the default; a required column refuses."""
    cdef object value = get_value(row, name)
    if value is None:
        if required:
            raise BlockError(f"row {i} has no {name}; the column is required")
        return default
    return value


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

cdef int put_map_column(Buf* b, object name, list values) except -1:
    cdef Py_ssize_t i, pos, total = 0
    cdef PyObject* k
    cdef PyObject* v
    cdef object value
    for i in range(len(values)):
        value = values[i]
        if not isinstance(value, dict):
            if not isinstance(value, _Mapping):
                raise BlockError(f"column {name!r}, row {i}: expected a map, got {type(value).__name__}")
            values[i] = value = dict(value)
        total += len(<dict>value)
        put_le(b, <uint64_t>total, 8)
    for i in range(len(values)):
        pos = 0
        while PyDict_Next(values[i], &pos, &k, &v):
            put_text(b, name, <object>k, i)
    for i in range(len(values)):
        pos = 0
        while PyDict_Next(values[i], &pos, &k, &v):
            put_text(b, name, <object>v, i)
    return 0


cdef int put_array_tuple_column(Buf* b, object name, tuple elements, list values) except -1:
    cdef Py_ssize_t i, j, total = 0
    cdef Py_ssize_t width = len(elements)
    cdef list items = []  # (row, element) for every element of every row
    cdef object value, item, field
    cdef tuple element
    for i in range(len(values)):
        value = values[i]
        if not isinstance(value, (list, tuple)):
            raise BlockError(f"column {name!r}, row {i}: expected a list, got {type(value).__name__}")
        for item in value:
            if not (isinstance(item, _Mapping) or (isinstance(item, (list, tuple)) and len(item) == width)):
                raise BlockError(f"column {name!r}, row {i}: each element must be a map or a {width}-tuple")
            items.append((i, item))
        total += len(value)
        put_le(b, <uint64_t>total, 8)
    for j in range(width):
        element = <tuple>elements[j]
        for i, item in items:
            field = item.get(element[0]) if isinstance(item, _Mapping) else item[j]
            put_scalar(b, name, <int>element[1], element[2] if field is None else field, i)
    return 0


def encode_block(tuple spec, rows):
    cdef Buf b
    cdef Py_ssize_t i, n = len(rows)
    cdef int kind
    cdef bint nullable, required
    cdef object name, default, value, header
    cdef list values
    cdef bytearray nulls
    b.p = NULL
    b.len = 0
    b.cap = 0
    try:
        buf_grow(&b, 64 + n * 512)
        put_varint(&b, <unsigned long long>len(spec))
        put_varint(&b, <unsigned long long>n)
        for column in spec:
            name, kind, nullable, default, required, header, elements = column
            put(&b, PyBytes_AS_STRING(header), PyBytes_GET_SIZE(header))
            if kind == MAP or kind == ARRAY_TUPLE or nullable:
                values = []
                for i in range(n):
                    values.append(cell(rows[i], name, default, required, i))
                if kind == MAP:
                    put_map_column(&b, name, values)
                elif kind == ARRAY_TUPLE:
                    put_array_tuple_column(&b, name, elements, values)
                else:
                    nulls = bytearray(n)
                    for i in range(n):
                        if values[i] is None:
                            nulls[i] = 1
                    put(&b, <char*>nulls, n)
                    for i in range(n):
                        value = values[i]
                        put_scalar(&b, name, kind, _pure._ZERO.get(kind, 0) if value is None else value, i)
                continue
            for i in range(n):
                put_scalar(&b, name, kind, cell(rows[i], name, default, required, i), i)
        return PyBytes_FromStringAndSize(<char*>b.p, b.len)
    finally:
        PyMem_Free(b.p)
