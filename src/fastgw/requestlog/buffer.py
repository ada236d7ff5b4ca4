"""Log records from a worker to the exporter: RecordBuffer (worker side), RecordDrain (exporter side).

Why: a worker must hand off one record per request without blocking, and a slow or dead exporter
must cost neither the request nor the record. So the worker pushes into its shared-memory Ring
(``fastgw._native.ring``); when the ring is full, records go in order to write-ahead files on
disk, replayed once the exporter catches up. Delivery is at least once: the exporter commits a
batch after its sink wrote it, and a restarted exporter starts again from the last commit.

Files per worker: ``<dir>/ring-<w>.shm`` (the Ring), ``<dir>/ring-<w>.ctl`` (u64 control words,
one writer each) and ``<spill_dir>/spill-<seq>.wal`` (segments, seq = 1, 2, ... never reused):
a 32-byte header (b"FGWSPILL", u32 version, u32 header size, u64 seq, u64 ring_pos), then records
as u32 length, u32 CRC-32 of the length's 4 bytes and the payload, payload (little-endian).
Producer words: OPEN (last segment created), SEALED (last it will never append to), ADOPTED,
SPILLED, DROPPED. Consumer words: DONE (last segment replayed, committed, deleted), REPLAY_OFF
(committed offset in segment DONE+1), REPLAYED, EXPORTED, TORN.

The order is the ring's, with each segment inserted at its ring_pos. Invariants:

1. The producer spills when the ring refuses a record (or it exceeds ring.max_record): it
   creates segment OPEN+1 with ring_pos = head, and pushes nothing into the ring while spilling,
   so head stays at ring_pos: every ring record below it came before the segment.
2. It stops spilling at the first push that finds the ring empty (all before the spill is
   committed): it seals the segment (close, then SEALED = seq) and pushes into the ring again,
   at ring_pos or above, after the segment. So the producer never waits for the replay: the
   ring takes new records while the disk drains.
3. A segment's header is written before OPEN names it; every append completes before SEALED
   covers it. At segment_bytes a segment is sealed and the next opened (same ring_pos). A failed
   write seals the segment (a torn tail); the record goes into the ring if it fits, else it is
   dropped: counted in DROPPED, logged at most once a second.
4. The consumer loads head, then OPEN: a segment created after that load has ring_pos >= that
   head, so reading the ring up to the head it loaded never passes a segment it has not seen.
5. It reads the ring only below the ring_pos of segment DONE+1, replays that segment once tail
   has reached ring_pos, and finishes it only if it loaded SEALED >= seq *before* reading to the
   end of the file (then nothing can follow). In a sealed segment an incomplete or CRC-failing
   record ends it (TORN += 1); in an open one it may be an append in progress: the consumer waits.
6. Commits: ring batch -> tail; segment batch -> REPLAY_OFF; finished segment -> REPLAY_OFF = 0,
   DONE = seq, then the file is deleted. A crash in between replays the segment again or leaves a
   file the next RecordDrain deletes: at least once, never lost.
7. A new producer (restarted worker) seals the segment its predecessor left open: a record torn
   by the kill becomes a torn tail. Meanwhile the exporter replays the open segment as it is.
8. A control file made while segments exist (the ring was lost: /dev/shm wiped) adopts them:
   seq <= ADOPTED is replayed first, as if at ring_pos 0. One producer and one consumer per ring.

Control words are stored through a memoryview cast to u64: atomicity and ordering as in the pure
ring twin (aligned 8-byte stores, total store order as on x86-64).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import mmap
import os
import re
import struct
import time
import zlib
from typing import Any, TypeVar

from fastgw import _native

__all__ = ["Batch", "RecordBuffer", "RecordDrain", "segment_path"]

log = logging.getLogger("fastgw.requestlog")
_T = TypeVar("_T")

DEFAULT_CAPACITY = 1 << 26  # 64 MiB of ring per worker: two batches of 5,000 records of ~3 KB, and room
DEFAULT_SEGMENT_BYTES = 64 << 20

_SEG = struct.Struct("<8sIIQQ")  # magic, version, header size, seq, ring_pos
_SEG_MAGIC = b"FGWSPILL"
_REC = struct.Struct("<II")  # length, crc32
_LEN = struct.Struct("<I")
_MAX_SPILLED = 1 << 28  # a length beyond this is garbage, not a record
_CHUNK = 1 << 20  # bytes read from a segment at a time
_SEGMENT_NAME = re.compile(r"spill-(\d+)\.wal$")

_CTL_MAGIC = b"FGWSPCTL"
_CTL_HEAD = struct.Struct("=8sII")  # magic, version, size
_CTL_SIZE = 384
# Control words (index = byte offset // 8); producer's at 128, consumer's at 256.
OPEN, SEALED, ADOPTED, SPILLED, DROPPED = 16, 17, 18, 19, 20
DONE, REPLAY_OFF, REPLAYED, EXPORTED, TORN = 32, 33, 34, 35, 36

_MORE, _END, _TORN = 0, 1, 2  # why read_records stopped: a limit, end of file, a bad record


def segment_path(spill_dir: str, seq: int) -> str:
    return os.path.join(spill_dir, f"spill-{seq:012d}.wal")


def _control_path(ring_path: str) -> str:
    return os.path.splitext(ring_path)[0] + ".ctl"


class _Control:
    """The control file, mapped: ``words[OPEN]`` etc. (see the module docstring)."""

    def __init__(self, path: str, spill_dir: str, replace: bool) -> None:
        """Map it, making it first if missing, or anew if ``replace`` (the ring is new)."""
        if replace or not os.path.exists(path):
            _make_control(path, spill_dir, replace)
        with open(path, "r+b") as f:
            self._mm = mmap.mmap(f.fileno(), 0)
        if len(self._mm) != _CTL_SIZE or _CTL_HEAD.unpack_from(self._mm, 0) != (_CTL_MAGIC, 1, _CTL_SIZE):
            self._mm.close()
            raise ValueError(f"{path}: not a fastgw spill control file")
        self.words = memoryview(self._mm).cast("Q")

    def close(self) -> None:
        self.words.release()
        self._mm.close()


def _make_control(path: str, spill_dir: str, replace: bool) -> None:
    data = bytearray(_CTL_SIZE)
    _CTL_HEAD.pack_into(data, 0, _CTL_MAGIC, 1, _CTL_SIZE)
    with memoryview(data).cast("Q") as words:
        seqs = _segments_on_disk(spill_dir)
        if seqs:  # invariant 8
            words[DONE] = min(seqs) - 1
            words[OPEN] = words[SEALED] = words[ADOPTED] = max(seqs)
            log.warning("request log: adopting %d spill segment(s) found in %s", len(seqs), spill_dir)
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "wb") as f:
        f.write(data)
    try:
        if replace:
            os.replace(tmp, path)
        else:
            os.link(tmp, path)  # fails if the other side made it meanwhile: theirs is used
    except FileExistsError:
        pass
    finally:
        _unlink_quietly(tmp)


def _segments_on_disk(spill_dir: str) -> list[int]:
    try:
        names = os.listdir(spill_dir)
    except OSError:
        return []
    return sorted(int(m.group(1)) for m in map(_SEGMENT_NAME.match, names) if m)


def _unlink_quietly(path: str) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)


class _Closing:
    def __enter__(self: _T) -> _T:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()  # type: ignore[attr-defined]


@contextlib.contextmanager
def _folder_lock(folder: str) -> Any:
    # Not the gateway's own lock file (paths.py): the workers hold that one, inherited, already.
    fd = os.open(os.path.join(folder, ".rings-sizing.lock"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def fitting_capacity(ring_path: str, wanted: int) -> int:
    """The largest power of two up to ``wanted`` that the ring's filesystem still has room for.

    A ring file is sparse: its pages are claimed as records first reach them, and a write to a
    page that a full tmpfs cannot provide kills the process with SIGBUS. A container's /dev/shm
    is 64 MB unless it is given more (``docker run --shm-size``), less than one default ring. So
    a ring is made smaller, with a warning, when the free space, less what the other rings in the
    folder have yet to claim, cannot hold it. (Other users of the filesystem can still fill it
    later; this catches the configuration that never fits.)
    """
    folder = os.path.dirname(ring_path) or "."
    page = os.sysconf("SC_PAGE_SIZE")
    try:
        st = os.statvfs(folder)
        entries = list(os.scandir(folder))
    except OSError:
        return wanted  # nothing to go by: as configured
    # Two measures, the smaller kept. The free space, less what this folder's sparse rings have
    # yet to claim; and, as the free count of a tmpfs can lag behind pages just written, the
    # filesystem's size less everything this folder's files hold or will hold.
    free = st.f_bavail * st.f_frsize
    held = 0
    for entry in entries:
        try:
            if entry.path == ring_path or not entry.is_file(follow_symlinks=False):
                continue
            info = entry.stat(follow_symlinks=False)
        except OSError:  # gone meanwhile: another worker's file renamed into place
            continue
        claimed, size = info.st_blocks * 512, -(-info.st_size // page) * page
        if entry.name.endswith(".shm"):
            free -= max(0, size - claimed)  # promised, not yet claimed
        held += max(size, claimed)
    room = min(free, st.f_blocks * st.f_frsize - held)
    capacity = wanted
    floor = _native.ring.MIN_CAPACITY * 16  # 64 KiB, the smallest logging.ring_size
    # The ring's header takes a page of its own, and its control file another.
    while capacity > floor and capacity + 2 * page > room:
        capacity //= 2
    if capacity < wanted:
        log.warning("request log: %s has %d MiB free, not enough for a ring of %d MiB (logging.ring_size); "
                    "this one gets %d KiB. Give it more room (docker run --shm-size, or logging.run_dir "
                    "elsewhere) or lower logging.ring_size", folder, max(room, 0) >> 20, wanted >> 20,
                    capacity >> 10)
    return capacity


class RecordBuffer(_Closing):
    """The worker's end: ``push`` never blocks, never awaits and never raises.

    ``ring_path`` is attached if it holds a valid ring (a restarted worker keeps what its
    predecessor left), else created with ``capacity``. ``ring_cls`` picks a twin (default: the
    one ``fastgw._native`` chose).
    """

    def __init__(
        self, ring_path: str, spill_dir: str, capacity: int = DEFAULT_CAPACITY, *,
        segment_bytes: int = DEFAULT_SEGMENT_BYTES, ring_cls: Any = None,
    ) -> None:
        ring_path, self._spill_dir = os.fspath(ring_path), os.fspath(spill_dir)
        os.makedirs(os.path.dirname(ring_path) or ".", exist_ok=True)
        cls = ring_cls or _native.ring.Ring
        try:
            ring, created = cls.attach(ring_path), False
            if ring.capacity != capacity:
                log.warning("request log: %s keeps its capacity of %d bytes", ring_path, ring.capacity)
        except (FileNotFoundError, ValueError) as exc:
            if isinstance(exc, ValueError):
                log.error("request log: %s; replacing it with an empty ring", exc)
            # Sized and created under a lock of the folder: workers forked together would otherwise
            # each count the free space as theirs alone.
            with _folder_lock(os.path.dirname(ring_path) or "."):
                ring, created = cls.create(ring_path, fitting_capacity(ring_path, capacity)), True
        try:
            self._ctl = _Control(_control_path(ring_path), self._spill_dir, replace=created)
        except BaseException:
            ring.close()
            raise
        self._q = self._ctl.words
        if self._q[OPEN] > self._q[SEALED]:  # invariant 7
            self._q[SEALED] = self._q[OPEN]
        ring.producer_pid = os.getpid()
        # Its pages now, not one page fault per new page inside push. A ring whose folder can't back
        # every page is left alone: a write to such a page would kill the worker (SIGBUS). Its
        # records then all go to the spill folder, which the exporter reads as it reads the ring.
        self._ring_usable = True
        try:
            ring.claim()
        except OSError as exc:
            self._ring_usable = False
            log.error("request log: could not claim the memory of %s (%s): its folder has no room for it, so "
                      "this worker's records go to %s instead. Give it more room (docker run --shm-size, or "
                      "logging.run_dir elsewhere) or lower logging.ring_size", ring_path, exc.strerror, spill_dir)
        self.ring = ring
        self._ring_push = ring.push
        self._max_record = ring.max_record
        self._segment_bytes = segment_bytes
        self._spilling = not self._ring_usable  # spilling for good when the ring can't be used
        # The segment open for appends: its fd (None: none open), seq and size.
        self._fd: int | None = None
        self._seq = self._size = 0
        self._error: Exception | None = None  # the last spill failure, for the drop log
        self._last_log, self._unlogged = float("-inf"), 0  # drops are logged once a second

    def push(self, record: bytes) -> None:
        """Hand one serialised record to the exporter: ring, else spill file, else counted drop."""
        try:
            if not self._spilling and self._ring_push(record):
                return
        except (TypeError, ValueError):
            pass  # longer than max_record, not bytes, or closed: the slow path sorts it out
        self._push_slow(record)

    def _push_slow(self, record: bytes) -> None:
        try:
            if self._q is None:
                raise ValueError("the record buffer is closed")
            if type(record) is not bytes:
                raise TypeError(f"record must be bytes, not {type(record).__name__}")
            fits = len(record) <= self._max_record
            # There are three cases (numbers of the module docstring's invariants).
            # 2. Spilling, and the exporter has caught up with everything before the spill.
            if self._spilling and fits and self._ring_usable and self.ring.used == 0:
                self._seal()
                self._spilling = False
                if self._ring_push(record):
                    return
            # 1. The ring refused the record (or cannot hold it), or a spill is under way.
            if not self._spilling:
                self._spilling = True
                log.warning("request log: ring %s full or record too long: spilling", self.ring.path)
            if self._append(record):
                return
            # 3. The disk failed and the segment is sealed: the ring takes it if it can.
            if fits and self._ring_usable and self._ring_push(record):
                self._spilling = False
                return
            raise self._error or OSError("spill failed")
        except Exception as exc:
            self._drop(exc)

    def _append(self, record: bytes) -> bool:
        n = len(record)
        try:
            if self._fd is None:
                self._open_segment()
            assert self._fd is not None
            written = os.writev(self._fd, (record_head(record), record))
            if written != _REC.size + n:
                raise OSError(errno.ENOSPC, f"short write to a spill segment ({written} of {_REC.size + n} bytes)")
        except OSError as exc:
            self._error = exc
            self._seal()
            return False
        self._size += written
        self._q[SPILLED] += 1
        if self._size >= self._segment_bytes:
            self._seal()
        return True

    def _open_segment(self) -> None:
        seq = self._q[OPEN] + 1
        os.makedirs(self._spill_dir, exist_ok=True)
        path = segment_path(self._spill_dir, seq)
        # O_TRUNC: a file of this seq can only be left by a producer killed before publishing it.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND | os.O_CLOEXEC, 0o600)
        try:
            header = _SEG.pack(_SEG_MAGIC, 1, _SEG.size, seq, self.ring.head)
            if os.write(fd, header) != len(header):
                raise OSError(errno.ENOSPC, "short write of a spill segment header")
        except BaseException:
            os.close(fd)
            _unlink_quietly(path)
            raise
        self._q[OPEN] = seq  # invariant 3: published only once the header is there
        self._fd, self._seq, self._size = fd, seq, len(header)

    def _seal(self) -> None:
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        with contextlib.suppress(OSError):
            os.close(fd)
        self._q[SEALED] = self._seq  # after the last append: invariant 3

    def _drop(self, exc: Exception) -> None:
        if self._q is not None:
            self._q[DROPPED] += 1
        self._unlogged += 1
        now = time.monotonic()
        if now - self._last_log >= 1.0:  # loud, but at most once a second
            log.error("request log: dropped %d record(s): ring full and spill failed: %s", self._unlogged, exc)
            self._last_log, self._unlogged = now, 0

    spilling = property(lambda self: self._spilling, doc="Records go to the spill, not the ring.")
    spilled = property(lambda self: self._q[SPILLED])
    dropped = property(lambda self: self._q[DROPPED])
    pushed = property(lambda self: self.ring.pushed + self._q[SPILLED] + self._q[DROPPED], doc="Records pushed.")
    exported = property(lambda self: self._q[EXPORTED], doc="Records the exporter has committed, ring and spill.")

    def close(self) -> None:
        """Seal the open segment (the exporter can then finish it), unmap everything."""
        if self._q is None:
            return
        self._seal()
        self.ring.close()
        self._ctl.close()
        self._q = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        if self._q is None:
            return "<RecordBuffer closed>"
        return (
            f"<RecordBuffer {self.ring.path!r} spilling={self._spilling} pushed={self.pushed} "
            f"spilled={self.spilled} dropped={self.dropped} segment={self._seq if self._fd is not None else None}>"
        )


class Batch:
    """Records read by RecordDrain.read_batch; ``commit()`` once the sink has written them."""

    __slots__ = ("records", "_drain", "_token", "_committed")

    def __init__(self, drain: RecordDrain, records: list[bytes], token: Any) -> None:
        self.records = records
        self._drain = drain
        self._token = token  # int: a ring position; tuple: (seq, end offset, finished, torn)
        self._committed = False

    @property
    def from_ring(self) -> bool:
        """Read from the ring itself (not a spill segment): ``end`` is then a ring position."""
        return type(self._token) is int

    @property
    def ends_segment(self) -> bool:
        """The last records of a spill segment: committing it finishes (deletes) the segment."""
        return type(self._token) is tuple and self._token[2]

    @property
    def torn(self) -> bool:
        """It ends a segment whose last record was torn or unreadable."""
        return type(self._token) is tuple and self._token[3]

    @property
    def end(self) -> int:
        """The ring position just past this batch (ring batches only)."""
        if type(self._token) is not int:
            raise ValueError("a spill segment's batch has no ring position")
        return self._token

    def commit(self) -> None:
        """Mark the records exported (idempotent). Commit batches in the order they were read."""
        if not self._committed:
            # An empty batch moves nothing. One read ahead carries the token of the batch before
            # it, which may be committed already: committing that token again would fail.
            if self.records:
                self._drain._commit(self._token, len(self.records))
            self._committed = True


class RecordDrain(_Closing):
    """The exporter's end for one worker: the ring, then its spill segments, in push order."""

    def __init__(self, ring_path: str, spill_dir: str, *, ring_cls: Any = None) -> None:
        ring_path, self._spill_dir = os.fspath(ring_path), os.fspath(spill_dir)
        self.ring = (ring_cls or _native.ring.Ring).attach(ring_path)
        try:
            self._ctl = _Control(_control_path(ring_path), self._spill_dir, replace=False)
        except BaseException:
            self.ring.close()
            raise
        self._q = self._ctl.words
        self._seg: tuple[int, int, int] | None = None  # (seq, fd, ring_pos) being replayed
        for seq in _segments_on_disk(self._spill_dir):  # invariant 6: a crash after DONE
            if seq <= self._q[DONE]:
                _unlink_quietly(segment_path(self._spill_dir, seq))

    def read_batch(self, max_records: int, max_bytes: int, after: Batch | None = None) -> Batch:
        """The next records after the last commit (the same ones again until committed).

        At most ``max_records``, and no more once ``max_bytes`` of payload is reached (the first
        record always comes). An empty batch means nothing is ready yet.

        ``after``, this drain's last batch, read and not yet committed, asks for the records that
        follow it (an older batch would read records again), so the next batch can be prepared
        while that one is written; commit the two in order. The read goes on from the ring into
        the segment due next, and through a segment, but not beyond a segment's last batch (the
        segment is finished by that batch's commit): there the batch is empty, and the caller
        commits first.
        """
        if after is not None:
            return self._read_ahead(max_records, max_bytes, after)
        ring, q = self.ring, self._q
        while True:
            head = ring.head  # invariant 4: before OPEN
            seq = q[DONE] + 1
            if seq > q[OPEN]:
                return Batch(self, *ring.read(max_records, max_bytes, head))
            seg = self._segment(seq)
            if seg is None:
                self._finish(seq, torn=True)
                continue
            if ring.tail < seg[2]:
                return Batch(self, *ring.read(max_records, max_bytes, min(head, seg[2])))
            batch = self._segment_batch(seq, seg[1], max(q[REPLAY_OFF], _SEG.size), max_records, max_bytes)
            if batch.ends_segment and not batch.records:
                self._finish(seq, torn=batch.torn)
                continue
            return batch

    def _read_ahead(self, max_records: int, max_bytes: int, after: Batch) -> Batch:
        """``read_batch(after=...)``: the same order as reading once ``after`` is committed."""
        if after._drain is not self or after._committed:
            raise ValueError("read ahead of a batch that is not this drain's uncommitted one")
        token, ring, q = after._token, self.ring, self._q
        if type(token) is int:  # after ring records: more of the ring, or the segment due next
            head = ring.head  # invariant 4: before OPEN
            seq = q[DONE] + 1
            if seq > q[OPEN]:
                return Batch(self, *ring.read(max_records, max_bytes, head, token))
            seg = self._segment(seq)
            if seg is None:  # unreadable: the next read from the committed tail skips it
                return Batch(self, [], token)
            if token < seg[2]:
                # Guard: head is past ring_pos only once the producer went back to the ring, which it
                # does when the ring is empty, so tail (<= token) is at ring_pos by then (invariant 2).
                return Batch(self, *ring.read(max_records, max_bytes, min(head, seg[2]), token))
            off = max(q[REPLAY_OFF], _SEG.size)  # tail will have reached ring_pos: replay it
        else:  # after a segment's records: more of that segment
            seq, off, finished, _ = token
            seg = self._segment(seq) if not finished else None
            if seg is None:  # finished: the next segment or the ring, once it is committed
                return Batch(self, [], token)
        return self._segment_batch(seq, seg[1], off, max_records, max_bytes)

    def _segment_batch(self, seq: int, fd: int, off: int, max_records: int, max_bytes: int) -> Batch:
        """Segment ``seq``'s records from ``off``; the batch ends the segment only if SEALED was
        loaded before reading to its end (invariant 5): an open segment may still grow."""
        sealed = self._q[SEALED] >= seq
        records, end, why = read_records(fd, off, max_records, max_bytes)
        finished = sealed and why != _MORE
        return Batch(self, records, (seq, end, finished, finished and why == _TORN))

    def _segment(self, seq: int) -> tuple[int, int, int] | None:
        """Segment ``seq`` opened for replay; None (logged) if it is missing or unreadable."""
        if self._seg is not None and self._seg[0] == seq:
            return self._seg
        self._close_segment()
        path = segment_path(self._spill_dir, seq)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            header = os.pread(fd, _SEG.size, 0)
            if len(header) != _SEG.size or _SEG.unpack(header)[:4] != (_SEG_MAGIC, 1, _SEG.size, seq):
                os.close(fd)
                raise ValueError("bad header")
        except (OSError, ValueError) as exc:
            log.error("request log: spill segment %s is unreadable (%s); its records are lost", path, exc)
            return None
        ring_pos = 0 if seq <= self._q[ADOPTED] else _SEG.unpack(header)[4]  # invariant 8
        self._seg = (seq, fd, ring_pos)
        return self._seg

    def _close_segment(self) -> None:
        if self._seg is not None:
            os.close(self._seg[1])
            self._seg = None

    def _commit(self, token: Any, n: int) -> None:
        q = self._q
        if type(token) is int:
            self.ring.commit(token)
        else:
            seq, end, finished, torn = token
            if seq != q[DONE] + 1:
                raise ValueError(f"stale batch: segment {seq} is already committed")
            if finished:
                self._finish(seq, torn)
            else:
                q[REPLAY_OFF] = end
            q[REPLAYED] += n
        q[EXPORTED] += n

    def _finish(self, seq: int, torn: bool) -> None:
        q = self._q
        q[REPLAY_OFF] = 0  # invariant 6: this order
        q[DONE] = seq
        if torn:
            q[TORN] += 1
        self._close_segment()
        _unlink_quietly(segment_path(self._spill_dir, seq))

    # Counters: the consumer's, then the producer's (read from the ring header and control file).
    exported = property(lambda self: self._q[EXPORTED])
    ring_exported = property(lambda self: self._q[EXPORTED] - self._q[REPLAYED], doc="Exported from the ring itself.")
    replayed = property(lambda self: self._q[REPLAYED])
    torn = property(lambda self: self._q[TORN], doc="Segments that ended in a torn or unreadable record.")
    spilled = property(lambda self: self._q[SPILLED])
    dropped = property(lambda self: self._q[DROPPED])
    pushed = property(lambda self: self.ring.pushed + self._q[SPILLED] + self._q[DROPPED])

    def close(self) -> None:
        if self._q is None:
            return
        self._close_segment()
        self.ring.close()
        self._ctl.close()
        self._q = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        if self._q is None:
            return "<RecordDrain closed>"
        q = self._q
        return (
            f"<RecordDrain {self.ring.path!r} tail={self.ring.tail} segments={q[DONE] + 1}..{q[OPEN]} "
            f"replay_off={q[REPLAY_OFF]} exported={q[EXPORTED]} replayed={q[REPLAYED]} torn={q[TORN]}>"
        )


