"""A log sink down for a while under steady load, then back: the ring, parked files, spill
segments and latency window by window, and exact rows at the end.

  .venv/bin/python benchmarks/bench_sink_recovery.py [--sink chdb-held|refused|up]
                                                     [--windows 12] [--release 4] [--rate 2000]

--sink chdb-held (the default): the gateway's chDB folder is held by another process (chDB allows
one per folder), as tests/requestlog/test_logging_e2e.py takes the sink down; the holder stops at
window --release, and the sink comes back. --sink refused: a ClickHouse URL where nothing listens
(never comes back; no row count at the end). --sink up: the control, chDB taking writes throughout.

Each window is loadgen at --rate requests a second (open loop, 32 connections) for 5 s against
the gateway (nginx replaying the mock's answer upstream, bench_logging.py's stand-in). After the
last window the gateway gets SIGTERM, which drains everything to the sink, and the rows are
counted against the records the worker pushed.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import bench_logging as bl  # noqa: E402
import clickhouse_connect  # noqa: E402
import run_bench as rb  # noqa: E402

from fastgw._native.ring import Ring  # noqa: E402

WINDOW_S = 5


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sink", choices=("chdb-held", "refused", "up"), default="chdb-held")
    ap.add_argument("--windows", type=int, default=12)
    ap.add_argument("--release", type=int, default=4, help="the window at whose start a held folder is let go")
    ap.add_argument("--rate", type=int, default=2000)
    args = ap.parse_args()
    if why := rb.missing_tools("nginx", "taskset"):
        print(why, file=sys.stderr)
        return 2
    name = "down" if args.sink == "refused" else "on"  # bench_logging's configs: a refused URL, or chDB
    with bl.gateway_stage("fastgw-bench-recovery") as (tmp, procs, port):
        (tmp / name).mkdir()
        chdb = tmp / name / "chdb"
        holder = None
        if args.sink == "chdb-held":
            code = (f"import clickhouse_connect, time; c = clickhouse_connect.get_client(dsn='chdb://{chdb}'); "
                    "c.query('SELECT 1'); print('held', flush=True); time.sleep(3600)")
            holder = procs.start("chdb-holder", rb.pinned(rb.CLIENT_CPU, [rb.PY, "-c", code]), tmp / "holder.log")
            deadline = time.monotonic() + 60
            while "held" not in (tmp / "holder.log").read_text():
                if time.monotonic() > deadline or holder.poll() is not None:
                    raise RuntimeError(f"the chDB holder did not start: {(tmp / 'holder.log').read_text()[-2000:]}")
                time.sleep(0.1)
        g = bl.Gateway(name, tmp, procs, port)
        ring = Ring.attach(str(bl.rings_dir(tmp / name) / "ring-0.shm"))
        spill = tmp / name / "spill"
        lg = ["--body", bl.BODY_1K, *sum((["-H", h] for h in bl.MOCK_HEADERS), [])]
        print(f"sink {args.sink}; {args.rate} req/s, {WINDOW_S}-s windows"
              + (f"; the held folder is let go at window {args.release}" if holder else ""))
        print("| window | requests | p50 (ms) | p99 (ms) | worker µs/req | exporter µs/req | ring used (MiB) "
              "| parked files | spill segments |")
        print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        for w in range(args.windows):
            if holder is not None and w == args.release:
                procs.stop(holder)
                holder = None
            w0, e0 = rb.cpu_ticks([g.worker]), rb.cpu_ticks([g.exporter])
            r = rb.run_loadgen(g.url(), "-c", "32", "--rate", str(args.rate), "-d", str(WINDOW_S), "--warmup", "0", *lg)
            n = r["count"]
            worker = (rb.cpu_ticks([g.worker]) - w0) / rb.CLK_TCK / n * 1e6
            exporter = (rb.cpu_ticks([g.exporter]) - e0) / rb.CLK_TCK / n * 1e6
            parked, segments = list(spill.rglob("parked-*.wal")), list(spill.rglob("spill-*.wal"))
            print(f"| {w} | {n} | {r['latency_us']['p50'] / 1000:.3f} | {r['latency_us']['p99'] / 1000:.3f} | {worker:.0f} "
                  f"| {exporter:.0f} | {ring.used / 2**20:.1f} | {len(parked)} | {len(segments)} |", flush=True)
        pushed = ring.pushed
        ring.close()
        started = time.monotonic()
        procs.stop(g.proc, timeout=120)
        print(f"\nSIGTERM: stopped in {time.monotonic() - started:.1f} s; {pushed} records pushed")
        if args.sink != "refused":
            client = clickhouse_connect.get_client(dsn=f"chdb://{chdb}")
            try:
                rows, ids = client.query("SELECT count(), uniqExact(request_id) FROM fastgw.requests").result_rows[0]
            finally:
                client.close()
            print(f"chDB: {rows} rows, {ids} distinct request ids ({'exact' if rows == ids == pushed else 'NOT EXACT'})")
        print(f"left on disk: {len(list(spill.rglob('*.wal')))} parked files and spill segments")
    return 0


if __name__ == "__main__":
    sys.exit(main())
