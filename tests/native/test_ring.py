"""The shared-memory ring, both twins: its contract (ring.pyi) against a model, crash and restart
behaviour, and the two twins against each other (same bytes on disk, either reads the other).

The compiled twin is never skipped: if the extension is not built the "cython" cases fail
(CI always builds it: ``python setup.py build_ext --inplace``).
"""
import ast
import multiprocessing
import os
import random
import signal
import struct
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fastgw._native
from tests.native.twins import TWINS, load_twin

PYI = Path(fastgw._native.__file__).with_name("ring.pyi")
HEADER = 512
CAP = 4096



def _load(name):
    return load_twin(name, "ring")


@pytest.fixture(params=TWINS)
def twin(request):
    return _load(request.param)


@pytest.fixture
def path(tmp_path):
    return str(tmp_path / "ring-0.shm")


def record(i, size):
    """A record of ``size`` bytes that tells which push it was (when size >= 4)."""
    return (i.to_bytes(4, "little") * (size // 4 + 1))[:size]


def slot(n):
    return (n + 11) & ~7


class Model:
    """The ring as ring.pyi documents it, on positions alone."""

    def __init__(self, capacity):
        self.capacity, self.head, self.tail = capacity, 0, 0
        self.slots = []  # (slot start, end, record) after tail, oldest first
        self.full = self.pushed = 0

    def push(self, rec):
        need = slot(len(rec))
        room = self.capacity - self.head % self.capacity
        total = need if need <= room else room + need
        if total > self.capacity - (self.head - self.tail):
            self.full += 1
            return False
        start = self.head if need <= room else self.head + room
        self.head += total
        self.slots.append((start, self.head, rec))
        self.pushed += 1
        return True

    def read(self, max_records, max_bytes, start=None):
        out, nbytes, token = [], 0, self.tail if start is None else start
        for begin, end, rec in self.slots:
            if end <= token and not out:
                continue  # read already, by the uncommitted read that returned ``start``
            if len(out) == max_records:
                break
            if out and nbytes + len(rec) > max_bytes:
                token = begin  # a wrap gap before the refused record is skipped
                break
            out.append(rec)
            nbytes += len(rec)
            token = end
        return out, token

    def commit(self, token):
        self.slots = [s for s in self.slots if s[1] > token]
        self.tail = token


# ---------------------------------------------------------------------------------------------
# Plumbing: which twin, the contract.

def test_package_exposes_the_chosen_ring():
    expected = "pure" if os.environ.get("FASTGW_PURE") == "1" else "cython"
    assert fastgw._native.ring is _load(expected)
    from fastgw._native import ring

    assert ring is fastgw._native.ring
    _load("pure"), _load("cython")
    assert fastgw._native.ring is ring  # load() does not rebind the attribute
    assert fastgw._native.load(True).__name__ == "fastgw._native._pure.headers"  # the default
    with pytest.raises(ValueError, match="no native module 'nope'"):
        fastgw._native.load(True, "nope")


def test_both_twins_have_the_contract():
    tree = ast.parse(PYI.read_text())
    (cls,) = [n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "Ring"]
    names = {n.name for n in cls.body if isinstance(n, ast.FunctionDef)}
    constants = {n.target.id for n in tree.body if isinstance(n, ast.AnnAssign)}
    assert {"create", "attach", "push", "read", "commit", "used", "producer_pid"} <= names
    for name in TWINS:
        module = _load(name)
        assert all(hasattr(module.Ring, n) for n in names), name
        assert {c: getattr(module, c) for c in constants} == {c: getattr(_load("pure"), c) for c in constants}


# ---------------------------------------------------------------------------------------------
# Basics.

def test_push_read_commit(twin, path):
    with twin.Ring.create(path, CAP) as ring:
        assert (ring.capacity, ring.head, ring.tail, ring.used, ring.pushed, ring.full) == (CAP, 0, 0, 0, 0, 0)
        assert ring.max_record == CAP // 2 - 4 and ring.path == path and not ring.closed
        assert ring.read(10, 1 << 20) == ([], 0)
        assert ring.push(b"hello") and ring.push(b"") and ring.push(b"x" * 100)
        assert ring.head == 16 + 8 + slot(100) and ring.used == ring.head and ring.pushed == 3
        records, token = ring.read(10, 1 << 20)
        assert records == [b"hello", b"", b"x" * 100] and token == ring.head
        assert ring.read(10, 1 << 20) == (records, token)  # read does not advance
        assert ring.read(2, 1 << 20) == ([b"hello", b""], 24)
        assert ring.read(10, 3) == ([b"hello"], 16)  # the first record always comes
        assert ring.read(10, 5) == ([b"hello", b""], 24)
        ring.commit(16)
        assert ring.tail == 16 and ring.read(10, 1 << 20) == ([b"", b"x" * 100], token)
        ring.commit(token)
        assert ring.used == 0 and ring.read(10, 1 << 20) == ([], token)
        ring.producer_pid = 4242
        assert ring.producer_pid == 4242
        assert f"head={token} tail={token}" in repr(ring) and "producer_pid=4242" in repr(ring)
    assert ring.closed and "closed" in repr(ring)


def test_full_and_limits(twin, path):
    ring = twin.Ring.create(path, CAP)
    big = b"b" * ring.max_record  # slot = CAP/2
    assert ring.push(big) and ring.push(big)
    assert ring.used == CAP and ring.push(b"") is False and ring.full == 1 and ring.pushed == 2
    with pytest.raises(ValueError, match=r"record of 2045 bytes exceeds the ring's limit of 2044 bytes"):
        ring.push(b"b" * (ring.max_record + 1))
    with pytest.raises(TypeError):
        ring.push("text")
    with pytest.raises(TypeError):
        ring.push(None)
    ring.commit(ring.read(1, 0)[1])
    assert ring.push(b"s") and ring.full == 1


@pytest.mark.parametrize("offset", range(0, CAP, 8 * 37))
def test_an_empty_ring_takes_the_longest_record_wherever_head_is(twin, path, offset):
    ring = twin.Ring.create(path, CAP)
    for step in (offset // 2 // 8 * 8, offset - offset // 2 // 8 * 8):  # two pushes: each <= max_record
        if step:
            assert ring.push(b"p" * (step - 4))
            ring.commit(ring.read(1, 0)[1])
    assert ring.used == 0 and ring.head == offset
    assert ring.push(b"m" * ring.max_record)
    assert ring.read(5, 1 << 20)[0] == [b"m" * ring.max_record]


def test_wrap_marker_and_until(twin, path):
    ring = twin.Ring.create(path, CAP)
    assert ring.push(b"a" * 2000) and ring.push(b"b" * 996)  # slots 2008 + 1000
    ring.commit(ring.read(2, 1 << 20)[1])
    assert ring.push(b"w" * 1000) and ring.head == 4016  # 80 bytes left before the end
    assert ring.push(b"z" * 100) and ring.head == 4016 + 80 + slot(100)  # wraps
    assert struct.unpack_from("=I", Path(path).read_bytes(), HEADER + 4016)[0] == twin.WRAP == 0xFFFFFFFF
    head_before = ring.head
    assert ring.push(b"y" * 2000)
    assert ring.push(b"v" * 1500) is False and ring.used == 3008 + 1008 + 80 + slot(100) + slot(2000) - 3008
    assert ring.read(10, 1 << 20, head_before) == ([b"w" * 1000, b"z" * 100], head_before)
    assert ring.read(10, 1 << 20, 0) == ([], 3008)  # until below tail: nothing
    assert ring.read(10, 1 << 20, 1 << 40)[1] == ring.head  # until above head: head
    # Stopped by max_bytes at the record after the wrap: the token skips the wrap gap.
    assert ring.read(10, 1000) == ([b"w" * 1000], 4096)
    ring.commit(4096)
    assert ring.read(10, 1 << 20) == ([b"z" * 100, b"y" * 2000], ring.head)


def test_read_ahead_of_an_uncommitted_read(twin, path):
    """The exporter reads its next batch while the last one is written: ``start`` is that read's token."""
    ring = twin.Ring.create(path, CAP)
    assert ring.push(b"a" * 2000) and ring.push(b"b" * 996)
    first, token = ring.read(1, 1 << 20)
    assert first == [b"a" * 2000] and ring.tail == 0
    assert ring.read(10, 1 << 20, start=token) == ([b"b" * 996], 3008)
    assert ring.read(10, 1 << 20, start=3008) == ([], 3008)  # start at head: nothing yet
    ring.commit(token)
    assert ring.push(b"w" * 1000) and ring.push(b"z" * 100)  # the second wraps
    # Ahead of an uncommitted read that stopped before the wrap: the gap is skipped as from tail.
    ahead, token2 = ring.read(1, 1 << 20, start=3008)
    assert ahead == [b"w" * 1000] and token2 == 4016
    assert ring.read(10, 1 << 20, start=token2) == ([b"z" * 100], ring.head)
    ring.commit(3008), ring.commit(token2)
    assert ring.read(10, 1 << 20) == ring.read(10, 1 << 20, start=ring.tail) == ([b"z" * 100], ring.head)
    for bad in (0, ring.head + 8, token2 + 4):  # below tail, above head, not a slot boundary
        with pytest.raises(ValueError, match=rf"read start {bad} is not a position in \[tail {token2}, head"):
            ring.read(10, 1 << 20, start=bad)


def test_commit_rejects_foreign_tokens(twin, path):
    ring = twin.Ring.create(path, CAP)
    ring.push(b"abc"), ring.push(b"def")
    ring.commit(8)
    for bad in (0, 24, 12):  # below tail, above head, not a slot boundary
        with pytest.raises(ValueError, match=rf"commit token {bad} is not a position in \[tail 8, head 16\]"):
            ring.commit(bad)


def test_closed_ring(twin, path):
    ring = twin.Ring.create(path, CAP)
    ring.close()
    ring.close()
    for call in (lambda: ring.push(b"x"), lambda: ring.read(1, 1), lambda: ring.commit(0), lambda: ring.head,
                 lambda: ring.used, lambda: ring.pushed, ring.claim):
        with pytest.raises(ValueError, match="ring is closed"):
            call()
    with twin.Ring() as never_opened:
        assert never_opened.closed


def test_claim_backs_every_page_and_keeps_the_records(twin, tmp_path):
    """A sparse ring file holds no pages until records reach them; claimed, it holds them all,
    and what it held is still there to read."""
    folder = Path("/dev/shm") if os.path.isdir("/dev/shm") else tmp_path  # where rings live
    path = folder / f"fastgw-test-claim-{os.getpid()}.shm"
    capacity = 1 << 20
    try:
        with twin.Ring.create(str(path), capacity) as ring:
            assert ring.push(record(1, 100))
            assert os.stat(path).st_blocks * 512 < capacity // 2
            assert ring.claim() is True  # Linux >= 5.14, as on every machine this runs on
            assert os.stat(path).st_blocks * 512 >= HEADER + capacity
            assert ring.push(record(2, 3000))
            assert ring.read(10, 1 << 20)[0] == [record(1, 100), record(2, 3000)]
            assert ring.claim() is True  # again: nothing changes
            assert ring.read(10, 1 << 20)[0] == [record(1, 100), record(2, 3000)]
    finally:
        path.unlink(missing_ok=True)


@pytest.mark.parametrize("capacity", [0, 2048, 4095, 4097, 6000, -4096, 4096.0, "4096"])
def test_create_rejects_capacities(twin, path, capacity):
    with pytest.raises(ValueError, match="is not a power of two >= 4096"):
        twin.Ring.create(path, capacity)
    assert not os.path.exists(path)


def test_create_replaces_atomically(twin, path):
    old = twin.Ring.create(path, CAP)
    old.push(b"old")
    new = twin.Ring.create(path, 8192)
    assert new.used == 0 and old.read(5, 100)[0] == [b"old"]  # the old mapping is untouched
    assert twin.Ring.attach(path).capacity == 8192
    assert os.listdir(os.path.dirname(path)) == ["ring-0.shm"]


def _corrupt(path, offset, fmt, value):
    with open(path, "r+b") as f:
        f.seek(offset)
        f.write(struct.pack(fmt, value))


ATTACH_ERRORS = {
    "too small": (lambda p: os.truncate(p, 100), r"not a fastgw ring \(file of 100 bytes is smaller than the 512-byte header\)"),
    "bad magic": (lambda p: _corrupt(p, 0, "8s", b"NOTARING"), r"not a fastgw ring \(bad magic b'NOTARING'\)"),
    "version": (lambda p: _corrupt(p, 8, "=I", 7), r"ring version 7 is not supported \(expected 1\)"),
    "header size": (lambda p: _corrupt(p, 12, "=I", 256), r"ring header size 256 is not 512"),
    "capacity": (lambda p: _corrupt(p, 16, "=Q", 5000), r"ring capacity 5000 is not a power of two >= 4096"),
    "file size": (lambda p: os.truncate(p, HEADER + CAP + 1), r"ring file is 4609 bytes, expected 4608 for capacity 4096"),
    "tail > head": (lambda p: _corrupt(p, 256, "=Q", 8), r"ring positions are inconsistent \(head 0, tail 8\)"),
    "lapped": (lambda p: _corrupt(p, 128, "=Q", 2 * CAP), r"ring positions are inconsistent \(head 8192, tail 0\)"),
}


@pytest.mark.parametrize("case", sorted(ATTACH_ERRORS))
def test_attach_validates(path, case):
    damage, message = ATTACH_ERRORS[case]
    _load("pure").Ring.create(path, CAP).close()
    damage(path)
    messages = []
    for name in TWINS:
        with pytest.raises(ValueError, match=message) as info:
            _load(name).Ring.attach(path)
        assert str(info.value).startswith(path + ": ")
        messages.append(str(info.value))
    assert messages[0] == messages[1]


def test_attach_missing(twin, tmp_path):
    with pytest.raises(FileNotFoundError):
        twin.Ring.attach(str(tmp_path / "nope.shm"))


# ---------------------------------------------------------------------------------------------
# Any sequence of operations against the model.

OPS = st.lists(
    st.one_of(
        st.tuples(st.just("push"), st.one_of(st.integers(0, 64), st.integers(0, CAP // 2 - 4))),
        st.tuples(st.just("read"), st.integers(1, 8), st.integers(0, 3000),
                  st.sampled_from(["commit", "ahead", "again"])),
        st.tuples(st.just("restart"), st.sampled_from(TWINS)),
    ),
    max_size=80,
)


@pytest.mark.parametrize("name", TWINS)
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=OPS)
def test_any_sequence_matches_the_model(name, ops, tmp_path):
    twin = _load(name)
    path = str(tmp_path / f"model-{name}.shm")
    producer = twin.Ring.create(path, CAP)
    consumer = twin.Ring.attach(path)
    model = Model(CAP)
    delivered, pushed = [], []
    ahead, read_ahead = None, []  # the last uncommitted read's token and the records read since tail
    for i, op in enumerate(ops):
        if op[0] == "push":
            rec = record(i, op[1])
            accepted = producer.push(rec)
            assert accepted == model.push(rec), (op, model.head, model.tail)
            if accepted:
                pushed.append(rec)
        elif op[0] == "read":
            got = consumer.read(op[1], op[2], start=ahead)
            assert got == model.read(op[1], op[2], ahead)
            if op[3] == "commit":  # everything read so far is written: commit up to the last read
                consumer.commit(got[1])
                model.commit(got[1])
                delivered += read_ahead + got[0]
                ahead, read_ahead = None, []
            elif op[3] == "ahead":  # the next read starts after this one
                ahead, read_ahead = got[1], read_ahead + got[0]
        else:  # the consumer is killed and restarts (maybe as the other twin): no commit lost
            consumer.close()
            consumer = _load(op[1]).Ring.attach(path)
            ahead, read_ahead = None, []
        assert (producer.head, consumer.tail, producer.used) == (model.head, model.tail, model.head - model.tail)
        assert (consumer.pushed, consumer.full) == (model.pushed, model.full)
    while True:
        records, token = consumer.read(7, 1 << 20)
        if not records:
            break
        consumer.commit(token)
        delivered += records
    assert delivered == pushed  # in order, none lost, none twice
    producer.close(), consumer.close()


# ---------------------------------------------------------------------------------------------
# Crashes and restarts.

def test_reader_restart_rereads_from_the_committed_tail(twin, path):
    producer = twin.Ring.create(path, CAP)
    for i in range(5):
        producer.push(record(i, 40))
    reader = twin.Ring.attach(path)
    records, token = reader.read(3, 1 << 20)
    reader.close()  # killed before its commit
    reader = twin.Ring.attach(path)
    assert reader.read(3, 1 << 20) == (records, token)
    reader.commit(token)
    reader.close()
    reader = twin.Ring.attach(path)
    assert reader.read(10, 1 << 20)[0] == [record(3, 40), record(4, 40)]


def test_a_write_without_its_head_is_never_seen(twin, path):
    ring = twin.Ring.create(path, CAP)
    ring.push(b"one")
    head = ring.head
    # A producer killed mid-push: slot bytes (even a wrap marker) written, head not advanced.
    with open(path, "r+b") as f:
        f.seek(HEADER + head)
        f.write(struct.pack("=I", 500) + b"G" * 500)
        f.seek(HEADER + CAP - 8)
        f.write(struct.pack("=I", 0xFFFFFFFF))
    reader = twin.Ring.attach(path)
    assert reader.read(10, 1 << 20) == ([b"one"], head)
    assert ring.push(b"two")  # the next push overwrites the torn slot
    assert reader.read(10, 1 << 20)[0] == [b"one", b"two"]


def _child_pushes(twin_name, path, n, ready):
    ring = _load(twin_name).Ring.attach(path)
    ring.producer_pid = os.getpid()
    for i in range(n):
        while not ring.push(record(i, 20 + i % 300)):
            pass  # the parent drains concurrently
    os.write(ready, b"!")
    signal.pause()  # killed here, without closing anything


def test_records_of_a_sigkilled_producer_survive(twin, path):
    n = 3000
    twin.Ring.create(path, 1 << 16).close()
    r, w = os.pipe()
    name = "pure" if "_pure" in twin.__name__ else "cython"
    child = multiprocessing.get_context("fork").Process(target=_child_pushes, args=(name, path, n, w))
    child.start()
    try:
        reader = twin.Ring.attach(path)
        got = []
        while len(got) < n - 100:  # drain while the child pushes; leave it room for the last 100
            records, token = reader.read(100, 1 << 20)
            reader.commit(token)
            got += records
        assert os.read(r, 1) == b"!"
        assert reader.used > 0  # records left in the ring by the producer about to be killed
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.join(10)
    assert child.exitcode == -signal.SIGKILL
    reader.close()
    reader = twin.Ring.attach(path)  # the exporter restarts too
    assert reader.producer_pid == child.pid
    while True:
        records, token = reader.read(500, 1 << 20)
        if not records:
            break
        reader.commit(token)
        got += records
    assert got == [record(i, 20 + i % 300) for i in range(n)]
    os.close(r), os.close(w)


# ---------------------------------------------------------------------------------------------
# The twins against each other.

def _script(seed, steps=600):
    rng = random.Random(seed)
    out = []
    for i in range(steps):
        roll = rng.random()
        if roll < 0.6:
            out.append(("push", record(i, rng.choice([0, 1, 7, 8, 100, rng.randrange(CAP // 2 - 4)]))))
        elif roll < 0.9:
            out.append(("read", rng.randrange(1, 6), rng.randrange(4000), rng.random() < 0.7))
        else:
            out.append(("pid", rng.randrange(1 << 40)))
    return out


def _run(ring, op):
    if op[0] == "push":
        return ring.push(op[1])
    if op[0] == "read":
        records, token = ring.read(op[1], op[2])
        if op[3]:
            ring.commit(token)
        return records, token
    ring.producer_pid = op[1]
    return None


@pytest.mark.parametrize("seed", range(4))
def test_twins_write_identical_files(tmp_path, seed):
    rings = {name: _load(name).Ring.create(str(tmp_path / f"{name}.shm"), CAP) for name in TWINS}
    for i, op in enumerate(_script(seed)):
        results = {name: _run(ring, op) for name, ring in rings.items()}
        assert results["cython"] == results["pure"], (i, op)
        if i % 50 == 0:
            assert (tmp_path / "cython.shm").read_bytes() == (tmp_path / "pure.shm").read_bytes(), i
    assert (tmp_path / "cython.shm").read_bytes() == (tmp_path / "pure.shm").read_bytes()


@pytest.mark.parametrize("writer, reader", [("cython", "pure"), ("pure", "cython")])
def test_one_twin_writes_the_other_reads(path, writer, reader):
    producer = _load(writer).Ring.create(path, CAP)
    consumer = _load(reader).Ring.attach(path)
    rng = random.Random(writer)
    pushed, got = [], []
    for i in range(2000):
        rec = record(i, rng.randrange(0, 700))
        if producer.push(rec):
            pushed.append(rec)
        if rng.random() < 0.3:
            records, token = consumer.read(rng.randrange(1, 10), 1 << 20)
            consumer.commit(token)
            got += records
    got += consumer.read(1 << 20, 1 << 30)[0]
    assert got == pushed and consumer.pushed == len(pushed) and consumer.full == producer.full > 0
