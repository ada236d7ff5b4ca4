#!/usr/bin/env python3
"""Cache and rate-limit benchmarks: cache hits and rate-limit checks, in memory and in Redis, against
proxied requests and the mock reached directly, in one run.

  .venv/bin/python benchmarks/bench_cache.py [--quick] [--out benchmarks/results/<version>/cache.md]

Layout (2 cores), as in run_bench.py: the gateways under test run pinned to core 0 (``taskset -c 0``,
one worker, request logging off, so each is a single process); the mock upstream, redis-server, the
load generators (loadgen.py, wrk) and this script all run on core 1. Two gateways, started once and
measured interleaved:

  memory  the default config: cache and rate-limit backends ``memory`` (per worker);
  redis   ``cache: {backend: redis://127.0.0.1:PORT/0}`` and ``ratelimit: {backend: the same}``,
          against a redis-server started here (``--save "" --appendonly no``) on a free port.

Every request is the same small chat completion (wrk_chat.lua's body), so with
``Helicone-Cache-Enabled: true`` everything after the first request is a cache hit (the warm-up takes
the miss). Kinds of request, per gateway:

  proxied  no extra header: forwarded to the mock (the baseline; no cache, no rate limit);
  hit      ``Helicone-Cache-Enabled: true``: served from the cache, the mock is not asked;
  rl       ``Helicone-RateLimit-Policy: 1000000000;w=60`` (never refuses): a rate-limit check, then proxied;
  hit+rl   both headers (Redis only): with Redis under both, the rate-limit script and the cache
           lookup go to Redis in one pipelined round trip.

Before measuring, one request of each kind checks that hits answer ``helicone-cache: HIT``, rate-limited
requests carry ``helicone-ratelimit-remaining`` and proxied ones neither, and that the redis gateway
(and only it) wrote to Redis; the run stops otherwise.

Figures (each repetition runs every target back to back, in an order rotated per repetition;
medians over repetitions; "added" = median over repetitions of the paired difference target - direct
in the same repetition; "Δ" likewise for kind - kind on the same gateway):

  1. Latency p50/p99 at 1 and 16 connections (loadgen.py, closed loop, keep-alive) for direct, each
     gateway's proxied, hit and rl requests, and redis hit+rl; added = target - direct. Alongside:
     the gateway's own time per request as it reports it (``server-timing: gateway;dur=``: elapsed
     minus the time waiting on the upstream; Redis round trips count as the gateway's), p50/p99
     over sequential requests from this script.
  2. Throughput at saturation: ``wrk -t1 -c64`` (wrk_chat_headers.lua with the kind's headers) against
     direct and every gateway target but hit+rl: req/s, the gateway process's CPU (utime+stime from
     /proc/PID/stat) per request, and the mock's and redis-server's CPU per request, Redis commands
     per request (INFO total_commands_processed: it counts the commands a Lua script runs too) and
     script calls per request (INFO commandstats, EVAL/EVALSHA) to show where the work went.
  3. Rate-limit overhead: rl - proxied on the same gateway (latency and CPU per request), memory and
     Redis; and hit+rl - hit on Redis (what the pipelined check adds to a hit).

Full settings: 5 repetitions, loadgen 2 s (after 0.3 s warm-up), 1000 server-timing samples, wrk 5 s;
about 7 minutes in all. --quick: 1 repetition, 0.5 s / 200 / 1 s, about 35 s (a smoke test, not figures).

Writes the Markdown report to --out if given (and prints it). Every process started here (mock,
redis-server, gateways, load generators) is stopped here, by PID.
"""

from __future__ import annotations

import argparse
import http.client
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import run_bench as rb  # noqa: E402
from run_bench import (  # noqa: E402
    CHAT_PATH, CLIENT_CPU, PROXY_CPU, Procs, Stack, cpu_ticks, fastgw_cmd, free_port, med, pinned, rotate,
    run_loadgen, wait_port,
)

WRK_LUA = HERE / "wrk_chat_headers.lua"
CHAT_BODY = rb.CHAT_BODY  # the body loadgen.py sends by default and the lua sends: one cache key
CACHE_H = "Helicone-Cache-Enabled: true"
RL_H = "Helicone-RateLimit-Policy: 1000000000;w=60"
KIND_HEADERS = {"proxied": [], "hit": [CACHE_H], "rl": [RL_H], "hit+rl": [CACHE_H, RL_H]}
LAT_TARGETS = ("direct", "memory/proxied", "memory/hit", "memory/rl",
               "redis/proxied", "redis/hit", "redis/rl", "redis/hit+rl")
