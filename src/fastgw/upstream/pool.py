"""The upstream connection pool: keep-alive connections per origin, with limits and idle expiry.

Accounting, per origin: ``connections`` holds every live connection (connecting, idle or active);
``idle`` is the stack of those waiting for a request, most recently used on top so that warm
connections are reused and cold ones age out from the bottom. A request that finds no idle
connection opens one while the origin is under ``max_connections_per_origin``; past that it waits
in ``waiters`` (FIFO) for a connection handed back, or for a slot freed by a close.

All counts change in the synchronous methods below; the awaits (connect, TLS) happen outside them.
"""

from __future__ import annotations

import asyncio
import ssl
import urllib.request
from collections import deque
from typing import Callable
from urllib.parse import urlsplit

from fastgw.config import UpstreamConfig
from fastgw.errors import UpstreamTimeout, UpstreamUnreachable
from fastgw.providers.table import Origin
from fastgw.upstream.connection import ACTIVE, CLOSED, StaleConnection, UpstreamConnection, UpstreamResponse
from fastgw.upstream.tls import make_ssl_context


class OriginPool:
    def __init__(self, pool: ConnectionPool, origin: Origin) -> None:
        self.pool = pool
        self.origin = origin
        self.connections: set[UpstreamConnection] = set()
        self.connecting = 0  # slots taken by connects in progress (their protocol may not exist yet)
        self.acquiring = 0  # requests inside _acquire, woken waiters included: the entry must stay
        self.idle: list[UpstreamConnection] = []
        self.waiters: deque[asyncio.Future[UpstreamConnection | None]] = deque()

    def __repr__(self) -> str:
        active = sum(1 for c in self.connections if c.state is ACTIVE)
        return (
            f"<OriginPool {self.origin} idle={len(self.idle)} active={active} "
            f"connecting={self.connecting} waiting={len(self.waiters)}>"
        )

    @property
    def in_use(self) -> int:
        return len(self.connections) + self.connecting

    def take_idle(self, now: float) -> UpstreamConnection | None:
        idle_timeout = self.pool.config.idle_timeout
        while self.idle:
            conn = self.idle.pop()
            if conn.is_usable(now, idle_timeout):
                conn.state = ACTIVE
                return conn
            conn.close()
        return None

    def connection_released(self, conn: UpstreamConnection) -> None:
        if self.pool.closed:
            conn.close()
            return
        while self.waiters:
            waiter = self.waiters.popleft()
            if not waiter.done():
                conn.state = ACTIVE
                waiter.set_result(conn)
                return
        if len(self.idle) >= self.pool.config.max_idle_per_origin:
            conn.close()
            return
        self.idle.append(conn)

    def connection_closed(self, conn: UpstreamConnection) -> None:
        if conn not in self.connections:
            return
        self.connections.discard(conn)
        if conn in self.idle:
            self.idle.remove(conn)
        self.slot_freed()
        self.forget_if_unused()

    def forget_if_unused(self) -> None:
        """Drop this origin from the pool once nothing uses it: clients choose target origins, so
        the map of origins must not grow with every one ever asked for."""
        if not self.connections and not self.connecting and not self.waiters and not self.acquiring:
            if self.pool.origins.get(self.origin) is self:
                del self.pool.origins[self.origin]

    def slot_freed(self) -> None:
        """Wake one waiter to open a connection in the slot that just came free."""
        while self.waiters:
            waiter = self.waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    def expire(self, now: float) -> None:
        idle_timeout = self.pool.config.idle_timeout
        for conn in [c for c in self.idle if not c.is_usable(now, idle_timeout)]:
            conn.close()


