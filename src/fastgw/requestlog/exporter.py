"""The exporter process: drains every worker's ring (then its spill files), enriches, writes to the sink.

It is a plain loop in its own process, started and watched by ``fastgw serve``, so nothing it
does (parsing, counting, pricing, the sink's I/O) ever touches a worker's event loop.

Batches are cut by age (``batch_max_age``), by what is waiting in the rings (about
``batch_max_records`` records) or when a ring is half full, decided before reading, so a record
is read once per attempt.
Two batches are in progress at a time: while the sink thread writes one (chDB and the HTTP client
release the GIL while ClickHouse works), this thread reads the next from the rings, ahead of the
uncommitted one, and decodes, enriches and encodes it.
A batch is committed to the rings only after the sink took it: a sink that is down or slow makes
the exporter back off and try the same batch again (with the same deduplication id). Until the
next try it parks each batch that comes due in a file on disk (``parking.py``), so the workers'
rings stay empty and no worker spills on its request path; once the sink takes writes again,
parked files and the rings take turns. Killed at any point, a restarted exporter re-reads from the last
commit (parked files included): at least once, and the sink's ReplacingMergeTree keeps counts exact.

On SIGTERM it stops waiting for batches to fill, drains every ring and spill file to the sink,
and exits.
"""

from __future__ import annotations

import gc
import hashlib
import logging
import math
import os
import signal
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import orjson

from fastgw.analytics.observers import observers_for
from fastgw.config import Config
from fastgw.requestlog.buffer import Batch, RecordDrain
from fastgw.requestlog.enrich import Enricher
from fastgw.requestlog.parking import ParkedBatch, ParkedStore
from fastgw.requestlog.paths import LogPaths
from fastgw.requestlog.prepare_helpers import PIECE, PartResult, PrepareHelpers, prepare_part, row_ids
from fastgw.requestlog.prices import PriceTable
from fastgw.requestlog.priority import lower_priority
from fastgw.requestlog.record import rejected_entry
from fastgw.requestlog.sinks.base import Sink, SinkError, SinkOptions, make_sink

log = logging.getLogger("fastgw.exporter")

IDLE_SLEEP = 0.02  # between looks at the rings when nothing is due
# ... and when they were empty at the last look: a resting exporter woke 50 times a second, about
# 135 µs of CPU each (7 ms a second). A burst that starts meanwhile waits for the next look, and a
# 64 MiB ring holds 0.2 s of 50,000 records/s of 2 KB three times over (it is half full at 16,000).
IDLE_SLEEP_EMPTY = 0.2
MAX_BACKOFF = 30.0
# Rows per sink write. Fewer, larger parts cost ClickHouse less to write and to merge: 5,000 instead
# of 2,500 took the rings -> chDB rate on one core from 24.7k to 27.2k records/s, while 10,000 (with
# 10,000-record batches) fell to 20.3k (bench_logging.py --only rings --quick --rates 50000).
WRITE_CHUNK = 5000
# A chunk this large goes to the prepare helpers (when there are any): the exporter has work queued.
# Smaller ones are prepared in-process, so a lightly loaded exporter never wakes or starts a helper.
HELPED_MIN_RECORDS = 2000
# The most one batch reads from one worker's ring or spill files (the first record always comes),
# whether the batch goes to the sink or is parked.
READ_MAX_BYTES = 64 * 1024 * 1024
# A park that failed (the disk) is tried again after this long; meanwhile the rings hold the records.
PARK_RETRY = 1.0
SHUTDOWN_DEADLINE = 60.0  # the longest a SIGTERM drain may take before giving up (records stay on disk)
# How long a stopping exporter retries a sink that keeps failing: long enough for a blip, short
# enough that a shutdown with the sink down doesn't hang (the records stay on disk for next time).
STOP_SINK_PATIENCE = 5.0


_REFUSED = object()  # a chunk the sink's prepare refused: written row by row, bad rows rejected
_Rejected = tuple[dict[str, Any], Exception]  # a record the exporter or the sink refused, and why


