"""One HTTP/1.1 connection to an upstream, parsed by httptools, carrying one request at a time.

States: CONNECTING → IDLE ⇄ ACTIVE → CLOSED. The pool owns IDLE connections; an ACTIVE one belongs
to the ``UpstreamResponse`` it is filling until that response is closed, which either hands the
connection back (the response was read to its end and the upstream allows keep-alive) or closes it.

Flow control runs both ways: when the consumer falls more than ``read_high_water`` bytes behind, we
stop reading the socket (the kernel then pushes back on the upstream); a paused write side makes
``send`` wait for the drain.
"""

from __future__ import annotations

import asyncio
import enum
from collections import deque
from typing import TYPE_CHECKING

import httptools

from fastgw.errors import GatewayError, UpstreamProtocolError, UpstreamTimeout

if TYPE_CHECKING:
    from fastgw.upstream.pool import OriginPool


class ConnState(enum.IntEnum):
    CONNECTING = 0
    IDLE = 1
    ACTIVE = 2
    CLOSED = 3


# The members as module globals, for the request path: Python 3.11's EnumType has a __getattr__,
# so every ``ConnState.IDLE`` goes through a slow attribute hook (about 75 ns, ~850 instructions,
# against 7 ns for a global; five a request in the worker).
CONNECTING, IDLE, ACTIVE, CLOSED = ConnState.CONNECTING, ConnState.IDLE, ConnState.ACTIVE, ConnState.CLOSED


class StaleConnection(UpstreamProtocolError):
    """A reused connection failed before any response byte: safe to send the request again."""


class UpstreamResponse:
    """The response being read from one upstream connection; its body is an async iterator of chunks.

    ``aclose`` must be called exactly once (the dispatcher does it in a ``finally``): it is what
    returns the connection to the pool or closes it.
    """

    __slots__ = (
        "status", "headers", "keep_alive", "complete", "error", "received_any",
        "_conn", "_chunks", "_buffered", "_waiter", "_head_waiter", "_closed",
    )

    def __init__(self, conn: UpstreamConnection) -> None:
        self.status = 0
        self.headers: list[tuple[bytes, bytes]] = []
        self.keep_alive = False
        self.complete = False  # the whole message has been read from the socket
        self.error: GatewayError | None = None
        self.received_any = False  # any byte of the response arrived (a retry is no longer safe)
        self._conn = conn
        self._chunks: deque[bytes] = deque()
        self._buffered = 0
        self._waiter: asyncio.Future[None] | None = None
        self._head_waiter: asyncio.Future[None] = conn.loop.create_future()
        self._closed = False

    async def wait_head(self) -> None:
        await self._head_waiter

    def take_body(self) -> bytes:
        """The whole body, when ``complete`` already (the common case for small JSON answers)."""
        body = b"".join(self._chunks) if len(self._chunks) != 1 else self._chunks[0]
        self._chunks.clear()
        self._buffered = 0
        return body

    def __aiter__(self) -> UpstreamResponse:
        return self

    async def __anext__(self) -> bytes:
        while not self._chunks:
            if self.error is not None:
                raise self.error
            if self.complete:
                raise StopAsyncIteration
            self._waiter = self._conn.loop.create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        chunk = self._chunks.popleft()
        self._buffered -= len(chunk)
        if self._conn.read_paused and self._buffered <= self._conn.read_low_water:
            self._conn.resume_reading()
        return chunk

    async def aclose(self) -> None:
        self.close()

    def close(self) -> None:
        """Give the connection back when the message was read to its end; otherwise close it."""
        if self._closed:
            return
        self._closed = True
        conn = self._conn
        if self.complete and self.keep_alive and self.error is None and not self._chunks:
            conn.release()
        else:
            conn.close()

    # Called by the connection ---------------------------------------------------------------

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def _feed(self, chunk: bytes) -> None:
        self._chunks.append(chunk)
        self._buffered += len(chunk)
        if self._buffered > self._conn.read_high_water:
            self._conn.pause_reading()
        self._wake()

    def _head_done(self) -> None:
        if not self._head_waiter.done():
            self._head_waiter.set_result(None)

    def _fail(self, error: GatewayError) -> None:
        if self.complete or self.error is not None:
            return
        self.error = error
        if not self._head_waiter.done():
            self._head_waiter.set_exception(error)
            self._head_waiter.exception()  # mark retrieved: the sender may already have given up
        self._wake()


