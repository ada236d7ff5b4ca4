"""What a SCHED_IDLE background process costs a normal one on its core, by the session it runs in.

    python benchmarks/micro/bench_autogroup.py [--reps 3] [--seconds 3]

Why: where Linux schedules sessions as groups (autogroups), SCHED_IDLE ranks a process only
within its session. The exporter used to stay in the session of `fastgw serve`; an app in another
session then shared a core with it as an equal. Since exporter_own_session it starts a session of
its own at autogroup nice 19 (requestlog/priority.py, own_autogroup). This measures, with a
SCHED_IDLE busy loop on core 1 standing in for a busy exporter:

- share: how many loop turns a normal process on core 1 gets in --seconds, against alone;
- ping-pong: round trips from core 0 to a normal process on core 1 that answers each byte
  (random gaps of up to 0.4 ms between them, so it sleeps and wakes), p50/p99/p99.9 in µs;

with the loop absent, in this script's session, in a session of its own (nice 0: the old
exporter against an app elsewhere), and in a session of its own at autogroup nice 19 (the
exporter now). Medians over --reps. Linux only, 2 cores or more; needs autogroups on.
"""
from __future__ import annotations

import argparse
import os
import random
import signal
import socket
import statistics
import sys
import time

ARRANGEMENTS = ("no loop", "same session", "own session, nice 0", "own session, nice 19")


def start_loop(arrangement: str) -> int | None:
    """The SCHED_IDLE busy loop on core 1, in the given arrangement; its pid."""
    if arrangement == "no loop":
        return None
    pid = os.fork()
    if pid == 0:
        try:
            if arrangement != "same session":
                os.setsid()
                with open("/proc/self/autogroup", "w") as f:
                    f.write("19\n" if arrangement.endswith("19") else "0\n")
            os.sched_setaffinity(0, {1})
            os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
            while True:
                pass
        finally:
            os._exit(1)
    time.sleep(0.3)
    return pid


def share(seconds: float) -> int:
    """Loop turns a normal process pinned to core 1 gets in ``seconds``."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.sched_setaffinity(0, {1})
        n, end = 0, time.monotonic() + seconds
        while time.monotonic() < end:
            n += 1
        os.write(w, str(n).encode())
        os._exit(0)
    os.close(w)
    out = os.read(r, 64)
    os.close(r)
    os.waitpid(pid, 0)
    return int(out)


def ping_pong(seconds: float) -> list[float]:
    """Round-trip times (µs) between this process on core 0 and an echoing child on core 1."""
    a, b = socket.socketpair()
    pid = os.fork()
    if pid == 0:
        os.sched_setaffinity(0, {1})
        a.close()
        while d := b.recv(1):
            b.send(d)
        os._exit(0)
    b.close()
    os.sched_setaffinity(0, {0})
    rtt, end = [], time.monotonic() + seconds
    while time.monotonic() < end:
        t = time.perf_counter_ns()
        a.send(b"x")
        a.recv(1)
        rtt.append((time.perf_counter_ns() - t) / 1000)
        gap = time.perf_counter() + random.uniform(0, 0.0004)
        while time.perf_counter() < gap:
            pass
    a.close()
    os.waitpid(pid, 0)
    rtt.sort()
    return [rtt[len(rtt) // 2], rtt[int(len(rtt) * 0.99)], rtt[int(len(rtt) * 0.999)]]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=3.0)
    args = ap.parse_args()
    try:
        with open("/proc/sys/kernel/sched_autogroup_enabled") as f:
            if f.read().strip() != "1":
                print("autogroups are off here: nothing to compare", file=sys.stderr)
                return 2
    except OSError:
        print("no autogroups in this kernel", file=sys.stderr)
        return 2
    turns: dict[str, list[int]] = {a: [] for a in ARRANGEMENTS}
    rtts: dict[str, list[list[float]]] = {a: [] for a in ARRANGEMENTS}
    for rep in range(args.reps):
        for arrangement in ARRANGEMENTS[rep % 4:] + ARRANGEMENTS[:rep % 4]:
            loop = start_loop(arrangement)
            try:
                turns[arrangement].append(share(args.seconds))
                rtts[arrangement].append(ping_pong(args.seconds))
            finally:
                if loop is not None:
                    os.kill(loop, signal.SIGKILL)
                    os.waitpid(loop, 0)
    alone = statistics.median(turns["no loop"])
    print(f"medians of {args.reps} repetitions, {args.seconds:g} s each")
    print("| SCHED_IDLE loop on core 1 | share of core 1 left to a normal process | ping-pong p50 | p99 | p99.9 (µs) |")
    print("|---|---:|---:|---:|---:|")
    for a in ARRANGEMENTS:
        p50, p99, p999 = (statistics.median(r[i] for r in rtts[a]) for i in range(3))
        print(f"| {a} | {statistics.median(turns[a]) / alone:.0%} | {p50:.1f} | {p99:.1f} | {p999:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
