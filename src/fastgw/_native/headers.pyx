# cython: language_level=3
"""One pass over a request's headers, in C (contract: headers.pyi; twin: _pure/headers.py).

Each name is validated and lower-cased straight into the output buffer that becomes ``forward``,
by one lookup per byte in a 256-entry table; the known names are then recognised by length and
one memcmp, so no Python object is built for a name unless it is a Helicone property or extra.
A header that is not forwarded simply does not advance the write position. Values are checked
with a second table and copied with memcpy. The rules the contract leaves open are listed in
_pure/headers.py; both twins must agree on every result and every HeaderError message.
"""
cimport cython
from cpython.bytes cimport (
    PyBytes_AS_STRING,
    PyBytes_Check,
    PyBytes_CheckExact,
    PyBytes_FromStringAndSize,
    PyBytes_GET_SIZE,
)
from cpython.mem cimport PyMem_Free, PyMem_Malloc
from cpython.unicode cimport PyUnicode_DecodeLatin1, PyUnicode_DecodeUTF8
from libc.string cimport memchr, memcmp, memcpy, memmove

from fastgw._native.errors import HeaderError

__all__ = ["HeaderError", "HeliconeHeaders", "ParsedHeaders", "parse_headers"]

cdef enum:
    STACK_BUFFER = 4096  # bytes of forward built on the stack before falling back to the heap

cdef long long INT64_MAX = 9223372036854775807
cdef const char* TCHAR = b"!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

# What a lower-cased header name is to the gateway.
cdef enum Kind:
    K_FORWARD  # sent upstream as is
    K_DROP  # hop-by-hop: neither kept nor sent
    K_HOST
    K_AUTHORIZATION
    K_API_KEY
    K_CONTENT_TYPE  # kept and sent
    K_CONTENT_LENGTH
    K_TRANSFER_ENCODING
    K_EXPECT
    K_CONNECTION
    K_HELICONE  # helicone-*

# The lookup tables, filled once at import by _init_tables().
cdef unsigned char NAME_LOWER[256]  # tchar -> the byte lower-cased; any other byte -> 0
cdef unsigned char LOWER[256]  # any byte -> ASCII lower-cased (bytes.lower() semantics)
cdef unsigned char VALUE_CTL[256]  # 1 for a byte a value may not hold: 0x00-0x08, 0x0A-0x1F, 0x7F


cdef void _init_tables() noexcept:
    cdef int c
    cdef const char* t = TCHAR
    for c in range(256):
        LOWER[c] = c + 32 if 65 <= c <= 90 else c
        VALUE_CTL[c] = (c < 0x20 and c != 0x09) or c == 0x7F
        NAME_LOWER[c] = 0
    while t[0] != 0:
        c = <unsigned char>t[0]
        NAME_LOWER[c] = LOWER[c]
        t += 1


_init_tables()


@cython.final
@cython.freelist(16)
cdef class HeliconeHeaders:
    def __cinit__(self):
        self.properties = {}
        self.extra = {}

    def __repr__(self):
        fields = [f"{attr}={getattr(self, attr)!r}" for attr in _HELICONE_ATTRS if getattr(self, attr) is not None]
        fields.append(f"properties={self.properties!r}")
        fields.append(f"extra={self.extra!r}")
        return f"HeliconeHeaders({', '.join(fields)})"


@cython.final
@cython.freelist(16)
cdef class ParsedHeaders:
    def __repr__(self):
        fields = ", ".join(f"{attr}={getattr(self, attr)!r}" for attr in _PARSED_ATTRS)
        return f"ParsedHeaders({fields})"


_HELICONE_ATTRS = (
    "auth", "request_id", "target_url", "user_id", "session_id", "session_path", "session_name",
    "omit_request", "omit_response", "cache_enabled", "cache_save", "cache_read",
    "cache_bucket_max_size", "cache_seed", "cache_ignore_keys", "ratelimit_policy", "retry_enabled",
    "retry_num", "retry_factor", "retry_min_timeout", "retry_max_timeout", "fallbacks",
)
_PARSED_ATTRS = (
    "helicone", "authorization", "api_key", "content_type", "content_length", "chunked",
    "expect_continue", "host", "forward",
)


