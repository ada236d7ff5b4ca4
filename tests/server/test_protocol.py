"""The built-in server's HTTP/1.1 edges, with raw sockets against a real gateway process."""

from __future__ import annotations

import socket
import time
import uuid

import orjson
import pytest

from fastgw.testing.mock_upstream import MockUpstreamThread
from tests.helpers import (
    GatewayProcess, chat_request, connect, gateway_config, read_responses, read_until_closed,
)


def error_of(resp) -> dict:  # type: ignore[no-untyped-def]
    body = resp.json()
    assert set(body["error"]) >= {"message", "type", "code"}, body
    return body["error"]


def test_keep_alive_serves_many_requests_on_one_connection(gateway: GatewayProcess) -> None:
    with connect(gateway.port) as s:
        for _ in range(5):
            s.sendall(chat_request())
            (resp,) = read_responses(s, 1)
            assert resp.status == 200 and resp.json()["object"] == "chat.completion"


def test_pipelined_requests_are_answered_in_order(gateway: GatewayProcess) -> None:
    # The first is the slowest upstream; answers must still come back first-to-last.
    reqs = [
        chat_request(b'{"model":"first","messages":[]}', extra="x-mock-latency-ms: 150\r\n"),
        chat_request(b'{"model":"second","messages":[]}', extra="x-mock-latency-ms: 10\r\n"),
        chat_request(b'{"model":"third","messages":[]}'),
    ]
    with connect(gateway.port) as s:
        s.sendall(b"".join(reqs))
        responses = read_responses(s, 3)
    assert [r.json()["model"] for r in responses] == ["first", "second", "third"]


def test_chunked_request_body(gateway: GatewayProcess, mock: MockUpstreamThread) -> None:
    body = b'{"model":"chunky","messages":[{"role":"user","content":"hi"}]}'
    parts = [body[:10], body[10:30], body[30:]]
    chunked = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in parts) + b"0\r\n\r\n"
    head = b"POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding: chunked\r\nContent-Type: application/json\r\n\r\n"
    with connect(gateway.port) as s:
        s.sendall(head)
        for i in range(0, len(chunked), 7):  # trickled in small pieces
            s.sendall(chunked[i : i + 7])
        (resp,) = read_responses(s, 1)
    assert resp.status == 200 and resp.json()["model"] == "chunky"
    seen = mock.mock.requests[-1]
    assert seen.body == body and seen.header("content-length") == str(len(body))
    assert seen.header("transfer-encoding") is None


def test_expect_100_continue(gateway: GatewayProcess) -> None:
    body = b'{"model":"m","messages":[]}'
    head = (b"POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\nContent-Type: application/json\r\n"
            b"Expect: 100-continue\r\nContent-Length: %d\r\n\r\n" % len(body))
    with connect(gateway.port) as s:
        s.sendall(head)
        interim = s.recv(1024)
        assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"
        s.sendall(body)
        (resp,) = read_responses(s, 1)
    assert resp.status == 200


def test_expect_100_continue_too_large_is_refused_before_the_body(gateway: GatewayProcess) -> None:
    head = (b"POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\nExpect: 100-continue\r\n"
            b"Content-Length: %d\r\n\r\n" % (64 * 1024 * 1024))
    with connect(gateway.port) as s:
        s.sendall(head)
        (resp,) = read_responses(s, 1)
        assert resp.status == 413 and error_of(resp)["code"] == "request_too_large"
        assert read_until_closed(s) == b""


def test_http_10_client(gateway: GatewayProcess) -> None:
    with connect(gateway.port) as s:  # no keep-alive asked: the server closes after the answer
        s.sendall(chat_request(version="1.0"))
        raw = read_until_closed(s)
    assert raw.startswith(b"HTTP/1.1 200 OK") and b"connection: close" in raw.lower()
    with connect(gateway.port) as s:  # keep-alive asked: kept, and said so
        for _ in range(2):
            s.sendall(chat_request(version="1.0", extra="Connection: keep-alive\r\n"))
            (resp,) = read_responses(s, 1)
            assert resp.status == 200 and resp.headers["connection"] == "keep-alive"


