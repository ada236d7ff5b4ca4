"""Process names (process_name.py): whole within the kernel's 15 bytes, so each worker's is its own."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

from fastgw.process_name import LIMIT, worker_name
from fastgw.server.supervisor import Supervisor


def test_every_worker_name_fits_and_is_its_own() -> None:
    names = [worker_name(i) for i in range(10_000)]
    assert all(len(n.encode()) <= LIMIT for n in names)
    assert len(set(names)) == len(names)
    assert names[:2] == ["fastgw-worker-0", "fastgw-worker-1"] and names[10] == "fastgw-worker10"


def _report_name(out: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    out.put(Path("/proc/self/comm").read_text().strip())


def test_worker_ten_reads_as_itself_not_as_worker_one() -> None:
    out: multiprocessing.Queue = multiprocessing.get_context("fork").Queue()  # type: ignore[type-arg]
    sup = Supervisor(11, lambda index: _report_name(out), grace=1.0)
    try:
        sup._spawn(10)
        assert out.get(timeout=10) == "fastgw-worker10"
    finally:
        for proc in sup.procs.values():
            proc.join(10)
