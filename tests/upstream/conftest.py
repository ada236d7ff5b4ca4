"""What the upstream tests share: both event loops, and a read of the pool's per-origin state."""

from __future__ import annotations

import asyncio
import time
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


async def eventually(cond: Callable[[], bool], timeout: float = 3.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.01)


async def close_pool(pool: ConnectionPool) -> None:
    """Close the pool and let the loop run until every connection's transport is really gone."""
    pool.close()
    await eventually(lambda: all(not op.connections for op in pool.origins.values()))
    await asyncio.sleep(0)
