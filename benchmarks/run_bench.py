#!/usr/bin/env python3
"""fastgw benchmark suite: the gateway, nginx and the mock directly, in one run, same load.

  .venv/bin/python benchmarks/run_bench.py [--quick] [--micro] [--profile]
                                           [--out benchmarks/results/<version>/results.md]

Layout (2 cores): the proxy under test (``fastgw serve``, or nginx with one worker) runs pinned
to core 0 with ``taskset -c 0``; the mock upstream and every load generator (wrk, loadgen.py,
the cold-start client, this script) run on core 1. So the proxy has a core of its own and
everything else shares the other one, identically for all three targets.

Figures (each measured --reps times, targets interleaved within a repetition; medians reported;
"added" figures are the median over repetitions of the paired difference proxy - direct):
  a. CPU per proxied request at saturation: wrk -t1 -c64 with wrk_chat.lua; utime+stime of the
     proxy process(es) from /proc/PID/stat before/after, divided by the requests wrk completed.
  b. Added latency p50/p99 at 1 and 16 connections with loadgen.py (closed loop, keep-alive).
  c. SSE: time to first body byte at 1 connection, and the inter-arrival times of 8 events
     sent 20 ms apart by the mock (max deviation from 20 ms: a held-back chunk shows up as ~20 ms).
  d. VmRSS of the gateway after all of the above.
  e. Cold start: spawn ``fastgw serve`` until the first proxied 200 (median of --starts).

Writes <out> (the Markdown table plus per-run details), machine.md next to it, and the raw
numbers as JSON under benchmarks/results/raw/. Everything started here is stopped here, by PID.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import importlib.metadata as md
import json
import math
import os
import platform
import re
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
PY = sys.executable
LOADGEN = HERE / "loadgen.py"
WRK_LUA = HERE / "wrk_chat.lua"
CLK_TCK = os.sysconf("SC_CLK_TCK")
PROXY_CPU, CLIENT_CPU = "0", "1"
CHAT_PATH = "/v1/chat/completions"
CHAT_BODY = b'{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hello"}]}'
TARGETS = ("gateway", "nginx", "direct")

# Bars: (figure key, limit, what the limit applies to)
BARS = {
    "cpu_us": (80.0, "gateway"),
    "lat_p50_c1": (0.25, "added"),
    "lat_p99_c16": (1.5, "added"),
    "sse_ttfb_p50": (0.5, "added"),
    "sse_gap_dev": (10.0, "gateway"),  # half the 20 ms period: a held-back event deviates by ~20 ms
    "rss_mib": (64.0, "gateway"),
    "cold_s": (0.5, "gateway"),
}

PROFILES = {
    "full": dict(reps=5, wrk_s=5, wrk_warm_s=2, lat_s=2.5, lat_warm=0.3, sse_s=2.0, sse_warm=0.3,
                 gap_n=6, starts=5, quiet_wait_s=3.0, quiet_budget_s=45.0, wake_n=3000),
    "quick": dict(reps=2, wrk_s=1, wrk_warm_s=1, lat_s=0.7, lat_warm=0.1, sse_s=0.7, sse_warm=0.1,
                  gap_n=3, starts=2, quiet_wait_s=0.0, quiet_budget_s=0.0, wake_n=1000),
}


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------- processes


def free_port() -> int:
    """A port the kernel just handed out; never a fixed port (others run gateways here too)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def wait_port(port: int, proc: subprocess.Popen, what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode} before listening on {port}")
        if port_open(port):
            return
        time.sleep(0.01)
    raise TimeoutError(f"{what}: nothing listening on {port} after {timeout}s")


class Procs:
    """Every long-running process we start, so that ``stop_all`` (in a finally) can stop them by PID."""

    def __init__(self) -> None:
        self.procs: list[tuple[str, subprocess.Popen, list[int]]] = []

    def start(self, name: str, cmd: list[str], log_path: Path, **kw: Any) -> subprocess.Popen:
        out = open(log_path, "wb")
        proc = subprocess.Popen(cmd, stdout=kw.pop("stdout", out), stderr=out, stdin=subprocess.DEVNULL, **kw)
        out.close()
        self.procs.append((name, proc, []))
        return proc

    def adopt_children(self, proc: subprocess.Popen, pids: list[int]) -> None:
        """Remember PIDs forked by one of ours (nginx workers) to make sure they are gone at the end."""
        for _, p, extra in self.procs:
            if p is proc:
                extra.extend(pids)

    def stop(self, proc: subprocess.Popen, timeout: float = 10.0) -> int | None:
        for entry in list(self.procs):
            if entry[1] is proc:
                self._stop(*entry, timeout=timeout)
                self.procs.remove(entry)
        return proc.returncode

    def _stop(self, name: str, proc: subprocess.Popen, extra: list[int], timeout: float) -> None:
        if proc.poll() is None:
            try:
                proc.send_signal(signal.SIGTERM)
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                log(f"{name} (pid {proc.pid}) ignored SIGTERM; killing it")
                proc.kill()
                proc.wait()
        for pid in extra:  # children that outlived their parent (only if it was SIGKILLed)
            if pid_alive(pid, comm=name.split("-")[0]):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass

    def stop_all(self) -> None:
        while self.procs:
            self._stop(*self.procs.pop(), timeout=10.0)


def pid_alive(pid: int, comm: str | None = None) -> bool:
    """Is `pid` a live process (and, if given, still the program `comm`, not a recycled PID)?"""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    name, _, rest = stat.partition(" (")[2].rpartition(")")
    if rest.split()[0] == "Z":
        return False
    return comm is None or name == comm


