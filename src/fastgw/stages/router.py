"""Router stage: which target serves an attempt, and whether to try again or elsewhere.

Three kinds of request reach it:
- a request whose JSON ``model`` names a route in config (``routes:``): its targets are ordered by
  the route's strategy and their health (routing/balance.py), the first is tried, and the others
  are its fallbacks, on 429, 408, 5xx and connection errors;
- a request with ``Helicone-Fallbacks``: the client's chain of URLs (routing/fallbacks.py), each
  checked against ``targets.allow`` like ``Helicone-Target-Url``;
- anything else goes straight on, unless retries are on for it.

Each attempt may be retried first (``Helicone-Retry-*`` or config: routing/retry.py). All of this
happens before the Response is returned, so nothing is retried once a byte has reached the client;
when every option is spent, the last answer is returned as it came (a 503 stays the provider's
503), and only when the last attempt had no answer at all is its error raised. Every attempt is
recorded in ``ctx.attempts`` for the log, and ``Helicone-Fallback-Index`` says which one served.
"""

from __future__ import annotations

import asyncio
import random
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import orjson

from fastgw._native import headers as native_headers
from fastgw._native.errors import HeaderError
from fastgw.config import Config
from fastgw.context import RequestContext
from fastgw.errors import BadRequest, InvalidHeader, UpstreamError
from fastgw.providers.table import Provider
from fastgw.routing import balance
from fastgw.routing.fallbacks import (
    FallbackEntry,
    override_body,
    parse_fallbacks,
    with_headers,
)
from fastgw.routing.health import Health
from fastgw.routing.retry import (
    RETRYABLE_STATUSES,
    RetryPolicy,
    policy_from_headers,
    retry_after_seconds,
)
from fastgw.routing.table import Route, build_routes
from fastgw.stages.base import Handler, Response
from fastgw.stages.route import TargetAllowlist

# The OpenAI-shaped JSON endpoints whose body names a model that a route can serve.
ROUTABLE_PATHS = (b"/v1/chat/completions", b"/v1/completions", b"/v1/embeddings", b"/v1/responses")
_RETRY_AFTER = re.compile(rb"(?im)^retry-after(-ms)?:[ \t]*([^\r\n]*)")
_REMAINING = re.compile(rb"(?im)^x-ratelimit-remaining-(?:requests|tokens):[ \t]*(\d+)")


def _falls_back(status: int) -> bool:
    """Config chains move on when another provider could do better: overload, outage, timeouts."""
    return status >= 500 or status in (408, 429)


@dataclass(slots=True)
class Step:
    """One place to send the request, with everything an attempt there changes on the context."""

    target: str  # for the log: "<provider>/<model or ''>"
    provider: Provider
    upstream_path: bytes
    body: bytes
    headers: Any  # ParsedHeaders to send with (a fallback entry's own headers), or None: the request's
    model: str | None
    health_key: str | None  # route targets only
    entry: FallbackEntry | None  # Helicone-Fallbacks entries only

    def falls_back_on(self, status: int) -> bool:
        return self.entry.falls_back_on(status) if self.entry is not None else _falls_back(status)