def test_http_10_stream_is_close_delimited(gateway: GatewayProcess) -> None:
    body = b'{"model":"m","stream":true,"messages":[]}'
    with connect(gateway.port) as s:
        s.sendall(chat_request(body, version="1.0"))
        raw = read_until_closed(s)
    head, _, payload = raw.partition(b"\r\n\r\n")
    assert b"transfer-encoding" not in head.lower()
    assert payload.rstrip().endswith(b"data: [DONE]")


def test_head_request(gateway: GatewayProcess) -> None:
    with connect(gateway.port) as s:
        s.sendall(b"HEAD /v1/models HTTP/1.1\r\nHost: gw\r\n\r\n")
        (resp,) = read_responses(s, 1, head_request=True)
        assert resp.status == 200 and int(resp.headers["content-length"]) > 0
        # no body followed the head: the connection is ready for the next request at once
        s.sendall(b"GET /v1/models HTTP/1.1\r\nHost: gw\r\n\r\n")
        (resp2,) = read_responses(s, 1)
    assert resp2.status == 200 and len(resp2.body) == int(resp.headers["content-length"])


def test_head_over_limit_gets_431_and_close(gateway: GatewayProcess) -> None:
    with connect(gateway.port) as s:
        s.sendall(b"GET /v1/models HTTP/1.1\r\nHost: gw\r\n")
        try:
            for i in range(100):  # 100 KiB of headers, well over 64 KiB
                s.sendall(b"X-Filler-%d: %s\r\n" % (i, b"a" * 1024))
        except (BrokenPipeError, ConnectionResetError):
            pass
        raw = read_until_closed(s)
    assert raw.startswith(b"HTTP/1.1 431 ")
    assert b'"code":"headers_too_large"' in raw


def test_one_huge_header_line_gets_431(gateway: GatewayProcess) -> None:
    with connect(gateway.port) as s:
        try:
            s.sendall(b"GET /v1/models HTTP/1.1\r\nHost: gw\r\nX-Big: " + b"b" * (200 * 1024))
        except (BrokenPipeError, ConnectionResetError):
            pass
        raw = read_until_closed(s)
    assert raw.startswith(b"HTTP/1.1 431 ")


def test_body_over_limit_gets_413(start_gateway, mock: MockUpstreamThread) -> None:  # type: ignore[no-untyped-def]
    gw = start_gateway(gateway_config(mock.url, server={"max_body_size": "1KiB"}))
    big = b'{"model":"m","pad":"' + b"x" * 2000 + b'"}'
    with connect(gw.port) as s:  # announced by Content-Length
        s.sendall(chat_request(big))
        (resp,) = read_responses(s, 1)
    assert resp.status == 413 and error_of(resp)["type"] == "invalid_request_error"
    chunked = b"7d0\r\n" + b"x" * 2000 + b"\r\n0\r\n\r\n"
    with connect(gw.port) as s:  # discovered while reading a chunked body
        s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding: chunked\r\n\r\n" + chunked)
        raw = read_until_closed(s)
    assert raw.startswith(b"HTTP/1.1 413 ")
    with connect(gw.port) as s:  # and the server keeps serving
        s.sendall(chat_request())
        assert read_responses(s, 1)[0].status == 200


def test_header_timeout_gets_408_then_close(start_gateway, mock: MockUpstreamThread) -> None:  # type: ignore[no-untyped-def]
    gw = start_gateway(gateway_config(mock.url, server={"header_timeout": "300ms"}))
    with connect(gw.port) as s:
        s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\n")  # ... and never the rest
        t0 = time.monotonic()
        raw = read_until_closed(s)
        took = time.monotonic() - t0
    assert raw.startswith(b"HTTP/1.1 408 ") and b"request_timeout" in raw
    assert 0.2 < took < 2.0


