"""resolve_unified: which requests on /v1/chat/completions are the unified API, decided from the body."""

from __future__ import annotations

import pytest

from fastgw import config
from fastgw._native import headers as native_headers
from fastgw.context import RequestContext
from fastgw.providers.table import build_table
from fastgw.stages.route import resolve_unified

PROVIDERS = {name.encode(): p for name, p in build_table(config.load(None, env={})).items()}


def ctx(body: bytes) -> RequestContext:
    return RequestContext(b"POST", b"/v1/chat/completions", native_headers.parse_headers([]), body, 0)


@pytest.mark.parametrize(("body", "provider", "model", "path"), [
    (b'{"model":"anthropic/claude-sonnet-4-5","messages":[]}', "anthropic", "claude-sonnet-4-5", b"/v1/chat/completions"),
    (b'{"messages":[{"role":"user","content":"model"}], "model" : "groq/llama-3.1-8b-instant"}', "groq",
     "llama-3.1-8b-instant", b"/openai/v1/chat/completions"),
    (b'{"model":"openrouter/meta-llama/llama-3-8b","messages":[]}', "openrouter", "meta-llama/llama-3-8b",
     b"/api/v1/chat/completions"),
    (b'{"model":"perplexity/sonar","messages":[]}', "perplexity", "sonar", b"/chat/completions"),
    # A "model" key whose value is not a string (a tool schema's property) is skipped.
    (b'{"tools":[{"parameters":{"properties":{"model":{"type":"string"}}}}],"model":"gemini/gemini-2.5-flash"}',
     "gemini", "gemini-2.5-flash", b"/v1/chat/completions"),
])
def test_unified(body: bytes, provider: str, model: str, path: bytes) -> None:
    c = ctx(body)
    p = resolve_unified(c, PROVIDERS)
    assert p is not None and p.name == provider
    assert c.model_override == model and c.upstream_path == path and c.unified is not None


@pytest.mark.parametrize("body", [
    b'{"model":"gpt-4o-mini","messages":[]}',
    b'{"model":"meta-llama/Llama-3-8b","messages":[]}',
    b'{"model":"anthropic/claude", "messages": [',  # not JSON: the default provider answers it
    b'{"tools":[{"model":"anthropic/x"}],"model":"gpt-4o"}',  # only a nested value has the prefix
    # The documented limit: a nested string-valued "model" found first, without a provider prefix.
    b'{"metadata":{"model":"x/y"},"messages":[],"model":"gemini/gemini-2.5-flash","user":"u"}',
    b'{"messages":[]}',
    b"",
])
def test_not_unified(body: bytes) -> None:
    c = ctx(body)
    assert resolve_unified(c, PROVIDERS) is None
    assert c.unified is None and c.model_override is None