def children(pid: int) -> list[int]:
    try:
        return [int(x) for x in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:  # kernel without CONFIG_PROC_CHILDREN: scan /proc
        out = []
        for d in Path("/proc").iterdir():
            if d.name.isdigit():
                try:
                    if int(d.joinpath("stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                        out.append(int(d.name))
                except (OSError, IndexError, ValueError):
                    pass
        return out


def cpu_ticks(pids: list[int]) -> int:
    """utime + stime (all threads) summed over pids, in clock ticks."""
    total = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # fields 14 and 15 of stat(5)
    return total


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def core_times() -> dict[str, tuple[int, int, int]]:
    """Per-core (busy, total, steal) jiffies from /proc/stat."""
    out = {}
    for line in Path("/proc/stat").read_text().splitlines():
        if line.startswith("cpu") and line[3:4].isdigit():
            name, *vals = line.split()
            v = [int(x) for x in vals]
            idle = v[3] + (v[4] if len(v) > 4 else 0)
            steal = v[7] if len(v) > 7 else 0
            total = sum(v[:8])
            out[name] = (total - idle, total, steal)
    return out


def core_usage(before: dict, after: dict) -> dict[str, dict[str, float]]:
    res = {}
    for name in after:
        if name in before:
            busy = after[name][0] - before[name][0]
            total = max(1, after[name][1] - before[name][1])
            res[name] = {"busy_pct": round(100 * busy / total, 1),
                         "steal_pct": round(100 * (after[name][2] - before[name][2]) / total, 1)}
    return res


class Noise:
    """What else ran while we measured: core 0 busy beyond our proxy's own CPU, and core 1 busy.

    The machine is shared; a run that other people's processes disturbed shows up here (and in the
    per-run details), and ``wait_quiet`` holds off starting a measurement while the cores are busy.
    """

    def __init__(self, budget_s: float) -> None:
        self.budget = budget_s  # total seconds we may spend waiting for quiet, over the whole run
        self.waited = 0.0

    @staticmethod
    def start(pids: list[int]) -> tuple[float, dict, int]:
        return time.monotonic(), core_times(), cpu_ticks(pids)

    @staticmethod
    def stop(snap: tuple[float, dict, int], pids: list[int]) -> dict[str, float]:
        t0, cores0, ticks0 = snap
        dt = max(1e-3, time.monotonic() - t0)
        use = core_usage(cores0, core_times())
        proxy = 100 * (cpu_ticks(pids) - ticks0) / CLK_TCK / dt
        c0 = use.get("cpu0", {}).get("busy_pct", 0.0)
        return {"proxy_pct": round(proxy, 1), "core0_busy_pct": c0, "core0_foreign_pct": round(max(0.0, c0 - proxy), 1),
                "core1_busy_pct": use.get("cpu1", {}).get("busy_pct", 0.0),
                "steal_pct": max((u["steal_pct"] for u in use.values()), default=0.0)}

    def wait_quiet(self, max_wait: float = 3.0, core0_max: float = 10.0, core1_max: float = 25.0) -> None:
        """Wait (bounded) until our cores look idle; our own processes are idle between runs."""
        if max_wait <= 0 or self.waited >= self.budget:
            return
        deadline = time.monotonic() + min(max_wait, self.budget - self.waited)
        t_start = time.monotonic()
        while True:
            before = core_times()
            time.sleep(0.2)
            use = core_usage(before, core_times())
            quiet = (use.get("cpu0", {}).get("busy_pct", 0) <= core0_max
                     and use.get("cpu1", {}).get("busy_pct", 0) <= core1_max)
            if quiet or time.monotonic() >= deadline:
                break
        self.waited += max(0.0, time.monotonic() - t_start - 0.2)


# The Debian package of each outside command the benchmarks run.
PACKAGES = {"nginx": "nginx-light", "wrk": "wrk", "taskset": "util-linux"}


def missing_tools(*tools: str) -> str | None:
    """None when every command is on PATH; else what is missing and the apt-get line that installs it,
    so a run stops before its first stage rather than minutes in."""
    missing = [t for t in tools if shutil.which(t) is None]
    if not missing:
        return None
    return (f"not installed: {', '.join(missing)}; as root: apt-get install -y "
            f"{' '.join(PACKAGES.get(t, t) for t in missing)}")


def pinned(cpu: str, cmd: list[str]) -> list[str]:
    return ["taskset", "-c", cpu, *cmd]


def fastgw_cmd() -> list[str]:
    exe = Path(PY).with_name("fastgw")
    return [str(exe)] if exe.exists() else [PY, "-m", "fastgw"]


def write_gateway_config(tmp: Path, mock_port: int, port: int) -> Path:
    path = tmp / f"fastgw-{port}.yaml"
    path.write_text(
        "providers:\n"
        f'  openai: {{base_url: "http://127.0.0.1:{mock_port}"}}\n'
        f'  anthropic: {{base_url: "http://127.0.0.1:{mock_port}", format: anthropic}}\n'
        f"server: {{port: {port}}}\n"
        # The core gateway's figures: request logging (on by default) has its own benchmark.
        "logging: {enabled: false}\n"
    )
    return path


# One worker, its files under its own prefix, no access log: what every nginx of the benchmarks
# shares. A config is this, then its own ``http`` directives, then a closing brace.
NGINX_HEAD = """\
worker_processes 1;
{user}pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{
    worker_connections 4096;
}}
http {{
    access_log off;
    client_body_temp_path {prefix}/tmp/client_body;
    proxy_temp_path {prefix}/tmp/proxy;
    fastcgi_temp_path {prefix}/tmp/fastcgi;
    uwsgi_temp_path {prefix}/tmp/uwsgi;
    scgi_temp_path {prefix}/tmp/scgi;
    keepalive_requests 1000000;
"""

NGINX_CONF = NGINX_HEAD + """\
    upstream mock {{
        server 127.0.0.1:{mock_port};
        keepalive 64;
        keepalive_requests 1000000;
    }}
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        location / {{
            proxy_pass http://mock;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffering off;
        }}
    }}
}}
"""


def write_nginx_conf(tmp: Path, port: int, template: str = NGINX_CONF, name: str = "nginx", **fields: Any) -> tuple[Path, Path]:
    """``template`` (NGINX_HEAD and more) filled in under its own prefix in ``tmp``: (config, prefix)."""
    prefix = tmp / f"{name}-{port}"
    (prefix / "tmp").mkdir(parents=True)
    user = "user root;\n" if os.geteuid() == 0 else ""  # as root, workers would otherwise become nobody
    conf = prefix / "nginx.conf"
    conf.write_text(template.format(user=user, prefix=prefix, port=port, **fields))
    return conf, prefix


def nginx_cmd(conf: Path, prefix: Path) -> list[str]:
    """nginx in the foreground on ``conf``, its files under ``prefix``."""
    return ["nginx", "-c", str(conf), "-p", str(prefix), "-g", "daemon off;"]


def start_nginx(procs: Procs, name: str, conf: Path, prefix: Path, port: int, cpu: str) -> tuple[subprocess.Popen, list[int]]:
    """nginx on ``conf`` (checked with ``nginx -t`` first), pinned to ``cpu``, once it listens on
    ``port`` and has its worker: the master and the workers, which ``procs`` stops."""
    test = subprocess.run(["nginx", "-t", "-q", "-c", str(conf), "-p", str(prefix)], capture_output=True, text=True)
    if test.returncode:
        raise RuntimeError(f"nginx -t failed for {name}: {test.stderr}")
    proc = procs.start(name, pinned(cpu, nginx_cmd(conf, prefix)), prefix / "nginx.out")
    wait_port(port, proc, name)
    deadline = time.monotonic() + 10
    while not (workers := children(proc.pid)):
        if time.monotonic() > deadline:
            raise RuntimeError(f"{name} has no worker process")
        time.sleep(0.01)
    procs.adopt_children(proc, workers)
    return proc, workers


class Stack:
    """The mock (core 1), the gateway and nginx (core 0), all in front of the same mock."""

    def __init__(self, procs: Procs, tmp: Path) -> None:
        self.procs, self.tmp = procs, tmp
        self.mock = self.gateway = self.nginx = None
        self.mock_port = self.gw_port = self.ng_port = 0
        self.nginx_workers: list[int] = []

    def start_mock(self) -> None:
        self.mock_port = free_port()
        logf = self.tmp / "mock.log"
        self.mock = self.procs.start(
            "mock", pinned(CLIENT_CPU, [PY, "-m", "fastgw.testing.mock_upstream", "--port", str(self.mock_port)]),
            logf)
        deadline = time.monotonic() + 20
        while b"listening on" not in logf.read_bytes():
            if self.mock.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"mock did not start: {logf.read_text(errors='replace')}")
            time.sleep(0.01)

    def start_gateway(self) -> None:
        self.gw_port = free_port()
        cfg = write_gateway_config(self.tmp, self.mock_port, self.gw_port)
        self.gateway = self.procs.start(
            "gateway", pinned(PROXY_CPU, [*fastgw_cmd(), "serve", "--config", str(cfg)]), self.tmp / "gateway.log")
        wait_port(self.gw_port, self.gateway, "fastgw serve")

    def start_nginx(self) -> None:
        self.ng_port = free_port()
        conf, prefix = write_nginx_conf(self.tmp, self.ng_port, mock_port=self.mock_port)
        self.nginx, self.nginx_workers = start_nginx(self.procs, "nginx", conf, prefix, self.ng_port, PROXY_CPU)

    def url(self, target: str, path: str = CHAT_PATH) -> str:
        port = {"gateway": self.gw_port, "nginx": self.ng_port, "direct": self.mock_port}[target]
        return f"http://127.0.0.1:{port}{path}"

    def cpu_pids(self, target: str) -> list[int]:
        """The processes whose CPU time a request through `target` costs on the proxy core."""
        if target == "gateway":
            return [self.gateway.pid]
        if target == "nginx":
            return self.nginx_workers
        return []


# --------------------------------------------------------------------------------------- load runs


def run_wrk(url: str, seconds: int, conns: int = 64, script: Path = WRK_LUA) -> dict[str, Any]:
    cmd = pinned(CLIENT_CPU, ["wrk", "-t1", f"-c{conns}", f"-d{seconds}s", "-s", str(script), url])
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 30)
    text = out.stdout
    m = re.search(r"(\d+) requests in ([\d.]+)(us|ms|s|m)\b", text)
    if out.returncode or not m:
        raise RuntimeError(f"wrk failed ({out.returncode}): {text}\n{out.stderr}")
    scale = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0}[m.group(3)]
    requests, elapsed = int(m.group(1)), float(m.group(2)) * scale
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    return {"requests": requests, "elapsed_s": elapsed, "rps": requests / elapsed,
            "non2xx": int(non2xx.group(1)) if non2xx else 0,
            "socket_errors": sum(map(int, sock.groups())) if sock else 0}


