# The log record packed for the ring, compiled (contract: recordwire.pyi; pure twin and the byte
# layout: _pure/recordwire.py). The worker calls pack_request once a request; the exporter calls
# unpack_meta once a record. Strings are copied straight from the str objects' UTF-8 (for ASCII,
# CPython's own buffer), so a request whose strings are ASCII allocates one bytes object here.
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.unicode cimport PyUnicode_DecodeLatin1, PyUnicode_DecodeUTF8
from libc.stdint cimport int64_t, uint32_t, uint64_t
from libc.string cimport memchr, memcmp, memcpy

import orjson

cdef extern from "Python.h":
    const char* PyUnicode_AsUTF8AndSize(object s, Py_ssize_t* size) except NULL
    dict _PyDict_NewPresized(Py_ssize_t minused)  # what Cython itself calls for a large dict literal

cdef extern from "string.h":
    void* memmem(const void* haystack, size_t n, const void* needle, size_t m) nogil

# The flag bits (the pure twin's and the .pyi's names, without the F_).
cdef enum:
    F_CLIENT_LEFT = 1
    F_USAGE_INJECTED = 2
    F_OMIT_REQUEST = 4
    F_OMIT_RESPONSE = 8
    F_REQUEST_TRUNCATED = 16
    F_RESPONSE_TRUNCATED = 32
    F_HAS_KEY_ID = 64
    F_HAS_TARGET_MODEL = 128

cdef uint32_t F_BINARY = 0x80000000u

BINARY = F_BINARY
CLIENT_LEFT = F_CLIENT_LEFT
USAGE_INJECTED = F_USAGE_INJECTED
OMIT_REQUEST = F_OMIT_REQUEST
OMIT_RESPONSE = F_OMIT_RESPONSE
REQUEST_TRUNCATED = F_REQUEST_TRUNCATED
RESPONSE_TRUNCATED = F_RESPONSE_TRUNCATED
HAS_KEY_ID = F_HAS_KEY_ID
HAS_TARGET_MODEL = F_HAS_TARGET_MODEL
STRINGS = (
    "request_id", "method", "path", "provider", "format", "target_url", "error_type", "error_message",
    "user_id", "session_id", "session_path", "session_name", "response_content_type", "request_headers",
    "cache_status", "key_id", "target_model", "hidden_usage", "properties", "attempts",
)

cdef enum:
    NSTR = 20
    FIXED_SIZE = 5 * 8 + 4 * 4 + 4  # i64 x5, i32 x4, u32 flags
    LENGTHS_SIZE = 12
    ROW_ROOM = 56  # entries an unpacked record's dict has room for: its ~39 and the row's ~13 more

cdef struct Piece:
    const char* p
    Py_ssize_t n


cdef inline void _put_u32(char* at, uint32_t v) noexcept nogil:
    at[0] = <char>(v & 0xFF)
    at[1] = <char>((v >> 8) & 0xFF)
    at[2] = <char>((v >> 16) & 0xFF)
    at[3] = <char>((v >> 24) & 0xFF)


cdef inline void _put_u64(char* at, uint64_t v) noexcept nogil:
    cdef int i
    for i in range(8):
        at[i] = <char>((v >> (8 * i)) & 0xFF)


cdef inline uint32_t _get_u32(const unsigned char* at) noexcept nogil:
    return <uint32_t>at[0] | (<uint32_t>at[1] << 8) | (<uint32_t>at[2] << 16) | (<uint32_t>at[3] << 24)


cdef inline uint64_t _get_u64(const unsigned char* at) noexcept nogil:
    cdef uint64_t v = 0
    cdef int i
    for i in range(8):
        v |= (<uint64_t>at[i]) << (8 * i)
    return v


cdef inline int64_t _us(int64_t ns) noexcept nogil:
    """ns // 1000 with Python's floor division, so both twins agree on a negative span."""
    cdef int64_t q = ns / 1000
    if ns % 1000 != 0 and ns < 0:
        q -= 1
    return q


