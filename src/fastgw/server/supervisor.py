"""The parent of ``--workers N``: N worker processes share the port through SO_REUSEPORT.

The parent binds nothing that accepts (a listening socket in the group would take a share of the
connections); it starts the workers, restarts one that dies (with a back-off when they die fast),
and on SIGTERM/SIGINT/SIGHUP passes a stop on and waits for them to drain. A parent killed outright
(``kill -9``, the OOM killer) cannot pass anything on, so each child asks the kernel for a SIGTERM
when its parent dies (``parent_death``) and shuts down as it would on the parent's own: the
workers finish their requests, the exporter drains every ring and spill file it can still read.
Records a worker pushes after that drain stay in its ring for the next start's exporter.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import time
from multiprocessing.process import BaseProcess
from typing import Any, Callable

from fastgw.parent_death import die_with_parent
from fastgw.process_name import name_this_process, worker_name

log = logging.getLogger("fastgw.supervisor")


EXPORTER = -1  # the exporter's index among the children


class Supervisor:
    """Workers (indexes 0..N-1) and, when logging is on, the exporter (index EXPORTER).

    The exporter starts first and stops last: on shutdown the workers finish their requests and
    exit, and only then is the exporter told to drain every ring and spill file and exit.
    """

    def __init__(
        self, workers: int, target: Callable[[int], None], grace: float,
        exporter: Callable[[], None] | None = None,
    ) -> None:
        self.count = workers
        self.target = target
        self.exporter = exporter
        self.grace = grace
        self.ctx = multiprocessing.get_context("fork")  # the parent runs no loop, so fork is safe
        self.procs: dict[int, BaseProcess] = {}
        self.restarts = 0
        self._stopping = False
        self._hup_ignored = False

    def run(self) -> int:
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        # A closed terminal sends SIGHUP to the job: a stop like Ctrl-C, with the workers' grace
        # and the exporter's drain, where the default action ended every process at once,
        # in-flight requests and their records too. Under `nohup` (SIGHUP ignored from the start)
        # it stays ignored, in the workers too: the user asked to outlive the terminal.
        self._hup_ignored = signal.getsignal(signal.SIGHUP) == signal.SIG_IGN
        if not self._hup_ignored:
            signal.signal(signal.SIGHUP, self._on_signal)
        if self.exporter is not None:
            self._spawn(EXPORTER)
        for index in range(self.count):
            self._spawn(index)
        recent: list[float] = []
        while not self._stopping:
            time.sleep(0.2)
            for index, proc in list(self.procs.items()):
                if proc.is_alive() or self._stopping:
                    continue
                what = "exporter" if index == EXPORTER else f"worker {index}"
                log.warning("%s (pid %s) exited with %s; restarting", what, proc.pid, proc.exitcode)
                now = time.monotonic()
                recent = [t for t in recent if now - t < 10] + [now]
                if len(recent) > 3 * (self.count + 1):  # crash loop: slow down instead of spinning
                    time.sleep(1.0)
                self.restarts += 1
                self._spawn(index)
        return self._stop_all()

    def _spawn(self, index: int) -> None:
        parent = os.getpid()
        if index == EXPORTER:
            assert self.exporter is not None
            # SIGINT ignored from its first line, not from run_exporter's: see Exporter.run.
            proc = self.ctx.Process(target=_child, args=("fastgw-exporter", parent, signal.SIG_IGN, signal.SIG_IGN, self.exporter),
                                    name="fastgw-exporter", daemon=False)
        else:
            name = worker_name(index)
            proc = self.ctx.Process(target=_child, args=(name, parent, signal.default_int_handler,
                                                      signal.SIG_IGN if self._hup_ignored else signal.SIG_DFL, self.target, index),
                                    name=name,
                                    daemon=False)
        proc.start()
        self.procs[index] = proc

    def _on_signal(self, signum: int, frame: object) -> None:
        self._stopping = True

    def _stop_all(self) -> int:
        workers = [p for i, p in self.procs.items() if i != EXPORTER]
        self._stop(workers, self.grace + 5)
        exporter = self.procs.get(EXPORTER)
        if exporter is not None:
            self._stop([exporter], 90)  # its drain of every ring and spill file to the sink
        return 0

    @staticmethod
    def _stop(procs: list[BaseProcess], patience: float) -> None:
        for proc in procs:
            if proc.is_alive() and proc.pid:
                os.kill(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + patience
        for proc in procs:
            proc.join(max(0.0, deadline - time.monotonic()))
            if proc.is_alive():
                proc.kill()
                proc.join()


def _child(name: str, parent: int, on_int: Any, on_hup: Any, target: Callable[..., None], *args: Any) -> None:
    # The fork copied the parent's handlers, which only flag the parent's own loop: until the child
    # installs its own, a SIGTERM must end it rather than vanish. SIGINT and SIGHUP come from a
    # terminal to the whole job: the exporter ignores both, because `fastgw serve` stops it once
    # the workers are done (see Exporter.run); a worker's loop takes them as a stop (SIGHUP only
    # where `fastgw serve` did not find it ignored: Server.serve).
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, on_int)
    signal.signal(signal.SIGHUP, on_hup)
    name_this_process(name)  # before any thread starts, so its threads carry it too
    die_with_parent(parent, signal.SIGTERM)
    target(*args)
