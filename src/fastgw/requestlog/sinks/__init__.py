"""Request-log sinks: where the exporter's batches go (ClickHouse via chDB or HTTP, JSONL, nothing).

``make_sink(url, options)`` picks one by URL scheme; see ``base`` for the contract.
"""

from fastgw.requestlog.sinks.base import (
    KIND_FEEDBACK,
    KIND_REQUEST,
    KIND_SCORE,
    Sink,
    SinkError,
    SinkOptions,
    make_sink,
    register,
)

__all__ = [
    "KIND_FEEDBACK",
    "KIND_REQUEST",
    "KIND_SCORE",
    "Sink",
    "SinkError",
    "SinkOptions",
    "make_sink",
    "register",
]
