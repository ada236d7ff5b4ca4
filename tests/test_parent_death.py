"""parent_death: the kernel's signal on a parent's death, and the race where the parent is gone first.

The children run the supervisor's own entry point (``supervisor._child``), which also puts SIGTERM
back to its default: a fork inherits its parent's handlers (pytest's process may have one).
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from fastgw.server.supervisor import _child
from tests.helpers import process_gone

CTX = multiprocessing.get_context("fork")


@pytest.fixture(autouse=True)
def sigterm_caught_here() -> Iterator[None]:
    """A Python SIGTERM handler in this process, which the forks inherit (as the supervisor's are)."""
    before = signal.signal(signal.SIGTERM, lambda signum, frame: None)
    yield
    signal.signal(signal.SIGTERM, before)


def _reports_then_waits(out: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    out.put(os.getpid())
    while True:  # a caught signal ends one pause(); only a default SIGTERM ends the process
        signal.pause()


def _starts_one_then_dies(out: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    CTX.Process(target=_child, args=("fastgw-test", os.getpid(), signal.default_int_handler, signal.SIG_DFL, _reports_then_waits, out)).start()
    time.sleep(0.5)
    os._exit(0)  # the grandchild is signalled either way: by the kernel, or by its own check if it asks later


def test_a_child_gets_sigterm_when_its_parent_dies() -> None:
    out = CTX.Queue()
    middle = CTX.Process(target=_starts_one_then_dies, args=(out,))
    middle.start()
    grandchild = out.get(timeout=10)
    middle.join(10)
    deadline = time.monotonic() + 10
    while not process_gone(grandchild) and time.monotonic() < deadline:
        time.sleep(0.02)
    alive = not process_gone(grandchild)
    if alive:
        os.kill(grandchild, signal.SIGKILL)
    assert not alive, "the child outlived its parent"


def test_a_child_whose_parent_is_already_gone_gets_its_signal_at_once() -> None:
    out = CTX.Queue()
    # Told its parent is a process that is not its parent: the race the check covers (the parent
    # died between the fork and the call, and the child was adopted by another).
    child = CTX.Process(target=_child, args=("fastgw-test", os.getpid() + 1_000_000, signal.default_int_handler, signal.SIG_DFL, _reports_then_waits, out))
    child.start()
    child.join(10)
    if child.exitcode is None:  # still paused: the test fails, without leaving it for pytest's exit to wait on
        child.kill()
        child.join()
        raise AssertionError("the child outlived its (supposed) parent")
    assert child.exitcode == -signal.SIGTERM


def _interrupts_itself(out: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    name = Path("/proc/self/comm").read_text().strip()
    try:
        os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C reaching the child before its own setup
        out.put(("survived", name))
    except KeyboardInterrupt:
        out.put(("interrupted", name))


def test_the_exporter_ignores_ctrl_c_from_its_first_line_and_a_worker_does_not_each_by_its_name() -> None:
    """The exporter leaves only on the supervisor's SIGTERM, after the workers; a Ctrl-C that came
    between the fork and run_exporter's own SIG_IGN ended it before (its rows waited for the next
    start). The supervisor's spawn passes SIG_IGN for the exporter, default_int_handler for workers."""
    from fastgw.server.supervisor import EXPORTER, Supervisor

    out: multiprocessing.Queue = CTX.Queue()  # type: ignore[type-arg]
    sup = Supervisor(1, lambda index: _interrupts_itself(out), grace=1.0, exporter=lambda: _interrupts_itself(out))
    try:
        sup._spawn(EXPORTER)
        assert out.get(timeout=10) == ("survived", "fastgw-exporter")  # named as top and pgrep show it
        sup._spawn(0)
        assert out.get(timeout=10) == ("interrupted", "fastgw-worker-0")
    finally:
        for proc in sup.procs.values():
            proc.join(10)
