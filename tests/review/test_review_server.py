"""Review findings on the built-in server's request path, against a real ``fastgw serve``.

Every test here is a reproduction: it asserts the correct behaviour, so a failing test is a bug.

Regression tests for bugs an independent review found, all fixed since. The file:line references
in the docstrings point at the code as reviewed (commit 95f1e75), not at today's lines.
"""

from __future__ import annotations

import socket
import time
from typing import Callable


from fastgw.testing.mock_upstream import MockUpstreamThread
from tests.helpers import (
    GatewayProcess, chat_request, connect, gateway_config, read_responses, read_until_closed,
)
from tests.review.rawserver import RawUpstream

GET_MODELS = b"GET /v1/models HTTP/1.1\r\nHost: gw\r\n\r\n"


def raw_gateway(start_gateway: Callable[..., GatewayProcess], up: RawUpstream) -> GatewayProcess:
    return start_gateway({"providers": {"openai": {"base_url": up.url}}})


def recv_some(sock: socket.socket, timeout: float = 3.0) -> bytes:
    sock.settimeout(timeout)
    out = b""
    try:
        while True:
            data = sock.recv(65536)
            if not data:
                break
            out += data
    except (socket.timeout, ConnectionResetError):
        pass
    return out


# --- protocol.py: head-size accounting -----------------------------------------------------------


def test_head_under_the_limit_split_across_two_reads_is_accepted(gateway: GatewayProcess) -> None:
    """protocol.py:141-145 (data_received) + 164-171 (on_url/on_header): a head that arrives in
    two reads is counted twice (once per parsed header, once per raw read), so a 40 KiB head gets
    431 under a 64 KiB limit -- but only when the client's bytes happen to be split."""
    filler = b"".join(b"X-F%d: %s\r\n" % (i, b"a" * 1000) for i in range(40))
    req = b"GET /v1/models HTTP/1.1\r\nHost: gw\r\n" + filler + b"\r\n"
    assert len(req) < 48 * 1024
    with connect(gateway.port) as s:
        s.sendall(req[:36000])
        time.sleep(0.2)
        s.sendall(req[36000:])
        (resp,) = read_responses(s, 1)
    assert resp.status == 200, resp.body


def test_pipelined_small_head_after_a_large_body_is_accepted(gateway: GatewayProcess) -> None:
    """protocol.py:141-145: head_size += len(data) counts the whole read, including the tail of the
    *previous* request's body, against the next request's head."""
    big = b'{"model":"m","messages":[],"pad":"' + b"x" * 100_000 + b'"}'
    second = b"GET /v1/models HTTP/1.1\r\nHost: gw\r\nX-Pad: " + b"y" * 2000 + b"\r\n"
    with connect(gateway.port) as s:
        s.sendall(chat_request(big) + second)
        time.sleep(0.3)
        s.sendall(b"\r\n")
        responses = read_responses(s, 2)
    assert [r.status for r in responses] == [200, 200]


# --- protocol.py: protocol upgrades --------------------------------------------------------------


def test_upgrade_request_gets_exactly_one_response(gateway: GatewayProcess) -> None:
    """protocol.py:132-134: llhttp completes an Upgrade request *before* raising
    HttpParserUpgrade, so the request is queued and proxied, and then an unsolicited 400 follows
    its answer on the same connection (curl --http2 against http:// sends exactly this)."""
    with connect(gateway.port) as s:
        s.sendall(b"GET /v1/models HTTP/1.1\r\nHost: gw\r\nConnection: Upgrade, HTTP2-Settings\r\n"
                  b"Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\n\r\n")
        raw = read_until_closed(s)
    assert raw.count(b"HTTP/1.1 ") == 1, raw


def test_request_after_an_upgrade_request_gets_its_own_answer(gateway: GatewayProcess) -> None:
    """Consequence of the stray 400: the 200 to the upgrade request carries no ``connection: close``,
    so a client reuses the connection and reads the stray 400 as the answer to its *next* request."""
    with connect(gateway.port) as s:
        s.sendall(b"GET /v1/models HTTP/1.1\r\nHost: gw\r\nConnection: Upgrade, HTTP2-Settings\r\n"
                  b"Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\n\r\n")
        (first,) = read_responses(s, 1)
        time.sleep(0.1)
        if first.headers.get("connection") == "close":
            return  # the server said it would close: a client would not reuse the connection
        s.sendall(chat_request())
        answers = read_responses(s, 1)
    assert answers and answers[0].status == 200, [(r.status, r.body[:80]) for r in answers]


def test_upgrade_post_is_not_forwarded_without_its_body(gateway: GatewayProcess, mock: MockUpstreamThread) -> None:
    """Same root cause: httptools skips the body of an upgrade request, so a POST carrying
    ``Connection: Upgrade`` goes upstream with ``content-length: 0`` and the provider acts on it."""
    body = b'{"model":"upgrade-probe","messages":[]}'
    with connect(gateway.port) as s:
        s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n"
                  b"X-Probe: upgrade-post\r\nContent-Type: application/json\r\n"
                  b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
        read_until_closed(s)
    sent = [r for r in list(mock.mock.requests) if r.header("x-probe") == "upgrade-post"]
    assert all(r.body == body for r in sent), [(r.header("content-length"), r.body) for r in sent]


