# cython: language_level=3
"""The SPSC log-record ring, in C (contract: ring.pyi; twin, and the file layout: _pure/ring.py).

Why C: ``push`` runs on the request path of every request. Here it is one bounds check, two
atomic loads, a memcpy and a release store, with no Python object touched between taking the
record's buffer and returning the bool. head and tail are accessed with the GCC/C11 builtins
below, so the slot bytes are visible to the consumer (in any process mapping the file) before the
head that publishes them, on any CPU, and the producer never reuses space before the consumer's
commit. Every byte written matches the pure twin, so either twin can read what the other wrote.
"""
cimport cython
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from libc.stdint cimport uint32_t, uint64_t
from libc.errno cimport EINVAL, errno
from libc.string cimport memcpy
from posix.mman cimport MAP_FAILED, MAP_SHARED, PROT_READ, PROT_WRITE, madvise, mmap, munmap

import os

__all__ = ["HEADER_SIZE", "MAGIC", "MIN_CAPACITY", "Ring", "VERSION", "WRAP"]

cdef extern from *:
    """
    #include <stdint.h>
    /* The ring's only synchronisation: head and tail are 8-byte aligned words in the mapping. */
    static inline uint64_t fgw_load_acquire(const uint64_t *p) { return __atomic_load_n(p, __ATOMIC_ACQUIRE); }
    static inline void fgw_store_release(uint64_t *p, uint64_t v) { __atomic_store_n(p, v, __ATOMIC_RELEASE); }
    static inline uint64_t fgw_load_relaxed(const uint64_t *p) { return __atomic_load_n(p, __ATOMIC_RELAXED); }
    static inline void fgw_store_relaxed(uint64_t *p, uint64_t v) { __atomic_store_n(p, v, __ATOMIC_RELAXED); }
    """
    uint64_t fgw_load_acquire(const uint64_t* p) noexcept nogil
    void fgw_store_release(uint64_t* p, uint64_t v) noexcept nogil
    uint64_t fgw_load_relaxed(const uint64_t* p) noexcept nogil
    void fgw_store_relaxed(uint64_t* p, uint64_t v) noexcept nogil

MAGIC = b"FGWRING\x00"
VERSION = 1
HEADER_SIZE = 512
MIN_CAPACITY = 4096
WRAP = 0xFFFFFFFF

cdef enum:
    C_HEADER_SIZE = 512
    C_VERSION = 1
    C_MIN_CAPACITY = 4096
    # Byte offsets of the header fields (see _pure/ring.py for the table).
    OFF_VERSION = 8
    OFF_HEADER_SIZE = 12
    OFF_CAPACITY = 16
    OFF_HEAD = 128
    OFF_PUSHED = 136
    OFF_FULL = 144
    OFF_PID = 152
    OFF_TAIL = 256

cdef uint32_t C_WRAP = 0xFFFFFFFF
cdef int C_MADV_POPULATE_WRITE = 23  # linux/mman.h, since 5.14 (not in every libc's headers yet)


cdef inline uint64_t _slot(uint64_t n) noexcept nogil:
    """Bytes a record of n bytes occupies: u32 length + bytes, rounded up to 8."""
    return (n + 11) & ~(<uint64_t>7)


cdef inline uint64_t* _word(unsigned char* base, size_t off) noexcept nogil:
    return <uint64_t*>(base + off)


