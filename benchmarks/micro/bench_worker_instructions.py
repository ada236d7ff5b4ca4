#!/usr/bin/env python3
"""Instructions a proxied request costs the gateway's worker, logging off and on, counted by callgrind.

    .venv/bin/python benchmarks/micro/bench_worker_instructions.py [--requests 1000] [--out FILE]

Why: the worker's CPU time a request at saturation moves by ±10 µs between runs on this shared
two-core machine, as much as the whole of what logging costs, and a loop that times one step
alone (bench_ring.py) runs with its code and data in the caches, which the worker's doesn't.
Callgrind counts the instructions the worker executes, the same for the same code and input
whatever else the machine is doing, and simulates the caches those instructions go through.

Layout: one worker in a process of its own, started as ``cli.run_worker`` starts it (logging on:
its ring, with no exporter reading it; the ring holds every record of the run), under
``valgrind --tool=callgrind --cache-sim=yes`` on core 0. The simulated caches are 32 KiB L1i
and L1d and a 1 MiB last level, the size of this CPU's L2 (callgrind models two levels). nginx
replays the mock's answer as the provider (replay_upstream.py), and this script, on core 1,
sends bench_logging.py's 1 KB chat request one at a time over one keep-alive connection:
``--warmup`` requests, then the counters are zeroed (``callgrind_control -z``), then
``--requests`` more, then the counters are written (``callgrind_control -d``). The worker runs
about 100 times slower under valgrind (6-8 ms a request), so timers and time-outs behave
differently; the instructions a request executes are the figure, and they repeat to within about
0.2% between runs (the rest: hash randomisation, timers). The simulated misses move more (the
addresses differ from run to run), the last level's most.

Variants (the cuts of log_cut.py, made in the worker's process before it starts):
  off   logging off
  none  logging on, ``log_request`` returns at once: what the stages logging adds cost
  pack  the record packed, then dropped instead of pushed
  full  packed and pushed into the ring (as shipped)

Per request: instructions (Ir), simulated misses of L1i, L1d (reads and writes) and of the last
level, and the inclusive instructions of the compiled functions that logging calls.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE.parent.parent / "src"))

VARIANTS = ("off", "none", "pack", "full")
WHAT = {
    "off": "logging off",
    "none": "on, log_request returns at once",
    "pack": "on, packed, then dropped",
    "full": "on, packed and pushed (as shipped)",
}
EVENTS = ("Ir", "Dr", "Dw", "I1mr", "D1mr", "D1mw", "ILmr", "DLmr", "DLmw")
# Compiled functions of the logging path, as callgrind names them (Cython's wrappers).
FUNCTIONS = {
    "record.pack_record": "__pyx_pw_6fastgw_10requestlog_6record_25pack_record",
    "recordwire.pack_request": "__pyx_pw_6fastgw_7_native_10recordwire_7pack_request",
    "record.redacted_lines": "__pyx_pw_6fastgw_10requestlog_6record_1redacted_lines",
    "recordwire.contains_any": "__pyx_pw_6fastgw_7_native_10recordwire_1contains_any",
    "recordwire.header_value": "__pyx_pw_6fastgw_7_native_10recordwire_3header_value",
    "Ring.push": "__pyx_pw_6fastgw_7_native_4ring_4Ring_17push",
}


def worker(cut: str, config: str) -> None:
    """The worker process: log_cut's cut, then cli.run_worker in this process."""
    import log_cut

    from fastgw.cli import run_worker
    from fastgw.config import load
    from fastgw.requestlog.paths import LogPaths

    if cut != "off":
        log_cut.cut("none" if cut == "none" else "pack" if cut == "pack" else "full")
    cfg = load(config)
    run_worker(cfg, 0, False, paths=LogPaths.for_config(cfg) if cfg.logging.enabled else None)


class Client:
    """One keep-alive connection sending the benchmark's chat request, one at a time."""

    def __init__(self, port: int, body: bytes, headers: list[str]) -> None:
        extra = "".join(f"{h}\r\n" for h in headers)
        self.request = (f"POST /v1/chat/completions HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n"
                        f"authorization: Bearer sk-bench\r\n{extra}content-length: {len(body)}\r\n\r\n").encode() + body
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=120)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def run(self, n: int) -> None:
        import httptools

        done: list[int] = []

        class Events:
            def on_message_complete(self) -> None:
                done.append(1)

        for i in range(n):
            done.clear()
            parser = httptools.HttpResponseParser(Events())
            self.sock.sendall(self.request)
            while not done:
                data = self.sock.recv(65536)
                if not data:
                    raise RuntimeError(f"the worker closed the connection after {i} requests")
                parser.feed_data(data)
            if parser.get_status_code() != 200:
                raise RuntimeError(f"request {i}: status {parser.get_status_code()}")

    def close(self) -> None:
        self.sock.close()


