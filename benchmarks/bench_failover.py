#!/usr/bin/env python3
"""Failover benchmark: one of a route's two targets failing half its requests, against both healthy,
in one run: the success rate the client sees and the latency the failures add.

  .venv/bin/python benchmarks/bench_failover.py [--quick] [--duration S] [--out FILE.md]

Three mock upstreams (separate processes, each answering after ``--latency-ms``): ``ok1`` and ``ok2``
always answer 200; ``half`` answers 503 to every second request (``--fail-every 2``). Two gateways
(one worker each, request logging off), each with two routes balanced by weight 1:1:

  healthy   ok1 + ok2
  degraded  ok1 + half   (a 503 from half falls back to ok1 in the same request)

  default   routing.health as shipped: half is ejected when its error rate reaches 50% of at least
            10 answers in 30 s, probed after 10 s, and so on
  no-eject  health thresholds out of reach: every request balanced 1:1, so about a quarter of them
            meet a 503 and fall back (what fallback alone buys, without ejection)

Each repetition runs the four (gateway, route) targets back to back with loadgen.py (closed loop,
``-c`` keep-alive connections, ``--duration`` seconds after a warm-up), in an order rotated per
repetition. Reported per target: requests, success rate (HTTP 200 / all answers), p50 and p99, the
added p50/p99 over the same gateway's healthy route in the same repetition (median over repetitions),
and the share of the run's requests that reached ``half`` (from the mock's own counter).
On two shared cores the gateways are pinned to core 0 and everything else to core 1 when
``taskset`` exists. --quick: 1 repetition of 2 s (a smoke test, not figures).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import urllib.request
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from tests.helpers import free_port, wait_for_port

PY = sys.executable
TASKSET = shutil.which("taskset")


def pinned(core: int, argv: list[str]) -> list[str]:
    return [TASKSET, "-c", str(core), *argv] if TASKSET and (os.cpu_count() or 1) > 1 else argv


def start(argv: list[str], port: int, log: Path) -> subprocess.Popen[bytes]:
    with open(log, "wb") as err:  # the child keeps its own copy of the descriptor
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=err)
    wait_for_port(port, proc=proc)
    return proc


def mock(name: str, latency_ms: float, tmp: Path, fail_every: int = 0) -> tuple[str, subprocess.Popen[bytes]]:
    port = free_port()
    argv = [PY, "-m", "fastgw.testing.mock_upstream", "--port", str(port), "--latency-ms", str(latency_ms)]
    if fail_every:
        argv += ["--fail-every", str(fail_every)]
    return f"http://127.0.0.1:{port}", start(pinned(1, argv), port, tmp / f"mock-{name}.log")


def gateway(name: str, mocks: dict[str, str], health: dict[str, object], tmp: Path) -> tuple[int, subprocess.Popen[bytes]]:
    port = free_port()
    cfg = {
        "server": {"port": port, "workers": 1},
        "logging": {"enabled": False},
        "providers": {n: {"base_url": url} for n, url in mocks.items()},
        "routes": {
            "healthy": {"strategy": "weighted", "targets": [{"provider": "ok1", "model": "gpt-4o-mini"},
                                                            {"provider": "ok2", "model": "gpt-4o-mini"}]},
            "degraded": {"strategy": "weighted", "targets": [{"provider": "ok1", "model": "gpt-4o-mini"},
                                                             {"provider": "half", "model": "gpt-4o-mini"}]},
        },
        "routing": {"health": health},
    }
    path = tmp / f"gw-{name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    argv = pinned(0, [PY, "-m", "fastgw", "serve", "--config", str(path)])
    return port, start(argv, port, tmp / f"gw-{name}.log")


def mock_requests(url: str) -> int:
    with urllib.request.urlopen(url + "/__mock/stats", timeout=5) as r:
        return int(json.load(r)["requests"])


def load(port: int, route: str, conns: int, duration: float) -> dict:
    body = json.dumps({"model": route, "messages": [{"role": "user", "content": "hello"}]})
    out = subprocess.run(
        pinned(1, [PY, str(ROOT / "benchmarks" / "loadgen.py"), f"http://127.0.0.1:{port}/v1/chat/completions",
                   "-c", str(conns), "-d", str(duration), "--warmup", "0.3", "--body", body,
                   "-H", "authorization: Bearer sk-bench"]),
        check=True, capture_output=True, timeout=duration + 60)
    return json.loads(out.stdout)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--duration", type=float, default=10.0)
    ap.add_argument("-c", "--connections", type=int, default=8)
    ap.add_argument("--latency-ms", type=float, default=20.0)
    ap.add_argument("--out")
    args = ap.parse_args()
    reps, duration = (1, 2.0) if args.quick else (args.reps, args.duration)
    tmp = Path(tempfile.mkdtemp(prefix="bench-failover-"))
    procs: list[subprocess.Popen[bytes]] = []
    try:
        mocks = {}
        for name, fail in (("ok1", 0), ("ok2", 0), ("half", 2)):
            mocks[name], p = mock(name, args.latency_ms, tmp, fail)
            procs.append(p)
        gws = {}
        for name, health in (("default", {}), ("no-eject", {"consecutive_failures": 1_000_000, "error_rate": 1.0,
                                                            "min_requests": 1_000_000})):
            gws[name], p = gateway(name, mocks, health, tmp)
            procs.append(p)
        targets = [(g, r) for g in gws for r in ("healthy", "degraded")]
        results: dict[tuple[str, str], list[dict]] = {t: [] for t in targets}
        for rep in range(reps):
            order = targets[rep % len(targets):] + targets[:rep % len(targets)]
            for g, r in order:
                before = mock_requests(mocks["half"])
                res = load(gws[g], r, args.connections, duration)
                res["half_requests"] = mock_requests(mocks["half"]) - before
                results[(g, r)].append(res)
        report = render(results, reps, duration, args)
    finally:
        for p in procs:
            p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                p.kill()
        shutil.rmtree(tmp, ignore_errors=True)
    print(report)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(report)
    return 0


def render(results: dict[tuple[str, str], list[dict]], reps: int, duration: float, args: argparse.Namespace) -> str:
    lines = [
        (f"# Failover: one of two targets failing half its requests ({reps} x {duration:g} s, "
         f"-c {args.connections}, mock latency {args.latency_ms:g} ms)"), "",
        "| gateway | route | requests | success | p50 ms | p99 ms | added p50 ms | added p99 ms | to `half` |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for (g, r), runs in results.items():
        n = sum(x["count"] for x in runs)
        answers = sum(sum(x["statuses"].values()) + x["errors"] for x in runs)
        ok = sum(x["statuses"].get("200", 0) for x in runs)
        p50 = statistics.median(x["latency_us"]["p50"] for x in runs) / 1000
        p99 = statistics.median(x["latency_us"]["p99"] for x in runs) / 1000
        base = results[(g, "healthy")]
        add50 = statistics.median(x["latency_us"]["p50"] - y["latency_us"]["p50"] for x, y in zip(runs, base)) / 1000
        add99 = statistics.median(x["latency_us"]["p99"] - y["latency_us"]["p99"] for x, y in zip(runs, base)) / 1000
        half = sum(x["half_requests"] for x in runs)
        lines.append(f"| {g} | {r} | {n} | {100 * ok / max(answers, 1):.2f}% | {p50:.2f} | {p99:.2f} | "
                     f"{add50:+.2f} | {add99:+.2f} | {100 * half / max(n, 1):.1f}% |")
    lines += ["", ("success = HTTP 200 / answers (errors included); added = this route minus the same gateway's "
                   "healthy route, paired per repetition; to `half` = requests the failing mock received (its counter "
                   "includes the 0.3 s warm-up) / requests measured.")]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
