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
from fastgw.requestlog.idle_cgroup import CpuCgroup, cpu_cgroup, enter, remove, sweep
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


def test_v1_cpu_hierarchy_wins_over_the_unified_one(tmp_path: Path) -> None:
    assert cpu_cgroup(*files(tmp_path, V1_HYBRID, V1_MOUNTS)) == CpuCgroup("/sys/fs/cgroup/cpu/batch/jobs", True)


def test_v1_cpu_mounted_together_with_cpuacct(tmp_path: Path) -> None:
    cg = "3:cpu,cpuacct:/system.slice/fastgw.service\n0::/\n"
    mounts = "30 24 0:27 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct\n"
    assert cpu_cgroup(*files(tmp_path, cg, mounts)) == CpuCgroup("/sys/fs/cgroup/cpu,cpuacct/system.slice/fastgw.service", True)


def test_v2_only(tmp_path: Path) -> None:
    cg = "0::/user.slice/session-3.scope\n"
    mounts = "29 23 0:26 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n"
    assert cpu_cgroup(*files(tmp_path, cg, mounts)) == CpuCgroup("/sys/fs/cgroup/user.slice/session-3.scope", False)


def test_a_container_sees_its_cgroup_mounted_as_the_root(tmp_path: Path) -> None:
    cg = "0::/docker/abc123\n"
    mounts = "40 30 0:26 /docker/abc123 /sys/fs/cgroup ro,nosuid - cgroup2 cgroup2 rw\n"
    assert cpu_cgroup(*files(tmp_path, cg, mounts)) == CpuCgroup("/sys/fs/cgroup", False)


@pytest.mark.parametrize(("cg", "mounts"), [
    ("4:memory:/x\n", "25 24 0:22 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n"),  # no cpu controller
    ("1:cpu:/x\n", "33 24 0:30 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw\n"),  # v1 cpu not mounted
    ("", ""),
])
def test_no_cpu_cgroup_to_be_found(tmp_path: Path, cg: str, mounts: str) -> None:
    assert cpu_cgroup(*files(tmp_path, cg, mounts)) is None
    assert cpu_cgroup(str(tmp_path / "missing"), str(tmp_path / "mountinfo")) is None


def test_enter_marks_the_folder_idle_and_moves_this_thread(tmp_path: Path) -> None:
    """A plain folder stands in for a v1 cpu cgroup: the files the kernel would act on."""
    where = CpuCgroup(str(tmp_path), True)
    path = enter(4242, where)
    assert path == str(tmp_path / "fastgw-exporter-4242")
    assert (tmp_path / "fastgw-exporter-4242" / "cpu.idle").read_text() == "1\n"
    import threading

    assert (tmp_path / "fastgw-exporter-4242" / "tasks").read_text() == f"{threading.get_native_id()}\n"
    assert enter(4242, where) == path  # a restarted exporter takes its supervisor's folder again


def test_v2_moves_the_process_after_giving_the_cpu_controller_down(tmp_path: Path) -> None:
    (tmp_path / "cgroup.subtree_control").write_text("")
    path = enter(77, CpuCgroup(str(tmp_path), False))
    assert path is not None
    assert (tmp_path / "cgroup.subtree_control").read_text() == "+cpu\n"
    assert (Path(path) / "cgroup.procs").read_text() == f"{os.getpid()}\n"


def test_where_it_cant_nothing_is_left_behind(tmp_path: Path) -> None:
    # v2, a cgroup that can't give its controllers down (a folder stands in for the file, so the
    # write fails as the kernel's EBUSY would): the folder made for the exporter goes again.
    (tmp_path / "cgroup.subtree_control").mkdir()
    assert enter(77, CpuCgroup(str(tmp_path), False)) is None
    assert [p.name for p in tmp_path.iterdir()] == ["cgroup.subtree_control"]
    (tmp_path / "cgroup.subtree_control").rmdir()
    # No folder can be made there.
    (tmp_path / "a-file").write_text("")
    assert enter(77, CpuCgroup(str(tmp_path / "a-file"), True)) is None
    assert [p.name for p in tmp_path.iterdir()] == ["a-file"]


def test_sweep_removes_only_folders_of_supervisors_gone(tmp_path: Path) -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    assert process_gone(dead.pid)
    for name in (f"fastgw-exporter-{dead.pid}", f"fastgw-exporter-{os.getpid()}", "fastgw-exporter-1",
                 "fastgw-exporter-x", "someone-else", f"fastgw-exporter-{dead.pid + 1000000}"):
        (tmp_path / name).mkdir()
    (tmp_path / "fastgw-exporter-999999999" / "tasks").parent.mkdir(exist_ok=True)
    (tmp_path / "fastgw-exporter-999999999" / "tasks").write_text("12\n")  # still holds tasks: stays
    sweep(str(tmp_path), keep=dead.pid + 1000000)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([
        f"fastgw-exporter-{os.getpid()}", "fastgw-exporter-1", "fastgw-exporter-x", "someone-else",
        f"fastgw-exporter-{dead.pid + 1000000}", "fastgw-exporter-999999999"])
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


def test_the_real_kernel() -> None:
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
        rel = "/" + str(path.relative_to(_mount_of(before)))
        for which in ("main", "thread"):
            lines = got[which].splitlines()
            line = next(ln for ln in lines if ("cpu" in ln.split(":")[1].split(",")) == before.v1
                        and (before.v1 or ln.startswith("0::")))
            assert line.split(":", 2)[2] == rel, (which, got)
    finally:
        owner = int(path.name[len(idle_cgroup.PREFIX):])
        remove(owner)
    assert not path.exists()


def _mount_of(where: CpuCgroup) -> Path:
    """The hierarchy's mount point: the cgroup path (from /proc/self/cgroup) cut off the folder."""
    lines = Path("/proc/self/cgroup").read_text().splitlines()
    own = next(ln.split(":", 2)[2] for ln in lines
               if (where.v1 and "cpu" in ln.split(":")[1].split(",")) or (not where.v1 and ln.startswith("0::")))
    p = Path(where.path)
    for _ in Path(own).parts[1:]:
        p = p.parent
    return p
