# cython: language_level=3
"""The cache key of a request, in C (contract and canonical form: cachekey.pyi; twin: _pure/cachekey.py).

Why C: every cacheable request is keyed before the cache is asked, so canonicalising its body
sits on the request path, and the body can be large (100 KB of chat history is ordinary). Here
the body is walked once by a recursive-descent tokenizer over its raw bytes, with no Python
object built: each token is re-emitted canonically into one output buffer, after the framed
fields, and the whole goes to XXH3-128 in one call. The buffer is needed anyway to put members
in order; against the streaming API (reset, an update per field, digest) one call measured
~40 ns faster per key up to 1 KB and the same within noise at 100 KB.

Inside strings, runs that are their own canonical form (printable ASCII, well-formed UTF-8, the
short escapes but \\/) are found 8 bytes at a time and copied with one memcpy.

Objects are written in input order first, each member's offsets kept on a stack; when an
object's members turn out not to be sorted (or one is a duplicate or an ignored key) they are
merge-sorted by their decoded key bytes and copied back in order through a scratch buffer, so
a byte is moved once per enclosing object that needed it; a sorted object costs one key
comparison per member.

The canonical text is never longer than the input it came from (whitespace is dropped, every
escape's canonical form is at most as long as what it replaces, members are only removed), so
once ``out`` and ``scratch`` hold as many bytes as the body, no write needs a bounds check.
Nesting is capped at MAX_DEPTH, which also bounds the C recursion.
"""
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_Check, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.mem cimport PyMem_RawFree, PyMem_RawMalloc, PyMem_RawRealloc
from libc.stdint cimport uint64_t
from libc.string cimport memcmp, memcpy

__all__ = ["FORMAT", "MAX_DEPTH", "cache_key", "canonical_json"]

cdef extern from *:
    """
    #define XXH_INLINE_ALL
    #include <xxhash.h>
    #include <stdint.h>
    /* The index of the first byte in memory whose top bit is set in a word loaded from it. */
    static inline Py_ssize_t fgw_first_flagged(uint64_t flags) {
    #if defined(__GNUC__) && defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
        return __builtin_ctzll(flags) >> 3;
    #else
        (void)flags;
        return 0;  /* the caller's byte loop finds it: the flags are exact only on little-endian */
    #endif
    }
    """
    ctypedef struct XXH128_hash_t:
        unsigned long long low64
        unsigned long long high64
    ctypedef struct XXH128_canonical_t:
        unsigned char digest[16]
    XXH128_hash_t XXH3_128bits(const void* data, size_t length) noexcept nogil
    void XXH128_canonicalFromHash(XXH128_canonical_t* dst, XXH128_hash_t h) noexcept nogil
    Py_ssize_t fgw_first_flagged(uint64_t flags) noexcept nogil

FORMAT = b"fastgw.cachekey.v1\x00"
MAX_DEPTH = C_MAX_DEPTH

cdef enum:
    STACK_BUFFER = 4096  # bytes of output (and of scratch) kept on the stack before the heap
    STACK_MEMBERS = 64  # member slots on the stack; a capacity of exactly this means "not heap"
    STACK_ORDER = 2 * STACK_MEMBERS
    STACK_SPANS = 16

cdef bytes C_FORMAT = FORMAT
cdef const char* HEX_DIGITS = b"0123456789abcdef"
cdef uint64_t ONES = 0x0101010101010101  # times a byte: that byte in all eight lanes
cdef uint64_t HIGHS = 0x8080808080808080

# The lookup tables, filled once at import by _init_tables().
cdef unsigned char PLAIN[256]  # 1 for a byte copied as is inside a string: 0x20-0x7F but " and \
cdef unsigned char WS[256]  # 1 for JSON whitespace: SP, HTAB, LF, CR
cdef unsigned char HEX[256]  # a hex digit's value; 16 for any other byte
cdef unsigned char UNESCAPE[256]  # the letter after a backslash -> the byte it stands for; 0: none
cdef unsigned char SHORT[32]  # a control byte -> the letter of its short escape; 0: use \u00xx
cdef unsigned char KEPT[256]  # 1 for the letter of an escape written as it came: " \ b f n r t


