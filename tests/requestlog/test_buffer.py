"""RecordBuffer / RecordDrain over both ring twins: spill to disk when the ring is full, replay in
push order, torn tails, disk failures, and producer and consumer restarts (at least once, in order).

The compiled twin is never skipped: if the extension is not built the "cython" cases fail.
"""
import importlib.machinery
import logging
import multiprocessing
import os
import random
import signal
import struct
import subprocess
import sys
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fastgw._native
from fastgw.requestlog import buffer as buffer_module
from fastgw.requestlog.buffer import RecordBuffer, RecordDrain

CAP = 4096
TWINS = ["cython", "pure"]


def _ring_cls(name):
    try:
        module = fastgw._native.load(pure=name == "pure", name="ring")
    except ImportError as exc:
        pytest.fail(f"the compiled twin is not built ({exc}); run: python setup.py build_ext --inplace")
    assert module.__file__.endswith(".py" if name == "pure" else tuple(importlib.machinery.EXTENSION_SUFFIXES))
    return module.Ring


@pytest.fixture(params=TWINS)
def ring_cls(request):
    return _ring_cls(request.param)


@pytest.fixture
def paths(tmp_path):
    return str(tmp_path / "shm" / "ring-0.shm"), str(tmp_path / "spill")


def rec(i, size=200):
    return (b"%08d|" % i + b"r" * size)[:max(size, 9)]


def drain_all(drain, max_records=7, max_bytes=1 << 20):
    out = []
    while True:
        batch = drain.read_batch(max_records, max_bytes)
        if not batch.records:
            batch.commit()
            return out
        out += batch.records
        batch.commit()


def spill_files(spill_dir):
    return sorted(os.listdir(spill_dir)) if os.path.isdir(spill_dir) else []


def test_ring_only(ring_cls, paths):
    with RecordBuffer(*paths, CAP, ring_cls=ring_cls) as buf, RecordDrain(*paths, ring_cls=ring_cls) as drain:
        for i in range(10):
            buf.push(rec(i))
        assert (buf.pushed, buf.spilled, buf.dropped, buf.spilling) == (10, 0, 0, False)
        assert buf.ring.producer_pid == os.getpid()
        batch = drain.read_batch(4, 1 << 20)
        assert batch.records == [rec(i) for i in range(4)]
        assert drain.read_batch(4, 1 << 20).records == batch.records  # not committed yet
        batch.commit()
        batch.commit()  # idempotent
        assert drain_all(drain) == [rec(i) for i in range(4, 10)]
        assert (drain.exported, drain.replayed, drain.pushed) == (10, 0, 10)
        assert "exported=10" in repr(drain) and "pushed=10" in repr(buf)
    assert not spill_files(paths[1])


def test_spill_when_full_then_replay_in_order(ring_cls, paths):
    buf = RecordBuffer(*paths, CAP, ring_cls=ring_cls)
    for i in range(100):
        buf.push(rec(i))
    in_ring = buf.ring.pushed
    assert 10 < in_ring < 30 and buf.spilling
    assert (buf.spilled, buf.dropped, buf.pushed) == (100 - in_ring, 0, 100)
    assert spill_files(paths[1]) == ["spill-000000000001.wal"]
    drain = RecordDrain(*paths, ring_cls=ring_cls)
    assert drain_all(drain) == [rec(i) for i in range(100)]  # the ring's first, then the spill's
    assert (drain.exported, drain.replayed, drain.torn) == (100, 100 - in_ring, 0)
    # The segment is still open (the producer has not pushed since): replayed, not yet deleted.
    assert spill_files(paths[1]) == ["spill-000000000001.wal"]
    # The next push finds the ring empty: it seals the segment and uses the ring again.
    buf.push(rec(100))
    assert not buf.spilling and buf.ring.pushed == in_ring + 1 and buf.spilled == 100 - in_ring
    assert drain_all(drain) == [rec(100)]
    assert spill_files(paths[1]) == []  # replayed, committed, deleted
    for i in range(101, 105):
        buf.push(rec(i))
    assert buf.ring.pushed == in_ring + 5 and drain_all(drain) == [rec(i) for i in range(101, 105)]
    buf.close(), drain.close()


