#!/usr/bin/env python3
"""Request logging benchmarks: the rings into chDB, and the gateway with logging on, off, and
with its sink down, in one run.

  .venv/bin/python benchmarks/bench_logging.py [--quick] [--out benchmarks/results/<version>/logging.md]

Layout (2 cores), as the issue asks: the gateway's worker on core 0, its exporter on core 1 (moved
there with sched_setaffinity after start); the provider stand-in and the load generators on core 1
too. In B the stand-in is nginx replaying the mock's answer (``--upstream mock`` for the mock).

A. Rings -> chDB. The real exporter (``run_exporter``, the code ``fastgw serve`` runs) on core 1;
   this script on core 0 plays two workers, pushing records shaped like a worker's (1 KB of
   request + response bodies, a quarter of them streams with a hidden usage chunk; see
   log_records.py) into two rings at a paced offered rate, each record with a fresh request id.
   Per rate: a lead-in at the offered rate (the exporter's pipeline fills), then the counted
   window: records exported per second (the exporter's committed counter), the backlog (pushed,
   not yet committed) and its trend over the window (flat when the exporter keeps up), the most
   the rings held, and whether anything spilled (a ring that keeps up never spills).
   After the last rate the exporter is stopped with SIGTERM and the rows are counted in chDB:
   the count and the distinct ids must equal what was pushed.
B. Gateway, logging off vs on (chDB sink) vs on with the sink down (a ClickHouse URL on a closed
   port: the exporter backs off, rings fill and spill to disk) vs on without the exporter's idle
   cgroup (in a session of its own, as before ``logging.exporter_idle_cgroup``), interleaved per
   repetition:
   closed-loop latency at 1 and 16 connections (loadgen.py), open-loop latency at fixed rates
   (OPEN_RATES, ``loadgen.py --rate``), and CPU per request of the worker at saturation (wrk),
   with the exporter's CPU per record alongside. Requests carry 1 KB of bodies. After the
   saturation runs, each repetition waits until every exporter is idle again (its backlog
   exported), so no latency run of the next one shares core 1 with a catching-up exporter.
   Then the exporter's RSS. Two controls follow, same latency runs: "off + busy core 1" (logging
   off, with a busy loop on core 1 where the exporter would run, under SCHED_IDLE like the
   exporter: what any work there costs the mock's and the client's latency) and "on, exporter stopped" (the exporter SIGSTOPped,
   so the worker's side of logging alone: records built and pushed, rings filling, spilling).
C. Exporter CPU per record (--only exporter-cpu): the rings are filled first, then this process,
   pinned to core 1 (or to --exporter-cpus; on two, the exporter overlaps batches), drains them
   with the exporter's own loop (Exporter.advance) into chDB, counting CPU time of all its threads;
   then sink.write alone on rows enriched beforehand. CPU time, not a paced rate: on a shared
   machine it is the steadier figure, and 1e6 / µs is the most one core can export.

Medians over repetitions. Every process started here is stopped here, by PID.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "src"))

import replay_upstream  # noqa: E402
import run_bench as rb  # noqa: E402
from log_records import make_records  # noqa: E402

from fastgw.config import LoggingConfig  # noqa: E402
from fastgw.requestlog import idle_cgroup  # noqa: E402
from fastgw.requestlog.buffer import RecordBuffer  # noqa: E402

PROMPT = "Summarise the following text in two sentences. " * 10  # ~480 bytes
BODY_1K = '{"model":"gpt-4o-mini","messages":[{"role":"user","content":"%s"}]}' % PROMPT.strip()
MOCK_HEADERS = ["x-mock-chunks: 1", "x-mock-chunk-bytes: 420"]  # a ~1 KB answer with its JSON
WRK_LUA = HERE / "wrk_chat_1k.lua"

PROFILES = {
    "full": dict(rates=(50_000, 65_000, 80_000), window_s=10.0, lead_s=3.0, reps=5, lat_s=2.5, lat_warm=0.3, wrk_s=5,
                 cpu_records=100_000),
    "quick": dict(rates=(20_000,), window_s=3.0, lead_s=1.0, reps=1, lat_s=0.7, lat_warm=0.1, wrk_s=1, cpu_records=20_000),
}
# "nocg": logging on, the exporter without its cpu.idle cgroup (logging.exporter_idle_cgroup: false:
# SCHED_IDLE in a session of its own, the placement before), for the comparison in the same run. Where
# this machine lets no process make a cgroup, "on" is the same placement (the log says which).
TARGETS = ("off", "on", "down", "nocg")
# Open-loop rates (requests/s due, over 32 connections): latency at a load the gateway carries with
# room to spare, logging on or off, where closed-loop 16 connections saturate the one worker (its
# latency there is queueing behind the worker's CPU per request, see the wrk figures).
OPEN_RATES = (2000, 6000)
OPEN_CONNS = 32
CONTROLS = ("off + busy core 1", "on, exporter stopped")


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def med(xs: list[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


def start_time(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19])


def is_exporter(pid: int) -> bool:
    """By its name (a restarted exporter starts after the workers); an older fastgw, unnamed,
    started it first."""
    return Path(f"/proc/{pid}/comm").read_text().strip() == "fastgw-exporter"


# ------------------------------------------------------------------------------ A. rings -> chDB


EXPORTER_MAIN = """
import os
import sys
from fastgw import config
from fastgw.requestlog.exporter import run_exporter
from fastgw.requestlog.paths import LogPaths
cfg = config.load(sys.argv[1])
run_exporter(cfg, LogPaths.for_config(cfg), 2, os.getppid())  # this script: its supervisor, as `fastgw serve` is
"""


class Renumbered:
    """Templates whose request id is replaced per push, so every record is a distinct row."""

    def __init__(self, records: list[bytes]) -> None:
        import uuid

        from fastgw.requestlog.record import decode_record

        self.parts = []
        for raw in records:
            rid = decode_record(raw)["request_id"]
            uuid.UUID(rid)
            at = raw.index(rid.encode())  # the id's bytes, in a packed record as in a JSON one
            self.parts.append((raw[:at], raw[at + 36:]))
        self.n = 0

    def next(self) -> bytes:
        head, tail = self.parts[self.n % len(self.parts)]
        h = f"{self.n:032x}"
        self.n += 1
        return b"".join((head, f"{h[:8]}-{h[8:12]}-4{h[13:16]}-8{h[17:20]}-{h[20:]}".encode(), tail))


# The rings live where fastgw puts them by default (paths.py): in /dev/shm, memory only. A ring in a
# file on disk would also pay for the kernel writing its dirty pages back, which fastgw never does.
RINGS_ROOT: Path | None = None


def rings_dir(tmp: Path) -> Path:
    assert RINGS_ROOT is not None
    path = RINGS_ROOT / str(tmp).strip("/").replace("/", "_")
    path.mkdir(parents=True, exist_ok=True)
    return path


def exporter_ticks(pid: int) -> int:
    """CPU ticks of the exporter and its prepare helpers (logging.exporter_helpers), which are its
    children. A helper that exits takes its ticks with it: none do while a window runs."""
    return rb.cpu_ticks([pid, *rb.children(pid)])


class Paced:
    """Pushes ``rate`` records a second into the rings, alternately, in 5 ms ticks."""

    TICK = 0.005

    def __init__(self, bufs: list[RecordBuffer], gen: Renumbered, rate: int) -> None:
        self.bufs, self.gen, self.rate = bufs, gen, rate
        self.pushed, self.max_used, self.owed = 0, 0, 0.0
        self.started = time.monotonic()
        self.exported0 = sum(b.exported for b in bufs)  # rings empty: the exporter had caught up

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def run(self, seconds: float, sample: Any = None, every: float = 0.1) -> None:
        t0 = time.monotonic()
        next_t, next_sample = t0, t0
        while (now := time.monotonic()) < t0 + seconds:
            if now < next_t:
                time.sleep(next_t - now)
            next_t += self.TICK
            self.owed += self.rate * self.TICK
            while self.owed >= 1:
                self.bufs[self.gen.n % 2].push(self.gen.next())
                self.owed -= 1
                self.pushed += 1
            self.max_used = max(self.max_used, sum(b.ring.used for b in self.bufs))
            if sample is not None and now >= next_sample:
                sample(now)
                next_sample += every


def slope(points: list[tuple[float, int]]) -> float:
    """Least-squares slope of (t, n): the backlog's growth in records a second (0: flat)."""
    if len(points) < 2:
        return 0.0
    mt = statistics.fmean(t for t, _ in points)
    mn = statistics.fmean(n for _, n in points)
    var = sum((t - mt) ** 2 for t, _ in points)
    return sum((t - mt) * (n - mn) for t, n in points) / var if var else 0.0