cdef int _text(Piece* out, object s, list keep) except -1:
    if s is None or not s:
        out.n = 0
        out.p = NULL
        return 0
    try:
        out.p = PyUnicode_AsUTF8AndSize(s, &out.n)
    except UnicodeEncodeError:  # a lone surrogate: kept as '?', never a lost record
        b = (<str>s).encode("utf-8", "replace")
        keep.append(b)
        out.p = PyBytes_AS_STRING(b)
        out.n = PyBytes_GET_SIZE(b)
    return 0


cdef inline void _raw(Piece* out, bytes b) noexcept:
    out.p = PyBytes_AS_STRING(b)
    out.n = PyBytes_GET_SIZE(b)


cdef inline bint _true(object value):
    return value is not None and (<str>value).lower() == "true"


def contains_any(bytes data not None, tuple needles not None):
    cdef object needle
    cdef const char* p = PyBytes_AS_STRING(data)
    cdef Py_ssize_t n = PyBytes_GET_SIZE(data)
    for needle in needles:  # exact bytes only: a None would pass a `cdef bytes` and be read as bytes
        if type(needle) is not bytes:
            raise TypeError(f"needles must be bytes, not {type(needle).__name__}")
    for needle in needles:
        if memmem(p, n, PyBytes_AS_STRING(<bytes>needle), PyBytes_GET_SIZE(<bytes>needle)) != NULL:
            return True
    return False


def header_value(bytes block not None, bytes name not None):
    """The value of the first ``name:`` line of a header block; see recordwire.pyi."""
    cdef const unsigned char* p = <const unsigned char*>PyBytes_AS_STRING(block)
    cdef const unsigned char* q = <const unsigned char*>PyBytes_AS_STRING(name)
    cdef const unsigned char* nl
    cdef Py_ssize_t n = PyBytes_GET_SIZE(block), k = PyBytes_GET_SIZE(name)
    cdef Py_ssize_t start = 0, end, i, a, b
    cdef unsigned char c
    while start <= n:
        nl = <const unsigned char*>memchr(p + start, 10, <size_t>(n - start))
        end = (nl - p) if nl != NULL else n
        if end - start > k and p[start + k] == 58:  # ':'
            i = 0
            while i < k:
                c = p[start + i]
                if 65 <= c <= 90:  # ASCII upper case, as bytes.lower()
                    c += 32
                if c != q[i]:
                    break
                i += 1
            if i == k:
                a, b = start + k + 1, end
                if b > a and p[b - 1] == 13:
                    b -= 1
                while a < b and (p[a] == 32 or p[a] == 9):
                    a += 1
                while b > a and (p[b - 1] == 32 or p[b - 1] == 9):
                    b -= 1
                return PyUnicode_DecodeLatin1(<const char*>p + a, b - a, NULL)
        start = end + 1
    return ""


cdef inline Py_ssize_t _skip_ws(const char* p, Py_ssize_t i, Py_ssize_t n) noexcept nogil:
    while i < n and (p[i] == 32 or p[i] == 9 or p[i] == 13 or p[i] == 10):
        i += 1
    return i


cdef Py_ssize_t _string_end(const char* p, Py_ssize_t i, Py_ssize_t n, bint* escaped) noexcept nogil:
    """``p[i]`` opens a JSON string: the index of its closing quote, or -1 when the text ends first.
    Sets ``escaped`` when a backslash occurs inside a closed string."""
    cdef const char* q
    cdef Py_ssize_t j = i + 1, k, b
    while True:
        q = <const char*>memchr(p + j, 34, <size_t>(n - j))
        if q == NULL:
            return -1
        k = q - p
        b = k - 1
        while b > i and p[b] == 92:
            b -= 1
        if (k - 1 - b) % 2 == 0:  # an even run of backslashes before it: the quote closes the string
            if memchr(p + i + 1, 92, <size_t>(k - i - 1)) != NULL:
                escaped[0] = True
            return k
        j = k + 1


