"""The request-log hand-off, compiled ring twin vs pure twin.

    python benchmarks/micro/bench_ring.py [--number N] [--repeat R]

Prints, per twin, the median over R runs of N records of:

1. the worker's whole cost per request: ``orjson.dumps(record)`` + ``RecordBuffer.push`` for a
   realistic record (about 40 fields, ~1 KB request body and ~1 KB response body), with
   ``orjson.dumps`` alone for reference (the target is < 10 µs for both together);
2. ``Ring.push`` of a 2.5 KB bytes object alone;
3. the exporter's drain: records/s through ``RecordDrain.read_batch(5000, ...)`` + ``commit``.

The rings live in /dev/shm when it exists (as in production), else in the temp directory. The
ring is drained between runs, outside the timing, so no run spills.
"""
import argparse
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import orjson

try:
    import fastgw._native as native
    from fastgw.requestlog.buffer import RecordBuffer, RecordDrain
except ImportError:  # not installed: run from the checkout
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "src"))
    import fastgw._native as native
    from fastgw.requestlog.buffer import RecordBuffer, RecordDrain

CAPACITY = 1 << 26  # 64 MiB: room for every record of a run


def make_record():
    """A request-log record as RequestLogger builds it: ~40 fields, 2 KB of bodies."""
    messages = [
        {"role": "system", "content": "You are a helpful assistant that answers concisely. " * 3},
        {"role": "user", "content": "Summarise the following ticket and propose next steps: " + "lorem ipsum " * 50},
    ]
    request_body = orjson.dumps({"model": "gpt-4o-mini", "messages": messages, "temperature": 0.2, "stream": False})
    request_body = request_body[:1024].decode("utf-8", "replace")
    response_body = orjson.dumps({
        "id": "chatcmpl-9x8Yq3ZkQ1", "object": "chat.completion", "created": 1732380000, "model": "gpt-4o-mini",
        "choices": [{"index": 0, "finish_reason": "stop", "message": {
            "role": "assistant", "content": "The customer reports intermittent timeouts. " * 18}}],
        "usage": {"prompt_tokens": 412, "completion_tokens": 188, "total_tokens": 600},
    })[:1024].decode("utf-8", "replace")
    return {
        "kind": "request", "request_id": str(uuid.uuid4()), "created_at_ms": 1732380000123,
        "total_us": 812345, "ttfb_us": 402311, "upstream_us": 801001, "gateway_us": 311,
        "method": "POST", "path": "/v1/chat/completions", "provider": "openai", "format": "openai",
        "target_url": "https://api.openai.com/v1/chat/completions", "status": 200,
        "error_type": "", "error_message": "", "client_left": False, "usage_injected": False,
        "user_id": "user-1234", "session_id": "sess-9f2c", "session_path": "/support/triage",
        "session_name": "triage", "omit_request": False, "omit_response": False,
        "properties": {"environment": "production", "team": "search-ranking", "feature": "ticket-summary"},
        "request_body": request_body, "request_truncated": False,
        "request_headers": {"content-type": "application/json", "user-agent": "OpenAI/Python 1.40.0",
                            "authorization": "[redacted]", "x-stainless-lang": "python"},
        "response_body": response_body, "response_truncated": False, "response_content_type": "application/json",
        "model": "gpt-4o-mini", "stream": False, "cache_hit": False, "cache_key": "",
        "retries": 0, "fallback_index": 0, "rate_limited": False, "worker": 3, "upstream_status": 200,
        "prompt_tokens": 412, "completion_tokens": 188, "gateway_version": "0.1.0", "client_ip": "10.0.3.17",
    }


def runs(prepare, body, number, repeat):
    """Median seconds per operation of ``body`` (called ``number`` times), ``prepare`` untimed."""
    out = []
    for _ in range(repeat):
        prepare()
        t0 = time.perf_counter()
        body(number)
        out.append((time.perf_counter() - t0) / number)
    return statistics.median(out)


def bench_twin(name, ring_cls, directory, number, repeat):
    record = make_record()
    payload = orjson.dumps(record)
    ring_path, spill_dir = os.path.join(directory, f"ring-{name}.shm"), os.path.join(directory, f"spill-{name}")
    buf = RecordBuffer(ring_path, spill_dir, CAPACITY, ring_cls=ring_cls)
    drain = RecordDrain(ring_path, spill_dir, ring_cls=ring_cls)

    def empty():
        while True:
            batch = drain.read_batch(5000, 1 << 30)
            batch.commit()
            if not batch.records:
                return

    def dumps_push(n, dumps=orjson.dumps, push=buf.push):
        for _ in range(n):
            push(dumps(record))

    def dumps_only(n, dumps=orjson.dumps):
        for _ in range(n):
            dumps(record)

    raw = b"r" * 2560

    def ring_push(n, push=buf.ring.push):
        for _ in range(n):
            push(raw)

    results = {
        "dumps+push": runs(empty, dumps_push, number, repeat),
        "dumps": runs(empty, dumps_only, number, repeat),
        "Ring.push 2.5KB": runs(empty, ring_push, number, repeat),
    }
    assert buf.spilled == 0 and buf.dropped == 0, buf

    drained = []
    for _ in range(repeat):
        empty()
        for _ in range(number * 4):
            buf.push(payload)
        t0 = time.perf_counter()
        count = 0
        while True:
            batch = drain.read_batch(5000, 1 << 30)
            if not batch.records:
                break
            count += len(batch.records)
            batch.commit()
        drained.append(count / (time.perf_counter() - t0))
    results["drain"] = statistics.median(drained)
    buf.close(), drain.close()
    return len(payload), results


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--number", type=int, default=5000, help="records per run")
    parser.add_argument("--repeat", type=int, default=9, help="runs")
    args = parser.parse_args()

    try:
        compiled = native.load(pure=False, name="ring")
    except ImportError:
        sys.exit("the extension is not built: python setup.py build_ext --inplace")
    twins = (("cython", compiled.Ring), ("pure", native.load(pure=True, name="ring").Ring))
    base = "/dev/shm" if os.path.isdir("/dev/shm") else None
    with tempfile.TemporaryDirectory(prefix="fastgw-bench-", dir=base) as directory:
        for name, ring_cls in twins:
            size, r = bench_twin(name, ring_cls, directory, args.number, args.repeat)
            push_only = r["dumps+push"] - r["dumps"]
            print(
                f"{name:>6}: orjson.dumps+RecordBuffer.push {r['dumps+push'] * 1e6:6.2f} µs/record "
                f"(dumps {r['dumps'] * 1e6:.2f} + push {push_only * 1e6:.2f}; record {size} B)  |  "
                f"Ring.push 2.5 KB {r['Ring.push 2.5KB'] * 1e6:6.2f} µs  |  "
                f"drain {r['drain'] / 1e6:5.2f} M records/s (batches of 5000)"
            )
    print(f"(median of {args.repeat} runs of {args.number} records; directory {base or tempfile.gettempdir()})")


if __name__ == "__main__":
    main()