def test_a_connection_that_never_sends_is_closed_silently(start_gateway, mock: MockUpstreamThread) -> None:  # type: ignore[no-untyped-def]
    """No byte of a request: nothing to answer. A 408 written into an idle connection would be read
    by the client as the answer to the next request it sends there (a pooled connection)."""
    gw = start_gateway(gateway_config(mock.url, server={"header_timeout": "300ms", "keepalive_timeout": "30s"}))
    with connect(gw.port) as s:
        t0 = time.monotonic()
        assert read_until_closed(s) == b""
        assert 0.2 < time.monotonic() - t0 < 2.0
    with connect(gw.port) as s:  # and the server keeps serving
        s.sendall(chat_request())
        assert read_responses(s, 1)[0].status == 200


def test_body_timeout_gets_408_then_close(start_gateway, mock: MockUpstreamThread) -> None:  # type: ignore[no-untyped-def]
    gw = start_gateway(gateway_config(mock.url, server={"body_timeout": "300ms"}))
    with connect(gw.port) as s:
        s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\nContent-Length: 100\r\n\r\n{\"mod")
        t0 = time.monotonic()
        raw = read_until_closed(s)
        took = time.monotonic() - t0
    assert raw.startswith(b"HTTP/1.1 408 ") and b"request body not received" in raw
    assert 0.2 < took < 2.0
    with connect(gw.port) as s:  # a body that arrives in time, after a pause shorter than the limit
        s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\nContent-Length: 27\r\n\r\n")
        time.sleep(0.15)
        s.sendall(b'{"model":"m","messages":[]}')
        assert read_responses(s, 1)[0].status == 200


def test_idle_keep_alive_connection_is_closed(start_gateway, mock: MockUpstreamThread) -> None:  # type: ignore[no-untyped-def]
    gw = start_gateway(gateway_config(mock.url, server={"keepalive_timeout": "300ms", "header_timeout": "5s"}))
    with connect(gw.port) as s:
        s.sendall(chat_request())
        assert read_responses(s, 1)[0].status == 200
        t0 = time.monotonic()
        assert read_until_closed(s) == b""  # closed silently, no 408 for an idle connection
        assert 0.2 < time.monotonic() - t0 < 2.0


def test_connection_cap(start_gateway, mock: MockUpstreamThread) -> None:  # type: ignore[no-untyped-def]
    gw = start_gateway(gateway_config(mock.url, server={"max_connections": 2}))
    held = [connect(gw.port), connect(gw.port)]
    try:
        for s in held:  # make sure both are accepted before the third
            s.sendall(chat_request())
            assert read_responses(s, 1)[0].status == 200
        with connect(gw.port) as third:
            raw = read_until_closed(third)
        assert raw.startswith(b"HTTP/1.1 503 ") and b'"code":"overloaded"' in raw
    finally:
        for s in held:
            s.close()
    time.sleep(0.2)
    with connect(gw.port) as s:  # a freed slot serves again
        s.sendall(chat_request())
        assert read_responses(s, 1)[0].status == 200


@pytest.mark.parametrize("garbage", [b"NOT HTTP AT ALL\r\n\r\n", b"GET / HTTP/1.1\r\nBad Header\r\n\r\n",
                                     b"GET / HTTP/1.1\r\nX: a\x01b\r\n\r\n"])
def test_malformed_http_gets_400_then_close(gateway: GatewayProcess, garbage: bytes) -> None:
    with connect(gateway.port) as s:
        s.sendall(garbage)
        raw = read_until_closed(s)
    assert raw.startswith(b"HTTP/1.1 400 "), raw[:200]
    body = orjson.loads(raw.partition(b"\r\n\r\n")[2])
    assert body["error"]["type"] == "invalid_request_error"
    assert b"Traceback" not in raw


