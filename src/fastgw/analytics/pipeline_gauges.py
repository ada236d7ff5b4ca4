"""The log pipeline's own health as Prometheus metrics, read at scrape time.

Why at scrape time: the numbers already exist as counters in shared memory (each worker's ring
header and control file, which the workers keep up to date without our help) and in the
exporter's stats, so there is nothing to maintain per record; a scrape reads them once.

The per-worker counters live in the ring files, so they survive an exporter restart and reset only
when a ring is created anew. The exporter's own counters (batches, sink failures, ...) belong to
its process and restart at zero with it.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from fastgw.requestlog.exporter import Exporter

# name, help, how to read it from a RecordDrain
_WORKER_COUNTERS = (
    ("fastgw_log_records_pushed", "Records a worker handed to the log (ring, spill file or dropped).", "pushed"),
    ("fastgw_log_records_exported", "Records the exporter committed: written to the sink, or parked on disk while it was down.", "exported"),
    ("fastgw_log_records_spilled", "Records written to a spill file because the ring was full.", "spilled"),
    ("fastgw_log_records_replayed", "Spilled records read back from disk and committed.", "replayed"),
    ("fastgw_log_records_dropped", "Records lost: neither the ring nor a spill file could take them.", "dropped"),
    ("fastgw_log_spill_torn_segments", "Spill files that ended in a torn or unreadable record.", "torn"),
)


class PipelineCollector(Collector):
    """Rings, spill files and the exporter's batches, as they are at the moment of the scrape."""

    def __init__(self, exporter: Exporter) -> None:
        self.exporter = exporter

    def collect(self) -> Iterator[Metric]:
        yield from self._workers()
        yield from self._exporter()

    def _workers(self) -> Iterator[Metric]:
        counters = {name: CounterMetricFamily(name, doc, labels=["worker"]) for name, doc, _ in _WORKER_COUNTERS}
        full = CounterMetricFamily("fastgw_log_ring_full", "Pushes the ring refused for lack of space.", labels=["worker"])
        pending = GaugeMetricFamily("fastgw_log_records_pending", "Records pushed and not yet committed by the "
                                    "exporter (ring and spill files; dropped ones excluded, records lost in a torn "
                                    "spill segment stay counted). Parked records count as committed: see "
                                    "fastgw_exporter_parked_records.", labels=["worker"])
        spill = GaugeMetricFamily("fastgw_log_spill_pending_records", "Spilled records not yet replayed.",
                                  labels=["worker"])
        used = GaugeMetricFamily("fastgw_log_ring_used_bytes", "Bytes of the ring not yet committed.", labels=["worker"])
        capacity = GaugeMetricFamily("fastgw_log_ring_capacity_bytes", "The ring's data bytes.", labels=["worker"])
        fill = GaugeMetricFamily("fastgw_log_ring_fill_ratio", "used / capacity.", labels=["worker"])
        # The exporter's loop may attach a drain meanwhile (or close them all at shutdown): read a
        # snapshot of the dict (sorted() copies it in one step), and skip a drain closed under us.
        for worker, drain in sorted(self.exporter.drains.items()):
            label = [str(worker)]
            try:
                values = {name: getattr(drain, attr) for name, _, attr in _WORKER_COUNTERS}
                ring = drain.ring
                ring_used, ring_capacity, ring_full = ring.used, ring.capacity, ring.full
            except (TypeError, ValueError, AttributeError):
                continue
            for name, value in values.items():
                counters[name].add_metric(label, value)
            full.add_metric(label, ring_full)
            pushed, exported, dropped = values["fastgw_log_records_pushed"], values["fastgw_log_records_exported"], \
                values["fastgw_log_records_dropped"]
            pending.add_metric(label, max(0, pushed - dropped - exported))
            spill.add_metric(label, max(0, values["fastgw_log_records_spilled"] - values["fastgw_log_records_replayed"]))
            used.add_metric(label, ring_used)
            capacity.add_metric(label, ring_capacity)
            fill.add_metric(label, ring_used / ring_capacity if ring_capacity else 0.0)
        yield from counters.values()
        yield from (full, pending, spill, used, capacity, fill)

    def _exporter(self) -> Iterator[Metric]:
        e = self.exporter
        s = e.stats
        for name, doc, value in (
            ("fastgw_exporter_batches", "Batches written and committed.", s.batches),
            ("fastgw_exporter_rows_exported", "Rows written and committed, by this exporter process.", s.exported),
            ("fastgw_exporter_sink_failures", "Sink writes that failed (the batch is retried after a backoff).",
             s.sink_failures),
            ("fastgw_exporter_records_parked", "Records moved from the rings to parked files while the sink was down "
             "(the rings count them as exported).", e.parked.parked),
            ("fastgw_exporter_records_unparked", "Records of parked files the sink took.", e.parked.unparked),
            ("fastgw_exporter_park_failures", "Parked files that could not be written (the records stayed in the rings).",
             s.park_failures),
            ("fastgw_exporter_parked_files_lost", "Parked files unreadable or damaged on disk.", e.parked.lost),
            ("fastgw_exporter_records_rejected", "Records the sink refused as invalid (kept in the rejected file).",
             s.rejected),
            ("fastgw_exporter_observer_failures", "Committed batches an observer (metrics, traces) failed on.",
             getattr(s, "observer_failures", 0)),
            ("fastgw_exporter_rows_counted", "Rows whose tokens were counted by the gateway (the provider gave no usage).",
             e.enricher.counted),
            ("fastgw_exporter_rows_unpriced", "Rows without a price (model or provider missing from the table).",
             e.enricher.unpriced),
        ):
            yield CounterMetricFamily(name, doc, value=value)
        # _backoff: the exporter's current wait before it tries a failed sink again (0: healthy).
        yield GaugeMetricFamily("fastgw_exporter_backoff_seconds", "The wait before the sink is tried again "
                                "(0 while writes succeed).", value=getattr(e, "_backoff", 0.0))
        yield GaugeMetricFamily("fastgw_exporter_parked_files", "Parked files waiting for the sink.",
                                value=e.parked.pending)
        yield GaugeMetricFamily("fastgw_exporter_parked_records", "Records in parked files waiting for the sink "
                                "(moved there from the rings while the sink was down).", value=e.parked.pending_records)
        yield GaugeMetricFamily("fastgw_exporter_workers_attached", "Worker rings the exporter is draining.",
                                value=len(e.drains))
