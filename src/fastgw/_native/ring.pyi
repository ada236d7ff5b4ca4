"""A single-producer/single-consumer ring of log records in shared memory (compiled twin:
ring.pyx; pure twin, and the byte layout of the file: _pure/ring.py).

Why: each gateway worker must hand one record per request to the exporter process without
blocking or awaiting. The ring is a file mapping (MAP_SHARED, typically under
/dev/shm/fastgw-<instance>/ring-<worker>.shm), so it outlives a worker that dies and the exporter
still drains it; its positions live in the file too, so a killed exporter restarts from the last
committed tail (delivery is at least once). Both twins write byte-identical files.

Positions (head, tail, tokens) are byte counts since the ring was created: they only grow, and a
record's place in the data region is its position modulo the capacity.
"""
from types import TracebackType

HEADER_SIZE: int  # bytes before the data region (512)
MAGIC: bytes  # the file's first 8 bytes
MIN_CAPACITY: int  # 4096
VERSION: int  # the layout version this module reads and writes
WRAP: int  # the u32 that marks "continue at offset 0" in the data region

class Ring:
    """One ring file, mapped. One process pushes; one process reads and commits."""

    @staticmethod
    def create(path: str, capacity: int) -> Ring:
        """Create (or replace) the ring file at ``path``, empty, with ``capacity`` data bytes.

        The file is built under a temporary name in the same directory and renamed over ``path``,
        so a consumer never attaches to a half-initialised header. Raises ValueError unless
        ``capacity`` is a power of two >= 4096; OSError when the file cannot be made.
        """
    @staticmethod
    def attach(path: str) -> Ring:
        """Map the existing ring at ``path``.

        Raises FileNotFoundError when there is none, and ValueError naming the path and the fault
        when the file is not a ring of this version: too small, bad magic, other version or header
        size, a capacity that is not a power of two >= 4096, a size other than header + capacity,
        or head and tail that cannot be (tail > head, head - tail > capacity, not 8-aligned).
        """
    def close(self) -> None:
        """Unmap (idempotent). The file stays. Every other method then raises ValueError."""
    def __enter__(self) -> Ring: ...
    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None: ...

    # Producer
    def claim(self) -> bool:
        """Back every page of the mapping with memory now, writable (madvise MADV_POPULATE_WRITE).

        Why: a ring file is sparse, so until a record first reaches a page, writing it costs a page
        fault (the page allocated and zeroed) inside ``push``: about 3 µs a record on a 2-core VM,
        for the first lap of the ring. Returns False when the kernel does not know the advice
        (before Linux 5.14): the pages are then claimed by the pushes, as before. Raises OSError
        when the memory is not there to claim (a full tmpfs), where a push would have died of SIGBUS.
        Claimed pages are never returned, so ``push`` then writes only mapped pages.
        """
    def push(self, record: bytes) -> bool:
        """Append ``record``; never blocks, never waits for the consumer.

        Returns False, and counts one in ``full``, when the free space (capacity - used) is less
        than the record needs: its slot, ``(4 + len(record) + 7) & ~7`` bytes, plus, when the slot
        does not fit before the end of the data region, the bytes up to that end (skipped with a
        wrap marker). Raises ValueError for a record longer than ``max_record`` (capacity/2 - 4),
        TypeError for anything but bytes.
        """

    # Consumer
    def read(
        self, max_records: int, max_bytes: int, until: int | None = None, start: int | None = None
    ) -> tuple[list[bytes], int]:
        """The records after the committed tail, oldest first, and the position just past them.

        Tail does not move: pass the position to ``commit`` once the records are safely written
        downstream; until then every read (and any consumer that attaches after a crash) gets the
        same records again. At most ``max_records`` records; no more once their total length would
        exceed ``max_bytes``, except that the first record is always returned. ``until``, when not
        None, is a position (a value ``head`` had) to stop at even if head is further on.
        ``start``, when not None, is a position returned by an uncommitted read: the records after
        it, so a consumer can read its next batch while the previous one is still being written
        (commit the two in order). Raises ValueError for a start below tail, above head, or not a
        slot boundary (a multiple of 8).
        Raises ValueError if the ring's bytes are corrupt.
        """
    def commit(self, token: int) -> None:
        """Move tail to ``token``, a position returned by ``read``, freeing the space below it.

        Raises ValueError for a token below tail or above head (a stale or foreign token).
        """

    # State
    @property
    def path(self) -> str: ...
    @property
    def capacity(self) -> int:
        """Bytes in the data region."""
    @property
    def max_record(self) -> int:
        """The longest record ``push`` accepts: capacity // 2 - 4, so that an empty ring takes any."""
    @property
    def head(self) -> int:
        """Bytes ever pushed (the producer's position)."""
    @property
    def tail(self) -> int:
        """Bytes ever committed (the consumer's position)."""
    @property
    def used(self) -> int:
        """head - tail: bytes pushed and not yet committed (slots, wrap gaps included)."""
    @property
    def pushed(self) -> int:
        """Records ever accepted by push."""
    @property
    def full(self) -> int:
        """Pushes ever refused for lack of space."""
    @property
    def producer_pid(self) -> int:
        """The pid the producer wrote here (0 until then), so the exporter can tell whose ring it is."""
    @producer_pid.setter
    def producer_pid(self, pid: int) -> None: ...
    @property
    def closed(self) -> bool: ...