def rings_to_chdb(p: dict[str, Any], tmp: Path, procs: rb.Procs) -> dict[str, Any]:
    if p["exporter_cpus"] == "1":
        os.sched_setaffinity(0, {0})
    data = tmp / "chdb"
    cfg = tmp / "exporter.yaml"
    cfg.write_text(f"logging: {{sink: 'chdb://{data}', run_dir: '{rings_dir(tmp)}', spill_dir: '{tmp / 'spill'}', "
                   f"ring_size: {p['ring_size']}, exporter_helpers: {p['exporter_helpers']}}}\n")
    bufs = [RecordBuffer(str(rings_dir(tmp) / f"ring-{w}.shm"), str(tmp / "spill" / f"worker-{w}"), p["ring_size"])
            for w in range(2)]
    exporter = procs.start("exporter", rb.pinned(p["exporter_cpus"], [rb.PY, "-c", EXPORTER_MAIN, str(cfg)]),
                           tmp / "exporter.log")
    gen = Renumbered(make_records(2000, body_bytes=p["body_bytes"]))
    avg_bytes = statistics.mean(len(gen.next()) for _ in range(2000))
    gen.n = 0
    # Warm up: the sink opens (schema, first part) before anything is timed.
    for _ in range(2000):
        bufs[gen.n % 2].push(gen.next())
    deadline = time.monotonic() + 60
    while sum(b.exported for b in bufs) < gen.n:
        if time.monotonic() > deadline or exporter.poll() is not None:
            raise RuntimeError(f"exporter did not start: {(tmp / 'exporter.log').read_text()[-2000:]}")
        time.sleep(0.05)
    out: dict[str, Any] = {"record_bytes": avg_bytes, "body_bytes": p["body_bytes"], "rates": []}
    for rate in p["rates"]:
        spilled0 = sum(b.spilled for b in bufs)
        pace = Paced(bufs, gen, rate)
        # The lead-in fills the exporter's pipeline (a batch gathering, one being prepared, one being
        # written: 10,000-15,000 records) before anything is counted. Counted from empty rings, that
        # fill reads as a shortfall: about 1,000 records/s over a 10 s window at any rate.
        pace.run(p["lead_s"])
        exported0 = sum(b.exported for b in bufs)
        pushed0 = pace.pushed
        cpu0 = exporter_ticks(exporter.pid)
        t0 = time.monotonic()
        backlog: list[tuple[float, int]] = []  # (seconds, records pushed and not yet committed)

        def sample(now: float) -> None:
            backlog.append((now - t0, gen.n - sum(b.exported for b in bufs)))

        pace.run(p["window_s"], sample)
        elapsed = time.monotonic() - t0
        exported = sum(b.exported for b in bufs) - exported0
        cpu_s = (exporter_ticks(exporter.pid) - cpu0) / rb.CLK_TCK
        counts = [n for _, n in backlog]
        r = {"offered": rate, "pushed_per_s": (pace.pushed - pushed0) / elapsed, "exported_per_s": exported / elapsed,
             "from_empty_per_s": (sum(b.exported for b in bufs) - pace.exported0) / pace.elapsed,
             "backlog_start": counts[0], "backlog_end": counts[-1], "backlog_max": max(counts),
             "backlog_trend_per_s": slope(backlog),
             "max_ring_mib": pace.max_used / 2**20, "spilled": sum(b.spilled for b in bufs) - spilled0,
             "exporter_cpu_us_per_record": cpu_s / max(exported, 1) * 1e6, "exporter_core_pct": 100 * cpu_s / elapsed,
             "exporter_rss_mib": rb.rss_mib(exporter.pid)}
        out["rates"].append(r)
        log(f"A offered {rate}/s: pushed {r['pushed_per_s']:.0f}/s exported {r['exported_per_s']:.0f}/s "
            f"({r['from_empty_per_s']:.0f}/s counted from empty rings), backlog {r['backlog_start']} -> "
            f"{r['backlog_end']} (max {r['backlog_max']}, trend {r['backlog_trend_per_s']:+.0f}/s), rings max "
            f"{r['max_ring_mib']:.1f} MiB, spilled {r['spilled']}, exporter {r['exporter_cpu_us_per_record']:.1f} "
            f"µs/record ({r['exporter_core_pct']:.0f}% of core 1), RSS {r['exporter_rss_mib']:.0f} MiB")
        # let it catch up before the next rate, so each window starts from empty rings
        deadline = time.monotonic() + 60
        while sum(b.exported for b in bufs) < gen.n and time.monotonic() < deadline:
            time.sleep(0.05)
    total = gen.n
    for b in bufs:
        b.close()
    procs.stop(exporter, timeout=120)
    idle_cgroup.remove(os.getpid())  # the exporter's cpu.idle cgroup, where it made one: this script is its supervisor
    import clickhouse_connect

    client = clickhouse_connect.get_client(interface="chdb", path=str(data))
    rows, distinct = client.query("SELECT count(), uniqExact(request_id) FROM fastgw.requests FINAL").result_rows[0]
    client.close()
    out.update(pushed_total=total, rows=rows, distinct=distinct)
    log(f"A chDB holds {rows} rows, {distinct} distinct ids, for {total} pushed")
    os.sched_setaffinity(0, {0, 1})
    return out