def record_head(record: bytes) -> bytes:
    """What precedes ``record`` in a spill segment (and a parked file): its length and CRC."""
    n = len(record)
    return _REC.pack(n, zlib.crc32(record, zlib.crc32(_LEN.pack(n))))


def read_records(fd: int, off: int, max_records: int, max_bytes: int) -> tuple[list[bytes], int, int]:
    """Records of a segment (or a parked file) from ``off``: (records, offset after them, why it stopped)."""
    records: list[bytes] = []
    nbytes = 0
    buf, base = b"", off  # buf holds the file's bytes from offset base
    while len(records) < max_records:
        i = off - base
        if len(buf) - i < _REC.size:
            buf, base, i = os.pread(fd, _CHUNK, off), off, 0
            if len(buf) < _REC.size:
                return records, off, _END if not buf else _TORN
        n, crc = _REC.unpack_from(buf, i)
        if n > _MAX_SPILLED:
            return records, off, _TORN
        if records and nbytes + n > max_bytes:
            return records, off, _MORE
        if len(buf) - i < _REC.size + n:
            buf, base, i = os.pread(fd, max(_CHUNK, _REC.size + n), off), off, 0
            if len(buf) < _REC.size + n:
                return records, off, _TORN
        payload = buf[i + _REC.size : i + _REC.size + n]
        if zlib.crc32(payload, zlib.crc32(buf[i : i + 4])) != crc:
            return records, off, _TORN
        records.append(payload)
        nbytes += n
        off += _REC.size + n
    return records, off, _MORE