def test_ring_takes_new_records_while_the_spill_is_replayed(ring_cls, paths):
    buf = RecordBuffer(*paths, CAP, ring_cls=ring_cls)
    drain = RecordDrain(*paths, ring_cls=ring_cls)
    order = []
    for i in range(60):
        buf.push(rec(i))
        order.append(rec(i))
    first = drain.read_batch(1000, 1 << 30)  # the ring's records
    first.commit()
    got = first.records
    assert buf.ring.used == 0 and buf.spilling
    for i in range(60, 70):  # the first of these seals the segment: they go to the ring
        buf.push(rec(i))
        order.append(rec(i))
    assert not buf.spilling and buf.spilled == 60 - len(got)
    got += drain_all(drain, max_records=3)
    assert got == order  # the spill (older) before the ring's new records
    assert drain.replayed == buf.spilled and spill_files(paths[1]) == []
    buf.close(), drain.close()


def test_read_ahead_of_an_uncommitted_batch(ring_cls, paths):
    """The exporter reads its next batch while the last is written; commits go in read order."""
    buf = RecordBuffer(*paths, CAP, ring_cls=ring_cls)
    drain = RecordDrain(*paths, ring_cls=ring_cls)
    for i in range(8):
        buf.push(rec(i))
    first = drain.read_batch(3, 1 << 20)
    second = drain.read_batch(3, 1 << 20, after=first)
    third = drain.read_batch(10, 1 << 20, after=second)
    assert [first.records, second.records, third.records] == [
        [rec(i) for i in range(3)], [rec(i) for i in range(3, 6)], [rec(6), rec(7)]]
    assert first.from_ring and drain.ring.tail == 0 and drain.exported == 0  # nothing moved yet
    assert drain.read_batch(10, 1 << 20, after=third).records == []
    first.commit()
    assert drain.exported == 3 and drain.ring.tail == first.end
    # A failed write of ``second`` drops it and ``third``: the next read starts after ``first`` again.
    assert drain.read_batch(10, 1 << 20).records == [rec(i) for i in range(3, 8)]
    with pytest.raises(ValueError, match="not this drain's uncommitted one"):
        drain.read_batch(10, 1 << 20, after=first)  # committed: read without ``after``
    second.commit(), third.commit()
    assert drain.exported == 8 and drain.ring.used == 0
    with RecordDrain(*paths, ring_cls=ring_cls) as other, pytest.raises(ValueError, match="not this drain's"):
        other.read_batch(10, 1 << 20, after=drain.read_batch(1, 1 << 20))
    buf.close(), drain.close()


def test_read_ahead_goes_from_the_ring_into_the_segment_due_and_through_it(ring_cls, paths):
    """The read ahead stops at the segment's ring_pos, goes on into the segment (replayed once the
    ring's batches before it are committed, invariant 5), through it, and stops at its end: the
    segment is finished by its last batch's commit."""
    buf = RecordBuffer(*paths, CAP, ring_cls=ring_cls, segment_bytes=3000)
    drain = RecordDrain(*paths, ring_cls=ring_cls)
    for i in range(40):  # the ring fills, the rest spills into segments of ~12 records
        buf.push(rec(i))
    in_ring = buf.ring.pushed
    assert len(spill_files(paths[1])) == 2
    first = drain.read_batch(2, 1 << 20)
    ring_rest = drain.read_batch(1000, 1 << 30, after=first)
    assert ring_rest.records == [rec(i) for i in range(2, in_ring)]  # up to the segment, not into it
    seg_a = drain.read_batch(5, 1 << 30, after=ring_rest)
    seg_b = drain.read_batch(1000, 1 << 30, after=seg_a)
    assert seg_a.records + seg_b.records == [rec(i) for i in range(in_ring, in_ring + len(seg_a.records + seg_b.records))]
    assert len(seg_a.records) == 5 and not seg_a.from_ring
    with pytest.raises(ValueError, match="no ring position"):
        seg_a.end
    assert drain.read_batch(1000, 1 << 30, after=seg_b).records == []  # the first segment's end
    assert drain.exported == 0 and drain.replayed == 0
    for b in (first, ring_rest, seg_a, seg_b):
        b.commit()
    assert len(spill_files(paths[1])) == 1  # the first segment finished and deleted
    assert drain.exported == in_ring + len(seg_a.records + seg_b.records)
    rest = drain_all(drain)
    assert first.records + ring_rest.records + seg_a.records + seg_b.records + rest == [rec(i) for i in range(40)]
    assert drain.exported == 40 and drain.replayed == 40 - in_ring and drain.torn == 0
    buf.close(), drain.close()


