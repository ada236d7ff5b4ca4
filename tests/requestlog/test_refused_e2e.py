"""Requests the gateway refuses or cuts short, end to end: real gateway processes, the jsonl sink,
only the provider mocked.

What each must leave behind: a row (a 408 as much as a 413), under the client's own
Helicone-Request-Id when it sent a valid one, with no credential from the URL or a Helicone header
in the row, the error message or the process log; and a request cut by the gateway's own shutdown
must not pass for a client that left.
"""

from __future__ import annotations

import json
import socket
import threading
import time
import uuid
from typing import Any, Callable

import orjson

from fastgw.testing.mock_upstream import MockUpstreamThread
from tests.helpers import GatewayProcess, chat_request, connect, gateway_config, read_responses, read_until_closed

Start = Callable[..., GatewayProcess]


def rows(gw: GatewayProcess) -> dict[str, dict[str, Any]]:
    """The sink's rows by request id, once the gateway has stopped (which flushes them)."""
    assert gw.stop() == 0, gw.log()
    files = sorted((gw.log_dir / "sink").glob("requests*.jsonl"))
    return {r["request_id"]: r for f in files for r in map(orjson.loads, f.read_bytes().splitlines())}


def assert_no_secret_written(gw: GatewayProcess) -> None:
    """Every file the gateway wrote (sink, spill, parked, rejected) and its process log."""
    files = [f for f in gw.log_dir.rglob("*") if f.is_file()] + [gw.stderr_path]
    leaks = [f for f in files if b"SECRET" in f.read_bytes()]
    assert not leaks, leaks


def ask(gw: GatewayProcess, data: bytes) -> Any:
    with connect(gw.port) as s:
        s.sendall(data)
        (resp,) = read_responses(s, 1)
    return resp


def test_urls_in_error_messages_are_redacted(start_gateway: Start, mock: MockUpstreamThread) -> None:
    gw = start_gateway(gateway_config(mock.url))
    ids = [str(uuid.uuid4()) for _ in range(4)]
    fallbacks = json.dumps([{"target-url": "https://u:sk-SECRET4@evil.test/?access_token=sk-SECRET5",
                             "headers": {"Authorization": "Bearer sk-SECRET6"}}])
    cases = [
        ("/nosuchprovider/v1/x?key=sk-SECRET1&alt=sse", "", 404, "/nosuchprovider/v1/x?key=[redacted]&alt=sse"),
        ("/v1/chat/completions", "Helicone-Target-Url: https://user:sk-SECRET2@api.example.com\r\n", 403,
         "'https://[redacted]@api.example.com'"),
        ("/v1/chat/completions", "Helicone-Target-Url: https://api.example.com/?key=sk-SECRET3\r\n", 403,
         "'https://api.example.com/?key=[redacted]'"),
        ("/v1/chat/completions", f"Helicone-Fallbacks: {fallbacks}\r\n", 403,
         "'https://[redacted]@evil.test/?access_token=[redacted]'"),
    ]
    for rid, (path, extra, status, shown) in zip(ids, cases):
        resp = ask(gw, chat_request(path=path, extra=f"Helicone-Request-Id: {rid}\r\n{extra}"))
        message = resp.json()["error"]["message"]
        assert resp.status == status and shown in message and "SECRET" not in message, message
    logged = rows(gw)
    assert [logged[rid]["status"] for rid in ids] == [404, 403, 403, 403]
    assert_no_secret_written(gw)


def test_a_request_refused_before_a_context_is_logged_with_its_secrets_redacted(
    start_gateway: Start, mock: MockUpstreamThread
) -> None:
    """An invalid Helicone-Request-Id is refused before the request has a context; its record is
    made from the raw headers, so the Helicone headers that carry secrets inside are redacted."""
    gw = start_gateway(gateway_config(mock.url))
    fallbacks = json.dumps([{"target-url": mock.url, "headers": {"Authorization": "Bearer sk-SECRET1"}}])
    resp = ask(gw, chat_request(
        path="/v1/chat/completions?key=sk-SECRET2&access_token=sk-SECRET3&alt=sse",
        extra=f"Helicone-Request-Id: not-a-uuid\r\nHelicone-Fallbacks: {fallbacks}\r\n"
              "Helicone-Target-Url: https://u:sk-SECRET4@h.test/?token=sk-SECRET5\r\n",
    ))
    assert resp.status == 400
    row = rows(gw)[resp.headers["helicone-id"]]
    assert row["status"] == 400 and row["path"] == "/v1/chat/completions?key=[redacted]&access_token=[redacted]&alt=sse"
    assert row["request_headers"]["helicone-fallbacks"] == "[redacted]"
    assert row["request_headers"]["helicone-target-url"] == "https://[redacted]@h.test/?token=[redacted]"
    assert_no_secret_written(gw)


