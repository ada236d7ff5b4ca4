"""RateLimit stage: Helicone-RateLimit-Policy, the policies config sets per user and per model, and
those a gateway key carries (``fastgw keys create --ratelimit``), scoped to that key.

Every policy that applies to a request is checked in one all-or-nothing call (a request refused by
one policy eats no other policy's quota). Refused: 429 in OpenAI's shape with Retry-After. Allowed:
the Helicone-RateLimit-* headers of the strictest policy (the least remaining) go on the response.

``u=cents`` policies pass while their balance is positive; the request's real cost is charged
once it is known: from the usage in the answer (or the usage chunk the gateway hid), priced with
the same table the exporter uses. Only requests under a cents policy pay for that here.

When the limiter's store (Redis) does not answer, ``ratelimit.fail_open`` decides: let the request
through (the default; counted in ``unavailable``) or refuse it with 503. After a failure the store
is not asked for a second (``redis_client.Outage``), so a dead Redis does not cost every request
its timeout.

With Redis under both this and the cache, the cache lookup rides this stage's round trip: both
scripts go down one connection in one pipeline, and the Cache stage reads the prefetched reply.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
from typing import TYPE_CHECKING, Any

from redis.exceptions import NoScriptError

from fastgw.errors import InvalidHeader, LimiterUnavailable, RateLimited
from fastgw.ratelimit import (
    LUA_SCRIPT,
    Decision,
    MemoryLimiter,
    MissingSegment,
    Op,
    Policy,
    PolicyError,
    RedisLimiter,
    check_op,
    decisions_from_reply,
    parse_policy,
    script_args,
    segment_key,
    spend_op,
)
from fastgw.ratelimit import LimiterUnavailable as StoreUnavailable
from fastgw.ratelimit.policy import format_quota
from fastgw.redis_client import Background, Outage
from fastgw.stages.base import Handler, Response
from fastgw.stages.metering import CostMeter, requested_model

if TYPE_CHECKING:
    from fastgw.cache.redis_store import RedisCache
    from fastgw.config import RateLimitConfig
    from fastgw.context import RequestContext

log = logging.getLogger("fastgw.ratelimit")

SCRIPT_SHA = hashlib.sha1(LUA_SCRIPT.encode()).hexdigest()


def rate_headers(d: Decision) -> bytes:
    remaining = d.remaining if isinstance(d.remaining, int) else format_quota(d.remaining)
    return b"helicone-ratelimit-limit: %s\r\nhelicone-ratelimit-remaining: %s\r\nhelicone-ratelimit-policy: %s\r\nhelicone-ratelimit-reset: %d\r\n" % (
        format_quota(d.limit).encode(), str(remaining).encode(), d.policy.normalised.encode(), math.ceil(d.reset_s))


class RateLimit:
    def __init__(self, next: Handler, config: RateLimitConfig, limiter: MemoryLimiter | RedisLimiter,
                 cache_store: RedisCache | None = None, prices_file: str | None = None) -> None:
        self.next = next
        self.limiter = limiter
        self.fail_open = config.fail_open
        self.users = {k: parse_policy(v) for k, v in config.users.items()}
        self.models = {k: parse_policy(v) for k, v in config.models.items()}
        self.has_config = bool(self.users or self.models)
        # The cache lookup can share our round trip only on the same Redis client.
        self.cache_store = cache_store if (
            cache_store is not None and isinstance(limiter, RedisLimiter) and cache_store.client is limiter.client
        ) else None
        self.meter = CostMeter(prices_file)
        self.unavailable = 0  # checks the store could not answer (requests let through when fail-open)
        self.outage = Outage("rate limiter", f"failing {'open' if self.fail_open else 'closed'}")
        self.background = Background()

    async def __call__(self, ctx: RequestContext) -> Response:
        header = ctx.headers.helicone.ratelimit_policy
        if header is None and not self.has_config and (ctx.principal is None or not ctx.principal.policies):
            return await self.next(ctx)
        items = self._applicable(ctx, header)
        if not items:
            return await self.next(ctx)
        ops = [check_op(key, policy) for key, policy in items]
        if self.outage.down:
            return await self._unavailable(ctx)
        try:
            decisions = await self._decide(ctx, ops)
        except StoreUnavailable as exc:
            self.outage.failed(exc)
            return await self._unavailable(ctx)
        refused = [d for d in decisions if not d.allowed]
        if refused:
            worst = max(refused, key=lambda d: d.retry_after_s)
            raise RateLimited(
                f"rate limit exceeded for policy {worst.policy.normalised}; retry in {math.ceil(worst.retry_after_s)}s",
                headers=rate_headers(worst) + b"retry-after: %d\r\n" % max(1, math.ceil(worst.retry_after_s)),
            )
        strictest = min(decisions, key=lambda d: (d.remaining / d.limit if d.limit else 0, -d.reset_s))
        ctx.extra_headers += rate_headers(strictest)
        cents = [(key, policy) for key, policy in items if policy.unit == "cents"]
        response = await self.next(ctx)
        if cents:
            self._charge_later(ctx, response, cents)
        return response

    async def _unavailable(self, ctx: RequestContext) -> Response:
        self.unavailable += 1
        if self.fail_open:
            return await self.next(ctx)
        raise LimiterUnavailable("the rate limiter is unavailable; try again shortly")

    # --- which policies -----------------------------------------------------------------------

    def _applicable(self, ctx: RequestContext, header: str | None) -> list[tuple[str, Policy]]:
        h = ctx.headers.helicone
        items: list[tuple[str, Policy]] = []
        try:
            if header is not None:
                try:
                    policy = parse_policy(header)
                except PolicyError as exc:
                    raise InvalidHeader(str(exc)) from None
                items.append((segment_key(policy, h.user_id, h.properties), policy))
            if self.users and h.user_id:
                policy = self.users.get(h.user_id) or self.users.get("*")  # type: ignore[assignment]
                if policy is not None:
                    items.append((segment_key(policy, h.user_id, h.properties, scope=f"user:{h.user_id}"), policy))
            if self.models:
                model = requested_model(ctx.body)
                policy = self.models.get(model) or self.models.get("*")  # type: ignore[assignment]
                if policy is not None and model:
                    items.append((segment_key(policy, h.user_id, h.properties, scope=f"model:{model}"), policy))
            if ctx.principal is not None:  # the gateway key's own policies, its key id the scope
                scope = f"key:{ctx.principal.key_id}"
                items.extend((segment_key(p, h.user_id, h.properties, scope=scope), p) for p in ctx.principal.policies)
        except MissingSegment as exc:
            raise InvalidHeader(str(exc)) from None
        return items

    # --- asking the store ---------------------------------------------------------------------

    async def _decide(self, ctx: RequestContext, ops: list[Op]) -> list[Decision]:
        if isinstance(self.limiter, MemoryLimiter):
            return self.limiter.apply_now(ops)  # no await: nothing to wait for in memory
        plan = ctx.cache_plan
        if self.cache_store is None or plan is None:
            return await self.limiter.apply(ops)
        return await self._with_cache_lookup(ctx, ops, plan)

    async def _with_cache_lookup(self, ctx: RequestContext, ops: list[Op], plan: tuple[Any, bytes]) -> list[Decision]:
        """Our script and the cache lookup in one pipeline: one round trip for both."""
        limiter, cache = self.limiter, self.cache_store
        assert isinstance(limiter, RedisLimiter) and cache is not None
        directive, key = plan
        keys, args = script_args(ops, limiter.prefix, limiter.time_offset_s)
        ckeys, cargs = cache.lookup_args(key, directive)
        from fastgw.cache.redis_store import LOOKUP_SHA

        pipe = limiter.client.pipeline(transaction=False)
        pipe.evalsha(SCRIPT_SHA, len(keys), *keys, *args)
        pipe.evalsha(LOOKUP_SHA, len(ckeys), *ckeys, *cargs)
        try:
            async with asyncio.timeout(limiter.timeout):
                ours, lookup = await pipe.execute(raise_on_error=False)
        except Exception as exc:  # the connection itself failed: neither store answered
            ctx.cache_prefetch = exc
            raise StoreUnavailable(f"{type(exc).__name__}: {exc}") from exc
        ctx.cache_prefetch = lookup
        if isinstance(ours, NoScriptError):  # a restarted Redis: the plain call loads the script
            return await limiter.apply(ops)
        if isinstance(ours, Exception):
            raise StoreUnavailable(f"{type(ours).__name__}: {ours}")
        return decisions_from_reply(ours, ops)

    # --- u=cents: charge the real cost after the response --------------------------------------

    def _charge_later(self, ctx: RequestContext, response: Response, cents: list[tuple[str, Policy]]) -> None:
        self.meter.watch(ctx, response, lambda nano: self._charge(nano, cents))

    def _charge(self, nano: int, cents: list[tuple[str, Policy]]) -> None:
        amount = nano / 1e7  # nano-dollars to cents
        if not amount:
            return
        self.background.spawn(self._spend([spend_op(key, policy, amount) for key, policy in cents]))

    async def _spend(self, ops: list[Op]) -> None:
        try:
            if isinstance(self.limiter, MemoryLimiter):
                self.limiter.apply_now(ops)
            else:
                await self.limiter.apply(ops)
        except StoreUnavailable as exc:
            self.unavailable += 1
            log.warning("could not charge a u=cents rate limit: %s", exc)