def test_an_open_segment_read_ahead_to_its_end_is_not_finished_by_the_commit(ring_cls, paths):
    """Until the ring's records before it are committed, the producer keeps appending to the segment:
    what the read ahead saw as its end was not the end (invariant 5: SEALED decides)."""
    buf = RecordBuffer(*paths, CAP, ring_cls=ring_cls)
    drain = RecordDrain(*paths, ring_cls=ring_cls)
    for i in range(30):
        buf.push(rec(i))
    in_ring = buf.ring.pushed
    ring_part = drain.read_batch(1000, 1 << 30)
    seg_part = drain.read_batch(1000, 1 << 30, after=ring_part)
    assert seg_part.records == [rec(i) for i in range(in_ring, 30)]
    for i in range(30, 35):  # the ring still holds uncommitted records: these are spilled too
        buf.push(rec(i))
    assert buf.spilling and buf.spilled == 35 - in_ring
    ring_part.commit(), seg_part.commit()
    assert spill_files(paths[1]) == ["spill-000000000001.wal"]  # still open: not finished
    assert drain_all(drain) == [rec(i) for i in range(30, 35)]
    assert drain.exported == 35
    buf.close(), drain.close()


def test_read_ahead_never_passes_a_segment_for_ring_records_pushed_after_it(ring_cls, paths):
    buf = RecordBuffer(*paths, CAP, ring_cls=ring_cls)
    drain = RecordDrain(*paths, ring_cls=ring_cls)
    for i in range(40):
        buf.push(rec(i))
    in_ring = buf.ring.pushed
    ring_part = drain.read_batch(1000, 1 << 30)
    seg_first = drain.read_batch(3, 1 << 30, after=ring_part)  # the segment is due next
    assert ring_part.records + seg_first.records == [rec(i) for i in range(in_ring + 3)]
    ring_part.commit()
    buf.push(rec(40))  # finds the ring empty: seals the segment and goes into the ring, after it
    assert not buf.spilling and buf.ring.pushed == in_ring + 1
    seg_rest = drain.read_batch(1000, 1 << 30, after=seg_first)
    assert seg_rest.records == [rec(i) for i in range(in_ring + 3, 40)]
    assert drain.read_batch(1000, 1 << 30, after=seg_rest).records == []  # rec(40) waits for the commit
    seg_first.commit(), seg_rest.commit()
    assert spill_files(paths[1]) == [] and drain_all(drain) == [rec(40)]
    buf.close(), drain.close()


class _RaceOnRead:
    """The consumer's ring, with the producer run once between the consumer's loads and its read."""

    def __init__(self, ring, producer):
        self._ring, self._producer = ring, producer

    def read(self, *args):
        if self._producer is not None:
            producer, self._producer = self._producer, None
            producer()
        return self._ring.read(*args)

    def __getattr__(self, name):
        return getattr(self._ring, name)


