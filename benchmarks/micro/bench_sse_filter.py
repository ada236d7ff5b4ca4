"""The worker's SSE filter (stream/sse.UsageChunkFilter) per event, on one core.

    .venv/bin/python benchmarks/micro/bench_sse_filter.py [--events 20000]

When the gateway asked a stream for its usage, every event of the answer passes the filter: an
OpenAI chunk as the API sends it in that mode (with ``"usage":null``), one event a feed as a
stream arrives at the pace of its tokens, and the same chunk without the member (a stream the
gateway didn't change). CPU time, best of five passes, pinned to core 1. Run with FASTGW_PURE=1
for the module as Python rather than compiled.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "src"))
from fastgw.stream import sse  # noqa: E402

EVENT = (b'data: {"id":"chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT","object":"chat.completion.chunk",'
         b'"created":1741570283,"model":"gpt-4o-mini-2024-07-18","service_tier":"default",'
         b'"system_fingerprint":"fp_06737a9306","choices":[{"index":0,"delta":{"content":" hello"},'
         b'"logprobs":null,"finish_reason":null}],"usage":null}\n\n')


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=20_000)
    n = ap.parse_args().events
    os.sched_setaffinity(0, {1})
    print(f"{sse.__file__.rsplit('/', 1)[-1]}: µs per event, one event a feed")
    for name, event in (("with \"usage\":null (asked)", EVENT), ("without (not asked)", EVENT.replace(b',"usage":null', b""))):
        best = float("inf")
        for _ in range(5):
            f = sse.UsageChunkFilter()
            started = time.process_time()
            for _ in range(n):
                f.feed(event)
            best = min(best, (time.process_time() - started) / n * 1e6)
        print(f"  {name:28s} {best:5.2f}")


if __name__ == "__main__":
    main()
