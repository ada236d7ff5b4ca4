#!/usr/bin/env python3
"""Run benchmarks/locustfile.py headless against a mock + gateway started here, on free ports.

  .venv/bin/python benchmarks/run_locust.py [-u 50] [-r 10] [-t 30s] [--csv benchmarks/results/raw/locust]

Same layout as run_bench.py: the gateway on core 0, the mock and locust on core 1. Prints locust's
summary; exits non-zero if any request failed. Everything started here is stopped here, by PID.
The equivalent by hand (with a gateway already running on GWPORT):

  .venv/bin/locust -f benchmarks/locustfile.py --headless -u 50 -r 10 -t 30s \\
      --host http://127.0.0.1:GWPORT --csv benchmarks/results/raw/locust
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from run_bench import CLIENT_CPU, HERE, PY, Procs, Stack, pinned  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("-u", "--users", type=int, default=50)
    ap.add_argument("-r", "--spawn-rate", type=float, default=10)
    ap.add_argument("-t", "--run-time", default="30s")
    ap.add_argument("--csv", default=str(HERE / "results" / "raw" / "locust"))
    args = ap.parse_args(argv)

    locust = Path(PY).with_name("locust")
    if not locust.exists():
        print("locust is not installed: .venv/bin/pip install locust", file=sys.stderr)
        return 2
    Path(args.csv).parent.mkdir(parents=True, exist_ok=True)
    procs = Procs()
    with tempfile.TemporaryDirectory(prefix="fastgw-locust-") as tmpdir:
        try:
            st = Stack(procs, Path(tmpdir))
            st.start_mock()
            st.start_gateway()
            host = f"http://127.0.0.1:{st.gw_port}"
            cmd = pinned(CLIENT_CPU, [str(locust), "-f", str(HERE / "locustfile.py"), "--headless",
                                      "-u", str(args.users), "-r", str(args.spawn_rate), "-t", args.run_time,
                                      "--host", host, "--csv", args.csv, "--only-summary", "--stop-timeout", "5"])
            print("$ " + " ".join(cmd), flush=True)
            out = subprocess.run(cmd, timeout=3600, env={**os.environ, "PYTHONUNBUFFERED": "1"},
                                 stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            rc = out.returncode
            print(out.stdout)
        finally:
            procs.stop_all()
    # locust's final CSV can lag its printed summary by a second: report what it printed.
    agg = [line.split() for line in out.stdout.splitlines() if line.strip().startswith("Aggregated")]
    if len(agg) < 2:
        print("no locust summary found", file=sys.stderr)
        return rc or 1
    totals, pct = agg[0], agg[1]
    requests, failures = int(totals[1]), int(totals[2].split("(")[0])
    rps = float(totals[-2])
    # percentile row: 50% 66% 75% 80% 90% 95% 98% 99% 99.9% 99.99% 100% #reqs
    print(f"\nAggregated: {requests} requests, {failures} failures, {rps:.1f} req/s, "
          f"p50 {pct[1]} ms, p95 {pct[6]} ms, p99 {pct[8]} ms, max {pct[11]} ms  (CSV: {args.csv}_stats.csv)")
    return rc or (1 if failures else 0)


if __name__ == "__main__":
    sys.exit(main())