def test_consumer_never_reads_past_a_segment_it_has_not_seen(ring_cls, paths):
    """Invariant 4: head is loaded before OPEN, and the ring is read only up to that head."""
    buf = RecordBuffer(*paths, CAP, ring_cls=ring_cls)
    drain = RecordDrain(*paths, ring_cls=ring_cls)

    def producer():  # after the consumer saw no segment: spill, seal, and back to the ring
        buf.push(rec(1, 10_000))
        buf.push(rec(2))
        assert buf.spilled == 1 and buf.ring.pushed == 1 and buf.ring.head > 0

    drain.ring = _RaceOnRead(drain.ring, producer)
    assert drain.read_batch(10, 1 << 20).records == []  # not rec(2): it comes after the segment
    assert drain_all(drain) == [rec(1, 10_000), rec(2)]
    buf.close(), drain.close()


def test_segments_rotate_by_size_and_are_deleted_once_replayed(ring_cls, paths):
    buf = RecordBuffer(*paths, CAP, ring_cls=ring_cls, segment_bytes=2000)
    for i in range(80):
        buf.push(rec(i))
    files = spill_files(paths[1])
    assert len(files) >= 5 and files[0] == "spill-000000000001.wal"
    drain = RecordDrain(*paths, ring_cls=ring_cls)
    assert drain_all(drain) == [rec(i) for i in range(80)]
    assert spill_files(paths[1]) == files[-1:]  # all sealed ones gone; the open one stays
    buf.close()
    assert drain_all(drain) == [] and spill_files(paths[1]) == []
    drain.close()


def test_oversized_record_goes_to_the_spill_in_order(ring_cls, paths):
    with RecordBuffer(*paths, CAP, ring_cls=ring_cls) as buf, RecordDrain(*paths, ring_cls=ring_cls) as drain:
        buf.push(rec(0, 10_000))  # on an empty ring: spilled ...
        buf.push(rec(1))  # ... and the next push finds the ring empty: back to it
        assert (buf.spilled, buf.ring.pushed, buf.spilling) == (1, 1, False)
        buf.push(rec(2, 10_000))  # the ring holds rec(1): spilling, and it goes on ...
        buf.push(rec(3))
        assert (buf.spilled, buf.ring.pushed, buf.spilling) == (3, 1, True)
        assert drain_all(drain) == [rec(0, 10_000), rec(1), rec(2, 10_000), rec(3)]
        buf.push(rec(4))  # ... until the exporter has caught up
        assert (buf.spilled, buf.ring.pushed, buf.spilling) == (3, 2, False)
        assert drain_all(drain) == [rec(4)] and spill_files(paths[1]) == []


def test_torn_spill_tail_is_ignored_and_counted(ring_cls, paths):
    buf = RecordBuffer(*paths, CAP, ring_cls=ring_cls)
    for i in range(40):
        buf.push(rec(i))
    spilled = buf.spilled
    buf.close()  # seals the segment
    (name,) = spill_files(paths[1])
    seg = os.path.join(paths[1], name)
    os.truncate(seg, os.path.getsize(seg) - 50)  # the last record loses its last 50 bytes
    with RecordDrain(*paths, ring_cls=ring_cls) as drain:
        assert drain_all(drain) == [rec(i) for i in range(39)]
        assert drain.torn == 1 and drain.replayed == spilled - 1 and drain.exported == 39
        assert spill_files(paths[1]) == []


@pytest.mark.parametrize("damage", ["crc", "length", "header only"])
def test_corrupt_spill_records_end_the_segment(ring_cls, paths, damage):
    buf = RecordBuffer(*paths, CAP, ring_cls=ring_cls)
    for i in range(40):
        buf.push(rec(i))
    in_ring = buf.ring.pushed
    buf.close()
    (name,) = spill_files(paths[1])
    seg = os.path.join(paths[1], name)
    size = os.path.getsize(seg)
    last = size - (8 + len(rec(39)))
    with open(seg, "r+b") as f:
        if damage == "crc":
            f.seek(size - 1)
            f.write(b"X")
        elif damage == "length":
            f.seek(last)
            f.write(struct.pack("<I", 1 << 29))
        else:
            f.truncate(last + 5)
    with RecordDrain(*paths, ring_cls=ring_cls) as drain:
        assert drain_all(drain) == [rec(i) for i in range(39)]
        assert drain.torn == 1 and drain.replayed == 39 - in_ring