class _Chunk(NamedTuple):
    """One sink write: the rows, as the sink's prepare encoded them, under a deduplication id.

    A chunk prepared with helpers (prepare_helpers) has no rows here: its metric totals come
    folded, and the records themselves are kept in case the sink refuses the chunk whole."""

    rows: list[dict[str, Any]] | None
    prepared: Any
    batch_id: str
    count: int
    totals: Sequence[Any] = ()  # metrics.fold_rows of each part, for a chunk without rows
    raws: Sequence[tuple[bytes, int]] = ()  # (record, worker), for a chunk without rows


@dataclass
class _Flight:
    """A batch read, enriched and encoded, then written by the sink thread; committed by ``settle``."""

    batches: list[tuple[int, Batch | ParkedBatch]]  # (worker, batch) in read order: parked files, or the rings
    chunks: list[_Chunk] = field(default_factory=list)
    futures: list[Future[None]] = field(default_factory=list)
    rejected: list[_Rejected] = field(default_factory=list)  # kept once the batch is committed

    @property
    def rows(self) -> int:
        return sum(chunk.count for chunk in self.chunks)

    @property
    def ring_records(self) -> int:
        """Read from the rings but no longer waiting there: ``_batch_due`` leaves them out."""
        return sum(len(b.records) for _, b in self.batches if b.from_ring)


@dataclass
class ExporterStats:
    exported: int = 0
    batches: int = 0
    sink_failures: int = 0
    park_failures: int = 0  # parked files that could not be written (the records stayed in the rings)
    rejected: int = 0  # records the sink refused as invalid, written to the rejected file
    observer_failures: int = 0  # committed batches an observer (metrics, traces) raised on
    idle_waits: int = 0  # looks at the rings that found no batch due (the loop's wake-ups at rest)


