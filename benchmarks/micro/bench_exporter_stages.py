"""Where the exporter's CPU per record goes, stage by stage, on one core.

    .venv/bin/python benchmarks/micro/bench_exporter_stages.py [--records 60000] [--chunk 5000]

The benchmark's realistic records (log_records.py: 1 KB of bodies, a quarter of them streams) go
through each stage of ``Exporter.flush_once`` in turn, pinned to core 1: decoding the ring record,
enrichment (usage, cost, the row), the Prometheus observer, the batch id, the Native block, and
chDB's insert of those blocks, then 4 s more for its background merges. Then the path the
exporter takes (``prepare_part``: all but chDB, in pieces), and the same with each part whole. CPU time of the whole
process (chDB's threads included), so the stages add up to what one core can do; the Python
stages report the best of three passes, chDB's single pass is into a fresh folder.
"""
from __future__ import annotations

import argparse
import gc
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "src"))
from log_records import make_records  # noqa: E402

from fastgw._native import nativeblock  # noqa: E402
from fastgw.analytics.metrics import GatewayMetrics  # noqa: E402
from fastgw.config import MetricsConfig  # noqa: E402
from fastgw.requestlog import prepare_helpers  # noqa: E402
from fastgw.requestlog.enrich import Enricher  # noqa: E402
from fastgw.requestlog.exporter import _batch_id  # noqa: E402
from fastgw.requestlog.prices import PriceTable  # noqa: E402
from fastgw.requestlog.record import decode_record  # noqa: E402
from fastgw.requestlog.sinks.clickhouse import _BLOCK_SPECS, INSERT_SETTINGS, ClickHouseSink, encode_native  # noqa: E402


def best_cpu(n: int, fn: Callable[[], Any], passes: int = 3) -> tuple[float, Any]:
    best, out = float("inf"), None
    for _ in range(passes):
        started = time.process_time()
        out = fn()
        best = min(best, time.process_time() - started)
    return best / n * 1e6, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--records", type=int, default=60_000)
    ap.add_argument("--chunk", type=int, default=5000, help="rows per insert (the exporter's WRITE_CHUNK)")
    args = ap.parse_args()
    n, chunk = args.records, args.chunk
    os.sched_setaffinity(0, {1})
    records = make_records(n, body_bytes=1024)
    enricher = Enricher(PriceTable.load(None))
    spec = _BLOCK_SPECS["requests"]
    gc.disable()  # as flush_once runs
    figures: dict[str, float] = {}
    figures["decode"], raws = best_cpu(n, lambda: [decode_record(r) for r in records])
    figures["decode + enrich"], rows = best_cpu(n, lambda: [enricher.row(decode_record(r)) for r in records])
    figures["enrich"] = figures["decode + enrich"] - figures["decode"]
    figures["metrics observer"], _ = best_cpu(n, lambda: GatewayMetrics(MetricsConfig()).observe(rows))
    figures["batch id"], _ = best_cpu(n, lambda: [_batch_id(rows[i:i + chunk]) for i in range(0, n, chunk)])
    figures["Native block"], blocks = best_cpu(
        n, lambda: [nativeblock.encode_block(spec, rows[i:i + chunk]) for i in range(0, n, chunk)])
    # The exporter's own path: prepare_part over parts of half a chunk (one prepare helper), in
    # pieces of PIECE records, then the same with each part in one piece.
    part = chunk // 2
    piece = prepare_helpers.PIECE

    def parts() -> None:
        for i in range(0, n, part):
            prepare_helpers.prepare_part(enricher, records[i:i + part], encode_native, True)

    figures[f"prepare_part, pieces of {piece}"], _ = best_cpu(n, parts)
    prepare_helpers.PIECE = part
    figures["prepare_part, one piece"], _ = best_cpu(n, parts)
    prepare_helpers.PIECE = piece
    gc.enable()
    with tempfile.TemporaryDirectory(prefix="fastgw-bench-stages-") as tmp:
        sink = ClickHouseSink(chdb_path=os.path.join(tmp, "chdb"))
        sink.open()
        try:
            names = [c[0] for c in spec]
            started = time.process_time()
            for block in blocks:
                sink.client.raw_insert("fastgw.requests", names, insert_block=block, fmt="Native",
                                       settings=dict(INSERT_SETTINGS))
            inserted = time.process_time()
            time.sleep(4.0)
            merged = time.process_time()
        finally:
            sink.close()
    figures["chDB insert"] = (inserted - started) / n * 1e6
    figures["chDB insert + 4 s of merges"] = (merged - started) / n * 1e6
    print(f"{n} records ({sum(map(len, records)) / n:.0f} B each), {chunk} rows per insert, "
          f"CPU µs per record on core 1 (Native block encoder: "
          f"{'compiled' if nativeblock.__file__.endswith('.so') else 'pure'})")
    for name in ("decode", "enrich", "metrics observer", "batch id", "Native block", "chDB insert",
                 "chDB insert + 4 s of merges"):
        print(f"  {name:30s} {figures[name]:6.1f}")
    total = sum(figures[k] for k in ("decode + enrich", "metrics observer", "batch id", "Native block",
                                     "chDB insert + 4 s of merges"))
    print(f"  {'sum (one core)':30s} {total:6.1f}  -> at most {1e6 / total:,.0f} records/s")
    print(f"The exporter's path (decode, enrich, metric totals, ids, Native blocks), parts of {part}:")
    for name in (f"prepare_part, pieces of {piece}", "prepare_part, one piece"):
        print(f"  {name:30s} {figures[name]:6.1f}")
    total = figures[f"prepare_part, pieces of {piece}"] + figures["chDB insert + 4 s of merges"]
    print(f"  {'with chDB (one core)':30s} {total:6.1f}  -> at most {1e6 / total:,.0f} records/s")


if __name__ == "__main__":
    main()