def sign_test(a: list[float], b: list[float]) -> tuple[int, int, float]:
    """Pairs (same repetition) where b > a, pairs that differ, and the two-sided binomial p-value of
    a split at least that uneven when either is as likely to be the larger."""
    diffs = [y - x for x, y in zip(a, b) if y != x]
    n, k = len(diffs), sum(1 for d in diffs if d > 0)
    tail = min(k, n - k)
    p = min(1.0, 2 * sum(math.comb(n, i) for i in range(tail + 1)) / 2**n) if n else 1.0
    return k, n, p


def median_interval(xs: list[float], confidence: float = 0.95) -> tuple[float, float, float]:
    """A distribution-free confidence interval for the median of ``xs`` (order statistics: the
    median lies between the k-th smallest and the k-th largest of n values with probability
    1 - 2 P(Binomial(n, 1/2) < k)), and that coverage. With too few values for ``confidence``,
    the widest interval there is (min, max)."""
    v, n = sorted(xs), len(xs)
    k = 1
    while k < n // 2 and 2 * sum(math.comb(n, i) for i in range(k + 1)) / 2**n <= 1 - confidence:
        k += 1
    coverage = 1 - 2 * sum(math.comb(n, i) for i in range(k)) / 2**n
    return v[k - 1], v[n - k], coverage


def run_loadgen(url: str, *args: str, timeout: float = 120) -> dict[str, Any]:
    cmd = pinned(CLIENT_CPU, [PY, str(LOADGEN), url, *args])
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    try:
        res = json.loads(out.stdout.strip().splitlines()[-1])
    except (IndexError, ValueError):
        raise RuntimeError(f"loadgen failed ({out.returncode}): {out.stdout}\n{out.stderr}") from None
    if res["errors"] or not res["count"]:
        raise RuntimeError(f"loadgen against {url} had errors: {json.dumps(res)[:800]}")
    return res


def chat_request(port: int) -> bytes:
    return (f"POST {CHAT_PATH} HTTP/1.1\r\nhost: 127.0.0.1:{port}\r\ncontent-type: application/json\r\n"
            f"authorization: Bearer sk-bench\r\ncontent-length: {len(CHAT_BODY)}\r\n\r\n").encode() + CHAT_BODY


def try_request(port: int) -> int:
    """One connection, one chat request; the status code, or 0 if it could not be done."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            s.sendall(chat_request(port))
            data = b""
            while b"\r\n" not in data:
                chunk = s.recv(65536)
                if not chunk:
                    return 0
                data += chunk
            return int(data[9:12])
    except (OSError, ValueError):
        return 0


def cold_start(start: Callable[[], tuple[subprocess.Popen, int]], procs: Procs, timeout: float = 30) -> float:
    """Seconds from spawning the proxy to its first proxied 200, polling with connect+request."""
    t0 = time.perf_counter()
    proc, port = start()
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if try_request(port) == 200:
                return time.perf_counter() - t0
            if proc.poll() is not None:
                raise RuntimeError(f"process exited with {proc.returncode} during cold start")
            time.sleep(0.001)
        raise TimeoutError(f"no 200 within {timeout}s")
    finally:
        procs.stop(proc)


# --------------------------------------------------------------------------------------- the run


def emit(text: str, out: Path | None) -> None:
    """A benchmark's report: on stdout, and into ``out`` (its folders made) when given."""
    print(text)
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text + "\n")