def test_malformed_request_after_a_good_one_is_answered_in_order(gateway: GatewayProcess) -> None:
    with connect(gateway.port) as s:
        s.sendall(chat_request(extra="x-mock-latency-ms: 50\r\n") + b"GARBAGE\r\n\r\n")
        raw = read_until_closed(s)
    first, second = raw.split(b"HTTP/1.1 ")[1:3]
    assert first.startswith(b"200 ") and second.startswith(b"400 ")


def test_request_id_echoed_when_uuid_and_refused_otherwise(gateway: GatewayProcess) -> None:
    rid = str(uuid.uuid4())
    with connect(gateway.port) as s:
        s.sendall(chat_request(extra=f"Helicone-Request-Id: {rid}\r\n"))
        (ok,) = read_responses(s, 1)
        s.sendall(chat_request(extra="Helicone-Request-Id: not-a-uuid\r\n"))
        (bad,) = read_responses(s, 1)
        s.sendall(chat_request())
        (fresh,) = read_responses(s, 1)
    assert ok.headers["helicone-id"] == rid
    assert bad.status == 400 and "Helicone-Request-Id" in error_of(bad)["message"]
    assert str(uuid.UUID(fresh.headers["helicone-id"])) == fresh.headers["helicone-id"]
    assert fresh.headers["helicone-id"] != rid
    dur = float(fresh.headers["server-timing"].split("dur=")[1])
    assert 0 < dur < 50


def test_unknown_route_is_404(gateway: GatewayProcess) -> None:
    with connect(gateway.port) as s:
        s.sendall(chat_request(path="/nowhere/chat"))
        (resp,) = read_responses(s, 1)
    assert resp.status == 404 and error_of(resp)["type"] == "not_found_error"


def test_target_url_allowlist(gateway: GatewayProcess, mock: MockUpstreamThread) -> None:
    with connect(gateway.port) as s:
        s.sendall(chat_request(extra=f"Helicone-Target-Url: {mock.url}\r\n"))
        (allowed,) = read_responses(s, 1)
        s.sendall(chat_request(extra="Helicone-Target-Url: http://127.0.0.1:1\r\n"))
        (refused,) = read_responses(s, 1)
        s.sendall(chat_request(extra=f"Helicone-Target-Url: {mock.url}@evil.example\r\n"))
        (lookalike,) = read_responses(s, 1)
    assert allowed.status == 200
    assert refused.status == 403 and error_of(refused)["type"] == "permission_error"
    assert lookalike.status == 403


def test_headers_sent_upstream(gateway: GatewayProcess, mock: MockUpstreamThread) -> None:
    extra = ("Helicone-Property-Env: prod\r\nHelicone-User-Id: u1\r\nConnection: keep-alive, X-Hop\r\n"
             "X-Hop: drop-me\r\nKeep-Alive: timeout=5\r\nX-Custom: keep-me\r\nOpenAI-Organization: org-1\r\n")
    with connect(gateway.port) as s:
        s.sendall(chat_request(extra=extra))
        assert read_responses(s, 1)[0].status == 200
    seen = mock.mock.requests[-1]
    names = {n for n, _ in seen.headers}
    assert seen.header("authorization") == "Bearer sk-test"  # passed through: no key configured
    assert seen.header("x-custom") == "keep-me" and seen.header("openai-organization") == "org-1"
    assert not {n for n in names if n.startswith("helicone-")}
    assert not names & {"x-hop", "keep-alive"}
    assert seen.header("host") == mock.url.split("//")[1]


