"""Auth stage: a gateway key (``Authorization: Bearer fgw-...``, ``Helicone-Auth: Bearer fgw-...``, or
``x-api-key: fgw-...`` as the Anthropic SDK sends it) is checked before anything goes upstream, and
its spend is charged after the answer.

There are three cases:
1. No gateway key. With ``auth.required`` the request gets 401; without, it passes as before, at
   the cost of three prefix checks (a loopback sidecar pays nothing for keys it doesn't use).
2. A key that is unknown or revoked: 401. A key whose model list does not allow the requested
   model: 403. A key over a budget, its own or its team's, in any period: 429 naming the budget and
   the period. The store answering too slowly: 503, never a free pass.
3. A valid key: ``ctx.principal`` is set (the log row gets its key id, the rate limiter its
   policies, ``providers.credentials.credential_for`` its provider credentials), and when a budget
   applies, the answer's real cost is charged to every budget counter once it is known.

The stage sits outside the gateway's own logging endpoints (stages/log_api.py), so with
``auth.required`` reporting a call or its feedback needs a valid key too; the key's model list and
budgets don't apply there, as nothing is called and nothing is spent.

``ctx.principal`` is set as soon as the key is known, so the log rows of the key's refused
requests (403, 429) carry its key id too.

Budgets are check-then-charge: the check reads the committed counters, the charge lands after the
answer. Concurrent requests can therefore overspend a budget by at most the cost of the requests in
flight when it ran out, never more: each one in flight passed a check that saw every earlier charge.
"""

from __future__ import annotations

import logging
import time
from ipaddress import ip_address
from typing import TYPE_CHECKING

from fastgw.errors import Forbidden, Unauthorized
from fastgw.keys.budget import Cap, check
from fastgw.keys.principal import KeyBook
from fastgw.keys.store import StoreError
from fastgw.keys.token import bearer_key, plain_key
from fastgw.redis_client import Background
from fastgw.stages.base import Handler, Response
from fastgw.stages.log_api import is_log_endpoint
from fastgw.stages.metering import CostMeter, requested_model

if TYPE_CHECKING:
    from fastgw.config import Config
    from fastgw.context import RequestContext

log = logging.getLogger("fastgw.auth")

_NO_MODEL_OK = frozenset({b"GET", b"HEAD", b"OPTIONS"})


class Auth:
    def __init__(self, next: Handler, config: Config, book: KeyBook | None = None,
                 charges: Background | None = None) -> None:
        self.next = next
        self.required = config.auth.required
        self.book = book or KeyBook(config)
        self.meter = CostMeter(config.logging.prices_file)
        self.background = charges or Background()
        self.charge_failures = 0  # charges the store did not take (that spend is not counted)

    def __repr__(self) -> str:
        return f"Auth(required={self.required}, {self.book!r}, charge_failures={self.charge_failures})"

    async def __call__(self, ctx: RequestContext) -> Response:
        h = ctx.headers
        key = bearer_key(h.authorization) or bearer_key(h.helicone.auth) or plain_key(h.api_key)
        if key is None:
            if self.required:
                raise Unauthorized("a gateway key is required: send Authorization: Bearer fgw-... "
                                   "(or Helicone-Auth: Bearer fgw-...)")
            return await self.next(ctx)
        principal = ctx.principal = await self.book.principal(key)
        if (principal.models is not None or principal.metered) and is_log_endpoint(ctx.method, ctx.target):
            return await self.next(ctx)  # logging a call: the key must be valid, nothing more
        if principal.models is not None:
            model = requested_model(ctx.body)
            if not model and ctx.method not in _NO_MODEL_OK:
                raise Forbidden(f"gateway key {principal.key_id} is limited to certain models, and this request "
                                "names no model in its body", code="model_not_allowed")
            if model and not principal.models.allows(model):
                raise Forbidden(f"gateway key {principal.key_id} may not use model {model[:200]!r}",
                                code="model_not_allowed")
        caps = principal.caps(time.time()) if principal.metered else None
        if caps:
            check(caps, await self.book.spent(caps))
        response = await self.next(ctx)
        if caps:
            self.meter.watch(ctx, response, lambda nano: self._charge(caps, nano))
        return response

    def _charge(self, caps: list[Cap], nano: int) -> None:
        if nano > 0:
            self.background.spawn(self._charge_now(caps, nano))

    async def _charge_now(self, caps: list[Cap], nano: int) -> None:
        try:
            await self.book.store.charge([(c.cell, c.ttl_s) for c in caps], nano)
        except StoreError as exc:
            self.charge_failures += 1
            log.warning("could not charge %d nano-USD to a gateway key's budgets: %s", nano, exc)


def exposure_warning(config: Config) -> str | None:
    """A warning when the server listens beyond loopback and lets requests in without a key."""
    if config.auth.required:
        return None
    host = config.server.host
    try:
        loopback = host == "localhost" or ip_address(host.strip("[]")).is_loopback
    except ValueError:
        loopback = False
    if loopback:
        return None
    return (f"listening on {host} without auth.required: anyone who can reach this port can use the "
            "gateway and its configured provider keys; create keys with `fastgw keys create` and set "
            "auth.required: true")
