"""Azure OpenAI end to end: the official ``AzureOpenAI`` client (pass-through) and ``OpenAI`` client
(unified API, ``azure/<deployment>``) -> a real gateway -> the mock's Azure deployment endpoint,
which insists on ``api-version`` and the right ``api-key``."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest

from fastgw.testing.mock_bedrock_azure import MOCK_AZURE_API_KEY
from fastgw.testing.mock_payloads import content_pieces
from fastgw.testing.mock_upstream import MockUpstreamThread
from tests.helpers import GatewayProcess, gateway_config, sdk

TEXT = "".join(content_pieces(3))
HI = [{"role": "user", "content": "hi"}]


@pytest.fixture(scope="module")
def up() -> Iterator[MockUpstreamThread]:
    with MockUpstreamThread(chunks=3) as m:
        yield m


def _config(up: MockUpstreamThread) -> dict[str, Any]:
    return gateway_config(up.url, providers={
        "azure": {"base_url": up.url, "format": "azure", "api_version": "2024-06-01"},
        "azure-keyed": {"base_url": up.url, "format": "azure", "api_key": MOCK_AZURE_API_KEY},
    })


@pytest.fixture(scope="module")
def gw(up: MockUpstreamThread, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    g = GatewayProcess(_config(up), tmp_path_factory.mktemp("azure"))
    yield g
    assert g.stop() == 0, g.log()


def last(up: MockUpstreamThread) -> Any:
    return up.mock.requests[-1]


def azure_client(gw: GatewayProcess, prefix: str, key: str) -> openai.AzureOpenAI:
    return sdk(openai.AzureOpenAI(azure_endpoint=f"{gw.url}/{prefix}", api_key=key, api_version="2024-10-21",
                                  max_retries=0, timeout=10))


# --- pass-through ----------------------------------------------------------------------------


def test_passthrough_with_the_clients_key(gw: GatewayProcess, up: MockUpstreamThread) -> None:
    c = azure_client(gw, "azure", MOCK_AZURE_API_KEY)
    r = c.chat.completions.create(model="gpt4o-prod", messages=HI)
    assert r.choices[0].message.content == TEXT and r.model == "gpt4o-prod"
    req = last(up)
    assert req.path == "/openai/deployments/gpt4o-prod/chat/completions?api-version=2024-10-21"
    assert [v for n, v in req.headers if n == "api-key"] == [MOCK_AZURE_API_KEY]


def test_passthrough_stream(gw: GatewayProcess, up: MockUpstreamThread) -> None:
    c = azure_client(gw, "azure", MOCK_AZURE_API_KEY)
    chunks = list(c.chat.completions.create(model="gpt4o-prod", messages=HI, stream=True))
    assert "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices) == TEXT
    assert chunks[0].prompt_filter_results is not None  # Azure's own first chunk came through untouched


def test_passthrough_configured_key_replaces_the_clients(gw: GatewayProcess, up: MockUpstreamThread) -> None:
    c = azure_client(gw, "azure-keyed", "client-key-that-must-not-leave")
    r = c.chat.completions.create(model="gpt4o-prod", messages=HI)
    assert r.choices[0].message.content == TEXT
    req = last(up)
    assert [v for n, v in req.headers if n == "api-key"] == [MOCK_AZURE_API_KEY]
    assert all("client-key-that-must-not-leave" not in v for _, v in req.headers)


def test_passthrough_wrong_key_gets_azures_401(gw: GatewayProcess) -> None:
    c = azure_client(gw, "azure", "wrong-key")
    with pytest.raises(openai.AuthenticationError) as info:
        c.chat.completions.create(model="gpt4o-prod", messages=HI)
    assert "Access denied due to invalid subscription key" in info.value.message


def test_passthrough_without_api_version_gets_the_configured_one(gw: GatewayProcess, up: MockUpstreamThread) -> None:
    req = urllib.request.Request(f"{gw.url}/azure/openai/deployments/gpt4o-prod/chat/completions",
                                 data=json.dumps({"messages": HI}).encode(), method="POST",
                                 headers={"content-type": "application/json", "api-key": MOCK_AZURE_API_KEY})
    with urllib.request.urlopen(req, timeout=10) as resp:
        assert resp.status == 200 and json.loads(resp.read())["choices"][0]["message"]["content"] == TEXT
    assert last(up).path == "/openai/deployments/gpt4o-prod/chat/completions?api-version=2024-06-01"


# --- the unified API -------------------------------------------------------------------------


@pytest.fixture
def client(gw: GatewayProcess) -> Iterator[openai.OpenAI]:
    c = openai.OpenAI(base_url=gw.url + "/v1", api_key=MOCK_AZURE_API_KEY, max_retries=0, timeout=10)
    yield c
    c.close()


def test_unified_sends_the_bearer_key_as_api_key(client: openai.OpenAI, up: MockUpstreamThread) -> None:
    r = client.chat.completions.create(model="azure/gpt4o-prod", messages=HI, temperature=0.5)
    assert r.choices[0].message.content == TEXT and r.usage is not None
    req = last(up)
    assert req.path == "/openai/deployments/gpt4o-prod/chat/completions?api-version=2024-06-01"
    assert req.header("api-key") == MOCK_AZURE_API_KEY and req.header("authorization") is None
    assert req.json() == {"model": "gpt4o-prod", "messages": HI, "temperature": 0.5}


@pytest.mark.parametrize("include_usage", [False, True])
def test_unified_stream_usage_only_when_asked(client: openai.OpenAI, up: MockUpstreamThread, include_usage: bool) -> None:
    kwargs: dict[str, Any] = {"stream_options": {"include_usage": True}} if include_usage else {}
    chunks = list(client.chat.completions.create(model="azure/gpt4o-prod", messages=HI, stream=True, **kwargs))
    assert "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices) == TEXT
    assert last(up).json()["stream_options"] == {"include_usage": True}  # asked upstream either way, for the log
    usage = [ch.usage for ch in chunks if ch.usage is not None]
    assert (len(usage) == 1 and usage[0].completion_tokens == 3) if include_usage else usage == []


def test_unified_error_in_openai_shape(gw: GatewayProcess) -> None:
    c = sdk(openai.OpenAI(base_url=gw.url + "/v1", api_key="wrong-key", max_retries=0, timeout=10))
    with pytest.raises(openai.AuthenticationError) as info:
        c.chat.completions.create(model="azure/gpt4o-prod", messages=HI)
    assert info.value.body["type"] == "authentication_error" and info.value.body["code"] == "401"
    assert info.value.body["message"].startswith("Access denied")


def test_api_keys_are_redacted_in_the_request_log(up: MockUpstreamThread, tmp_path: Path) -> None:
    g = GatewayProcess(_config(up), tmp_path)
    try:
        azure_client(g, "azure", MOCK_AZURE_API_KEY).chat.completions.create(model="gpt4o-prod", messages=HI)
        sdk(openai.OpenAI(base_url=g.url + "/v1", api_key=MOCK_AZURE_API_KEY, max_retries=0)).chat.completions.create(
                model="azure/gpt4o-prod", messages=HI)
    finally:
        assert g.stop() == 0, g.log()
    rows = [json.loads(line) for f in sorted((g.log_dir / "sink").rglob("*.jsonl")) for line in f.read_text().splitlines()]
    assert len(rows) == 2
    rows.sort(key=lambda r: r["created_at"])
    dump = json.dumps(rows)
    assert MOCK_AZURE_API_KEY not in dump
    assert rows[0]["request_headers"]["api-key"] == "[redacted]"  # pass-through: the client's api-key header
    assert rows[1]["request_headers"]["authorization"] == "[redacted]"  # unified: its bearer, sent as api-key


def test_gateway_keys_get_their_granted_azure_key_and_are_never_forwarded(
        up: MockUpstreamThread, tmp_path: Path) -> None:
    cfg = _config(up)
    cfg.update(keys={"backend": f"sqlite://{tmp_path}/keys.db", "cache_ttl": 0.5},
               credentials={"azure-team": {"provider": "azure", "api_key": MOCK_AZURE_API_KEY}})
    g = GatewayProcess(cfg, tmp_path)

    def create(*args: str) -> str:
        out = subprocess.run([sys.executable, "-m", "fastgw", "keys", "create", *args, "--config", str(g.config_path)],
                             check=True, capture_output=True, text=True, timeout=30)
        return out.stdout.strip()

    try:
        granted = create("--name", "granted", "--credential", "azure-team")
        bare = create("--name", "bare")
        assert granted.startswith("fgw-") and bare.startswith("fgw-")
        unified = sdk(openai.OpenAI(base_url=g.url + "/v1", api_key=granted, max_retries=0, timeout=10))
        assert unified.chat.completions.create(model="azure/gpt4o-prod", messages=HI).choices[0].message.content == TEXT
        # the AzureOpenAI SDK with the gateway key as its bearer token (azure_ad_token)
        passthrough = sdk(openai.AzureOpenAI(azure_endpoint=f"{g.url}/azure", azure_ad_token=granted,
                                             api_version="2024-10-21", max_retries=0, timeout=10))
        assert passthrough.chat.completions.create(model="gpt4o-prod", messages=HI).choices[0].message.content == TEXT
        for sent in list(up.mock.requests)[-2:]:
            assert sent.header("api-key") == MOCK_AZURE_API_KEY and sent.header("authorization") is None
            assert not any("fgw-" in v for _, v in sent.headers)
        before = up.mock.request_count
        with pytest.raises(openai.PermissionDeniedError, match="has no credential for provider 'azure'"):
            sdk(openai.AzureOpenAI(azure_endpoint=f"{g.url}/azure", azure_ad_token=bare, api_version="2024-10-21",
                                   max_retries=0)).chat.completions.create(model="gpt4o-prod", messages=HI)
        with pytest.raises(openai.PermissionDeniedError, match="has no credential for provider 'azure'"):
            sdk(openai.OpenAI(base_url=g.url + "/v1", api_key=bare, max_retries=0)).chat.completions.create(
                    model="azure/gpt4o-prod", messages=HI)
        assert up.mock.request_count == before  # refused by the gateway: nothing sent without a credential
    finally:
        assert g.stop() == 0, g.log()


def test_configured_key_replacement_on_the_pure_header_parser(up: MockUpstreamThread, tmp_path: Path) -> None:
    """The same forwarded-header surgery with the pure-Python twin of the header parser."""
    g = GatewayProcess(_config(up), tmp_path, pure=True)
    try:
        r = azure_client(g, "azure-keyed", "client-key-that-must-not-leave").chat.completions.create(
            model="gpt4o-prod", messages=HI)
        assert r.choices[0].message.content == TEXT
        sent = last(up)
        assert [v for n, v in sent.headers if n == "api-key"] == [MOCK_AZURE_API_KEY]
        assert all("client-key-that-must-not-leave" not in v for _, v in sent.headers)
    finally:
        assert g.stop() == 0, g.log()