@cython.final
cdef class Ring:
    """A single-producer/single-consumer ring of byte records in a shared file mapping."""

    def __cinit__(self):
        self._base = NULL

    def __dealloc__(self):
        if self._base != NULL:
            munmap(self._base, self._size)
            self._base = NULL

    ### Opening and closing ###

    @staticmethod
    def create(path, capacity):
        """A new, empty ring at ``path``; see ring.pyi."""
        path = os.fspath(path)
        if type(capacity) is not int or capacity < C_MIN_CAPACITY or capacity & (capacity - 1):
            raise ValueError(f"ring capacity {capacity!r} is not a power of two >= {MIN_CAPACITY}")
        cdef Ring ring = Ring()
        ring.path = path
        # Built under a temporary name and renamed into place: a consumer attaching meanwhile
        # sees the old file or the complete new one, never a half-written header.
        tmp = f"{path}.{os.getpid()}.tmp"
        fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        try:
            os.ftruncate(fd, C_HEADER_SIZE + capacity)
            ring._map(fd, C_HEADER_SIZE + capacity)
            memcpy(ring._base, PyBytes_AS_STRING(MAGIC), 8)
            (<uint32_t*>(ring._base + OFF_VERSION))[0] = C_VERSION
            (<uint32_t*>(ring._base + OFF_HEADER_SIZE))[0] = C_HEADER_SIZE
            _word(ring._base, OFF_CAPACITY)[0] = capacity
            ring._setup()
            os.rename(tmp, path)
        except BaseException:
            ring.close()
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise
        finally:
            os.close(fd)
        return ring

    @staticmethod
    def attach(path):
        """The existing ring at ``path``, validated; see ring.pyi."""
        path = os.fspath(path)
        cdef Ring ring = Ring()
        ring.path = path
        fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
        try:
            size = os.fstat(fd).st_size
            if size < C_HEADER_SIZE:
                raise ValueError(
                    f"{path}: not a fastgw ring (file of {size} bytes is smaller than the {HEADER_SIZE}-byte header)"
                )
            ring._map(fd, size)
        finally:
            os.close(fd)
        try:
            _validate(ring, size)
        except BaseException:
            ring.close()
            raise
        return ring

    cdef int _map(self, int fd, size_t size) except -1:
        cdef void* p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0)
        if p == MAP_FAILED:
            raise OSError(errno, os.strerror(errno), self.path)
        self._base = <unsigned char*>p
        self._size = size
        return 0

    cdef int _setup(self) except -1:
        cdef unsigned char* b = self._base
        self.capacity = _word(b, OFF_CAPACITY)[0]
        self._mask = self.capacity - 1
        self._max = self.capacity // 2 - 4
        self._data = b + C_HEADER_SIZE
        self._head = _word(b, OFF_HEAD)
        self._tail = _word(b, OFF_TAIL)
        self._pushed = _word(b, OFF_PUSHED)
        self._full = _word(b, OFF_FULL)
        self._pid = _word(b, OFF_PID)
        return 0

    def close(self):
        """Unmap the ring (idempotent). The file stays: the other side may still use it."""
        if self._base != NULL:
            munmap(self._base, self._size)
            self._base = NULL

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()

    cdef int _check_open(self) except -1:
        if self._base == NULL:
            raise ValueError("ring is closed")
        return 0

    ### Producer ###

    def claim(self):
        """Back every page with memory now, writable; see ring.pyi."""
        self._check_open()
        if madvise(self._base, self._size, C_MADV_POPULATE_WRITE) == 0:
            return True
        if errno == EINVAL:  # a kernel before 5.14
            return False
        raise OSError(errno, os.strerror(errno), self.path)

    def push(self, bytes record not None):
        """Append one record; False (and ``full`` counted) when it does not fit. Never blocks."""
        self._check_open()
        cdef uint64_t n = <uint64_t>PyBytes_GET_SIZE(record)
        if n > self._max:
            raise ValueError(f"record of {n} bytes exceeds the ring's limit of {self._max} bytes (capacity/2 - 4)")
        return self._push(<const unsigned char*>PyBytes_AS_STRING(record), n)

    cdef bint _push(self, const unsigned char* p, uint64_t n) noexcept:
        cdef uint64_t head = fgw_load_relaxed(self._head)  # ours: no other writer
        cdef uint64_t tail = fgw_load_acquire(self._tail)  # the consumer is done with what is below
        cdef uint64_t slot = _slot(n)
        cdef uint64_t off = head & self._mask
        cdef uint64_t room = self.capacity - off
        cdef uint64_t total = slot if slot <= room else room + slot
        cdef unsigned char* s
        if total > self.capacity - (head - tail):
            fgw_store_relaxed(self._full, fgw_load_relaxed(self._full) + 1)
            return False
        if slot > room:
            (<uint32_t*>(self._data + off))[0] = C_WRAP
            off = 0
        s = self._data + off
        (<uint64_t*>(s + slot - 8))[0] = 0  # the padding (rewritten below where used)
        (<uint32_t*>s)[0] = <uint32_t>n
        memcpy(s + 4, p, n)
        fgw_store_relaxed(self._pushed, fgw_load_relaxed(self._pushed) + 1)
        fgw_store_release(self._head, head + total)  # publishes the slot
        return True

    ### Consumer ###

    def read(self, Py_ssize_t max_records, Py_ssize_t max_bytes, until=None, start=None):
        """The records after tail (tail is not moved) and the position to commit; see ring.pyi."""
        self._check_open()
        cdef uint64_t head = fgw_load_acquire(self._head)  # loaded before any slot is read
        cdef uint64_t pos = fgw_load_relaxed(self._tail)  # ours: no other writer
        cdef uint64_t limit = head, off, step, n
        cdef Py_ssize_t count = 0, nbytes = 0
        cdef list records = []
        if start is not None:
            if start < pos or start > head or start & 7:
                raise ValueError(f"read start {start} is not a position in [tail {pos}, head {head}]")
            pos = <uint64_t>start
        if until is not None:
            if until < pos:
                limit = pos
            elif until < head:
                limit = <uint64_t>until
        while pos < limit and count < max_records:
            off = pos & self._mask
            n = (<uint32_t*>(self._data + off))[0]
            if n == C_WRAP:
                step = self.capacity - off
            elif n <= self._max:
                step = _slot(n)
            else:
                step = self.capacity + 1  # no record is that long: corrupt
            if pos + step > limit:
                raise ValueError(f"{self.path}: ring is corrupt at position {pos}")
            if n != C_WRAP:
                if count and nbytes + <Py_ssize_t>n > max_bytes:
                    break
                records.append(PyBytes_FromStringAndSize(<char*>(self._data + off + 4), <Py_ssize_t>n))
                nbytes += n
                count += 1
            pos += step
        return records, pos

    def commit(self, token):
        """Advance tail to ``token`` (a position returned by read); see ring.pyi."""
        self._check_open()
        tail = fgw_load_relaxed(self._tail)
        head = fgw_load_acquire(self._head)
        if token < tail or token > head or token & 7:
            raise ValueError(f"commit token {token} is not a position in [tail {tail}, head {head}]")
        fgw_store_release(self._tail, <uint64_t>token)

    ### State ###

    @property
    def head(self):
        self._check_open()
        return fgw_load_acquire(self._head)

    @property
    def tail(self):
        self._check_open()
        return fgw_load_acquire(self._tail)

    @property
    def used(self):
        self._check_open()
        cdef uint64_t tail = fgw_load_acquire(self._tail)  # tail first: head only grows
        return fgw_load_acquire(self._head) - tail

    @property
    def pushed(self):
        self._check_open()
        return fgw_load_relaxed(self._pushed)

    @property
    def full(self):
        self._check_open()
        return fgw_load_relaxed(self._full)

    @property
    def producer_pid(self):
        self._check_open()
        return fgw_load_relaxed(self._pid)

    @producer_pid.setter
    def producer_pid(self, uint64_t pid):
        self._check_open()
        fgw_store_relaxed(self._pid, pid)

    @property
    def max_record(self):
        return self._max

    @property
    def closed(self):
        return self._base == NULL

    def __repr__(self):
        if self._base == NULL:
            return f"<Ring {self.path!r} closed>"
        head, tail = self._head[0], self._tail[0]
        return (
            f"<Ring {self.path!r} capacity={self.capacity} head={head} tail={tail} "
            f"used={head - tail} pushed={self._pushed[0]} full={self._full[0]} producer_pid={self._pid[0]}>"
        )


