"""The core is a plain ASGI 3 app: uvicorn serves it too, SDK streaming included."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import anthropic
import openai
import pytest
import yaml

from fastgw.testing.mock_upstream import MockUpstreamThread
from tests.helpers import free_port, gateway_config, wait_for_port

MSGS = [{"role": "user", "content": "hello"}]


@pytest.fixture(scope="module")
def uvicorn_url(mock: MockUpstreamThread, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    tmp = tmp_path_factory.mktemp("asgi")
    cfg = tmp / "fastgw.yaml"
    cfg.write_text(yaml.safe_dump(gateway_config(mock.url)))
    port = free_port()
    log = open(tmp / "uvicorn.log", "wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "fastgw.app:app", "--port", str(port), "--lifespan", "on"],
        env={**os.environ, "FASTGW_CONFIG": str(cfg)}, stdout=log, stderr=log,
    )
    try:
        wait_for_port(port, proc=proc)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(10)
        log.close()
        assert "Traceback" not in Path(tmp / "uvicorn.log").read_text()


def test_openai_sdk_through_uvicorn(uvicorn_url: str) -> None:
    with openai.OpenAI(base_url=uvicorn_url + "/v1", api_key="sk-test", max_retries=0) as client:
        raw = client.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=MSGS)
        assert raw.parse().choices[0].message.content
        assert len(raw.headers["helicone-id"]) == 36 and "gateway;dur=" in raw.headers["server-timing"]
        chunks = list(client.chat.completions.create(model="gpt-4o-mini", messages=MSGS, stream=True))
        assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        with pytest.raises(openai.RateLimitError):
            client.chat.completions.create(model="m", messages=MSGS, extra_headers={"x-mock-status": "429"})


def test_anthropic_stream_through_uvicorn(uvicorn_url: str) -> None:
    with anthropic.Anthropic(base_url=uvicorn_url + "/anthropic", api_key="k", max_retries=0) as client:
        with client.messages.stream(model="claude-sonnet-4-6", max_tokens=32, messages=MSGS) as stream:
            assert "".join(stream.text_stream)


def test_errors_in_openai_shape_through_uvicorn(uvicorn_url: str) -> None:
    with openai.OpenAI(base_url=uvicorn_url + "/nowhere", api_key="sk-test", max_retries=0) as client:
        with pytest.raises(openai.NotFoundError) as info:
            client.chat.completions.create(model="m", messages=MSGS)
    assert info.value.body["type"] == "not_found_error"  # type: ignore[index]
