"""Back-pressure through the gateway: a client that doesn't read slows what the gateway reads."""

from __future__ import annotations

import socket
import time

from fastgw.testing.mock_upstream import MockUpstreamThread
from tests.helpers import GatewayProcess, chat_request, connect, read_responses


def _rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_slow_reader_of_a_big_stream_pauses_the_upstream(gateway: GatewayProcess, mock: MockUpstreamThread) -> None:
    """64 MiB of SSE to a client that reads nothing for a while: the gateway must not buffer it."""
    body = b'{"model":"m","stream":true,"messages":[]}'
    extra = "x-mock-chunks: 4096\r\nx-mock-chunk-bytes: 16384\r\n"
    pauses_before = mock.mock.write_pauses
    rss_before = _rss_kib(gateway.proc.pid)
    s = connect(gateway.port, timeout=10)
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
        s.sendall(chat_request(body, extra=extra))
        time.sleep(1.5)  # not reading: the kernel buffers fill, then the gateway's, then it stops reading
        assert mock.mock.write_pauses > pauses_before, "the mock never saw the gateway stop reading"
        grown_mib = (_rss_kib(gateway.proc.pid) - rss_before) / 1024
        assert grown_mib < 16, f"gateway RSS grew {grown_mib:.1f} MiB while the client was not reading"
        total = 0
        s.settimeout(10)
        while True:  # now read it all: every byte arrives
            data = s.recv(1 << 20)
            if not data:
                break
            total += len(data)
            if data.endswith(b"0\r\n\r\n"):
                break
        assert total > 4096 * 16384
    finally:
        s.close()


def test_client_not_reading_pipelined_answers_stops_being_read(gateway: GatewayProcess, mock: MockUpstreamThread) -> None:
    """200 pipelined requests for 64 KiB answers, none read: the gateway stops taking requests."""
    count = 200
    body = b'{"model":"m","messages":[]}'
    req = chat_request(body, extra="x-mock-chunks: 4\r\nx-mock-chunk-bytes: 16384\r\n")
    before = mock.mock.request_count
    s = connect(gateway.port, timeout=10)
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
        s.setblocking(False)
        sent = 0
        payload = req * count
        deadline = time.monotonic() + 1.5
        while sent < len(payload) and time.monotonic() < deadline:
            try:
                sent += s.send(payload[sent : sent + 65536])
            except BlockingIOError:
                time.sleep(0.01)
        time.sleep(0.5)
        forwarded = mock.mock.request_count - before
        assert forwarded < count, f"all {count} requests went upstream although no answer was read"
        s.setblocking(True)
        s.settimeout(10)
        s.sendall(payload[sent:])
        responses = read_responses(s, count, timeout=10)
    finally:
        s.close()
    assert len(responses) == count and all(r.status == 200 for r in responses)