# ------------------------------------------------------------------------------ C. exporter CPU


def exporter_cpu(p: dict[str, Any], tmp: Path) -> dict[str, Any]:
    """The exporter's own code (``Exporter.advance``, as its loop runs it) draining rings that already hold every record.

    Runs in this process, pinned to core 1 before chDB starts its threads, and counts CPU time
    (all threads: chDB's insert and merge threads too) rather than wall time, so other load on a
    shared machine moves it less than part A's rates. Then the sink alone: the same kind of rows,
    already enriched, through ``sink.write`` in the exporter's chunk size, which bounds what any
    change to decoding and enrichment can win.
    """
    from fastgw import config as config_mod
    from fastgw.requestlog.exporter import WRITE_CHUNK, Exporter
    from fastgw.requestlog.paths import LogPaths
    from fastgw.requestlog.record import decode_record

    n = p["cpu_records"]
    cpus = {int(c) for c in p["exporter_cpus"].split(",")}
    os.sched_setaffinity(0, cpus)
    cfg_path = tmp / "exporter.yaml"
    ring_bytes = 2 ** (int(n * (p["body_bytes"] + 1600) / 2).bit_length())  # room for half the records in each ring
    cfg_path.write_text(f"logging: {{sink: 'chdb://{tmp / 'chdb'}', run_dir: '{rings_dir(tmp)}', "
                        f"spill_dir: '{tmp / 'spill'}', ring_size: {ring_bytes}, exporter_helpers: {p['exporter_helpers']}}}\n")
    cfg = config_mod.load(str(cfg_path))
    paths = LogPaths.for_config(cfg)
    bufs = [RecordBuffer(paths.ring_file(w), paths.spill_dir(w), ring_bytes) for w in range(2)]
    exporter = Exporter(cfg, paths, 2)
    gen = Renumbered(make_records(2000, body_bytes=p["body_bytes"]))
    try:
        for _ in range(2000):  # warm up: the sink opens, the schema exists, the first part is written
            bufs[gen.n % 2].push(gen.next())
        exporter._attach_drains()
        while exporter.stats.exported < gen.n:
            exporter.flush_once()
        deadline = time.monotonic() + 60  # the helpers the warm-up started are ready before the timing
        while exporter.helpers is not None and exporter.helpers.usable() < exporter.helper_count:
            if time.monotonic() > deadline:
                raise RuntimeError("the exporter's prepare helpers did not start")
            time.sleep(0.05)
        for _ in range(n):
            bufs[gen.n % 2].push(gen.next())
        spilled = sum(b.spilled for b in bufs)
        done = exporter.stats.exported + n
        # The prepare helpers' CPU counts too (logging.exporter_helpers; none on one core).
        helpers = (lambda: rb.cpu_ticks(exporter.helpers.pids) / rb.CLK_TCK if exporter.helpers else 0.0)
        cpu0, t0 = time.process_time() + helpers(), time.perf_counter()
        while exporter.stats.exported < done:  # as Exporter.run drives it (on one core: no overlap)
            exporter.advance()
        exporter.settle()
        cpu1, t1 = time.process_time() + helpers(), time.perf_counter()
        exporter.advance()  # the loop's next turn finds nothing: chDB's merges start (MergeDeferral)
        time.sleep(3.0)  # background merges of the parts just written
        cpu2 = time.process_time() + helpers()
        # The sink alone, on rows enriched beforehand (fresh ids: nothing is deduplicated away).
        rows = [exporter.enricher.row(decode_record(gen.next())) for _ in range(n)]
        assert exporter.sink is not None
        cpu3 = time.process_time()
        for i in range(0, n, WRITE_CHUNK):
            exporter.sink.write(rows[i:i + WRITE_CHUNK], f"bench-c-{i}")
        cpu4 = time.process_time()
        time.sleep(3.0)
        cpu5 = time.process_time()
    finally:
        exporter.stopping = True
        exporter.close()
        for b in bufs:
            b.close()
        os.sched_setaffinity(0, {0, 1})
    out = {"records": n, "body_bytes": p["body_bytes"], "spilled": spilled, "drain_per_s": n / (t1 - t0), "cpus": p["exporter_cpus"],
           "pipelined": exporter.pipelined, "helpers": exporter.helper_count,
           "drain_cpu_us": (cpu1 - cpu0) / n * 1e6, "drain_merge_cpu_us": (cpu2 - cpu0) / n * 1e6,
           "sink_cpu_us": (cpu4 - cpu3) / n * 1e6, "sink_merge_cpu_us": (cpu5 - cpu3) / n * 1e6}
    log(f"C {n} records: {out['drain_per_s']:.0f}/s, exporter {out['drain_cpu_us']:.1f} µs/record "
        f"({out['drain_merge_cpu_us']:.1f} with 3 s of merges); sink.write alone {out['sink_cpu_us']:.1f} "
        f"({out['sink_merge_cpu_us']:.1f}) µs/record; spilled {spilled}")
    return out


