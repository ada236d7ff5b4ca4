"""chDB's background merges run after the exporter's own loop: at nice 19, and deferred while it is behind.

chDB runs ClickHouse inside the exporter process, merge threads included. Merges are deferred work:
they may fall behind for a while (parts accumulate, and ClickHouse slows inserts itself only at
``parts_to_delay_insert``). The exporter's loop is not: while it waits for CPU the workers' rings
fill and spill to disk. On one core at 25,000 records/s, equal-priority merges made the rings spill
about 16% of the records in every 10 s window; with the merge threads at nice 19 nothing spilled
and the exporter's CPU per record was the same (``bench_logging.py --only rings --rates 25000``).
Under SCHED_IDLE (``exporter_idle``, the default) a thread's nice no longer counts, so MergeDeferral
below holds merges back while the exporter has a backlog, whatever the policy.

Threads are found by the names ClickHouse gives its pools, and set one by one (Linux's nice is per
thread). Elsewhere than Linux this does nothing.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable

from fastgw.requestlog.priority import LOWEST

log = logging.getLogger(__name__)

# ClickHouse's merge-and-mutate pool (thread names are cut to 15 characters).
BACKGROUND_PREFIXES = ("MergeMutate",)


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


class MergeDeferral:
    """When chDB's merges wait: while the exporter is behind, for ``max_defer`` seconds at most.

    The exporter runs under SCHED_IDLE (config.LoggingConfig.exporter_idle), where every thread of
    the process has the same weight, so the nice 19 above no longer keeps merges below the loop.
    Merges are deferred work and inserts are not. At 25,000 records/s on one core
    (``bench_logging.py --only rings --rates 25000``), merges running at the loop's weight let
    20,300-21,400 records/s through, 70,000-85,000 spilled in 10 s, at 43-47 µs of CPU a record;
    deferred while a batch was waiting, 24,100-24,200/s, nothing spilled, 34-35 µs a record. Parts
    pile up meanwhile (at 50,000 records/s in batches of 5,000, ten a second), so a deferral lasts
    ``max_defer`` seconds at most, none starts over ``clickhouse.MAX_DEFERRED_PARTS`` parts, and once
    merges run again they run for ``min_run`` seconds before the next one (stopping merges cancels
    the ones in progress).
    """

    def __init__(self, max_defer: float = 30.0, min_run: float = 5.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.max_defer, self.min_run, self.clock = max_defer, min_run, clock
        self._deferred_since: float | None = None
        self._running_since = float("-inf")

    def update(self, behind: bool, caught_up: bool) -> bool:
        """Whether merges should wait now. ``behind``: a whole batch was waiting; ``caught_up``: the
        last read found little. Neither (a steady load near capacity) keeps the current state."""
        now = self.clock()
        if self._deferred_since is not None:
            if caught_up or now - self._deferred_since >= self.max_defer:
                self._deferred_since, self._running_since = None, now
        elif behind and now - self._running_since >= self.min_run:
            self._deferred_since = now
        return self._deferred_since is not None
