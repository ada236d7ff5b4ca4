"""The worker's cost while the log sink is down: logging on (sink up) against the sink down, alternated.

  .venv/bin/python benchmarks/bench_sink_down.py [--reps 8] [--rate 6000] [--old-src CHECKOUT/src]

Why a benchmark of its own: bench_logging.py's gateway run gives "sink down" one place among
many figures; this one asks only whether a sink that is down costs the request path anything,
after the worker's ring would have filled (each "down" gateway is first loaded for 15 s: about
100,000 records of 2 KB, against a 64 MiB ring). With ``--old-src`` a third gateway runs another
checkout's code (built in place) with its sink down too, for an A/B of two versions in one run.

Each repetition runs every gateway in turn (the order rotated): wrk -c64 for 4 s (the worker's
CPU per request answered, at saturation), then one closed-loop connection for 2.5 s and 16 for
2.5 s (P50, P99), then 32 connections at ``--rate`` requests a second, open loop, for 2.5 s (P50, P99): a load the
worker carries, where a stall of the client or the provider on core 1 shows in the P99.
The provider stand-in is nginx replaying the mock's answer (bench_logging.py's), on core 1 with
the clients and the exporters; the gateways' workers on core 0. Medians are printed at the end,
and for each latency figure a sign test of the repetitions: in how many of them the sink down
was slower than the sink up, and how likely at least that lopsided a split would be if neither
were slower (two-sided), which is what "no difference beyond noise" can be held to here.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import bench_logging as bl  # noqa: E402
import run_bench as rb  # noqa: E402

FILL_S, WRK_S, LAT_S = 15, 4, 2.5


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reps", type=int, default=8)
    ap.add_argument("--rate", type=int, default=6000, help="open-loop requests a second (0: none)")
    ap.add_argument("--old-src", type=Path, help="another checkout's src/ folder, run with its sink down too")
    args = ap.parse_args()
    if why := rb.missing_tools("nginx", "wrk", "taskset"):
        print(why, file=sys.stderr)
        return 2
    with bl.gateway_stage("fastgw-bench-down") as (tmp, procs, port):
        for sub in ("this", "old"):
            for name in ("on", "down"):
                (tmp / sub / name).mkdir(parents=True)
        gws = {"on": bl.Gateway("on", tmp / "this", procs, port),
               "down": bl.Gateway("down", tmp / "this", procs, port)}
        if args.old_src:
            old = ["env", f"PYTHONPATH={args.old_src.resolve()}", rb.PY, "-m", "fastgw"]
            gws["down, old"] = bl.Gateway("down", tmp / "old", procs, port, cli=old)
        bl.write_wrk_lua()
        lg = ["--body", bl.BODY_1K, *sum((["-H", h] for h in bl.MOCK_HEADERS), [])]
        for name in gws:
            if name != "on":
                bl.log(f"fill {name}: {bl.saturate(gws[name].url(), FILL_S, name)} requests in {FILL_S} s")
        res: dict[str, dict[str, list[float]]] = {
            k: {"cpu": [], "rps": [], "1 p50": [], "1 p99": [], "p50": [], "p99": [], "rate p50": [], "rate p99": []}
            for k in gws}
        for rep in range(args.reps):
            for name in rb.rotate(tuple(gws), rep):
                g = gws[name]
                w0 = rb.cpu_ticks([g.worker])
                n = bl.saturate(g.url(), WRK_S, name)
                cpu = (rb.cpu_ticks([g.worker]) - w0) / rb.CLK_TCK / n * 1e6
                one = rb.run_loadgen(g.url(), "-c", "1", "-d", str(LAT_S), "--warmup", "0.3", *lg)
                r = rb.run_loadgen(g.url(), "-c", "16", "-d", str(LAT_S), "--warmup", "0.3", *lg)
                for key, v in (("cpu", cpu), ("rps", n / WRK_S), ("1 p50", one["latency_us"]["p50"]),
                               ("1 p99", one["latency_us"]["p99"]), ("p50", r["latency_us"]["p50"]),
                               ("p99", r["latency_us"]["p99"])):
                    res[name][key].append(v)
                line = (f"rep{rep} {name:9s} worker {cpu:6.1f} µs/req {n / WRK_S:7.0f} req/s; "
                        f"1 conn p50 {one['latency_us']['p50']:6.1f} p99 {one['latency_us']['p99']:6.1f} µs; "
                        f"16 conn p50 {r['latency_us']['p50']:7.1f} p99 {r['latency_us']['p99']:7.1f} µs")
                if args.rate:
                    o = rb.run_loadgen(g.url(), "-c", "32", "--rate", str(args.rate), "-d", str(LAT_S), "--warmup", "0.3", *lg)
                    res[name]["rate p50"].append(o["latency_us"]["p50"])
                    res[name]["rate p99"].append(o["latency_us"]["p99"])
                    line += f"; {args.rate}/s p50 {o['latency_us']['p50']:7.1f} p99 {o['latency_us']['p99']:7.1f} µs"
                bl.log(line)
        for sub in ("this", "old"):
            folder = tmp / sub / "down" / "spill"
            spill, parked = list(folder.rglob("spill-*.wal")), list(folder.rglob("parked-*.wal"))
            if spill or parked:
                size = sum(f.stat().st_size for f in spill + parked) / 2**20
                print(f"{'this' if sub == 'this' else 'old'} code, sink down: {len(spill)} spill segments (the worker's), "
                      f"{len(parked)} parked files (the exporter's), {size:.0f} MiB")
        rate = f" p50 @{args.rate}/s (ms) | p99 @{args.rate}/s (ms) |" if args.rate else ""
        print("| gateway | worker µs/request | req/s | p50 @1 conn (ms) | p99 @1 conn (ms) | p50 @16 conn (ms) "
              "| p99 @16 conn (ms) |" + rate)
        print("|---|---:|---:|---:|---:|---:|---:|" + ("---:|---:|" if args.rate else ""))
        for name, v in res.items():
            med = {k: statistics.median(x) if x else 0.0 for k, x in v.items()}
            print(f"| {name} | {med['cpu']:.1f} | {med['rps']:.0f} | {med['1 p50'] / 1000:.3f} | {med['1 p99'] / 1000:.3f} "
                  f"| {med['p50'] / 1000:.3f} | {med['p99'] / 1000:.3f} |"
                  + (f" {med['rate p50'] / 1000:.3f} | {med['rate p99'] / 1000:.3f} |" if args.rate else ""))
        keys = ("cpu", "1 p99", "p99", *(("rate p99",) if args.rate else ()))
        for key in keys:
            print(f"per repetition, {key}: " + "; ".join(f"{name} " + " ".join(f"{x:.0f}" for x in v[key])
                                                       for name, v in res.items()))
        for key in keys[1:]:
            k, n, p = rb.sign_test(res["on"][key], res["down"][key])
            print(f"sign test, {key}: down slower than on in {k} of {n} repetitions (p = {p:.2f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
