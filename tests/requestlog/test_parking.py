"""Parked files (the exporter's batches moved to disk while its sink is down): written whole, read
back oldest first, deleted once committed, and a damaged one read up to the damage, counted."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fastgw.requestlog import parking
from fastgw.requestlog.parking import ParkedStore, parked_path


def names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


@settings(max_examples=60, deadline=None)
@given(batches=st.lists(st.lists(st.binary(max_size=3000), min_size=1, max_size=20), min_size=1, max_size=6))
def test_parked_batches_come_back_whole_and_in_order(tmp_path_factory: pytest.TempPathFactory,
                                                     batches: list[list[bytes]]) -> None:
    folder = tmp_path_factory.mktemp("parked")
    store = ParkedStore(str(folder))
    for worker, records in enumerate(batches):
        store.park(worker, records)
    assert store.pending == len(batches) and store.parked == sum(map(len, batches))
    assert store.pending_records == sum(map(len, batches))
    # A restarted exporter finds the same files, and counts their records from the headers.
    again = ParkedStore(str(folder))
    assert again.pending_records == sum(map(len, batches))
    got = again.read(1 << 30)
    assert [(b.worker, b.records) for b in got] == list(enumerate(batches))
    for b in got:
        b.commit()
        b.commit()  # idempotent
    assert again.pending == 0 and again.unparked == sum(map(len, batches)) and names(folder) == []


def test_read_takes_whole_files_while_they_fit_and_skips_those_in_flight(tmp_path: Path) -> None:
    store = ParkedStore(str(tmp_path))
    for n in (3, 4, 5):
        store.park(0, [bytes([n])] * n)
    assert [len(b.records) for b in store.read(7)] == [3, 4]
    assert [len(b.records) for b in store.read(6)] == [3]  # the next file would not fit
    assert [len(b.records) for b in store.read(1)] == [3]  # the first always comes
    assert [len(b.records) for b in store.read(100, skip=2)] == [5]
    assert store.read(100, skip=3) == []


def test_numbering_goes_on_after_a_restart_and_a_leftover_temporary_file_is_removed(tmp_path: Path) -> None:
    store = ParkedStore(str(tmp_path))
    store.park(0, [b"a"])
    store.park(1, [b"b"])
    store.read(1)[0].commit()
    Path(parked_path(str(tmp_path), 3) + ".tmp").write_bytes(b"half a park")  # killed mid-park
    again = ParkedStore(str(tmp_path))
    assert names(tmp_path) == ["parked-000000000002.wal"]
    again.park(0, [b"c"])
    assert names(tmp_path) == ["parked-000000000002.wal", "parked-000000000003.wal"]
    assert [b.records for b in again.read(10)] == [[b"b"], [b"c"]]


def test_a_damaged_file_gives_its_records_up_to_the_damage_and_is_counted(tmp_path: Path) -> None:
    store = ParkedStore(str(tmp_path))
    store.park(0, [b"x" * 100, b"y" * 100, b"z" * 100])
    store.park(0, [b"next"])
    path = parked_path(str(tmp_path), 1)
    data = bytearray(Path(path).read_bytes())
    data[-150] ^= 0xFF  # inside the second record's payload: its CRC fails
    Path(path).write_bytes(bytes(data))
    got = store.read(10)
    assert [b.records for b in got] == [[b"x" * 100], [b"next"]] and store.lost == 1
    got = store.read(10)  # read again (a retry): lost once, not once a read
    assert [b.records for b in got] == [[b"x" * 100], [b"next"]] and store.lost == 1
    for b in got:
        b.commit()
    assert names(tmp_path) == []


def test_a_file_with_a_bad_header_is_lost_loudly_and_the_next_is_read(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    store = ParkedStore(str(tmp_path))
    store.park(0, [b"one"])
    store.park(0, [b"two"])
    with open(parked_path(str(tmp_path), 1), "r+b") as f:
        f.write(b"NOTPARKD")
    assert [b.records for b in store.read(10)] == [[b"two"]]
    assert store.lost == 1 and store.pending == 1 and "unreadable" in caplog.text
    assert names(tmp_path) == ["parked-000000000002.wal"]


def test_a_park_that_fails_leaves_nothing_behind(tmp_path: Path) -> None:
    store = ParkedStore(str(tmp_path / "p"))
    os.rmdir(tmp_path / "p")
    (tmp_path / "p").write_bytes(b"")  # not a folder any more
    with pytest.raises(OSError):
        store.park(0, [b"r"])
    assert store.pending == 0 and store.parked == 0
    (tmp_path / "p").unlink()
    os.mkdir(tmp_path / "p")
    store.park(0, [b"r"])
    assert names(tmp_path / "p") == ["parked-000000000001.wal"]


def test_a_file_that_cant_be_read_now_stays_and_ends_the_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Too many open files (or EACCES, EIO) is not a lost file: it is read again later. The read
    stops there, so the files in flight stay the first ones (``skip``)."""
    store = ParkedStore(str(tmp_path))
    for n in (1, 2, 3):
        store.park(0, [bytes([n])])
    real_open = os.open
    failing = {parked_path(str(tmp_path), 2)}

    def flaky_open(path: str, flags: int, *args: int) -> int:
        if path in failing:
            raise OSError(24, "Too many open files")
        return real_open(path, flags, *args)

    monkeypatch.setattr(parking.os, "open", flaky_open)
    assert [b.records for b in store.read(10)] == [[b"\x01"]]
    assert store.read(10, skip=1) == []
    assert store.lost == 0 and store.pending == 3 and len(names(tmp_path)) == 3
    failing.clear()
    assert [b.records for b in store.read(10)] == [[b"\x01"], [b"\x02"], [b"\x03"]]


def test_a_file_gone_from_the_folder_is_lost_and_counted(tmp_path: Path) -> None:
    store = ParkedStore(str(tmp_path))
    store.park(0, [b"a", b"b"])
    store.park(0, [b"c"])
    os.unlink(parked_path(str(tmp_path), 1))
    assert [b.records for b in store.read(10)] == [[b"c"]]
    assert store.lost == 1 and store.pending == 1 and store.pending_records == 1
