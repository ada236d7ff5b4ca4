"""Admin API latency on a large request log: what the dashboard's calls cost on 1M rows in chDB.

    python benchmarks/bench_admin.py [--rows 1000000] [--repeat 7] [--handles 1] [--keep DIR]

Seeds ``--rows`` requests over the last 7 days into a fresh chDB folder with one
``INSERT ... SELECT ... FROM numbers(N)`` (skewed models and users, a few properties, sessions
with paths, log-normal latency, 5% errors, ~1 KB of bodies per row), then starts a real
AdminServer on a free port and times each call over HTTP: the median (and max) of ``--repeat``
runs after one warm-up, then all of them at once as a browser opening the page would. Then a
thread writes 2,500-row batches through the ClickHouse sink on its own handle at 5,000 rows/s, as
a busy exporter does: 10 s alone, then while every call is timed again, to show what reads and
writes in one process cost each other (the call times, and each batch's write time). Prints a
markdown table.
"""

from __future__ import annotations

import argparse
import datetime as dt
import statistics
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

try:
    from fastgw.analytics.admin_server import AdminServer
except ImportError:  # not installed: run from the checkout
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    from fastgw.analytics.admin_server import AdminServer
from fastgw.config import AdminConfig
from fastgw.requestlog.sinks.clickhouse import ClickHouseSink

BATCH, RATE = 2500, 5000  # the writer's batch size and rows/s while reads are timed

SEED = """
INSERT INTO fastgw.requests (request_id, created_at, total_us, ttfb_us, upstream_us, gateway_us, method,
    path, provider, model_requested, model_served, status, error_type, stream, prompt_tokens,
    completion_tokens, cost_nanousd, cost_null_reason, user_id, properties, session_id, session_path,
    session_name, cache_status, cache_saved_nanousd, key_id, request_body, response_body)
SELECT
    generateUUIDv4(number) AS id,
    now64(3) - toIntervalMillisecond(rand64(1) % (7 * 86400000)) AS t,
    toUInt32(least(120e6, randLogNormal(13.2, 0.8))) AS total,
    toUInt32(total * 0.3) AS ttfb, toUInt32(total * 0.97) AS upstream, toUInt32(200 + rand(2) % 800),
    'POST', '/v1/chat/completions',
    ['openai', 'openai', 'anthropic', 'openai', 'local', 'anthropic', 'openai', 'local'][m] AS provider,
    ['gpt-4o-mini', 'gpt-4o', 'claude-sonnet-4-6', 'gpt-4.1', 'llama-3.1-70b', 'claude-haiku-4-5',
     'o3-mini', 'qwen-2.5'][m] AS model,
    if(status = 429, '', model),
    multiIf(r < 0.95, 200, r < 0.97, 429, r < 0.985, 500, r < 0.99, 502, 400) AS status,
    multiIf(status = 429, if(rand(3) % 4 = 0, 'budget_exceeded', 'rate_limit_exceeded'),
            status >= 400, 'upstream_error', '') AS error_type,
    rand(4) % 3 = 0 AS stream,
    toUInt32(randLogNormal(6.5, 1.0)) AS prompt, toUInt32(randLogNormal(5, 1.0)) AS completion,
    if(m = 4 OR m = 7, NULL, toInt64((prompt * 150 + completion * 600) * (1 + m))),
    if(m = 4 OR m = 7, 'unknown_model', ''),
    if(rand(5) % 10 = 0, '', 'user-' || toString(toUInt32(randExponential(0.02)) % 5000)) AS user,
    mapFilter((k, v) -> v != '', map('org', ['acme', 'globex', 'initech', 'umbrella', ''][1 + rand(6) % 5],
        'env', ['prod', 'prod', 'staging', ''][1 + rand(7) % 4],
        'feature', ['chat', 'search', 'summarise', 'agent', '', ''][1 + rand(8) % 6])),
    if(rand(9) % 5 = 0, 'sess-' || toString(rand(10) % 20000), '') AS session,
    if(session = '', '', ['/plan', '/plan/search', '/plan/write', '/review', ''][1 + rand(11) % 5]),
    if(session = '', '', 'agent run'),
    ['', '', 'miss', 'hit'][1 + rand(12) % 4] AS cache,
    if(cache = 'hit', toInt64(rand(13) % 5000000), 0),
    ['', 'k-ci', 'k-prod', 'k-batch'][1 + rand(14) % 4],
    concat('{"model":"', model, '","messages":[{"role":"system","content":"',
           repeat('You are a careful assistant for the finance team. ', 12),
           '"},{"role":"user","content":"Summarise report ', toString(number), ' for ', user, '"}]}'),
    if(stream,
       concat('data: {"choices":[{"delta":{"content":"The report ', toString(number), ' shows "}}]}\\n\\n',
              'data: {"choices":[{"delta":{"content":"', repeat('steady growth. ', 10), '"}}]}\\n\\ndata: [DONE]\\n\\n'),
       concat('{"choices":[{"message":{"content":"The report ', toString(number), ' shows ',
              repeat('steady growth. ', 10), '"}}],"usage":{"prompt_tokens":', toString(prompt), '}}'))
FROM (SELECT number, toUInt8(1 + least(7, floor(randExponential(0.7)))) AS m, randCanonical() AS r
      FROM numbers({rows:UInt64}))
"""