class Exporter:
    def __init__(self, config: Config, paths: LogPaths, workers: int) -> None:
        self.config = config
        self.lc = config.logging
        self.paths = paths
        self.workers = workers
        # The workers' session, taken before this process may leave it for one of its own
        # (priority.own_autogroup): with the parent, what tells a worker from a recycled pid.
        self._workers_session = os.getsid(0)
        self.drains: dict[int, RecordDrain] = {}
        self.parked = ParkedStore(paths.parked_dir)
        self.prices = PriceTable.load(self.lc.prices_file)
        self.enricher = Enricher(self.prices)
        # The sink thread's own table, for the rare chunk it enriches again (``_write``): loaded now,
        # while the file is known to parse; later it reloads as the exporter's does, keeping the
        # last good table when the file is broken.
        self._sink_prices = PriceTable.load(self.lc.prices_file)
        self.sink: Sink | None = None
        self.stats = ExporterStats()
        self.stopping = False
        self._backoff = 0.0
        self._retry_at = 0.0  # monotonic time of the next try of a failing sink; parking until then
        self._park_at = 0.0  # no park before this (one failed)
        self._full_batch = False
        self._rings_turn = False  # the last batch was parked files: the rings' turn, if they hold records
        self._backlog: Callable[[bool, bool, bool], None] = _no_backlog  # the sink's, once open
        # Helper processes for large chunks (prepare_helpers), started when the first one comes.
        self.helpers: PrepareHelpers | None = None
        self.helper_count = _usable_cpus() - 1 if self.lc.exporter_helpers < 0 else self.lc.exporter_helpers
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="fastgw-sink")
        self._in_flight: _Flight | None = None  # the batch the sink thread is writing, uncommitted
        # The overlap needs a second core to run on. On one, two batches in flight only add thread
        # switches and cache misses (about 3 µs a record more): each batch is committed at once.
        self.pipelined = _usable_cpus() > 1
        self._last_read = 0  # records the last step read (0: the rings and spill files had nothing)
        # Each committed batch's rows go to the observers (Prometheus metrics, OTel traces);
        # self.metrics.render() is what the admin server's GET /metrics serves (None: metrics off).
        self.metrics, self.observers = observers_for(config, self)

    # --- lifecycle ---------------------------------------------------------------------------

    def run(self) -> None:
        signal.signal(signal.SIGTERM, self._on_signal)
        # Ctrl-C in a terminal goes to the whole foreground group. Taken here, it would start the
        # final drain while the workers still finish their requests, and a record pushed after it
        # would wait in its ring for the next start. `fastgw serve` sends SIGTERM once its workers
        # are done (and the kernel does if it dies: parent_death).
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGHUP, signal.SIG_IGN)  # a closed terminal: the same, for the same reason
        self.loop()

    def loop(self) -> None:
        """Until ``stopping`` and drained (or given up): batches as they come due, parking while
        the sink is down; then ``close``. ``run`` without the signal handlers (any thread)."""
        last_flush = time.monotonic()
        deadline: float | None = None
        failing_since: float | None = None
        try:
            while True:
                self._attach_drains()
                if self.stopping and deadline is None:
                    deadline = time.monotonic() + SHUTDOWN_DEADLINE
                # The last drain, once no worker runs: until then batches keep their pace, as a stop
                # that reached the workers too lets them finish their requests. Asked before the
                # read, so whatever a worker pushed before it went is in that read.
                final = self.stopping and not self._workers_running()
                now = time.monotonic()
                if not self.stopping and now < self._retry_at:  # the sink failed: park until its next try
                    if now >= self._park_at and self._batch_due(last_flush, parked=False):
                        self.park()
                        last_flush = now
                    else:
                        time.sleep(min(IDLE_SLEEP, self._retry_at - now))
                    continue
                if not (final or self._batch_due(last_flush)):
                    if self._in_flight is not None:
                        with _collector_paused():
                            self.settle()  # nothing to overlap it with: commit it now
                    else:
                        self._idle(last_flush)
                    continue
                self.advance()
                last_flush = time.monotonic()
                # Drained: nothing left to read, nothing in flight, and the sink took the last batch.
                drained = self._last_read == 0 and self._in_flight is None and not self._backoff
                now = time.monotonic()
                failing_since = (failing_since or now) if self._backoff else None
                gave_up = failing_since is not None and now - failing_since > STOP_SINK_PATIENCE
                past = deadline is not None and now > deadline
                if self.stopping and (gave_up or past or (drained and final)):
                    if gave_up:
                        self._park_rest(deadline)
                    break
                if self._backoff and self.stopping:
                    time.sleep(self._backoff)
        finally:
            self.close()

    def _idle(self, last_flush: float) -> None:
        """Wait for the next look at the rings: IDLE_SLEEP while records wait there (a batch's worth
        may come due before its age), IDLE_SLEEP_EMPTY while nothing does, never past the batch age
        (an empty read is due then: it attaches new rings, picks up spill segments and parked files).
        A SIGTERM is seen at the next look (Python resumes a sleep after its handler)."""
        self.stats.idle_waits += 1
        if self._waiting_records() or self.parked.pending or self.stopping:
            time.sleep(IDLE_SLEEP)
            return
        age_left = last_flush + self.lc.batch_max_age - time.monotonic()
        time.sleep(max(IDLE_SLEEP, min(IDLE_SLEEP_EMPTY, age_left)))

    def _workers_running(self) -> bool:
        """A worker that pushes into one of the rings still runs. A stop can reach the exporter with
        its workers rather than after them (systemd's default KillMode signals every process of a
        unit at once; the kernel's parent-death signal): the records of the requests they are still
        finishing come after this drain, and would wait in the rings for the next start."""
        parent = os.getppid()
        return any(_running_child_of(d.ring.producer_pid, parent, self._workers_session) for d in self.drains.values())

    def _on_signal(self, signum: int, frame: object) -> None:
        self.stopping = True

    def close(self) -> None:
        with _collector_paused():
            self.settle()  # its writes were submitted: commit them if they succeed
        for drain in self.drains.values():
            drain.close()
        self.drains.clear()
        self._writer.shutdown(wait=True)
        if self.helpers is not None:
            self.helpers.close()
            self.helpers = None
        if self.sink is not None:
            self.sink.close()
            self.sink = None
        self._close_observers()
        log.info("exporter stopped: %d records in %d batches, %d sink failures", self.stats.exported,
                 self.stats.batches, self.stats.sink_failures)

    # --- one batch ---------------------------------------------------------------------------

    def flush_once(self) -> int:
        """One batch read, written and committed (``step``, then ``settle``), with Python's cyclic
        garbage collector paused. Returns the records committed by the call.

        A batch allocates tens of thousands of dicts and strings (decoded records, rows, columns)
        that die by reference counting alone, yet each 700 of them trigger a collection pass that
        walks the live ones: about 4 µs of the exporter's CPU per record. The collector runs again
        as soon as the batch is done, so cycles made elsewhere in the process are still reclaimed.
        """
        with _collector_paused():
            return self.step() + self.settle()

    def advance(self) -> int:
        """What the loop does when a batch is due: a ``step``, and its ``settle`` too on one core
        (see ``pipelined``) or while the sink is failing (a batch read ahead of a write that fails
        is read again: no use reading it until the sink takes one). With the collector paused.
        Returns the records committed."""
        with _collector_paused():
            overlap = self.pipelined and not self._backoff
            return self.step() + (0 if overlap else self.settle())

    def step(self) -> int:
        """One turn of the pipeline: read and enrich the next batch while the sink thread writes
        the one before it, then commit that one and hand this one to the sink thread.

        The two halves overlap on two cores: chDB (and the HTTP client) release the GIL while
        ClickHouse parses, sorts and writes a block, which is about half the exporter's CPU per
        record. The next batch is read from the rings ahead of the uncommitted one
        (``RecordDrain.read_batch(after=...)``); if the write fails, it is dropped unwritten and
        both are read again after the back-off. Returns the records committed (the previous batch).
        """
        if not self._open_sink():
            return 0
        nxt = self._read_next()
        self._backlog(self._full_batch, not self._full_batch and self._last_read <= self.lc.batch_max_records // 4,
                      nxt is not None)
        try:
            done = self._commit_in_flight()
        except SinkError as exc:  # the batch read after it is dropped too, and read again later
            self._failed(exc)
            return 0
        if nxt is not None:
            nxt.futures = [self._writer.submit(self._write, chunk, nxt.rejected) for chunk in nxt.chunks]
            self._in_flight = nxt
        return self._after_commit(done)  # while the sink thread starts on the next one

    def settle(self) -> int:
        """Wait for the batch in flight; commit it if every chunk was written. Returns its records."""
        try:
            return self._after_commit(self._commit_in_flight())
        except SinkError as exc:
            self._failed(exc)
            return 0

    def park(self) -> int:
        """While the sink is down: the records due, read from the rings (and spill segments) as a
        batch would be, written to parked files (one per worker) and committed, so the rings stay
        empty and no worker spills on its request path. Returns the records parked.

        Nothing may be in flight (a failed write leaves nothing in flight). A file that can't be
        written leaves its records where they were, read again later like any uncommitted batch."""
        assert self._in_flight is None, "park() with a batch in flight"
        room, parked, ends_segment = self.lc.batch_max_records, 0, False
        for worker, drain in sorted(self.drains.items()):
            if room <= 0:
                break
            batch = drain.read_batch(room, READ_MAX_BYTES)
            if not batch.records:
                continue
            try:
                self.parked.park(worker, batch.records)
            except OSError as exc:
                self.stats.park_failures += 1
                self._park_at = time.monotonic() + PARK_RETRY
                log.error("request log: cannot park records while the sink is down (%s); they wait in the rings", exc)
                self._full_batch = False
                return parked
            batch.commit()
            room -= len(batch.records)
            parked += len(batch.records)
            ends_segment = ends_segment or batch.ends_segment
        self._full_batch = room <= 0 or ends_segment
        return parked

    def _park_rest(self, deadline: float | None) -> None:
        """A stop that gave up on the sink: what the rings still hold, to disk (where a clean
        reboot doesn't lose it, as it would the rings in shared memory), until the rings are empty
        or the shutdown deadline passes."""
        with _collector_paused():
            self.settle()
            while self._in_flight is None and (deadline is None or time.monotonic() < deadline):
                if not self.park() and not self._full_batch:
                    break

    def _commit_in_flight(self) -> _Flight | None:
        """Wait for the batch in flight and commit it. SinkError if a chunk failed: nothing is
        committed, and the same records are read again after the back-off."""
        flight, self._in_flight = self._in_flight, None
        if flight is None:
            return None
        try:
            for future in flight.futures:
                future.result()
        except BaseException:
            for future in flight.futures:
                future.cancel()
            for future in flight.futures:
                if not future.cancelled():
                    future.exception()  # a chunk already started: let it finish before the retry
            raise
        self._keep_rejected(flight.rejected)  # before the commit: a record is never only in memory
        for _, batch in flight.batches:
            batch.commit()
        self._backoff = 0.0
        return flight

    def _after_commit(self, flight: _Flight | None) -> int:
        """What waits for a commit but not for the sink: counters, observers, the price file."""
        if flight is None:
            return 0
        rows = flight.rows
        self.stats.exported += rows
        self.stats.batches += 1
        self._observe(flight.chunks)
        self.prices.reload_if_changed()
        return rows

    def _read_next(self) -> _Flight | None:
        """The records waiting after the batch in flight (up to a batch), decoded and enriched.

        Nothing is committed here. Chunks of ``WRITE_CHUNK`` rows are the sink's writes; a chunk
        written before a failure is written again on the retry, under the same deduplication id
        when its rows are the same, and ReplacingMergeTree keeps one copy either way.
        """
        flight = self._in_flight
        ahead = {worker: batch for worker, batch in flight.batches if isinstance(batch, Batch)} if flight is not None else {}
        batches: list[tuple[int, Batch | ParkedBatch]] = []
        records: list[tuple[bytes, int]] = []
        room = self.lc.batch_max_records
        # Parked files (each whole) and the rings take turns while the rings hold records, so the
        # rings stay flat while a backlog of parked files drains; with the rings empty, parked
        # files every time. (The order of rows doesn't matter to the sink: one per request id.)
        parked_ahead = sum(isinstance(b, ParkedBatch) for _, b in flight.batches) if flight is not None else 0
        take_parked = self.parked.pending > parked_ahead and not (self._rings_turn and self._waiting_records() > 0)
        self._rings_turn = take_parked
        if take_parked:
            for pb in self.parked.read(room, parked_ahead):
                batches.append((pb.worker, pb))
                records.extend((raw, pb.worker) for raw in pb.records)
            if batches:
                room = 0
        for worker, drain in sorted(self.drains.items()):
            if room <= 0:
                break
            batch = drain.read_batch(room, READ_MAX_BYTES, ahead.get(worker))
            if not batch.records:
                continue
            batches.append((worker, batch))
            room -= len(batch.records)
            records.extend((raw, worker) for raw in batch.records)
        self._last_read = len(records)
        if batches or flight is None:  # an empty read ahead says nothing about what waits behind it
            # A batch that ends a spill segment is short, yet the next segment may be waiting.
            self._full_batch = room <= 0 or any(b.ends_segment for _, b in batches)
        if not batches:
            return None
        flight = _Flight(batches)
        for start in range(0, len(records), WRITE_CHUNK):
            chunk = records[start : start + WRITE_CHUNK]
            if self._parted(chunk, flight):
                continue
            rows = [row for raw, worker in chunk if (row := self._row(raw, worker, flight.rejected)) is not None]
            if rows:
                flight.chunks.append(_Chunk(rows, self._prepare(rows), _batch_id(rows), len(rows)))
        return flight

    def _parted(self, chunk: list[tuple[bytes, int]], flight: _Flight) -> bool:
        """``chunk`` prepared in parts (``prepare_part``: in pieces, Native blocks): a large chunk
        (``HELPED_MIN_RECORDS``) in up to ``helper_count + 1`` parts, the first by the helpers that are
        ready and the others here; a smaller one, or any without helpers, in one part here. False
        (nothing added) for a sink without ``helper_prepare`` (only chDB's Native blocks have it),
        or when the sink's encoder refuses a row (the in-process path writes that chunk row by row).

        The blocks depend on the chunk alone: ClickHouse drops an insert repeating a deduplication
        token only when it comes in as many blocks, so a chunk written again after a failure or a
        restart must arrive in the same blocks. Parts are cut at multiples of ``PIECE``, and each
        part in pieces of ``PIECE`` from its start: every block is the same ``PIECE`` records of the
        chunk whatever the helper count (a restart on another machine) and however many are ready.
        """
        encode = getattr(self.sink, "helper_prepare", None)
        if encode is None:
            return False
        split = len(chunk) >= HELPED_MIN_RECORDS and self.helper_count > 0
        size = -(-len(chunk) // (self.helper_count + 1)) if split else len(chunk)
        size = -(-size // PIECE) * PIECE
        parts = [chunk[at : at + size] for at in range(0, len(chunk), size)]
        raws = [[raw for raw, _ in part] for part in parts]
        # Rows come as metric totals when the metrics are the one observer (or there is none):
        # nothing then keeps a chunk's rows alive. Others (traces) need the rows themselves, and
        # then no helper runs either.
        fold = all(o is self.metrics for o in self.observers)
        ready = self._ready_helpers(encode) if split and fold else 0
        before = (self.enricher.counted, self.enricher.unpriced, Counter(self.prices.unknown_counts))

        def own() -> list[PartResult | None]:
            return [self._own_part(part, encode, fold) for part in raws[ready:]]

        if ready:
            assert self.helpers is not None
            theirs, mine = self.helpers.prepare(raws[:ready], own)
        else:
            theirs, mine = [], own()
        results = theirs + mine
        helped = {i for i, r in enumerate(theirs) if r is not None}  # the others are counted here
        for i, r in enumerate(results):
            if r is None:  # a part a helper did not prepare, or a row the encoder refused
                results[i] = self._own_part(raws[i], encode, fold)
        if any(r is None for r in results):  # refused: the chunk goes the in-process way, counted once
            self.enricher.counted, self.enricher.unpriced = before[0], before[1]
            self.prices.unknown_counts.clear()
            self.prices.unknown_counts.update(before[2])
            return False
        done: list[PartResult] = results  # type: ignore[assignment]
        for i, (part, r) in enumerate(zip(parts, done)):
            for index, why in r.rejected:
                raw, worker = part[index]
                flight.rejected.append((rejected_entry(raw, worker), ValueError(why)))
            if i in helped:  # this thread's parts were counted as they were enriched
                self.enricher.counted += r.counted
                self.enricher.unpriced += r.unpriced
                self.prices.unknown_counts.update(r.unknown)
        count = sum(r.count for r in done)
        if count:
            h = hashlib.blake2b(digest_size=16)
            for r in done:
                h.update(r.ids)
            prepared = self.sink.prepared_from([r.encoded for r in done])  # type: ignore[union-attr]
            if fold:
                flight.chunks.append(_Chunk(None, prepared, h.hexdigest(), count,
                                            [r.totals for r in done if r.totals is not None], chunk))
            else:
                flight.chunks.append(_Chunk([row for r in done for row in r.rows or ()], prepared, h.hexdigest(), count))
        return True

    def _ready_helpers(self, encode: Callable[..., Any]) -> int:
        if self.helpers is None:
            self.helpers = PrepareHelpers(self.helper_count, self.lc.prices_file, encode, self.metrics is not None)
        return min(self.helpers.usable(), self.helper_count)

    def _own_part(self, raws: list[bytes], encode: Callable[..., Any], fold: bool) -> PartResult | None:
        """A part prepared here: metric totals (``fold``) like a helper's, or else the rows themselves."""
        try:
            return prepare_part(self.enricher, raws, encode, fold and self.metrics is not None, keep_rows=not fold)
        except Exception:  # the encoder refused a row: the in-process path says which, and keeps it
            log.debug("a part could not be prepared; its chunk goes the in-process way", exc_info=True)
            return None

    def _prepare(self, rows: list[dict[str, Any]]) -> Any:
        """The sink's encoding of a chunk, here rather than on the sink thread (see ``step``)."""
        assert self.sink is not None
        try:
            return self.sink.prepare(rows)
        except Exception as exc:  # the sink refused the data itself: the sink thread sorts it out
            log.error("sink refused a batch (%s); writing its rows one by one", exc)
            return _REFUSED

    def _write(self, chunk: _Chunk, rejected: list[_Rejected]) -> None:
        assert self.sink is not None
        rows, prepared, batch_id = chunk.rows, chunk.prepared, chunk.batch_id
        if prepared is not _REFUSED:
            try:
                self.sink.write_prepared(prepared, batch_id)
                return
            except SinkError:
                raise
            except Exception as exc:  # the sink refused the data itself: find the bad rows, keep the rest
                log.error("sink refused a batch (%s); writing its rows one by one", exc)
        if rows is None:  # prepared in parts: enriched again here, apart from the exporter's own
            # enricher and price table (in use on the exporter's thread), whose counts it already has;
            # its unreadable records are kept already.
            self._sink_prices.reload_if_changed()
            enricher = Enricher(self._sink_prices)
            rows = [row for raw, _ in chunk.raws if (row := _enriched(enricher, raw)) is not None]
        for row in rows:
            try:
                self.sink.write([row], f"{batch_id}-{row.get('request_id', '')}")
            except SinkError:
                raise
            except Exception as row_exc:
                rejected.append((row, row_exc))

    def _row(self, raw: bytes, worker: int, rejected: list[_Rejected]) -> dict[str, Any] | None:
        try:
            return self.enricher.row_of(raw)
        except Exception as exc:
            rejected.append((rejected_entry(raw, worker), exc))
            return None

    def _keep_rejected(self, rejected: list[_Rejected]) -> None:
        """Records that can never be written, kept in a file for a human, never silently lost.

        Kept when their batch is committed, not when they were refused: a batch read again after
        a failed write would otherwise keep them twice. A file that can't be written fails the
        commit like the sink would: the batch is read again after the back-off.
        """
        if not rejected:
            return
        try:
            with open(self.paths.rejected_file, "ab") as f:
                for row, exc in rejected:
                    f.write(orjson.dumps({"error": str(exc), "record": row}, default=str) + b"\n")
        except OSError as exc:
            raise SinkError(f"cannot keep rejected records in {self.paths.rejected_file}: {exc}") from exc
        for row, exc in rejected:
            self.stats.rejected += 1
            log.error("request log: record rejected (%s); kept in %s", exc, self.paths.rejected_file)

    def _failed(self, exc: SinkError) -> None:
        self.stats.sink_failures += 1
        self._backoff = min(MAX_BACKOFF, max(0.1, self._backoff * 2))
        self._retry_at = time.monotonic() + self._backoff  # parking until then (``loop``)
        log.warning("sink write failed (%s); retrying in %.1fs", exc, self._backoff)
        if self.stopping:
            self._backoff = min(self._backoff, 1.0)
        # As if caught up: background work must not wait through a back-off (chDB's merges, when
        # the failure is TOO_MANY_PARTS).
        self._backlog(False, True, False)

    def _observe(self, chunks: list[_Chunk]) -> None:
        """Committed rows to each observer; one that fails is logged and counted, never fatal."""
        for observer in self.observers:
            try:
                for chunk in chunks:
                    if chunk.rows is not None:
                        observer.observe(chunk.rows)
                    else:  # helpers ran: the metrics are the only observer, and get totals
                        for totals in chunk.totals:
                            observer.observe_folded(totals)  # type: ignore[attr-defined]
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
        self._backlog = getattr(sink, "backlog", _no_backlog)  # optional for registered sinks
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

    def _batch_due(self, last_flush: float, parked: bool = True) -> bool:
        """A batch should be read now; ``parked``: parked files waiting count (not while parking)."""
        return (
            time.monotonic() - last_flush >= self.lc.batch_max_age
            or (parked and self.parked.pending > 0)
            or self._full_batch  # the last batch was full: more is waiting (rings or spill files)
            or self._waiting_records() >= self.lc.batch_max_records
            # A batch's worth may not fit in one worker's ring: don't wait for it while the ring fills.
            or any(self._unread_bytes(w, d) * 2 >= d.ring.capacity for w, d in self.drains.items())
        )

    def _unread_bytes(self, worker: int, drain: RecordDrain) -> int:
        """Bytes of ``drain``'s ring after the batch in flight (all its used bytes if none is):
        the batch in flight has been read, so it must not make the next batch due."""
        if self._in_flight is not None:
            for w, batch in self._in_flight.batches:
                if w == worker and batch.from_ring:
                    return drain.ring.head - batch.end
        return drain.ring.used

    def _waiting_records(self) -> int:
        """Records in the rings not yet read (spill files aside: they are read when due)."""
        flight = self._in_flight.ring_records if self._in_flight is not None else 0
        return sum(max(0, d.ring.pushed - d.ring_exported) for d in self.drains.values()) - flight


def _usable_cpus(cpu_max: str = "/sys/fs/cgroup/cpu.max") -> int:
    """The CPUs this process may use: its affinity (taskset, a cgroup's cpuset), capped by a
    cgroup v2 quota (``docker --cpus``, a Kubernetes limit), which affinity does not show."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cpus = os.cpu_count() or 1
    try:
        with open(cpu_max) as f:
            quota, period = f.read().split()[:2]
        if quota != "max":
            cpus = min(cpus, max(1, math.ceil(int(quota) / int(period))))
    except (OSError, ValueError):
        pass  # no cgroup v2 quota here
    return cpus


@contextmanager
def _collector_paused() -> Iterator[None]:
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _enriched(enricher: Enricher, raw: bytes) -> dict[str, Any] | None:
    try:
        return enricher.row_of(raw)
    except Exception:
        return None


def _no_backlog(behind: bool, caught_up: bool, writing: bool) -> None:
    pass


def _running_child_of(pid: int, parent: int, session: int) -> bool:
    """``pid`` runs (a zombie has ended) as ``parent``'s child in ``session``: a worker beside this
    exporter, not this process (a test that pushes and exports in one), nor a recycled pid. Once
    ``fastgw serve`` is gone its children are init's (or a subreaper's), as are many daemons, and
    a pid of a worker that exited may be taken by one of them: the session tells them apart (a
    daemon starts its own). False where there is no /proc to ask."""
    if pid <= 0 or pid == os.getpid():
        return False
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            state, ppid, _, sid = f.read().rsplit(b")", 1)[1].split()[:4]
    except (OSError, ValueError):
        return False
    return state != b"Z" and int(ppid) == parent and int(sid) == session


def _batch_id(rows: list[dict[str, Any]]) -> str:
    """The same rows give the same id, so a retried batch is deduplicated by the sink."""
    return hashlib.blake2b(row_ids(rows), digest_size=16).hexdigest()


def run_exporter(config: Config, paths: LogPaths, workers: int, supervisor: int | None = None) -> None:
    """The exporter process's entry point. ``supervisor``: the pid of the process that removes the
    exporter's idle cgroup once it exited (``fastgw serve``); none without it."""
    logging.getLogger("fastgw").setLevel(logging.INFO)
    # A SIGTERM that arrives while the Exporter is being built (imports, observers) is kept: the
    # handler inherited from the supervisor would swallow it, and run() would never stop.
    early: list[int] = []
    signal.signal(signal.SIGTERM, lambda signum, frame: early.append(signum))
    exporter = Exporter(config, paths, workers)
    signal.signal(signal.SIGTERM, exporter._on_signal)
    exporter.stopping = exporter.stopping or bool(early)
    from fastgw.analytics.admin_server import start_admin

    admin = start_admin(config.admin, config.logging.sink, exporter.metrics)
    # Lowered once the admin server's thread runs (it, and the threads it starts per request, keep
    # the normal policy: scrapes and dashboards answer first among the exporter's threads, though
    # in its low-weight session when autogroups are on, and in its idle cgroup under cgroup v2),
    # and before the sink opens (chDB's threads,
    # the sink thread and the loop itself inherit it). A thread can't get its priority back from
    # SCHED_IDLE without privileges.
    lc = config.logging
    # Not once the supervisor is gone (the exporter still drains): nobody would remove the folder.
    owner = supervisor if lc.exporter_idle_cgroup and supervisor is not None and os.getppid() == supervisor else None
    log.info("exporter priority: %s", lower_priority(lc.exporter_idle, lc.exporter_nice, lc.exporter_own_session, owner))
    try:
        exporter.run()
    finally:
        if admin is not None:
            admin.stop()
