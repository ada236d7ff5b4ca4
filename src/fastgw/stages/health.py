"""Health stage: ``GET /healthz`` answers from the gateway itself, for load balancers and Docker.

It sits in front of routing so a health check never touches a provider.
"""

from __future__ import annotations

from fastgw.context import RequestContext
from fastgw.stages.base import Handler, Response

HEALTH_PATH = b"/healthz"
_HEALTHY = Response(200, b"content-type: application/json\r\ncache-control: no-store\r\n", body=b'{"status":"ok"}')


class Health:
    def __init__(self, next: Handler) -> None:
        self.next = next

    async def __call__(self, ctx: RequestContext) -> Response:
        if ctx.target == HEALTH_PATH and ctx.method in (b"GET", b"HEAD"):
            ctx.log_skip = True
            return _HEALTHY
        return await self.next(ctx)