def test_a_killed_producer_is_replaced_and_its_open_segment_sealed(ring_cls, paths):
    buf = RecordBuffer(*paths, CAP, ring_cls=ring_cls)
    for i in range(40):
        buf.push(rec(i))
    # Killed mid-append: half a record at the end of the open segment, nothing closed.
    os.write(buf._fd, struct.pack("<II", 500, 0) + b"half")
    drain = RecordDrain(*paths, ring_cls=ring_cls)
    got = drain_all(drain)
    assert got == [rec(i) for i in range(40)] and drain.torn == 0  # open segment: it waits
    successor = RecordBuffer(*paths, CAP, ring_cls=ring_cls)  # seals the predecessor's segment
    for i in range(40, 45):
        successor.push(rec(i))
    assert not successor.spilling and successor.spilled == buf.spilled
    got += drain_all(drain)
    assert got == [rec(i) for i in range(45)] and drain.torn == 1 and spill_files(paths[1]) == []
    successor.close(), drain.close()


def test_consumer_restart_mid_replay_rereads_from_the_last_commit(ring_cls, paths):
    buf = RecordBuffer(*paths, CAP, ring_cls=ring_cls)
    for i in range(100):
        buf.push(rec(i))
    buf.close()
    drain = RecordDrain(*paths, ring_cls=ring_cls)
    got = []
    while len(got) < 50:  # through the ring and into the spill
        batch = drain.read_batch(6, 1 << 20)
        got += batch.records
        batch.commit()
    assert drain.replayed > 0
    uncommitted = drain.read_batch(6, 1 << 20).records  # written to the sink, then killed
    drain.close()
    drain = RecordDrain(*paths, ring_cls=ring_cls)  # the exporter restarts
    again = drain.read_batch(6, 1 << 20)
    assert again.records == uncommitted  # at least once: the uncommitted batch comes again
    got += drain_all(drain)
    assert got == [rec(i) for i in range(100)] and drain.exported == 100
    drain.close()


def test_unwritable_spill_dir_drops_counted_and_logged(ring_cls, tmp_path, caplog):
    (tmp_path / "afile").write_text("")
    paths = (str(tmp_path / "ring-0.shm"), str(tmp_path / "afile" / "spill"))  # a path under a file
    buf = RecordBuffer(*paths, CAP, ring_cls=ring_cls)
    with caplog.at_level(logging.ERROR, logger="fastgw.requestlog"):
        for i in range(100):
            buf.push(rec(i))  # never raises
    in_ring = buf.ring.pushed
    assert (buf.dropped, buf.spilled, buf.pushed) == (100 - in_ring, 0, 100)
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1 and "dropped 1 record(s)" in errors[0].getMessage()  # once a second
    with RecordDrain(*paths, ring_cls=ring_cls) as drain:
        assert drain_all(drain) == [rec(i) for i in range(in_ring)] and drain.dropped == 100 - in_ring
    buf.push(rec(100))  # the drained ring takes records again
    assert buf.ring.pushed == in_ring + 1
    buf.close()


def test_disk_failure_mid_spill(ring_cls, paths, monkeypatch):
    buf = RecordBuffer(*paths, CAP, ring_cls=ring_cls)
    for i in range(30):
        buf.push(rec(i))
    spilled = buf.spilled
    assert spilled > 0

    def enospc(fd, buffers):
        os.write(fd, buffers[0][:5])  # a torn write, then the error
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(buffer_module.os, "writev", enospc)
    buf.push(rec(30))  # the segment is sealed, the ring is full: dropped
    buf.push(rec(31))  # a new segment is tried: its header fits, the record does not
    assert buf.dropped == 2 and buf.spilled == spilled
    monkeypatch.undo()
    buf.push(rec(32))  # spilled into a third segment
    with RecordDrain(*paths, ring_cls=ring_cls) as drain:
        got = drain_all(drain)
        buf.close()
        got += drain_all(drain)
        assert drain.torn == 2  # the two segments the failed writes left torn
    assert got == [rec(i) for i in range(30)] + [rec(32)]
    assert spill_files(paths[1]) == []


