"""What watches the exporter's committed batches: Prometheus metrics, and OpenTelemetry traces when on.

Observers run in the exporter process after a batch is committed, so they see each row once per
commit and never slow a worker. They are built from config here, in one place, so the exporter
only has to call them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from fastgw.analytics.metrics import GatewayMetrics
    from fastgw.config import Config
    from fastgw.requestlog.exporter import Exporter


class Observer(Protocol):
    def observe(self, rows: list[dict[str, Any]]) -> None:
        """Called with the enriched rows of one committed batch (feedback and score rows included)."""

    def close(self) -> None:
        """The exporter is stopping: deliver what is pending."""


def observers_for(config: Config, exporter: Exporter) -> tuple[GatewayMetrics | None, list[Observer]]:
    """The metrics (None when ``metrics.enabled`` is false) and every observer, metrics included."""
    observers: list[Observer] = []
    metrics = None
    if config.metrics.enabled:
        from fastgw.analytics.metrics import GatewayMetrics

        metrics = GatewayMetrics(config.metrics, config.providers, exporter)
        observers.append(metrics)
    if config.otel.enabled:
        from fastgw.analytics.otel import SpanExporter

        observers.append(SpanExporter(config.otel))
    return metrics, observers
