"""The exporter in a cpu cgroup of its own marked ``cpu.idle``, where the process may make one.

SCHED_IDLE gives way at once to a task that wakes up only inside one run queue. Linux schedules
sessions (autogroups) and cgroups as group entities, compares those when a task of another group
wakes, and counts a group entity as idle only when its cgroup says so (``cpu.idle``, Linux 5.15).
So a client or upstream on the exporter's core, in another session, that wakes while the exporter
runs Python, waits for the next scheduler tick (4 ms at HZ=250), however low the exporter's policy.
benchmarks/bench_exporter_preemption.py (perf sched, 2,000 requests/s, 10 s runs): the load
generator and nginx waited 18.9-30.0 ms in all behind the exporter in its own session, 1.9-5.4 ms
behind it in an idle cgroup.

Making a cgroup takes write access to the process's cpu cgroup: root, or a subtree delegated to
it. In cgroup v1 only the calling thread moves (threads and processes it starts follow it), so the
admin server's thread, started before, keeps its share. In v2 the whole process moves, and only
from the root cgroup where the cpu controller is already given to its children: nothing here
changes a v2 hierarchy's controllers (enabling cpu at the root would make every top-level cgroup
of the machine a cpu group; a non-root cgroup holding processes would turn into a thread root
that takes no domain controllers any more). Where any step fails, nothing changes and the policy
and session of ``priority.lower_priority`` are what there is.

The folder is named after the supervisor (``fastgw-exporter-<pid>``): a restarted exporter reuses
it, the supervisor removes it once its exporter is gone (``remove``), and a start removes the empty
ones of supervisors no longer running (killed with -9).
"""

from __future__ import annotations

import logging
import os
import re
import threading
from dataclasses import dataclass

log = logging.getLogger(__name__)

PREFIX = "fastgw-exporter-"


@dataclass(frozen=True, slots=True)
class CpuCgroup:
    path: str  # the folder of this process's cpu cgroup
    v1: bool


def cpu_cgroup_path(proc_cgroup: str = "/proc/self/cgroup") -> tuple[str, bool] | None:
    """The cgroup path that decides a process's cpu share, from its /proc/<pid>/cgroup, and whether
    it is cgroup v1's: v1's ``cpu`` hierarchy if there is one, else v2's. None when neither shows."""
    try:
        with open(proc_cgroup) as f:
            lines = [line.split(":", 2) for line in f.read().splitlines() if line.count(":") >= 2]
    except OSError:
        return None
    v1 = next((path for _, controllers, path in lines if "cpu" in controllers.split(",")), None)
    if v1 is not None:
        return v1, True
    v2 = next((path for _, controllers, path in lines if not controllers), None)
    return (v2, False) if v2 is not None else None


def cpu_cgroup(proc_cgroup: str = "/proc/self/cgroup", mountinfo: str = "/proc/self/mountinfo") -> CpuCgroup | None:
    """Where this process's cpu cgroup is mounted (``cpu_cgroup_path``'s hierarchy). None when there
    is none (not Linux, or no cpu controller mounted)."""
    found = cpu_cgroup_path(proc_cgroup)
    if found is None:
        return None
    path, v1 = found
    try:
        with open(mountinfo) as f:
            mounts = [line.split() for line in f]
    except OSError:
        return None
    for fields in mounts:
        if "-" not in fields:
            continue
        dash = fields.index("-")
        if len(fields) < dash + 4 or dash < 5:
            continue
        root, point, fstype, options = _unescape(fields[3]), _unescape(fields[4]), fields[dash + 1], fields[dash + 3]
        if (fstype == "cgroup" and v1 and "cpu" in options.split(",")) or (fstype == "cgroup2" and not v1):
            folder = _under(point, root, path)
            if folder is not None:
                return CpuCgroup(folder, v1)
    return None


def _unescape(field: str) -> str:
    """mountinfo writes space, tab, newline and backslash as octal escapes (\\040 ...)."""
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m[1], 8)), field)


