"""chDB's background merges run at the lowest CPU priority, below the exporter's own loop.

chDB runs ClickHouse inside the exporter process, merge threads included. Merges are deferred work:
they may fall behind for a while (parts accumulate, and ClickHouse slows inserts itself only at
``parts_to_delay_insert``). The exporter's loop is not: while it waits for CPU the workers' rings
fill and spill to disk. On one core at 25,000 records/s, equal-priority merges made the rings spill
about 16% of the records in every 10 s window; with the merge threads at nice 19 nothing spilled
and the exporter's CPU per record was the same (``bench_logging.py --only rings --rates 25000``).

Threads are found by the names ClickHouse gives its pools, and set one by one (Linux's nice is per
thread). Elsewhere than Linux this does nothing.
"""

from __future__ import annotations

import logging
import os

log = logging.getLogger(__name__)

# ClickHouse's merge-and-mutate pool (thread names are cut to 15 characters).
BACKGROUND_PREFIXES = ("MergeMutate",)
LOWEST = 19


class BackgroundPriority:
    """Lowers each background thread once; ``apply`` is cheap enough to call after every write."""

    def __init__(self, nice: int = LOWEST, tasks_dir: str = "/proc/self/task") -> None:
        self.nice = nice
        self.tasks_dir = tasks_dir
        self.lowered: set[int] = set()

    def apply(self) -> int:
        """Lower the background threads not seen before; returns how many were lowered now."""
        try:
            tids = os.listdir(self.tasks_dir)
        except OSError:
            return 0  # not Linux
        done = 0
        for name in tids:
            tid = int(name)
            if tid in self.lowered:
                continue
            try:
                with open(os.path.join(self.tasks_dir, name, "comm")) as f:
                    comm = f.read().strip()
            except OSError:
                continue  # the thread ended meanwhile
            if not comm.startswith(BACKGROUND_PREFIXES):
                continue
            try:
                os.setpriority(os.PRIO_PROCESS, tid, max(self.nice, os.getpriority(os.PRIO_PROCESS, tid)))
            except OSError as exc:
                log.debug("could not lower thread %d (%s): %s", tid, comm, exc)
                continue
            self.lowered.add(tid)
            done += 1
        return done