# ------------------------------------------------------------------------------ B. the gateway


def gateway_config(tmp: Path, name: str, mock_port: int, port: int) -> Path:
    logging_cfg = {
        "off": "{enabled: false}",
        "on": f"{{sink: 'chdb://{tmp / name / 'chdb'}', run_dir: '{rings_dir(tmp / name)}', spill_dir: '{tmp / name / 'spill'}'}}",
        "nice": f"{{sink: 'chdb://{tmp / name / 'chdb'}', run_dir: '{rings_dir(tmp / name)}', "
                f"spill_dir: '{tmp / name / 'spill'}', exporter_idle: false}}",
        "nocg": f"{{sink: 'chdb://{tmp / name / 'chdb'}', run_dir: '{rings_dir(tmp / name)}', "
                f"spill_dir: '{tmp / name / 'spill'}', exporter_idle_cgroup: false}}",
        # The exporter stays in the session of `fastgw serve` (before exporter_own_session).
        "inherited": f"{{sink: 'chdb://{tmp / name / 'chdb'}', run_dir: '{rings_dir(tmp / name)}', "
                     f"spill_dir: '{tmp / name / 'spill'}', exporter_own_session: false}}",
        # A ClickHouse server that is not there: connection refused, the exporter backs off.
        "down": f"{{sink: 'http://127.0.0.1:{rb.free_port()}/', run_dir: '{rings_dir(tmp / name)}', "
                f"spill_dir: '{tmp / name / 'spill'}'}}",
    }[name]
    path = tmp / f"{name}.yaml"
    path.write_text(f"providers:\n  openai: {{base_url: 'http://127.0.0.1:{mock_port}'}}\n"
                    f"server: {{port: {port}}}\nlogging: {logging_cfg}\n")
    return path


class Gateway:
    def __init__(self, name: str, tmp: Path, procs: rb.Procs, mock_port: int, cli: list[str] | None = None,
                 own_session: bool = False) -> None:
        """``fastgw serve`` with the ``name`` config; ``cli``: another command line for fastgw's CLI
        (bench_log_packing.py's, which changes the worker's logging before it starts);
        ``own_session``: started in a session apart from the client's, as a service is."""
        self.name, self.port = name, rb.free_port()
        cfg = gateway_config(tmp, name, mock_port, self.port)
        self.proc = procs.start(f"fastgw-{name}", rb.pinned(rb.PROXY_CPU, [*(cli or rb.fastgw_cmd()), "serve", "--config", str(cfg)]),
                                tmp / f"{name}.log", start_new_session=own_session)
        rb.wait_port(self.port, self.proc, f"fastgw ({name})")
        self.worker, self.exporter = self.proc.pid, None
        if name != "off":
            deadline = time.monotonic() + 20
            while len(kids := rb.children(self.proc.pid)) < 2:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{name}: expected an exporter and a worker, got {kids}")
                time.sleep(0.05)
            self.exporter, self.worker = sorted(kids, key=lambda pid: (not is_exporter(pid), start_time(pid)))
            os.sched_setaffinity(self.exporter, {1})
            for tid in os.listdir(f"/proc/{self.exporter}/task"):  # threads already running (chDB's)
                try:
                    os.sched_setaffinity(int(tid), {1})
                except OSError:
                    pass
            procs.adopt_children(self.proc, kids)

    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{rb.CHAT_PATH}"


def saturate(url: str, seconds: int, what: str) -> int:
    """wrk -c64 with the 1 KB chat request for ``seconds``: the requests answered, all of them 2xx."""
    w = rb.run_wrk(url, seconds, script=WRK_LUA)
    if w["non2xx"] or w["socket_errors"]:
        raise RuntimeError(f"wrk against {what}: {w['non2xx']} non-2xx answers, {w['socket_errors']} socket errors")
    return w["requests"]


def wait_idle(pids: list[int], timeout: float = 90.0) -> None:
    """Until each process used under 2% of a core for half a second: an exporter done catching up."""
    deadline = time.monotonic() + timeout
    for pid in pids:
        while time.monotonic() < deadline:
            t0 = rb.cpu_ticks([pid])
            time.sleep(0.5)
            if rb.cpu_ticks([pid]) - t0 <= 0.01 * rb.CLK_TCK:
                break
        else:
            log(f"B exporter {pid} still busy after {timeout:.0f} s; going on")


def write_wrk_lua() -> None:
    body = BODY_1K.replace("\\", "\\\\").replace("'", "\\'")
    WRK_LUA.write_text(
        "-- generated by bench_logging.py: a chat completion with ~0.5 KB of prompt, ~1 KB answer\n"
        'wrk.method = "POST"\n'
        f"wrk.body = '{body}'\n"
        'wrk.headers["content-type"] = "application/json"\n'
        'wrk.headers["authorization"] = "Bearer sk-bench"\n'
        + "".join(f'wrk.headers["{h.split(": ")[0]}"] = "{h.split(": ")[1]}"\n' for h in MOCK_HEADERS)
    )