WRK_TARGETS = LAT_TARGETS[:-1]  # hit+rl: latency only
GW_TARGETS = LAT_TARGETS[1:]
LAT_KEYS = (("c1", 1), ("c16", 16))

PROFILES = {
    "full": dict(reps=5, lat_s=2.0, lat_warm=0.3, wrk_s=5, wrk_warm_s=1, st_n=1000),
    "quick": dict(reps=1, lat_s=0.5, lat_warm=0.1, wrk_s=1, wrk_warm_s=1, st_n=200),
}


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def split(target: str) -> tuple[str, str]:
    """'redis/hit' -> ('redis', 'hit'); 'direct' -> ('direct', 'proxied')."""
    gw, _, kind = target.partition("/")
    return gw, kind or "proxied"


# ------------------------------------------------------------------------------------ processes


def start_redis(procs: Procs, tmp: Path) -> tuple[Any, int]:
    port = free_port()
    proc = procs.start("redis-server", pinned(CLIENT_CPU, [
        "/usr/bin/redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
        "--dir", str(tmp), "--daemonize", "no"]), tmp / "redis.log")
    wait_port(port, proc, "redis-server")
    return proc, port


def gateway_config(tmp: Path, name: str, mock_port: int, port: int, redis_port: int) -> Path:
    path = tmp / f"{name}.yaml"
    text = (f'providers:\n  openai: {{base_url: "http://127.0.0.1:{mock_port}"}}\n'
            f"server: {{port: {port}}}\nlogging: {{enabled: false}}\n")
    if name == "redis":
        url = f"redis://127.0.0.1:{redis_port}/0"
        text += f"cache: {{backend: '{url}'}}\nratelimit: {{backend: '{url}'}}\n"
    path.write_text(text)
    return path


class Gateway:
    def __init__(self, name: str, tmp: Path, procs: Procs, mock_port: int, redis_port: int) -> None:
        self.name, self.port = name, free_port()
        cfg = gateway_config(tmp, name, mock_port, self.port, redis_port)
        self.proc = procs.start(f"fastgw-{name}", pinned(PROXY_CPU, [*fastgw_cmd(), "serve", "--config", str(cfg)]),
                                tmp / f"{name}.log")
        wait_port(self.port, self.proc, f"fastgw ({name})")
        kids = rb.children(self.proc.pid)
        if kids:  # logging off, one worker: there should be no other process
            log(f"warning: gateway {name} has child processes {kids}; counting their CPU too")
            procs.adopt_children(self.proc, kids)
        self.pids = [self.proc.pid, *kids]

    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{CHAT_PATH}"


# ------------------------------------------------------------------------------------ clients


def header_dict(headers: list[str]) -> dict[str, str]:
    out = {"content-type": "application/json", "authorization": "Bearer sk-bench"}
    for h in headers:
        k, _, v = h.partition(":")
        out[k.strip()] = v.strip()
    return out


def request(conn: http.client.HTTPConnection, headers: list[str]) -> tuple[int, dict[str, str]]:
    conn.request("POST", CHAT_PATH, body=CHAT_BODY, headers=header_dict(headers))
    resp = conn.getresponse()
    resp.read()
    return resp.status, {k.lower(): v for k, v in resp.getheaders()}


def server_timing(hdrs: dict[str, str]) -> float:
    m = re.search(r"gateway;dur=([\d.]+)", hdrs.get("server-timing", ""))
    if not m:
        raise RuntimeError(f"no server-timing gateway;dur in {hdrs}")
    return float(m.group(1))