cdef void _init_tables() noexcept:
    cdef int b
    for b in range(256):
        PLAIN[b] = 0x20 <= b < 0x80 and b != 0x22 and b != 0x5C
        WS[b] = b == 0x20 or b == 0x09 or b == 0x0A or b == 0x0D
        HEX[b] = 16
        UNESCAPE[b] = 0
        KEPT[b] = 0
    for b in range(10):
        HEX[48 + b] = b
    for b in range(6):
        HEX[65 + b] = 10 + b
        HEX[97 + b] = 10 + b
    for b in range(32):
        SHORT[b] = 0
    UNESCAPE[b'"'] = b'"'
    UNESCAPE[b'\\'] = b'\\'
    UNESCAPE[b'/'] = b'/'
    UNESCAPE[b'b'] = 0x08
    UNESCAPE[b'f'] = 0x0C
    UNESCAPE[b'n'] = 0x0A
    UNESCAPE[b'r'] = 0x0D
    UNESCAPE[b't'] = 0x09
    SHORT[0x08] = b'b'
    SHORT[0x0C] = b'f'
    SHORT[0x0A] = b'n'
    SHORT[0x0D] = b'r'
    SHORT[0x09] = b't'
    for b in b'"\\bfnrt':
        KEPT[b] = 1


_init_tables()


# ---------------------------------------------------------------------------------------------
# Python-facing functions.

def canonical_json(bytes body not None, tuple ignore_keys not None):
    """The canonical text of ``body``, or None when it is not JSON. See ``cachekey.pyi``."""
    cdef unsigned char stack[STACK_BUFFER]
    cdef Py_ssize_t size = PyBytes_GET_SIZE(body), n
    cdef unsigned char* out = stack
    if size > STACK_BUFFER:
        out = <unsigned char*>PyMem_RawMalloc(size)
        if out == NULL:
            raise MemoryError()
    try:
        n = _run(body, ignore_keys, out)
        return None if n < 0 else PyBytes_FromStringAndSize(<const char*>out, n)
    finally:
        if out != stack:
            PyMem_RawFree(out)


def cache_key(
    bytes seed not None,
    bytes provider not None,
    bytes target not None,
    bytes path not None,
    bytes body not None,
    tuple ignore_keys not None,
    bytes credential not None,
):
    """The 16-byte XXH3-128 digest of the request's key stream. See ``cachekey.pyi``."""
    cdef unsigned char stack[STACK_BUFFER]
    cdef unsigned char* buf = stack
    cdef tuple fields = (seed, provider, target, path, credential)
    cdef Py_ssize_t size = PyBytes_GET_SIZE(body), head = PyBytes_GET_SIZE(C_FORMAT) + 1, n
    cdef XXH128_canonical_t digest
    cdef bytes field
    for field in fields:
        head += 8 + PyBytes_GET_SIZE(field)
    if head + size > STACK_BUFFER:
        buf = <unsigned char*>PyMem_RawMalloc(head + size)
        if buf == NULL:
            raise MemoryError()
    try:
        n = PyBytes_GET_SIZE(C_FORMAT)
        memcpy(buf, PyBytes_AS_STRING(C_FORMAT), n)
        for field in fields:
            n = _frame(buf, n, field)
        n = _run(body, ignore_keys, buf + head)
        if n >= 0:
            buf[head - 1] = b'J'
        else:
            buf[head - 1] = b'R'
            memcpy(buf + head, PyBytes_AS_STRING(body), size)
            n = size
        XXH128_canonicalFromHash(&digest, XXH3_128bits(buf, head + n))
        return PyBytes_FromStringAndSize(<const char*>digest.digest, 16)
    finally:
        if buf != stack:
            PyMem_RawFree(buf)


# ---------------------------------------------------------------------------------------------
# The few helpers that touch Python objects.

cdef Py_ssize_t _frame(unsigned char* buf, Py_ssize_t at, bytes field) noexcept:
    """Write field as its length (8 bytes, little-endian) then its bytes; the new end."""
    cdef Py_ssize_t n = PyBytes_GET_SIZE(field), i
    for i in range(8):
        buf[at + i] = (<unsigned long long>n >> (8 * i)) & 0xFF
    memcpy(buf + at + 8, PyBytes_AS_STRING(field), n)
    return at + 8 + n