def top_level_model(object body):
    """The top-level "model" of a JSON object's text, by a scan; None when unsure (recordwire.pyi)."""
    cdef const char* p
    cdef Py_ssize_t n, i = 1, j, end, vstart = -1, vend = -1, depth = 1
    cdef int found = 0
    cdef bint escaped, expect_key = True
    cdef char c
    cdef char closers[256]
    if isinstance(body, bytes):
        p = PyBytes_AS_STRING(body)
        n = PyBytes_GET_SIZE(body)
    elif isinstance(body, str):
        p = PyUnicode_AsUTF8AndSize(body, &n)
    else:
        raise TypeError(f"top_level_model takes bytes or str, not {type(body).__name__}")
    if n == 0 or p[0] != 123:  # "{"
        return ""
    closers[0] = 125
    while i < n:
        c = p[i]
        if c == 34:  # a string: skipped whole, or a top-level key
            escaped = False
            end = _string_end(p, i, n, &escaped)
            if end < 0:
                return None
            if depth == 1 and expect_key:
                expect_key = False
                if escaped:
                    return None  # "mod\u0065l" is "model" too
                if end - i - 1 == 5 and memcmp(p + i + 1, b"model", 5) == 0:
                    j = _skip_ws(p, end + 1, n)
                    if j >= n or p[j] != 58:  # ":"
                        return None
                    j = _skip_ws(p, j + 1, n)
                    found += 1
                    vstart = -1
                    if j < n and p[j] == 34:
                        escaped = False
                        vend = _string_end(p, j, n, &escaped)
                        if vend < 0 or escaped:
                            return None
                        vstart = j + 1
                        i = vend + 1
                    else:
                        i = j  # another type: the loop goes through it
                    continue
            i = end + 1
            continue
        if c == 123 or c == 91:  # { [
            if depth >= 255:
                return None
            closers[depth] = 125 if c == 123 else 93
            depth += 1
        elif c == 125 or c == 93:  # } ]
            depth -= 1
            if c != closers[depth]:
                return None
            if depth == 0:
                if _skip_ws(p, i + 1, n) != n:
                    return None
                break
        elif c == 44 and depth == 1:  # ","
            expect_key = True
        i += 1
    if depth != 0 or found > 1:
        return None
    if vstart < 0:
        return ""
    try:
        return PyUnicode_DecodeUTF8(p + vstart, vend - vstart, NULL)
    except UnicodeDecodeError:
        return None


