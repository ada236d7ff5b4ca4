"""How long the request path's tasks on the exporter's core wait behind the exporter: in its idle
cgroup (the default where the process may make one) against in a session of its own.

  .venv/bin/python benchmarks/bench_exporter_preemption.py [--reps 3] [--rate 2000 | --closed 16] [--seconds 10]

Needs root (perf sched, and the cgroup) and perf. Two gateways with logging on, their workers on
core 0 and their exporters on core 1 with the client and nginx (the provider stand-in): "idle
cgroup" with the defaults, "own session" with ``logging.exporter_idle_cgroup: false``; and one
with logging off, for the P99 with and without logging in the same run (10 s windows: more tail
samples than bench_logging.py's 2.5 s, a sign test over the repetitions). Each repetition runs
the three in turn, 32 connections open loop at ``--rate`` (or ``--closed`` connections in
a closed loop) for ``--seconds``, under
``perf sched record``. From ``perf sched timehist``: every time the client or an nginx process
waited over 0.2 ms between its wake-up and getting core 1, and how much of that wait core 1 spent
on the exporter of the gateway under load (any of its threads), on the other gateway's exporter,
on kdamond (this VM's kernel memory monitor) and on the rest. Also the run's P50 and P99.

Caveat (logging-gateway.md, 2026-12-07): at 16 connections, closed loop, these overlap sums put
108-193 ms a run behind the exporter where a count from the switch events (perf record -e
sched:sched_switch) found 0.2 ms; at 2,000/s the two agreed. Read the closed-loop figures with that.

Why: SCHED_IDLE makes a waking task preempt the exporter at once only inside one group; a task of
another session or cgroup is compared with the exporter's group entity, which counts as idle only
in a cgroup marked cpu.idle (requestlog/idle_cgroup.py).
"""

from __future__ import annotations

import argparse
import bisect
import json
import os
import re
import statistics
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import bench_logging as bl  # noqa: E402
import run_bench as rb  # noqa: E402
from bench_sink_down import sign_test  # noqa: E402

TARGETS = ("idle cgroup", "own session", "logging off")
CONFIG = {"idle cgroup": "on", "own session": "nocg", "logging off": "off"}  # bench_logging.gateway_config's names
WAIT_MS = 0.2
ROW = re.compile(r"\s*([\d.]+)\s+\[(\d+)\]\s+(.+?)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s*$")
TASK = re.compile(r"^(.*)\[(\d+)(?:/(\d+))?\]$")


def timehist(data: Path) -> list[tuple[float, int, str, int, float, float]]:
    """(switch-out time s, cpu, comm, pid, scheduling delay ms, run time ms) for each run of a task."""
    out = subprocess.run(["perf", "sched", "timehist", "-i", str(data)], capture_output=True, text=True, check=True).stdout
    rows = []
    for line in out.splitlines():
        m = ROW.match(line)
        if m and (t := TASK.match(m[3].strip())):
            rows.append((float(m[1]), int(m[2]), t[1], int(t[3] or t[2]), float(m[5]), float(m[6])))
    return rows


def waits(rows: list[tuple[float, int, str, int, float, float]], victims: set[int],
          exporters: dict[int, str]) -> tuple[int, float, Counter[str]]:
    """The victims' waits over WAIT_MS on core 1: how many, their total (ms), and who ran meanwhile."""
    core1 = sorted(r for r in rows if r[1] == 1)
    ends = [r[0] for r in core1]
    longest = max((r[5] for r in core1), default=0.0) / 1e3
    n, total, blame = 0, 0.0, Counter[str]()
    for t, _, _, pid, delay, run in core1:
        if pid not in victims or delay <= WAIT_MS:
            continue
        n, total = n + 1, total + delay
        end = t - run / 1e3
        start = end - delay / 1e3
        # Runs that overlap [start, end] ended after start, and began (ended, at the latest) before end + longest.
        for t2, _, comm2, pid2, _, run2 in core1[bisect.bisect_right(ends, start):bisect.bisect_right(ends, end + longest)]:
            overlap = min(t2, end) - max(t2 - run2 / 1e3, start)
            if overlap > 0:
                who = exporters.get(pid2) or ("kdamond" if comm2.startswith("kdamond") else "idle" if pid2 == 0 else "other")
                blame[who] += overlap * 1e3
    return n, total, blame