cdef Py_ssize_t _run(bytes body, tuple ignore_keys, unsigned char* out) except -2:
    """Canonicalise body into out (which holds len(body) bytes); the length, -1 when not JSON."""
    cdef Member members[STACK_MEMBERS]
    cdef Py_ssize_t order[STACK_ORDER]
    cdef unsigned char scratch[STACK_BUFFER]
    cdef Span spans_stack[STACK_SPANS]
    cdef Span* spans = spans_stack
    cdef Py_ssize_t n_ignore = len(ignore_keys), i, n
    cdef Canon c
    for key in ignore_keys:
        if not PyBytes_Check(key):
            raise TypeError(f"ignore keys must be bytes, not {type(key).__name__}")
    if n_ignore > STACK_SPANS:
        spans = <Span*>PyMem_RawMalloc(n_ignore * sizeof(Span))
        if spans == NULL:
            raise MemoryError()
    for i in range(n_ignore):
        spans[i].p = <const unsigned char*>PyBytes_AS_STRING(ignore_keys[i])
        spans[i].n = PyBytes_GET_SIZE(ignore_keys[i])
    c.src = <const unsigned char*>PyBytes_AS_STRING(body)
    c.size = PyBytes_GET_SIZE(body)
    c.pos = 0
    c.out = out
    c.len = 0
    c.scratch = NULL
    if c.size <= STACK_BUFFER:
        c.scratch = scratch
    c.members = members
    c.n_members = 0
    c.cap_members = STACK_MEMBERS
    c.order = order
    c.cap_order = STACK_ORDER
    c.ignore = spans
    c.n_ignore = n_ignore
    c.escaped = False
    c.nomem = False
    n = canonicalise(&c)
    if c.scratch != scratch:
        PyMem_RawFree(c.scratch)
    if c.cap_members != STACK_MEMBERS:
        PyMem_RawFree(c.members)
    if c.cap_order != STACK_ORDER:
        PyMem_RawFree(c.order)
    if spans != spans_stack:
        PyMem_RawFree(spans)
    if c.nomem:
        raise MemoryError()
    return n


# ---------------------------------------------------------------------------------------------
# The canonicaliser: no Python objects from here on. Each step returns 0, or -1 when the input
# is not JSON (or, with c.nomem set, when memory ran out).

cdef Py_ssize_t canonicalise(Canon* c) noexcept nogil:
    """The length of src's canonical text, written to out; -1 when src is not one JSON value."""
    _skip(c)
    if _value(c, 0) < 0:
        return -1
    _skip(c)
    return c.len if c.pos == c.size else -1


cdef inline void _skip(Canon* c) noexcept nogil:
    cdef Py_ssize_t pos = c.pos
    while pos < c.size and WS[c.src[pos]]:
        pos += 1
    c.pos = pos


cdef int _value(Canon* c, int depth) noexcept nogil:
    cdef unsigned char ch
    if c.pos >= c.size:
        return -1
    ch = c.src[c.pos]
    if ch == b'"':
        return _string(c)
    if ch == b'{':
        return _object(c, depth + 1)
    if ch == b'[':
        return _array(c, depth + 1)
    if ch == b'-' or <unsigned char>(ch - 48) < 10:
        return _number(c)
    if ch == b't':
        return _literal(c, b"true", 4)
    if ch == b'f':
        return _literal(c, b"false", 5)
    if ch == b'n':
        return _literal(c, b"null", 4)
    return -1


cdef int _literal(Canon* c, const char* word, Py_ssize_t n) noexcept nogil:
    if c.size - c.pos < n or memcmp(c.src + c.pos, word, n) != 0:
        return -1
    memcpy(c.out + c.len, word, n)
    c.pos += n
    c.len += n
    return 0


cdef inline Py_ssize_t _digits(const unsigned char* src, Py_ssize_t pos, Py_ssize_t size) noexcept nogil:
    while pos < size and <unsigned char>(src[pos] - 48) < 10:
        pos += 1
    return pos


