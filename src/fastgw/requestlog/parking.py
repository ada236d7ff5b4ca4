"""Parked batches: what the exporter moves from the rings to disk while its sink is down.

Why: a sink that is down leaves the records in the workers' rings, and once a ring is full its
worker spills every record to disk on the request path (a write and a CRC per request, 7 µs and
more of the worker's CPU, on the core that answers requests). The exporter has nothing else to do
while its sink is down, so it keeps the rings empty instead: each batch that comes due is written
to a parked file and committed to the rings, and the workers keep pushing into shared memory. The
sink is tried again from the oldest parked file; once it takes writes, parked files and the rings
take turns (the rings only while they hold records), so the backlog drains while the rings stay
flat. Rows don't need the push order: the sink keeps one row per request id whatever comes first.

A parked file is one worker's batch: ``<spill_root>/parked/parked-<seq>.wal`` (seq = 1, 2, ...),
a 40-byte header (b"FGWPARKD", u32 version, u32 header size, u64 seq, u64 worker, u64 records),
then the records framed as in a spill segment (u32 length, u32 CRC-32 of the length's 4 bytes and
the payload, payload). It is written whole under a temporary name and renamed into place before
the rings are committed, so a parked file is complete or absent after a crash of the process (not
fsynced: after a power cut it is as safe as the page cache was, like the workers' spill files);
it is deleted once the sink took it.

Delivery stays at least once: an exporter killed between the rename and the rings' commit finds
the records twice (the parked file, the ring), and the sink's ReplacingMergeTree keeps one. A CRC
that fails (the disk, not us) ends the file: what follows is lost, counted once and logged. A
file that is missing or not a parked file is lost the same way; any other error reading it (too
many open files, an I/O error) leaves it for the next read.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import struct
import time

from fastgw.requestlog.buffer import read_records, record_head
from fastgw.requestlog.file_writes import write_all

log = logging.getLogger("fastgw.exporter")

_HEAD = struct.Struct("<8sIIQQQ")  # magic, version, header size, seq, worker, records
_MAGIC = b"FGWPARKD"
_NAME = re.compile(r"parked-(\d+)\.wal$")


def parked_path(folder: str, seq: int) -> str:
    return os.path.join(folder, f"parked-{seq:012d}.wal")


class ParkedBatch:
    """A parked file's records, read for the sink; ``commit()`` deletes the file. Quacks like
    buffer.Batch where the exporter uses one (records, from_ring, ends_segment, commit)."""

    __slots__ = ("records", "seq", "worker", "_store", "_committed")

    from_ring = False
    ends_segment = False

    def __init__(self, store: ParkedStore, seq: int, worker: int, records: list[bytes]) -> None:
        self.records, self.seq, self.worker = records, seq, worker
        self._store = store
        self._committed = False

    def commit(self) -> None:
        if not self._committed:
            self._store._done(self)
            self._committed = True


class ParkedStore:
    """The exporter's parked files, oldest first. One exporter per folder (the gateway's lock on
    the spill folder, ``LogPaths.lock``, covers this one: it is inside it)."""

    def __init__(self, folder: str) -> None:
        self.folder = folder
        os.makedirs(folder, exist_ok=True)
        for name in os.listdir(folder):  # a park interrupted before its rename
            if name.endswith(".tmp"):
                with contextlib.suppress(OSError):
                    os.unlink(os.path.join(folder, name))
        # Each pending file's seq -> its records (as its header says), oldest first: files are only
        # ever added with a higher seq, so the dict's order is the files' order.
        seqs = sorted(int(m.group(1)) for m in map(_NAME.match, os.listdir(folder)) if m)
        self._files = {seq: self._header_count(seq) for seq in seqs}
        self._next = (seqs[-1] if seqs else 0) + 1
        if seqs:
            log.warning("request log: %d parked file(s) in %s (%d records) go to the sink first", len(seqs), folder,
                        self.pending_records)
        self.parked = 0  # records parked by this process
        self.unparked = 0  # records of parked files the sink took (committed), earlier processes' files too
        self.lost = 0  # parked files lost whole or in part (missing, not a parked file, a failed CRC)
        self._lost_seqs: set[int] = set()  # each counted once, however often it is read
        self._warned_at = 0.0

    @property
    def pending(self) -> int:
        """Parked files not yet committed."""
        return len(self._files)

    @property
    def pending_records(self) -> int:
        """Records in the parked files not yet committed (as their headers say)."""
        return sum(self._files.values())

    def _header_count(self, seq: int) -> int:
        try:
            with open(parked_path(self.folder, seq), "rb") as f:
                header = f.read(_HEAD.size)
            return _HEAD.unpack(header)[5] if len(header) == _HEAD.size else 0
        except (OSError, struct.error):
            return 0  # read() sorts it out

    def park(self, worker: int, records: list[bytes]) -> None:
        """Write ``records`` to a new parked file, complete once this returns. OSError on failure
        (nothing is left behind then, and the caller leaves the records where they were)."""
        seq = self._next
        path = parked_path(self.folder, seq)
        tmp = f"{path}.tmp"
        parts = [_HEAD.pack(_MAGIC, 1, _HEAD.size, seq, worker, len(records))]
        for record in records:
            parts.append(record_head(record))
            parts.append(record)
        data = b"".join(parts)
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
            try:
                write_all(lambda chunk: os.write(fd, chunk), data, tmp)
            finally:
                os.close(fd)
            os.rename(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        self._next = seq + 1
        self._files[seq] = len(records)
        self.parked += len(records)

    def read(self, max_records: int, skip: int = 0) -> list[ParkedBatch]:
        """Whole parked files, oldest first after the first ``skip`` (those in flight), while they
        fit in ``max_records`` (the first always comes). A file that is lost (missing, not a
        parked file) is dropped here, logged; one that can't be read now (any other error) ends
        the read, so the files in flight stay the first ``skip`` ones."""
        batches: list[ParkedBatch] = []
        room = max_records
        for seq in list(self._files)[skip:]:
            try:
                batch = self._load(seq)
            except OSError as exc:
                now = time.monotonic()
                if now - self._warned_at >= 10.0:
                    self._warned_at = now
                    log.error("request log: cannot read parked file %s now (%s); trying again later",
                              parked_path(self.folder, seq), exc)
                break
            if batch is None:
                continue
            if batches and len(batch.records) > room:
                break
            batches.append(batch)
            room -= len(batch.records)
            if room <= 0:
                break
        return batches

    def _load(self, seq: int) -> ParkedBatch | None:
        """The file's records; None if it is lost (then dropped); OSError if it can't be read now."""
        path = parked_path(self.folder, seq)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError as exc:
            self._lose(seq, f"{path}: {exc}")
            return None
        try:
            header = os.pread(fd, _HEAD.size, 0)
            if len(header) != _HEAD.size or _HEAD.unpack(header)[:4] != (_MAGIC, 1, _HEAD.size, seq):
                self._lose(seq, f"{path}: not a parked file")
                return None
            records, end, _ = read_records(fd, _HEAD.size, 1 << 62, 1 << 62)
            size = os.fstat(fd).st_size
        finally:
            os.close(fd)
        if end != size and seq not in self._lost_seqs:
            # Written whole and renamed: a short or damaged file is the disk's doing.
            self._lost_seqs.add(seq)
            self.lost += 1
            log.error("request log: parked file %s is damaged after %d records; the rest is lost", path, len(records))
        return ParkedBatch(self, seq, _HEAD.unpack(header)[4], records)

    def _lose(self, seq: int, why: str) -> None:
        self.lost += 1
        log.error("request log: parked file unreadable (%s); its records are lost", why)
        del self._files[seq]
        with contextlib.suppress(OSError):
            os.unlink(parked_path(self.folder, seq))

    def _done(self, batch: ParkedBatch) -> None:
        if self._files.pop(batch.seq, None) is not None:
            self._lost_seqs.discard(batch.seq)
            self.unparked += len(batch.records)
        with contextlib.suppress(OSError):
            os.unlink(parked_path(self.folder, batch.seq))

    def __repr__(self) -> str:
        return f"<ParkedStore {self.folder!r} pending={self.pending} parked={self.parked} unparked={self.unparked}>"