def start_upstream(p: dict[str, Any], tmp: Path, procs: rb.Procs) -> tuple[int, list[int]]:
    """The provider stand-in on core 1: its port and processes. "replay" (the default): nginx
    answering with the mock's recorded answer (replay_upstream.py says why); "mock": the mock."""
    st = rb.Stack(procs, tmp)
    st.start_mock()
    assert st.mock is not None
    if p["upstream"] == "mock":
        return st.mock_port, [st.mock.pid]
    answer, content_type = replay_upstream.record_answer(st.mock_port, BODY_1K, MOCK_HEADERS)
    procs.stop(st.mock)
    port, pids = replay_upstream.start(procs, tmp, answer, content_type)
    replay_upstream.check(port, answer, BODY_1K, MOCK_HEADERS)
    log(f"B upstream: nginx :{port} replaying the mock's {len(answer)}-byte answer")
    return port, pids


@contextmanager
def gateway_stage(prefix: str) -> Iterator[tuple[Path, rb.Procs, int]]:
    """For a script that starts its own ``Gateway``s (bench_sink_down.py, bench_sink_recovery.py):
    a temporary folder, rings under /dev/shm, and the replay upstream's port; every process
    started through the yielded ``Procs`` is stopped at the end."""
    global RINGS_ROOT
    procs = rb.Procs()
    shm = "/dev/shm" if os.path.isdir("/dev/shm") else None
    with tempfile.TemporaryDirectory(prefix=f"{prefix}-") as d, \
            tempfile.TemporaryDirectory(prefix=f"{prefix}-rings-", dir=shm) as rings:
        tmp, RINGS_ROOT = Path(d), Path(rings)
        try:
            port, _ = start_upstream(dict(PROFILES["full"], upstream="replay"), tmp, procs)
            yield tmp, procs, port
        finally:
            procs.stop_all()


def measured_loadgen(url: str, how: list[str], p: dict[str, Any], lg_args: list[str], upstream: list[int],
                     exporter: int | None) -> dict[str, Any]:
    """rb.run_loadgen for p["lat_s"] after p["lat_warm"], with what the run cost core 1 per request:
    the client (its own count, without its interpreter's start-up), the upstream and the exporter.
    CPU over the whole run, warm-up included, per request of the whole run (the answers counted,
    scaled by its length over the counted part's)."""
    u0, e0 = rb.cpu_ticks(upstream), rb.cpu_ticks([exporter]) if exporter else 0
    r = rb.run_loadgen(url, *how, "-d", str(p["lat_s"]), "--warmup", str(p["lat_warm"]), *lg_args)
    u1, n = rb.cpu_ticks(upstream), r["count"] * (p["lat_s"] + p["lat_warm"]) / p["lat_s"]
    r["core1_us_per_req"] = {
        "client": r["cpu_s"] / n * 1e6,
        "upstream": (u1 - u0) / rb.CLK_TCK / n * 1e6,
        "exporter": (rb.cpu_ticks([exporter]) - e0) / rb.CLK_TCK / n * 1e6 if exporter else 0.0,
    }
    return r


def gateway_runs(p: dict[str, Any], tmp: Path, procs: rb.Procs) -> dict[str, Any]:
    upstream_port, upstream = start_upstream(p, tmp, procs)
    direct_url = f"http://127.0.0.1:{upstream_port}{rb.CHAT_PATH}"
    for name in TARGETS:
        (tmp / name).mkdir()
    gws = {name: Gateway(name, tmp, procs, upstream_port) for name in TARGETS}
    log("B " + ", ".join(f"{g.name}: :{g.port} worker {g.worker} exporter {g.exporter}" for g in gws.values()))
    write_wrk_lua()
    lg_args = ["--body", BODY_1K, *sum((["-H", h] for h in MOCK_HEADERS), [])]
    lat_keys = [("c1", ["-c", "1"]), ("c16", ["-c", "16"])]
    lat_keys += [(f"r{rate}", ["-c", str(OPEN_CONNS), "--rate", str(rate)]) for rate in OPEN_RATES]
    runs: dict[str, dict[str, list[dict[str, Any]]]] = {k: {t: [] for t in TARGETS} for k in [*dict(lat_keys), "wrk"]}
    direct: dict[str, list[dict[str, Any]]] = {k: [] for k in dict(lat_keys)}
    for g in gws.values():  # warm up
        rb.run_loadgen(g.url(), "-c", "16", "-d", "1", "--warmup", "0.2", *lg_args)
    rss: dict[str, list[float]] = {t: [] for t in TARGETS if t != "off"}
    for rep in range(p["reps"]):
        order = rb.rotate(TARGETS, rep)
        for key, how in lat_keys:
            d = measured_loadgen(direct_url, how, p, lg_args, upstream, None)
            direct[key].append(d)
            for t in order:
                r = measured_loadgen(gws[t].url(), how, p, lg_args, upstream, gws[t].exporter)
                if r.get("errors") or r.get("queued_max"):
                    log(f"B rep{rep} {t} {key}: {r.get('errors')} errors, queued up to {r.get('queued_max')}")
                runs[key][t].append(r)
                log(f"B rep{rep} {t:4s} {key:5s} p50 {r['latency_us']['p50']:7.1f} µs p99 "
                    f"{r['latency_us']['p99']:7.1f} µs ({r['count']} req)")
        for t in order:
            g = gws[t]
            w0, e0 = rb.cpu_ticks([g.worker]), rb.cpu_ticks([g.exporter]) if g.exporter else 0
            n = saturate(g.url(), p["wrk_s"], t)
            time.sleep(0.2)
            w = {"requests": n, "rps": n / p["wrk_s"],
                 "worker_us_per_req": (rb.cpu_ticks([g.worker]) - w0) / rb.CLK_TCK / n * 1e6}
            if g.exporter:
                # The exporter works in batches (age 1 s): wait for it to export what wrk sent.
                time.sleep(0 if t == "down" else 2.5)
                w["exporter_us_per_record"] = (rb.cpu_ticks([g.exporter]) - e0) / rb.CLK_TCK / n * 1e6
                rss[t].append(rb.rss_mib(g.exporter))
            runs["wrk"][t].append(w)
            log(f"B rep{rep} {t:4s} wrk {w['rps']:7.0f} req/s worker {w['worker_us_per_req']:.1f} µs/req"
                + (f" exporter {w['exporter_us_per_record']:.1f} µs/record" if g.exporter else ""))
        wait_idle([g.exporter for g in gws.values() if g.exporter])
    controls: dict[str, dict[str, list[dict[str, Any]]]] = {k: {t: [] for t in CONTROLS} for k in dict(lat_keys)}
    for rep in range(p["reps"]):
        for t in CONTROLS:
            if t == "off + busy core 1":
                g = gws["off"]
                busy = procs.start("busy-core-1", ["chrt", "--idle", "0", *rb.pinned(rb.CLIENT_CPU, [rb.PY, "-c", "while True: pass"])],
                                   tmp / "busy.log")
            else:
                g, busy = gws["on"], None
                assert g.exporter is not None
                os.kill(g.exporter, signal.SIGSTOP)
            try:
                for key, how in lat_keys:
                    r = measured_loadgen(g.url(), how, p, lg_args, upstream, g.exporter)
                    controls[key][t].append(r)
                    log(f"B control rep{rep} {t:22s} {key:5s} p50 {r['latency_us']['p50']:7.1f} µs p99 "
                        f"{r['latency_us']['p99']:7.1f} µs")
            finally:
                if busy is not None:
                    procs.stop(busy, timeout=10)
                else:
                    os.kill(g.exporter, signal.SIGCONT)  # type: ignore[arg-type]
        wait_idle([g.exporter for g in gws.values() if g.exporter])
    split = worker_cpu_split(p, tmp, procs, gws)
    for g in gws.values():
        procs.stop(g.proc, timeout=180)
    return {"runs": runs, "direct": direct, "exporter_rss_mib": rss, "controls": controls, "upstream": p["upstream"],
            "cpu_split": split}