def test_closed_buffer_drops(ring_cls, paths):
    buf = RecordBuffer(*paths, CAP, ring_cls=ring_cls)
    buf.close()
    buf.close()
    buf.push(rec(0))  # nothing raises
    buf.push("not bytes")
    assert "closed" in repr(buf)


def test_not_bytes_is_dropped_not_raised(ring_cls, paths):
    with RecordBuffer(*paths, CAP, ring_cls=ring_cls) as buf:
        buf.push("text")
        buf.push(None)
        assert buf.dropped == 2 and buf.ring.pushed == 0


def test_existing_ring_is_kept_and_bad_one_replaced(ring_cls, paths, caplog):
    with RecordBuffer(*paths, CAP, ring_cls=ring_cls) as buf:
        buf.push(rec(0))
    with RecordBuffer(*paths, 8192, ring_cls=ring_cls) as buf:  # a restarted worker
        assert buf.ring.capacity == CAP and buf.ring.used > 0
    with open(paths[0], "r+b") as f:
        f.write(b"garbage!")
    with caplog.at_level(logging.ERROR, logger="fastgw.requestlog"):
        with RecordBuffer(*paths, 8192, ring_cls=ring_cls) as buf:
            assert buf.ring.capacity == 8192 and buf.ring.used == 0
    assert "replacing it with an empty ring" in caplog.text


def test_orphan_segments_are_adopted_by_a_new_control_file(ring_cls, paths):
    with RecordBuffer(*paths, CAP, ring_cls=ring_cls) as buf:
        for i in range(50):
            buf.push(rec(i))
        in_ring = buf.ring.pushed
    os.unlink(paths[0])  # /dev/shm wiped: the ring (and its records) and the control file are gone
    os.unlink(paths[0][:-4] + ".ctl")
    with RecordBuffer(*paths, CAP, ring_cls=ring_cls) as buf, RecordDrain(*paths, ring_cls=ring_cls) as drain:
        buf.push(rec(50))
        assert drain_all(drain) == [rec(i) for i in range(in_ring, 51)]  # the disk's records first


@pytest.mark.parametrize("name", TWINS)
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=st.lists(
    st.one_of(
        st.tuples(st.just("push"), st.integers(1, 30), st.integers(9, 900)),
        st.tuples(st.just("read"), st.integers(1, 20), st.sampled_from(["commit", "oldest", "ahead", "drop"])),
        st.just(("restart consumer",)),
        st.just(("restart producer",)),
    ),
    max_size=40,
))
def test_any_interleaving_delivers_everything_in_order(name, ops, tmp_path_factory):
    ring_cls = _ring_cls(name)
    d = tmp_path_factory.mktemp("interleave")
    paths = (str(d / "ring-0.shm"), str(d / "spill"))
    buf = RecordBuffer(*paths, CAP, ring_cls=ring_cls, segment_bytes=3000)
    drain = RecordDrain(*paths, ring_cls=ring_cls)
    pushed, exported, n = [], [], 0
    pending = []
    for op in ops:
        if op[0] == "push":
            for _ in range(op[1]):
                pushed.append(rec(n, op[2]))
                buf.push(pushed[-1])
                n += 1
        elif op[0] == "read":  # ahead of the batches read and not yet committed, as the exporter does
            batch = drain.read_batch(op[1], 1 << 20, after=pending[-1] if pending else None)
            pending.append(batch)
            if op[2] == "commit":  # every pending batch written: committed in read order
                for b in pending:
                    b.commit()
                    exported += b.records
                pending = []
            elif op[2] == "oldest":  # as the exporter: the batch in flight committed, the next one kept
                pending[0].commit()
                exported += pending.pop(0).records
            elif op[2] == "drop":  # a write failed: nothing pending is committed, all is read again
                pending = []
        elif op[0] == "restart consumer":
            drain.close()
            drain = RecordDrain(*paths, ring_cls=ring_cls)
            pending = []
        else:
            buf.close()
            buf = RecordBuffer(*paths, CAP, ring_cls=ring_cls, segment_bytes=3000)
    buf.close()
    exported += drain_all(drain)
    assert exported == pushed and drain.exported == len(pushed)
    assert drain.dropped == 0 and drain.torn == 0 and spill_files(paths[1]) == []
    drain.close()


