"""Which processes the exporter's stop waits for (exporter._running_child_of): running siblings
in the workers' session, and nothing else that may hold a pid a worker once had."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from fastgw.requestlog.exporter import _running_child_of
from tests.helpers import process_gone

SLEEPER = [sys.executable, "-c", "import time; time.sleep(30)"]


def test_a_running_child_in_the_session_is_a_worker() -> None:
    proc = subprocess.Popen(SLEEPER)
    try:
        assert _running_child_of(proc.pid, os.getpid(), os.getsid(0))
        assert not _running_child_of(proc.pid, os.getpid() + 1, os.getsid(0))  # someone else's child
    finally:
        proc.kill()
        proc.wait()


def test_a_zombie_is_not() -> None:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    deadline = time.monotonic() + 10
    while not process_gone(proc.pid):  # a zombie: exited, not yet reaped
        assert time.monotonic() < deadline
        time.sleep(0.01)
    try:
        assert not _running_child_of(proc.pid, os.getpid(), os.getsid(0))
    finally:
        proc.wait()


def test_a_child_in_a_session_of_its_own_is_not() -> None:
    """A daemon that took a worker's pid after both were reparented: same parent, its own session."""
    proc = subprocess.Popen(SLEEPER, start_new_session=True)
    try:
        assert not _running_child_of(proc.pid, os.getpid(), os.getsid(0))
        assert _running_child_of(proc.pid, os.getpid(), proc.pid)
    finally:
        proc.kill()
        proc.wait()


def test_this_process_and_no_process_are_not() -> None:
    assert not _running_child_of(os.getpid(), os.getppid(), os.getsid(0))
    assert not _running_child_of(0, os.getpid(), os.getsid(0))
    assert not _running_child_of(4_000_000_000, os.getpid(), os.getsid(0))
