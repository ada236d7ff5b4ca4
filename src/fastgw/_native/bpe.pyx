# cython: language_level=3
"""Byte-pair encoding of pre-tokenised pieces, in C (contract: bpe.pyi; twin: _pure/bpe.py).

Why C, and why its own hash table: a text's pieces cross into C once (``count_pieces``), and each
is then one hash lookup when it is a whole token, which most pieces are. A lookup hashes the
bytes where they lie (a str piece's cached UTF-8, never a new bytes object). The table is built
at load: open addressing, at most half full, 16-byte slots that hold a short token's bytes
inline, so looking up a span of up to 8 bytes (nearly every lookup a merge makes) is one cache
miss where a dict costs three (slot, key object, key bytes); o200k_base is 8 MB of slots, more
than L2 holds. A span longer than the longest token is never looked up. Profiled on the
benchmark corpus, this cut the BPE share of a count from 44 ms to 18 ms per MB.

Pieces that need merging run tiktoken's own loop over a stack array of (start, rank) parts. A
piece longer than LONG_PIECE bytes uses a heap instead, so a pathological piece (a megabyte of
one letter) costs O(n log n), not O(n * merges), and 40 bytes of scratch per byte while it runs.
The merge rules are written out in _pure/bpe.py.
"""
cimport cython
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_CheckExact, PyBytes_GET_SIZE
from cpython.mem cimport PyMem_Calloc, PyMem_Free, PyMem_Malloc
from cpython.unicode cimport (
    PyUnicode_1BYTE_KIND,
    PyUnicode_AsUTF8AndSize,
    PyUnicode_CheckExact,
    PyUnicode_DATA,
    PyUnicode_GET_LENGTH,
    PyUnicode_KIND,
    PyUnicode_READ,
)
from libc.stdint cimport int32_t, uint32_t, uint64_t
from libc.string cimport memcmp, memcpy, memmove

__all__ = [
    "CACHE_MAX_PIECE", "DEFAULT_CACHE_SIZE", "LONG_PIECE", "MAX_RANK", "BytePairEncoder", "CodePointSet",
]

cdef extern from *:
    """
    #include <stdint.h>
    #include <string.h>
    /* Up to 8 bytes as one word, first byte lowest, zero-padded: how short tokens are compared. */
    static inline uint64_t fgw_bpe_word(const unsigned char *p, Py_ssize_t n) {
        uint64_t w = 0;
        for (Py_ssize_t i = 0; i < n; i++) w |= (uint64_t)p[i] << (8 * i);
        return w;
    }
    /* A multiply-xorshift hash of a byte string (splitmix64's finaliser per 8-byte word). */
    static inline uint64_t fgw_bpe_hash(const unsigned char *p, Py_ssize_t n) {
        uint64_t h = (uint64_t)n * 0x9E3779B97F4A7C15ULL, w;
        for (; n > 8; p += 8, n -= 8) {
            memcpy(&w, p, 8);
            h = (h ^ w) * 0xBF58476D1CE4E5B9ULL;
            h ^= h >> 29;
        }
        h = (h ^ fgw_bpe_word(p, n)) * 0xBF58476D1CE4E5B9ULL;
        h ^= h >> 32;
        h *= 0x94D049BB133111EBULL;
        return h ^ (h >> 29);
    }
    """
    uint64_t fgw_bpe_word(const unsigned char* p, Py_ssize_t n) noexcept nogil
    uint64_t fgw_bpe_hash(const unsigned char* p, Py_ssize_t n) noexcept nogil

cdef enum:
    C_LONG_PIECE = 64  # longer pieces (in bytes) are merged with the heap; shorter on the stack
    C_CACHE_MAX_PIECE = 256  # longer pieces are never cached (rarely repeated, costly to keep)

cdef uint32_t NO_RANK = 0xFFFFFFFF  # "this span is not a token"
MAX_RANK = 0xFFFFFFFE
LONG_PIECE = C_LONG_PIECE
CACHE_MAX_PIECE = C_CACHE_MAX_PIECE
# Off here: with lookups this cheap the regex split is ~85% of a count; on the benchmark corpus
# the cache saved ~5 ms of ~135 per MB (within run-to-run noise), and on text in which no rare
# piece repeats it added ~20% to the BPE time. The pure twin, whose merges are slow, turns it on.
DEFAULT_CACHE_SIZE = 0