def parse_headers(raw):
    """Parse a request's headers as received (names in any case). See ``headers.pyi``."""
    if type(raw) is not list:
        raw = list(raw)
    return _parse(<list>raw)


# ---------------------------------------------------------------------------------------------
# Byte-level helpers: no Python objects.

cdef inline bint _is(const unsigned char* p, const char* lit, Py_ssize_t n) noexcept nogil:
    return memcmp(p, lit, n) == 0


cdef inline bint _ieq(const unsigned char* p, Py_ssize_t n, const char* lit, Py_ssize_t ln) noexcept nogil:
    """p[:n] lower-cased equals the lower-case literal lit[:ln]."""
    cdef Py_ssize_t i
    if n != ln:
        return False
    for i in range(n):
        if LOWER[p[i]] != <unsigned char>lit[i]:
            return False
    return True


cdef inline bint _ows(unsigned char c) noexcept nogil:
    return c == 32 or c == 9  # SP, HTAB


cdef Kind _classify(const unsigned char* p, Py_ssize_t n) noexcept nogil:
    """The Kind of the lower-cased name p[:n]: switch on the length, then one memcmp."""
    if n == 2:
        if p[0] == b't' and p[1] == b'e':
            return K_DROP
    elif n == 4:
        if _is(p, b"host", 4):
            return K_HOST
    elif n == 6:
        if _is(p, b"expect", 6):
            return K_EXPECT
    elif n == 7:
        if _is(p, b"upgrade", 7) or _is(p, b"trailer", 7):
            return K_DROP
    elif n == 9:
        if _is(p, b"x-api-key", 9):
            return K_API_KEY
    elif n == 10:
        if _is(p, b"connection", 10):
            return K_CONNECTION
        if _is(p, b"keep-alive", 10):
            return K_DROP
    elif n == 12:
        if _is(p, b"content-type", 12):
            return K_CONTENT_TYPE
    elif n == 13:
        if _is(p, b"authorization", 13):
            return K_AUTHORIZATION
    elif n == 14:
        if _is(p, b"content-length", 14):
            return K_CONTENT_LENGTH
    elif n == 16:
        if _is(p, b"proxy-connection", 16):
            return K_DROP
    elif n == 17:
        if _is(p, b"transfer-encoding", 17):
            return K_TRANSFER_ENCODING
    elif n == 18:
        if _is(p, b"proxy-authenticate", 18):
            return K_DROP
    elif n == 19:
        if _is(p, b"proxy-authorization", 19):
            return K_DROP
    if n >= 9 and _is(p, b"helicone-", 9):
        return K_HELICONE
    return K_FORWARD


cdef bint _ends_chunked(const unsigned char* v, Py_ssize_t n) noexcept nogil:
    """The last comma-separated coding of v[:n], stripped and lower-cased, is "chunked"."""
    cdef Py_ssize_t start = n
    while start > 0 and v[start - 1] != b',':
        start -= 1
    while start < n and _ows(v[start]):
        start += 1
    while n > start and _ows(v[n - 1]):
        n -= 1
    return _ieq(v + start, n - start, b"chunked", 7)


cdef bint _needs_filter(const unsigned char* v, Py_ssize_t n) noexcept nogil:
    """A Connection value v[:n] lists a name that could be forwarded (so forward needs a filter)."""
    cdef unsigned char token[32]
    cdef Py_ssize_t i = 0, j, s, e, k
    cdef Kind kind
    while i <= n:
        j = i
        while j < n and v[j] != b',':
            j += 1
        s = i
        e = j
        while s < e and _ows(v[s]):
            s += 1
        while e > s and _ows(v[e - 1]):
            e -= 1
        if e - s > <Py_ssize_t>sizeof(token):
            return True  # longer than any name dropped anyway
        if e > s:
            for k in range(e - s):
                token[k] = LOWER[v[s + k]]
            kind = _classify(token, e - s)
            if kind == K_FORWARD or kind == K_CONTENT_TYPE:
                return True
        i = j + 1
    return False