cdef int _number(Canon* c) noexcept nogil:
    """Copy the number at pos verbatim, once it matches RFC 8259's grammar."""
    cdef const unsigned char* src = c.src
    cdef Py_ssize_t size = c.size, start = c.pos, pos = c.pos, d
    if src[pos] == b'-':
        pos += 1
    if pos >= size:
        return -1
    if src[pos] == b'0':
        pos += 1
    elif <unsigned char>(src[pos] - 49) < 9:
        pos = _digits(src, pos + 1, size)
    else:
        return -1
    if pos < size and src[pos] == b'.':
        d = pos + 1
        pos = _digits(src, d, size)
        if pos == d:
            return -1
    if pos < size and (src[pos] == b'e' or src[pos] == b'E'):
        pos += 1
        if pos < size and (src[pos] == b'+' or src[pos] == b'-'):
            pos += 1
        d = pos
        pos = _digits(src, d, size)
        if pos == d:
            return -1
    memcpy(c.out + c.len, src + start, pos - start)
    c.len += pos - start
    c.pos = pos
    return 0


cdef int _array(Canon* c, int depth) noexcept nogil:
    if depth > C_MAX_DEPTH:
        return -1
    c.out[c.len] = b'['
    c.len += 1
    c.pos += 1
    _skip(c)
    if c.pos < c.size and c.src[c.pos] == b']':
        c.pos += 1
        c.out[c.len] = b']'
        c.len += 1
        return 0
    while True:
        if _value(c, depth) < 0:
            return -1
        _skip(c)
        if c.pos >= c.size:
            return -1
        if c.src[c.pos] == b']':
            c.pos += 1
            c.out[c.len] = b']'
            c.len += 1
            return 0
        if c.src[c.pos] != b',':
            return -1
        c.pos += 1
        c.out[c.len] = b','
        c.len += 1
        _skip(c)


cdef int _object(Canon* c, int depth) noexcept nogil:
    cdef Py_ssize_t open_at = c.len, base = c.n_members, m
    if depth > C_MAX_DEPTH:
        return -1
    c.out[c.len] = b'{'
    c.len += 1
    c.pos += 1
    _skip(c)
    if c.pos < c.size and c.src[c.pos] == b'}':
        c.pos += 1
        c.out[c.len] = b'}'
        c.len += 1
        return 0
    while True:
        if c.pos >= c.size or c.src[c.pos] != b'"':
            return -1
        if c.n_members > base:
            c.out[c.len] = b','
            c.len += 1
        if c.n_members == c.cap_members:
            if _grow(<void**>&c.members, &c.cap_members, c.n_members + 1, sizeof(Member), STACK_MEMBERS) < 0:
                c.nomem = True
                return -1
        m = c.n_members
        c.n_members += 1
        c.members[m].key = c.len
        if _string(c) < 0:
            return -1
        c.members[m].key_end = c.len
        c.members[m].plain = not c.escaped
        _skip(c)
        if c.pos >= c.size or c.src[c.pos] != b':':
            return -1
        c.pos += 1
        c.out[c.len] = b':'
        c.len += 1
        _skip(c)
        if _value(c, depth) < 0:  # may grow (move) c.members: index it afresh below
            return -1
        c.members[m].end = c.len
        _skip(c)
        if c.pos >= c.size:
            return -1
        if c.src[c.pos] == b'}':
            c.pos += 1
            break
        if c.src[c.pos] != b',':
            return -1
        c.pos += 1
        _skip(c)
    if _order(c, open_at, base, depth == 1) < 0:
        return -1
    c.n_members = base
    c.out[c.len] = b'}'
    c.len += 1
    return 0


# ---------------------------------------------------------------------------------------------
# Strings.

