"""The exporter's place in the scheduler: a background process, below every request-path one.

Why a module of its own: how low the exporter runs decides what its work costs the requests that
share its core (config.LoggingConfig.exporter_idle, exporter_nice, exporter_own_session,
exporter_idle_cgroup), and it is Linux process state (policy, nice, session, autogroup, cgroup),
nothing of the exporter's loop.
"""

from __future__ import annotations

import logging
import os
import time

from fastgw.requestlog import idle_cgroup

log = logging.getLogger("fastgw.exporter")

LOWEST = 19  # the lowest priority a nice value gives (chDB's merge threads, the exporter's autogroup)
AUTOGROUP_ENABLED = "/proc/sys/kernel/sched_autogroup_enabled"


def autogroups_on(enabled: str = AUTOGROUP_ENABLED, group: str = "/proc/self/autogroup",
                  cgroup_root: str = "/sys/fs/cgroup") -> bool:
    """Whether this process's session is scheduled as a group of its own: autogroups built in and
    switched on, the session not the boot session's, and the process in the root cpu cgroup.

    A process whose session never left the one the kernel booted with (a VM's init never calling
    setsid, as on CI here) is in the default autogroup, which is the root task group itself:
    /proc/<pid>/autogroup reads empty, and its tasks compete one by one with the sessions' groups.
    A SCHED_IDLE exporter does best there as it is: a task of the lowest weight, which a waking
    request-path task preempts at once. A session of its own would make it a group entity of
    autogroup nice 19 (weight 15, not 3) that loses that preemption.

    In a cpu cgroup other than the root (a systemd unit with the cpu controller on, a container)
    the kernel doesn't use autogroups, though the file still names one; the cgroup's weight
    decides. Inside a cgroup namespace the path reads "/" and this can't tell: a session of its
    own there changes nothing."""
    try:
        with open(enabled) as f:
            if f.read().strip() != "1":
                return False
        with open(group) as f:
            if not f.read().startswith("/autogroup-"):
                return False
    except OSError:
        return False
    return not _in_a_cpu_cgroup(os.path.join(os.path.dirname(group), "cgroup"), cgroup_root)


def _in_a_cpu_cgroup(cgroup_file: str, cgroup_root: str) -> bool:
    """The process's cpu cgroup isn't the root one: in cgroup v1 the ``cpu`` controller's path, in
    v2 a path whose folder has the cpu controller's files. False when it can't tell."""
    found = idle_cgroup.cpu_cgroup_path(cgroup_file)
    if found is None or found[0] == "/":
        return False
    path, v1 = found
    return v1 or os.path.exists(os.path.join(cgroup_root, path.lstrip("/"), "cpu.weight"))


def lower_priority(idle: bool, nice: int, own_session: bool = True, cgroup_owner: int | None = None) -> str:
    """Background priority for this process, before it starts any thread (chDB's inherit it).
    ``cgroup_owner``: under SCHED_IDLE, an idle cgroup named after this pid (idle_cgroup.enter).

    Returns what was applied, for the log and the tests."""
    # Not at nice 0 without SCHED_IDLE: a session of its own would weigh as much as the workers' whole session.
    # Its session first, idle cgroup or not: that keeps it out of the terminal's job (Ctrl-C, Ctrl-Z, a
    # hangup), and in cgroup v1 the admin server's thread, left out of the idle cgroup, in a low-weight group.
    group = own_autogroup(LOWEST if idle else nice) if own_session and (idle or nice > 0) else None
    cgroup = idle_cgroup.enter(cgroup_owner) if idle and cgroup_owner is not None else None
    applied = "normal"
    if idle and hasattr(os, "SCHED_IDLE"):
        try:
            os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
            applied = "idle"
        except OSError as exc:
            log.warning("could not run the exporter under SCHED_IDLE (%s); using nice %d", exc, nice)
    if applied == "normal" and nice:
        try:
            os.nice(nice)
            applied = f"nice {nice}"
        except OSError as exc:
            log.warning("could not lower the exporter's priority: %s", exc)
    return ", ".join(part for part in (applied, group, cgroup and f"cpu.idle cgroup {cgroup}") if part)


def own_autogroup(nice: int, path: str = "/proc/self/autogroup", enabled: str = AUTOGROUP_ENABLED) -> str | None:
    """A session of its own, at ``nice``, where Linux schedules sessions as groups (autogroups).

    With autogroups on (the default of most distributions' kernels, for processes outside a cpu
    cgroup), the scheduler first shares a core between sessions, then between the processes of
    each. SCHED_IDLE and nice only rank the exporter inside the session it inherited, the one of
    ``fastgw serve``: against an app started from another shell or service, the exporter's session
    weighed as much as the app's. On this 2-core VM, a SCHED_IDLE busy loop in another session
    left a normal process on its core 41-51% of it and a ping-pong p99 of 2.1 ms; in a session of
    its own at autogroup nice 19, 81-96% and 59-65 µs, about as in the same session
    (benchmarks/micro/bench_autogroup.py). A session's nice is the one knob an unprivileged process
    has over its group.

    Left alone where it would do nothing or worse: autogroups off or not built in, or the session
    already the root task group (autogroups_on). None when not applied."""
    if not autogroups_on(enabled, path):
        return None
    if os.getsid(0) != os.getpid():
        try:
            os.setsid()
        except OSError as exc:  # a process-group leader can't start a session
            log.warning("the exporter could not start a session of its own (%s); it shares one with the workers", exc)
            return None
    # The kernel takes one autogroup nice change a tenth of a second, machine-wide (EAGAIN).
    for attempt in range(20):
        try:
            with open(path, "w") as f:
                f.write(f"{nice}\n")
            return f"autogroup nice {nice}"
        except BlockingIOError:
            time.sleep(0.05 + 0.01 * attempt)
        except OSError as exc:
            log.warning("could not set the exporter's autogroup nice (%s)", exc)
            return None
    log.warning("could not set the exporter's autogroup nice: the kernel kept refusing (EAGAIN)")
    return None