def totals(dump: Path) -> list[int]:
    for line in dump.read_text().splitlines():
        if line.startswith("totals:"):
            return [int(x) for x in line.split()[1:]]
    raise RuntimeError(f"no totals in {dump}")


def inclusive(dump: Path) -> dict[str, list[int]]:
    out = subprocess.run(["callgrind_annotate", "--inclusive=yes", "--threshold=100", "--auto=no", str(dump)],
                         capture_output=True, text=True, check=True).stdout
    found: dict[str, list[int]] = {}
    for line in out.splitlines():
        for label, symbol in FUNCTIONS.items():
            if label not in found and f":{symbol} [" in line:
                fields = re.sub(r"\(\s*[\d.]+%\)", "", line).split()[:len(EVENTS)]
                found[label] = [0 if x == "." else int(x.replace(",", "")) for x in fields]
    return found


def measure(variant: str, tmp: Path, port: int, requests: int, warmup: int) -> tuple[list[int], dict[str, list[int]]]:
    import bench_logging as bl
    import run_bench as rb

    (tmp / variant / ("off" if variant == "off" else "on")).mkdir(parents=True)
    gw_port = rb.free_port()
    cfg = bl.gateway_config(tmp / variant, "off" if variant == "off" else "on", port, gw_port)
    out = tmp / f"callgrind-{variant}.out"
    cmd = ["taskset", "-c", "0", "valgrind", "--tool=callgrind", "--cache-sim=yes", "--I1=32768,8,64",
           "--D1=32768,8,64", "--LL=1048576,8,64", f"--callgrind-out-file={out}",
           rb.PY, str(Path(__file__).resolve()), "--worker", variant, str(cfg)]
    with open(tmp / f"{variant}.log", "wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    try:
        rb.wait_port(gw_port, proc, variant, timeout=600)
        client = Client(gw_port, bl.BODY_1K.encode(), bl.MOCK_HEADERS)
        client.run(warmup)
        subprocess.run(["callgrind_control", "-z", str(proc.pid)], check=True, capture_output=True)
        client.run(requests)
        subprocess.run(["callgrind_control", "-d", str(proc.pid)], check=True, capture_output=True)
        client.close()
    finally:
        proc.terminate()
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    dump = Path(f"{out}.1")  # the -d dump; the file without a suffix is written at exit
    return totals(dump), inclusive(dump)


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        worker(sys.argv[2], sys.argv[3])
        return 0
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--requests", type=int, default=1000)
    ap.add_argument("--warmup", type=int, default=300)
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    import bench_logging as bl
    import run_bench as rb

    for tool in ("valgrind", "callgrind_control", "callgrind_annotate"):
        if shutil.which(tool) is None:
            print(f"{tool} is missing: apt-get install valgrind", file=sys.stderr)
            return 2
    if why := rb.missing_tools("nginx", "taskset"):
        print(why, file=sys.stderr)
        return 2
    os.sched_setaffinity(0, {1})
    started = time.strftime("%Y-%m-%d %H:%M")
    results: dict[str, tuple[list[int], dict[str, list[int]]]] = {}
    with bl.gateway_stage("fastgw-bench-instr") as (tmp, procs, port):
        for variant in args.variants.split(","):
            results[variant] = measure(variant, Path(tempfile.mkdtemp(dir=tmp)), port, args.requests, args.warmup)
            print(f"{variant}: {results[variant][0][0] / args.requests:,.0f} instructions a request", file=sys.stderr, flush=True)
    n = args.requests
    lines = [f"## {started}: instructions a request in the worker (callgrind, {n} requests after {args.warmup})", "",
             "| variant | Ir | vs off | L1i misses | L1d read misses | L1d write misses | LL misses |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    base = results.get("off", (None,))[0]
    for variant, (t, _) in results.items():
        vs = f"{(t[0] - base[0]) / n:+,.0f}" if base else ""
        lines.append(f"| {WHAT[variant]} | {t[0] / n:,.0f} | {vs} | {t[3] / n:,.0f} | {t[4] / n:,.0f} | {t[5] / n:,.0f} | "
                     f"{(t[6] + t[7] + t[8]) / n:,.1f} |")
    lines += ["", "Inclusive, per request, in the variants that call them:", "",
              "| function | variant | Ir | L1i misses | L1d misses | LL misses |", "|---|---|---:|---:|---:|---:|"]
    for variant, (_, funcs) in results.items():
        for label, f in funcs.items():
            lines.append(f"| {label} | {variant} | {f[0] / n:,.0f} | {f[3] / n:,.0f} | {(f[4] + f[5]) / n:,.0f} | "
                         f"{(f[6] + f[7] + f[8]) / n:,.1f} |")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        with open(args.out, "a") as fh:
            fh.write("\n" + text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
