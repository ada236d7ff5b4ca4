"""Which core the exporter shares, and what that does to the gateway's P99 with logging on.

  .venv/bin/python benchmarks/bench_exporter_placement.py [--reps 10]

Why: on this 2-core machine the issue's layout puts the exporter on core 1, the core the load
generator and the provider stand-in (nginx) also need, and bench_logging.py's controls showed
that any work there (a SCHED_IDLE busy loop) costs the P99 more than logging does. This asks how
much of logging's P99 cost is that sharing, by moving the same running exporter between cores:

- off: logging off (no exporter);
- off + busy core 1: logging off, a SCHED_IDLE busy loop on core 1 (bench_logging.py's control);
- on, exporter on core 1: the issue's layout, as bench_logging.py runs it;
- on, exporter on core 0: the exporter shares the worker's core instead, under SCHED_IDLE, so it
  runs in the worker's idle time and every wake-up of the worker preempts it;
- on, exporter unpinned: both cores, placed by the kernel, as a deployment without pinning runs.

The exporter's threads are moved with sched_setaffinity (threads chDB starts later inherit it),
and each "on" variant starts from an idle exporter. Each repetition runs every variant (order
rotated) at 16 closed-loop connections, 2,000 and 6,000 requests a second open loop, 2.5 s each,
with 1 KB of bodies (bench_logging.py's requests and upstream). Medians of the P99s are printed,
each "on" variant against off, with a sign test of the paired repetitions (in how many the
variant was slower than off; the two-sided p-value of a split at least that uneven). Then the
worker's CPU per request answered in the same runs (warm-up included), which tells the worker's
own logging work from what a busy core 1 costs its wake-ups of the client and nginx there.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import bench_logging as bl  # noqa: E402
import run_bench as rb  # noqa: E402
from bench_sink_down import sign_test  # noqa: E402

LAT_S = 2.5
VARIANTS = ("off", "off + busy core 1", "on, exporter on core 1", "on, exporter on core 0", "on, exporter unpinned")
LOADS = {"16 conn": ["-c", "16"], "2000/s": ["-c", "16", "--rate", "2000"], "6000/s": ["-c", "32", "--rate", "6000"]}


def place(pid: int, cpus: set[int]) -> None:
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            os.sched_setaffinity(int(tid), cpus)
        except OSError:
            pass  # the thread ended meanwhile


class Runs:
    """P99 and the worker's CPU per request, per (variant, load), over repetitions: one loadgen run
    of ``seconds`` (after ``warmup``) per load, the variant's set-up around them. Shared with bench_exporter_session.py."""

    def __init__(self, variants: Sequence[str], loads: dict[str, list[str]] = LOADS, seconds: float = LAT_S,
                 warmup: float = 0.3) -> None:
        self.variants, self.loads, self.seconds, self.warmup = list(variants), loads, seconds, warmup
        self.p99: dict[tuple[str, str], list[float]] = {(v, load): [] for v in variants for load in loads}
        self.worker_us: dict[tuple[str, str], list[float]] = {(v, load): [] for v in variants for load in loads}
        self.lg = ["--body", bl.BODY_1K, *(arg for h in bl.MOCK_HEADERS for arg in ("-H", h))]

    def measure(self, rep: int, variant: str, g: bl.Gateway) -> None:
        line = []
        for load, extra in self.loads.items():
            w0 = rb.cpu_ticks([g.worker])
            r = rb.run_loadgen(g.url(), *extra, "-d", str(self.seconds), "--warmup", str(self.warmup), *self.lg)
            answered = r["count"] * (self.seconds + self.warmup) / self.seconds
            self.worker_us[(variant, load)].append((rb.cpu_ticks([g.worker]) - w0) / rb.CLK_TCK / answered * 1e6)
            self.p99[(variant, load)].append(r["latency_us"]["p99"])
            line.append(f"{load} p99 {r['latency_us']['p99']:7.0f}")
        bl.log(f"rep{rep} {variant:24s} " + "; ".join(line) + " µs")

    def report(self, reps: int, base: str = "off") -> None:
        p99, worker_us = self.p99, self.worker_us
        print(f"P99 in ms, medians of {reps} repetitions; against {base}: the median's change, and the sign test")
        print("| variant | " + " | ".join(self.loads) + " | " + " | ".join(f"vs {base}, {load}" for load in self.loads) + " |")
        print("|---|" + "---:|" * (2 * len(self.loads)))
        for v in self.variants:
            cells = [f"{statistics.median(p99[(v, load)]) / 1000:.3f}" for load in self.loads]
            versus = []
            for load in self.loads:
                if v == base:
                    versus.append("")
                    continue
                before, mine = p99[(base, load)], p99[(v, load)]
                k, n, pv = sign_test(before, mine)
                versus.append(f"{statistics.median(mine) / statistics.median(before) - 1:+.0%} ({k}/{n}, p={pv:.2f})")
            print(f"| {v} | " + " | ".join(cells) + " | " + " | ".join(versus) + " |")
        print(f"\nWorker CPU µs per request, medians of {reps} (the same runs)")
        print("| variant | " + " | ".join(self.loads) + " |")
        print("|---|" + "---:|" * len(self.loads))
        for v in self.variants:
            print(f"| {v} | " + " | ".join(f"{statistics.median(worker_us[(v, load)]):.1f}" for load in self.loads) + " |")
        for load in self.loads:
            print(f"per repetition, {load}: " + "; ".join(f"{v} " + " ".join(f"{x:.0f}" for x in p99[(v, load)])
                                                           for v in self.variants))

    def compare(self, base: str, other: str) -> None:
        """One variant against another, paired by repetition: the P99 medians' change and the sign test."""
        cells = []
        for load in self.loads:
            before, mine = self.p99[(base, load)], self.p99[(other, load)]
            k, n, pv = sign_test(before, mine)
            cells.append(f"{load} {statistics.median(mine) / statistics.median(before) - 1:+.0%} "
                         f"(higher in {k}/{n}, p={pv:.2f})")
        print(f"P99, {other} against {base}: " + "; ".join(cells))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reps", type=int, default=10)
    args = ap.parse_args()
    if why := rb.missing_tools("nginx", "wrk", "taskset", "chrt"):
        print(why, file=sys.stderr)
        return 2
    bl.write_wrk_lua()
    with bl.gateway_stage("fastgw-bench-placement") as (tmp, procs, port):
        gws = {}
        for name in ("off", "on"):
            (tmp / name).mkdir()
            gws[name] = bl.Gateway(name, tmp, procs, port)
        exporter = gws["on"].exporter
        assert exporter is not None
        runs = Runs(VARIANTS)
        for rep in range(args.reps):
            for variant in rb.rotate(VARIANTS, rep):
                busy = None
                if variant.startswith("on"):
                    place(exporter, {1} if variant.endswith("core 1") else {0} if variant.endswith("core 0") else {0, 1})
                    bl.wait_idle([exporter])
                elif variant == "off + busy core 1":
                    busy = procs.start("busy-core-1", ["chrt", "--idle", "0", *rb.pinned(rb.CLIENT_CPU, [rb.PY, "-c", "while True: pass"])],
                                       tmp / "busy.log")
                    time.sleep(0.3)
                try:
                    runs.measure(rep, variant, gws["on" if variant.startswith("on") else "off"])
                finally:
                    if busy is not None:
                        procs.stop(busy, timeout=10)
        runs.report(args.reps)
    return 0


if __name__ == "__main__":
    sys.exit(main())