def loadgen(url: str, rate: int, closed: int, seconds: float) -> tuple[int, dict]:
    lg = ["--body", bl.BODY_1K, *sum((["-H", h] for h in bl.MOCK_HEADERS), [])]
    how = ["-c", str(closed)] if closed else ["-c", "32", "--rate", str(rate)]
    proc = subprocess.Popen(rb.pinned(rb.CLIENT_CPU, [rb.PY, str(rb.LOADGEN), url, *how,
                                                      "-d", str(seconds), "--warmup", "0.3", *lg]),
                            stdout=subprocess.PIPE, text=True)
    out, _ = proc.communicate(timeout=seconds + 60)
    res = json.loads(out.strip().splitlines()[-1])
    if res["errors"] or not res["count"]:
        raise RuntimeError(f"loadgen had errors: {out[:800]}")
    return proc.pid, res


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--rate", type=int, default=2000)
    ap.add_argument("--closed", type=int, default=0, help="connections in a closed loop instead of --rate")
    ap.add_argument("--seconds", type=float, default=10.0)
    args = ap.parse_args()
    if why := rb.missing_tools("nginx", "taskset", "perf"):
        print(why, file=sys.stderr)
        return 2
    if os.geteuid() != 0:
        print("perf sched record needs root", file=sys.stderr)
        return 2
    results: dict[str, list[dict]] = {t: [] for t in TARGETS}
    with bl.gateway_stage("fastgw-bench-preempt") as (tmp, procs, port):
        gws = {}
        for t, name in CONFIG.items():
            (tmp / t.replace(" ", "-") / name).mkdir(parents=True)
            gws[t] = bl.Gateway(name, tmp / t.replace(" ", "-"), procs, port)
        exporters = {g.exporter: t for t, g in gws.items() if g.exporter}
        for t, g in gws.items():
            rb.run_loadgen(g.url(), "-c", "16", "-d", "1", "--warmup", "0.2", "--body", bl.BODY_1K,
                           *sum((["-H", h] for h in bl.MOCK_HEADERS), []))
        time.sleep(3)  # the exporters start chDB and open their placement ("exporter priority" in the log)
        for t in TARGETS[:2]:
            placement = [ln for ln in (tmp / t.replace(" ", "-") / f"{CONFIG[t]}.log").read_text().splitlines()
                         if "exporter priority" in ln]
            print(f"{t}: {placement[-1].split('exporter priority: ')[-1] if placement else '?'}", file=sys.stderr)
        bl.wait_idle(list(exporters))
        for rep in range(args.reps):
            for t in rb.rotate(TARGETS, rep):
                data = tmp / f"sched-{rep}-{t.replace(' ', '-')}.data"
                perf = subprocess.Popen(["perf", "sched", "record", "-o", str(data), "-C", "0,1", "--", "sleep",
                                         str(args.seconds + 1.5)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                time.sleep(0.5)
                client, res = loadgen(gws[t].url(), args.rate, args.closed, args.seconds)
                perf.wait()
                rows = timehist(data)
                victims = {client} | {pid for _, _, comm, pid, _, _ in rows if comm == "nginx"}
                n, total, blame = waits(rows, victims, {pid: ("this exporter" if who == t else "other exporter")
                                                        for pid, who in exporters.items()})
                data.unlink()
                r = {"p50": res["latency_us"]["p50"], "p99": res["latency_us"]["p99"], "waits": n, "wait_ms": total,
                     **{k: blame[k] for k in ("this exporter", "other exporter", "kdamond", "other", "idle")}}
                results[t].append(r)
                print(f"rep{rep} {t:11s} p50 {r['p50']:6.0f} µs p99 {r['p99']:6.0f} µs | waits {n:3d}, {total:6.1f} ms; "
                      f"behind this exporter {r['this exporter']:5.1f} ms, the other {r['other exporter']:5.1f}, "
                      f"kdamond {r['kdamond']:5.1f}, other {r['other']:5.1f}", file=sys.stderr, flush=True)
            bl.wait_idle(list(exporters))
    load = f"{args.closed} connections, closed loop" if args.closed else f"{args.rate} requests/s open loop"
    print(f"\n{load}, {args.seconds:g} s a run, {args.reps} repetitions; medians "
          f"(the client's and nginx's waits over {WAIT_MS} ms for core 1, ms a run):\n")
    print("| exporter | p50 µs | p99 µs | waits | waited ms | behind this exporter | behind the other | kdamond | other |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for t in TARGETS:
        rs = results[t]

        def m(k: str) -> float:
            return statistics.median(r[k] for r in rs)
        print(f"| {t} | {m('p50'):.0f} | {m('p99'):.0f} | {m('waits'):.0f} | {m('wait_ms'):.1f} | {m('this exporter'):.1f} | "
              f"{m('other exporter'):.1f} | {m('kdamond'):.1f} | {m('other'):.1f} |")
    print("\nPer repetition, behind this exporter (ms): " + "; ".join(
        f"{t} " + " ".join(f"{r['this exporter']:.1f}" for r in results[t]) for t in TARGETS[:2]))
    print("Per repetition, p99 (µs): " + "; ".join(
        f"{t} " + " ".join(f"{r['p99']:.0f}" for r in results[t]) for t in TARGETS))
    off = [r["p99"] for r in results["logging off"]]
    for t in TARGETS[:2]:
        on = [r["p99"] for r in results[t]]
        k, n, p = sign_test(off, on)
        print(f"p99 {t} against logging off: {(statistics.median(on) / statistics.median(off) - 1) * 100:+.1f}% "
              f"(medians), higher in {k} of {n} repetitions (sign test p={p:.2f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