def _produce(name, paths, n, done):
    buf = RecordBuffer(*paths, CAP, ring_cls=_ring_cls(name), segment_bytes=20_000)
    rng = random.Random(n)
    for i in range(n):
        buf.push(rec(i, rng.randrange(9, 1500)))
    os.write(done, b"!")
    signal.pause()  # SIGKILLed here: its last segment is never sealed by itself


@pytest.mark.parametrize("name", TWINS)
def test_concurrent_producer_process(name, paths):
    n = 4000
    RecordBuffer(*paths, CAP, ring_cls=_ring_cls(name)).close()
    r, w = os.pipe()
    child = multiprocessing.get_context("fork").Process(target=_produce, args=(name, paths, n, w))
    child.start()
    try:
        drain = RecordDrain(*paths, ring_cls=_ring_cls(name))
        got = []
        deadline = time.monotonic() + 60
        while len(got) < n and time.monotonic() < deadline:
            batch = drain.read_batch(50, 64 << 10)
            got += batch.records
            batch.commit()
        assert os.read(r, 1) == b"!"
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.join(10)
    rng = random.Random(n)
    assert got == [rec(i, rng.randrange(9, 1500)) for i in range(n)]
    assert drain.spilled > 0 and drain.exported == n and drain.dropped == 0
    drain.close(), os.close(r), os.close(w)


def _in_a_small_tmpfs(child: str, tmp_path) -> subprocess.CompletedProcess:  # type: ignore[type-arg]
    """Run ``child`` in a mount namespace of its own, where it mounts a 4 MiB tmpfs on tmp/shm (a
    container's /dev/shm, scaled down); it must exit cleanly, not die of SIGBUS."""
    (tmp_path / "shm").mkdir()
    out = subprocess.run(
        ["unshare", "--user", "--map-root-user", "--mount", sys.executable, "-c", child,
         str(tmp_path / "shm"), str(tmp_path / "spill")],
        capture_output=True, text=True, timeout=60,
    )
    assert out.returncode == 0, (out.returncode, out.stderr[-2000:])
    return out


SMALL_SHM_CHILD = r"""
import os, subprocess, sys
mnt, spill = sys.argv[1], sys.argv[2]
subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", mnt], check=True)
from fastgw.requestlog.buffer import RecordBuffer
rings = [RecordBuffer(os.path.join(mnt, f"ring-{w}.shm"), os.path.join(spill, f"worker-{w}"), 4 << 20) for w in range(2)]
record = b"r" * 3000
for buf in rings:  # every page of every ring written: a ring the tmpfs can't hold dies of SIGBUS here
    while not buf.spilling:
        buf.push(record)
print(" ".join(str(buf.ring.capacity) for buf in rings), sum(buf.spilled for buf in rings))
"""


def test_rings_shrink_to_fit_a_small_dev_shm(tmp_path) -> None:
    """A container's /dev/shm is 64 MB unless it is given more: less than one default ring. Two
    rings of 4 MiB asked for in a 4 MiB tmpfs (in a mount namespace of its own) are made smaller,
    with a warning, and filled to the last page without a SIGBUS."""
    out = _in_a_small_tmpfs(SMALL_SHM_CHILD, tmp_path)
    first, second, spilled = (int(x) for x in out.stdout.split())
    assert (first, second) == (2 << 20, 1 << 20)  # each fits what is left after the rings before it
    assert spilled == 2  # each ring, once full, spilled its next record to disk
    assert out.stderr.count("not enough for a ring of 4 MiB (logging.ring_size)") == 2


