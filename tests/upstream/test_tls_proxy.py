"""HTTPS upstreams with real certificate verification (a trustme CA), and HTTPS_PROXY tunnels.

The provider is the MockUpstream served over TLS; the proxy is a small CONNECT proxy written
here, so the test can count the tunnels it opened and refuse some.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from pathlib import Path
from typing import Any, AsyncIterator

import orjson
import pytest
import trustme

from fastgw.config import UpstreamConfig
from fastgw.errors import UpstreamUnreachable
from fastgw.providers.table import Origin
from fastgw.testing.mock_upstream import MockUpstream
from fastgw.upstream.pool import ConnectionPool
from tests.upstream.conftest import Runner, close_pool, op_of

CHAT = b'{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}'



@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def server_ctx(ca: trustme.CA) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(ctx)
    return ctx


@pytest.fixture
def ca_pem(ca: trustme.CA, tmp_path: Path) -> str:
    path = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return str(path)


@pytest.fixture(autouse=True)
def no_proxy_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Start from an environment without proxies or CA overrides; tests set what they need."""
    for name in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy",
                 "NO_PROXY", "no_proxy", "SSL_CERT_FILE", "SSL_CERT_DIR", "REQUEST_METHOD"):
        monkeypatch.delenv(name, raising=False)


def chat(origin: Origin) -> bytes:
    return (
        b"POST /v1/chat/completions HTTP/1.1\r\nhost: " + origin.host_header + b"\r\n"
        b"content-type: application/json\r\ncontent-length: %d\r\n\r\n" % len(CHAT) + CHAT
    )


async def fetch(pool: ConnectionPool, origin: Origin) -> dict[str, Any]:
    resp = await pool.request(origin, chat(origin))
    try:
        assert resp.status == 200
        body = resp.take_body() if resp.complete else b"".join([c async for c in resp])
    finally:
        resp.close()
    data: dict[str, Any] = orjson.loads(body)
    assert data["object"] == "chat.completion"
    return data



class ConnectProxy:
    """An HTTP proxy that only does CONNECT: answers 200 (or ``refuse``) and pipes bytes both ways."""

    def __init__(self, refuse: int = 0) -> None:
        self.refuse = refuse
        self.connects: list[str] = []  # the authority of every CONNECT, in order
        self.port = 0
        self._server: asyncio.AbstractServer | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    async def stop(self) -> None:
        assert self._server is not None
        self._server.close()
        for w in list(self._writers):
            w.close()
        await asyncio.wait_for(asyncio.gather(*self._tasks, return_exceptions=True), 5)
        await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self._writers.add(writer)
        up_writer: asyncio.StreamWriter | None = None
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            method, authority, _ = head.split(b"\r\n", 1)[0].decode().split(" ")
            assert method == "CONNECT"
            self.connects.append(authority)
            if self.refuse:
                writer.write(b"HTTP/1.1 %d Forbidden\r\ncontent-length: 0\r\n\r\n" % self.refuse)
                await writer.drain()
                return
            host, port = authority.rsplit(":", 1)
            up_reader, up_writer = await asyncio.open_connection(host, int(port))
            self._writers.add(up_writer)
            writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
            await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            for w in (writer, up_writer):
                if w is not None:
                    w.close()
                    with contextlib.suppress(ConnectionError):
                        await w.wait_closed()
                    self._writers.discard(w)
            self._tasks.discard(task)

    @staticmethod
    async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()


@contextlib.asynccontextmanager
async def tls_mock(server_ctx: ssl.SSLContext) -> AsyncIterator[tuple[MockUpstream, Origin]]:
    mock = MockUpstream()
    port = await mock.start(ssl=server_ctx)
    try:
        yield mock, Origin("https", "127.0.0.1", port)
    finally:
        await mock.stop()


@contextlib.asynccontextmanager
async def connect_proxy(refuse: int = 0) -> AsyncIterator[ConnectProxy]:
    proxy = ConnectProxy(refuse)
    await proxy.start()
    try:
        yield proxy
    finally:
        await proxy.stop()


@contextlib.asynccontextmanager
async def pool_of(**config: Any) -> AsyncIterator[ConnectionPool]:
    pool = ConnectionPool(UpstreamConfig(**config))
    try:
        yield pool
    finally:
        await close_pool(pool)


# --- TLS -----------------------------------------------------------------------------------------


def test_tls_with_ca_bundle(run: Runner, server_ctx: ssl.SSLContext, ca_pem: str) -> None:
    async def main() -> None:
        async with tls_mock(server_ctx) as (mock, origin), pool_of(ca_bundle=ca_pem) as pool:
            await fetch(pool, origin)
            await fetch(pool, origin)
            assert mock.request_count == 2
            assert mock.connections_opened == 1  # keep-alive over TLS too
            (conn,) = op_of(pool, origin).connections
            assert conn.transport is not None
            assert conn.transport.get_extra_info("ssl_object").version() in ("TLSv1.2", "TLSv1.3")

    run(main())