cdef inline void _heap_push(Candidate* heap, Py_ssize_t* size, uint64_t key, uint32_t end) noexcept nogil:
    cdef Py_ssize_t i = size[0], parent
    size[0] += 1
    while i > 0:
        parent = (i - 1) >> 1
        if heap[parent].key <= key:
            break
        heap[i] = heap[parent]
        i = parent
    heap[i].key = key
    heap[i].end = end


cdef inline Candidate _heap_pop(Candidate* heap, Py_ssize_t* size) noexcept nogil:
    cdef Candidate top = heap[0], last
    cdef Py_ssize_t i = 0, child, n
    size[0] -= 1
    n = size[0]
    last = heap[n]
    while True:
        child = 2 * i + 1
        if child >= n:
            break
        if child + 1 < n and heap[child + 1].key < heap[child].key:
            child += 1
        if last.key <= heap[child].key:
            break
        heap[i] = heap[child]
        i = child
    heap[i] = last
    return top


cdef inline int _utf8(object piece, const unsigned char** data, Py_ssize_t* n) except -1:
    """Point at a piece's bytes: a str's cached UTF-8 (raises on a lone surrogate) or a bytes'."""
    if PyUnicode_CheckExact(piece):
        data[0] = <const unsigned char*>PyUnicode_AsUTF8AndSize(piece, n)
    elif PyBytes_CheckExact(piece):
        data[0] = <const unsigned char*>PyBytes_AS_STRING(piece)
        n[0] = PyBytes_GET_SIZE(piece)
    else:
        raise TypeError(f"piece must be str or bytes, not {type(piece).__name__}")
    return 0


