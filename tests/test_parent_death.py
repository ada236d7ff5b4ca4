"""parent_death: the kernel's signal on a parent's death, and the race where the parent is gone first."""

from __future__ import annotations

import multiprocessing
import os
import signal
import time

from fastgw.parent_death import die_with_parent
from tests.helpers import process_gone

CTX = multiprocessing.get_context("fork")


def _asks_then_waits(parent: int, out: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    out.put((os.getpid(), die_with_parent(parent, signal.SIGTERM)))
    signal.pause()


def _starts_one_then_dies(out: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    CTX.Process(target=_asks_then_waits, args=(os.getpid(), out)).start()
    time.sleep(0.5)  # the grandchild has asked by now (the test checks that it did)
    os._exit(0)


def test_a_child_gets_sigterm_when_its_parent_dies() -> None:
    out = CTX.Queue()
    middle = CTX.Process(target=_starts_one_then_dies, args=(out,))
    middle.start()
    grandchild, asked = out.get(timeout=10)
    assert asked is True
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
    child = CTX.Process(target=_asks_then_waits, args=(os.getpid() + 1_000_000, out))
    child.start()
    child.join(10)
    assert child.exitcode == -signal.SIGTERM
