"""Whole-buffer writes to the exporter's files, handed to the kernel a quarter of a MiB at a time.

Why: a parked file or a jsonl batch is a whole batch, about 10 MB at 5,000 records of 2 KB. On
the test machine one ``write()`` of it took 24-32 ms of wall time (``perf trace``), and while the
exporter parked batches the client and the provider stand-in on its core answered late: with the
sink down, the P99 at 6,000 requests/s was 15.0 ms with one write a file and 4.1 ms with this,
against 3.5 ms with the sink up, in one run that alternated the three
(``benchmarks/bench_sink_down.py --old-src``). How one long call delays other processes on a
kernel that runs ``preempt=none`` is not established: the buffered-write path offers to reschedule
after each page, and those 24-32 ms include time the exporter spent switched out. What was
measured is the P99. Between two calls of a quarter of a MiB, the exporter is back in user space,
where a waiting task can always take the core.
"""

from __future__ import annotations

import errno
from collections.abc import Callable

WRITE_MAX = 256 * 1024


def write_all(write: Callable[[memoryview], int | None], data: bytes, where: str) -> None:
    """``data`` through ``write`` (``os.write`` on a descriptor, an unbuffered file's ``write``), in
    calls of at most ``WRITE_MAX`` bytes and looping on short writes. OSError if nothing is taken."""
    view = memoryview(data)
    while view:
        written = write(view[:WRITE_MAX])
        if not written:  # 0, or None from a non-blocking file
            raise OSError(errno.ENOSPC, f"short write to {where}")
        view = view[written:]