SPLIT = ("off", "off + busy core 1", "on, exporter stopped", "on")
SPLIT_S = 2  # short enough that the stopped exporter's ring holds every record (no spill in the figure)


def worker_cpu_split(p: dict[str, Any], tmp: Path, procs: rb.Procs, gws: dict[str, Gateway]) -> dict[str, list[float]]:
    """The worker's CPU a request at saturation (wrk -c64 for SPLIT_S), in four variants alternated:
    logging off; off with a SCHED_IDLE busy loop on core 1 (what anything running on the other core
    costs the worker on this machine); on with the exporter stopped (the worker's own logging work,
    nothing reading the ring); on. Each "on" run starts from drained rings."""
    out: dict[str, list[float]] = {m: [] for m in SPLIT}
    on = gws["on"]

    def spill_files() -> int:  # in the "on" gateway's spill folder: a change means the worker spilled
        return sum(1 for _ in (tmp / "on" / "spill").rglob("*"))

    assert on.exporter is not None
    for rep in range(p["reps"]):
        for mode in rb.rotate(list(SPLIT), rep):
            g = gws["on" if mode.startswith("on") else "off"]
            busy = None
            if mode == "off + busy core 1":
                busy = procs.start("busy-core-1", ["chrt", "--idle", "0", *rb.pinned(rb.CLIENT_CPU, [rb.PY, "-c", "while True: pass"])],
                                   tmp / "busy.log")
                time.sleep(0.3)
            elif mode == "on, exporter stopped":
                os.kill(on.exporter, signal.SIGSTOP)
            spilled = spill_files()
            try:
                w0 = rb.cpu_ticks([g.worker])
                n = saturate(g.url(), SPLIT_S, mode)
                us = (rb.cpu_ticks([g.worker]) - w0) / rb.CLK_TCK / n * 1e6
            finally:
                if busy is not None:
                    procs.stop(busy, timeout=10)
                elif mode == "on, exporter stopped":
                    os.kill(on.exporter, signal.SIGCONT)
            if mode.startswith("on"):
                if spill_files() != spilled:
                    log(f"B split rep{rep} {mode}: the worker spilled (not its usual work); figure kept")
                wait_idle([on.exporter])
            out[mode].append(us)
            log(f"B split rep{rep} {mode:22s} worker {us:.1f} µs/req")
    return out


def _label(key: str) -> str:
    """"c16" -> "16 conn" (closed loop), "r2000" -> "2000 req/s, open loop"."""
    return f"{key[1:]} conn" if key[0] == "c" else f"{key[1:]} req/s, open loop"


