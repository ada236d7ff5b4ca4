"""Prepare helpers: processes that decode, enrich and encode records for the exporter.

Why: the exporter's own work per record (decoding it, enriching it with usage and cost, encoding
its row for the sink: about 20 µs of Python) holds the interpreter's lock, so one exporter
process tops out near 30,000 records a second however many cores the machine has; ClickHouse's
insert already runs beside it, outside the lock. When a chunk is large (the exporter has work
queued), the exporter sends parts of it to helper processes and prepares the last part itself.

What stays in the exporter: the rings and spill files, the order of the records, the sink, every
commit, the metrics. A helper is a pure function over bytes. It gets a part's records and returns
what the exporter would have computed from them: the sink's encoding (``sink.helper_prepare``,
bytes), the ids that make the batch id, the metric totals with the labels as they were (the
exporter applies its caps), and the records it could not read. So a helper changes nothing that
is stored, and when one fails, dies or is slow to start, its part is prepared in the exporter.

Helpers are started on the first chunk that needs them, under the exporter's scheduling policy
and CPU affinity (inherited), and die with it (``PR_SET_PDEATHSIG``). They ignore SIGINT, SIGTERM
and SIGHUP: the exporter stops them by closing their pipes once its last batch is written.
"""

from __future__ import annotations

import array
import gc
import logging
import os
import signal
import site
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any, NamedTuple, TypeVar

import fastgw
from fastgw.parent_death import die_with_parent
from fastgw.process_name import name_this_process

log = logging.getLogger("fastgw.exporter")
T = TypeVar("T")

# A dead or failing helper is started again at most this often; its parts are prepared in the
# exporter meanwhile.
RESTART_EVERY = 10.0
# The longest the exporter waits on its helpers for one chunk (sending the parts, then the results)
# before it prepares the missing parts itself. A part takes tens of milliseconds; a helper stopped
# (SIGSTOP) or starved must not hold the batch.
PART_TIMEOUT = 30.0
# A helper that has not said "ready" this long after its start is stopped (and started again later).
START_TIMEOUT = 60.0


class PartResult(NamedTuple):
    """What a helper returns for one part (and what the exporter computes for its own)."""

    encoded: Any  # sink.helper_prepare(rows)
    count: int  # rows
    ids: bytes  # each row's request id and kind, in order: the batch id is their hash
    totals: Any  # metrics.fold_rows with raw labels; None when the exporter has no metrics
    rejected: list[tuple[int, str]]  # (index in the part, why) of records that could not be read
    counted: int  # rows whose tokens were counted (Enricher.counted)
    unpriced: int
    unknown: dict[str, int]  # PriceTable.unknown_counts of this part
    rows: list[dict[str, Any]] | None = None  # kept only where asked (never from a helper)


def row_ids(rows: list[dict[str, Any]]) -> bytes:
    """The bytes exporter._batch_id hashes for ``rows``."""
    return b"".join(str(row.get("request_id", "")).encode() + str(row.get("kind", "")).encode() for row in rows)


# Records a part is prepared in at a time: decoded, enriched, encoded, counted, then let go. A
# part's thousands of rows alive at once (about 6 KB of dicts and strings each) outgrow the CPU's
# caches, and the encoder then reads them back column by column; 250 at a time, the same memory is
# reused while it is still cached. Prepare CPU per record, 2,500 records a part
# (benchmarks/micro/bench_exporter_stages.py): 16.9 µs in one piece, 14.9 in pieces of 250.
PIECE = 250


def prepare_part(enricher: Any, raws: list[bytes], encode: Callable[[list[dict[str, Any]]], list[Any]],
                 metrics: bool, keep_rows: bool = False) -> PartResult:
    """Decode and enrich ``raws``, encode the rows, in pieces of ``PIECE`` records.

    ``encode`` returns a list (``encode_native``: a Native block per table); the part's encoding
    is the pieces' lists, one after another, so a table's blocks stay in record order and its
    blocks cut at the same records whenever the same records come (a retried insert repeats its
    blocks). ``encode`` raising is the caller's to handle."""
    from fastgw.analytics.metrics import fold_rows, raw_label

    counted, unpriced = enricher.counted, enricher.unpriced
    unknown_before = dict(enricher.prices.unknown_counts)
    encoded: list[Any] = []
    ids: list[bytes] = []
    totals = None
    kept: list[dict[str, Any]] = []
    count = 0
    rejected: list[tuple[int, str]] = []
    for start in range(0, len(raws), PIECE):
        rows: list[dict[str, Any]] = []
        for i in range(start, min(start + PIECE, len(raws))):
            try:
                rows.append(enricher.row_of(raws[i]))
            except Exception as exc:
                rejected.append((i, f"{type(exc).__name__}: {exc}"))
        if not rows:
            continue
        encoded += encode(rows)
        ids.append(row_ids(rows))
        if metrics:
            totals = fold_rows(rows, raw_label, raw_label, raw_label, totals)
        if keep_rows:
            kept += rows
        count += len(rows)
    unknown = {model: n - unknown_before.get(model, 0) for model, n in enricher.prices.unknown_counts.items()
               if n != unknown_before.get(model, 0)}
    return PartResult(encoded, count, b"".join(ids), totals, rejected, enricher.counted - counted,
                      enricher.unpriced - unpriced, unknown, kept if keep_rows else None)