def _under(mount_point: str, mount_root: str, path: str) -> str | None:
    """The folder of cgroup ``path`` in a hierarchy mounted at ``mount_point`` from its ``mount_root``
    (a container sees its own cgroup mounted as the root). None where this mount doesn't show it
    (the path is outside the mounted subtree, or climbs out of it as cgroup namespaces can show)."""
    root = mount_root.rstrip("/")
    if root and path != root and not path.startswith(root + "/"):
        return None
    rest = path[len(root):].lstrip("/")
    if ".." in rest.split("/"):
        return None
    return os.path.join(mount_point, rest).rstrip("/") or "/"


def enter(owner: int, where: CpuCgroup | None = None) -> str | None:
    """Move this thread (v1) or process (v2) into ``<cpu cgroup>/fastgw-exporter-<owner>``, marked
    ``cpu.idle``. The folder, or None where that can't be done (logged, nothing left behind)."""
    where = where if where is not None else cpu_cgroup()
    if where is None:
        return None
    why = _unusable(where)
    if why:
        log.info("the exporter stays in its cpu cgroup %s: %s", where.path, why)
        return None
    sweep(where.path, keep=owner)
    path = os.path.join(where.path, f"{PREFIX}{owner}")
    made = False
    try:
        try:
            os.mkdir(path)
            made = True
        except FileExistsError:
            pass  # a restarted exporter: its supervisor's folder
        # Marked idle before anything moves in: a kernel without cpu.idle (before 5.15) fails here.
        _write(os.path.join(path, "cpu.idle"), "1")
        member, who = ("tasks", threading.get_native_id()) if where.v1 else ("cgroup.procs", os.getpid())
        _write(os.path.join(path, member), str(who))
    except OSError as exc:
        log.info("the exporter stays in its cpu cgroup %s: no idle cgroup under it (%s)", where.path, exc)
        if made:
            _rmdir(path)
        return None
    return path


def _unusable(where: CpuCgroup) -> str:
    """Why no idle cgroup can be made under ``where`` without changing the hierarchy; "" if one can."""
    if not os.path.exists(os.path.join(where.path, "cgroup.procs")):
        return "not a cgroup folder"
    if where.v1:
        return ""
    if os.path.exists(os.path.join(where.path, "cgroup.type")):  # only v2's root cgroup has none
        return "cgroup v2 below the root (its processes keep a child from taking the cpu controller)"
    try:
        with open(os.path.join(where.path, "cgroup.subtree_control")) as f:
            if "cpu" not in f.read().split():
                return "cgroup v2 without the cpu controller given to its children"
    except OSError as exc:
        return str(exc)
    return ""


def _write(path: str, value: str) -> None:
    """Into a file the kernel made, never creating one (a missing control file is ENOENT)."""
    fd = os.open(path, os.O_WRONLY)
    try:
        os.write(fd, f"{value}\n".encode())
    finally:
        os.close(fd)


def remove(owner: int, where: CpuCgroup | None = None) -> None:
    """The supervisor's folder, once its exporter exited (a cgroup with tasks left stays)."""
    where = where if where is not None else cpu_cgroup()
    if where is not None:
        _rmdir(os.path.join(where.path, f"{PREFIX}{owner}"))


def sweep(parent: str, keep: int) -> None:
    """Folders of supervisors that no longer run (killed before they could remove theirs)."""
    try:
        names = os.listdir(parent)
    except OSError:
        return
    for name in names:
        pid = name[len(PREFIX):]
        if name.startswith(PREFIX) and pid.isascii() and pid.isdigit() and int(pid) != keep and not _running(int(pid)):
            _rmdir(os.path.join(parent, name))


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True  # someone else's, or no pid at all: not ours to remove
    return True


def _rmdir(path: str) -> None:
    try:
        os.rmdir(path)
    except FileNotFoundError:
        pass
    except OSError as exc:  # tasks still in it (EBUSY), or not ours to remove
        log.debug("could not remove cgroup %s: %s", path, exc)