def verify(gws: dict[str, Gateway], rds: Any) -> None:
    """One request per kind and gateway: the benchmark must measure what it says it measures."""
    if rds.dbsize():
        raise RuntimeError("redis is not empty before the first request")
    for name in ("memory", "redis"):
        conn = http.client.HTTPConnection("127.0.0.1", gws[name].port, timeout=10)
        for kind in ("proxied", "hit", "rl", "hit+rl"):
            if kind == "hit+rl" and name == "memory":
                continue
            hs = KIND_HEADERS[kind]
            status, h = request(conn, hs)
            for _ in range(20):  # the first one was the miss that fills the cache (Redis: asynchronously)
                if "hit" not in kind or h.get("helicone-cache") == "HIT":
                    break
                time.sleep(0.05)
                status, h = request(conn, hs)
            server_timing(h)
            problems = []
            if status != 200:
                problems.append(f"status {status}")
            if "hit" in kind and h.get("helicone-cache") != "HIT":
                problems.append(f"helicone-cache: {h.get('helicone-cache')!r}, expected HIT")
            if "hit" not in kind and "helicone-cache" in h:
                problems.append(f"unexpected helicone-cache: {h['helicone-cache']}")
            if "rl" in kind and "helicone-ratelimit-remaining" not in h:
                problems.append("no helicone-ratelimit-remaining")
            if "rl" not in kind and "helicone-ratelimit-remaining" in h:
                problems.append("unexpected helicone-ratelimit-remaining")
            if problems:
                raise RuntimeError(f"{name}/{kind}: " + "; ".join(problems) + f" (headers {h})")
            log(f"verified {name}/{kind}: status {status}, helicone-cache {h.get('helicone-cache', '-')}, "
                f"ratelimit-remaining {h.get('helicone-ratelimit-remaining', '-')}, {h['server-timing']}")
        conn.close()
        keys = rds.dbsize()
        if name == "memory" and keys:
            raise RuntimeError(f"the memory gateway wrote {keys} keys to Redis")
        if name == "redis" and not keys:
            raise RuntimeError("the redis gateway answered HIT / rate-limit headers but Redis holds no keys")
        log(f"verified: Redis holds {keys} keys after the {name} gateway's requests")


