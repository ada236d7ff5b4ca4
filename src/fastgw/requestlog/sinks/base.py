"""The contract between the exporter and wherever records go, and the URL → sink registry.

The exporter owns batching and retries; a sink owns one destination. The split of failures is the
whole point of the interface: ``SinkError`` means "the destination is unwell, keep the batch and
try again later" (connection refused, timeouts, a full disk, a server over its part limit), while
any other exception is a bug in what was sent (a wrong type, a missing request id) that retrying
cannot fix, so the exporter can quarantine the batch instead of looping on it forever.

A write has two halves (``prepare``, then ``write_prepared``) so that the exporter can encode the
next batch while the sink thread sends this one.

Writes are at least once: the exporter may hand the same batch (same ``batch_id``) to ``write``
again after a crash or a ``SinkError``. Sinks that can deduplicate use ``batch_id`` for it.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping, Protocol, runtime_checkable

KIND_REQUEST = "request"
KIND_FEEDBACK = "feedback"
KIND_SCORE = "score"
KINDS = (KIND_REQUEST, KIND_FEEDBACK, KIND_SCORE)


class SinkError(Exception):
    """The destination failed in a way worth retrying later; the batch was not (fully) stored."""


class PreparedWrites:
    """``write`` for a sink that has the two halves: both in one call. And ``backlog``, a no-op."""

    def write(self, rows: list[dict[str, Any]], batch_id: str) -> None:
        self.write_prepared(self.prepare(rows), batch_id)  # type: ignore[attr-defined]

    def backlog(self, behind: bool, caught_up: bool, writing: bool) -> None:
        """What the exporter found on each read, for a sink with background work of its own that
        can wait (chDB's merges): ``behind``, a whole batch was waiting; ``caught_up``, little was;
        ``writing``, a write follows on the sink thread (else that thread is idle now). Optional:
        the exporter calls it only on sinks that have it."""


@runtime_checkable
class Sink(Protocol):
    def open(self) -> None:
        """Connect and prepare the destination (create/migrate schema). May raise SinkError."""

    def write(self, rows: list[dict[str, Any]], batch_id: str) -> None:
        """Store every row or raise. Rows carry ``kind`` ("request" when absent).

        The same as ``write_prepared(prepare(rows), batch_id)``.
        """

    def prepare(self, rows: list[dict[str, Any]]) -> Any:
        """The CPU-bound half of a write, which needs no connection: the rows encoded for the
        destination (a Native block, JSON lines). The exporter calls it on its own thread, so the
        sink thread holds Python's lock only briefly and spends its time waiting on the
        destination. Raises (never SinkError) for rows the sink can't take."""

    def write_prepared(self, prepared: Any, batch_id: str) -> None:
        """Store what ``prepare`` returned, or raise. Safe on the sink thread while the exporter's
        thread calls ``prepare`` for the next batch."""

    def close(self) -> None:
        """Release the destination. Safe to call twice, and after a failed open."""


@dataclass(frozen=True, slots=True)
class SinkOptions:
    """Knobs shared by the sinks; each sink reads the ones it understands."""

    # ClickHouse
    database: str = "fastgw"        # http(s) URLs may name another one in their path
    body_ttl_days: int = 0          # request/response bodies are blanked after N days; 0 = never
    dedup_window: int = 1000        # insert tokens remembered per table (non-replicated engines)
    connect_timeout: float = 5.0    # bounded, so an unreachable server is a SinkError, not a hang
    send_receive_timeout: float = 60.0
    # jsonl
    jsonl_max_bytes: int = 64 * 1024 * 1024
    jsonl_keep: int = 10            # rotated files kept besides the active one
    jsonl_fsync: bool = True

    @classmethod
    def coerce(cls, options: Any = None) -> "SinkOptions":
        """Accept None, a SinkOptions, a mapping (unknown keys are an error, as in config), or any
        object with matching attributes (a config section), so callers need no adapter."""
        if options is None:
            return cls()
        if isinstance(options, cls):
            return options
        names = {f.name for f in dataclasses.fields(cls)}
        if isinstance(options, Mapping):
            unknown = sorted(set(options) - names)
            if unknown:
                raise ValueError(f"unknown sink option(s): {', '.join(unknown)}")
            values = dict(options)
        else:
            values = {n: getattr(options, n) for n in names if hasattr(options, n)}
        made = cls(**values)
        if made.body_ttl_days < 0 or made.jsonl_keep < 0 or made.jsonl_max_bytes <= 0:
            raise ValueError("body_ttl_days and jsonl_keep must be >= 0, jsonl_max_bytes > 0")
        if made.connect_timeout <= 0 or made.send_receive_timeout <= 0:
            raise ValueError("sink timeouts must be positive")
        return made


def split_by_kind(rows: Iterable[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Group rows by their ``kind`` key, requests first; an unknown kind is a producer bug."""
    out: dict[str, list[dict[str, Any]]] = {k: [] for k in KINDS}
    for row in rows:
        kind = row.get("kind", KIND_REQUEST)
        bucket = out.get(kind)
        if bucket is None:
            raise ValueError(f"unknown record kind {kind!r} (expected one of {', '.join(KINDS)})")
        bucket.append(row)
    return out


Factory = Callable[[str, SinkOptions], Sink]
_REGISTRY: dict[str, Factory] = {}


def register(scheme: str, factory: Factory) -> None:
    """Make ``scheme://...`` URLs build sinks with ``factory(url, options)``."""
    _REGISTRY[scheme.lower()] = factory


def url_path(url: str, default: str) -> str:
    """The location of ``scheme:///abs``, ``scheme://rel/dir`` or bare ``scheme://`` (→ default).

    Filesystem sinks take everything after ``//`` as a path, so relative paths work too, unlike
    a strict URL parse that would read ``rel`` as a host name.
    """
    rest = url.split(":", 1)[1] if ":" in url else ""
    rest = rest[2:] if rest.startswith("//") else rest
    return os.path.expanduser(rest) if rest else default


def make_sink(url: str, options: Any = None) -> Sink:
    """Build (but do not open) the sink for ``url``:

    ``chdb:///path`` (in-process ClickHouse; ``chdb://`` alone means ./fastgw-data),
    ``http(s)://user:pass@host:8123/db`` (a ClickHouse server), ``jsonl:///dir``, ``none``.
    """
    _load_builtins()
    url = url.strip()
    scheme = url.split(":", 1)[0].lower() if ":" in url else url.lower()
    factory = _REGISTRY.get(scheme)
    if factory is None:
        known = ", ".join(sorted(_REGISTRY))
        raise ValueError(f"unknown sink URL scheme {scheme!r} in {url!r} (known: {known})")
    sink = factory(url, SinkOptions.coerce(options))
    if not (hasattr(sink, "prepare") and hasattr(sink, "write_prepared")):
        sink = WholeWrites(sink)
    return sink


class WholeWrites:
    """A registered sink with ``write`` alone: its preparing is a no-op, its writes whole."""

    def __init__(self, sink: Any) -> None:
        self.sink = sink

    def open(self) -> None:
        self.sink.open()

    def write(self, rows: list[dict[str, Any]], batch_id: str) -> None:
        self.sink.write(rows, batch_id)

    def prepare(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return rows

    def write_prepared(self, prepared: list[dict[str, Any]], batch_id: str) -> None:
        if prepared:
            self.sink.write(prepared, batch_id)

    def close(self) -> None:
        self.sink.close()


def _load_builtins() -> None:
    # Imported lazily so `none`/`jsonl` users never import clickhouse-connect or chdb.
    if _REGISTRY.keys() >= {"none", "jsonl", "chdb", "http", "https"}:
        return

    def clickhouse(url: str, options: SinkOptions) -> Sink:
        from fastgw.requestlog.sinks.clickhouse import ClickHouseSink

        return ClickHouseSink.from_url(url, options)

    def jsonl(url: str, options: SinkOptions) -> Sink:
        from fastgw.requestlog.sinks.jsonl import JsonlSink

        return JsonlSink(url_path(url, "./fastgw-log"), options)

    def none(url: str, options: SinkOptions) -> Sink:
        from fastgw.requestlog.sinks.none import NoneSink

        return NoneSink()

    for scheme, factory in (("chdb", clickhouse), ("http", clickhouse), ("https", clickhouse),
                            ("jsonl", jsonl), ("none", none)):
        _REGISTRY.setdefault(scheme, factory)