class ConnectionPool:
    """Owns every upstream connection of one worker process."""

    def __init__(self, config: UpstreamConfig) -> None:
        self.config = config
        self.loop = asyncio.get_running_loop()
        self.origins: dict[Origin, OriginPool] = {}
        self.ssl_context: ssl.SSLContext = make_ssl_context(config)
        self.proxy = _https_proxy(config)
        self._sweeper = self.loop.call_later(max(config.idle_timeout / 2, 0.5), self._sweep)
        self.closed = False

    def __repr__(self) -> str:
        return f"<ConnectionPool {list(self.origins.values())}>"

    async def request(
        self, origin: Origin, data: bytes, is_head: bool = False, replayable: bool = False
    ) -> UpstreamResponse:
        """Send one serialised request and wait for the response head.

        There are three outcomes: the head arrived (the caller must close the response); the
        request failed on a reused connection before any response byte arrived, and is sent once
        more on a fresh connection; or a mapped GatewayError.

        The retry is safe when the reused connection was already dead: the upstream never saw the
        request. That shows as a failure within about one round trip of sending. A failure after
        the upstream held the request longer may mean it acted on it, so a request that isn't
        ``replayable`` (idempotent, or carrying an Idempotency-Key) is retried only within
        ``stale_retry_window``: an LLM call must not be paid for twice.
        """
        conn = await self._acquire(origin, fresh=False)
        sent_at = self.loop.time()
        try:
            return await self._send(conn, data, is_head)
        except StaleConnection:
            if not replayable and self.loop.time() - sent_at > self.config.stale_retry_window:
                raise
            conn = await self._acquire(origin, fresh=True)
            return await self._send(conn, data, is_head)

    async def _send(self, conn: UpstreamConnection, data: bytes, is_head: bool) -> UpstreamResponse:
        try:
            resp = await conn.send(data, is_head)
            await resp.wait_head()
        except BaseException:
            conn.close()  # also on cancellation: a half-sent request leaves the socket unusable
            raise
        return resp

    async def _acquire(self, origin: Origin, fresh: bool) -> UpstreamConnection:
        op = self.origins.get(origin)
        if op is None:
            op = self.origins[origin] = OriginPool(self, origin)
        op.acquiring += 1
        try:
            return await self._acquire_from(op, fresh)
        finally:
            op.acquiring -= 1
            op.forget_if_unused()

    async def _acquire_from(self, op: OriginPool, fresh: bool) -> UpstreamConnection:
        origin = op.origin
        if not fresh:
            conn = op.take_idle(self.loop.time())
            if conn is not None:
                return conn
        # A fresh connection replaces a stale one this request just closed, so it skips the limit.
        while not fresh and op.in_use >= self.config.max_connections_per_origin:
            waiter: asyncio.Future[UpstreamConnection | None] = self.loop.create_future()
            op.waiters.append(waiter)
            try:
                handed = await waiter
            except BaseException:
                # Cancelled after being served but before running: pass on what we were given, a
                # connection or a free slot, or the next waiter never hears of it and may wait forever.
                if waiter.done() and not waiter.cancelled():
                    if waiter.result() is not None:
                        waiter.result().release()  # type: ignore[union-attr]
                    else:
                        op.slot_freed()
                raise
            if handed is not None:
                return handed
        op.connecting += 1
        try:
            conn = await self._connect(op)
        except BaseException:
            op.connecting -= 1
            op.slot_freed()
            raise
        op.connecting -= 1
        if conn.state is CLOSED:  # lost during the TLS handshake's last step
            op.slot_freed()
            raise UpstreamUnreachable(f"connection to {origin} closed while connecting")
        op.connections.add(conn)
        conn.state = ACTIVE
        return conn

    async def _connect(self, op: OriginPool) -> UpstreamConnection:
        origin = op.origin
        cfg = self.config

        def factory() -> UpstreamConnection:
            return UpstreamConnection(op, cfg.read_timeout, cfg.read_high_water)

        try:
            async with asyncio.timeout(cfg.connect_timeout):
                if origin.tls and self.proxy is not None and not _bypass_proxy(origin.host):
                    return await self._connect_via_proxy(origin, factory)
                _, conn = await self.loop.create_connection(
                    factory,
                    origin.host,
                    origin.port,
                    ssl=self.ssl_context if origin.tls else None,
                    server_hostname=origin.host if origin.tls else None,
                )
                return conn
        except TimeoutError:
            raise UpstreamTimeout(f"connecting to {origin} timed out after {cfg.connect_timeout:g}s") from None
        except ssl.SSLCertVerificationError as exc:
            raise UpstreamUnreachable(f"TLS verification of {origin.host} failed: {exc.verify_message}") from None
        except (ssl.SSLError, OSError) as exc:
            raise UpstreamUnreachable(f"cannot connect to {origin}: {exc.strerror or exc}") from None

    async def _connect_via_proxy(self, origin: Origin, factory: Callable[[], UpstreamConnection]) -> UpstreamConnection:
        """HTTPS through an HTTP proxy: CONNECT, then TLS to the origin inside the tunnel."""
        assert self.proxy is not None
        proxy_host, proxy_port = self.proxy
        try:
            transport, tunnel = await self.loop.create_connection(_TunnelProtocol, proxy_host, proxy_port)
        except OSError as exc:
            raise UpstreamUnreachable(f"cannot connect to the HTTPS proxy {proxy_host}:{proxy_port}: {exc.strerror or exc}") from None
        try:
            authority = f"{origin.host}:{origin.port}"
            transport.write(f"CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n\r\n".encode("idna"))
            status = await tunnel.status
            if status != 200:
                raise UpstreamUnreachable(f"proxy refused CONNECT to {authority}: status {status}")
            conn = factory()
            tls_transport = await self.loop.start_tls(
                transport, conn, self.ssl_context, server_hostname=origin.host
            )
        except BaseException:
            transport.abort()
            raise
        conn.connection_made(tls_transport)
        return conn

    def _sweep(self) -> None:
        now = self.loop.time()
        for op in self.origins.values():
            op.expire(now)
        if not self.closed:
            self._sweeper = self.loop.call_later(max(self.config.idle_timeout / 2, 0.5), self._sweep)

    def close(self) -> None:
        self.closed = True
        self._sweeper.cancel()
        for op in self.origins.values():
            for conn in list(op.connections):
                conn.close()


class _TunnelProtocol(asyncio.Protocol):
    """Reads the proxy's answer to CONNECT; the transport is then handed to TLS."""

    def __init__(self) -> None:
        self.status: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._buf = b""

    def data_received(self, data: bytes) -> None:
        self._buf += data
        if b"\r\n\r\n" in self._buf and not self.status.done():
            line = self._buf.split(b"\r\n", 1)[0].split()
            ok = len(line) >= 2 and line[0].startswith(b"HTTP/") and line[1].isdigit()
            self.status.set_result(int(line[1]) if ok else 0)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.status.done():
            self.status.set_exception(UpstreamUnreachable("proxy closed the connection during CONNECT"))


def _https_proxy(config: UpstreamConfig) -> tuple[str, int] | None:
    url = config.https_proxy
    if url is None:
        url = urllib.request.getproxies_environment().get("https")
    if not url:
        return None
    parts = urlsplit(url if "://" in url else f"http://{url}")
    if not parts.hostname:
        return None
    return parts.hostname, parts.port or 8080


def _bypass_proxy(host: str) -> bool:
    return bool(urllib.request.proxy_bypass_environment(host))

