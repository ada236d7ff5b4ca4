"""The exporter process: drains every worker's ring (then its spill files), enriches, writes to the sink.

It is a plain loop in its own process, started and watched by ``fastgw serve``, so nothing it
does (parsing, counting, pricing, the sink's I/O) ever touches a worker's event loop.

Batches are cut by age (``batch_max_age``), by what is waiting in the rings (about
``batch_max_records`` records) or when a ring is half full, decided before reading, so a record
is read once per attempt.
A batch is committed to the rings only after the sink took it: a sink that is down or slow makes
the exporter back off and try the same batch again (with the same deduplication id), while the
workers' rings fill and then spill to disk. Killed at any point, a restarted exporter re-reads
from the last commit: at least once, and the sink's ReplacingMergeTree keeps counts exact.

On SIGTERM it stops waiting for batches to fill, drains every ring and spill file to the sink,
and exits.
"""

from __future__ import annotations

import gc
import hashlib
import logging
import os
import signal
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import orjson

from fastgw.analytics.observers import observers_for
from fastgw.config import Config
from fastgw.requestlog.buffer import RecordDrain
from fastgw.requestlog.enrich import Enricher
from fastgw.requestlog.paths import LogPaths
from fastgw.requestlog.prices import PriceTable
from fastgw.requestlog.record import decode_record
from fastgw.requestlog.sinks.base import Sink, SinkError, SinkOptions, make_sink

log = logging.getLogger("fastgw.exporter")

IDLE_SLEEP = 0.02  # between looks at the rings when nothing is due
MAX_BACKOFF = 30.0
# Rows per sink write. Fewer, larger parts cost ClickHouse less to write and to merge: 5,000 instead
# of 2,500 took the rings -> chDB rate on one core from 24.7k to 27.2k records/s, while 10,000 (with
# 10,000-record batches) fell to 20.3k (bench_logging.py --only rings --quick --rates 50000).
WRITE_CHUNK = 5000
SHUTDOWN_DEADLINE = 60.0  # the longest a SIGTERM drain may take before giving up (records stay on disk)


@dataclass
class ExporterStats:
    exported: int = 0
    batches: int = 0
    sink_failures: int = 0
    rejected: int = 0  # records the sink refused as invalid, written to the rejected file
    observer_failures: int = 0  # committed batches an observer (metrics, traces) raised on


