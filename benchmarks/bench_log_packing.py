#!/usr/bin/env python3
"""What each step of request logging costs the gateway's worker in place, at saturation.

    .venv/bin/python benchmarks/bench_log_packing.py [--reps 6] [--seconds 2] [--out FILE]

A micro-benchmark times packing a record (benchmarks/micro/bench_ring.py: about 3 µs) with its
code and data in the caches; in the worker it runs between the rest of each request's work, and
costs more. This measures it there. Six gateways, as ``fastgw serve`` starts them, in
bench_logging.py's layout: the worker on core 0, its exporter, nginx replaying the mock's answer
(replay_upstream.py) and wrk on core 1. One has logging off; in the others the worker's
``RequestLogger.log_request`` stops at a given point (log_cut.py):

  off        logging off
  none       logging on, log_request returns at once: what the stages logging adds cost
  pack       the record packed, then dropped instead of pushed
  pack-warm  the first request's context packed again on every request, then dropped
  pack-twice packed twice in a row, both dropped: the second pack is the one whose code just ran
  full       packed and pushed (logging as it ships)

Each repetition runs wrk -c64 with the 1 KB chat request for ``--seconds`` against each gateway
in turn (the order rotated), and reads the worker's CPU time: µs a request. Medians over the
repetitions; every process started here is stopped here, by PID.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import bench_logging as bl  # noqa: E402
import run_bench as rb  # noqa: E402

VARIANTS = ("off", "none", "pack", "pack-warm", "pack-twice", "full")
WHAT = {
    "off": "logging off",
    "none": "log_request returns at once",
    "pack": "packed, then dropped",
    "pack-warm": "one warm context packed, then dropped",
    "pack-twice": "packed twice in a row, both dropped",
    "full": "packed and pushed (as shipped)",
}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reps", type=int, default=6)
    ap.add_argument("--seconds", type=int, default=2, help="wrk's run against each gateway, a repetition")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    if why := rb.missing_tools("nginx", "wrk", "taskset"):
        print(why, file=sys.stderr)
        return 2
    procs = rb.Procs()
    cpu: dict[str, list[float]] = {v: [] for v in VARIANTS}
    tmp = Path(tempfile.mkdtemp(prefix="fastgw-bench-packing-"))
    bl.RINGS_ROOT = Path(tempfile.mkdtemp(prefix="fastgw-bench-packing-", dir="/dev/shm" if os.path.isdir("/dev/shm") else None))
    started = time.strftime("%H:%M")
    try:
        port, _ = bl.start_upstream({"upstream": "replay"}, tmp, procs)
        gateways = {}
        for v in VARIANTS:
            (tmp / v / ("off" if v == "off" else "on")).mkdir(parents=True)
            cli = None if v == "off" else [rb.PY, str(HERE / "log_cut.py"), v]
            gateways[v] = bl.Gateway("off" if v == "off" else "on", tmp / v, procs, port, cli)
        bl.write_wrk_lua()
        for v, g in gateways.items():
            bl.saturate(g.url(), 1, v)  # warm: the pool's connections, the interpreter's caches
            if g.exporter:
                bl.wait_idle([g.exporter])
        for rep in range(args.reps):
            for v in rb.rotate(VARIANTS, rep):
                g = gateways[v]
                t0 = rb.cpu_ticks([g.worker])
                n = bl.saturate(g.url(), args.seconds, v)
                cpu[v].append((rb.cpu_ticks([g.worker]) - t0) / rb.CLK_TCK / n * 1e6)
                if g.exporter:
                    bl.wait_idle([g.exporter])  # the next variant does not share core 1 with a catching-up exporter
                bl.log(f"rep{rep} {v:10s} worker {cpu[v][-1]:.1f} µs/req")
    finally:
        procs.stop_all()
        shutil.rmtree(bl.RINGS_ROOT, ignore_errors=True)
        shutil.rmtree(tmp, ignore_errors=True)
    off = bl.med(cpu["off"])
    lines = [
        f"Worker CPU a request at saturation, in place ({started}; wrk -c64, {args.seconds:g} s a variant, "
        f"{args.reps} repetitions alternated; medians):",
        "",
        "| variant | worker µs/request | vs off | per repetition |",
        "|---|---:|---:|---|",
    ]
    for v in VARIANTS:
        m = bl.med(cpu[v])
        lines.append(f"| {WHAT[v]} | {m:.1f} | {m - off:+.1f} | {' '.join(f'{x:.1f}' for x in cpu[v])} |")
    text = "\n".join(lines)
    rb.emit(text, args.out)
    return 0


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))  # the finally above stops what was started
    sys.exit(main())