cdef int _string(Canon* c) noexcept nogil:
    """Copy the string whose opening quote is at pos, re-escaped canonically; set c.escaped."""
    cdef const unsigned char* src = c.src
    cdef unsigned char* out = c.out
    cdef Py_ssize_t pos = c.pos + 1, o = c.len, size = c.size, start, k
    cdef unsigned int cp
    cdef unsigned char ch
    c.escaped = False
    out[o] = b'"'
    o += 1
    while True:
        # The run to copy as is: printable ASCII but " and \, well-formed UTF-8, and the escapes
        # that are their own canonical form (all short ones but \/).
        start = pos
        while True:
            pos = _ascii_run(src, pos, size)
            if pos >= size:
                break
            if src[pos] >= 0x80:
                k = _utf8_length(src + pos, size - pos)
                if k == 0:
                    return -1
                pos += k
            elif src[pos] == b'\\' and size - pos >= 2 and KEPT[src[pos + 1]]:
                c.escaped = True
                pos += 2
            else:
                break
        if pos > start:
            memcpy(out + o, src + start, pos - start)
            o += pos - start
        if pos >= size:
            return -1
        ch = src[pos]
        if ch == b'"':
            out[o] = b'"'
            c.pos = pos + 1
            c.len = o + 1
            return 0
        if ch != b'\\':
            return -1  # a raw control byte
        pos = _escape(src, pos + 1, size, &cp)
        if pos < 0:
            return -1
        o = _put(out, o, cp, &c.escaped)


cdef inline Py_ssize_t _ascii_run(const unsigned char* src, Py_ssize_t pos, Py_ssize_t size) noexcept nogil:
    """The end of the run of PLAIN bytes from pos, found 8 bytes at a time.

    A word holds a special byte when one is below 0x20, a quote or a backslash, or has its top bit
    set: the classic has-less / has-zero bit tricks, whose lowest flagged byte is always a true
    one (a false flag needs a borrow from a lower byte), so it says where the run ends.
    """
    cdef uint64_t v, quote, backslash, special
    while size - pos >= 8:
        memcpy(&v, src + pos, 8)
        quote = v ^ (ONES * 0x22)
        backslash = v ^ (ONES * 0x5C)
        special = ((v - ONES * 0x20) & ~v | (quote - ONES) & ~quote | (backslash - ONES) & ~backslash | v) & HIGHS
        if special:
            pos += fgw_first_flagged(special)
            break
        pos += 8
    while pos < size and PLAIN[src[pos]]:
        pos += 1
    return pos


cdef inline unsigned int _hex4(const unsigned char* p) noexcept nogil:
    """The 4 hex digits at p as a number; 0x10000 or more when one is not a hex digit."""
    if (HEX[p[0]] | HEX[p[1]] | HEX[p[2]] | HEX[p[3]]) & 16:
        return 0x10000
    return (HEX[p[0]] << 12) | (HEX[p[1]] << 8) | (HEX[p[2]] << 4) | HEX[p[3]]


cdef Py_ssize_t _escape(const unsigned char* src, Py_ssize_t pos, Py_ssize_t size, unsigned int* cp) noexcept nogil:
    """Decode the escape after the backslash at pos - 1 into cp; the position after it, or -1.

    A \\u escape of a high surrogate must be followed by one of a low surrogate; the pair is one
    code point. Any other surrogate is an error.
    """
    cdef unsigned int high, low
    if pos >= size:
        return -1
    if src[pos] != b'u':
        cp[0] = UNESCAPE[src[pos]]
        return pos + 1 if cp[0] != 0 else -1
    if size - pos < 5:
        return -1
    high = _hex4(src + pos + 1)
    pos += 5
    if high > 0xFFFF or 0xDC00 <= high <= 0xDFFF:
        return -1
    if high >= 0xD800 and high <= 0xDBFF:
        if size - pos < 6 or src[pos] != b'\\' or src[pos + 1] != b'u':
            return -1
        low = _hex4(src + pos + 2)
        if low < 0xDC00 or low > 0xDFFF:
            return -1
        high = 0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00)
        pos += 6
    cp[0] = high
    return pos


