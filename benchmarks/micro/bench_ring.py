"""The request-log hand-off, compiled ring twin vs pure twin.

    python benchmarks/micro/bench_ring.py [--number N] [--repeat R]

Prints, per twin, the median over R runs of N records of:

1. the worker's whole cost per request: ``record.pack_record`` (the worker's own call, on a real
   RequestContext: ~1 KB request body, ~1 KB response body, Helicone user, session and three
   properties, an Authorization header to redact) + ``RecordBuffer.push``, with ``pack_record``
   alone for reference (the target is < 10 µs for both together). The record packer is the
   compiled one unless FASTGW_PURE=1;
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
from pathlib import Path

import orjson

try:
    import fastgw._native as native
except ImportError:  # not installed: run from the checkout
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "src"))
    import fastgw._native as native
from fastgw.app import context_from_raw
from fastgw.config import ProviderConfig
from fastgw.providers.table import Provider
from fastgw.requestlog.buffer import RecordBuffer, RecordDrain
from fastgw.requestlog.record import pack_record

CAPACITY = 1 << 26  # 64 MiB: room for every record of a run


def make_request():
    """A RequestContext as the stages leave it, and pack_record's other arguments: 2 KB of bodies."""
    messages = [
        {"role": "system", "content": "You are a helpful assistant that answers concisely. " * 3},
        {"role": "user", "content": "Summarise the following ticket and propose next steps: " + "lorem ipsum " * 50},
    ]
    request_body = orjson.dumps({"model": "gpt-4o-mini", "messages": messages, "temperature": 0.2, "stream": False})
    response_body = orjson.dumps({
        "id": "chatcmpl-9x8Yq3ZkQ1", "object": "chat.completion", "created": 1732380000, "model": "gpt-4o-mini",
        "choices": [{"index": 0, "finish_reason": "stop", "message": {
            "role": "assistant", "content": "The customer reports intermittent timeouts. " * 18}}],
        "usage": {"prompt_tokens": 412, "completion_tokens": 188, "total_tokens": 600},
    })
    raw = [(b"host", b"gw.internal"), (b"content-type", b"application/json"), (b"user-agent", b"OpenAI/Python 1.40.0"),
           (b"authorization", b"Bearer sk-bench"), (b"x-stainless-lang", b"python"),
           (b"helicone-user-id", b"user-1234"), (b"helicone-session-id", b"sess-9f2c"),
           (b"helicone-session-path", b"/support/triage"), (b"helicone-session-name", b"triage"),
           (b"helicone-property-environment", b"production"), (b"helicone-property-team", b"search-ranking"),
           (b"helicone-property-feature", b"ticket-summary")]
    ctx = context_from_raw(b"POST", b"/v1/chat/completions", raw, request_body[:1024], time.perf_counter_ns())
    ctx.provider = Provider.from_config("openai", ProviderConfig(base_url="https://api.openai.com"))
    ctx.upstream_path = b"/v1/chat/completions"
    ctx.upstream_ns = 801_001_000
    kw = dict(status=200, error=None, response_body=response_body[:1024], response_truncated=False,
              response_content_type="application/json", t_first_byte=time.perf_counter_ns(), client_left=False,
              body_limit=256 * 1024, omit_request=False, omit_response=False, worker=3)
    return ctx, kw


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
    ctx, kw = make_request()
    payload = pack_record(ctx, **kw)
    ring_path, spill_dir = os.path.join(directory, f"ring-{name}.shm"), os.path.join(directory, f"spill-{name}")
    buf = RecordBuffer(ring_path, spill_dir, CAPACITY, ring_cls=ring_cls)
    drain = RecordDrain(ring_path, spill_dir, ring_cls=ring_cls)

    def empty():
        while True:
            batch = drain.read_batch(5000, 1 << 30)
            batch.commit()
            if not batch.records:
                return

    def pack_push(n, pack=pack_record, push=buf.push):
        for _ in range(n):
            push(pack(ctx, **kw))

    def pack_only(n, pack=pack_record):
        for _ in range(n):
            pack(ctx, **kw)

    raw = b"r" * 2560

    def ring_push(n, push=buf.ring.push):
        for _ in range(n):
            push(raw)

    results = {
        "pack+push": runs(empty, pack_push, number, repeat),
        "pack": runs(empty, pack_only, number, repeat),
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
            push_only = r["pack+push"] - r["pack"]
            print(
                f"{name:>6} ring: pack_record+RecordBuffer.push {r['pack+push'] * 1e6:6.2f} µs/record "
                f"(pack {r['pack'] * 1e6:.2f} + push {push_only * 1e6:.2f}; record {size} B)  |  "
                f"Ring.push 2.5 KB {r['Ring.push 2.5KB'] * 1e6:6.2f} µs  |  "
                f"drain {r['drain'] / 1e6:5.2f} M records/s (batches of 5000)"
            )
    print(f"(median of {args.repeat} runs of {args.number} records; directory {base or tempfile.gettempdir()})")


if __name__ == "__main__":
    main()
