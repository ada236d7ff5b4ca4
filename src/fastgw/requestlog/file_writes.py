"""Whole-buffer writes to the exporter's files, handed to the kernel a quarter of a MiB at a time.

Why: a parked file or a jsonl batch is a whole batch, about 10 MB at 5,000 records of 2 KB. One
``write()`` of that copied it into the page cache in 24-32 ms on the test machine, and its kernel
(like many distributions' server kernels: ``preempt=none``) does not preempt kernel code. So a
SCHED_IDLE exporter still held its core that long, and whatever shared it (here the client and the
provider stand-in) waited. With the sink down, the P99 at 6,000 requests/s was 15.0 ms before this
change and 4.1 ms after it, against 3.5 ms with the sink up, in one run that alternated the three
(``benchmarks/bench_sink_down.py --old-src``). Between two calls the kernel can switch to a
waiting task, and a quarter of a MiB takes well under a millisecond.
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
        if not written or written <= 0:
            raise OSError(errno.ENOSPC, f"short write to {where}")
        view = view[written:]