def pack(raws: list[bytes]) -> tuple[bytes, bytes]:
    """A part's records as one buffer and their end offsets: one write to the pipe instead of a
    pickled list of thousands of small objects."""
    ends = array.array("Q")
    total = 0
    for raw in raws:
        total += len(raw)
        ends.append(total)
    return b"".join(raws), ends.tobytes()


def unpack(blob: bytes, ends_bytes: bytes) -> list[bytes]:
    ends = array.array("Q")
    ends.frombytes(ends_bytes)
    out, start = [], 0
    for end in ends:
        out.append(blob[start:end])
        start = end
    return out


def helper_main(conn: Connection, parent: int, prices_file: str | None, encode_path: str, metrics: bool) -> None:
    """A helper's loop: a part in, its PartResult out, until the exporter closes the pipe."""
    die_with_parent(parent, signal.SIGKILL)  # its exporter's pipe's EOF ends the loop elsewhere
    name_this_process("fastgw-helper")
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    import importlib

    from fastgw.requestlog.enrich import Enricher
    from fastgw.requestlog.prices import PriceTable

    module, _, name = encode_path.partition(":")
    encode = getattr(importlib.import_module(module), name)
    prices = PriceTable.load(prices_file)
    enricher = Enricher(prices)
    gc.disable()  # a part's objects die by reference counting (see Exporter.flush_once)
    conn.send("ready")
    while True:
        try:
            ends = conn.recv_bytes()
            blob = conn.recv_bytes()
        except (EOFError, OSError):
            return
        prices.reload_if_changed()
        try:
            result: Any = prepare_part(enricher, unpack(blob, ends), encode, metrics)
        except Exception as exc:  # the sink's encoder refused a row: the exporter sorts it out
            result = f"{type(exc).__name__}: {exc}"
        del blob
        gc.collect(0)
        try:
            conn.send(result)
        except (BrokenPipeError, OSError):
            return


class _Helper:
    def __init__(self, proc: subprocess.Popen[bytes], conn: Connection) -> None:
        self.proc, self.conn = proc, conn
        self.ready = False
        self.started = time.monotonic()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None


