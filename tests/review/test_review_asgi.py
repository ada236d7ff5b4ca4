"""Review findings on the ASGI adapter (app.py), under uvicorn as in tests/integration/test_asgi.py.

Regression tests for bugs an independent review found, all fixed since. The file:line references
in the docstrings point at the code as reviewed (commit 95f1e75), not at today's lines.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import pytest
import yaml

from fastgw.testing.mock_upstream import MockUpstreamThread
from tests.helpers import chat_request, connect, free_port, gateway_config, read_responses, wait_for_port

STREAM = b'{"model":"m","stream":true,"messages":[]}'


@pytest.fixture
def uvicorn(mock: MockUpstreamThread, tmp_path: Path) -> Iterator[tuple[int, Path]]:
    cfg = tmp_path / "fastgw.yaml"
    cfg.write_text(yaml.safe_dump(gateway_config(mock.url)))
    port = free_port()
    log_path = tmp_path / "uvicorn.log"
    log = open(log_path, "wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "fastgw.app:app", "--port", str(port), "--lifespan", "on"],
        env={**os.environ, "FASTGW_CONFIG": str(cfg)}, stdout=log, stderr=log,
    )
    try:
        wait_for_port(port, proc=proc)
        yield port, log_path
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(10)
        log.close()


def test_asgi_stream_cut_by_the_upstream_is_not_ended_cleanly(uvicorn: tuple[int, Path]) -> None:
    """app.py:180-182 answers a mid-stream GatewayError with an empty final body: a chunked
    response then ends with a proper terminator, so the client cannot tell the stream was cut (no
    [DONE], no error event). The built-in server sends an SSE error event instead."""
    port, _ = uvicorn
    with connect(port) as s:
        s.sendall(chat_request(STREAM, extra="x-mock-reset: mid\r\nx-mock-chunks: 10\r\n"))
        responses = read_responses(s, 1, timeout=3)
    if responses and responses[0].complete:
        body = responses[0].body
        assert b"[DONE]" in body or b'"error"' in body, body[-200:]


def test_asgi_client_disconnects_log_no_traceback(uvicorn: tuple[int, Path]) -> None:
    """app.py:173 cancels the relay task and app.py:193 raises CancelledError out of the app:
    uvicorn logs 'Exception in ASGI application' with a traceback for every client that leaves
    mid-stream or mid-upload."""
    port, log_path = uvicorn
    with connect(port) as s:  # leaves mid-stream
        s.sendall(chat_request(STREAM, extra="x-mock-chunks: 50\r\nx-mock-chunk-delay-ms: 50\r\n"))
        s.recv(100)
    with connect(port) as s:  # leaves mid-upload
        s.sendall(chat_request(b"x" * 100)[:-50])
        time.sleep(0.2)
    time.sleep(1.0)
    assert "Traceback" not in log_path.read_text(), log_path.read_text()[-3000:]