@cython.final
cdef class BytePairEncoder:
    def __cinit__(self, ranks, cache_size=DEFAULT_CACHE_SIZE):
        cdef Py_ssize_t total = 0, count = 0, n, size = 2
        cdef const unsigned char* data
        cdef uint64_t h
        cdef size_t j
        if type(cache_size) is not int or cache_size < 0:
            raise ValueError(f"cache_size must be an int >= 0, not {cache_size!r}")
        if not isinstance(ranks, dict):
            raise TypeError(f"ranks must be a dict of bytes to int, not {type(ranks).__name__}")
        self.cache_size = cache_size
        self.cache = {} if cache_size else None
        for token, value in ranks.items():  # first pass: check, and size the arena
            if type(token) is not bytes or not token:
                raise ValueError(f"token {token!r} is not a non-empty bytes")
            if type(value) is not int or not 0 <= value <= MAX_RANK:
                raise ValueError(f"rank {value!r} of token {token!r} is not an int in 0..{MAX_RANK}")
            if PyBytes_GET_SIZE(token) > 8:
                total += PyBytes_GET_SIZE(token)
            count += 1
        if count >= (1 << 30) or total >= NO_RANK:
            raise ValueError("the vocabulary is too large")
        while size < 2 * count:
            size *= 2
        self.arena = <char*>PyMem_Malloc(total + 1)
        self.slots = <Slot*>PyMem_Calloc(size, sizeof(Slot))
        if not (self.arena and self.slots):
            raise MemoryError()
        self.mask = size - 1
        for j in range(256):
            self.byte_rank[j] = NO_RANK
        total = 0
        for token, value in ranks.items():  # second pass: fill the table
            data = <const unsigned char*>PyBytes_AS_STRING(token)
            n = PyBytes_GET_SIZE(token)
            self.max_len = max(self.max_len, n)
            if n == 1:
                self.byte_rank[data[0]] = value
            h = fgw_bpe_hash(data, n)
            j = h & self.mask
            while self.slots[j].len != 0:
                j = (j + 1) & self.mask
            self.slots[j].rank = value
            self.slots[j].len = n
            if n <= 8:
                self.slots[j].data = fgw_bpe_word(data, n)
            else:
                memcpy(self.arena + total, data, n)
                self.slots[j].data = total
                total += n
        self.n_tokens = count
        missing = [b for b in range(256) if self.byte_rank[b] == NO_RANK]
        if missing:
            raise ValueError(f"the vocabulary lacks {len(missing)} single bytes, the first {missing[0]:#04x}")

    def __dealloc__(self):
        PyMem_Free(self.arena)
        PyMem_Free(self.slots)

    def __repr__(self):
        cached = len(self.cache) if self.cache is not None else 0
        return (f"<BytePairEncoder cython n_tokens={self.n_tokens} max_len={self.max_len} slots={self.mask + 1}"
                f" cached={cached}/{self.cache_size}>")

    ### Public API ###

    def encode_piece(self, piece):
        if type(piece) is not bytes:
            raise TypeError(f"piece must be bytes, not {type(piece).__name__}")
        out = []
        self._piece(piece, <const unsigned char*>PyBytes_AS_STRING(piece), PyBytes_GET_SIZE(piece), out)
        return out

    def count_piece(self, piece):
        if type(piece) is not bytes:
            raise TypeError(f"piece must be bytes, not {type(piece).__name__}")
        return self._piece(piece, <const unsigned char*>PyBytes_AS_STRING(piece), PyBytes_GET_SIZE(piece), None)

    def encode_pieces(self, list pieces not None):
        cdef const unsigned char* data
        cdef Py_ssize_t n
        out = []
        for piece in pieces:
            _utf8(piece, &data, &n)
            self._piece(piece, data, n, out)
        return out

    def count_pieces(self, list pieces not None):
        cdef const unsigned char* data
        cdef Py_ssize_t n, total = 0
        for piece in pieces:
            _utf8(piece, &data, &n)
            total += self._piece(piece, data, n, None)
        return total

    ### Internals ###

    cdef uint32_t _lookup(self, const unsigned char* p, Py_ssize_t n) noexcept nogil:
        """The rank of p[:n], NO_RANK when it is not a token."""
        cdef uint64_t word = 0
        cdef size_t j
        cdef const Slot* slot
        if n == 1:
            return self.byte_rank[p[0]]
        if n > self.max_len:
            return NO_RANK
        if n <= 8:
            word = fgw_bpe_word(p, n)
        j = fgw_bpe_hash(p, n) & self.mask
        while True:  # linear probing; the table is at most half full, so an empty slot is near
            slot = &self.slots[j]
            if slot.len == n:
                if n <= 8:
                    if slot.data == word:
                        return slot.rank
                elif memcmp(self.arena + slot.data, p, n) == 0:
                    return slot.rank
            elif slot.len == 0:
                return NO_RANK
            j = (j + 1) & self.mask

    cdef Py_ssize_t _piece(self, object key, const unsigned char* p, Py_ssize_t n, list out) except -1:
        """Count the tokens of p[:n] (the bytes of ``key``), appending them to ``out`` unless None.

        There are three cases: the piece is a token (one lookup, most pieces); it is a counted
        piece in the cache (a dict lookup on the piece object); or it is merged. Only counts
        are cached: encode is for tests, and an int costs no allocation.
        """
        cdef uint32_t rank
        cdef Py_ssize_t count
        if n == 0:
            return 0
        rank = self._lookup(p, n)
        if rank != NO_RANK:
            if out is not None:
                out.append(rank)
            return 1
        if out is not None or self.cache is None or n > C_CACHE_MAX_PIECE:
            return self._merge(p, n, out)
        cached = self.cache.get(key)
        if cached is not None:
            return <Py_ssize_t>cached
        count = self._merge(p, n, None)
        if len(self.cache) >= self.cache_size:
            self.cache.clear()  # cheaper than LRU bookkeeping, and the hot pieces come back at once
        self.cache[key] = count
        return count

    cdef Py_ssize_t _merge(self, const unsigned char* p, Py_ssize_t n, list out) except -1:
        if n <= C_LONG_PIECE:
            return self._merge_scan(p, n, out)
        return self._merge_heap(p, n, out)

    cdef Py_ssize_t _merge_scan(self, const unsigned char* p, Py_ssize_t n, list out) except -1:
        """tiktoken's loop (merge_scan in the twin): merge the leftmost lowest-rank pair, repeat."""
        cdef Part parts[C_LONG_PIECE + 1]
        cdef Py_ssize_t count = n + 1, i, j, best
        cdef uint32_t lowest
        for i in range(n - 1):
            parts[i].start = i
            parts[i].rank = self._lookup(p + i, 2)
        parts[n - 1].start = n - 1
        parts[n - 1].rank = NO_RANK
        parts[n].start = n  # the end sentinel
        parts[n].rank = NO_RANK
        while True:
            lowest = NO_RANK
            best = -1
            for j in range(count - 1):
                if parts[j].rank < lowest:
                    lowest = parts[j].rank
                    best = j
            if best < 0:
                break
            i = best
            # Parts i and i + 1 become one; the pairs at i - 1 and i now end one part further.
            if i > 0:
                parts[i - 1].rank = (self._lookup(p + parts[i - 1].start, parts[i + 2].start - parts[i - 1].start)
                                     if i + 2 < count else NO_RANK)
            parts[i].rank = (self._lookup(p + parts[i].start, parts[i + 3].start - parts[i].start)
                             if i + 3 < count else NO_RANK)
            memmove(&parts[i + 1], &parts[i + 2], (count - i - 2) * sizeof(Part))
            count -= 1
        if out is not None:
            for j in range(count - 1):
                out.append(self._lookup(p + parts[j].start, parts[j + 1].start - parts[j].start))
        return count - 1

    cdef Py_ssize_t _merge_heap(self, const unsigned char* p, Py_ssize_t n, list out) except -1:
        """The same merges in O(n log n) (merge_heap in the twin, which explains staleness).

        The heap never holds more than 2n entries: n - 1 pairs to start with, then each pop
        that merges pushes at most two, and there are at most n - 1 merges.
        """
        cdef int32_t* nxt = NULL
        cdef int32_t* prv = NULL
        cdef Candidate* heap = NULL
        cdef Py_ssize_t size = 0, count = 0, i
        cdef uint32_t rank, start, mid, end, left, right
        cdef Candidate top
        if n >= 0x7FFFFFFF:  # positions are int32
            raise MemoryError(f"a piece of {n} bytes")
        try:
            nxt = <int32_t*>PyMem_Malloc((n + 1) * sizeof(int32_t))
            prv = <int32_t*>PyMem_Malloc((n + 1) * sizeof(int32_t))
            heap = <Candidate*>PyMem_Malloc(2 * n * sizeof(Candidate))
            if not (nxt and prv and heap):
                raise MemoryError()
            for i in range(n + 1):
                nxt[i] = i + 1
                prv[i] = i - 1
            for i in range(n - 1):
                rank = self._lookup(p + i, 2)
                if rank != NO_RANK:
                    _heap_push(heap, &size, (<uint64_t>rank << 32) | <uint64_t>i, i + 2)
            while size > 0:
                top = _heap_pop(heap, &size)
                start = <uint32_t>top.key
                end = top.end
                if nxt[start] < 0 or nxt[start] >= n or nxt[nxt[start]] != <int32_t>end:
                    continue  # stale: one of the two parts has merged since the push
                mid = nxt[start]
                nxt[start] = end
                nxt[mid] = -1
                prv[end] = start
                if start > 0:
                    left = prv[start]
                    rank = self._lookup(p + left, end - left)
                    if rank != NO_RANK:
                        _heap_push(heap, &size, (<uint64_t>rank << 32) | left, end)
                if end < n:
                    right = nxt[end]
                    rank = self._lookup(p + start, right - start)
                    if rank != NO_RANK:
                        _heap_push(heap, &size, (<uint64_t>rank << 32) | start, right)
            i = 0
            while i < n:
                if out is not None:
                    out.append(self._lookup(p + i, nxt[i] - i))
                count += 1
                i = nxt[i]
            return count
        finally:
            PyMem_Free(nxt)
            PyMem_Free(prv)
            PyMem_Free(heap)