def med(xs: list[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


def rotate(seq: tuple[str, ...], k: int) -> list[str]:
    k %= len(seq)
    return list(seq[k:] + seq[:k])


def bench(args: argparse.Namespace, p: dict[str, Any], tmp: Path, procs: Procs) -> dict[str, Any]:
    # Calibration first, while nothing of ours runs: what crossing cores costs on this machine.
    wakes = [wake_cost(p["wake_n"]) for _ in range(3)]
    wake = {k: med([w[k] for w in wakes]) for k in wakes[0]}
    log(f"calibration: TCP ping-pong RTT same core {wake['same_core_us']:.1f} µs, "
        f"across cores {wake['cross_core_us']:.1f} µs")
    st = Stack(procs, tmp)
    st.start_mock()
    st.start_gateway()
    st.start_nginx()
    log(f"mock :{st.mock_port} (pid {st.mock.pid}, core 1), gateway :{st.gw_port} (pid {st.gateway.pid}, core 0), "
        f"nginx :{st.ng_port} (master {st.nginx.pid}, workers {st.nginx_workers}, core 0)")
    raw: dict[str, Any] = {"profile": p, "wake": wake, "wake_runs": wakes, "runs": {k: {t: [] for t in TARGETS} for k in
                                                  ("wrk", "c1", "c16", "sse_ttfb", "sse_gaps")}}
    runs = raw["runs"]

    for t in TARGETS:  # warm up: upstream pools, caches, the allocator
        run_wrk(st.url(t), p["wrk_warm_s"])
    noise = Noise(p["quiet_budget_s"])

    def measured(t: str, fn: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        """Run one measurement against `t` after waiting (bounded) for quiet cores; note the noise."""
        noise.wait_quiet(p["quiet_wait_s"])
        pids = st.cpu_pids(t)  # direct: nothing of ours runs on core 0, so all of its use is others'
        snap = Noise.start(pids)
        r = fn()
        r["noise"] = Noise.stop(snap, pids)
        return r

    # a. CPU per request at saturation
    def wrk_run(t: str) -> dict[str, Any]:
        pids = st.cpu_pids(t)
        mock_before = cpu_ticks([st.mock.pid])
        before = cpu_ticks(pids)
        w = run_wrk(st.url(t), p["wrk_s"])
        time.sleep(0.2)  # let the proxy finish closing wrk's connections: part of the cost
        w["cpu_s"] = (cpu_ticks(pids) - before) / CLK_TCK
        w["cpu_us_per_req"] = w["cpu_s"] / w["requests"] * 1e6 if pids else None
        w["proxy_core_pct"] = round(100 * w["cpu_s"] / w["elapsed_s"], 1) if pids else None
        w["mock_us_per_req"] = (cpu_ticks([st.mock.pid]) - mock_before) / CLK_TCK / w["requests"] * 1e6
        if w["non2xx"] or w["socket_errors"]:
            raise RuntimeError(f"wrk against {t} had errors: {w}")
        return w

    for rep in range(p["reps"]):
        for t in rotate(TARGETS, rep):
            w = measured(t, lambda: wrk_run(t))
            runs["wrk"][t].append(w)
            cpu = f"{w['cpu_us_per_req']:.1f} µs/req" if w["cpu_us_per_req"] else "(no proxy)     "
            log(f"a rep{rep} {t:8s} {w['rps']:9.0f} req/s  {cpu}  {noise_note(w)}")

    # b. latency at 1 and 16 connections
    for rep in range(p["reps"]):
        for t in rotate(TARGETS, rep):
            for key, conns in (("c1", 1), ("c16", 16)):
                r = measured(t, lambda: run_loadgen(st.url(t), "-c", str(conns), "-d", str(p["lat_s"]),
                                                    "--warmup", str(p["lat_warm"])))
                runs[key][t].append(r)
                lat = r["latency_us"]
                log(f"b rep{rep} {t:8s} c={conns:<2d} p50 {lat['p50']:8.1f} µs  p99 {lat['p99']:8.1f} µs  "
                    f"({r['count']} req)  {noise_note(r)}")

    # c. SSE: TTFB, then inter-event gaps with 20 ms between events
    for rep in range(p["reps"]):
        for t in rotate(TARGETS, rep):
            r = measured(t, lambda: run_loadgen(st.url(t), "--sse", "-d", str(p["sse_s"]), "--warmup",
                                                str(p["sse_warm"]), "-H", "x-mock-chunks: 1",
                                                "-H", "x-mock-chunk-delay-ms: 2"))
            runs["sse_ttfb"][t].append(r)
            g = measured(t, lambda: run_loadgen(st.url(t), "--sse", "-n", str(p["gap_n"]), "--expect-gap-ms", "20",
                                                "-H", "x-mock-chunks: 5", "-H", "x-mock-chunk-delay-ms: 20"))
            runs["sse_gaps"][t].append(g)
            log(f"c rep{rep} {t:8s} TTFB p50 {r['ttfb_us']['p50']:8.1f} µs  gap max dev "
                f"{g['gap_max_dev_us'] / 1000:6.2f} ms  events/response {g['events_per_response']}  {noise_note(r)}")
    raw["quiet_wait_s"] = round(noise.waited, 1)

    # d. memory after all the load above
    raw["rss_mib"] = {"gateway": rss_mib(st.gateway.pid), "nginx": sum(rss_mib(w) for w in st.nginx_workers),
                      "mock": rss_mib(st.mock.pid)}
    log(f"d RSS gateway {raw['rss_mib']['gateway']:.1f} MiB, nginx worker {raw['rss_mib']['nginx']:.1f} MiB")

    if args.profile:
        raw["profile_top"] = profile_gateway(st, p, tmp)

    procs.stop(st.gateway)
    procs.stop(st.nginx)

    # e. cold start (the mock stays up: the first request opens the upstream connection)
    def spawn_gateway() -> tuple[subprocess.Popen, int]:
        port = free_port()
        cfg = write_gateway_config(tmp, st.mock_port, port)
        return procs.start("gateway-cold", pinned(PROXY_CPU, [*fastgw_cmd(), "serve", "--config", str(cfg)]),
                           tmp / f"gateway-cold-{port}.log"), port

    def spawn_nginx() -> tuple[subprocess.Popen, int]:
        port = free_port()
        conf, prefix = write_nginx_conf(tmp, port, mock_port=st.mock_port)
        return procs.start("nginx-cold", pinned(PROXY_CPU, nginx_cmd(conf, prefix)), tmp / f"nginx-cold-{port}.out"), port

    raw["cold_s"] = {"gateway": [], "nginx": []}
    for i in range(p["starts"]):
        for t, spawn in (("gateway", spawn_gateway), ("nginx", spawn_nginx)):
            s = cold_start(spawn, procs)
            raw["cold_s"][t].append(s)
            log(f"e start{i} {t:8s} {s * 1000:7.1f} ms to first 200")
    return raw


ECHO_SERVER = """
import socket, sys
srv = socket.socket(); srv.bind(("127.0.0.1", 0)); srv.listen(1)
print(srv.getsockname()[1], flush=True)
c, _ = srv.accept(); c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
while (d := c.recv(64)):
    c.sendall(d)
"""


def wake_cost(n: int = 3000) -> dict[str, float]:
    """Median round trip of a 1-byte TCP ping-pong from core 1 to an echo process on core 1 vs on core 0.

    Direct-to-mock requests never leave core 1; every request through a proxy crosses cores twice
    each way (client -> proxy -> mock -> proxy -> client), waking an idle core each time. The
    difference of these two medians is what one such round trip costs on this (virtual) machine.
    """
    out = {}
    for cpu in (CLIENT_CPU, PROXY_CPU):
        echo = subprocess.Popen(pinned(cpu, [PY, "-c", ECHO_SERVER]), stdout=subprocess.PIPE, text=True)
        try:
            port = int(echo.stdout.readline())
            with socket.create_connection(("127.0.0.1", port)) as s:
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                rtts = []
                for i in range(n + 200):
                    t0 = time.perf_counter_ns()
                    s.sendall(b"x")
                    s.recv(64)
                    if i >= 200:
                        rtts.append(time.perf_counter_ns() - t0)
                    if i % 50 == 0:
                        time.sleep(0.0005)  # let the other core go idle now and then, as between requests
            out["same_core_us" if cpu == CLIENT_CPU else "cross_core_us"] = statistics.median(rtts) / 1e3
        finally:
            echo.kill()
            echo.wait()
    out["cross_minus_same_us"] = out["cross_core_us"] - out["same_core_us"]
    return out


def noise_note(r: dict[str, Any]) -> str:
    n = r.get("noise", {})
    return f"[others: core0 {n.get('core0_foreign_pct', 0):.0f}%, core1 busy {n.get('core1_busy_pct', 0):.0f}%]"


def profile_gateway(st: Stack, p: dict[str, Any], tmp: Path) -> dict[str, Any]:
    """py-spy (on core 1, non-blocking) over the gateway while wrk saturates it; top frames."""
    spy = shutil.which("py-spy") or str(Path(PY).with_name("py-spy"))
    if not Path(spy).exists():
        log("py-spy not installed (pip install py-spy): no profile")
        return {}
    secs = max(2, p["wrk_s"])
    out = HERE / "results" / "raw" / "gateway-profile.txt"
    out.parent.mkdir(parents=True, exist_ok=True)
    spy_proc = subprocess.Popen(pinned(CLIENT_CPU, [spy, "record", "-p", str(st.gateway.pid), "-d", str(secs), "-r", "200",
                                                    "--nonblocking", "-f", "raw", "-o", str(out)]),
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(0.5)
        run_wrk(st.url("gateway"), secs + 1)
        spy_proc.wait(timeout=60)
    finally:
        if spy_proc.poll() is None:
            spy_proc.kill()
            spy_proc.wait()
    if not out.exists():
        return {}
    self_fn: dict[str, int] = {}
    self_line: dict[str, int] = {}
    incl: dict[str, int] = {}
    total = 0
    for line in out.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        if not n.isdigit():
            continue
        count = int(n)
        total += count
        frames = [f for f in stack.split(";") if f]
        if not frames:
            frames = ["(no Python frame: in C, e.g. uvloop/epoll/syscalls)"]
        self_line[frames[-1]] = self_line.get(frames[-1], 0) + count
        fns = [re.sub(r":\d+\)$", ")", f) for f in frames]
        self_fn[fns[-1]] = self_fn.get(fns[-1], 0) + count
        for f in set(fns):
            incl[f] = incl.get(f, 0) + count
    top = lambda d, n: [(f, round(100 * c / max(1, total), 1)) for f, c in sorted(d.items(), key=lambda kv: -kv[1])[:n]]
    log(f"profile: {total} samples -> {out}")
    return {"samples": total, "file": str(out.relative_to(ROOT)), "self": top(self_fn, 15),
            "self_lines": top(self_line, 10), "inclusive": top(incl, 20)}


# --------------------------------------------------------------------------------------- report


def summarize(raw: dict[str, Any]) -> list[dict[str, Any]]:
    runs = raw["runs"]
    reps = len(runs["wrk"]["gateway"])

    def per_run(kind: str, f: Callable[[dict], float | None]) -> dict[str, list[float]]:
        return {t: [v for r in runs[kind][t] if (v := f(r)) is not None] for t in TARGETS}

    def paired(vals: dict[str, list[float]], a: str, b: str) -> list[float]:
        return [x - y for x, y in zip(vals[a], vals[b])]

    rows = []

    def row(key: str | None, name: str, unit: str, vals: dict[str, list[float]], fmt: str, *,
            added: bool = True, ratio: bool = False) -> None:
        r = {"key": key, "name": name, "unit": unit, "fmt": fmt, "runs": vals,
             "median": {t: med(v) for t, v in vals.items() if v}}
        if added and vals.get("direct"):
            if ratio:
                r["gw_added"] = med([g / d for g, d in zip(vals["gateway"], vals["direct"])])
                r["ng_added"] = med([n / d for n, d in zip(vals["nginx"], vals["direct"])])
            else:
                r["gw_added"] = med(paired(vals, "gateway", "direct"))
                r["ng_added"] = med(paired(vals, "nginx", "direct"))
        if vals.get("nginx"):
            r["gw_vs_ng"] = (med([g / n for g, n in zip(vals["gateway"], vals["nginx"])]) if ratio or not added
                             else med(paired(vals, "gateway", "nginx")))
        r["ratio"] = ratio or not added
        r["added_is_ratio"] = ratio
        rows.append(r)

    ms = lambda r, k, pc: r[k][pc] / 1000
    row("cpu_us", "CPU per request @64 conn (wrk, saturation)", "µs",
        per_run("wrk", lambda r: r["cpu_us_per_req"]), "{:.1f}", added=False)
    row(None, "Throughput @64 conn (wrk)", "req/s", per_run("wrk", lambda r: r["rps"]), "{:,.0f}", ratio=True)
    row(None, "Proxy CPU use during the wrk run", "% of core 0",
        per_run("wrk", lambda r: r["proxy_core_pct"]), "{:.0f}", added=False)
    row("lat_p50_c1", "Latency p50 @1 conn", "ms", per_run("c1", lambda r: ms(r, "latency_us", "p50")), "{:.3f}")
    row(None, "Latency p99 @1 conn", "ms", per_run("c1", lambda r: ms(r, "latency_us", "p99")), "{:.3f}")
    row(None, "Latency p50 @16 conn", "ms", per_run("c16", lambda r: ms(r, "latency_us", "p50")), "{:.3f}")
    row("lat_p99_c16", "Latency p99 @16 conn", "ms", per_run("c16", lambda r: ms(r, "latency_us", "p99")), "{:.3f}")
    row("sse_ttfb_p50", "SSE time to first byte p50 @1 conn", "ms",
        per_run("sse_ttfb", lambda r: ms(r, "ttfb_us", "p50")), "{:.3f}")
    row(None, "SSE time to first byte p99 @1 conn", "ms",
        per_run("sse_ttfb", lambda r: ms(r, "ttfb_us", "p99")), "{:.3f}")
    row("sse_gap_dev", "SSE inter-event gap, max deviation from 20 ms", "ms",
        per_run("sse_gaps", lambda r: r["gap_max_dev_us"] / 1000), "{:.2f}")
    rss = raw["rss_mib"]
    rows.append({"key": "rss_mib", "name": "RSS per worker after load (VmRSS)", "unit": "MiB", "fmt": "{:.1f}",
                 "runs": {"gateway": [rss["gateway"]], "nginx": [rss["nginx"]]},
                 "median": {"gateway": rss["gateway"], "nginx": rss["nginx"]},
                 "gw_vs_ng": rss["gateway"] / rss["nginx"], "ratio": True})
    cold = raw["cold_s"]
    rows.append({"key": "cold_s", "name": "Cold start to first proxied 200", "unit": "s", "fmt": "{:.3f}",
                 "runs": cold, "median": {t: med(v) for t, v in cold.items()},
                 "gw_vs_ng": med(cold["gateway"]) / med(cold["nginx"]), "ratio": True})
    for r in rows:
        r["reps"] = reps
        if r["key"] in BARS:
            limit, applies = BARS[r["key"]]
            value = r["gw_added"] if applies == "added" else r["median"]["gateway"]
            r["bar"] = (limit, applies)
            r["pass"] = value <= limit
    return rows


def context_note(raw: dict[str, Any], rows: list[dict[str, Any]]) -> str:
    """How much of the added latency at 1 connection is the machine rather than any proxy."""
    w = raw["wake"]
    rt = w["cross_minus_same_us"]
    p50 = next(r for r in rows if r["key"] == "lat_p50_c1")
    ng, gw = p50["ng_added"] * 1000, p50["gw_added"] * 1000
    return (f"Machine floor: a 1-byte TCP ping-pong across cores takes {w['cross_core_us']:.0f} µs against "
            f"{w['same_core_us']:.0f} µs within core 1 (median of 3 × {raw['profile']['wake_n']}): one cross-core "
            f"round trip costs ≈{rt:.0f} µs here, mostly the VM waking an idle vCPU. Direct requests never leave "
            "core 1; a proxied request crosses cores four times (client→proxy→mock→proxy→client). So nginx, "
            f"which spends ~{next(r for r in rows if r['key'] == 'cpu_us')['median']['nginx']:.0f} µs of CPU per "
            f"request, still adds {ng:.0f} µs at p50: that is the floor any proxy pays on this machine, and "
            f"gateway − nginx ({gw - ng:+.0f} µs) is the gateway's own share beyond a minimal C proxy.")


def render_table(rows: list[dict[str, Any]]) -> str:
    def cell(r: dict, t: str) -> str:
        v = r["median"].get(t)
        return "—" if v is None else r["fmt"].format(v)

    def signed(r: dict, v: float | None, ratio: bool) -> str:
        if v is None:
            return "—"
        if ratio:
            return f"×{v:.2f}"
        return ("+" if v >= 0 else "−") + r["fmt"].format(abs(v)).replace(",", "")

    lines = ["| figure | gateway | nginx | direct | gateway added vs direct | bar | verdict | nginx added vs direct "
             "| gateway vs nginx |",
             "|---|---:|---:|---:|---:|---|---|---:|---:|"]
    for r in rows:
        unit = r["unit"]
        ratio_added = r.get("added_is_ratio", False)
        if r["key"] == "cpu_us":  # direct has no proxy: all of the gateway's CPU is added
            added = "+" + r["fmt"].format(r["median"]["gateway"])
            ng_added = "+" + r["fmt"].format(r["median"]["nginx"])
        else:
            added = signed(r, r.get("gw_added"), ratio_added)
            ng_added = signed(r, r.get("ng_added"), ratio_added)
        vs_ng = signed(r, r.get("gw_vs_ng"), r["ratio"])
        if "bar" in r:
            limit, applies = r["bar"]
            bar = f"{'added ' if applies == 'added' else ''}≤ {limit:g} {unit}"
            verdict = "**PASS**" if r["pass"] else "**MISS**"
        else:
            bar = verdict = ""
        lines.append(f"| {r['name']} ({unit}) | {cell(r, 'gateway')} | {cell(r, 'nginx')} | {cell(r, 'direct')} "
                     f"| {added} | {bar} | {verdict} | {ng_added} | {vs_ng} |")
    return "\n".join(lines)


def render_details(rows: list[dict[str, Any]], raw: dict[str, Any]) -> str:
    out = ["| figure | target | per-run values | median | min – max |", "|---|---|---|---:|---:|"]
    for r in rows:
        for t in TARGETS:
            v = r["runs"].get(t)
            if not v:
                continue
            f = r["fmt"]
            out.append(f"| {r['name']} ({r['unit']}) | {t} | {', '.join(f.format(x) for x in v)} "
                       f"| {f.format(med(v))} | {f.format(min(v))} – {f.format(max(v))} |")
    out += ["", "Noise: what ran besides us during each measurement (median over runs / worst run). Core 0 "
                "\"others\" = core 0 busy minus the proxy's own CPU; core 1 = mock + load generator + others. "
                f"Waited {raw.get('quiet_wait_s', 0)} s in total for quiet cores before measurements.", "",
            "| phase | target | proxy CPU (% of core 0) | others on core 0 | core 1 busy | steal (worst) |",
            "|---|---|---:|---:|---:|---:|"]
    names = {"wrk": "a wrk -c64", "c1": "b latency c=1", "c16": "b latency c=16", "sse_ttfb": "c SSE TTFB",
             "sse_gaps": "c SSE gaps"}
    for phase, title in names.items():
        for t in TARGETS:
            ns = [r["noise"] for r in raw["runs"][phase][t] if "noise" in r]
            if not ns:
                continue
            pick = lambda k: [n[k] for n in ns]
            out.append(f"| {title} | {t} | {med(pick('proxy_pct')):.0f}% | {med(pick('core0_foreign_pct')):.0f}% / "
                       f"{max(pick('core0_foreign_pct')):.0f}% | {med(pick('core1_busy_pct')):.0f}% / "
                       f"{max(pick('core1_busy_pct')):.0f}% | {max(pick('steal_pct')):.1f}% |")
    wrk = raw["runs"]["wrk"]
    out += ["", "Mock CPU per request during the wrk runs (µs, median): "
            + ", ".join(f"{t} {med([w['mock_us_per_req'] for w in wrk[t]]):.1f}" for t in TARGETS)]
    gaps = raw["runs"]["sse_gaps"]
    out += ["", "SSE gap check (x-mock-chunks: 5, x-mock-chunk-delay-ms: 20; 8 events, 7 gaps per response):", "",
            "| target | events per response | worst deviation over all runs | median |deviation| | gap range |",
            "|---|---|---:|---:|---:|"]
    for t in TARGETS:
        allg = [g for r in gaps[t] for g in r.get("gaps_raw_us", [])]
        evs = sorted({e for r in gaps[t] for e in r["events_per_response"]})
        worst = max(r["gap_max_dev_us"] for r in gaps[t]) / 1000
        mdev = med([abs(g - 20000) for g in allg]) / 1000 if allg else float("nan")
        rng = f"{min(allg) / 1000:.2f} – {max(allg) / 1000:.2f} ms" if allg else "—"
        out.append(f"| {t} | {evs} | {worst:.2f} ms | {mdev:.2f} ms | {rng} |")
    return "\n".join(out)


def render_profile(prof: dict[str, Any]) -> str:
    if not prof:
        return ""
    lines = [f"## Profile of the gateway at saturation (py-spy, {prof['samples']} samples, `{prof['file']}`)", "",
             "py-spy --nonblocking at 200 Hz while `wrk -c64` saturates the gateway; Python frames only "
             "(time inside uvloop/httptools/the kernel is charged to the Python frame that called it, or shows "
             "as an empty stack). Coroutine stacks start at the task, not at the event loop.", "",
             "| self % (by function) | function |", "|---:|---|"]
    lines += [f"| {pct} | `{f}` |" for f, pct in prof["self"]]
    lines += ["", "| self % (by line) | line |", "|---:|---|"]
    lines += [f"| {pct} | `{f}` |" for f, pct in prof.get("self_lines", [])]
    lines += ["", "| inclusive % | function |", "|---:|---|"]
    lines += [f"| {pct} | `{f}` |" for f, pct in prof["inclusive"]]
    return "\n".join(lines) + "\n"


def run_micro(timeout: float = 300) -> str:
    micro = sorted((HERE / "micro").glob("bench_*.py"))
    if not micro:
        return "No micro-benchmarks found in benchmarks/micro/.\n"
    parts = []
    for path in micro:
        log(f"micro: {path.name} (core 0)")
        try:
            out = subprocess.run(pinned(PROXY_CPU, [PY, str(path)]), capture_output=True, text=True,
                                 timeout=timeout, cwd=ROOT)
            text = out.stdout + (f"\n[stderr]\n{out.stderr}" if out.returncode else "")
            status = f"exit {out.returncode}"
        except subprocess.TimeoutExpired:
            text, status = "", f"timed out after {timeout:.0f}s"
        parts.append(f"### {path.relative_to(ROOT)} ({status})\n\n```\n{text.rstrip()}\n```\n")
    return "\n".join(parts)


def sh(cmd: list[str]) -> str:
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=20)
        return (out.stdout + out.stderr).strip()
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"unavailable ({exc})"


def git_state() -> str:
    head = sh(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"])
    dirty = [l for l in sh(["git", "-C", str(ROOT), "status", "--porcelain", "--", "src"]).splitlines() if l.strip()]
    return f"git {head}" + (f" + uncommitted changes in {len(dirty)} file(s) under src/" if dirty else " (clean src/)")


def machine_facts() -> dict[str, str]:
    cpuinfo = Path("/proc/cpuinfo").read_text()

    def cpu_field(name: str) -> str:
        m = re.search(rf"^{name}\s*:\s*(.*)$", cpuinfo, re.M)
        return m.group(1).strip() if m else "?"

    def ver(dist: str) -> str:
        try:
            return md.version(dist)
        except md.PackageNotFoundError:
            return "not installed"

    mem = re.search(r"MemTotal:\s+(\d+)", Path("/proc/meminfo").read_text())
    return {
        "nproc": sh(["nproc", "--all"]),
        "CPU model": cpu_field("model name"),
        "CPU MHz (as reported)": cpu_field("cpu MHz"),
        "cache size": cpu_field("cache size"),
        "virtualised": "yes (hypervisor flag)" if " hypervisor" in cpu_field("flags") else "no hypervisor flag",
        "memory": f"{int(mem.group(1)) / 1024 / 1024:.1f} GiB" if mem else "?",
        "kernel": f"{platform.release()} ({platform.version()})",
        "python": f"{platform.python_version()} ({platform.python_implementation()}, {PY})",
        "fastgw": sh([*fastgw_cmd(), "--version"]),
        "fastgw source": git_state(),
        "uvloop": ver("uvloop"),
        "httptools": ver("httptools"),
        "orjson": ver("orjson"),
        "nginx": sh(["nginx", "-v"]),
        "wrk": sh(["wrk", "-v"]).splitlines()[0] if shutil.which("wrk") else "not installed",
        "locust": ver("locust"),
        "py-spy": ver("py-spy"),
        "load average at start": Path("/proc/loadavg").read_text().strip(),
    }


def write_reports(args: argparse.Namespace, raw: dict[str, Any], rows: list[dict[str, Any]],
                  facts: dict[str, str], micro: str | None, started: float) -> None:
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    command = ".venv/bin/python benchmarks/run_bench.py" + "".join(f" {shlex.quote(a)}" for a in sys.argv[1:])
    when = _dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    p = raw["profile"]
    table = render_table(rows)
    misses = [r["name"] for r in rows if r.get("pass") is False]
    verdict = ("All figures meet their bars." if not misses else
               "Figures that MISS their bar: " + "; ".join(misses) + ".")
    body = [
        f"# fastgw {facts['fastgw'].split()[1] if facts['fastgw'].startswith('fastgw') else ''} benchmark results",
        "",
        f"Measured {when} with `{command}` in {time.time() - started:.0f} s "
        f"({'quick smoke-test settings — not for comparison' if args.quick else 'full settings'}). "
        f"Machine: {facts['nproc']} × {facts['CPU model']}, kernel {platform.release()}, "
        f"Python {platform.python_version()}; details in [machine.md](machine.md).",
        "",
        f"Proxy under test on core 0; mock + load generators on core 1. {p['reps']} runs per figure, "
        "targets interleaved; medians. \"Added\" = median over runs of the paired difference (proxy − direct) "
        "within a run, so it can differ slightly from the difference of the medians shown. "
        "Ratios (×) are gateway/direct or gateway/nginx.",
        "",
        table,
        "",
        verdict,
        "",
        context_note(raw, rows),
        "",
        "## Settings",
        "",
        f"- a: `wrk -t1 -c64 -d{p['wrk_s']}s -s benchmarks/wrk_chat.lua` (after a {p['wrk_warm_s']} s warm-up per "
        "target); CPU = Δ(utime+stime) of the gateway process / nginx worker, read from /proc/PID/stat "
        f"(clock tick {1000 / CLK_TCK:g} ms) 0.2 s after wrk exits, divided by requests completed.",
        f"- b: `loadgen.py -c 1|16 -d {p['lat_s']} --warmup {p['lat_warm']}` (closed loop, keep-alive, "
        "non-streamed chat completion).",
        f"- c: TTFB: `loadgen.py --sse -d {p['sse_s']} --warmup {p['sse_warm']}` with x-mock-chunks: 1, "
        f"x-mock-chunk-delay-ms: 2 (the first event leaves the mock alone). Gaps: `loadgen.py --sse -n {p['gap_n']}` "
        "with x-mock-chunks: 5, x-mock-chunk-delay-ms: 20; the figure is the max |gap − 20 ms| of a run.",
        "- d: VmRSS from /proc/PID/status after a–c (nginx: its worker).",
        f"- e: {p['starts']} starts each; time from spawning the process to the first 200 of a client "
        "looping connect + chat request (1 ms between attempts).",
        "",
        "## Per-run details",
        "",
        render_details(rows, raw),
        "",
    ]
    if raw.get("profile_top"):
        body.append(render_profile(raw["profile_top"]))
    if micro is not None:
        body += ["## Micro-benchmarks (benchmarks/micro, pinned to core 0)", "", micro]
    out.write_text("\n".join(body))
    (out.parent / "machine.md").write_text(
        "# Machine\n\n" + f"Recorded {when} by `{command}`.\n\n| fact | value |\n|---|---|\n"
        + "\n".join(f"| {k} | {v.replace('|', '/')} |" for k, v in facts.items()) + "\n")
    rawdir = HERE / "results" / "raw"
    rawdir.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    (rawdir / f"run-{stamp}.json").write_text(json.dumps({"command": command, "facts": facts, "raw": raw,
                                                          "rows": rows}, indent=1, default=str))
    log(f"wrote {out}, {out.parent / 'machine.md'} and {rawdir / f'run-{stamp}.json'}")
    print(table)
    print()
    print(verdict)


def main(argv: list[str] | None = None) -> int:
    try:
        from fastgw import __version__
    except ImportError:
        __version__ = "unknown"
    ap = argparse.ArgumentParser(description="fastgw vs nginx vs direct, one run (see the module docstring)")
    ap.add_argument("--quick", action="store_true", help="short smoke-test settings (under a minute)")
    ap.add_argument("--out", default=str(HERE / "results" / __version__ / "results.md"))
    ap.add_argument("--micro", action="store_true", help="also run benchmarks/micro/bench_*.py and include them")
    ap.add_argument("--profile", action="store_true", help="also py-spy the gateway at saturation")
    ap.add_argument("--reps", type=int, help="override the number of runs per figure")
    args = ap.parse_args(argv)

    if len(os.sched_getaffinity(0) | {0, 1}) < 2 or os.cpu_count() < 2:
        print("needs at least 2 CPUs (0 and 1)", file=sys.stderr)
        return 2
    if why := missing_tools("nginx", "wrk", "taskset"):
        print(why, file=sys.stderr)
        return 2
    p = dict(PROFILES["quick" if args.quick else "full"])
    if args.reps:
        p["reps"] = args.reps
    started = time.time()
    facts = machine_facts()
    os.sched_setaffinity(0, {int(CLIENT_CPU)})  # this script is a client too: keep it off the proxy core
    procs = Procs()

    def on_term(signum: int, frame: object) -> None:
        raise SystemExit(f"terminated by signal {signum}")

    signal.signal(signal.SIGTERM, on_term)
    with tempfile.TemporaryDirectory(prefix="fastgw-bench-") as tmpdir:
        tmp = Path(tmpdir)
        os.chmod(tmp, 0o755)
        try:
            raw = bench(args, p, tmp, procs)
        except BaseException:
            for name in ("gateway.log", "nginx.out", "mock.log"):
                f = tmp / name
                if f.exists() and f.stat().st_size:
                    log(f"--- {name} (tail)\n{f.read_text(errors='replace')[-2000:]}")
            raise
        finally:
            procs.stop_all()
    micro = run_micro() if args.micro else None
    rows = summarize(raw)
    write_reports(args, raw, rows, facts, micro, started)
    return 0


if __name__ == "__main__":
    sys.exit(main())
