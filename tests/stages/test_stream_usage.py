"""Which requests get ``stream_options.include_usage`` injected: the test in front of the JSON parse."""

from __future__ import annotations

import time

import pytest

from fastgw.app import context_from_raw
from fastgw.config import ProviderConfig
from fastgw.providers.table import Provider
from fastgw.stages.stream_usage import wants_injection

OPENAI = Provider.from_config("openai", ProviderConfig(base_url="https://o.test"))
ANTHROPIC = Provider.from_config("anthropic", ProviderConfig(base_url="https://a.test", format="anthropic"))
STREAM = b'{"model":"gpt-4o-mini","messages":[],"stream":true}'


@pytest.mark.parametrize(("provider", "method", "path", "body", "expected"), [
    (OPENAI, b"POST", b"/v1/chat/completions", STREAM, True),
    (OPENAI, b"POST", b"/v1/chat/completions?api-version=1", STREAM, True),
    (OPENAI, b"POST", b"/openai/deployments/d/chat/completions?x=/y", STREAM, True),
    (OPENAI, b"POST", b"/v1/x?next=/chat/completions", STREAM, False),  # only the query ends so
    (OPENAI, b"POST", b"/v1/chat/completions", b'{"model":"gpt-4o-mini","messages":[]}', False),
    (OPENAI, b"POST", b"/v1/chat/completions", b'{"messages":[{"content":"a stream of"}]}', False),
    (OPENAI, b"POST", b"/v1/chat/completions", b'{"messages":[{"content":"stream"}]}', True),  # the parse decides
    (OPENAI, b"POST", b"/v1/chat/completions", b'{"stream" :true}', True),
    (OPENAI, b"POST", b"/v1/embeddings", STREAM, False),
    (OPENAI, b"GET", b"/v1/chat/completions", STREAM, False),
    (ANTHROPIC, b"POST", b"/v1/chat/completions", STREAM, False),
    (None, b"POST", b"/v1/chat/completions", STREAM, False),
])
def test_wants_injection(provider, method, path, body, expected) -> None:  # type: ignore[no-untyped-def]
    ctx = context_from_raw(method, b"/v1/chat/completions", [(b"host", b"h")], body, time.perf_counter_ns())
    ctx.provider, ctx.upstream_path = provider, path
    assert wants_injection(ctx) is expected
