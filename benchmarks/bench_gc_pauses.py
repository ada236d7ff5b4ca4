#!/usr/bin/env python3
"""The cyclic garbage collector's full collections in a saturated worker: how often, how long.

  .venv/bin/python benchmarks/bench_gc_pauses.py [--seconds 5] [--reps 3]

Why: a full (generation 2) collection stops the event loop while it walks every tracked object.
A worker holds tens of thousands from start-up (modules, config, tables) unless it freezes them
(``gc.freeze``, cli.py), and under load a full collection comes every fraction of a second. Each
is a pause every request in flight waits out.

How: the gateway (logging off, then on) runs on core 0 with a ``sitecustomize`` on its
PYTHONPATH (written to a temporary folder; anything already on PYTHONPATH, such as another
checkout's ``src``, stays after it) that appends each generation-2 collection's duration to a
file per process. wrk saturates the worker from core 1 for --seconds, --reps times. Reported:
full collections a second of load, and the median and largest pause, after a second of warm-up
(so start-up's own collection, before the first answer, is left out).

Every process started here is stopped here, by PID.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "src"))

import bench_logging as bl  # noqa: E402
import run_bench as rb  # noqa: E402

HOOK = '''
import gc, os, time
_folder = os.environ.get("FASTGW_BENCH_GC_DIR")
if _folder:
    _t0 = [0]
    def _timed(phase, info):
        if phase == "start":
            _t0[0] = time.perf_counter_ns()
        elif info["generation"] == 2:
            with open(os.path.join(_folder, "gc2-%d.txt" % os.getpid()), "a") as f:
                f.write("%.6f %d\\n" % (time.monotonic(), time.perf_counter_ns() - _t0[0]))
    gc.callbacks.append(_timed)
'''


def pauses(folder: Path, pid: int, since: float) -> list[float]:
    """Milliseconds of each full collection in ``pid`` after ``since`` (time.monotonic)."""
    f = folder / f"gc2-{pid}.txt"
    if not f.exists():
        return []
    out = []
    for line in f.read_text().splitlines():
        at, ns = line.split()
        if float(at) >= since:
            out.append(int(ns) / 1e6)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=int, default=5)
    ap.add_argument("--reps", type=int, default=3)
    args = ap.parse_args()
    procs = rb.Procs()
    with tempfile.TemporaryDirectory(prefix="fastgw-bench-gc-") as d, \
            tempfile.TemporaryDirectory(prefix="fastgw-bench-gc-rings-", dir="/dev/shm") as rings:
        tmp = Path(d)
        bl.RINGS_ROOT = Path(rings)
        hook, out = tmp / "hook", tmp / "gc"
        hook.mkdir(), out.mkdir()
        (hook / "sitecustomize.py").write_text(HOOK)
        saved = {k: os.environ.get(k) for k in ("PYTHONPATH", "FASTGW_BENCH_GC_DIR")}
        os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(hook), saved["PYTHONPATH"]) if p)
        os.environ["FASTGW_BENCH_GC_DIR"] = str(out)
        try:
            st = rb.Stack(procs, tmp)
            st.start_mock()
            gws = {}
            for name in ("off", "on"):
                (tmp / name).mkdir()
                gws[name] = bl.Gateway(name, tmp, procs, st.mock_port)
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
        try:
            bl.write_wrk_lua()  # the 1 KB chat request of the logging benchmark
            for name, g in gws.items():  # a worker answers once start-up (and its own collection) is done
                bl.saturate(g.url(), 1, name)
                if g.exporter:
                    bl.wait_idle([g.exporter])
            since = time.monotonic()
            seen: dict[str, list[float]] = {name: [] for name in gws}
            load_s = {name: 0.0 for name in gws}
            for rep in range(args.reps):
                for name in rb.rotate(tuple(gws), rep):
                    g = gws[name]
                    w = rb.run_wrk(g.url(), args.seconds, script=bl.WRK_LUA)
                    load_s[name] += w["elapsed_s"]
                    if g.exporter:
                        bl.wait_idle([g.exporter])
                    rb.log(f"rep{rep} {name}: {w['rps']:.0f} req/s")
            for name, g in gws.items():
                seen[name] = pauses(out, g.worker, since)
            print(f"full collections in the worker under wrk -c64, {args.reps} x {args.seconds} s each "
                  f"(python {sys.version.split()[0]}, {os.environ.get('PYTHONPATH') or 'this checkout'})")
            for name, ms in seen.items():
                if ms:
                    print(f"  logging {name:3s}: {len(ms) / load_s[name]:5.2f} a second, median {statistics.median(ms):6.2f} ms, "
                          f"largest {max(ms):6.2f} ms ({len(ms)} in {load_s[name]:.0f} s)")
                else:
                    print(f"  logging {name:3s}: none in {load_s[name]:.0f} s")
        finally:
            procs.stop_all()
    return 0


if __name__ == "__main__":
    sys.exit(main())