# --- protocol.py / responses.py: upstream status codes -------------------------------------------


def test_upstream_status_above_599_gets_an_answer(start_gateway: Callable[..., GatewayProcess]) -> None:
    """protocol.py:302 STATUS_LINES[response.status] is a KeyError for 600-999 (httptools accepts
    any 3-digit status): the client gets an empty reply and the log a traceback."""
    with RawUpstream([b"HTTP/1.1 600 Custom\r\nContent-Length: 2\r\n\r\nhi"]) as up:
        gw = raw_gateway(start_gateway, up)
        with connect(gw.port) as s:
            s.sendall(GET_MODELS)
            raw = recv_some(s)
    assert raw.startswith(b"HTTP/1.1 "), raw
    assert "Traceback" not in gw.log()


def test_bodyless_statuses_carry_no_content_length(start_gateway: Callable[..., GatewayProcess]) -> None:
    """A Response built with body=b"" gets content-length: 0, also on 204 (MUST NOT, RFC 9110
    8.6) and on 304 (where it would describe the selected representation)."""
    for status in (204, 304):
        with RawUpstream([b"HTTP/1.1 %d X\r\nETag: \"e\"\r\n\r\n" % status]) as up:
            gw = raw_gateway(start_gateway, up)
            with connect(gw.port) as s:
                s.sendall(GET_MODELS)
                head = recv_some(s, 1.5).partition(b"\r\n\r\n")[0].lower()
            assert head.startswith(b"http/1.1 %d" % status)
            assert b"content-length" not in head, head


# --- dispatch.py: hop-by-hop response headers ----------------------------------------------------


def test_headers_named_by_the_upstream_connection_header_are_dropped(start_gateway: Callable[..., GatewayProcess]) -> None:
    """dispatch.py:14-34 response_head_block drops the fixed hop-by-hop set but not the names the
    upstream lists in its own Connection header (RFC 9110 7.6.1); the request side does this."""
    with RawUpstream([b"HTTP/1.1 200 OK\r\nConnection: x-hop\r\nX-Hop: upstream-only\r\nContent-Length: 2\r\n\r\nhi"]) as up:
        gw = raw_gateway(start_gateway, up)
        with connect(gw.port) as s:
            s.sendall(GET_MODELS)
            (resp,) = read_responses(s, 1)
    assert resp.status == 200 and "x-hop" not in resp.headers, resp.headers


# --- upstream/connection.py: bytes after a complete response -------------------------------------


def test_bytes_after_a_complete_upstream_response_never_reach_another_client(
    start_gateway: Callable[..., GatewayProcess],
) -> None:
    """connection.py:165-176, 209-210, 255-265: data_received only refuses bytes while *idle*.
    Bytes that follow a complete response in the same read are parsed as the start of the next
    message (on_header keeps appending to the finished response) and the connection is still
    released to the pool with the parser mid-message, so the next client's request on it gets this status and these headers."""
    first = (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi"
             b"HTTP/1.1 418 I'm a teapot\r\nX-Injected: 1\r\nX-Pad: ")
    second = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nworld"
    with RawUpstream([first, second]) as up:
        gw = raw_gateway(start_gateway, up)
        got = []
        for _ in range(2):
            with connect(gw.port) as s:
                s.sendall(GET_MODELS)
                (resp,) = read_responses(s, 1)
                got.append(resp)
    assert "x-injected" not in got[0].headers, got[0].headers
    assert got[1].status in (200, 502) and "x-injected" not in got[1].headers, (got[1].status, got[1].headers)


# --- upstream/pool.py: the stale-connection retry --------------------------------------------------


def test_post_the_upstream_held_then_dropped_is_not_sent_twice(gateway: GatewayProcess, mock: MockUpstreamThread) -> None:
    """pool.py:117-121 + connection.py:191: any close before the first response byte on a reused
    connection is a StaleConnection, so the request is replayed -- even a POST the upstream had
    received and worked on for 300 ms (a provider crash/restart, an LB idle cut mid-request)."""
    with connect(gateway.port) as s:
        s.sendall(chat_request())  # warm a pooled connection
        assert read_responses(s, 1)[0].status == 200
        before = mock.mock.request_count
        s.sendall(chat_request(extra="x-mock-latency-ms: 800\r\nx-mock-reset: before\r\n"))
        (resp,) = read_responses(s, 1)
    assert resp.status == 502
    assert mock.mock.request_count - before == 1, "the non-idempotent request reached the provider twice"


# --- stages/route.py: Helicone-Target-Url --------------------------------------------------------


