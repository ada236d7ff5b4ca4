"""The exporter's idle cgroup (requestlog/idle_cgroup.py): where the cpu cgroup is found, the
folder it makes, what it leaves behind when it can't, and the real kernel's answer."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from fastgw.requestlog import idle_cgroup
from fastgw.requestlog.idle_cgroup import CpuCgroup, cpu_cgroup, cpu_cgroup_path, enter, remove, sweep
from tests.helpers import can_make_idle_cgroup, process_gone

V1_HYBRID = """9:name=systemd:/
4:memory:/process_api/f65e
2:cpuacct:/
1:cpu:/batch/jobs
0::/
"""
V1_MOUNTS = """24 23 0:21 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
25 24 0:22 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
26 24 0:23 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
33 24 0:30 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
"""


def files(tmp_path: Path, cgroup: str, mounts: str) -> tuple[str, str]:
    (tmp_path / "cgroup").write_text(cgroup)
    (tmp_path / "mountinfo").write_text(mounts)
    return str(tmp_path / "cgroup"), str(tmp_path / "mountinfo")


@pytest.mark.parametrize(("cg", "mounts", "expected"), [
    (V1_HYBRID, V1_MOUNTS, CpuCgroup("/sys/fs/cgroup/cpu/batch/jobs", True)),  # v1's cpu wins over the unified one
    ("3:cpu,cpuacct:/system.slice/fastgw.service\n0::/\n",  # v1's cpu mounted together with cpuacct
     "30 24 0:27 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct\n",
     CpuCgroup("/sys/fs/cgroup/cpu,cpuacct/system.slice/fastgw.service", True)),
    ("0::/user.slice/session-3.scope\n",  # v2 alone
     "29 23 0:26 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n",
     CpuCgroup("/sys/fs/cgroup/user.slice/session-3.scope", False)),
    ("0::/docker/abc123\n",  # a container sees its own cgroup mounted as the root
     "40 30 0:26 /docker/abc123 /sys/fs/cgroup ro,nosuid - cgroup2 cgroup2 rw\n", CpuCgroup("/sys/fs/cgroup", False)),
])
def test_where_the_cpu_cgroup_is(tmp_path: Path, cg: str, mounts: str, expected: CpuCgroup) -> None:
    assert cpu_cgroup(*files(tmp_path, cg, mounts)) == expected


def test_escapes_and_mounts_that_dont_show_the_path(tmp_path: Path) -> None:
    cg = "1:cpu:/batch/jobs\n"
    mounts = ("25 24 0:22 /docker/x /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu\n"  # another subtree: not here
              "26 24 0:22 / /mnt/cpu\\040set rw - cgroup cgroup rw,cpu\n")
    assert cpu_cgroup(*files(tmp_path, cg, mounts)) == CpuCgroup("/mnt/cpu set/batch/jobs", True)
    # A cgroup namespace can show a path that climbs out of the mounted subtree.
    assert cpu_cgroup(*files(tmp_path, "0::/../other\n", "29 23 0:26 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n")) is None


@pytest.mark.parametrize(("cg", "mounts"), [
    ("4:memory:/x\n", "25 24 0:22 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n"),  # no cpu controller
    ("1:cpu:/x\n", "33 24 0:30 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw\n"),  # v1 cpu not mounted
    ("", ""),
])
def test_no_cpu_cgroup_to_be_found(tmp_path: Path, cg: str, mounts: str) -> None:
    assert cpu_cgroup(*files(tmp_path, cg, mounts)) is None
    assert cpu_cgroup(str(tmp_path / "missing"), str(tmp_path / "mountinfo")) is None


def stand_in(tmp_path: Path, owner: int, v2_root_with_cpu: bool = False) -> Path:
    """A plain folder for a cpu cgroup, and the folder the exporter's would be with the control
    files the kernel would have made in it (a plain mkdir makes none)."""
    (tmp_path / "cgroup.procs").write_text("")
    if v2_root_with_cpu:
        (tmp_path / "cgroup.subtree_control").write_text("cpu memory\n")
    child = tmp_path / f"fastgw-exporter-{owner}"
    child.mkdir()
    for name in ("cpu.idle", "tasks", "cgroup.procs"):
        (child / name).write_text("")
    return child


def test_enter_marks_the_folder_idle_and_moves_this_thread(tmp_path: Path) -> None:
    import threading

    child = stand_in(tmp_path, 4242)
    assert enter(4242, CpuCgroup(str(tmp_path), True)) == str(child)
    assert (child / "cpu.idle").read_text() == "1\n"
    assert (child / "tasks").read_text() == f"{threading.get_native_id()}\n"  # v1: this thread alone


def test_v2_moves_the_whole_process_from_the_root_cgroup(tmp_path: Path) -> None:
    child = stand_in(tmp_path, 77, v2_root_with_cpu=True)
    assert enter(77, CpuCgroup(str(tmp_path), False)) == str(child)
    assert (child / "cgroup.procs").read_text() == f"{os.getpid()}\n"
    assert (tmp_path / "cgroup.subtree_control").read_text() == "cpu memory\n"  # untouched


@pytest.mark.parametrize("case", ["v2 below the root", "v2 root without cpu given down", "not a cgroup"])
def test_v2_never_changes_the_hierarchy(tmp_path: Path, case: str) -> None:
    child = stand_in(tmp_path, 77, v2_root_with_cpu=True)
    if case == "v2 below the root":
        (tmp_path / "cgroup.type").write_text("domain\n")
    elif case == "v2 root without cpu given down":
        (tmp_path / "cgroup.subtree_control").write_text("memory io\n")
    else:
        (tmp_path / "cgroup.procs").unlink()
    before = {p.name: p.read_text() for p in tmp_path.iterdir() if p.is_file()}
    assert enter(77, CpuCgroup(str(tmp_path), False)) is None
    assert (child / "cpu.idle").read_text() == "" and (child / "cgroup.procs").read_text() == ""
    assert {p.name: p.read_text() for p in tmp_path.iterdir() if p.is_file()} == before


def test_without_cpu_idle_nothing_is_left_behind(tmp_path: Path) -> None:
    """A kernel before 5.15 has no cpu.idle: the folder made for it goes again, nothing moved."""
    (tmp_path / "cgroup.procs").write_text("")
    assert enter(77, CpuCgroup(str(tmp_path), True)) is None
    assert [p.name for p in tmp_path.iterdir()] == ["cgroup.procs"]
    # No folder can be made there.
    (tmp_path / "a-file").write_text("")
    assert enter(77, CpuCgroup(str(tmp_path / "a-file"), True)) is None
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file", "cgroup.procs"]


def test_sweep_removes_only_folders_of_supervisors_gone(tmp_path: Path) -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    assert process_gone(dead.pid)
    for name in (f"fastgw-exporter-{dead.pid}", f"fastgw-exporter-{os.getpid()}", "fastgw-exporter-1",
                 "fastgw-exporter-x", "someone-else", f"fastgw-exporter-{dead.pid + 1000000}",
                 "fastgw-exporter-\u00b2", "fastgw-exporter-" + "9" * 40):
        (tmp_path / name).mkdir()
    (tmp_path / "fastgw-exporter-999999999" / "tasks").parent.mkdir(exist_ok=True)
    (tmp_path / "fastgw-exporter-999999999" / "tasks").write_text("12\n")  # still holds tasks: stays
    sweep(str(tmp_path), keep=dead.pid + 1000000)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([
        f"fastgw-exporter-{os.getpid()}", "fastgw-exporter-1", "fastgw-exporter-x", "someone-else",
        f"fastgw-exporter-{dead.pid + 1000000}", "fastgw-exporter-999999999", "fastgw-exporter-\u00b2",
        "fastgw-exporter-" + "9" * 40])
    remove(os.getpid(), CpuCgroup(str(tmp_path), True))
    assert not (tmp_path / f"fastgw-exporter-{os.getpid()}").exists()
    remove(os.getpid(), CpuCgroup(str(tmp_path), True))  # gone already: nothing to do


CHILD = textwrap.dedent("""
    import json, os, threading
    from fastgw.requestlog import idle_cgroup
    path = idle_cgroup.enter(os.getpid())
    seen = {}
    def later():
        seen["thread"] = open("/proc/thread-self/cgroup").read()
    t = threading.Thread(target=later); t.start(); t.join()
    print(json.dumps({"path": path, "main": open("/proc/thread-self/cgroup").read(), **seen}))