class PrepareHelpers:
    """The exporter's helper processes: ``usable()`` starts them and says how many are ready;
    ``prepare(parts, own)`` hands them a part each and runs ``own`` (the exporter's share) meanwhile."""

    def __init__(self, count: int, prices_file: str | None, encode: Callable[..., Any], metrics: bool) -> None:
        self.count = count
        self.prices_file = prices_file
        self.encode_path = f"{encode.__module__}:{encode.__qualname__}"
        self.metrics = metrics
        self.helpers: list[_Helper] = []
        self.parts = 0  # parts the helpers prepared
        self.failures = 0  # parts sent to a helper that it did not prepare
        self._next_start = 0.0

    @property
    def pids(self) -> list[int]:
        return [h.pid for h in self.helpers]

    def usable(self) -> int:
        """Helpers ready for a part now; starts the missing ones (at most every RESTART_EVERY s)."""
        self._reap()
        if len(self.helpers) < self.count and time.monotonic() >= self._next_start:
            self._next_start = time.monotonic() + RESTART_EVERY
            for _ in range(self.count - len(self.helpers)):
                self._start()
        for h in list(self.helpers):
            if h.ready:
                continue
            try:
                h.ready = h.conn.poll(0) and h.conn.recv() == "ready"
            except Exception:
                h.ready = False
            if h.ready:
                log.info("prepare helper %s ready", h.pid)
            if not h.ready and time.monotonic() - h.started > START_TIMEOUT:
                log.warning("prepare helper %s did not start in %.0f s; stopping it", h.pid, START_TIMEOUT)
                self._drop(h)
        return sum(h.ready for h in self.helpers)

    def _start(self) -> None:
        """A new interpreter (the exporter has threads, so no fork), running this module, with the
        fastgw this process imported first on its path, and a socket pair as its pipe."""
        ours, theirs = socket.socketpair()
        # Blocking, but never for good: a helper that stops reading or writing fails the call
        # (OSError) instead of holding the exporter (see PART_TIMEOUT).
        limit = struct.pack("ll", int(PART_TIMEOUT), 0)
        ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, limit)
        ours.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, limit)
        env = dict(os.environ)
        root = os.path.dirname(os.path.dirname(os.path.abspath(fastgw.__file__)))
        if root not in site.getsitepackages():  # a checkout on sys.path, not an installed package
            env["PYTHONPATH"] = os.pathsep.join(filter(None, (root, os.environ.get("PYTHONPATH"))))
        args = [sys.executable, "-m", __name__, str(theirs.fileno()), str(os.getpid()), self.prices_file or "",
                self.encode_path, "1" if self.metrics else "0"]
        try:
            proc = subprocess.Popen(args, pass_fds=(theirs.fileno(),), env=env, stdin=subprocess.DEVNULL)
        except OSError as exc:
            log.warning("could not start a prepare helper: %s", exc)
            ours.close()
            return
        finally:
            theirs.close()
        self.helpers.append(_Helper(proc, Connection(ours.detach())))

    def _reap(self) -> None:
        for h in [h for h in self.helpers if not h.alive()]:
            log.warning("prepare helper %s exited (%s); its parts are prepared by the exporter",
                        h.pid, h.proc.returncode)
            self._drop(h)

    def _drop(self, h: _Helper) -> None:
        if h in self.helpers:
            self.helpers.remove(h)
        h.conn.close()
        if h.alive():
            h.proc.kill()
        try:
            h.proc.wait(1.0)
        except subprocess.TimeoutExpired:
            pass

    def prepare(self, parts: list[list[bytes]], own: Callable[[], T]) -> tuple[list[PartResult | None], T]:
        """``parts`` to the ready helpers, one each, and ``own()`` run meanwhile in this thread.
        Returns the helpers' PartResults (None for a part one did not prepare: dead, hung, or its
        encoder refused a row) and what ``own()`` returned."""
        ready = [h for h in self.helpers if h.ready]
        sent: list[_Helper | None] = []
        for part, h in zip(parts, ready):
            try:
                blob, ends = pack(part)
                h.conn.send_bytes(ends)
                h.conn.send_bytes(blob)
                sent.append(h)
            except OSError as exc:  # dead, or not reading for PART_TIMEOUT
                log.warning("prepare helper %s did not take a part (%s); stopping it", h.pid, exc)
                self._drop(h)
                sent.append(None)
        sent += [None] * (len(parts) - len(sent))
        mine = own()
        deadline = time.monotonic() + PART_TIMEOUT
        results = [self._receive(h, deadline) if h is not None else None for h in sent]
        done = sum(r is not None for r in results)
        self.parts += done
        self.failures += len(parts) - done
        return results, mine

    def _receive(self, h: _Helper, deadline: float) -> PartResult | None:
        try:
            if not h.conn.poll(max(0.0, deadline - time.monotonic())):
                log.warning("prepare helper %s took over %.0f s for a part; stopping it", h.pid, PART_TIMEOUT)
                self._drop(h)
                return None
            result = h.conn.recv()
        except Exception as exc:  # dead, stuck mid-answer, or an answer that does not unpickle
            log.warning("prepare helper %s failed (%s); stopping it", h.pid, exc)
            self._drop(h)
            return None
        if isinstance(result, str):  # the encoder refused a row: the exporter writes the rows one by one
            log.error("sink refused a part in a prepare helper (%s)", result)
            return None
        return result  # type: ignore[no-any-return]

    def close(self) -> None:
        for h in list(self.helpers):
            h.conn.close()  # EOF: the helper's loop ends
        deadline = time.monotonic() + 5.0
        for h in list(self.helpers):
            try:
                h.proc.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                h.proc.kill()
                h.proc.wait()
        self.helpers.clear()


def _main(argv: list[str]) -> None:
    # Run as ``-m``, this file is ``__main__``: the loop runs from the module under its own name, so
    # the PartResults it sends unpickle in the exporter as fastgw's.
    from fastgw.requestlog import prepare_helpers

    fd, parent, prices_file, encode_path, metrics = argv
    prepare_helpers.helper_main(Connection(int(fd)), int(parent), prices_file or None, encode_path, metrics == "1")


if __name__ == "__main__":
    _main(sys.argv[1:])