cdef bint _listed(const unsigned char* name, Py_ssize_t n, const unsigned char* v, Py_ssize_t vn) noexcept nogil:
    """The lower-cased name[:n] is one of the comma-separated names of the Connection value v[:vn]."""
    cdef Py_ssize_t i = 0, j, s, e, k
    while i <= vn:
        j = i
        while j < vn and v[j] != b',':
            j += 1
        s = i
        e = j
        while s < e and _ows(v[s]):
            s += 1
        while e > s and _ows(v[e - 1]):
            e -= 1
        if e - s == n:
            k = 0
            while k < n and LOWER[v[s + k]] == name[k]:
                k += 1
            if k == n:
                return True
        i = j + 1
    return False


cdef Py_ssize_t _drop_listed(unsigned char* buf, Py_ssize_t end, list connection):
    """Remove from the forward lines buf[:end] those a Connection value names; the new end.

    A line is ``name: value\\r\\n``: the name holds no ":" and the value no "\\n", so the first
    ":" ends the name and the next "\\n" ends the line.
    """
    cdef Py_ssize_t r = 0, w = 0, name_len, line_end
    cdef const unsigned char* colon
    cdef const unsigned char* nl
    cdef bint drop
    cdef bytes value
    while r < end:
        colon = <const unsigned char*>memchr(buf + r, b':', end - r)
        nl = <const unsigned char*>memchr(colon, b'\n', buf + end - colon)
        name_len = colon - (buf + r)
        line_end = nl - buf + 1
        drop = False
        for value in connection:
            if _listed(buf + r, name_len, <const unsigned char*>PyBytes_AS_STRING(value), PyBytes_GET_SIZE(value)):
                drop = True
                break
        if not drop:
            if w != r:
                memmove(buf + w, buf + r, line_end - r)
            w += line_end - r
        r = line_end
    return w


# ---------------------------------------------------------------------------------------------
# Error paths and the few helpers that build Python objects.

cdef int _bad_name(bytes name, unsigned char c) except -1:
    raise HeaderError(f"invalid byte 0x{c:02x} in header name {name!r}")


cdef int _bad_value(bytes name, unsigned char c) except -1:
    raise HeaderError(f"invalid byte 0x{c:02x} in the value of header {name!r}")


cdef long long _content_length(const unsigned char* v, Py_ssize_t n, long long previous) except -2:
    """Content-Length v[:n] (stripped) as an int; ``previous`` is -1 or the value seen before."""
    cdef long long length = 0
    cdef unsigned char d
    cdef Py_ssize_t i
    if n == 0:
        raise HeaderError(f"invalid Content-Length: {PyBytes_FromStringAndSize(<const char*>v, n)!r}")
    for i in range(n):
        d = v[i] - 48  # wraps around for bytes below "0"
        if d > 9 or length > (INT64_MAX - d) // 10:
            raise HeaderError(f"invalid Content-Length: {PyBytes_FromStringAndSize(<const char*>v, n)!r}")
        length = length * 10 + d
    if previous >= 0 and previous != length:
        raise HeaderError(f"conflicting Content-Length values: {previous} and {length}")
    return length


cdef inline bytes _stripped(bytes value, const unsigned char* vp, Py_ssize_t vs, Py_ssize_t ve):
    """value[vs:ve], reusing value itself when nothing was stripped (as bytes.strip does)."""
    if vs == 0 and ve == PyBytes_GET_SIZE(value) and PyBytes_CheckExact(value):
        return value
    return PyBytes_FromStringAndSize(<const char*>vp + vs, ve - vs)


cdef str _text(const unsigned char* v, Py_ssize_t n, str latin1):
    """The free-text value v[:n] (a property, the user id, a session field): UTF-8 when it holds a
    byte over 0x7F and is valid UTF-8, else ``latin1``, its latin-1 decoding (ASCII, the common
    case, costs only the scan)."""
    cdef Py_ssize_t i
    for i in range(n):
        if v[i] >= 0x80:
            try:
                return PyUnicode_DecodeUTF8(<const char*>v, n, NULL)
            except UnicodeDecodeError:
                return latin1
    return latin1