def pack_request(
    ctx, int status, str error_type, str error_message, bytes path not None, str target_url, bytes headers not None,
    bytes request_body not None, bint request_truncated, bytes response_body not None, bint response_truncated,
    str content_type, long long t_first_byte, bint client_left, bint omit_request, bint omit_response,
    int worker, long long now,
):
    cdef Piece s[NSTR]
    cdef list keep = []
    cdef uint32_t flags = 0
    cdef long long t_start = ctx.t_start
    cdef long long upstream_ns = ctx.upstream_ns
    cdef Py_ssize_t total, meta_n, i
    cdef char* out
    cdef char* at
    h = ctx.headers.helicone
    provider = ctx.provider
    principal = ctx.principal
    model_override = ctx.model_override
    if client_left:
        flags |= F_CLIENT_LEFT
    if ctx.usage_injected:
        flags |= F_USAGE_INJECTED
    if omit_request or _true(h.omit_request):
        flags |= F_OMIT_REQUEST
    if omit_response or _true(h.omit_response):
        flags |= F_OMIT_RESPONSE
    if request_truncated:
        flags |= F_REQUEST_TRUNCATED
    if response_truncated:
        flags |= F_RESPONSE_TRUNCATED
    if principal is not None:
        flags |= F_HAS_KEY_ID
    if model_override is not None:
        flags |= F_HAS_TARGET_MODEL
    properties = h.properties
    attempts = ctx.attempts
    # In STRINGS order: bytes go as they are, str as UTF-8. The tuple holds a reference to every
    # value until the copy, whoever else owns it.
    values = (
        ctx.request_id, ctx.method, path,
        provider.name if provider is not None else None,
        # A unified-API answer reached the client in OpenAI's format, whatever the provider's.
        ("openai" if ctx.unified is not None else provider.format.name) if provider is not None else None,
        target_url, error_type, error_message, h.user_id, h.session_id, h.session_path, h.session_name,
        content_type, headers, ctx.cache_status, principal.key_id if principal is not None else None,
        model_override, ctx.hidden_usage,
        orjson.dumps(properties) if properties else None, orjson.dumps(attempts) if attempts else None,
    )
    for i in range(NSTR):
        value = values[i]
        if type(value) is bytes:
            _raw(&s[i], value)
        else:
            _text(&s[i], value, keep)

    meta_n = FIXED_SIZE + 4 * NSTR
    for i in range(NSTR):
        meta_n += s[i].n
    n_request = PyBytes_GET_SIZE(request_body)
    n_response = PyBytes_GET_SIZE(response_body)
    total = LENGTHS_SIZE + meta_n + n_request + n_response
    result = PyBytes_FromStringAndSize(NULL, total)
    out = PyBytes_AS_STRING(result)
    _put_u32(out, <uint32_t>meta_n | F_BINARY)
    _put_u32(out + 4, <uint32_t>n_request)
    _put_u32(out + 8, <uint32_t>n_response)
    at = out + LENGTHS_SIZE
    _put_u64(at, <uint64_t><int64_t>ctx.created_ms)
    _put_u64(at + 8, <uint64_t>_us(now - t_start))
    _put_u64(at + 16, <uint64_t>(_us(t_first_byte - t_start) if t_first_byte else 0))
    _put_u64(at + 24, <uint64_t>_us(upstream_ns))
    _put_u64(at + 32, <uint64_t>_us((t_first_byte if t_first_byte else now) - t_start - upstream_ns))
    _put_u32(at + 40, <uint32_t>status)
    _put_u32(at + 44, <uint32_t>worker)
    _put_u32(at + 48, <uint32_t><int>ctx.retry_count)
    _put_u32(at + 52, <uint32_t><int>ctx.fallback_index)
    _put_u32(at + 56, flags)
    at += FIXED_SIZE
    for i in range(NSTR):
        _put_u32(at, <uint32_t>s[i].n)
        at += 4
        if s[i].n:
            memcpy(at, s[i].p, s[i].n)
            at += s[i].n
    if n_request:
        memcpy(at, PyBytes_AS_STRING(request_body), n_request)
        at += n_request
    if n_response:
        memcpy(at, PyBytes_AS_STRING(response_body), n_response)
    return result


cdef dict _header_lines(const char* p, Py_ssize_t n):
    """``name: value`` lines (latin-1, CRLF-separated) as a dict: a line without ": " is skipped."""
    cdef dict out = {}
    cdef Py_ssize_t start = 0, end, sep
    while start <= n:
        end = start
        while end < n and not (p[end] == 13 and end + 1 < n and p[end + 1] == 10):
            end += 1
        sep = start
        while sep + 1 < end and not (p[sep] == 58 and p[sep + 1] == 32):  # ": "
            sep += 1
        if sep + 1 < end:
            out[PyUnicode_DecodeLatin1(p + start, sep - start, NULL)] = PyUnicode_DecodeLatin1(p + sep + 2, end - sep - 2, NULL)
        start = end + 2
    return out


cdef inline int64_t _i32(const unsigned char* at) noexcept nogil:
    return <int64_t>(<int>_get_u32(at))


