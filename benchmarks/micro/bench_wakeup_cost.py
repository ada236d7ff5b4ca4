"""What waking a process on core 1 costs the waker on core 0, with core 1 idle or busy.

    python benchmarks/micro/bench_wakeup_cost.py [--reps 5] [--trips 20000]

Why: with logging on, the worker (core 0) spends more CPU a request than with logging off, and a
SCHED_IDLE busy loop on core 1 (no logging at all) costs it about as much (logging-gateway.md,
"where the worker's extra CPU goes"). One explanation put forward was that on this VM a wake-up
aimed at a busy core (a rescheduling interrupt: a VM exit) costs the waker more than one aimed
at an idle core, which haltpoll keeps polling. This tests that alone: a process on core 0 sends
a byte through a pipe to one on core 1, which sends it back, --trips times; the waker's CPU time
and the wall time per round trip, and core 1's rescheduling interrupts (RES in /proc/interrupts)
per round trip, with core 1 otherwise idle, then with a SCHED_IDLE busy loop there in the same
session (so each wake-up preempts the loop at once). Medians over --reps, alternated.
Linux only, 2 cores or more; needs chrt and taskset.
"""
from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import time


def resched_interrupts(cpu: int) -> int:
    with open("/proc/interrupts") as f:
        for line in f:
            fields = line.split()
            if fields and fields[0] == "RES:":
                return int(fields[1 + cpu])
    raise RuntimeError("no RES line in /proc/interrupts")


def round_trips(trips: int, busy: bool) -> tuple[float, float, float]:
    """(waker CPU µs, wall µs, core 1 RES interrupts) per round trip."""
    to_b, from_a = os.pipe()
    to_a, from_b = os.pipe()
    echo = os.fork()
    if echo == 0:
        os.sched_setaffinity(0, {1})
        while True:
            os.write(from_b, os.read(to_b, 1))
    loop = None
    try:
        if busy:
            loop = subprocess.Popen(["taskset", "-c", "1", "chrt", "-i", "0", sys.executable, "-c", "while True: pass"])
            time.sleep(0.3)
        os.sched_setaffinity(0, {0})
        for _ in range(200):  # both sides running before the count
            os.write(from_a, b"x")
            os.read(to_a, 1)
        res0, cpu0, wall0 = resched_interrupts(1), time.process_time(), time.perf_counter()
        for _ in range(trips):
            os.write(from_a, b"x")
            os.read(to_a, 1)
        cpu1, wall1, res1 = time.process_time(), time.perf_counter(), resched_interrupts(1)
    finally:
        if loop is not None:
            loop.kill()
            loop.wait()
        os.kill(echo, signal.SIGKILL)
        os.waitpid(echo, 0)
        for fd in (to_b, from_a, to_a, from_b):
            os.close(fd)
    return (cpu1 - cpu0) / trips * 1e6, (wall1 - wall0) / trips * 1e6, (res1 - res0) / trips


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--trips", type=int, default=20_000)
    args = ap.parse_args()
    if len(os.sched_getaffinity(0)) < 2:
        print("needs 2 cores", file=sys.stderr)
        return 2
    runs: dict[str, list[tuple[float, float, float]]] = {"core 1 idle": [], "core 1 busy (SCHED_IDLE loop)": []}
    for rep in range(args.reps):
        for name in (list(runs) if rep % 2 == 0 else list(runs)[::-1]):
            runs[name].append(round_trips(args.trips, busy=name != "core 1 idle"))
    print(f"{args.trips} round trips core 0 -> core 1 -> core 0 through pipes, {args.reps} repetitions, medians")
    print("| core 1 | waker CPU µs/trip | wall µs/trip | RES interrupts on core 1/trip | waker CPU per repetition |")
    print("|---|---:|---:|---:|---|")
    for name, rs in runs.items():
        print(f"| {name} | {statistics.median(r[0] for r in rs):.1f} | {statistics.median(r[1] for r in rs):.1f} | "
              f"{statistics.median(r[2] for r in rs):.2f} | {' '.join(f'{r[0]:.1f}' for r in rs)} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
