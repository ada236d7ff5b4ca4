"""Pure-Python twin of ``fastgw._native.ring`` (the contract is ``ring.pyi``).

It is the fallback when the extension is not built and the oracle the tests hold the compiled twin
to: both twins must leave byte-identical files after the same operations, so either one can write
a ring and the other read it.

The file, in host byte order (little-endian on x86-64 and aarch64; a foreign order fails the
version check). Each group of fields has one writer, and the groups sit on separate 128-byte
blocks (two cache lines, so the adjacent-line prefetcher does not couple them either):

    offset  size  field
         0     8  magic b"FGWRING\\0"
         8     4  version (1)
        12     4  header size (512)
        16     8  capacity: bytes in the data region, a power of two >= 4096
       128     8  head: bytes ever pushed (producer; monotonic)
       136     8  pushed: records accepted (producer)
       144     8  full: pushes refused for lack of space (producer)
       152     8  producer_pid (set by the producer; 0 until then)
       256     8  tail: bytes ever consumed (consumer; monotonic)
       512   cap  the data region; position p lives at byte p & (capacity - 1)

A record occupies a slot of ``(4 + len + 7) & ~7`` bytes at an 8-aligned position: its length as
a u32, the bytes, zeros up to the 8-byte boundary. When the slot does not fit between its
position and the end of the data region, a u32 WRAP marker (0xFFFFFFFF) is written there and the
record starts at offset 0 of the region; head then advances by the bytes skipped plus the slot.
So a push needs ``slot`` bytes, or ``(capacity - offset) + slot`` when it wraps, and is refused
when that exceeds ``capacity - (head - tail)``. A record is at most ``capacity // 2 - 4`` bytes,
so its slot is at most half the ring and an empty ring always takes it, wherever head stands.

Publication: the producer writes the slot, then stores head; the consumer loads head, then reads
the slots below it. Nothing past head is ever read, so a producer killed mid-write leaves bytes
that nobody sees and the next push overwrites. The consumer stores tail only after its batch was
written downstream (at least once). The compiled twin uses C11 acquire/release atomics for this.
Here every header word is stored through a ``memoryview`` cast to "Q": CPython copies the 8 bytes
with one aligned store, which the platform makes atomic, but with no fence: publication order is
then only guaranteed by a total-store-order CPU (x86-64). Use the compiled twin across processes
on weakly ordered CPUs (aarch64); this one is the fallback and the oracle.
"""
import errno
import mmap
import os
import struct

__all__ = ["HEADER_SIZE", "MAGIC", "MIN_CAPACITY", "Ring", "VERSION", "WRAP"]

MAGIC = b"FGWRING\x00"
VERSION = 1
HEADER_SIZE = 512
MIN_CAPACITY = 4096
WRAP = 0xFFFFFFFF
_MADV_POPULATE_WRITE = 23  # linux/mman.h, since 5.14; the mmap module names it from Python 3.13

_CONST = struct.Struct("=8sIIQ")  # magic, version, header size, capacity (at offset 0)
# Header words, as indexes into the mapping viewed as u64.
_CAPACITY = 16 // 8
_HEAD = 128 // 8
_PUSHED = 136 // 8
_FULL = 144 // 8
_PID = 152 // 8
_TAIL = 256 // 8
_ZERO8 = bytes(8)