cdef inline Py_ssize_t _put(unsigned char* out, Py_ssize_t o, unsigned int cp, bint* escaped) noexcept nogil:
    """Write code point cp in its canonical form at out + o; the new end."""
    if cp < 0x20:
        escaped[0] = True
        out[o] = b'\\'
        if SHORT[cp]:
            out[o + 1] = SHORT[cp]
            return o + 2
        out[o + 1] = b'u'
        out[o + 2] = b'0'
        out[o + 3] = b'0'
        out[o + 4] = HEX_DIGITS[cp >> 4]
        out[o + 5] = HEX_DIGITS[cp & 15]
        return o + 6
    if cp == 0x22 or cp == 0x5C:
        escaped[0] = True
        out[o] = b'\\'
        out[o + 1] = cp
        return o + 2
    if cp < 0x80:
        out[o] = cp
        return o + 1
    if cp < 0x800:
        out[o] = 0xC0 | (cp >> 6)
        out[o + 1] = 0x80 | (cp & 0x3F)
        return o + 2
    if cp < 0x10000:
        out[o] = 0xE0 | (cp >> 12)
        out[o + 1] = 0x80 | ((cp >> 6) & 0x3F)
        out[o + 2] = 0x80 | (cp & 0x3F)
        return o + 3
    out[o] = 0xF0 | (cp >> 18)
    out[o + 1] = 0x80 | ((cp >> 12) & 0x3F)
    out[o + 2] = 0x80 | ((cp >> 6) & 0x3F)
    out[o + 3] = 0x80 | (cp & 0x3F)
    return o + 4


cdef inline Py_ssize_t _utf8_length(const unsigned char* p, Py_ssize_t avail) noexcept nogil:
    """Bytes in the well-formed UTF-8 sequence at p (Unicode's table 3-7); 0 when it is not one.

    That excludes overlong forms, encoded surrogates and anything above U+10FFFF, as Python's
    strict UTF-8 decoder does.
    """
    cdef unsigned char b0 = p[0], lo = 0x80, hi = 0xBF
    cdef Py_ssize_t n, i
    if 0xC2 <= b0 <= 0xDF:
        n = 2
    elif 0xE0 <= b0 <= 0xEF:
        n = 3
        if b0 == 0xE0:
            lo = 0xA0
        elif b0 == 0xED:
            hi = 0x9F
    elif 0xF0 <= b0 <= 0xF4:
        n = 4
        if b0 == 0xF0:
            lo = 0x90
        elif b0 == 0xF4:
            hi = 0x8F
    else:
        return 0
    if avail < n or p[1] < lo or p[1] > hi:
        return 0
    for i in range(2, n):
        if p[i] < 0x80 or p[i] > 0xBF:
            return 0
    return n


# ---------------------------------------------------------------------------------------------
# Putting an object's members in order.

cdef inline int _key_byte(const unsigned char* out, Py_ssize_t* i) noexcept nogil:
    """The next decoded byte of a key's canonical text at out + i[0]; advances i."""
    cdef Py_ssize_t at = i[0]
    cdef unsigned char ch = out[at]
    if ch != b'\\':
        i[0] = at + 1
        return ch
    if out[at + 1] == b'u':  # canonical \u escapes are \u00xx
        i[0] = at + 6
        return (HEX[out[at + 4]] << 4) | HEX[out[at + 5]]
    i[0] = at + 2
    return UNESCAPE[out[at + 1]]


cdef int _compare(const unsigned char* out, const Member* a, const Member* b) noexcept nogil:
    """<0, 0 or >0 as a's key sorts before, with or after b's, by decoded bytes."""
    cdef Py_ssize_t i = a.key + 1, j = b.key + 1, ie = a.key_end - 1, je = b.key_end - 1
    cdef int r, x, y
    if a.plain and b.plain:
        r = memcmp(out + i, out + j, (ie - i) if ie - i < je - j else (je - j))
        if r != 0:
            return r
        return (ie - i > je - j) - (ie - i < je - j)  # a prefix sorts first
    while i < ie and j < je:
        x = _key_byte(out, &i)
        y = _key_byte(out, &j)
        if x != y:
            return x - y
    return (i < ie) - (j < je)


cdef bint _ignored(const Canon* c, const Member* m) noexcept nogil:
    """m's decoded key is one of the ignore keys."""
    cdef Py_ssize_t k, i, end = m.key_end - 1, n = m.key_end - m.key - 2, j
    cdef const Span* s
    for k in range(c.n_ignore):
        s = &c.ignore[k]
        if m.plain:
            if s.n == n and memcmp(c.out + m.key + 1, s.p, n) == 0:
                return True
            continue
        i = m.key + 1
        j = 0
        while i < end and j < s.n and _key_byte(c.out, &i) == s.p[j]:
            j += 1
        if i == end and j == s.n:
            return True
    return False