def test_absolute_form_request_target_is_not_forwarded_to_a_target(
    start_gateway: Callable[..., GatewayProcess], mock: MockUpstreamThread
) -> None:
    """route.py:70 appends the raw request-target; in absolute-form that is
    ``GET http://other-host/...`` on the wire to the allow-listed origin, which RFC 9112 3.2.2 makes
    it route by *that* host (nginx server blocks, CDNs, forward-capable proxies)."""
    gw = start_gateway(gateway_config(mock.url))
    with connect(gw.port) as s:
        s.sendall(f"GET http://other-vhost.example/v1/models HTTP/1.1\r\nHost: gw\r\n"
                  f"Helicone-Target-Url: {mock.url}\r\n\r\n".encode())
        read_responses(s, 1)
    assert not any(r.path.startswith("http") for r in mock.mock.requests), mock.mock.requests[-1].path


def test_dot_segments_do_not_escape_an_allowed_path_prefix(
    start_gateway: Callable[..., GatewayProcess], mock: MockUpstreamThread
) -> None:
    """route.py:52 compares the un-normalised path, and route.py:70 appends the request path
    verbatim: both ``/v1/../x`` in the target URL and ``/../x`` in the request path leave the
    allow-listed ``/v1`` prefix once the upstream normalises dot segments."""
    gw = start_gateway(gateway_config(mock.url, targets={"allow": [mock.url + "/v1"]}))
    sent = []
    for path, target in (("/models", mock.url + "/v1/../__mock"), ("/../__mock/stats", mock.url + "/v1")):
        with connect(gw.port) as s:
            s.sendall(f"GET {path} HTTP/1.1\r\nHost: gw\r\nHelicone-Target-Url: {target}\r\n\r\n".encode())
            (resp,) = read_responses(s, 1)
            if resp.status != 403:
                sent.append(mock.mock.requests[-1].path)
    assert not any("/.." in p for p in sent), sent


# --- protocol.py: a client that stops reading --------------------------------------------------------


def test_client_that_never_reads_does_not_hold_the_upstream_forever(
    start_gateway: Callable[..., GatewayProcess], mock: MockUpstreamThread
) -> None:
    """A client that opens a stream and never reads must not pin an upstream connection (of
    max_connections_per_origin) for as long as it likes: server.send_timeout drops it."""
    gw = start_gateway(gateway_config(mock.url, upstream={"read_timeout": "1s"},
                                      server={"write_high_water": "16KiB", "send_timeout": "1s"}))
    s = socket.create_connection(("127.0.0.1", gw.port))
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    try:
        opened = mock.mock.connections_opened
        body = b'{"model":"m","stream":true,"messages":[]}'
        # a chunk delay makes the mock stream from a task, which we can watch
        s.sendall(chat_request(body, extra="x-mock-chunks: 4000\r\nx-mock-chunk-bytes: 4096\r\n"
                                           "x-mock-chunk-delay-ms: 0.1\r\n"))
        time.sleep(1.0)
        assert mock.mock.connections_opened > opened
        held = [c for c in list(mock.mock._conns) if c.task is not None and not c.closed]
        assert held, "the stream did not start"
        time.sleep(5.0)  # five read_timeouts
        still = [c for c in held if not c.closed]
        assert not still, "the upstream connection is still held by a client that reads nothing"
    finally:
        s.close()


def test_upstream_101_does_not_escape_into_the_loop_handler(start_gateway: Callable[..., GatewayProcess]) -> None:
    """connection.py:172-176 catches httptools.HttpParserError, but HttpParserUpgrade is *not* a
    subclass of it (its MRO is HttpParserUpgrade -> Exception): an upstream 101 raises out of
    data_received into uvloop's 'Fatal error on transport' handler, traceback in the log."""
    with RawUpstream([b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\nxyz"]) as up:
        gw = raw_gateway(start_gateway, up)
        with connect(gw.port) as s:
            s.sendall(GET_MODELS)
            raw = recv_some(s, 2)
        time.sleep(0.2)
    assert raw.startswith(b"HTTP/1.1 502 "), raw[:100]
    assert "Traceback" not in gw.log(), gw.log()[-1500:]


def test_connect_request_is_not_forwarded_to_a_target(
    start_gateway: Callable[..., GatewayProcess], mock: MockUpstreamThread
) -> None:
    """route.py:70 appends any request-target form: ``CONNECT host:port`` (authority-form) goes to the
    allow-listed origin as a CONNECT -- a tunnel request, if that origin is or fronts a proxy."""
    gw = start_gateway(gateway_config(mock.url))
    with connect(gw.port) as s:
        s.sendall(f"CONNECT internal.example:22 HTTP/1.1\r\nHost: internal.example:22\r\n"
                  f"Helicone-Target-Url: {mock.url}\r\n\r\n".encode())
        read_until_closed(s)
    assert not any(r.method == "CONNECT" for r in mock.mock.requests)