def sample_server_timing(port: int, kind: str, n: int) -> dict[str, Any]:
    """The gateway's own time (server-timing) of n sequential requests on one keep-alive connection."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    durs, hits = [], 0
    try:
        for _ in range(n):
            status, h = request(conn, KIND_HEADERS[kind])
            if status != 200:
                raise RuntimeError(f"server-timing sample {kind}: status {status}")
            durs.append(server_timing(h) * 1000)  # µs
            hits += h.get("helicone-cache") == "HIT"
    finally:
        conn.close()
    if "hit" in kind and hits != n:
        raise RuntimeError(f"{kind}: only {hits} of {n} sampled requests were cache hits")
    durs.sort()
    return {"p50": durs[len(durs) // 2], "p99": durs[min(n - 1, int(n * 0.99))], "n": n, "hits": hits}


def redis_counts(rds: Any) -> tuple[int, int]:
    """(all commands Redis ran, counting those inside scripts; EVAL/EVALSHA calls) so far."""
    total = rds.info("stats")["total_commands_processed"]
    cs = rds.info("commandstats")
    scripts = sum(cs.get(f"cmdstat_{c}", {}).get("calls", 0) for c in ("eval", "evalsha", "eval_ro", "evalsha_ro"))
    return total, scripts


def run_wrk(url: str, seconds: float, headers: list[str]) -> dict[str, Any]:
    cmd = pinned(CLIENT_CPU, ["wrk", "-t1", "-c64", f"-d{seconds}s", "-s", str(WRK_LUA), url])
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 30, check=False,
                         env={**os.environ, "WRK_HEADERS": "\n".join(headers)})
    text = out.stdout
    m = re.search(r"(\d+) requests in ([\d.]+)(us|ms|s|m)\b", text)
    if out.returncode or not m:
        raise RuntimeError(f"wrk failed ({out.returncode}): {text}\n{out.stderr}")
    if "Non-2xx" in text or "Socket errors" in text:
        raise RuntimeError(f"wrk against {url} with {headers} had errors: {text}")
    scale = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0}[m.group(3)]
    requests, elapsed = int(m.group(1)), float(m.group(2)) * scale
    return {"requests": requests, "elapsed_s": elapsed, "rps": requests / elapsed}


# ------------------------------------------------------------------------------------ the run


def bench(p: dict[str, Any], tmp: Path, procs: Procs) -> dict[str, Any]:
    import redis

    st = Stack(procs, tmp)
    st.start_mock()
    rproc, rport = start_redis(procs, tmp)
    rds = redis.Redis(host="127.0.0.1", port=rport)
    gws = {name: Gateway(name, tmp, procs, st.mock_port, rport) for name in ("memory", "redis")}
    log(f"mock :{st.mock_port} (pid {st.mock.pid}, core 1), redis-server :{rport} (pid {rproc.pid}, core 1), "
        + ", ".join(f"{g.name} gateway :{g.port} (pid {g.proc.pid}, core 0)" for g in gws.values()))
    verify(gws, rds)

    def url(t: str) -> str:
        gw, _ = split(t)
        return st.url("direct") if gw == "direct" else gws[gw].url()

    def lg_args(t: str) -> list[str]:
        return [a for h in KIND_HEADERS[split(t)[1]] for a in ("-H", h)]

    def pids(t: str) -> list[int]:
        gw, _ = split(t)
        return [] if gw == "direct" else gws[gw].pids

    for t in LAT_TARGETS:  # warm up: upstream pools, the cache entries, the rate-limit buckets
        run_loadgen(url(t), "-c", "16", "-d", "0.5", "--warmup", "0.1", *lg_args(t))
    for t in WRK_TARGETS:
        run_wrk(url(t), p["wrk_warm_s"], KIND_HEADERS[split(t)[1]])

    raw: dict[str, Any] = {"profile": p, "runs": {
        "c1": {t: [] for t in LAT_TARGETS}, "c16": {t: [] for t in LAT_TARGETS},
        "st": {t: [] for t in GW_TARGETS}, "wrk": {t: [] for t in WRK_TARGETS}}}
    runs = raw["runs"]

    for rep in range(p["reps"]):
        # 1. latency at 1 and 16 connections, then the gateway's own time
        for key, conns in LAT_KEYS:
            for t in rotate(LAT_TARGETS, rep):
                snap = rb.Noise.start(pids(t))
                r = run_loadgen(url(t), "-c", str(conns), "-d", str(p["lat_s"]), "--warmup", str(p["lat_warm"]),
                                *lg_args(t))
                r["noise"] = rb.Noise.stop(snap, pids(t))
                runs[key][t].append(r)
                lat = r["latency_us"]
                log(f"1 rep{rep} {t:15s} c={conns:<2d} p50 {lat['p50']:7.1f} µs  p99 {lat['p99']:7.1f} µs  "
                    f"({r['count']} req, others on core 0 {r['noise']['core0_foreign_pct']:.0f}%)")
        for t in rotate(GW_TARGETS, rep):
            gw, kind = split(t)
            s = sample_server_timing(gws[gw].port, kind, p["st_n"])
            runs["st"][t].append(s)
            log(f"1 rep{rep} {t:15s} server-timing gateway;dur p50 {s['p50']:6.1f} µs  p99 {s['p99']:6.1f} µs")
        # 2. throughput and CPU per request at saturation
        for t in rotate(WRK_TARGETS, rep):
            ps = pids(t)
            snap = rb.Noise.start(ps)
            g0, m0, r0 = cpu_ticks(ps), cpu_ticks([st.mock.pid]), cpu_ticks([rproc.pid])
            c0, s0 = redis_counts(rds)
            w = run_wrk(url(t), p["wrk_s"], KIND_HEADERS[split(t)[1]])
            time.sleep(0.2)  # let the gateway finish closing wrk's connections: part of the cost
            n = w["requests"]
            w["gw_us_per_req"] = (cpu_ticks(ps) - g0) / rb.CLK_TCK / n * 1e6 if ps else None
            w["gw_core_pct"] = 100 * (cpu_ticks(ps) - g0) / rb.CLK_TCK / w["elapsed_s"] if ps else None
            w["mock_us_per_req"] = (cpu_ticks([st.mock.pid]) - m0) / rb.CLK_TCK / n * 1e6
            w["redis_us_per_req"] = (cpu_ticks([rproc.pid]) - r0) / rb.CLK_TCK / n * 1e6
            c1, s1 = redis_counts(rds)
            w["redis_cmds_per_req"] = max(0, c1 - c0 - 2) / n  # our two INFO calls before
            w["redis_scripts_per_req"] = (s1 - s0) / n
            w["noise"] = rb.Noise.stop(snap, ps)
            runs["wrk"][t].append(w)
            log(f"2 rep{rep} {t:15s} wrk {w['rps']:7.0f} req/s  gateway "
                + (f"{w['gw_us_per_req']:5.1f} µs/req ({w['gw_core_pct']:.0f}% of core 0)" if ps else "—")
                + f"  mock {w['mock_us_per_req']:.1f}  redis {w['redis_us_per_req']:.1f} µs/req, "
                f"Redis {w['redis_cmds_per_req']:.2f} commands/req ({w['redis_scripts_per_req']:.2f} scripts)")
    raw["redis_keys"] = rds.dbsize()
    rds.close()
    for g in gws.values():
        procs.stop(g.proc)
    return raw


# ------------------------------------------------------------------------------------ the report


def summarize(raw: dict[str, Any], command: str, seconds: float, quick: bool) -> str:
    runs, p = raw["runs"], raw["profile"]

    def lat(key: str, t: str, pct: str) -> list[float]:
        return [r["latency_us"][pct] for r in runs[key][t]]

    def paired(xs: list[float], ys: list[float]) -> float:
        return med([x - y for x, y in zip(xs, ys, strict=True)])

    def us(v: float | None) -> str:
        return "—" if v is None or math.isnan(v) else f"{v:.0f}"

    def signed(v: float) -> str:
        return f"{v:+.0f}".replace("-", "−")

    cols = [(k, pct) for k, _ in LAT_KEYS for pct in ("p50", "p99")]
    colname = {("c1", "p50"): "p50 @1", ("c1", "p99"): "p99 @1", ("c16", "p50"): "p50 @16", ("c16", "p99"): "p99 @16"}
    lines = [
        "# Cache and rate-limit benchmarks", "",
        f"Measured {time.strftime('%Y-%m-%d %H:%M %Z')} with `{command}` in {seconds:.0f} s "
        f"({'quick smoke-test settings, 1 repetition — not for comparison' if quick else 'full settings'}). "
        f"Gateways on core 0 (one process each, logging off); mock, redis-server, loadgen/wrk on core 1. "
        f"{p['reps']} repetition(s), targets interleaved (rotated order); medians over repetitions. "
        "\"Added\" = median of the paired differences target − direct within a repetition; "
        "Δ likewise between two kinds on the same gateway.", "",
        f"Headers: hit = `{CACHE_H}` (fixed body: every request after the warm-up is a hit), "
        f"rl = `{RL_H}` (never refuses).", "",
        f"## 1. Latency (µs; loadgen.py closed loop, {p['lat_s']} s after {p['lat_warm']} s warm-up, "
        "at 1 and 16 connections)", "",
        "| target | " + " | ".join(colname[c] for c in cols) + " | " + " | ".join(f"added {colname[c]}" for c in cols)
        + f" | gateway's own time p50 / p99 (server-timing, {p['st_n']} sequential requests) |",
        "|---|" + "---:|" * (2 * len(cols) + 1),
    ]
    for t in LAT_TARGETS:
        vals = [us(med(lat(k, t, pct))) for k, pct in cols]
        if t == "direct":
            added = ["(reference)"] + ["—"] * (len(cols) - 1)
            own = "—"
        else:
            added = [signed(paired(lat(k, t, pct), lat(k, "direct", pct))) for k, pct in cols]
            s = runs["st"][t]
            own = f"{med([x['p50'] for x in s]):.0f} / {med([x['p99'] for x in s]):.0f}"
        lines.append(f"| {t} | " + " | ".join(vals) + " | " + " | ".join(added) + f" | {own} |")

    w = runs["wrk"]

    def wmed(t: str, k: str) -> float | None:
        xs = [x[k] for x in w[t] if x[k] is not None]
        return med(xs) if xs else None

    lines += ["", f"## 2. Throughput at saturation (`wrk -t1 -c64 -d{p['wrk_s']}s`, wrk_chat_headers.lua)", "",
              "| target | req/s | gateway CPU µs/req | gateway % of core 0 | mock CPU µs/req | redis-server CPU µs/req "
              "| Redis commands/req (incl. inside scripts) | of which EVAL/EVALSHA |",
              "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for t in WRK_TARGETS:
        g = wmed(t, "gw_us_per_req")
        pct = wmed(t, "gw_core_pct")
        lines.append(f"| {t} | {wmed(t, 'rps'):.0f} | {'—' if g is None else f'{g:.1f}'} | "
                     f"{'—' if pct is None else f'{pct:.0f}%'} | {wmed(t, 'mock_us_per_req'):.1f} | "
                     f"{wmed(t, 'redis_us_per_req'):.1f} | {wmed(t, 'redis_cmds_per_req'):.2f} | "
                     f"{wmed(t, 'redis_scripts_per_req'):.2f} |")
    lines.append("")
    for gw in ("memory", "redis"):
        h, pr = f"{gw}/hit", f"{gw}/proxied"
        ratio = med([a["rps"] / b["rps"] for a, b in zip(w[h], w[pr], strict=True)])
        cpu = med([a["gw_us_per_req"] - b["gw_us_per_req"] for a, b in zip(w[h], w[pr], strict=True)])
        lines.append(f"- {gw}: hits ×{ratio:.2f} the req/s of proxied requests; gateway CPU per hit "
                     f"{signed(cpu)} µs vs a proxied request (paired medians).")

    lines += ["", "## 3. Rate-limit check overhead (paired Δ, µs)", "",
              "| comparison | " + " | ".join(f"Δ {colname[c]}" for c in cols)
              + " | Δ gateway's own time p50 | Δ gateway CPU µs/req at saturation |",
              "|---|" + "---:|" * (len(cols) + 2)]
    for label, a, b in (("memory: rl − proxied", "memory/rl", "memory/proxied"),
                        ("redis: rl − proxied", "redis/rl", "redis/proxied"),
                        ("redis: hit+rl − hit (check pipelined with the lookup)", "redis/hit+rl", "redis/hit")):
        ds = [signed(paired(lat(k, a, pct), lat(k, b, pct))) for k, pct in cols]
        own = signed(paired([x["p50"] for x in runs["st"][a]], [x["p50"] for x in runs["st"][b]]))
        cpu = (signed(paired([x["gw_us_per_req"] for x in w[a]], [x["gw_us_per_req"] for x in w[b]]))
               if a in w and b in w else "— (latency only)")
        lines.append(f"| {label} | " + " | ".join(ds) + f" | {own} | {cpu} |")

    lines += ["", "## Per-repetition values", "", "```"]
    for key, _ in LAT_KEYS:
        for t in LAT_TARGETS:
            lines.append(f"{key:3s} {t:15s} p50 " + " ".join(f"{x:.0f}" for x in lat(key, t, "p50"))
                         + " | p99 " + " ".join(f"{x:.0f}" for x in lat(key, t, "p99")))
    for t in GW_TARGETS:
        lines.append(f"st  {t:15s} p50 " + " ".join(f"{x['p50']:.0f}" for x in runs["st"][t])
                     + " | p99 " + " ".join(f"{x['p99']:.0f}" for x in runs["st"][t]))
    for t in WRK_TARGETS:
        lines.append(f"wrk {t:15s} req/s " + " ".join(f"{x['rps']:.0f}" for x in w[t])
                     + (" | gateway µs/req " + " ".join(f"{x['gw_us_per_req']:.1f}" for x in w[t])
                        if t != "direct" else ""))
    lines += ["```", "", ("Noise (other work on the machine during each measurement: core 0 busy beyond the "
                          "gateway's own CPU, median / worst; core 1 busy, median):"), "",
              "| phase | others on core 0 | core 1 busy |", "|---|---:|---:|"]
    for key, title in (("c1", "latency @1"), ("c16", "latency @16"), ("wrk", "wrk -c64")):
        ns = [r["noise"] for t in runs[key] for r in runs[key][t] if not (t == "direct" and key == "wrk")]
        if ns:
            f0 = [n["core0_foreign_pct"] for n in ns]
            lines.append(f"| {title} | {med(f0):.0f}% / {max(f0):.0f}% | "
                         f"{med([n['core1_busy_pct'] for n in ns]):.0f}% |")
    lines += ["", f"Redis held {raw['redis_keys']} keys at the end."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="1 repetition, short runs (a smoke test)")
    ap.add_argument("--reps", type=int, help="override the number of repetitions")
    ap.add_argument("--out", type=Path, help="write the Markdown report here too")
    args = ap.parse_args(argv)
    if os.cpu_count() < 2:
        print("needs at least 2 CPUs (0 and 1)", file=sys.stderr)
        return 2
    for tool in ("wrk", "taskset", "/usr/bin/redis-server"):
        if not (Path(tool).exists() if tool.startswith("/") else shutil.which(tool)):
            print(f"{tool} is not installed", file=sys.stderr)
            return 2
    p = dict(PROFILES["quick" if args.quick else "full"])
    if args.reps:
        p["reps"] = args.reps
    command = ".venv/bin/python benchmarks/bench_cache.py" + "".join(f" {a}" for a in sys.argv[1:])
    started = time.time()
    os.sched_setaffinity(0, {int(CLIENT_CPU)})  # this script is a client too (server-timing samples)
    procs = Procs()
    with tempfile.TemporaryDirectory(prefix="fastgw-bench-cache-") as d:
        tmp = Path(d)
        try:
            raw = bench(p, tmp, procs)
        except BaseException:
            for name in ("memory.log", "redis.log", "mock.log"):
                f = tmp / name
                if f.exists() and f.stat().st_size:
                    log(f"--- {name} (tail)\n{f.read_text(errors='replace')[-2000:]}")
            raise
        finally:
            procs.stop_all()
    text = summarize(raw, command, time.time() - started, args.quick)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
        log(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    sys.exit(main())
