"""What the upstream tests share: both event loops, and a read of the pool's per-origin state."""

from __future__ import annotations

import asyncio
from typing import Any, Callable, Coroutine

import pytest
import uvloop

from fastgw.providers.table import Origin
from fastgw.upstream.pool import ConnectionPool, OriginPool

Runner = Callable[[Coroutine[Any, Any, Any]], Any]


def op_of(pool: ConnectionPool, origin: Origin) -> OriginPool:
    """The origin's pool state; the pool forgets an origin nothing uses, which reads as empty."""
    return pool.origins.get(origin) or OriginPool(pool, origin)


@pytest.fixture(params=["asyncio", "uvloop"])
def run(request: pytest.FixtureRequest) -> Runner:
    return uvloop.run if request.param == "uvloop" else asyncio.run  # type: ignore[return-value]