class Exporter:
    def __init__(self, config: Config, paths: LogPaths, workers: int) -> None:
        self.config = config
        self.lc = config.logging
        self.paths = paths
        self.workers = workers
        self.drains: dict[int, RecordDrain] = {}
        self.prices = PriceTable.load(self.lc.prices_file)
        self.enricher = Enricher(self.prices)
        self.sink: Sink | None = None
        self.stats = ExporterStats()
        self.stopping = False
        self._backoff = 0.0
        self._full_batch = False
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="fastgw-sink")
        # Each committed batch's rows go to the observers (Prometheus metrics, OTel traces);
        # self.metrics.render() is what the admin server's GET /metrics serves (None: metrics off).
        self.metrics, self.observers = observers_for(config, self)

    # --- lifecycle ---------------------------------------------------------------------------

    def run(self) -> None:
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        last_flush = time.monotonic()
        deadline: float | None = None
        while True:
            self._attach_drains()
            if self.stopping and deadline is None:
                deadline = time.monotonic() + SHUTDOWN_DEADLINE
            if not (self.stopping or self._batch_due(last_flush)):
                time.sleep(IDLE_SLEEP)
                continue
            written = self.flush_once()
            last_flush = time.monotonic()
            if self.stopping and (written == 0 or (deadline is not None and time.monotonic() > deadline)):
                break
            if self._backoff:
                time.sleep(self._backoff)
        self.close()

    def _on_signal(self, signum: int, frame: object) -> None:
        self.stopping = True

    def close(self) -> None:
        for drain in self.drains.values():
            drain.close()
        self.drains.clear()
        self._writer.shutdown(wait=True)
        if self.sink is not None:
            self.sink.close()
            self.sink = None
        self._close_observers()
        log.info("exporter stopped: %d records in %d batches, %d sink failures", self.stats.exported,
                 self.stats.batches, self.stats.sink_failures)

    # --- one batch ---------------------------------------------------------------------------

    def flush_once(self) -> int:
        """One batch (see ``_flush_batch``), with Python's cyclic garbage collector paused.

        A batch allocates tens of thousands of dicts and strings (decoded records, rows, columns)
        that die by reference counting alone, yet each 700 of them trigger a collection pass that
        walks the live ones: about 4 µs of the exporter's CPU per record. The collector runs again
        as soon as the batch is done, so cycles made elsewhere in the process are still reclaimed.
        """
        with _collector_paused():
            return self._flush_batch()

    def _flush_batch(self) -> int:
        """Read what is waiting (up to a batch), write it, commit it. Returns the records written.

        The batch goes to the sink in chunks, each written on the sink thread while this thread
        enriches the next: chDB and the HTTP client release the GIL while ClickHouse works, so the
        engine's time overlaps ours. Nothing is committed unless every chunk was written; a chunk
        written before a failure is written again on the retry, under the same deduplication id
        (its rows decide it), and ReplacingMergeTree keeps one copy either way.
        """
        if not self._open_sink():
            return 0
        batches = []
        records: list[tuple[bytes, int]] = []
        room = self.lc.batch_max_records
        for worker, drain in sorted(self.drains.items()):
            if room <= 0:
                break
            batch = drain.read_batch(room, 64 * 1024 * 1024)
            if not batch.records:
                continue
            batches.append(batch)
            room -= len(batch.records)
            records.extend((raw, worker) for raw in batch.records)
        self._full_batch = room <= 0
        if not batches:
            return 0
        written = 0
        chunks: list[list[dict[str, Any]]] = []  # the batch's rows, for the observers once committed
        in_flight: Future[None] | None = None
        try:
            for start in range(0, len(records), WRITE_CHUNK):
                rows = [row for raw, worker in records[start : start + WRITE_CHUNK]
                        if (row := self._row(raw, worker)) is not None]
                if in_flight is not None:
                    in_flight.result()
                    in_flight = None
                if rows:
                    in_flight = self._writer.submit(self._write, rows, _batch_id(rows))
                    written += len(rows)
                    chunks.append(rows)
            if in_flight is not None:
                in_flight.result()
        except SinkError as exc:
            self._failed(exc)
            return 0  # nothing committed: the same records are read again next time
        for batch in batches:
            batch.commit()
        self._backoff = 0.0
        self.stats.exported += written
        self.stats.batches += 1
        self._observe(chunks)
        self.prices.reload_if_changed()
        return written

    def _write(self, rows: list[dict[str, Any]], batch_id: str) -> None:
        assert self.sink is not None
        try:
            self.sink.write(rows, batch_id)
        except SinkError:
            raise
        except Exception as exc:  # the sink refused the data itself: find the bad rows, keep the rest
            log.error("sink refused a batch (%s); writing its rows one by one", exc)
            for row in rows:
                try:
                    self.sink.write([row], f"{batch_id}-{row.get('request_id', '')}")
                except SinkError:
                    raise
                except Exception as row_exc:
                    self._reject(row, row_exc)

    def _row(self, raw: bytes, worker: int) -> dict[str, Any] | None:
        try:
            return self.enricher.row(decode_record(raw))
        except Exception as exc:
            self._reject({"worker": worker, "raw": raw.decode("utf-8", "replace")}, exc)
            return None

    def _reject(self, row: dict[str, Any], exc: Exception) -> None:
        """A record that can never be written: kept in a file for a human, never silently lost."""
        self.stats.rejected += 1
        log.error("request log: record rejected (%s); kept in %s", exc, self.paths.rejected_file)
        with open(self.paths.rejected_file, "ab") as f:
            f.write(orjson.dumps({"error": str(exc), "record": row}, default=str) + b"\n")

    def _failed(self, exc: SinkError) -> None:
        self.stats.sink_failures += 1
        self._backoff = min(MAX_BACKOFF, max(0.1, self._backoff * 2))
        log.warning("sink write failed (%s); retrying in %.1fs", exc, self._backoff)
        if self.stopping:
            self._backoff = min(self._backoff, 1.0)

    def _observe(self, chunks: list[list[dict[str, Any]]]) -> None:
        """Committed rows to each observer; one that fails is logged and counted, never fatal."""
        for observer in self.observers:
            try:
                for rows in chunks:
                    observer.observe(rows)
            except Exception:
                self.stats.observer_failures += 1
                log.exception("observer %r failed on a committed batch", observer)

    def _close_observers(self) -> None:
        for observer in self.observers:
            try:
                observer.close()
            except Exception:
                log.exception("observer %r failed to close", observer)

    # --- attachments -------------------------------------------------------------------------

    def _open_sink(self) -> bool:
        if self.sink is not None:
            return True
        try:
            sink = make_sink(self.lc.sink, SinkOptions(body_ttl_days=self.lc.body_ttl_days))
            sink.open()
        except SinkError as exc:
            self._failed(exc)
            return False
        self.sink = sink
        return True

    def _attach_drains(self) -> None:
        """Workers create their rings when they start; pick each up as soon as it exists."""
        for worker in range(self.workers):
            if worker in self.drains:
                continue
            ring = self.paths.ring_file(worker)
            if not os.path.exists(ring):
                continue
            try:
                self.drains[worker] = RecordDrain(ring, self.paths.spill_dir(worker))
            except (FileNotFoundError, ValueError) as exc:
                log.debug("ring %s not ready yet: %s", ring, exc)

    def _batch_due(self, last_flush: float) -> bool:
        return (
            time.monotonic() - last_flush >= self.lc.batch_max_age
            or self._full_batch  # the last batch was full: more is waiting (rings or spill files)
            or self._waiting_records() >= self.lc.batch_max_records
            # A batch's worth may not fit in one worker's ring: don't wait for it while the ring fills.
            or any(d.ring.used * 2 >= d.ring.capacity for d in self.drains.values())
        )

    def _waiting_records(self) -> int:
        """Records in the rings not yet exported (spill files aside: they are read when due)."""
        return sum(max(0, d.ring.pushed - d.ring_exported) for d in self.drains.values())