cdef int _set_helicone(
    HeliconeHeaders h, const unsigned char* name, Py_ssize_t n, const unsigned char* v, Py_ssize_t vn
) except -1:
    """Store the value v[:vn] of the lower-cased helicone-* name[:n]."""
    cdef str value = PyUnicode_DecodeLatin1(<const char*>v, vn, NULL)
    cdef const unsigned char* s = name + 9  # after "helicone-"
    cdef Py_ssize_t sn = n - 9
    if sn == 4:
        if _is(s, b"auth", 4):
            h.auth = value
            return 0
    elif sn == 7:
        if _is(s, b"user-id", 7):
            h.user_id = _text(v, vn, value)
            return 0
    elif sn == 9:
        if _is(s, b"retry-num", 9):
            h.retry_num = value
            return 0
        if _is(s, b"fallbacks", 9):
            h.fallbacks = value
            return 0
    elif sn == 10:
        if _is(s, b"request-id", 10):
            h.request_id = value
            return 0
        if _is(s, b"target-url", 10):
            h.target_url = value
            return 0
        if _is(s, b"session-id", 10):
            h.session_id = _text(v, vn, value)
            return 0
        if _is(s, b"cache-save", 10):
            h.cache_save = value
            return 0
        if _is(s, b"cache-read", 10):
            h.cache_read = value
            return 0
        if _is(s, b"cache-seed", 10):
            h.cache_seed = value
            return 0
    elif sn == 12:
        if _is(s, b"session-path", 12):
            h.session_path = _text(v, vn, value)
            return 0
        if _is(s, b"session-name", 12):
            h.session_name = _text(v, vn, value)
            return 0
        if _is(s, b"omit-request", 12):
            h.omit_request = value
            return 0
        if _is(s, b"retry-factor", 12):
            h.retry_factor = value
            return 0
    elif sn == 13:
        if _is(s, b"omit-response", 13):
            h.omit_response = value
            return 0
        if _is(s, b"cache-enabled", 13):
            h.cache_enabled = value
            return 0
        if _is(s, b"retry-enabled", 13):
            h.retry_enabled = value
            return 0
    elif sn == 16:
        if _is(s, b"ratelimit-policy", 16):
            h.ratelimit_policy = value
            return 0
    elif sn == 17:
        if _is(s, b"cache-ignore-keys", 17):
            h.cache_ignore_keys = value
            return 0
        if _is(s, b"retry-min-timeout", 17):
            h.retry_min_timeout = value
            return 0
        if _is(s, b"retry-max-timeout", 17):
            h.retry_max_timeout = value
            return 0
    elif sn == 21:
        if _is(s, b"cache-bucket-max-size", 21):
            h.cache_bucket_max_size = value
            return 0
    if sn > 9 and _is(s, b"property-", 9):
        h.properties[PyUnicode_DecodeLatin1(<const char*>s + 9, sn - 9, NULL)] = _text(v, vn, value)
    else:
        h.extra[PyUnicode_DecodeLatin1(<const char*>name, n, NULL)] = value
    return 0


cdef list _normalise(list raw):
    """raw as a list of (bytes, bytes) tuples; TypeError/ValueError when it cannot be one."""
    cdef list out = []
    for item in raw:
        name, value = item
        if not PyBytes_Check(name) or not PyBytes_Check(value):
            raise TypeError(f"header names and values must be bytes, not {type(name).__name__} and {type(value).__name__}")
        out.append((name, value))
    return out


# ---------------------------------------------------------------------------------------------
# The pass.

cdef ParsedHeaders _parse(list raw):
    cdef unsigned char stack_buffer[STACK_BUFFER]
    cdef unsigned char* buf = stack_buffer
    cdef Py_ssize_t cap = 0, i, n = len(raw)
    cdef object item
    cdef tuple pair
    for i in range(n):
        item = raw[i]
        if (
            type(item) is not tuple
            or len(<tuple>item) != 2
            or not PyBytes_Check((<tuple>item)[0])
            or not PyBytes_Check((<tuple>item)[1])
        ):
            raw = _normalise(raw)
            break
    for i in range(n):
        pair = <tuple>raw[i]
        # Every header, forwarded or not, is lower-cased into the buffer: "name: value\r\n".
        cap += PyBytes_GET_SIZE(pair[0]) + PyBytes_GET_SIZE(pair[1]) + 4
    if cap > STACK_BUFFER:
        buf = <unsigned char*>PyMem_Malloc(cap)
        if buf == NULL:
            raise MemoryError()
    try:
        return _parse_into(raw, n, buf)
    finally:
        if buf != stack_buffer:
            PyMem_Free(buf)