cdef int _validate(Ring ring, size) except -1:
    """Check an attached ring's header; the messages are the pure twin's, word for word."""
    cdef unsigned char* b = ring._base
    path = ring.path
    magic = PyBytes_FromStringAndSize(<char*>b, 8)
    version = (<uint32_t*>(b + OFF_VERSION))[0]
    header_size = (<uint32_t*>(b + OFF_HEADER_SIZE))[0]
    capacity = _word(b, OFF_CAPACITY)[0]
    if magic != MAGIC:
        raise ValueError(f"{path}: not a fastgw ring (bad magic {magic!r})")
    if version != C_VERSION:
        raise ValueError(f"{path}: ring version {version} is not supported (expected {VERSION})")
    if header_size != C_HEADER_SIZE:
        raise ValueError(f"{path}: ring header size {header_size} is not {HEADER_SIZE}")
    if capacity < C_MIN_CAPACITY or capacity & (capacity - 1):
        raise ValueError(f"{path}: ring capacity {capacity} is not a power of two >= {MIN_CAPACITY}")
    if size != C_HEADER_SIZE + capacity:
        raise ValueError(f"{path}: ring file is {size} bytes, expected {HEADER_SIZE + capacity} for capacity {capacity}")
    head = fgw_load_acquire(_word(b, OFF_HEAD))
    tail = fgw_load_acquire(_word(b, OFF_TAIL))
    if tail > head or head - tail > capacity or (head | tail) & 7:
        raise ValueError(f"{path}: ring positions are inconsistent (head {head}, tail {tail})")
    ring._setup()
    return 0