""")


def test_the_real_kernel(tmp_path: Path) -> None:
    """In a child process (the test's own stays where it is): where this machine lets a process
    make a cgroup, the child's main thread and a thread it starts afterwards are in the idle one,
    and once the child exited, remove() takes the folder away. Elsewhere the child stays put."""
    import json

    before = cpu_cgroup()
    out = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    got = json.loads(out.stdout)
    assert before is not None or got["path"] is None
    if not can_make_idle_cgroup():
        assert got["path"] is None
        assert got["main"] == got["thread"] == Path("/proc/thread-self/cgroup").read_text()  # stayed put
        return
    assert before is not None and got["path"] is not None, got
    path = Path(got["path"])
    try:
        assert path.parent == Path(before.path) and path.name.startswith(idle_cgroup.PREFIX)
        assert (path / "cpu.idle").read_text().strip() == "1"
        own = cpu_cgroup_path("/proc/thread-self/cgroup")
        assert own is not None
        for which in ("main", "thread"):  # the thread started after enter() followed it in
            (tmp_path / which).write_text(got[which])
            assert cpu_cgroup_path(str(tmp_path / which)) == (f"{own[0].rstrip('/')}/{path.name}", own[1]), (which, got)
    finally:
        remove(int(path.name[len(idle_cgroup.PREFIX):]))
    assert not path.exists()