def calls(sample_id: str, session: str) -> list[tuple[str, str]]:
    """The page's requests: its header numbers, four charts, top lists, the log, a detail, a tree."""
    return [
        ("summary 7d", "/api/v1/summary?since=7d"),
        ("summary 24h", "/api/v1/summary?since=24h"),
        ("timeseries 7d (auto: 1h)", "/api/v1/timeseries?since=7d"),
        ("timeseries 24h (auto: 15m)", "/api/v1/timeseries?since=24h"),
        ("top models by cost", "/api/v1/breakdown/model?since=7d&order_by=cost&limit=10"),
        ("top users by requests", "/api/v1/breakdown/user?since=7d&order_by=requests&limit=10"),
        ("top property names", "/api/v1/breakdown/property?since=7d&limit=10"),
        ("property values (org)", "/api/v1/breakdown/property?since=7d&name=org&limit=10"),
        ("top keys", "/api/v1/breakdown/key?since=7d&limit=10"),
        ("statuses", "/api/v1/breakdown/status?since=7d&order_by=requests"),
        ("sessions", "/api/v1/breakdown/session?since=7d&limit=20"),
        ("request log page 1", "/api/v1/requests?since=7d&limit=50"),
        ("request log, model+status filter", "/api/v1/requests?since=7d&limit=50&model=gpt-4o&status=error"),
        ("request log, text search", "/api/v1/requests?since=24h&limit=50&q=report%2012345%20"),
        ("request detail", f"/api/v1/requests/{sample_id}"),
        ("session tree", f"/api/v1/sessions/{session}"),
    ]


def timed(url: str, repeat: int) -> tuple[float, float]:
    times = []
    for i in range(repeat + 1):
        t0 = time.perf_counter()
        with urllib.request.urlopen(url, timeout=120) as resp:
            resp.read()
            assert resp.status == 200, url
        if i:  # the first is the warm-up
            times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times), max(times)


def whole_page(base: str, page: list[tuple[str, str]], repeat: int) -> float:
    """Every call at once, as a browser opening the page does (6 connections); median ms."""
    def fetch(path: str) -> None:
        with urllib.request.urlopen(base + path, timeout=120) as resp:
            resp.read()

    times = []
    with ThreadPoolExecutor(6) as pool:
        for _ in range(repeat):
            t0 = time.perf_counter()
            list(pool.map(fetch, [path for _, path in page]))
            times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


