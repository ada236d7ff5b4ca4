"""What an answer cost, known in the worker once its body is in: for stages that must act on it
before the exporter would (u=cents rate limits, gateway key budgets).

The price comes from the usage in the answer (or the usage chunk the gateway hid from the client),
priced with the exporter's table, so both agree to the nano-dollar. A streamed answer is watched
through a ``TappedStream`` keeping its last megabyte, where the usage is; a stream cut short is
priced too, since the provider bills what it produced: from its usage if it came, else from its
tokens, counted off the event loop (as for any answer without usage).
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from fastgw.requestlog import enrich
from fastgw.requestlog.enrich import count_usage, pricing_provider, request_json
from fastgw.requestlog.record import is_event_stream
from fastgw.stages.base import Response, TappedStream

log = logging.getLogger("fastgw.metering")

if TYPE_CHECKING:
    from fastgw.context import RequestContext

CAPTURE_BYTES = 1 << 20  # of a streamed answer: its usage is near the end

OnCost = Callable[[int], None]


class CostMeter:
    """Prices answers with the shipped price table plus ``logging.prices_file`` (loaded on first use)."""

    def __init__(self, prices_file: str | None = None) -> None:
        self.prices_file = prices_file
        self._prices: Any = None

    def watch(self, ctx: RequestContext, response: Response, on_cost: OnCost) -> None:
        """Call ``on_cost(nano-USD)`` once the answer's cost is known: now for a body in hand, at the
        stream's end (or abandonment) otherwise. Cache hits cost nothing and are not reported."""
        if ctx.cache_status == "hit":
            return
        if response.body is not None:
            self.settle(ctx, response, response.body, on_cost)
        elif response.stream is not None:
            response.stream = _CostTap(self, ctx, response, on_cost)  # type: ignore[assignment]

    def settle(self, ctx: RequestContext, response: Response, body: bytes, on_cost: OnCost) -> None:
        """Price from the answer's usage now; an answer without usage (a stream that never got its
        usage chunk, a server that sends none) has its tokens counted off the event loop, as the
        exporter counts them for the log row, so no answer is free."""
        nano = self.cost_nanousd(ctx, response, body)
        if nano is not None:
            on_cost(nano)
            return
        work = asyncio.get_running_loop().run_in_executor(None, self.cost_nanousd, ctx, response, body, True)
        work.add_done_callback(lambda f: _counted(f, ctx.request_id, on_cost))

    def cost_nanousd(self, ctx: RequestContext, response: Response, body: bytes, count: bool = False) -> int | None:
        """0 for an error answer or a model the table does not price; None for a 2xx answer without
        usage, unless ``count``: then its tokens are counted, as the exporter counts them."""
        from fastgw.requestlog.prices import PriceTable
        from fastgw.requestlog.usage import extract_usage

        provider = ctx.provider
        if provider is None or not 200 <= response.status < 300:
            return 0
        if self._prices is None:
            self._prices = PriceTable.load(self.prices_file)
        stream = is_event_stream(response.headers)
        data = body + b"\n\n" + ctx.hidden_usage if ctx.hidden_usage else body
        usage = extract_usage(provider.format.name, ctx.upstream_path.decode("latin-1"), data, stream)
        if usage is None and count:
            usage = count_usage(request_json(ctx.body), provider.format.name, ctx.upstream_path.decode("latin-1"),
                                body, requested_model(ctx.body))
        if usage is None:
            return 0 if count else None
        model = usage.model or requested_model(ctx.body)
        nano, _reason = self._prices.cost(pricing_provider(provider.name, provider.format.name), model or None, usage)
        return nano or 0


class _CostTap(TappedStream):
    __slots__ = ("_chunks", "_ctx", "_meter", "_on_cost", "_response", "_size")

    def __init__(self, meter: CostMeter, ctx: RequestContext, response: Response, on_cost: OnCost) -> None:
        assert response.stream is not None
        super().__init__(response.stream)
        self._meter, self._ctx, self._response, self._on_cost = meter, ctx, response, on_cost
        self._chunks: deque[bytes] = deque()
        self._size = 0

    def seen(self, chunk: bytes) -> None:
        self._chunks.append(chunk)
        self._size += len(chunk)
        while self._size > CAPTURE_BYTES and len(self._chunks) > 1:
            self._size -= len(self._chunks.popleft())

    def ended(self) -> None:
        """Whole or cut short (the client left before the usage came): the provider bills what it
        produced either way."""
        self._meter.settle(self._ctx, self._response, b"".join(self._chunks), self._on_cost)

    abandoned = ended


def requested_model(body: bytes) -> str:
    """The ``model`` a JSON request body names; "" when it names none (cheap when absent)."""
    return enrich.requested_model(body) if b'"model"' in body else ""


def _counted(work: asyncio.Future[int | None], request_id: str, on_cost: OnCost) -> None:
    """The counted cost, charged; a count that failed is said loudly, as that answer goes uncharged."""
    if work.cancelled():
        log.warning("request %s: counting its tokens was cancelled; its cost is not charged", request_id)
    elif work.exception() is not None:
        log.error("request %s: counting its tokens failed; its cost is not charged", request_id,
                  exc_info=work.exception())
    else:
        on_cost(work.result() or 0)
