"""The upstream connection pool against a real MockUpstream on the same event loop.

Requests are serialised the way ``stages/dispatch.py`` does it and sent with ``pool.request``;
the mock (the one stand-in: the LLM provider) counts connections and records requests, so every
assertion about reuse, limits and retries is checked from the far side of the socket too.

Every test runs on both the default asyncio loop and uvloop (the one the server runs on).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from typing import Any, AsyncIterator

import orjson
import pytest

from fastgw.config import UpstreamConfig
from fastgw.errors import UpstreamProtocolError, UpstreamTimeout, UpstreamUnreachable
from fastgw.providers.table import Origin
from fastgw.testing.mock_upstream import MockUpstream
from fastgw.upstream.connection import StaleConnection, UpstreamResponse
from fastgw.upstream.pool import ConnectionPool
from tests.upstream.conftest import Runner, close_pool, eventually, op_of

CHAT = b'{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}'
STREAM = b'{"model":"gpt-4o-mini","stream":true,"messages":[{"role":"user","content":"hi"}]}'



def chat(origin: Origin, body: bytes = CHAT, **headers: str) -> bytes:
    """A request serialised as the dispatch stage does; ``x_mock_latency_ms`` → ``x-mock-latency-ms``."""
    extra = b"".join(f"{k.replace('_', '-')}: {v}\r\n".encode() for k, v in headers.items())
    return (
        b"POST /v1/chat/completions HTTP/1.1\r\nhost: " + origin.host_header + b"\r\n"
        b"content-type: application/json\r\n" + extra + b"content-length: %d\r\n\r\n" % len(body) + body
    )


async def read_body(resp: UpstreamResponse) -> bytes:
    try:
        if resp.complete:
            assert resp.error is None
            return resp.take_body()
        return b"".join([chunk async for chunk in resp])
    finally:
        resp.close()


async def fetch(pool: ConnectionPool, origin: Origin, body: bytes = CHAT, **headers: str) -> tuple[int, bytes]:
    resp = await pool.request(origin, chat(origin, body, **headers))
    return resp.status, await read_body(resp)



@contextlib.asynccontextmanager
async def serving(**config: Any) -> AsyncIterator[tuple[MockUpstream, ConnectionPool, Origin]]:
    mock = MockUpstream()
    port = await mock.start()
    pool = ConnectionPool(UpstreamConfig(**config))
    try:
        yield mock, pool, Origin("http", "127.0.0.1", port)
    finally:
        await close_pool(pool)
        await mock.stop()


def assert_chat_completion(status: int, body: bytes) -> None:
    assert status == 200, body
    assert orjson.loads(body)["object"] == "chat.completion"


def sse_contents(body: bytes) -> list[str]:
    """The content deltas of an OpenAI chat stream; asserts it ended with [DONE]."""
    events = [e for e in body.split(b"\n\n") if e]
    assert events[-1] == b"data: [DONE]"
    out = []
    for event in events[:-1]:
        assert event.startswith(b"data: ")
        choices = orjson.loads(event[6:])["choices"]
        if choices and "content" in choices[0]["delta"] and choices[0]["delta"]["content"]:
            out.append(choices[0]["delta"]["content"])
    return out


# --- keep-alive and limits -----------------------------------------------------------------------


def test_sequential_requests_reuse_one_connection(run: Runner) -> None:
    async def main() -> None:
        async with serving() as (mock, pool, origin):
            for _ in range(10):
                assert_chat_completion(*await fetch(pool, origin))
            assert mock.request_count == 10
            assert mock.connections_opened == 1
            assert len(op_of(pool, origin).idle) == 1

    run(main())


def test_per_origin_limit_queues_requests(run: Runner) -> None:
    async def main() -> None:
        async with serving(max_connections_per_origin=2) as (mock, pool, origin):
            t0 = time.perf_counter()
            tasks = [asyncio.create_task(fetch(pool, origin, x_mock_latency_ms="50")) for _ in range(10)]
            await eventually(lambda: mock.request_count >= 2)
            state = repr(pool)
            assert f"<OriginPool {origin} " in state
            assert "active=2" in state and "waiting=8" in state, state
            for status, body in await asyncio.gather(*tasks):
                assert_chat_completion(status, body)
            elapsed = time.perf_counter() - t0
            assert mock.request_count == 10
            assert mock.connections_opened == 2
            # Two at a time: five rounds of 50 ms, not one.
            assert elapsed >= 0.24, elapsed
            assert "idle=2 active=0 connecting=0 waiting=0" in repr(pool)

    run(main())


def test_max_idle_per_origin_closes_the_surplus(run: Runner) -> None:
    async def main() -> None:
        async with serving(max_connections_per_origin=8, max_idle_per_origin=2) as (mock, pool, origin):
            results = await asyncio.gather(*(fetch(pool, origin, x_mock_latency_ms="50") for _ in range(10)))
            for status, body in results:
                assert_chat_completion(status, body)
            assert mock.connections_opened == 8
            op = op_of(pool, origin)
            assert len(op.idle) == 2
            await eventually(lambda: mock.connections_open == 2 and len(op.connections) == 2)
            # The two kept are the ones reused next.
            await asyncio.gather(fetch(pool, origin), fetch(pool, origin))
            assert mock.connections_opened == 8

    run(main())


def test_idle_connections_expire(run: Runner) -> None:
    async def main() -> None:
        async with serving(idle_timeout=0.3) as (mock, pool, origin):
            assert_chat_completion(*await fetch(pool, origin))
            assert mock.connections_open == 1
            await asyncio.sleep(1.0)
            # The sweeper closed it without any request coming along.
            assert mock.connections_open == 0
            assert not op_of(pool, origin).connections
            assert_chat_completion(*await fetch(pool, origin))
            assert mock.connections_opened == 2

    run(main())


def test_expired_idle_connection_is_not_reused_before_the_sweep(run: Runner) -> None:
    async def main() -> None:
        # The sweeper runs every 0.5 s at the soonest; the connection expires after 0.2 s idle.
        async with serving(idle_timeout=0.2) as (mock, pool, origin):
            assert_chat_completion(*await fetch(pool, origin))
            await asyncio.sleep(0.3)
            assert mock.connections_open == 1  # not swept yet
            assert_chat_completion(*await fetch(pool, origin))
            assert mock.connections_opened == 2
            assert mock.request_count == 2
            await eventually(lambda: mock.connections_open == 1)  # the expired one was closed on the way

    run(main())


# --- broken connections and retries --------------------------------------------------------------


def test_connection_closed_by_upstream_while_idle_is_discarded(run: Runner) -> None:
    async def main() -> None:
        async with serving() as (mock, pool, origin):
            assert_chat_completion(*await fetch(pool, origin))
            op = op_of(pool, origin)
            assert len(op.idle) == 1
            for conn in list(mock._conns):
                conn.close()  # FIN from the upstream, e.g. its keep-alive timeout
            await eventually(lambda: not op.connections)
            assert not op.idle
            assert_chat_completion(*await fetch(pool, origin))
            assert mock.connections_opened == 2
            assert mock.request_count == 2  # a fresh connection, not a retry

    run(main())


def test_connection_reset_by_upstream_while_idle_is_discarded(run: Runner) -> None:
    async def main() -> None:
        async with serving() as (mock, pool, origin):
            assert_chat_completion(*await fetch(pool, origin))
            op = op_of(pool, origin)
            for conn in list(mock._conns):
                conn.abort()  # RST
            await eventually(lambda: not op.connections)
            assert not op.idle
            assert_chat_completion(*await fetch(pool, origin))
            assert mock.connections_opened == 2
            assert mock.request_count == 2

    run(main())


def test_connection_close_response_is_not_pooled(run: Runner) -> None:
    async def main() -> None:
        async with serving() as (mock, pool, origin):
            resp = await pool.request(origin, chat(origin, connection="close"))
            assert resp.keep_alive is False
            assert_chat_completion(resp.status, await read_body(resp))
            op = op_of(pool, origin)
            assert not op.idle
            await eventually(lambda: mock.connections_open == 0 and not op.connections)
            assert_chat_completion(*await fetch(pool, origin))
            assert mock.connections_opened == 2

    run(main())


def test_stale_reused_connection_is_retried_once_on_a_fresh_one(run: Runner) -> None:
    async def main() -> None:
        async with serving() as (mock, pool, origin):
            assert_chat_completion(*await fetch(pool, origin))
            body = b'{"model":"gpt-4o-mini","messages":[{"role":"user","content":"again"}]}'
            assert_chat_completion(*await fetch(pool, origin, body, x_mock_reset="reused"))
            assert mock.connections_opened == 2
            assert mock.request_count == 3
            first, second, third = mock.requests
            assert first.body == CHAT
            assert second.body == third.body == body  # the same request, sent twice
            assert len(op_of(pool, origin).connections) == 1

    run(main())


def test_reset_on_a_fresh_connection_is_not_retried(run: Runner) -> None:
    async def main() -> None:
        async with serving() as (mock, pool, origin):
            with pytest.raises(UpstreamProtocolError) as info:
                await pool.request(origin, chat(origin, x_mock_reset="before"))
            assert not isinstance(info.value, StaleConnection)
            assert mock.request_count == 1
            assert mock.connections_opened == 1
            await eventually(lambda: not op_of(pool, origin).connections)

    run(main())


def test_stale_retry_respects_the_per_origin_limit(run: Runner) -> None:
    """The dead connection's slot is announced to a waiting request, but the retry (woken first)
    takes it: the waiter, finding the limit reached again, keeps waiting instead of opening one more."""

    async def main() -> None:
        async with serving(max_connections_per_origin=1) as (mock, pool, origin):
            assert_chat_completion(*await fetch(pool, origin))
            op = op_of(pool, origin)
            peak = 0
            done = False

            async def watch() -> None:
                nonlocal peak
                while not done:
                    peak = max(peak, mock.connections_open, len(op.connections) + op.connecting)
                    await asyncio.sleep(0)

            watcher = asyncio.create_task(watch())
            stale = asyncio.create_task(fetch(pool, origin, x_mock_reset="reused"))
            await asyncio.sleep(0)  # it takes the idle connection
            waiting = asyncio.create_task(fetch(pool, origin, x_mock_latency_ms="50"))
            await asyncio.sleep(0)
            assert len(op.waiters) == 1  # queued behind the request that is about to find its connection dead
            results = await asyncio.gather(stale, waiting)
            done = True
            await watcher
            for status, body in results:
                assert_chat_completion(status, body)
            assert peak == 1
            assert mock.connections_opened == 2  # the retry's connection then served the waiter
            assert mock.request_count == 4

    run(main())


def test_cancelled_waiter_passes_on_the_free_slot(run: Runner) -> None:
    """A waiter told "a slot is free" but cancelled before it ran must wake the next one."""

    async def main() -> None:
        async with serving(max_connections_per_origin=1) as (mock, pool, origin):
            holder = await pool.request(origin, chat(origin, STREAM, x_mock_chunks="3", x_mock_chunk_delay_ms="50"))
            op = op_of(pool, origin)
            second = asyncio.create_task(fetch(pool, origin))
            third = asyncio.create_task(fetch(pool, origin))
            await eventually(lambda: len(op.waiters) == 2)
            waiter = op.waiters[0]
            holder.close()  # mid-stream: the connection is closed, its slot freed
            while not waiter.done():
                await asyncio.sleep(0)
            assert waiter.result() is None and op.connecting == 0 and not second.done()
            second.cancel()  # after the wake-up, before it ran
            with pytest.raises(asyncio.CancelledError):
                await second
            assert_chat_completion(*await asyncio.wait_for(third, 2))
            assert mock.connections_opened == 2

    run(main())


# --- connect failures and timeouts --------------------------------------------------------------


def test_connection_refused_is_unreachable(run: Runner) -> None:
    async def main() -> None:
        with socket.socket() as s:  # a port nobody listens on
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        pool = ConnectionPool(UpstreamConfig())
        origin = Origin("http", "127.0.0.1", port)
        try:
            with pytest.raises(UpstreamUnreachable, match=f"cannot connect to http://127.0.0.1:{port}"):
                await pool.request(origin, chat(origin))
            assert op_of(pool, origin).in_use == 0
        finally:
            await close_pool(pool)

    run(main())


def test_connect_timeout(run: Runner) -> None:
    async def main() -> None:
        # A listener that never accepts, its queue filled: further SYNs are dropped on loopback.
        srv = socket.socket()
        fillers: list[socket.socket] = []
        try:
            srv.bind(("127.0.0.1", 0))
            srv.listen(0)
            port = srv.getsockname()[1]
            for _ in range(4):
                f = socket.socket()
                f.setblocking(False)
                fillers.append(f)
                with contextlib.suppress(BlockingIOError):
                    f.connect(("127.0.0.1", port))
            await asyncio.sleep(0.05)
            pool = ConnectionPool(UpstreamConfig(connect_timeout=0.3))
            origin = Origin("http", "127.0.0.1", port)
            try:
                t0 = time.perf_counter()
                with pytest.raises(UpstreamTimeout, match="timed out after 0.3s"):
                    await pool.request(origin, chat(origin))
                assert 0.25 < time.perf_counter() - t0 < 2.0
                assert op_of(pool, origin).in_use == 0
            finally:
                await close_pool(pool)
        finally:
            for f in fillers:
                f.close()
            srv.close()

    run(main())


def test_read_timeout_closes_the_connection(run: Runner) -> None:
    async def main() -> None:
        async with serving(read_timeout=0.2) as (mock, pool, origin):
            t0 = time.perf_counter()
            with pytest.raises(UpstreamTimeout):
                await pool.request(origin, chat(origin, x_mock_latency_ms="1000"))
            assert time.perf_counter() - t0 < 0.9
            op = op_of(pool, origin)
            await eventually(lambda: mock.connections_open == 0 and not op.connections)
            assert not op.idle
            assert_chat_completion(*await fetch(pool, origin))
            assert mock.connections_opened == 2

    run(main())


# --- streaming -----------------------------------------------------------------------------------


def test_stream_chunks_are_not_buffered(run: Runner) -> None:
    async def main() -> None:
        async with serving() as (mock, pool, origin):
            t0 = time.perf_counter()
            resp = await pool.request(origin, chat(origin, STREAM, x_mock_chunks="4", x_mock_chunk_delay_ms="100"))
            assert resp.status == 200 and not resp.complete
            arrivals: list[float] = []
            chunks: list[bytes] = []
            async for chunk in resp:
                arrivals.append(time.perf_counter() - t0)
                chunks.append(chunk)
            resp.close()
            # role, 4 pieces, finish, [DONE]: seven events, 100 ms apart.
            assert sse_contents(b"".join(chunks)) == ["Hello", " from", " the", " mock"]
            assert len(chunks) >= 4
            assert arrivals[0] < 0.15, arrivals
            assert arrivals[-1] - arrivals[0] > 0.4, arrivals
            assert len(op_of(pool, origin).idle) == 1  # read to its end: back in the pool

    run(main())


def test_slow_consumer_pauses_reading_then_gets_everything(run: Runner) -> None:
    async def main() -> None:
        async with serving() as (mock, pool, origin):
            resp = await pool.request(origin, chat(origin, STREAM, x_mock_chunks="400", x_mock_chunk_bytes="16384"))
            (conn,) = op_of(pool, origin).connections
            await asyncio.sleep(0.3)  # the consumer is slow
            assert conn.read_paused
            assert mock.write_pauses > 0
            body = bytearray()
            async for chunk in resp:
                body += chunk
            assert resp.complete and resp.error is None
            resp.close()
            contents = sse_contents(bytes(body))
            assert len(contents) == 400
            assert all(len(c) == 16384 for c in contents)
            assert not conn.read_paused
            assert op_of(pool, origin).idle == [conn]

    run(main())


def test_closing_a_response_mid_stream_closes_the_connection(run: Runner) -> None:
    async def main() -> None:
        async with serving() as (mock, pool, origin):
            resp = await pool.request(origin, chat(origin, STREAM, x_mock_chunks="10", x_mock_chunk_delay_ms="50"))
            first = await resp.__anext__()
            assert first.startswith(b"data: ")
            resp.close()
            op = op_of(pool, origin)
            assert not op.idle
            await eventually(lambda: mock.connections_open == 0 and not op.connections)
            assert_chat_completion(*await fetch(pool, origin))
            assert mock.connections_opened == 2

    run(main())
