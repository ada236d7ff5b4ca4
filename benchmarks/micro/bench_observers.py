"""What the exporter's observers add per record: Prometheus metrics, and OTel spans when on.

    python benchmarks/micro/bench_observers.py [--rows 50000] [--reps 5]

The rows are real enriched rows: benchmarks/log_records.py's raw records (the chat-heavy mix, ~1 KB
of bodies) run through the exporter's Enricher once, before timing; a quarter of them are then
given other statuses, cache hits and rate-limit refusals so every branch of the metrics fold runs.
Each figure is the median of --reps passes over all rows in exporter-sized chunks (2500 rows), in
process CPU time (all threads: the span processor's included), divided by the rows. Enrichment
itself is timed the same way as the yardstick.

OTel is timed with the real TracerProvider and BatchSpanProcessor; its span exporter encodes each
batch to the OTLP protobuf, as the HTTP exporter does, and drops it instead of POSTing it (the
network send is not counted).
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

try:
    from fastgw.analytics.metrics import GatewayMetrics
except ImportError:  # not installed: run from the checkout
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "src"))
    from fastgw.analytics.metrics import GatewayMetrics
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.trace.export import SpanExporter as SDKSpanExporter
from opentelemetry.sdk.trace.export import SpanExportResult

from fastgw.analytics.otel import SpanExporter
from fastgw.config import MetricsConfig, OtelConfig
from fastgw.requestlog.enrich import Enricher
from fastgw.requestlog.prices import PriceTable
from fastgw.requestlog.record import decode_record

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from log_records import make_records

CHUNK = 2500


class EncodeAndDrop(SDKSpanExporter):
    """Does the OTLP/HTTP exporter's CPU work (protobuf encoding), not its network I/O."""

    def __init__(self) -> None:
        self.bytes = 0

    def export(self, spans: Any) -> SpanExportResult:
        self.bytes += len(encode_spans(spans).SerializeToString())
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        pass


def rows_for(count: int) -> tuple[list[dict[str, Any]], float]:
    enricher = Enricher(PriceTable.load(None))
    raws = [decode_record(r) for r in make_records(count)]
    t = time.process_time()
    rows = [enricher.row(r) for r in raws]
    enrich_us = (time.process_time() - t) / count * 1e6
    for i, row in enumerate(rows):
        if i % 4 == 1:
            row["status"], row["error_type"] = (500, "") if i % 8 == 1 else (429, "rate_limit_exceeded")
        elif i % 4 == 2:
            row["cache_status"] = "hit" if i % 8 == 2 else "miss"
    return rows, enrich_us


def per_row(rows: list[dict[str, Any]], make: Callable[[], Any], reps: int) -> float:
    times = []
    for _ in range(reps):
        observer = make()
        t = time.process_time()
        for start in range(0, len(rows), CHUNK):
            observer.observe(rows[start : start + CHUNK])
        if hasattr(observer, "flush"):
            observer.flush()
        times.append(time.process_time() - t)
        observer.close()
    return statistics.median(times) / len(rows) * 1e6


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=50_000)
    ap.add_argument("--reps", type=int, default=5)
    args = ap.parse_args()
    rows, enrich_us = rows_for(args.rows)
    print(f"{args.rows} enriched rows; enrichment itself: {enrich_us:.1f} us/row (once)")
    metrics_us = per_row(rows, lambda: GatewayMetrics(MetricsConfig(), ["openai", "anthropic"]), args.reps)
    print(f"metrics observe:            {metrics_us:6.2f} us/row")
    m = GatewayMetrics(MetricsConfig(), ["openai"])
    m.observe(rows)
    t = time.perf_counter()
    _, body = m.render()
    print(f"metrics render:             {(time.perf_counter() - t) * 1e3:6.2f} ms for {len(body)} bytes")
    for capture in (False, True):
        otel_us = per_row(rows, lambda capture=capture: SpanExporter(OtelConfig(enabled=True, capture_content=capture), EncodeAndDrop()),
                          max(1, args.reps // 2))
        print(f"otel observe (content {'on' if capture else 'off'}): {otel_us:6.2f} us/row (spans built, encoded, dropped)")


if __name__ == "__main__":
    main()
