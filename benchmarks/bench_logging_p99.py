"""What logging adds to the gateway's P50 and P99, logging on against off, with an interval around it.

  .venv/bin/python benchmarks/bench_logging_p99.py [--reps 15] [--out FILE]

Why a benchmark of its own: bench_logging.py's gateway run compares medians of 5 repetitions, and
on this shared two-core machine the same code met the issue's target (logging adds no more than
10% to P99) at one load in one run and missed it by 40% in the next. A median of five says
nothing about how far to trust it. Here each load runs many more times, and the answer is an
interval, not one ratio.

Layout (bench_logging.py's: nginx replaying the mock's answer as the provider, the gateways' workers
on core 0, the clients, nginx and the exporter on core 1). Two gateways, logging off and logging on
(chDB sink, exporter running), plus nginx directly as the reference. Each repetition visits every
load in turn: 1 and 16 connections closed-loop, then 2,000 and 6,000 requests a second open-loop
over 32 connections (bench_logging.py's loads), each ``--seconds`` long after 0.3 s of warm-up;
at each load it runs direct, then off and on in an order that alternates from one repetition to
the next. Then wrk -c64 for 4 s against off and on: the worker's CPU a request at saturation, and
for on, the exporter's CPU a record from wrk's start until it is idle again (it has exported
what wrk sent, and the next repetition starts from drained rings) and its RSS then.

Per load, the figure is the ratio of on to off within a repetition (both measured seconds apart):
its median over the repetitions, a distribution-free 95% interval for that median (order
statistics), and a sign test of how often on was the slower. The target is met when the interval
lies at or under 1.10, missed when it lies above, and not settled by this run otherwise (with
fewer than 6 repetitions no interval reaches 95%, and no verdict is given).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
import bench_logging as bl  # noqa: E402
import run_bench as rb  # noqa: E402

LOADS = [("1 conn", ["-c", "1"]), ("16 conn", ["-c", "16"])]
LOADS += [(f"{rate}/s", ["-c", str(bl.OPEN_CONNS), "--rate", str(rate)]) for rate in bl.OPEN_RATES]
GATEWAYS = ("off", "on")
TARGET = 1.10  # the issue's: logging adds no more than 10% to P99
WRK_S = 4


def verdict(lo: float, hi: float, coverage: float) -> str:
    if coverage < 0.95:
        return "too few repetitions"
    return "met" if hi <= TARGET else "missed" if lo > TARGET else "not settled"


def measure(reps: int, seconds: float) -> dict[str, Any]:
    lat: dict[str, dict[str, list[dict[str, float]]]] = {k: {g: [] for g in ("direct", *GATEWAYS)} for k, _ in LOADS}
    cpu: dict[str, list[float]] = {g: [] for g in GATEWAYS}
    exporter: list[float] = []  # CPU a record (all its threads, chDB's included), from wrk's start until idle
    rss: list[float] = []  # the exporter's RSS right after
    with bl.gateway_stage("fastgw-bench-p99") as (tmp, procs, port):
        direct_url = f"http://127.0.0.1:{port}{rb.CHAT_PATH}"
        for name in GATEWAYS:
            (tmp / name).mkdir()
        gws = {name: bl.Gateway(name, tmp, procs, port) for name in GATEWAYS}
        bl.write_wrk_lua()
        lg = ["--body", bl.BODY_1K, *sum((["-H", h] for h in bl.MOCK_HEADERS), [])]
        for g in gws.values():  # warm up: the first requests import and connect
            rb.run_loadgen(g.url(), "-c", "16", "-d", "1", "--warmup", "0.2", *lg)
        for rep in range(reps):
            order = rb.rotate(GATEWAYS, rep)
            for key, how in LOADS:
                for name in ("direct", *order):
                    url = direct_url if name == "direct" else gws[name].url()
                    r = rb.run_loadgen(url, *how, "-d", str(seconds), "--warmup", "0.3", *lg)
                    lat[key][name].append(r["latency_us"])
                line = "  ".join(f"{n} {lat[key][n][-1]['p50']:7.1f}/{lat[key][n][-1]['p99']:7.1f}"
                                 for n in ("direct", *GATEWAYS))
                bl.log(f"rep{rep} {key:8s} p50/p99 µs: {line}")
            for name in order:
                g = gws[name]
                w0, e0 = rb.cpu_ticks([g.worker]), rb.cpu_ticks([g.exporter]) if g.exporter else 0
                n = bl.saturate(g.url(), WRK_S, name)
                cpu[name].append((rb.cpu_ticks([g.worker]) - w0) / rb.CLK_TCK / n * 1e6)
                line = f"rep{rep} wrk {name}: {n / WRK_S:.0f} req/s, worker {cpu[name][-1]:.1f} µs/req"
                if g.exporter:  # until it has exported what wrk sent (batches by age: 1 s)
                    bl.wait_idle([g.exporter])
                    exporter.append((rb.cpu_ticks([g.exporter]) - e0) / rb.CLK_TCK / n * 1e6)
                    rss.append(rb.rss_mib(g.exporter))
                    line += f"; exporter {exporter[-1]:.1f} µs/record, RSS {rss[-1]:.0f} MiB"
                bl.log(line)
        spill = list((tmp / "on" / "spill").rglob("spill-*.wal"))  # the worker's; parked-*.wal: the exporter's
        for g in gws.values():
            procs.stop(g.proc, timeout=180)
    return {"lat": lat, "cpu": cpu, "exporter": exporter, "rss": rss, "spill_files": len(spill)}


def report(res: dict[str, Any], reps: int, seconds: float) -> str:
    lat, cpu = res["lat"], res["cpu"]
    lines = [f"## {time.strftime('%Y-%m-%d %H:%M')}: logging on against off, {reps} repetitions of {seconds:g} s a load",
             "", "Medians over the repetitions (ms):", "",
             "| load | direct P50 | off P50 | on P50 | direct P99 | off P99 | on P99 |", "|---|---:|---:|---:|---:|---:|---:|"]
    for key, _ in LOADS:
        m = {(n, q): statistics.median(x[q] for x in lat[key][n]) / 1000 for n in ("direct", *GATEWAYS) for q in ("p50", "p99")}
        lines.append(f"| {key} | {m['direct', 'p50']:.3f} | {m['off', 'p50']:.3f} | {m['on', 'p50']:.3f} "
                     f"| {m['direct', 'p99']:.3f} | {m['off', 'p99']:.3f} | {m['on', 'p99']:.3f} |")
    lines += ["", f"On / off within each repetition (target for P99: at most {TARGET:.2f}):", "",
              "| load | figure | median ratio | 95% interval (coverage) | on slower in | sign test p | P99 target |",
              "|---|---|---:|---|---:|---:|---|"]
    for key, _ in LOADS:
        for q in ("p50", "p99"):
            off = [x[q] for x in lat[key]["off"]]
            on = [x[q] for x in lat[key]["on"]]
            ratios = [b / a for a, b in zip(off, on)]
            lo, hi, cover = rb.median_interval(ratios)
            k, n, p = rb.sign_test(off, on)
            lines.append(f"| {key} | {q.upper()} | {statistics.median(ratios):.3f} | {lo:.3f}–{hi:.3f} ({cover:.0%}) "
                         f"| {k} of {n} | {p:.2f} | {verdict(lo, hi, cover) if q == 'p99' else ''} |")
    lines += ["", "Per repetition, P99 on / off: " + "; ".join(
        f"{key} " + " ".join(f"{b['p99'] / a['p99']:.2f}" for a, b in zip(lat[key]["off"], lat[key]["on"])) for key, _ in LOADS)]
    c_off, c_on = statistics.median(cpu["off"]), statistics.median(cpu["on"])
    ratios = [b / a for a, b in zip(cpu["off"], cpu["on"])]
    lo, hi, cover = rb.median_interval(ratios)
    lines += ["", f"Worker CPU a request at saturation (wrk -c64, {WRK_S} s): off {c_off:.1f} µs, on {c_on:.1f} µs "
              f"(median ratio {statistics.median(ratios):.3f}, 95% interval {lo:.3f}–{hi:.3f}, coverage {cover:.0%}). "
              f"Spill files left by the on gateway's worker: {res['spill_files']}.", "",
              f"The exporter over the same wrk runs, until idle: {statistics.median(res['exporter']):.1f} µs of CPU a record "
              f"(all its threads; per repetition {' '.join(f'{x:.1f}' for x in res['exporter'])}); RSS after each run: "
              f"median {statistics.median(res['rss']):.0f} MiB, largest {max(res['rss']):.0f} MiB.", ""]
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reps", type=int, default=15)
    ap.add_argument("--seconds", type=float, default=2.5, help="each load's measured time, after 0.3 s of warm-up")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    if args.reps < 2:
        ap.error("--reps must be at least 2")
    if why := rb.missing_tools("nginx", "wrk", "taskset"):
        print(why, file=sys.stderr)
        return 2
    text = report(measure(args.reps, args.seconds), args.reps, args.seconds)
    print(text)
    if args.out:
        args.out.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
