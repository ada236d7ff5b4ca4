# Declarations of the compiled byte-pair encoder (implementation: bpe.pyx; contract: bpe.pyi;
# pure-Python twin: _pure/bpe.py). Every attribute is read-only from Python.
cimport cython
from libc.stdint cimport uint32_t, uint64_t


# One slot of the open-addressing table from token bytes to rank: 16 bytes, so that a lookup of
# a token of up to 8 bytes (most lookups during a merge) touches one cache line and no other.
cdef struct Slot:
    uint64_t data  # a token of up to 8 bytes: the bytes themselves (fgw_bpe_word); longer: its offset in arena
    uint32_t rank  # the token's rank
    uint32_t len  # the token's length in bytes; 0 marks an empty slot


# One part of a piece being merged by the scan (tiktoken's loop).
cdef struct Part:
    uint32_t start  # where the part starts in the piece
    uint32_t rank  # the rank of this part + the next one; NO_RANK when not a token or no next part


# One candidate merge in the heap (pieces longer than LONG_PIECE).
cdef struct Candidate:
    uint64_t key  # rank << 32 | start: the smallest key is the leftmost pair of the lowest rank
    uint32_t end  # the pair is piece[start:end]


@cython.final
cdef class BytePairEncoder:
    cdef readonly Py_ssize_t n_tokens  # tokens in the vocabulary
    cdef readonly Py_ssize_t cache_size  # the most pieces the cache holds before it is cleared; 0: no cache
    cdef dict cache  # piece (str or bytes) -> token count, for pieces that are not a token; None: no cache
    cdef char* arena  # the bytes of every token longer than 8 bytes, back to back
    cdef Slot* slots  # the hash table: a power of two of slots, at most half of them used
    cdef size_t mask  # number of slots - 1
    cdef Py_ssize_t max_len  # the longest token, in bytes: a longer span is never looked up
    cdef uint32_t byte_rank[256]  # the rank of each single byte (all 256 are in the vocabulary)

    cdef uint32_t _lookup(self, const unsigned char* p, Py_ssize_t n) noexcept nogil
    cdef Py_ssize_t _merge_scan(self, const unsigned char* p, Py_ssize_t n, list out) except -1
    cdef Py_ssize_t _merge_heap(self, const unsigned char* p, Py_ssize_t n, list out) except -1
    cdef Py_ssize_t _piece(self, object key, const unsigned char* p, Py_ssize_t n, list out) except -1
    cdef Py_ssize_t _merge(self, const unsigned char* p, Py_ssize_t n, list out) except -1


@cython.final
cdef class CodePointSet:
    cdef uint64_t* bits  # one bit per code point 0..0x10FFFF
    cdef readonly uint32_t min  # the smallest member (0x110000 when empty): texts below it skip the scan
