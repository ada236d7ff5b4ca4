"""Server: listen, tick, and shut down gracefully; one instance per worker process.

Shutdown on SIGTERM, SIGINT or SIGHUP (unless ignored, as under nohup): stop accepting, close idle
connections, let busy ones finish their current response (they close after it), and after
``graceful_timeout`` abort whatever is left.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
from typing import TYPE_CHECKING, Callable

from fastgw.app import Gateway
from fastgw.config import Config
from fastgw.server.responses import DateHeader

if TYPE_CHECKING:
    from fastgw.requestlog.logger import RequestLogger
    from fastgw.server.protocol import HttpProtocol

log = logging.getLogger("fastgw.server")


class ServerState:
    """What every connection of this worker shares."""

    def __init__(self, config: Config, gateway: Gateway) -> None:
        self.config = config
        self.gateway = gateway
        self.connections: set[HttpProtocol] = set()
        self.refused = 0  # connections turned away at the cap
        self.logger: RequestLogger | None = None  # None when logging is off

    def __repr__(self) -> str:
        return f"<ServerState connections={len(self.connections)} refused={self.refused}>"


def make_listen_socket(host: str, port: int, backlog: int, reuse_port: bool) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.listen(backlog)
    sock.setblocking(False)
    return sock


class Server:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.gateway = Gateway(config)
        self.state = ServerState(config, self.gateway)
        self._servers: list[asyncio.base_events.Server] = []
        self._stop = asyncio.Event()
        self._tick: asyncio.TimerHandle | None = None

    async def serve(self, sock: socket.socket, on_ready: Callable[[], None] | None = None) -> None:
        from fastgw.server.protocol import HttpProtocol

        loop = asyncio.get_running_loop()
        await self.gateway.start()
        server = await loop.create_server(lambda: HttpProtocol(self.state), sock=sock, backlog=self.config.server.backlog)
        self._servers.append(server)
        stops = [signal.SIGTERM, signal.SIGINT]
        if signal.getsignal(signal.SIGHUP) != signal.SIG_IGN:  # ignored: under nohup, or by the supervisor's
            stops.append(signal.SIGHUP)  # a terminal that closed
        for sig in stops:
            loop.add_signal_handler(sig, self._stop.set)
        self._on_tick()
        if on_ready is not None:
            on_ready()
        await self._stop.wait()
        await self.shutdown()

    def request_stop(self) -> None:
        self._stop.set()

    async def shutdown(self) -> None:
        for server in self._servers:
            server.close()  # stop accepting; established connections are ours to finish
        for conn in list(self.state.connections):
            conn.shutdown()
        grace = self.config.server.graceful_timeout
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace
        while self.state.connections and loop.time() < deadline:
            await asyncio.sleep(0.05)
        if self.state.connections:
            log.warning("grace period over: aborting %d connections", len(self.state.connections))
            for conn in list(self.state.connections):
                conn.abort()
            await asyncio.sleep(0)
        if self._tick is not None:
            self._tick.cancel()
        await self.gateway.close()

    def _on_tick(self) -> None:
        DateHeader.refresh()
        self._tick = asyncio.get_running_loop().call_later(1.0, self._on_tick)
