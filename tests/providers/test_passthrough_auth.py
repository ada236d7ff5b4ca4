"""Pass-through ``/{provider}/...`` for every catalog provider: the real path prefix and auth scheme
reach the upstream (the mock records each request as received)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest

from fastgw.providers.catalog import CATALOG
from fastgw.testing.mock_upstream import MockUpstreamThread
from tests.helpers import GatewayProcess, gateway_config

OPENAI_COMPATIBLE = [name for name, spec in CATALOG.items() if spec["format"] == "openai"]


@pytest.fixture(scope="module")
def up() -> Iterator[MockUpstreamThread]:
    with MockUpstreamThread() as m:
        yield m


@pytest.fixture(scope="module")
def gw(up: MockUpstreamThread, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    # Each provider at the mock, keeping the catalog's own path prefix (/openai for Groq, ...).
    providers: dict[str, Any] = {name: {"base_url": up.url + urlsplit(spec["base_url"]).path}
                                 for name, spec in CATALOG.items()}
    providers["gemini-keyed"] = {"base_url": up.url, "format": "gemini", "api_key": "AIza-configured"}
    providers["groq-keyed"] = {"base_url": up.url + "/openai", "api_key": "gsk-configured"}
    providers["myvllm"] = {"base_url": up.url + "/vllm", "format": "openai"}
    g = GatewayProcess(gateway_config(up.url, providers=providers), tmp_path_factory.mktemp("passthrough"))
    yield g
    assert g.stop() == 0, g.log()


def send(gw: GatewayProcess, path: str, headers: dict[str, str], body: bytes = b'{"model":"m","messages":[]}') -> int:
    req = urllib.request.Request(gw.url + path, data=body, headers={"content-type": "application/json", **headers})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return int(r.status)
    except urllib.error.HTTPError as e:
        with e:  # the mock's 404 for a prefix it doesn't serve: the request is recorded all the same
            return int(e.code)


@pytest.mark.parametrize("name", OPENAI_COMPATIBLE)
def test_openai_compatible_bearer_and_prefix(gw: GatewayProcess, up: MockUpstreamThread, name: str) -> None:
    chat = CATALOG[name].get("chat_path", "/v1/chat/completions")
    send(gw, f"/{name}{chat}", {"authorization": f"Bearer key-{name}"})
    sent = up.mock.requests[-1]
    assert sent.path == urlsplit(CATALOG[name]["base_url"]).path + chat
    assert sent.header("authorization") == f"Bearer key-{name}"


def test_groq_real_prefix(gw: GatewayProcess, up: MockUpstreamThread) -> None:
    send(gw, "/groq/v1/chat/completions", {"authorization": "Bearer gsk-client"})
    assert up.mock.requests[-1].path == "/openai/v1/chat/completions"


def test_configured_key_replaces_the_clients(gw: GatewayProcess, up: MockUpstreamThread) -> None:
    send(gw, "/groq-keyed/v1/chat/completions", {"authorization": "Bearer gsk-client"})
    assert [v for k, v in up.mock.requests[-1].headers if k == "authorization"] == ["Bearer gsk-configured"]


def test_anthropic_x_api_key(gw: GatewayProcess, up: MockUpstreamThread) -> None:
    status = send(gw, "/anthropic/v1/messages", {"x-api-key": "sk-ant", "anthropic-version": "2023-06-01"},
                  b'{"model":"claude-haiku-4-5","max_tokens":5,"messages":[{"role":"user","content":"hi"}]}')
    sent = up.mock.requests[-1]
    assert status == 200 and sent.path == "/v1/messages"
    assert sent.header("x-api-key") == "sk-ant" and sent.header("anthropic-version") == "2023-06-01"


def test_gemini_key_in_query(gw: GatewayProcess, up: MockUpstreamThread) -> None:
    body = b'{"contents":[{"role":"user","parts":[{"text":"hi"}]}]}'
    status = send(gw, "/gemini/v1beta/models/gemini-2.5-flash:generateContent?key=AIza-query", {}, body)
    sent = up.mock.requests[-1]
    assert status == 200 and sent.path == "/v1beta/models/gemini-2.5-flash:generateContent?key=AIza-query"


def test_gemini_key_header_and_native_answer(gw: GatewayProcess, up: MockUpstreamThread) -> None:
    body = b'{"contents":[{"role":"user","parts":[{"text":"hi"}]}]}'
    req = urllib.request.Request(gw.url + "/gemini/v1beta/models/gemini-2.5-flash:generateContent", data=body,
                                 headers={"content-type": "application/json", "x-goog-api-key": "AIza-header"})
    with urllib.request.urlopen(req, timeout=10) as r:
        answer = json.loads(r.read())
    assert up.mock.requests[-1].header("x-goog-api-key") == "AIza-header"
    assert answer["candidates"][0]["content"]["parts"][0]["text"] == "Hello from the mock upstream"


def test_gemini_configured_key_injected(gw: GatewayProcess, up: MockUpstreamThread) -> None:
    send(gw, "/gemini-keyed/v1beta/models/gemini-2.5-flash:generateContent", {},
         b'{"contents":[{"role":"user","parts":[{"text":"hi"}]}]}')
    assert up.mock.requests[-1].header("x-goog-api-key") == "AIza-configured"


@pytest.mark.parametrize("pure", [False, True])
def test_gemini_configured_key_replaces_the_clients_header_and_query_key(
        up: MockUpstreamThread, tmp_path: Any, pure: bool) -> None:
    """Google sees one key, the gateway's: the client's x-goog-api-key and ?key= are removed."""
    g = GatewayProcess(gateway_config(up.url, providers={
        "gemini": {"base_url": up.url, "format": "gemini", "api_key": "AIza-configured"}}), tmp_path, pure=pure)
    try:
        path = "/gemini/v1beta/models/gemini-2.5-flash:streamGenerateContent?key=AIza-client&alt=sse"
        assert send(g, path, {"x-goog-api-key": "AIza-client-header"},
                    b'{"contents":[{"role":"user","parts":[{"text":"hi"}]}]}') == 200
        sent = up.mock.requests[-1]
        assert [v for k, v in sent.headers if k == "x-goog-api-key"] == ["AIza-configured"]
        assert sent.path == "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse"
    finally:
        assert g.stop() == 0, g.log()


def test_config_declared_openai_compatible_server(gw: GatewayProcess, up: MockUpstreamThread) -> None:
    send(gw, "/myvllm/v1/chat/completions", {"authorization": "Bearer local"})
    sent = up.mock.requests[-1]
    assert sent.path == "/vllm/v1/chat/completions" and sent.header("authorization") == "Bearer local"


def test_a_gateway_key_where_googles_key_goes_is_refused_not_forwarded(
        gw: GatewayProcess, up: MockUpstreamThread) -> None:
    """Without a principal (auth off), an fgw- key in x-goog-api-key or ?key= would reach Google."""
    body = b'{"contents":[{"role":"user","parts":[{"text":"hi"}]}]}'
    before = len(up.mock.requests)
    fake = "fgw-" + "k" * 43
    assert send(gw, "/gemini/v1beta/models/gemini-2.5-flash:generateContent", {"x-goog-api-key": fake}, body) == 401
    assert send(gw, f"/gemini/v1beta/models/gemini-2.5-flash:generateContent?key={fake}", {}, body) == 401
    assert send(gw, "/openai/v1/chat/completions", {"authorization": fake}) == 401  # bare, no scheme: still ours
    assert len(up.mock.requests) == before
