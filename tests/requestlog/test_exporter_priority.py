"""The exporter's own session and autogroup nice (priority.own_autogroup).

Each case runs in a forked child: starting a session would take the test process out of its own.
"""

from __future__ import annotations

import builtins
import os
import time
from pathlib import Path
from typing import Any

import pytest

from fastgw.requestlog.priority import autogroups_on, lower_priority, own_autogroup


def in_child(fn: Any) -> int:
    """fn() in a forked child; its exit status (0: every assert held)."""
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            code = 0 if fn() else 3
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def test_with_autogroups_on_the_exporter_leads_its_own_session_at_the_given_nice(tmp_path: Path) -> None:
    enabled, group = tmp_path / "enabled", tmp_path / "autogroup"
    enabled.write_text("1\n")
    before = os.getsid(0)

    def child() -> bool:
        return (own_autogroup(19, str(group), str(enabled)) == "autogroup nice 19"
                and os.getsid(0) == os.getpid() != before and group.read_text() == "19\n")

    assert in_child(child) == 0


@pytest.mark.parametrize("state", ["0\n", None])
def test_with_autogroups_off_or_absent_nothing_changes(tmp_path: Path, state: str | None) -> None:
    enabled, group = tmp_path / "enabled", tmp_path / "autogroup"
    if state is not None:
        enabled.write_text(state)
    before = os.getsid(0)

    def child() -> bool:
        return own_autogroup(19, str(group), str(enabled)) is None and os.getsid(0) == before and not group.exists()

    assert in_child(child) == 0


def test_a_refused_change_is_tried_again(tmp_path: Path) -> None:
    """The kernel takes one autogroup nice change a tenth of a second from unprivileged processes
    (EAGAIN); root is exempt, so the refusal is played by open()."""
    enabled, group = tmp_path / "enabled", tmp_path / "autogroup"
    enabled.write_text("1")
    real_open = builtins.open

    def child() -> bool:
        refusals = [BlockingIOError(11, "Resource temporarily unavailable")] * 2

        def refusing_open(file: Any, mode: str = "r", *args: Any, **kw: Any) -> Any:
            if str(file) == str(group) and "w" in mode and refusals:
                raise refusals.pop()
            return real_open(file, mode, *args, **kw)

        builtins.open = refusing_open
        try:
            t0 = time.monotonic()
            applied = own_autogroup(7, str(group), str(enabled))
        finally:
            builtins.open = real_open
        return applied == "autogroup nice 7" and not refusals and group.read_text() == "7\n" and time.monotonic() - t0 >= 0.1

    assert in_child(child) == 0


def test_the_real_kernel_files(tmp_path: Path) -> None:
    """Against /proc: the child's autogroup is new and carries the nice; with autogroups off, the
    child stays in its session."""
    on = autogroups_on()
    ours = Path("/proc/self/autogroup").read_text().split()[0] if Path("/proc/self/autogroup").exists() else None

    def child() -> bool:
        applied = own_autogroup(19)
        if not on:
            return applied is None
        mine = Path("/proc/self/autogroup").read_text().split()
        return applied == "autogroup nice 19" and mine[0] != ours and mine[1:] == ["nice", "19"]

    assert in_child(child) == 0


def test_no_session_of_its_own_at_a_normal_priority() -> None:
    """exporter_idle off and exporter_nice 0: a session of its own would weigh as much as the
    workers' whole session, more than the exporter had in theirs."""
    before = os.getsid(0)

    def child() -> bool:
        return lower_priority(False, 0, True) == "normal" and os.getsid(0) == before

    assert in_child(child) == 0