def test_requests_refused_before_a_context_keep_the_clients_request_id(
    start_gateway: Start, mock: MockUpstreamThread
) -> None:
    """413, 431 and a malformed header byte: the client's valid id on the response and the row."""
    gw = start_gateway(gateway_config(mock.url, server={"max_body_size": "1KiB"}))
    ids = {n: str(uuid.uuid4()) for n in (413, 431, 400)}
    refused = {
        413: chat_request(b'{"pad":"' + b"x" * 2000 + b'"}', extra=f"Helicone-Request-Id: {ids[413]}\r\n"),
        431: chat_request(extra=f"Helicone-Request-Id: {ids[431]}\r\nX-Big: {'y' * 70000}\r\n"),
        400: chat_request(path="/v1/chat/completions?apikey=sk-SECRET6",
                          extra=f"Helicone-Request-Id: {ids[400]}\r\nX-Bad: a\x01b\r\n"),
    }
    for status, data in refused.items():
        with connect(gw.port) as s:
            s.sendall(data)
            raw = read_until_closed(s)
        assert raw.startswith(b"HTTP/1.1 %d " % status), raw[:200]
        assert b"helicone-id: " + ids[status].encode() in raw, raw[:300]
    logged = rows(gw)
    assert {status: logged[rid]["status"] for status, rid in ids.items()} == {413: 413, 431: 431, 400: 400}
    assert logged[ids[400]]["path"] == "/v1/chat/completions?apikey=[redacted]"
    assert_no_secret_written(gw)


def test_a_body_timeout_is_logged_like_a_413(start_gateway: Start, mock: MockUpstreamThread) -> None:
    gw = start_gateway(gateway_config(mock.url, server={"body_timeout": "300ms"}))
    with connect(gw.port) as s:
        s.sendall(chat_request(path="/v1/chat/completions?key=sk-SECRET1")[:-10])  # the body never ends
        raw = read_until_closed(s)
    assert raw.startswith(b"HTTP/1.1 408 ")
    rid = raw.split(b"helicone-id: ", 1)[1].split(b"\r\n", 1)[0].decode()
    row = rows(gw)[rid]
    assert (row["status"], row["error_type"], row["path"]) == (408, "request_timeout", "/v1/chat/completions?key=[redacted]")
    assert_no_secret_written(gw)


def test_a_head_timeout_is_logged_like_a_431_and_an_idle_connection_leaves_no_row(start_gateway: Start, mock: MockUpstreamThread) -> None:
    gw = start_gateway(gateway_config(mock.url, server={"header_timeout": "300ms"}))
    with connect(gw.port) as s:  # a head begun and never finished: a cut-off request
        s.sendall(b"POST /v1/chat/completions?key=sk-SECRET2 HTTP/1.1\r\nAuthorization: Bearer sk-SECRET3\r\nHost: gw\r\n")
        raw = read_until_closed(s)
    with connect(gw.port) as s:  # nothing at all: no request, no answer, no row
        assert read_until_closed(s) == b""
    assert raw.startswith(b"HTTP/1.1 408 ")
    rid = raw.split(b"helicone-id: ", 1)[1].split(b"\r\n", 1)[0].decode()
    logged = rows(gw)
    assert list(logged) == [rid]
    row = logged[rid]
    assert (row["status"], row["error_type"], row["path"]) == (408, "request_timeout", "/v1/chat/completions?key=[redacted]")
    assert row["request_headers"]["authorization"] == "[redacted]"
    assert_no_secret_written(gw)


def test_requests_cut_by_shutdown_are_not_logged_as_clients_leaving(start_gateway: Start, mock: MockUpstreamThread) -> None:
    gw = start_gateway(gateway_config(mock.url, server={"graceful_timeout": "300ms"}))
    waiting, streaming = str(uuid.uuid4()), str(uuid.uuid4())
    stream = b'{"model":"gpt-4o-mini","stream":true,"messages":[{"role":"user","content":"hi"}]}'
    requests = [
        chat_request(extra=f"Helicone-Request-Id: {waiting}\r\nx-mock-latency-ms: 5000\r\n"),
        chat_request(stream, extra=f"Helicone-Request-Id: {streaming}\r\nx-mock-chunks: 50\r\nx-mock-chunk-delay-ms: 200\r\n"),
    ]
    socks: list[socket.socket] = []
    for data in requests:
        s = connect(gw.port, timeout=10)
        s.sendall(data)
        socks.append(s)
    # The stream's head is out (its first bytes wait on the socket), and the other request reached
    # the upstream, where it waits: a fixed sleep could be short on a loaded machine.
    socks[1].settimeout(10)
    assert socks[1].recv(16, socket.MSG_PEEK).startswith(b"HTTP/1.1 200")
    deadline = time.monotonic() + 10
    while not any(("x-mock-latency-ms", "5000") in r.headers for r in list(mock.mock.requests)):
        assert time.monotonic() < deadline, "the waiting request never reached the upstream"
        time.sleep(0.02)
    readers = [threading.Thread(target=read_until_closed, args=(s, 10)) for s in socks]
    for t in readers:
        t.start()
    logged = rows(gw)  # SIGTERM: both outlive the grace period and are aborted by the gateway
    for t in readers:
        t.join()
    for s in socks:
        s.close()
    assert (logged[waiting]["status"], logged[waiting]["error_type"]) == (503, "gateway_shutdown")
    assert (logged[streaming]["status"], logged[streaming]["error_type"]) == (200, "gateway_shutdown")
