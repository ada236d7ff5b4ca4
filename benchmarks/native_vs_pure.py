"""What the Cython extensions buy end to end: gateway CPU per request, compiled vs pure twins.

Same pinning as run_bench.py (gateway on core 0; mock and wrk on core 1). Each repetition starts a
gateway on each twin (FASTGW_PURE=1 for the pure one), warms it up, then measures CPU per request
at 64 connections with wrk, using SDK-sized request headers (wrk_chat_sdk.lua). Prints medians
and the per-run values.

    .venv/bin/python benchmarks/native_vs_pure.py [--reps 5] [--seconds 5]
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from run_bench import (  # noqa: E402  (a sibling script, not a package)
    CLIENT_CPU, PROXY_CPU, Procs, cpu_ticks, fastgw_cmd, free_port, med, pinned, wait_port,
    write_gateway_config,
)

PY = sys.executable
LUA = Path(__file__).with_name("wrk_chat_sdk.lua")
TICK_US = 1e6 / os.sysconf("SC_CLK_TCK")


def wrk(port: int, seconds: int) -> int:
    cmd = pinned(CLIENT_CPU, ["wrk", "-t1", "-c64", f"-d{seconds}s", "-s", str(LUA),
                              f"http://127.0.0.1:{port}/v1/chat/completions"])
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 30).stdout
    m = re.search(r"(\d+) requests in", out)
    if not m or "Non-2xx" in out:
        raise RuntimeError(f"wrk failed: {out}")
    return int(m.group(1))


def measure(procs: Procs, tmp: Path, mock_port: int, pure: bool, seconds: int) -> float:
    port = free_port()
    cfg = write_gateway_config(tmp, mock_port, port)
    env = {k: v for k, v in os.environ.items() if k != "FASTGW_PURE"}
    if pure:
        env["FASTGW_PURE"] = "1"
    gw = procs.start("gateway", pinned(PROXY_CPU, [*fastgw_cmd(), "serve", "--config", str(cfg)]),
                     tmp / f"gw-{port}.log", env=env)
    try:
        wait_port(port, gw, "fastgw serve")
        wrk(port, 2)  # warm-up
        time.sleep(0.2)
        before = cpu_ticks([gw.pid])
        requests = wrk(port, seconds)
        time.sleep(0.2)
        return (cpu_ticks([gw.pid]) - before) * TICK_US / requests
    finally:
        procs.stop(gw)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--seconds", type=int, default=5)
    args = ap.parse_args()
    procs = Procs()
    results: dict[str, list[float]] = {"cython": [], "pure": []}
    with tempfile.TemporaryDirectory(prefix="fastgw-twins-") as d:
        tmp = Path(d)
        try:
            mock_port = free_port()
            mock = procs.start("mock", pinned(CLIENT_CPU, [PY, "-m", "fastgw.testing.mock_upstream", "--port", str(mock_port)]),
                               tmp / "mock.log")
            wait_port(mock_port, mock, "mock")
            for rep in range(args.reps):
                order = ("cython", "pure") if rep % 2 == 0 else ("pure", "cython")
                for twin in order:
                    results[twin].append(measure(procs, tmp, mock_port, twin == "pure", args.seconds))
        finally:
            procs.stop_all()
    c, p = med(results["cython"]), med(results["pure"])
    print("| twin | CPU per request @64 conn, SDK headers (µs, median) | per run |")
    print("|---|---:|---|")
    for twin in ("cython", "pure"):
        print(f"| {twin} | {med(results[twin]):.1f} | {', '.join(f'{x:.1f}' for x in results[twin])} |")
    print(f"\nThe Cython header parser saves {p - c:.1f} µs per request ({(p - c) / p * 100:.0f}% of the pure total).")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
