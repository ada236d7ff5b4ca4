#!/usr/bin/env python3
"""Unified-API overhead: OpenAI chat translated to Anthropic Messages, against Anthropic pass-through,
P50 and P99, in one run.

  .venv/bin/python benchmarks/bench_unified.py [--quick] [--latency-ms 20] [--out benchmarks/results/<version>/unified.md]

Layout (2 cores), as in run_bench.py: the gateway runs pinned to core 0 (``taskset -c 0``, one
worker, request logging off); the mock upstream (``python -m fastgw.testing.mock_upstream`` with a
fixed ``--latency-ms`` before each answer), the load generator (loadgen.py) and this script run on
core 1. Targets, all answering the same Anthropic mock:

  direct       POST /v1/messages on the mock itself (Anthropic body): the floor;
  passthrough  POST /anthropic/v1/messages through the gateway, same body: the client speaks Anthropic;
  unified      POST /v1/chat/completions through the gateway, ``model: anthropic/claude-sonnet-4-5``:
               the client speaks OpenAI, the gateway translates the request and the answer.

The same for streams (``--sse``; the latency is the whole stream, TTFB alongside). Before measuring,
one request per target checks that the unified answer is an OpenAI ``chat.completion`` (and a stream
of ``chat.completion.chunk`` ending in ``[DONE]``) and that the mock was asked ``/v1/messages``.

Each repetition runs every target back to back in an order rotated per repetition; the report gives
medians over repetitions of p50/p99, and "unified - passthrough" as the median of the paired
differences within a repetition (the translation's cost), likewise "passthrough - direct".

Full: 5 repetitions, loadgen 3 s after 0.5 s warm-up, at 1 and 16 connections. --quick: 1 repetition
of 1 s (a smoke test, not figures). Every process started here is stopped here, by PID.
"""

from __future__ import annotations

import argparse
import http.client
import json
import re
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from run_bench import (
    CLIENT_CPU,
    PROXY_CPU,
    PY,
    Procs,
    fastgw_cmd,
    free_port,
    med,
    pinned,
    rotate,
    run_loadgen,
    wait_port,
)

ANTHROPIC_BODY = json.dumps({"model": "claude-sonnet-4-5", "max_tokens": 256,
                             "messages": [{"role": "user", "content": "hello"}]}, separators=(",", ":"))
UNIFIED_BODY = json.dumps({"model": "anthropic/claude-sonnet-4-5", "max_tokens": 256,
                           "messages": [{"role": "user", "content": "hello"}]}, separators=(",", ":"))
TARGETS = ("direct", "passthrough", "unified")
PROFILES: dict[str, dict[str, Any]] = {
    "full": {"reps": 5, "secs": 3.0, "warm": 0.5, "st_n": 1000},
    "quick": {"reps": 1, "secs": 1.0, "warm": 0.2, "st_n": 200},
}


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def streamed(body: str) -> str:
    return json.dumps({**json.loads(body), "stream": True}, separators=(",", ":"))


class Bench:
    def __init__(self, procs: Procs, tmp: Path, latency_ms: float) -> None:
        self.mock_port, self.gw_port = free_port(), free_port()
        self.mock = procs.start("mock", pinned(CLIENT_CPU, [
            PY, "-m", "fastgw.testing.mock_upstream", "--port", str(self.mock_port),
            "--latency-ms", str(latency_ms)]), tmp / "mock.log")
        wait_port(self.mock_port, self.mock, "mock")
        cfg = tmp / "fastgw.yaml"
        cfg.write_text(f'providers:\n  anthropic: {{base_url: "http://127.0.0.1:{self.mock_port}", format: anthropic}}\n'
                       f"server: {{port: {self.gw_port}}}\nlogging: {{enabled: false}}\n")
        self.gateway = procs.start("gateway", pinned(PROXY_CPU, [*fastgw_cmd(), "serve", "--config", str(cfg)]),
                                   tmp / "gateway.log")
        wait_port(self.gw_port, self.gateway, "fastgw serve")

    def target(self, name: str) -> tuple[str, str, list[str]]:
        """(url, body, headers) for a target."""
        headers = ["x-api-key: sk-bench", "anthropic-version: 2023-06-01"]
        if name == "direct":
            return f"http://127.0.0.1:{self.mock_port}/v1/messages", ANTHROPIC_BODY, headers
        if name == "passthrough":
            return f"http://127.0.0.1:{self.gw_port}/anthropic/v1/messages", ANTHROPIC_BODY, headers
        return f"http://127.0.0.1:{self.gw_port}/v1/chat/completions", UNIFIED_BODY, ["authorization: Bearer sk-bench"]

    def verify(self) -> None:
        """The benchmark must measure what it says: translated answers, and the mock asked natively."""
        for name in TARGETS:
            for sse in (False, True):
                url, body, headers = self.target(name)
                host, _, path = url[len("http://"):].partition("/")
                conn = http.client.HTTPConnection(host, timeout=10)
                hdrs = {k.strip(): v.strip() for k, _, v in (h.partition(":") for h in headers)}
                conn.request("POST", "/" + path, body=streamed(body) if sse else body,
                             headers={"content-type": "application/json", **hdrs})
                resp = conn.getresponse()
                data = resp.read()
                conn.close()
                if resp.status != 200:
                    raise RuntimeError(f"{name} (stream={sse}): status {resp.status}: {data[:300]!r}")
                if name == "unified" and not sse and json.loads(data).get("object") != "chat.completion":
                    raise RuntimeError(f"unified answer is not a chat.completion: {data[:300]!r}")
                if name == "unified" and sse and (b"chat.completion.chunk" not in data or
                                                  not data.rstrip().endswith(b"data: [DONE]")):
                    raise RuntimeError(f"unified stream is not OpenAI chunks: {data[:300]!r}")
                if name != "unified" and b"msg_mock" not in data:
                    raise RuntimeError(f"{name}: not an Anthropic answer: {data[:300]!r}")