cdef ParsedHeaders _parse_into(list raw, Py_ssize_t n, unsigned char* buf):
    cdef HeliconeHeaders helicone = HeliconeHeaders.__new__(HeliconeHeaders)
    cdef ParsedHeaders result = ParsedHeaders.__new__(ParsedHeaders)
    cdef list connection = None  # the Connection values that name forwardable headers
    cdef long long content_length = -1
    cdef bint chunked = False
    cdef Py_ssize_t i, j, nlen, vlen, vs, ve, pos = 0
    cdef const unsigned char* np
    cdef const unsigned char* vp
    cdef unsigned char* out
    cdef unsigned char c
    cdef tuple pair
    cdef bytes name, value
    cdef Kind kind

    for i in range(n):
        pair = <tuple>raw[i]
        name = <bytes>pair[0]
        value = <bytes>pair[1]
        np = <const unsigned char*>PyBytes_AS_STRING(name)
        nlen = PyBytes_GET_SIZE(name)
        vp = <const unsigned char*>PyBytes_AS_STRING(value)
        vlen = PyBytes_GET_SIZE(value)

        # The name: validate and lower-case into the buffer in one table lookup per byte.
        if nlen == 0:
            raise HeaderError("empty header name")
        out = buf + pos
        for j in range(nlen):
            c = NAME_LOWER[np[j]]
            if c == 0:
                _bad_name(name, np[j])
            out[j] = c
        # The value: validate, then strip spaces and tabs.
        for j in range(vlen):
            if VALUE_CTL[vp[j]]:
                _bad_value(name, vp[j])
        vs = 0
        ve = vlen
        while vs < ve and _ows(vp[vs]):
            vs += 1
        while ve > vs and _ows(vp[ve - 1]):
            ve -= 1

        kind = _classify(out, nlen)
        if kind == K_FORWARD or kind == K_CONTENT_TYPE:
            if kind == K_CONTENT_TYPE:
                result.content_type = _stripped(value, vp, vs, ve)
            out += nlen
            out[0] = b':'
            out[1] = b' '
            memcpy(out + 2, vp + vs, ve - vs)
            out += 2 + ve - vs
            out[0] = b'\r'
            out[1] = b'\n'
            pos += nlen + 4 + ve - vs
        elif kind == K_HELICONE:
            _set_helicone(helicone, out, nlen, vp + vs, ve - vs)
        elif kind == K_AUTHORIZATION:
            result.authorization = _stripped(value, vp, vs, ve)
        elif kind == K_HOST:
            result.host = _stripped(value, vp, vs, ve)
        elif kind == K_API_KEY:
            result.api_key = _stripped(value, vp, vs, ve)
        elif kind == K_CONTENT_LENGTH:
            content_length = _content_length(vp + vs, ve - vs, content_length)
        elif kind == K_TRANSFER_ENCODING:
            chunked = _ends_chunked(vp + vs, ve - vs)
        elif kind == K_EXPECT:
            result.expect_continue = _ieq(vp + vs, ve - vs, b"100-continue", 12)
        elif kind == K_CONNECTION:
            if _needs_filter(vp + vs, ve - vs):
                if connection is None:
                    connection = [value]
                else:
                    connection.append(value)
        # K_DROP: nothing

    if chunked and content_length >= 0:
        raise HeaderError("both Content-Length and chunked Transfer-Encoding")
    if connection is not None:
        pos = _drop_listed(buf, pos, connection)

    result.helicone = helicone
    result.content_length = content_length
    result.chunked = chunked
    result.forward = PyBytes_FromStringAndSize(<const char*>buf, pos)
    return result