class Router:
    def __init__(self, next: Handler, config: Config, providers: dict[str, Provider], *,
                 clock: Callable[[], float] = time.monotonic, rand: Callable[[], float] = random.random,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> None:
        self.next = next
        self.routes = build_routes(config, providers) if config.routes else {}
        self._providers = tuple(providers.values())  # for a fallback target's stream_usage
        # A route's name as a JSON string: a body without any of them is not parsed at all.
        self._quoted = [orjson.dumps(name) for name in self.routes]
        self.health = Health(config.routing.health)
        self.default_retry = RetryPolicy.from_config(config.routing.retry)
        self.allowlist = TargetAllowlist(config.targets.allow)
        self.clock, self.rand, self.sleep = clock, rand, sleep

    async def __call__(self, ctx: RequestContext) -> Response:
        h = ctx.headers.helicone
        if h.fallbacks is not None:
            steps = [self._entry_step(ctx, e) for e in parse_fallbacks(h.fallbacks)]
            ctx.unified = None  # the entries are URLs: the client's body goes as is (plus bodyKeyOverride)
            return await self._run(ctx, steps, policy_from_headers(h, self.default_retry), True)
        found = self._route_for(ctx) if self.routes else None
        if found is not None:
            route = found[0]
            return await self._run(ctx, self._route_steps(ctx, found), policy_from_headers(h, route.retry),
                                   len(route.targets) > 1)
        policy = policy_from_headers(h, self.default_retry)
        if policy is None:
            return await self.next(ctx)  # the common case: one attempt, nothing to decide
        assert ctx.provider is not None, "the route stage runs first"
        step = Step(f"{ctx.provider.name}/{ctx.model_override or ''}", ctx.provider, ctx.upstream_path, ctx.body,
                    None, ctx.model_override, None, None)
        return await self._run(ctx, [step], policy, False)

    # --- building the steps -------------------------------------------------------------------

    def _route_for(self, ctx: RequestContext) -> tuple[Route, dict[str, Any], bool] | None:
        """The route the body's model names, the parsed body, and whether it is a chat request.

        Only chat requests become unified ones (``ctx.unified``), which Translate can carry to any
        wire format; the other OpenAI JSON endpoints are routed among OpenAI-format targets only.
        """
        provider = ctx.provider
        if ctx.method != b"POST" or provider is None or provider.format.name != "openai":
            return None
        rest = ctx.upstream_path[len(provider.base_path):].split(b"?", 1)[0]
        if rest not in ROUTABLE_PATHS:
            return None
        body = ctx.unified
        if body is None:
            raw = ctx.body
            if not any(q in raw for q in self._quoted):
                return None
            try:
                # The client's body: Translate asks each target for stream usage only where its
                # provider takes stream_options (stages/stream_usage.py rewrote ctx.body).
                body = orjson.loads(ctx.body if ctx.client_body is None else ctx.client_body)
            except orjson.JSONDecodeError:
                return None  # not ours to judge: the provider answers malformed JSON itself
        model = body.get("model") if isinstance(body, dict) else None
        route = self.routes.get(model) if isinstance(model, str) else None
        if route is None:
            return None
        chat = rest == ROUTABLE_PATHS[0]
        if chat:
            ctx.unified = body  # a route may cross wire formats: Translate works from the parsed body
        return route, body, chat

    def _route_steps(self, ctx: RequestContext, found: tuple[Route, dict[str, Any], bool]) -> list[Step]:
        route, parsed, chat = found
        now = self.clock()
        order = balance.order(route.candidates, route.strategy, self.health, now, self.rand)
        assert ctx.provider is not None
        rest = ctx.upstream_path[len(ctx.provider.base_path):]
        steps = []
        for i in order:
            t, c = route.targets[i], route.candidates[i]
            if not chat and t.provider.format.translates:
                continue  # only chat completions translate
            body = ctx.body if t.model is None else orjson.dumps({**parsed, "model": t.model})
            steps.append(Step(t.key, t.provider, t.provider.base_path.encode() + rest, body, None,
                              t.model, c.key, None))
        if not steps:
            raise BadRequest(f"route {route.name!r} has no OpenAI-format target for "
                             f"{rest.split(b'?', 1)[0].decode('latin-1')}: only chat completions are translated")
        return steps

    def _entry_step(self, ctx: RequestContext, entry: FallbackEntry) -> Step:
        provider = self.allowlist.provider_for(entry.target_url, "Helicone-Fallbacks target-url", self._providers)
        headers = None
        if entry.headers:
            try:
                headers = native_headers.parse_headers(with_headers(ctx.raw_headers, entry.headers))
            except HeaderError as exc:
                raise InvalidHeader(f"Helicone-Fallbacks headers: {exc}") from None
        body = override_body(ctx.body, entry.body_override) if entry.body_override else ctx.body
        return Step(f"{provider.name}/", provider, provider.base_path.encode() + ctx.target, body, headers, None, None, entry)

    # --- running them -------------------------------------------------------------------------

    async def _run(self, ctx: RequestContext, steps: list[Step], policy: RetryPolicy | None,
                   announce: bool) -> Response:
        body = ctx.body
        try:
            return await self._try_steps(ctx, steps, policy, announce)
        finally:
            ctx.body = body  # the log keeps what the client sent (model_requested: the route's name)

    async def _try_steps(self, ctx: RequestContext, steps: list[Step], policy: RetryPolicy | None,
                         announce: bool) -> Response:
        for index, step in enumerate(steps):
            last_step = index == len(steps) - 1
            retries = 0
            while True:
                response, error = await self._attempt(ctx, step, index)
                status = response.status if response is not None else 0
                retryable = error is not None or status in RETRYABLE_STATUSES
                if not retryable and not step.falls_back_on(status):
                    return self._served(ctx, response, index, announce)  # type: ignore[arg-type]
                if policy is not None and retryable and retries < policy.num:
                    wait = policy.wait(retries, _retry_after(response), self.rand)
                    if response is not None:
                        response.close()
                    retries += 1
                    ctx.retry_count += 1
                    t0 = time.perf_counter_ns()
                    try:
                        await self.sleep(wait)
                    finally:  # time the upstream made us wait: not the gateway's own (Server-Timing)
                        ctx.upstream_ns += time.perf_counter_ns() - t0
                    continue
                if not last_step and (error is not None or step.falls_back_on(status)):
                    if response is not None:
                        response.close()
                    break  # on to the next step
                if error is not None:
                    ctx.fallback_index = index - 1  # the log says how far it got
                    raise error
                return self._served(ctx, response, index, announce)  # type: ignore[arg-type]
        raise AssertionError("unreachable: the last step returns or raises")  # pragma: no cover

    def _served(self, ctx: RequestContext, response: Response, index: int, announce: bool) -> Response:
        ctx.fallback_index = index - 1
        if announce:
            ctx.extra_headers += b"helicone-fallback-index: %d\r\n" % index
        return response

    async def _attempt(self, ctx: RequestContext, step: Step, index: int) -> tuple[Response | None, UpstreamError | None]:
        ctx.provider, ctx.upstream_path, ctx.body, ctx.model_override = (
            step.provider, step.upstream_path, step.body, step.model)
        ctx.upstream_head = None  # each attempt's format writes its own (Translate, prepare_passthrough)
        original = ctx.headers
        if step.headers is not None:
            ctx.headers = step.headers
        key, now = step.health_key, self.clock()
        ticket = self.health.started(key, now) if key is not None else 0
        t0 = time.perf_counter_ns()
        response: Response | None = None
        error: UpstreamError | None = None
        try:
            response = await self.next(ctx)
        except UpstreamError as exc:
            error = exc
        except BaseException:
            if key is not None:
                self.health.abandoned(key, ticket)
            raise
        finally:
            ctx.headers = original  # the entry's headers were for that upstream only, not the log
        dur = time.perf_counter_ns() - t0
        status = response.status if response is not None else 0
        ctx.attempts.append({
            "target": step.target, "status": status, "error": error.message[:200] if error is not None else "",
            "start_us": (t0 - ctx.t_start) // 1000, "dur_us": dur // 1000, "fallback_index": index - 1,
        })
        if key is not None:
            later = self.clock()
            self.health.finished(key, later, error is not None or status >= 500,
                                 None if error is not None else dur / 1e9, ticket)
            if response is not None:
                self._note_pressure(key, later, response)
        return response, error

    def _note_pressure(self, key: str, now: float, response: Response) -> None:
        retry_after = _retry_after(response) if response.status == 429 or response.status == 503 else None
        if response.status == 429 and retry_after is None:
            retry_after = 1.0
        counts = [int(v) for v in _REMAINING.findall(response.headers)]
        remaining = min(counts) if counts else None  # requests or tokens: whichever runs out first
        if retry_after is not None or remaining is not None:
            self.health.rate_limit_hint(key, now, retry_after, remaining)


def _retry_after(response: Response | None) -> float | None:
    """The upstream's Retry-After in seconds (``retry-after-ms`` preferred), or None."""
    if response is None or b"etry-after" not in response.headers.lower():
        return None
    best: float | None = None
    for m in _RETRY_AFTER.finditer(response.headers):
        if m.group(1):
            try:
                return max(0.0, float(m.group(2)) / 1000.0)
            except ValueError:
                continue
        best = retry_after_seconds(m.group(2), time.time())
    return best