cdef void _sort(const unsigned char* out, const Member* ms, Py_ssize_t* a, Py_ssize_t* tmp, Py_ssize_t n) noexcept nogil:
    """Stable merge sort of the member indices a[:n] by key; tmp holds n // 2 indices."""
    cdef Py_ssize_t h, i, j, k, x
    if n <= 12:
        for i in range(1, n):
            x = a[i]
            j = i
            while j > 0 and _compare(out, &ms[a[j - 1]], &ms[x]) > 0:
                a[j] = a[j - 1]
                j -= 1
            a[j] = x
        return
    h = n // 2
    _sort(out, ms, a, tmp, h)
    _sort(out, ms, a + h, tmp, n - h)
    if _compare(out, &ms[a[h - 1]], &ms[a[h]]) <= 0:
        return
    memcpy(tmp, a, h * sizeof(Py_ssize_t))
    i = 0
    j = h
    k = 0
    while i < h and j < n:
        if _compare(out, &ms[a[j]], &ms[tmp[i]]) < 0:
            a[k] = a[j]
            j += 1
        else:
            a[k] = tmp[i]
            i += 1
        k += 1
    while i < h:
        a[k] = tmp[i]
        i += 1
        k += 1


cdef int _order(Canon* c, Py_ssize_t open_at, Py_ssize_t base, bint top) noexcept nogil:
    """Rewrite the members after the "{" at open_at sorted, de-duplicated (the last one wins) and,
    at the top level, without the ignore keys. Nothing moves when they already are."""
    cdef Member* ms = c.members + base
    cdef Py_ssize_t m = c.n_members - base, i, k, w = 0, n
    cdef Py_ssize_t* order
    cdef bint rewrite = False
    top = top and c.n_ignore > 0
    if top:
        for i in range(m):
            if _ignored(c, &ms[i]):
                rewrite = True
                break
    if not rewrite:
        for i in range(1, m):
            if _compare(c.out, &ms[i - 1], &ms[i]) >= 0:
                rewrite = True
                break
        if not rewrite:
            return 0
    if 2 * m > c.cap_order:
        if _grow(<void**>&c.order, &c.cap_order, 2 * m, sizeof(Py_ssize_t), STACK_ORDER) < 0:
            c.nomem = True
            return -1
    if c.scratch == NULL:
        c.scratch = <unsigned char*>PyMem_RawMalloc(c.size)
        if c.scratch == NULL:
            c.nomem = True
            return -1
    order = c.order
    for i in range(m):
        order[i] = i
    _sort(c.out, ms, order, order + m, m)
    for k in range(m):
        i = order[k]
        if k + 1 < m and _compare(c.out, &ms[i], &ms[order[k + 1]]) == 0:
            continue  # a later duplicate wins
        if top and _ignored(c, &ms[i]):
            continue
        if w:
            c.scratch[w] = b','
            w += 1
        n = ms[i].end - ms[i].key
        memcpy(c.scratch + w, c.out + ms[i].key, n)
        w += n
    memcpy(c.out + open_at + 1, c.scratch, w)
    c.len = open_at + 1 + w
    return 0


cdef int _grow(void** array, Py_ssize_t* cap, Py_ssize_t need, size_t item, Py_ssize_t stack_cap) noexcept nogil:
    """Give array (stack-allocated while cap is stack_cap) room for need items; -1: no memory."""
    cdef Py_ssize_t new_cap = cap[0] * 2
    cdef void* p
    while new_cap < need:
        new_cap *= 2
    if cap[0] == stack_cap:
        p = PyMem_RawMalloc(new_cap * item)
        if p != NULL:
            memcpy(p, array[0], cap[0] * item)
    else:
        p = PyMem_RawRealloc(array[0], new_cap * item)
    if p == NULL:
        return -1
    array[0] = p
    cap[0] = new_cap
    return 0