def summarize(a: dict[str, Any] | None, b: dict[str, Any] | None, c: dict[str, Any] | None = None) -> str:
    lines = ["# Request logging benchmarks", ""]
    if c is not None:
        where = "core 1" if c["cpus"] == "1" else f"cores {c['cpus']}"
        lines += [f"## C. Exporter CPU per record (rings already full, exporter on {where})", "",
                  f"{c['records']} records with {c['body_bytes']} bytes of bodies each drained by ``Exporter.advance`` in-process "
                  f"({'batches overlapped' if c['pipelined'] else 'one batch at a time'}); CPU time "
                  "of every thread (chDB's included); spilled before the drain: " + str(c["spilled"]) + ".", "",
                  "| figure | µs/record | as records/s on one core |", "|---|---:|---:|",
                  f"| exporter: decode, enrich, columns, insert | {c['drain_cpu_us']:.1f} | {1e6 / c['drain_cpu_us']:.0f} |",
                  f"| the same + 3 s of background merges | {c['drain_merge_cpu_us']:.1f} | "
                  f"{1e6 / c['drain_merge_cpu_us']:.0f} |",
                  f"| sink.write alone (columns + chDB insert) | {c['sink_cpu_us']:.1f} | {1e6 / c['sink_cpu_us']:.0f} |",
                  f"| sink.write alone + 3 s of merges | {c['sink_merge_cpu_us']:.1f} | "
                  f"{1e6 / c['sink_merge_cpu_us']:.0f} |", "",
                  f"Drain rate (wall clock, shared machine): {c['drain_per_s']:.0f} records/s.", ""]
    if a is not None:
        lines += ["## A. Rings to chDB", "",
                  f"Records average {a['record_bytes']:.0f} bytes on the ring ({a['body_bytes']} bytes of bodies plus headers and metadata).",
                  "", "Per rate, a lead-in of the offered rate, then the counted window: exported is committed "
                  "records a second over the window; backlog is records pushed and not yet committed, at "
                  "the window's start and end, and its least-squares trend over the window (flat: the "
                  "exporter keeps up; it saw-tooths by a batch or two as batches are gathered and written). "
                  "\"From empty\" counts from the end of the previous catch-up, lead-in included, as earlier "
                  "versions of this benchmark did.",
                  "", "| offered rec/s | pushed rec/s | exported rec/s | from empty | backlog start → end (trend/s) | "
                  "rings max (MiB) | spilled | exporter µs/record | exporter % of core 1 | exporter RSS (MiB) |",
                  "|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|"]
        for r in a["rates"]:
            lines.append(f"| {r['offered']} | {r['pushed_per_s']:.0f} | {r['exported_per_s']:.0f} | "
                         f"{r['from_empty_per_s']:.0f} | {r['backlog_start']} → {r['backlog_end']} "
                         f"({r['backlog_trend_per_s']:+.0f}) | "
                         f"{r['max_ring_mib']:.1f} | {r['spilled']} | {r['exporter_cpu_us_per_record']:.1f} | "
                         f"{r['exporter_core_pct']:.0f} | {r['exporter_rss_mib']:.0f} |")
        lines += ["", f"After SIGTERM: {a['rows']} rows and {a['distinct']} distinct request ids in chDB, "
                      f"for {a['pushed_total']} records pushed.", ""]
    if b is not None:
        runs, direct = b["runs"], b["direct"]

        def q(key: str, t: str, pct: str) -> float:
            return med([r["latency_us"][pct] for r in runs[key][t]]) / 1000

        def d(key: str, pct: str) -> float:
            return med([r["latency_us"][pct] for r in direct[key]]) / 1000

        stand_in = ("nginx replaying the mock's answer" if b.get("upstream", "mock") == "replay"
                    else "the Python mock")
        lines += ["## B. Gateway: logging off, on, and on with the sink down", "",
                  f"The exporter runs under SCHED_IDLE (the default), on core 1 with the client and the "
                  f"provider stand-in ({stand_in}), in a cpu.idle cgroup of its own where it may make one; "
                  "\"on, no idle cgroup\" is the same with `logging.exporter_idle_cgroup: false`.", "",
                  "Latency in ms (medians over repetitions); added = gateway minus direct in the same repetition order.", "",
                  "| figure | direct | off | on | sink down | on vs off | down vs on | on, no idle cgroup | no-cgroup vs off |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
        keys = [k for k in direct if runs[k]["on"]]
        for key in keys:
            for pct in ("p50", "p99"):
                off, on, down, nocg = (q(key, t, pct) for t in TARGETS)
                label = _label(key)
                lines.append(f"| {pct} @{label} | {d(key, pct):.3f} | {off:.3f} | {on:.3f} | {down:.3f} | "
                             f"{(on / off - 1) * 100:+.1f}% | {(down / on - 1) * 100:+.1f}% | {nocg:.3f} | "
                             f"{(nocg / off - 1) * 100:+.1f}% |")
        lines += ["", "Overhead (gateway minus direct, ms, medians of the paired differences):", "",
                  "| figure | off | on | sink down | on vs off | down vs on | on, no idle cgroup |", "|---|---:|---:|---:|---:|---:|---:|"]
        for key in keys:
            for pct in ("p50", "p99"):
                off, on, down, nocg = (med([r["latency_us"][pct] - dr["latency_us"][pct]
                                            for r, dr in zip(runs[key][t], direct[key])]) / 1000 for t in TARGETS)
                label = _label(key)
                lines.append(f"| {pct} @{label} | {off:.3f} | {on:.3f} | {down:.3f} | "
                             f"{(on / off - 1) * 100:+.1f}% | {(down / on - 1) * 100:+.1f}% | {nocg:.3f} |")
        w = runs["wrk"]

        def wm(t: str, field: str) -> float:
            return med([x[field] for x in w[t]])

        lines += ["", "| at saturation (wrk -c64) | off | on | sink down | on, no idle cgroup |", "|---|---:|---:|---:|---:|",
                  "| worker CPU µs/request | " + " | ".join(f"{wm(t, 'worker_us_per_req'):.1f}" for t in TARGETS) + " |",
                  "| requests/s | " + " | ".join(f"{wm(t, 'rps'):.0f}" for t in TARGETS) + " |",
                  "| exporter CPU µs/record | | "
                  + " | ".join(f"{wm(t, 'exporter_us_per_record'):.1f}" for t in TARGETS[1:]) + " |",
                  "| exporter RSS MiB (max) | | " + " | ".join(f"{max(b['exporter_rss_mib'][t] or [0]):.0f}" for t in TARGETS[1:])
                  + " |", ""]
        ctl = b["controls"]
        lines += ["Controls (same runs; p99 in ms, medians): the busy loop stands in for the exporter on core 1, "
                  "and the stopped exporter leaves the worker's own logging work alone.", "",
                  "| figure | off | off + busy core 1 | on | on, exporter stopped |", "|---|---:|---:|---:|---:|"]
        for key in keys:
            label = _label(key)
            cells = [q(key, "off", "p99"), med([r["latency_us"]["p99"] for r in ctl[key][CONTROLS[0]]]) / 1000,
                     q(key, "on", "p99"), med([r["latency_us"]["p99"] for r in ctl[key][CONTROLS[1]]]) / 1000]
            lines.append(f"| p99 @{label} | " + " | ".join(f"{c:.3f}" for c in cells) + " |")
        split = b.get("cpu_split")
        if split:
            base = med(split["off"])
            lines += ["", f"Where the worker's extra CPU goes (wrk -c64 for {SPLIT_S} s a variant, alternated; medians, µs a request):", "",
                      "| variant | worker µs/request | vs off |", "|---|---:|---:|"]
            lines += [f"| {mode} | {med(v):.1f} | {med(v) - base:+.1f} |" for mode, v in split.items()]
        lines += ["", "Core 1 at the open-loop rates: CPU µs per request answered (medians) of the client, "
                  "the upstream and the exporter, and the share of core 1 they take together at the offered rate.", "",
                  "| rate | target | client | upstream | exporter | % of core 1 |", "|---|---|---:|---:|---:|---:|"]
        for key in (k for k in keys if k[0] == "r"):
            for t, rs in (("direct", direct[key]), *((t, runs[key][t]) for t in TARGETS)):
                if not rs or "core1_us_per_req" not in rs[0]:
                    continue
                parts = [med([r["core1_us_per_req"][part] for r in rs]) for part in ("client", "upstream", "exporter")]
                lines.append(f"| {key[1:]}/s | {t} | " + " | ".join(f"{x:.1f}" for x in parts)
                             + f" | {sum(parts) * int(key[1:]) / 1e4:.0f}% |")
        lines += [""]
        lines += ["Per-repetition values:", "", "```"]
        for key in keys:
            lines.append(f"{key} direct p50 " + " ".join(f"{r['latency_us']['p50']:.0f}" for r in direct[key])
                         + " | p99 " + " ".join(f"{r['latency_us']['p99']:.0f}" for r in direct[key]))
            for t in TARGETS:
                lines.append(f"{key} {t:4s} p50 " + " ".join(f"{r['latency_us']['p50']:.0f}" for r in runs[key][t])
                             + " | p99 " + " ".join(f"{r['latency_us']['p99']:.0f}" for r in runs[key][t]))
            for t in CONTROLS:
                lines.append(f"{key} {t} p50 " + " ".join(f"{r['latency_us']['p50']:.0f}" for r in ctl[key][t])
                             + " | p99 " + " ".join(f"{r['latency_us']['p99']:.0f}" for r in ctl[key][t]))
        for t in TARGETS:
            lines.append(f"wrk {t:4s} " + " ".join(f"{x['worker_us_per_req']:.1f}" for x in runs["wrk"][t]))
        for mode, v in (b.get("cpu_split") or {}).items():
            lines.append(f"split {mode} " + " ".join(f"{x:.1f}" for x in v))
        lines += ["```", ""]
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--only", choices=("rings", "gateway", "exporter-cpu"))
    ap.add_argument("--cpu-records", type=int, help="C: records drained (default 100000, 20000 with --quick)")
    ap.add_argument("--out", type=Path)
    ap.add_argument("--exporter-helpers", type=int, default=-1,
                    help="A and C: logging.exporter_helpers (default -1: one fewer than the exporter's cores)")
    ap.add_argument("--exporter-cpus", default="1",
                    help="A: the cores the exporter may use (default 1, the layout the issue asks for; "
                         "'0,1' shows what it does with the machine to itself)")
    ap.add_argument("--rates", help="A: comma-separated offered rates (records/s)")
    ap.add_argument("--upstream", choices=("replay", "mock"), default="replay",
                    help="B: the provider stand-in on core 1: nginx replaying the mock's answer (default; "
                         "replay_upstream.py says why) or the Python mock itself")
    ap.add_argument("--ring-mib", type=int, default=int(LoggingConfig().ring_size) >> 20,
                    help="A: each ring's size in MiB (default: logging.ring_size's default)")
    ap.add_argument("--body-bytes", type=int, default=1024,
                    help="A and C: bytes of request and response body a record carries (default 1024, the issue's)")
    args = ap.parse_args()
    p = dict(PROFILES["quick" if args.quick else "full"], exporter_cpus=args.exporter_cpus,
             exporter_helpers=args.exporter_helpers, ring_size=args.ring_mib << 20, upstream=args.upstream,
             body_bytes=args.body_bytes)
    if args.rates:
        p["rates"] = tuple(int(r) for r in args.rates.split(","))
    if args.cpu_records:
        p["cpu_records"] = args.cpu_records
    gateway = args.only in (None, "gateway")
    tools = ["taskset", *(["wrk"] if gateway else []), *(["nginx"] if gateway and args.upstream == "replay" else [])]
    if why := rb.missing_tools(*tools):
        print(why, file=sys.stderr)
        return 2
    procs = rb.Procs()
    a = b = c = None
    global RINGS_ROOT
    shm = "/dev/shm" if os.path.isdir("/dev/shm") else None
    with tempfile.TemporaryDirectory(prefix="fastgw-bench-log-") as d, \
            tempfile.TemporaryDirectory(prefix="fastgw-bench-rings-", dir=shm) as rings:
        tmp, RINGS_ROOT = Path(d), Path(rings)
        try:
            if args.only in (None, "rings"):
                (tmp / "a").mkdir()
                a = rings_to_chdb(p, tmp / "a", procs)
            if args.only in (None, "exporter-cpu"):
                (tmp / "c").mkdir()
                c = exporter_cpu(p, tmp / "c")
            if args.only in (None, "gateway"):
                (tmp / "b").mkdir()
                b = gateway_runs(p, tmp / "b", procs)
        finally:
            procs.stop_all()
    text = summarize(a, b, c)
    rb.emit(text, args.out)
    return 0


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    sys.exit(main())
