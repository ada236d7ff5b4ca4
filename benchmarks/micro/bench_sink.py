"""Request-log sinks: rows/s writing exporter-sized batches into chDB and into jsonl.

    python benchmarks/micro/bench_sink.py [--rows 5000] [--batches 5] [--sinks chdb,jsonl]

Each batch is --rows fully populated request records with ~1 KB of bodies (varied text, so
compression is not flattered). One warm-up batch, then the median of --batches timed ``write``
calls, each a fresh batch id (nothing is deduplicated away). Every sink writes into its own
temporary folder; jsonl fsyncs each batch as in production. "block" is the part of a chDB write
spent turning dicts into the Native block (``_native.nativeblock``), the Python-side cost before
the engine sees the data; "columns" is the same for the fallback through clickhouse-connect's
encoder (column lists, then its own serialiser, which is not timed here).
"""
import argparse
import datetime as dt
import random
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

try:
    from fastgw.requestlog import schema
except ImportError:  # not installed: run from the checkout
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "src"))
    from fastgw.requestlog import schema
from fastgw._native import nativeblock
from fastgw.requestlog.sinks import make_sink
from fastgw.requestlog.sinks.clickhouse import _BLOCK_SPECS, build_columns

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from log_records import text  # noqa: E402  (varied words, shared with the exporter benchmark)


def make_batch(rng: random.Random, rows: int) -> list[dict]:
    now = dt.datetime.now(dt.timezone.utc)
    models = ["gpt-4o", "gpt-4o-mini", "claude-sonnet-4", "llama-3.1-70b"]
    batch = []
    for i in range(rows):
        model = models[i % len(models)]
        batch.append({
            "request_id": uuid.uuid4(), "created_at": now - dt.timedelta(milliseconds=i),
            "total_us": rng.randrange(50_000, 5_000_000), "ttfb_us": rng.randrange(20_000, 900_000),
            "upstream_us": rng.randrange(20_000, 4_900_000), "gateway_us": rng.randrange(40, 400),
            "method": "POST", "path": "/v1/chat/completions", "provider": "openai" if i % 3 else "anthropic",
            "target_url": "https://api.openai.com/v1/chat/completions", "model_requested": model,
            "model_served": model + "-2024-08-06", "status": 200, "stream": bool(i % 2),
            "prompt_tokens": rng.randrange(10, 4000), "completion_tokens": rng.randrange(1, 1000),
            "cache_read_tokens": 0, "usage_source": "response", "cost_nanousd": rng.randrange(10**9),
            "user_id": f"user-{rng.randrange(1000)}", "properties": {"env": "prod", "team": "search"},
            "session_id": f"s-{rng.randrange(100)}", "cache_status": "miss", "key_id": "key-1",
            "request_headers": {"user-agent": "OpenAI/Python 1.40.0", "content-type": "application/json"},
            "request_body": '{"messages":[{"role":"user","content":"' + text(rng, 560) + '"}]}',
            "response_body": '{"choices":[{"message":{"content":"' + text(rng, 360) + '"}}]}',
            "worker": i % 4, "gateway_instance": "gw-1",
        })
    return batch


def bench(url: str, batches: list[list[dict]], options: dict | None = None) -> list[float]:
    sink = make_sink(url, options)
    sink.open()
    try:
        sink.write(batches[0], "warm-up")
        times = []
        for n, batch in enumerate(batches[1:]):
            started = time.perf_counter()
            sink.write(batch, f"batch-{n}")
            times.append(time.perf_counter() - started)
        return times
    finally:
        sink.close()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=5000, help="rows per batch")
    parser.add_argument("--batches", type=int, default=5, help="timed batches (after one warm-up)")
    parser.add_argument("--sinks", default="chdb,jsonl")
    args = parser.parse_args()

    rng = random.Random(42)
    batches = [make_batch(rng, args.rows) for _ in range(args.batches + 1)]
    body = sum(len(r["request_body"]) + len(r["response_body"]) for r in batches[0]) / args.rows
    print(f"{args.rows} rows/batch, {body:.0f} B of bodies per row, median of {args.batches} after 1 warm-up")
    builds, blocks = [], []
    for batch in batches[1:]:
        started = time.perf_counter()
        build_columns(schema.REQUESTS, batch)
        builds.append(time.perf_counter() - started)
        started = time.perf_counter()
        nativeblock.encode_block(_BLOCK_SPECS[schema.REQUESTS.name], batch)
        blocks.append(time.perf_counter() - started)
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.sinks.split(","):
            url = {"chdb": f"chdb://{tmp}/chdb", "jsonl": f"jsonl://{tmp}/jsonl"}[name]
            med = statistics.median(bench(url, batches))
            extra = (f"  (block {statistics.median(blocks) * 1e3:.1f} ms, columns {statistics.median(builds) * 1e3:.1f} ms)"
                     if name == "chdb" else "")
            print(f"{name:>6}: {args.rows / med:10,.0f} rows/s  {med * 1e3:7.1f} ms/batch{extra}")


if __name__ == "__main__":
    main()
