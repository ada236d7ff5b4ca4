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
    group.write_text("/autogroup-1606 nice 0\n")
    before = os.getsid(0)

    def child() -> bool:
        return (own_autogroup(19, str(group), str(enabled)) == "autogroup nice 19"
                and os.getsid(0) == os.getpid() != before and group.read_text() == "19\n")

    assert in_child(child) == 0


@pytest.mark.parametrize("state", ["off", "absent", "root task group"])
def test_with_autogroups_off_absent_or_not_ours_nothing_changes(tmp_path: Path, state: str) -> None:
    """The root task group: a session the kernel booted with (a VM's init never calling setsid)
    has the default autogroup, whose /proc/<pid>/autogroup reads empty (CI here)."""
    enabled, group = tmp_path / "enabled", tmp_path / "autogroup"
    if state != "absent":
        enabled.write_text("0\n" if state == "off" else "1\n")
        group.write_text("/autogroup-1606 nice 0\n" if state == "off" else "")
    before = os.getsid(0)
    content = group.read_text() if group.exists() else None

    def child() -> bool:
        return (own_autogroup(19, str(group), str(enabled)) is None and os.getsid(0) == before
                and (group.read_text() if group.exists() else None) == content)

    assert in_child(child) == 0


def test_a_refused_change_is_tried_again(tmp_path: Path) -> None:
    """The kernel takes one autogroup nice change a tenth of a second from unprivileged processes
    (EAGAIN); root is exempt, so the refusal is played by open()."""
    enabled, group = tmp_path / "enabled", tmp_path / "autogroup"
    enabled.write_text("1")
    group.write_text("/autogroup-1606 nice 0\n")
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
    """Against /proc, both ways whatever session pytest runs in. In a session of its own (the
    child's setsid gives it an autogroup where they are on), the exporter's autogroup is new and
    carries the nice. In the root task group (the file reads empty), or with autogroups off, it
    stays where it is."""
    def read() -> str:
        return Path("/proc/self/autogroup").read_text() if Path("/proc/self/autogroup").exists() else ""

    def moves() -> bool:
        applied = own_autogroup(19)
        mine = read().split()
        return applied == "autogroup nice 19" and mine[1:] == ["nice", "19"] and mine[0] != ours

    def from_a_session_of_its_own() -> bool:
        nonlocal ours
        os.setsid()
        if not autogroups_on():  # off (or not built in): nothing to do
            return own_autogroup(19) is None
        ours = read().split()[0]
        return in_child(moves) == 0

    ours = ""
    assert in_child(from_a_session_of_its_own) == 0
    sid = os.getsid(0)

    def stays() -> bool:
        return own_autogroup(19) is None and os.getsid(0) == sid

    if not autogroups_on():  # the root task group, or autogroups off: as in the test above
        assert in_child(stays) == 0
    else:
        ours = read().split()[0]
        assert in_child(moves) == 0


def test_no_session_of_its_own_at_a_normal_priority() -> None:
    """exporter_idle off and exporter_nice 0: a session of its own would weigh as much as the
    workers' whole session, more than the exporter had in theirs."""
    before = os.getsid(0)

    def child() -> bool:
        return lower_priority(False, 0, True) == "normal" and os.getsid(0) == before

    assert in_child(child) == 0


@pytest.mark.parametrize(("cgroup", "cpu_weight_at", "grouped"), [
    (None, None, True),  # no cgroup file to read: as the root
    ("9:name=systemd:/\n2:cpu,cpuacct:/\n0::/\n", None, True),  # v1, the root cpu cgroup (this VM)
    ("2:cpu,cpuacct:/system.slice/fastgw.service\n0::/\n", None, False),  # v1, a unit's cpu cgroup
    ("0::/system.slice/fastgw.service\n", "system.slice/fastgw.service", False),  # v2, cpu controller on
    ("0::/system.slice/fastgw.service\n", None, True),  # v2, the cpu controller off there
    ("0::/\n", None, True),  # v2 root (or inside a cgroup namespace: can't tell)
])
def test_in_a_cpu_cgroup_other_than_the_root_sessions_are_not_groups(
        tmp_path: Path, cgroup: str | None, cpu_weight_at: str | None, grouped: bool) -> None:
    """The kernel uses autogroups only for tasks of the root cpu cgroup; elsewhere the cgroup's
    weight decides, and a session of its own would only take the exporter out of the job."""
    proc, root = tmp_path / "proc", tmp_path / "sys-fs-cgroup"
    proc.mkdir()
    (proc / "enabled").write_text("1\n")
    (proc / "autogroup").write_text("/autogroup-1606 nice 0\n")
    if cgroup is not None:
        (proc / "cgroup").write_text(cgroup)
    if cpu_weight_at is not None:
        (root / cpu_weight_at).mkdir(parents=True)
        (root / cpu_weight_at / "cpu.weight").write_text("100\n")
    assert autogroups_on(str(proc / "enabled"), str(proc / "autogroup"), str(root)) is grouped