def gateway_ms(b: Bench, name: str, n: int) -> list[float]:
    """The gateway's own time per request as it reports it (``server-timing: gateway;dur=``: elapsed
    until the response head minus the wait on the upstream), over ``n`` sequential requests. Less
    noisy than end-to-end latency on a shared machine, and it is exactly what translation adds."""
    url, body, headers = b.target(name)
    host, _, path = url[len("http://"):].partition("/")
    hdrs = {"content-type": "application/json", **{k.strip(): v.strip() for k, _, v in (h.partition(":") for h in headers)}}
    conn = http.client.HTTPConnection(host, timeout=10)
    out = []
    for _ in range(n):
        conn.request("POST", "/" + path, body=body, headers=hdrs)
        resp = conn.getresponse()
        resp.read()
        m = re.search(r"gateway;dur=([\d.]+)", resp.getheader("server-timing") or "")
        if resp.status != 200 or m is None:
            raise RuntimeError(f"{name}: status {resp.status}, server-timing {resp.getheader('server-timing')!r}")
        out.append(float(m.group(1)))
    conn.close()
    return out


def pct(xs: list[float], q: float) -> float:
    ys = sorted(xs)
    return ys[min(len(ys) - 1, round(q / 100 * (len(ys) - 1)))]


def load(b: Bench, name: str, conns: int, sse: bool, p: dict[str, Any]) -> dict[str, Any]:
    url, body, headers = b.target(name)
    args = ["-c", str(conns), "-d", str(p["secs"]), "--warmup", str(p["warm"]),
            "--body", streamed(body) if sse else body]
    for h in headers:
        args += ["-H", h]
    if sse:
        args.append("--sse")
    return run_loadgen(url, *args)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--latency-ms", type=float, default=20.0, help="the mock's fixed delay before each answer")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args(argv)
    p = PROFILES["quick" if args.quick else "full"]
    procs = Procs()
    runs: dict[str, dict[str, list[dict[str, Any]]]] = {}
    st: dict[str, list[list[float]]] = {}
    try:
        with tempfile.TemporaryDirectory(prefix="fastgw-unified-") as tmp:
            b = Bench(procs, Path(tmp), args.latency_ms)
            b.verify()
            log(f"mock :{b.mock_port} (core 1, {args.latency_ms} ms), gateway :{b.gw_port} (core 0); verified")
            for rep in range(p["reps"]):
                for key, conns, sse in (("json c1", 1, False), ("json c16", 16, False), ("sse c1", 1, True)):
                    for name in rotate(TARGETS, rep):
                        runs.setdefault(key, {}).setdefault(name, []).append(load(b, name, conns, sse, p))
                for name in rotate(TARGETS[1:], rep):
                    st.setdefault(name, []).append(gateway_ms(b, name, p["st_n"]))
                log(f"repetition {rep + 1}/{p['reps']} done")
    finally:
        procs.stop_all()
    report = render(runs, st, args, p)
    print(report)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(report)
    return 0


def _ms(by_target: dict[str, list[dict[str, Any]]], name: str, key: str) -> list[float]:
    return [r["latency_us"][key] / 1000 for r in by_target[name]]


def render(runs: dict[str, dict[str, list[dict[str, Any]]]], st: dict[str, list[list[float]]],
           args: argparse.Namespace, p: dict[str, Any]) -> str:
    lines = [f"# Unified API (OpenAI -> Anthropic) vs pass-through, mock latency {args.latency_ms:g} ms",
             "", f"{p['reps']} repetition(s) of {p['secs']:g} s per target; latencies in ms (medians over repetitions).",
             "", "| load | target | p50 | p99 | requests | unified - passthrough p50 | p99 |",
             "|---|---|---|---|---|---|---|"]
    for key, by_target in runs.items():
        for name in TARGETS:
            diff = ["", ""]
            if name == "unified":
                diff = [f"{med([u - q for u, q in zip(_ms(by_target, 'unified', k), _ms(by_target, 'passthrough', k))]):+.3f}"
                        for k in ("p50", "p99")]
            lines.append(f"| {key} | {name} | {med(_ms(by_target, name, 'p50')):.3f} | "
                         f"{med(_ms(by_target, name, 'p99')):.3f} | "
                         f"{sum(r['count'] for r in by_target[name])} | {diff[0]} | {diff[1]} |")
    lines += ["", f"Gateway's own time per request (server-timing, {p['st_n']} sequential requests per repetition), ms:",
              "", "| target | p50 | p99 |", "|---|---|---|"]
    for name, reps in st.items():
        lines.append(f"| {name} | {med([pct(r, 50) for r in reps]):.3f} | {med([pct(r, 99) for r in reps]):.3f} |")
    if "unified" in st and "passthrough" in st:
        d50 = med([pct(u, 50) - pct(q, 50) for u, q in zip(st["unified"], st["passthrough"])])
        d99 = med([pct(u, 99) - pct(q, 99) for u, q in zip(st["unified"], st["passthrough"])])
        lines.append(f"| unified - passthrough | {d50:+.3f} | {d99:+.3f} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
