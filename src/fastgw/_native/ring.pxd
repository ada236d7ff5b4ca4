# Declarations of the compiled shared-memory ring (implementation: ring.pyx; contract: ring.pyi;
# pure-Python twin and the file layout: _pure/ring.py).
cimport cython
from libc.stdint cimport uint32_t, uint64_t


@cython.final
cdef class Ring:
    cdef readonly str path  # the ring's file; None for a ring never opened
    cdef readonly uint64_t capacity  # bytes in the data region (a power of two); 0 when never opened
    cdef unsigned char* _base  # start of the MAP_SHARED mapping; NULL once closed
    cdef size_t _size  # bytes mapped: header + capacity
    cdef unsigned char* _data  # _base + HEADER_SIZE: the data region
    cdef uint64_t* _head  # producer-owned position (release-stored after each slot is written)
    cdef uint64_t* _tail  # consumer-owned position (release-stored by commit)
    cdef uint64_t* _pushed  # producer counter: records accepted
    cdef uint64_t* _full  # producer counter: pushes refused for lack of space
    cdef uint64_t* _pid  # the producer's pid, 0 until set
    cdef uint64_t _mask  # capacity - 1: position -> offset in the data region
    cdef uint64_t _max  # the longest record accepted: capacity // 2 - 4

    cdef int _check_open(self) except -1
    cdef int _map(self, int fd, size_t size) except -1
    cdef int _setup(self) except -1
    cdef bint _push(self, const unsigned char* p, uint64_t n) noexcept