def writer(sink: ClickHouseSink, stop: threading.Event, latencies: list[float]) -> None:
    """The exporter's write side at a steady RATE rows/s: one 2,500-row batch every half second."""
    now = dt.datetime.now(dt.UTC)
    due = time.monotonic()
    while not stop.is_set():
        rows = [{"request_id": uuid.uuid4(), "created_at": now, "total_us": 1000, "provider": "openai",
                 "model_requested": "gpt-4o", "model_served": "gpt-4o", "status": 200,
                 "request_body": "x" * 800, "response_body": "y" * 200} for _ in range(BATCH)]
        t0 = time.perf_counter()
        sink.write(rows, uuid.uuid4().hex)
        latencies.append((time.perf_counter() - t0) * 1000)
        due += BATCH / RATE
        stop.wait(max(0.0, due - time.monotonic()))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--keep", help="use (and keep) this folder instead of a temporary one")
    ap.add_argument("--handles", type=int, default=1, help="the admin server's store handles")
    args = ap.parse_args()
    folder = args.keep or tempfile.mkdtemp(prefix="fastgw-bench-admin-")
    sink = ClickHouseSink(chdb_path=folder)
    sink.open()
    have = sink.client.query("SELECT count() FROM fastgw.requests").result_rows[0][0]
    if have < args.rows:
        t0 = time.perf_counter()
        sink.client.command(SEED, parameters={"rows": args.rows - have})
        sink.client.command("OPTIMIZE TABLE fastgw.requests FINAL")
        print(f"seeded {args.rows - have:,} rows in {time.perf_counter() - t0:.1f}s", file=sys.stderr)
    size = sink.client.query("SELECT formatReadableSize(sum(bytes_on_disk)), "
                             "formatReadableSize(sum(data_uncompressed_bytes)) FROM system.parts "
                             "WHERE database = 'fastgw' AND table = 'requests' AND active").result_rows[0]
    sample_id, session = sink.client.query(
        "SELECT toString(request_id), session_id FROM fastgw.requests WHERE session_id != '' "
        "ORDER BY created_at DESC LIMIT 1").result_rows[0]
    server = AdminServer(AdminConfig(port=0), f"chdb://{folder}", store_handles=args.handles)
    server.start()
    base = f"http://127.0.0.1:{server.port}"
    try:
        quiet = {name: timed(base + path, args.repeat) for name, path in calls(sample_id, session)}
        page = whole_page(base, calls(sample_id, session), args.repeat)
        stop, alone, busy_writes = threading.Event(), [], []
        thread = threading.Thread(target=writer, args=(sink, stop, alone))
        thread.start()
        time.sleep(10)  # the sink alone first: its batch write time without readers
        stop.set()
        thread.join()
        stop.clear()
        thread = threading.Thread(target=writer, args=(sink, stop, busy_writes))
        thread.start()
        busy = {name: timed(base + path, args.repeat) for name, path in calls(sample_id, session)}
        stop.set()
        thread.join()
    finally:
        server.stop()
        sink.close()
    print(f"{args.rows:,} rows over 7 days; on disk {size[0]} (uncompressed {size[1]}); "
          f"median of {args.repeat} after a warm-up, ms\n")
    print("| call | median | max | median while the sink writes |\n| --- | ---: | ---: | ---: |")
    for name, (median, worst) in quiet.items():
        print(f"| {name} | {median:.1f} | {worst:.1f} | {busy[name][0]:.1f} |")
    print(f"\nall {len(quiet)} calls at once (6 connections, {args.handles} store handles): median {page:.0f} ms")
    print(f"the sink writing {RATE:,} rows/s in {BATCH:,}-row batches: a batch took median "
          f"{statistics.median(alone):.0f} ms (max {max(alone):.0f}) alone, {statistics.median(busy_writes):.0f} ms "
          f"(max {max(busy_writes):.0f}, {len(busy_writes)} batches, no errors) while the calls were timed")


if __name__ == "__main__":
    main()