class UpstreamConnection(asyncio.Protocol):
    def __init__(self, pool: OriginPool, read_timeout: float, read_high_water: int) -> None:
        # Per-connection state
        self.pool = pool
        self.loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.state = CONNECTING
        self.requests_sent = 0
        self.idle_since = 0.0
        self.read_timeout = read_timeout
        self.read_high_water = read_high_water
        self.read_low_water = read_high_water // 4
        self.read_paused = False
        self._write_paused = False
        self._drain_waiter: asyncio.Future[None] | None = None
        self._last_read = 0.0
        self._timer: asyncio.TimerHandle | None = None
        # Per-request state
        self.response: UpstreamResponse | None = None
        self._is_head = False
        # Bytes beyond the end of a response: the upstream broke framing, so this socket is never
        # reused and nothing more it sends is parsed into the finished response.
        self._dirty = False

    def __repr__(self) -> str:
        return f"<UpstreamConnection {self.pool.origin} {self.state.name} requests={self.requests_sent}>"

    # Protocol interface -----------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self._last_read = self.loop.time()
        resp = self.response
        if resp is None:  # bytes while idle: the upstream is confused; never reuse this socket
            self.close()
            return
        if self._dirty:
            return
        resp.received_any = True
        try:
            self.parser.feed_data(data)
        except (httptools.HttpParserError, httptools.HttpParserUpgrade) as exc:
            # HttpParserUpgrade (a 101) is not an HttpParserError: we never asked to switch protocols.
            resp._fail(UpstreamProtocolError(f"invalid HTTP from upstream: {exc!r}"))
            self.close()

    def eof_received(self) -> bool | None:
        # A close-delimited body ends at EOF; everything else ending here was cut off.
        resp = self.response
        if resp is not None and not resp.complete and resp.status and not self._has_framing(resp):
            resp.complete = True
            resp._wake()
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self.state = CLOSED
        self._cancel_timer()
        resp = self.response
        if resp is not None and not resp.complete:
            if not resp.received_any and self.requests_sent > 1:
                resp._fail(StaleConnection("pooled connection closed before the response"))
            else:
                resp._fail(UpstreamProtocolError("upstream closed the connection before the response ended"))
        if self._drain_waiter is not None and not self._drain_waiter.done():
            self._drain_waiter.set_result(None)
        self.pool.connection_closed(self)

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        if self._drain_waiter is not None and not self._drain_waiter.done():
            self._drain_waiter.set_result(None)

    # Parser callbacks -------------------------------------------------------------------------

    def on_message_begin(self) -> None:
        resp = self.response
        if resp is not None and resp.complete:  # a second message after the one we asked for
            self._dirty = True
            resp.keep_alive = False

    def on_header(self, name: bytes, value: bytes) -> None:
        if not self._dirty:
            self.response.headers.append((name, value))  # type: ignore[union-attr]

    def on_headers_complete(self) -> None:
        resp = self.response
        assert resp is not None
        if self._dirty:
            return
        status = self.parser.get_status_code()
        if 100 <= status < 200:  # 1xx interim answers carry no body; wait for the real one
            resp.headers.clear()
            return
        resp.status = status
        resp.keep_alive = self.parser.should_keep_alive()
        if self._is_head or status in (204, 304):
            # httptools can't be told a response answers HEAD, so the message ends here. The
            # parser may still expect a body, so this connection is not reused.
            resp.complete = True
            resp.keep_alive = False
        resp._head_done()

    def on_body(self, body: bytes) -> None:
        resp = self.response
        if resp is not None and not resp.complete and not self._dirty:
            resp._feed(body)

    def on_message_complete(self) -> None:
        resp = self.response
        if resp is not None and resp.status and not self._dirty:
            resp.complete = True
            resp._wake()

    # Used by the pool and the dispatcher --------------------------------------------------------

    async def send(self, data: bytes, is_head: bool) -> UpstreamResponse:
        """Write one request; the response's head arrives through ``UpstreamResponse.wait_head``."""
        self.state = ACTIVE
        self.requests_sent += 1
        self._is_head = is_head
        resp = self.response = UpstreamResponse(self)
        self._last_read = self.loop.time()
        if self._timer is None:  # an armed timer fires at most read_timeout after any earlier read
            self._arm_timer(self.read_timeout)
        self.transport.write(data)  # type: ignore[union-attr]
        if self._write_paused:
            self._drain_waiter = self.loop.create_future()
            await self._drain_waiter
        return resp

    def release(self) -> None:
        self.response = None  # the read timer, if armed, fires once more, finds no response, stops
        if self._dirty or self.state is CLOSED or self.transport is None or self.transport.is_closing():
            self.close()
            return
        if self.read_paused:
            self.resume_reading()
        self.state = IDLE
        self.idle_since = self.loop.time()
        self.pool.connection_released(self)

    def close(self) -> None:
        if self.transport is not None and self.state is not CLOSED:
            self.transport.abort()  # not close(): unread response bytes must not be drained
        elif self.state is not CLOSED:
            self.state = CLOSED
            self.pool.connection_closed(self)

    def is_usable(self, now: float, idle_timeout: float) -> bool:
        return (
            self.state is IDLE
            and self.transport is not None
            and not self.transport.is_closing()
            and now - self.idle_since < idle_timeout
        )

    def pause_reading(self) -> None:
        if not self.read_paused and self.transport is not None:
            self.read_paused = True
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if self.read_paused and self.transport is not None:
            self.read_paused = False
            self.transport.resume_reading()

    # Read timeout: one timer per request, re-armed lazily rather than on every read -------------

    def _arm_timer(self, delay: float) -> None:
        self._cancel_timer()
        self._timer = self.loop.call_later(delay, self._on_timer)

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _on_timer(self) -> None:
        self._timer = None
        resp = self.response
        if resp is None or resp.complete:
            return
        if self.read_paused:  # we stopped reading on purpose: the client is the slow one
            self._arm_timer(self.read_timeout)
            return
        remaining = self._last_read + self.read_timeout - self.loop.time()
        if remaining > 0.001:
            self._arm_timer(remaining)
            return
        resp._fail(UpstreamTimeout(f"upstream sent nothing for {self.read_timeout:g}s"))
        self.close()

    @staticmethod
    def _has_framing(resp: UpstreamResponse) -> bool:
        for name, value in resp.headers:
            n = name.lower()
            if n == b"content-length" or (n == b"transfer-encoding" and b"chunked" in value.lower()):
                return True
        return False

