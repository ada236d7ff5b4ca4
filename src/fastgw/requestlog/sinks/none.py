"""The ``none`` sink: accepts every batch and keeps nothing.

For deployments that want the gateway without request logging, and for measuring the exporter
without a destination's cost. It still counts, so tests and metrics can see what went through.
"""

from __future__ import annotations

from typing import Any

from fastgw.requestlog.sinks.base import PreparedWrites


class NoneSink(PreparedWrites):
    def __init__(self) -> None:
        self.rows_written = 0
        self.batches_written = 0

    def open(self) -> None:
        pass

    def prepare(self, rows: list[dict[str, Any]]) -> int:
        return len(rows)

    def write_prepared(self, prepared: int, batch_id: str) -> None:
        self.rows_written += prepared
        self.batches_written += 1

    def close(self) -> None:
        pass