@cython.final
cdef class CodePointSet:
    def __cinit__(self, ranges):
        cdef uint32_t c
        self.min = 0x110000
        self.bits = <uint64_t*>PyMem_Calloc(0x110000 // 64, sizeof(uint64_t))
        if not self.bits:
            raise MemoryError()
        for first, last in sorted(ranges):
            if not 0 <= first <= last <= 0x10FFFF:
                raise ValueError(f"bad code point range ({first:#x}, {last:#x})")
            self.min = min(self.min, first)
            for c in range(first, last + 1):
                self.bits[c >> 6] |= (<uint64_t>1) << (c & 63)

    def __dealloc__(self):
        PyMem_Free(self.bits)

    def __repr__(self):
        return f"<CodePointSet cython min={self.min:#x}>"

    def intersects(self, str text):
        cdef Py_ssize_t i
        cdef unsigned int kind = PyUnicode_KIND(text)
        cdef void* data = PyUnicode_DATA(text)
        cdef uint32_t c
        if kind == PyUnicode_1BYTE_KIND and self.min > 0xFF:
            return False  # no latin-1 text can hold a member
        for i in range(PyUnicode_GET_LENGTH(text)):
            c = PyUnicode_READ(kind, data, i)
            if c >= self.min and (self.bits[c >> 6] >> (c & 63)) & 1:
                return True
        return False