class Ring:
    """A single-producer/single-consumer ring of byte records in a shared file mapping."""

    __slots__ = ("_path", "_capacity", "_mm", "_q", "_u32", "_mask", "_max")

    def __init__(self):
        # A closed ring: the instances that work come from create() and attach().
        self._path = None
        self._capacity = 0
        self._mm = self._q = self._u32 = None
        self._mask = self._max = 0

    # --- Opening and closing ---------------------------------------------------------------

    @classmethod
    def create(cls, path, capacity):
        """A new, empty ring at ``path``; see ring.pyi."""
        path = os.fspath(path)
        if type(capacity) is not int or capacity < MIN_CAPACITY or capacity & (capacity - 1):
            raise ValueError(f"ring capacity {capacity!r} is not a power of two >= {MIN_CAPACITY}")
        # Built under a temporary name and renamed into place: a consumer attaching meanwhile
        # sees the old file or the complete new one, never a half-written header.
        tmp = f"{path}.{os.getpid()}.tmp"
        fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        ring = None
        try:
            os.ftruncate(fd, HEADER_SIZE + capacity)
            ring = cls._map(path, fd, HEADER_SIZE + capacity)
            _CONST.pack_into(ring._mm, 0, MAGIC, VERSION, HEADER_SIZE, capacity)
            ring._setup(capacity)
            os.rename(tmp, path)
        except BaseException:
            if ring is not None:
                ring.close()
            _unlink_quietly(tmp)
            raise
        finally:
            os.close(fd)
        return ring

    @classmethod
    def attach(cls, path):
        """The existing ring at ``path``, validated; see ring.pyi."""
        path = os.fspath(path)
        fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
        try:
            size = os.fstat(fd).st_size
            if size < HEADER_SIZE:
                raise ValueError(
                    f"{path}: not a fastgw ring (file of {size} bytes is smaller than the {HEADER_SIZE}-byte header)"
                )
            ring = cls._map(path, fd, size)
        finally:
            os.close(fd)
        try:
            ring._validate(size)
        except BaseException:
            ring.close()
            raise
        return ring

    @classmethod
    def _map(cls, path, fd, size):
        ring = cls()
        ring._path = path
        ring._mm = mmap.mmap(fd, size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        ring._q = memoryview(ring._mm)[:HEADER_SIZE].cast("Q")  # the header, as u64 words
        return ring

    def _validate(self, size):
        magic, version, header_size, capacity = _CONST.unpack_from(self._mm, 0)
        path = self.path
        if magic != MAGIC:
            raise ValueError(f"{path}: not a fastgw ring (bad magic {magic!r})")
        if version != VERSION:
            raise ValueError(f"{path}: ring version {version} is not supported (expected {VERSION})")
        if header_size != HEADER_SIZE:
            raise ValueError(f"{path}: ring header size {header_size} is not {HEADER_SIZE}")
        if capacity < MIN_CAPACITY or capacity & (capacity - 1):
            raise ValueError(f"{path}: ring capacity {capacity} is not a power of two >= {MIN_CAPACITY}")
        if size != HEADER_SIZE + capacity:
            raise ValueError(f"{path}: ring file is {size} bytes, expected {HEADER_SIZE + capacity} for capacity {capacity}")
        head, tail = self._q[_HEAD], self._q[_TAIL]
        if tail > head or head - tail > capacity or (head | tail) & 7:
            raise ValueError(f"{path}: ring positions are inconsistent (head {head}, tail {tail})")
        self._setup(capacity)

    def _setup(self, capacity):
        self._capacity = capacity
        self._mask = capacity - 1
        self._max = capacity // 2 - 4
        self._u32 = memoryview(self._mm).cast("I")  # the whole file as u32 (its size is now checked)

    def close(self):
        """Unmap the ring (idempotent). The file stays: the other side may still use it."""
        if self._mm is None:
            return
        # The views must be released before the mapping can close.
        self._q.release()
        if self._u32 is not None:
            self._u32.release()
        self._mm.close()
        self._mm = self._q = self._u32 = None

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()

    def _words(self):
        if self._q is None:
            raise ValueError("ring is closed")
        return self._q

    # --- Producer --------------------------------------------------------------------------

    def claim(self):
        """Back every page with memory now, writable; see ring.pyi."""
        self._words()
        try:
            self._mm.madvise(_MADV_POPULATE_WRITE)
        except OSError as exc:
            if exc.errno == errno.EINVAL:  # a kernel before 5.14
                return False
            raise OSError(exc.errno, exc.strerror, self.path) from None
        return True

    def push(self, record):
        """Append one record; False (and ``full`` counted) when it does not fit. Never blocks."""
        if type(record) is not bytes:
            raise TypeError(f"record must be bytes, not {type(record).__name__}")
        q = self._words()
        n = len(record)
        if n > self._max:
            raise ValueError(f"record of {n} bytes exceeds the ring's limit of {self._max} bytes (capacity/2 - 4)")
        head = q[_HEAD]
        tail = q[_TAIL]
        slot = (n + 11) & ~7
        off = head & self._mask
        room = self._capacity - off
        total = slot if slot <= room else room + slot
        if total > self._capacity - (head - tail):
            q[_FULL] += 1
            return False
        if slot > room:
            self._u32[(HEADER_SIZE + off) >> 2] = WRAP
            off = 0
        start = HEADER_SIZE + off
        mm = self._mm
        mm[start + slot - 8 : start + slot] = _ZERO8  # the padding (rewritten below where used)
        self._u32[start >> 2] = n
        mm[start + 4 : start + 4 + n] = record
        q[_PUSHED] += 1
        q[_HEAD] = head + total  # publishes the slot
        return True

    # --- Consumer --------------------------------------------------------------------------

    def read(self, max_records, max_bytes, until=None, start=None):
        """The records after tail (tail is not moved) and the position to commit; see ring.pyi."""
        q = self._words()
        head = q[_HEAD]  # loaded before any slot is read
        pos = q[_TAIL]
        if start is not None:
            if start < pos or start > head or start & 7:
                raise ValueError(f"read start {start} is not a position in [tail {pos}, head {head}]")
            pos = start
        limit = head
        if until is not None:
            limit = pos if until < pos else (until if until < head else head)
        records = []
        nbytes = 0
        u32, mm, mask, capacity = self._u32, self._mm, self._mask, self._capacity
        while pos < limit and len(records) < max_records:
            off = pos & mask
            n = u32[(HEADER_SIZE + off) >> 2]
            if n == WRAP:
                step = capacity - off
            elif n <= self._max:
                step = (n + 11) & ~7
            else:
                step = capacity + 1  # no record is that long: corrupt
            if pos + step > limit:
                raise ValueError(f"{self.path}: ring is corrupt at position {pos}")
            if n != WRAP:
                if records and nbytes + n > max_bytes:
                    break
                at = HEADER_SIZE + off + 4
                records.append(mm[at : at + n])
                nbytes += n
            pos += step
        return records, pos

    def commit(self, token):
        """Advance tail to ``token`` (a position returned by read); see ring.pyi."""
        q = self._words()
        tail, head = q[_TAIL], q[_HEAD]
        if token < tail or token > head or token & 7:
            raise ValueError(f"commit token {token} is not a position in [tail {tail}, head {head}]")
        q[_TAIL] = token

    # --- State -----------------------------------------------------------------------------

    @property
    def path(self):
        return self._path

    @property
    def capacity(self):
        return self._capacity

    @property
    def head(self):
        return self._words()[_HEAD]

    @property
    def tail(self):
        return self._words()[_TAIL]

    @property
    def used(self):
        q = self._words()
        tail = q[_TAIL]  # tail first: head only grows, so the difference is never negative
        return q[_HEAD] - tail

    @property
    def pushed(self):
        return self._words()[_PUSHED]

    @property
    def full(self):
        return self._words()[_FULL]

    @property
    def producer_pid(self):
        return self._words()[_PID]

    @producer_pid.setter
    def producer_pid(self, pid):
        self._words()[_PID] = pid

    @property
    def max_record(self):
        return self._max

    @property
    def closed(self):
        return self._mm is None

    def __repr__(self):
        if self._mm is None:
            return f"<Ring {self.path!r} closed>"
        q = self._q
        return (
            f"<Ring {self.path!r} capacity={self.capacity} head={q[_HEAD]} tail={q[_TAIL]} "
            f"used={q[_HEAD] - q[_TAIL]} pushed={q[_PUSHED]} full={q[_FULL]} producer_pid={q[_PID]}>"
        )


def _unlink_quietly(path):
    try:
        os.unlink(path)
    except OSError:
        pass