def unpack_meta(bytes raw not None, Py_ssize_t start, Py_ssize_t n):
    cdef const unsigned char* p
    cdef Py_ssize_t at, end, i
    cdef uint32_t length, flags
    cdef Piece s[NSTR]
    if start < 0 or n < 0 or start > PyBytes_GET_SIZE(raw) or n > PyBytes_GET_SIZE(raw) - start:
        raise ValueError("binary record meta is cut short")
    if n < FIXED_SIZE:
        raise ValueError("binary record meta is cut short")
    p = <const unsigned char*>PyBytes_AS_STRING(raw) + start
    end = n
    at = FIXED_SIZE
    for i in range(NSTR):
        if at + 4 > end:
            raise ValueError("binary record meta is cut short")
        length = _get_u32(p + at)
        at += 4
        if at + length > end:
            raise ValueError("binary record meta is cut short")
        s[i].p = <const char*>(p + at)
        s[i].n = length
        at += length
    flags = _get_u32(p + 56)
    retry_count = _i32(p + 48)
    fallback_index = _i32(p + 52)
    # Room for the row the exporter makes of this dict in place (enrich.Enricher.row_of adds a
    # dozen fields and drops a few): a dict literal is sized for its own entries, and the row
    # then grew it once more, rehashing every key (~2,800 instructions a record by callgrind,
    # benchmarks/micro/bench_exporter_instructions.py).
    cdef dict record = _PyDict_NewPresized(ROW_ROOM)
    record["kind"] = "request"
    record["request_id"] = PyUnicode_DecodeUTF8(s[0].p, s[0].n, NULL)
    record["created_at_ms"] = <int64_t>_get_u64(p)
    record["total_us"] = <int64_t>_get_u64(p + 8)
    record["ttfb_us"] = <int64_t>_get_u64(p + 16)
    record["upstream_us"] = <int64_t>_get_u64(p + 24)
    record["gateway_us"] = <int64_t>_get_u64(p + 32)
    record["method"] = PyUnicode_DecodeLatin1(s[1].p, s[1].n, NULL)
    record["path"] = PyUnicode_DecodeLatin1(s[2].p, s[2].n, NULL)
    record["provider"] = PyUnicode_DecodeUTF8(s[3].p, s[3].n, NULL)
    record["format"] = PyUnicode_DecodeUTF8(s[4].p, s[4].n, NULL)
    record["target_url"] = PyUnicode_DecodeUTF8(s[5].p, s[5].n, NULL)
    record["status"] = _i32(p + 40)
    record["error_type"] = PyUnicode_DecodeUTF8(s[6].p, s[6].n, NULL)
    record["error_message"] = PyUnicode_DecodeUTF8(s[7].p, s[7].n, NULL)
    record["client_left"] = bool(flags & F_CLIENT_LEFT)
    record["usage_injected"] = bool(flags & F_USAGE_INJECTED)
    record["user_id"] = PyUnicode_DecodeUTF8(s[8].p, s[8].n, NULL)
    record["properties"] = orjson.loads(PyBytes_FromStringAndSize(s[18].p, s[18].n)) if s[18].n else {}
    record["session_id"] = PyUnicode_DecodeUTF8(s[9].p, s[9].n, NULL)
    record["session_path"] = PyUnicode_DecodeUTF8(s[10].p, s[10].n, NULL)
    record["session_name"] = PyUnicode_DecodeUTF8(s[11].p, s[11].n, NULL)
    record["omit_request"] = bool(flags & F_OMIT_REQUEST)
    record["omit_response"] = bool(flags & F_OMIT_RESPONSE)
    record["request_truncated"] = bool(flags & F_REQUEST_TRUNCATED)
    record["response_truncated"] = bool(flags & F_RESPONSE_TRUNCATED)
    record["response_content_type"] = PyUnicode_DecodeUTF8(s[12].p, s[12].n, NULL)
    record["request_headers"] = _header_lines(s[13].p, s[13].n)
    record["worker"] = _i32(p + 44)
    if s[14].n:
        record["cache_status"] = PyUnicode_DecodeUTF8(s[14].p, s[14].n, NULL)
    if retry_count:
        record["retry_count"] = retry_count
    if fallback_index >= 0:
        record["fallback_index"] = fallback_index
    if s[19].n:
        record["attempts"] = orjson.loads(PyBytes_FromStringAndSize(s[19].p, s[19].n))
    if flags & F_HAS_KEY_ID:
        record["key_id"] = PyUnicode_DecodeUTF8(s[15].p, s[15].n, NULL)
    if flags & F_HAS_TARGET_MODEL:
        record["target_model"] = PyUnicode_DecodeUTF8(s[16].p, s[16].n, NULL)
    if s[17].n:
        record["hidden_usage"] = PyUnicode_DecodeUTF8(s[17].p, s[17].n, "replace")
    return record
