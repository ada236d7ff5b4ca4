"""Shared fixtures: the mock provider (the one stand-in), and real gateway processes in front of it."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from fastgw.testing.mock_upstream import MockUpstreamThread
from tests.helpers import GatewayProcess, close_sdk_clients, gateway_config
from tests.redis_server import RedisServer


@pytest.fixture(autouse=True)
def _close_sdk_clients() -> Iterator[None]:
    yield
    close_sdk_clients()


@pytest.fixture(scope="session")
def mock() -> Iterator[MockUpstreamThread]:
    with MockUpstreamThread() as m:
        yield m


@pytest.fixture(scope="session")
def gateway(mock: MockUpstreamThread, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    """One gateway for the whole session, on the compiled extension, in front of the mock."""
    gw = GatewayProcess(gateway_config(mock.url), tmp_path_factory.mktemp("gw"))
    yield gw
    assert gw.stop() == 0, gw.log()


@pytest.fixture
def start_gateway(mock: MockUpstreamThread, tmp_path: Path) -> Iterator[Callable[..., GatewayProcess]]:
    """Start gateways with test-specific config; all are stopped (and must exit cleanly) afterwards."""
    started: list[GatewayProcess] = []

    def start(config: dict[str, Any] | None = None, **kwargs: Any) -> GatewayProcess:
        gw = GatewayProcess(config if config is not None else gateway_config(mock.url), tmp_path, **kwargs)
        started.append(gw)
        return gw

    yield start
    for gw in started:
        gw.stop()


@pytest.fixture(scope="session")
def redis_session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    yield server
    server.stop()


@pytest.fixture
def redis_server(redis_session: RedisServer) -> RedisServer:
    """The session's redis-server, running and empty. A test that kills it gets it restarted here."""
    if redis_session.proc is None or redis_session.proc.poll() is not None:
        redis_session.start()
    redis_session.flushall()
    return redis_session