def test_configured_key_is_injected(start_gateway, mock: MockUpstreamThread) -> None:  # type: ignore[no-untyped-def]
    cfg = gateway_config(mock.url)
    cfg["providers"]["openai"]["api_key"] = "sk-from-config"
    cfg["providers"]["anthropic"]["api_key"] = "${FASTGW_TEST_ANTHROPIC_KEY}"
    gw = start_gateway(cfg, env={"FASTGW_TEST_ANTHROPIC_KEY": "sk-ant-config"})
    with connect(gw.port) as s:
        s.sendall(chat_request())
        assert read_responses(s, 1)[0].status == 200
        assert mock.mock.requests[-1].header("authorization") == "Bearer sk-from-config"
        body = b'{"model":"claude-sonnet-4-6","max_tokens":5,"messages":[{"role":"user","content":"hi"}]}'
        s.sendall(chat_request(body, path="/anthropic/v1/messages", extra="x-api-key: sk-ant-client\r\n"))
        assert read_responses(s, 1)[0].status == 200
    seen = mock.mock.requests[-1]
    assert seen.header("x-api-key") == "sk-ant-config"
    assert seen.header("authorization") is None  # the client's credential never reaches the provider


def test_upstream_unreachable_is_502(start_gateway, mock: MockUpstreamThread) -> None:  # type: ignore[no-untyped-def]
    cfg = gateway_config(mock.url)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        dead = probe.getsockname()[1]
    cfg["providers"]["openai"]["base_url"] = f"http://127.0.0.1:{dead}"
    gw = start_gateway(cfg)
    with connect(gw.port) as s:
        s.sendall(chat_request())
        (resp,) = read_responses(s, 1)
    assert resp.status == 502 and error_of(resp)["code"] == "upstream_unreachable"


def test_upstream_timeout_is_504(start_gateway, mock: MockUpstreamThread) -> None:  # type: ignore[no-untyped-def]
    gw = start_gateway(gateway_config(mock.url, upstream={"read_timeout": "300ms"}))
    with connect(gw.port) as s:
        s.sendall(chat_request(extra="x-mock-latency-ms: 2000\r\n"))
        (resp,) = read_responses(s, 1)
        assert resp.status == 504 and error_of(resp)["code"] == "upstream_timeout"
        s.sendall(chat_request())  # the same client connection keeps serving
        assert read_responses(s, 1)[0].status == 200


def test_client_disconnect_mid_stream_closes_the_upstream_connection(gateway: GatewayProcess, mock: MockUpstreamThread) -> None:
    body = b'{"model":"m","stream":true,"messages":[]}'
    before = mock.mock.connections_opened
    with connect(gateway.port) as s:
        s.sendall(chat_request(body, extra="x-mock-chunks: 50\r\nx-mock-chunk-delay-ms: 100\r\n"))
        assert s.recv(4096).startswith(b"HTTP/1.1 200")
    # the gateway must drop its upstream connection rather than read the 5 s stream out
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        time.sleep(0.05)
        if mock.mock.request_count and not _stream_still_open(mock):
            break
    assert not _stream_still_open(mock)
    with connect(gateway.port) as s:  # the next request works (and doesn't reuse the dead one)
        s.sendall(chat_request())
        assert read_responses(s, 1)[0].status == 200
    assert mock.mock.connections_opened > before


def _stream_still_open(mock: MockUpstreamThread) -> bool:
    return any(c.task is not None and not c.closed for c in list(mock.mock._conns))


def test_server_keeps_serving_after_errors(gateway: GatewayProcess) -> None:
    for garbage in (b"\x00\x01\x02\r\n\r\n", b"POST /v1/chat/completions HTTP/1.1\r\nContent-Length: -5\r\n\r\n"):
        with connect(gateway.port) as s:
            s.sendall(garbage)
            assert read_until_closed(s).startswith(b"HTTP/1.1 400 ")
    with connect(gateway.port) as s:
        s.sendall(chat_request())
        assert read_responses(s, 1)[0].status == 200
    assert "Traceback" not in gateway.log()


def test_healthz_answers_without_a_provider(gateway: GatewayProcess, mock: MockUpstreamThread) -> None:
    before = mock.mock.request_count
    with connect(gateway.port) as s:
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: gw\r\n\r\n")
        (resp,) = read_responses(s, 1)
    assert resp.status == 200 and resp.json() == {"status": "ok"}
    assert mock.mock.request_count == before