def test_tls_unknown_ca_is_refused_by_default(run: Runner, server_ctx: ssl.SSLContext) -> None:
    async def main() -> None:
        async with tls_mock(server_ctx) as (mock, origin), pool_of() as pool:
            with pytest.raises(UpstreamUnreachable, match="TLS verification of 127.0.0.1 failed"):
                await pool.request(origin, chat(origin))
            assert mock.request_count == 0
            assert op_of(pool, origin).in_use == 0

    run(main())


def test_tls_hostname_must_match(run: Runner, ca: trustme.CA, ca_pem: str) -> None:
    """A certificate from the trusted CA, but for another name, is still refused."""

    async def main() -> None:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ca.issue_cert("other.example").configure_cert(ctx)
        async with tls_mock(ctx) as (mock, origin), pool_of(ca_bundle=ca_pem) as pool:
            with pytest.raises(UpstreamUnreachable, match="TLS verification of 127.0.0.1 failed"):
                await pool.request(origin, chat(origin))
            assert mock.request_count == 0

    run(main())


def test_tls_verify_false(run: Runner, server_ctx: ssl.SSLContext) -> None:
    async def main() -> None:
        async with tls_mock(server_ctx) as (mock, origin), pool_of(verify=False) as pool:
            await fetch(pool, origin)
            assert mock.request_count == 1

    run(main())


# --- HTTPS_PROXY ---------------------------------------------------------------------------------


def test_https_proxy_from_config(run: Runner, server_ctx: ssl.SSLContext, ca_pem: str) -> None:
    async def main() -> None:
        async with tls_mock(server_ctx) as (mock, origin), connect_proxy() as proxy:
            async with pool_of(https_proxy=f"http://127.0.0.1:{proxy.port}", ca_bundle=ca_pem) as pool:
                await fetch(pool, origin)
                await fetch(pool, origin)  # the tunnelled connection is kept alive and reused
                assert proxy.connects == [f"127.0.0.1:{origin.port}"]
                assert mock.request_count == 2
                assert mock.connections_opened == 1

    run(main())


def test_https_proxy_from_environment(
    run: Runner, server_ctx: ssl.SSLContext, ca_pem: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def main() -> None:
        async with tls_mock(server_ctx) as (mock, origin), connect_proxy() as proxy:
            monkeypatch.setenv("HTTPS_PROXY", f"http://127.0.0.1:{proxy.port}")
            async with pool_of(ca_bundle=ca_pem) as pool:
                assert pool.config.https_proxy is None
                await fetch(pool, origin)
            assert proxy.connects == [f"127.0.0.1:{origin.port}"]
            assert mock.request_count == 1

    run(main())


def test_no_proxy_bypasses_the_environment_proxy(
    run: Runner, server_ctx: ssl.SSLContext, ca_pem: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def main() -> None:
        async with tls_mock(server_ctx) as (mock, origin), connect_proxy() as proxy:
            monkeypatch.setenv("HTTPS_PROXY", f"http://127.0.0.1:{proxy.port}")
            monkeypatch.setenv("NO_PROXY", "localhost,127.0.0.1")
            async with pool_of(ca_bundle=ca_pem) as pool:
                await fetch(pool, origin)
            assert proxy.connects == []
            assert mock.request_count == 1

    run(main())


def test_empty_https_proxy_disables_the_environment_proxy(
    run: Runner, server_ctx: ssl.SSLContext, ca_pem: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def main() -> None:
        async with tls_mock(server_ctx) as (mock, origin), connect_proxy() as proxy:
            monkeypatch.setenv("HTTPS_PROXY", f"http://127.0.0.1:{proxy.port}")
            async with pool_of(https_proxy="", ca_bundle=ca_pem) as pool:
                await fetch(pool, origin)
            assert proxy.connects == []
            assert mock.request_count == 1

    run(main())


def test_proxy_refusing_connect_is_unreachable(run: Runner, server_ctx: ssl.SSLContext, ca_pem: str) -> None:
    async def main() -> None:
        async with tls_mock(server_ctx) as (mock, origin), connect_proxy(refuse=403) as proxy:
            async with pool_of(https_proxy=f"http://127.0.0.1:{proxy.port}", ca_bundle=ca_pem) as pool:
                with pytest.raises(UpstreamUnreachable, match="proxy refused CONNECT .* status 403"):
                    await pool.request(origin, chat(origin))
                assert op_of(pool, origin).in_use == 0
            assert proxy.connects == [f"127.0.0.1:{origin.port}"]
            assert mock.connections_opened == 0

    run(main())


def test_tls_verification_applies_inside_the_tunnel(run: Runner, server_ctx: ssl.SSLContext) -> None:
    async def main() -> None:
        async with tls_mock(server_ctx) as (mock, origin), connect_proxy() as proxy:
            async with pool_of(https_proxy=f"http://127.0.0.1:{proxy.port}") as pool:
                with pytest.raises(UpstreamUnreachable, match="TLS verification of 127.0.0.1 failed"):
                    await pool.request(origin, chat(origin))
            assert proxy.connects == [f"127.0.0.1:{origin.port}"]
            assert mock.request_count == 0

    run(main())