TOGETHER_CHILD = r"""
import os, subprocess, sys
mnt, spill = sys.argv[1], sys.argv[2]
subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", mnt], check=True)
from fastgw.requestlog.buffer import RecordBuffer
go_r, go_w = os.pipe()
out_r, out_w = os.pipe()
pids = []
for w in range(2):  # two workers forked at once, as the supervisor starts them
    pid = os.fork()
    if pid == 0:
        os.read(go_r, 1)
        buf = RecordBuffer(os.path.join(mnt, f"ring-{w}.shm"), os.path.join(spill, f"worker-{w}"), 4 << 20)
        while not buf.spilling:  # every page written
            buf.push(b"r" * 3000)
        os.write(out_w, b"%d\n" % buf.ring.capacity)
        os._exit(0)
    pids.append(pid)
os.write(go_w, b"xx")
codes = [os.waitpid(pid, 0)[1] for pid in pids]
os.close(out_w)
print(sorted(int(x) for x in os.read(out_r, 100).split()), codes)
"""


def test_rings_of_workers_started_together_fit_a_small_dev_shm(tmp_path) -> None:
    """Workers forked together size their rings one at a time (a lock in the folder), so two rings
    in a 4 MiB tmpfs take 2 and 1 MiB; each counting the free space as its own would take 2 and 2
    and one would die of SIGBUS filling its last pages."""
    out = _in_a_small_tmpfs(TOGETHER_CHILD, tmp_path)
    assert out.stdout.split("\n")[0] == "[1048576, 2097152] [0, 0]", out.stdout + out.stderr[-2000:]


CLAIM_CHILD = r"""
import os, subprocess, sys
mnt, spill = sys.argv[1], sys.argv[2]
subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", mnt], check=True)
from fastgw._native.ring import Ring
from fastgw.requestlog.buffer import RecordBuffer
path = os.path.join(mnt, "ring-0.shm")
with RecordBuffer(path, os.path.join(spill, "worker-0"), 1 << 20) as buf:  # claimed whole at start
    print(os.stat(path).st_blocks * 512 >= buf.ring.capacity)
os.unlink(path)
Ring.create(path, 2 << 20).close()  # a ring left sparse (by a version before claim)
fd = os.open(os.path.join(mnt, "filler"), os.O_WRONLY | os.O_CREAT)
try:  # then someone else fills the tmpfs
    while True:
        os.write(fd, b"x" * 4096)
except OSError:
    pass
os.ftruncate(fd, os.fstat(fd).st_size - 65536)  # leaving room for a control file, not for the ring
os.close(fd)
from fastgw.requestlog.buffer import RecordDrain
buf = RecordBuffer(path, os.path.join(spill, "worker-0"), 2 << 20)  # a restarted worker attaches it
for i in range(1000):  # 3 MB: past every page the ring could not claim
    buf.push(b"%06d" % i + b"r" * 2994)
drain = RecordDrain(path, os.path.join(spill, "worker-0"))
got = []
while len(got) < 1000:
    batch = drain.read_batch(500, 1 << 30)
    if not batch.records:
        break
    got += batch.records
    batch.commit()
print(buf.ring.pushed, buf.spilled, buf.dropped, [r[:6] for r in got] == [b"%06d" % i for i in range(1000)])
buf.close(), drain.close()
"""


def test_a_ring_is_claimed_at_start_or_says_why_not(tmp_path) -> None:
    """The worker claims its ring's pages when it opens it (no page fault per new page in push).
    A ring in a tmpfs too full for that is said loudly at start, naming the file and the setting,
    and not written: every record goes to the spill folder, where the exporter reads it, in order,
    instead of the first push to an unclaimed page killing the worker with SIGBUS."""
    out = _in_a_small_tmpfs(CLAIM_CHILD, tmp_path)
    assert out.stdout.split() == ["True", "0", "1000", "0", "True"], out.stdout + out.stderr[-2000:]
    assert out.stderr.count("could not claim the memory of") == 1
    assert "ring-0.shm" in out.stderr and "logging.ring_size" in out.stderr
    assert "full or record too long" not in out.stderr  # not the ring-full warning: it was never used