@contextmanager
def _collector_paused() -> Iterator[None]:
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _batch_id(rows: list[dict[str, Any]]) -> str:
    """The same rows give the same id, so a retried batch is deduplicated by the sink."""
    h = hashlib.blake2b(digest_size=16)
    for row in rows:
        h.update(str(row.get("request_id", "")).encode())
        h.update(str(row.get("kind", "")).encode())
    return h.hexdigest()


def run_exporter(config: Config, paths: LogPaths, workers: int) -> None:
    """The exporter process's entry point."""
    logging.getLogger("fastgw").setLevel(logging.INFO)
    if config.logging.exporter_nice:
        try:
            os.nice(config.logging.exporter_nice)
        except OSError as exc:
            log.warning("could not lower the exporter's priority: %s", exc)
    # A SIGTERM that arrives while the Exporter is being built (imports, observers) is kept: the
    # handler inherited from the supervisor would swallow it, and run() would never stop.
    early: list[int] = []
    signal.signal(signal.SIGTERM, lambda signum, frame: early.append(signum))
    exporter = Exporter(config, paths, workers)
    signal.signal(signal.SIGTERM, exporter._on_signal)
    exporter.stopping = exporter.stopping or bool(early)
    from fastgw.analytics.admin_server import start_admin

    admin = start_admin(config.admin, config.logging.sink, exporter.metrics)
    try:
        exporter.run()
    finally:
        if admin is not None:
            admin.stop()
