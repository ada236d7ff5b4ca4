"""The unified API with the stages around it: the cache replays a translated stream, a route falls
back across wire formats, and a gateway key's granted credential (never the key) reaches Anthropic
in Anthropic's scheme, with the translated answer charged to the key."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import openai
import pytest

from fastgw.testing.mock_upstream import MockUpstreamThread
from tests.helpers import GatewayProcess, gateway_config, sdk

CHAT = [{"role": "user", "content": "hello there"}]


@pytest.fixture
def up() -> Iterator[MockUpstreamThread]:
    with MockUpstreamThread(chunks=4) as m:
        yield m


def test_cache_replays_a_translated_stream(start_gateway: Callable[..., GatewayProcess], up: MockUpstreamThread) -> None:
    gw = start_gateway(gateway_config(up.url, providers={"anthropic": {"base_url": up.url, "format": "anthropic"}}))
    up.mock.chunk_delay_ms = 5  # so the answer streams through the gateway rather than arriving whole
    c = sdk(openai.OpenAI(base_url=gw.url + "/v1", api_key="sk-a", max_retries=0,
                          default_headers={"helicone-cache-enabled": "true"}))
    seen = []
    for _ in range(2):
        with c.chat.completions.with_streaming_response.create(
                model="anthropic/claude-sonnet-4-5", stream=True, messages=CHAT) as s:
            body = "".join(s.iter_lines())
            seen.append((s.headers.get("helicone-cache"), body))
        time.sleep(0.2)  # the first answer is stored once its stream has ended
    assert [h for h, _ in seen] == ["MISS", "HIT"]
    assert up.mock.request_count == 1 and "chat.completion.chunk" in seen[1][1] and seen[1][1].endswith("[DONE]")


def test_route_falls_back_across_formats(start_gateway: Callable[..., GatewayProcess], up: MockUpstreamThread) -> None:
    gw = start_gateway(gateway_config(up.url, routes={"smart": {"targets": [
        {"provider": "anthropic", "model": "claude-haiku-4-5"}, {"provider": "openai", "model": "gpt-4o-mini"}]}}))
    c = sdk(openai.OpenAI(base_url=gw.url + "/v1", api_key="sk-a", max_retries=0))
    r = c.chat.completions.with_raw_response.create(model="smart", messages=CHAT)
    assert r.parse().object == "chat.completion" and r.headers["helicone-fallback-index"] == "0"
    assert up.mock.requests[-1].path == "/v1/messages" and up.mock.requests[-1].json()["model"] == "claude-haiku-4-5"
    up.mock.fail_first, up.mock.fail_status = up.mock.request_count + 1, 529  # the next one: Anthropic overloaded
    r = c.chat.completions.with_raw_response.create(model="smart", messages=CHAT)
    assert r.headers["helicone-fallback-index"] == "1" and r.parse().model == "gpt-4o-mini"
    first, second = list(up.mock.requests)[-2:]
    assert first.path == "/v1/messages" and second.path == "/v1/chat/completions"
    assert second.json()["model"] == "gpt-4o-mini" and "max_tokens" not in second.json()
    up.mock.fail_first = 0
    chunks = list(c.chat.completions.create(model="smart", messages=CHAT, stream=True))
    assert "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices) == "Hello from the mock"


def test_gateway_key_credential_in_anthropics_scheme(start_gateway: Callable[..., GatewayProcess],
                                                     up: MockUpstreamThread, tmp_path: Path) -> None:
    gw = start_gateway(gateway_config(
        up.url, keys={"backend": f"sqlite://{tmp_path}/keys.db", "cache_ttl": 0.5},
        credentials={"team-anthropic": {"provider": "anthropic", "api_key": "sk-ant-granted"}}))

    def cli(*args: str) -> str:
        out = subprocess.run([sys.executable, "-m", "fastgw", "keys", *args, "--config", str(gw.config_path)],
                             check=True, capture_output=True, text=True, timeout=30)
        return out.stdout.strip()

    key = cli("create", "--name", "u", "--model", "anthropic/*", "--budget-total", "100", "--credential", "team-anthropic")
    c = sdk(openai.OpenAI(base_url=gw.url + "/v1", api_key=key, max_retries=0))
    c.chat.completions.create(model="anthropic/claude-sonnet-4-5", messages=CHAT)
    list(c.chat.completions.create(model="anthropic/claude-sonnet-4-5", messages=CHAT, stream=True))
    for sent in list(up.mock.requests)[-2:]:
        assert sent.header("x-api-key") == "sk-ant-granted" and sent.header("authorization") is None
        assert not any("fgw-" in v for _, v in sent.headers)
    deadline = time.monotonic() + 5
    spent = 0.0
    while time.monotonic() < deadline and not spent:
        spent = {r["name"]: r for r in json.loads(cli("list", "--json"))}["u"]["spend_usd"]["total"]
        time.sleep(0.2)
    assert spent > 0  # both translated answers were priced from the provider's usage and charged
