"""Which requests get ``stream_options.include_usage`` injected (the test in front of the JSON parse,
then the parse), and the body and headers the upstream gets when they do."""

from __future__ import annotations

import json
import time

import pytest

from fastgw.app import context_from_raw
from fastgw.config import ProviderConfig, load
from fastgw.providers.table import Provider
from fastgw.stages.stream_usage import identity_encoding, injected_body, wants_injection

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


# --- the body the upstream gets ---------------------------------------------------------------

BIG = b'"tools":[{"type":"function","function":{"name":"f","parameters":{"maximum":123456789012345678901234567890}}}]'


SPLICED = b',"stream_options":{"include_usage":true}'


@pytest.mark.parametrize(("body", "expected"), [
    (STREAM, STREAM[:-1] + SPLICED + b"}"),
    (b'{\n  "model" : "m",\n  "stream" : true,\n  "top_p": 0.1000000000000000055511151231257827\n}\n',
     b'{\n  "model" : "m",\n  "stream" : true,\n  "top_p": 0.1000000000000000055511151231257827\n' + SPLICED + b'}\n'),
    (b'{"stream":true,"messages":[{"content":"caf\\u00e9 \\ud83d\\ude00 }"}],' + BIG + b'}',
     b'{"stream":true,"messages":[{"content":"caf\\u00e9 \\ud83d\\ude00 }"}],' + BIG + SPLICED + b'}'),
])
def test_absent_stream_options_are_spliced_in_and_every_other_byte_kept(body: bytes, expected: bytes) -> None:
    assert injected_body(body) == expected


@pytest.mark.parametrize(("options", "expected"), [
    (b"null", {"include_usage": True}),
    (b'{"include_usage":false}', {"include_usage": True}),
    (b"{}", {"include_usage": True}),
    (b'{"include_obfuscation":false}', {"include_obfuscation": False, "include_usage": True}),
])
def test_options_to_change_keep_big_integers_exact(options: bytes, expected: dict) -> None:  # type: ignore[type-arg]
    body = b'{"model":"m","stream":true,"stream_options":' + options + b"," + BIG + b"}"
    out = injected_body(body)
    assert out is not None and json.loads(out) == {**json.loads(body), "stream_options": expected}
    assert b"123456789012345678901234567890" in out


@pytest.mark.parametrize("options", [b"true", b'"x"', b"5", b"[]", b'{"include_usage":true}',
                                     b'{"include_usage":"true"}', b'{"include_usage":1}', b'{"include_usage":null}'])
def test_anything_else_goes_as_the_client_sent_it(options: bytes) -> None:
    """include_usage already on, or a value the provider judges itself: no injection, no filter."""
    assert injected_body(b'{"model":"m","stream":true,"stream_options":' + options + b"}") is None


@pytest.mark.parametrize("body", [b'{"stream":false}', b"[1]", b'{"stream":"true"}', b"{bad", b'{"stream":true}x'])
def test_no_stream_or_no_object_is_left_alone(body: bytes) -> None:
    assert injected_body(body) is None


def test_identity_encoding_replaces_only_the_accept_encoding_line() -> None:
    forward = b"accept: */*\r\naccept-encoding: gzip, br\r\nx-note: accept-encoding: gzip\r\n"
    assert identity_encoding(forward) == b"accept: */*\r\nx-note: accept-encoding: gzip\r\naccept-encoding: identity\r\n"
    assert identity_encoding(b"") == b"accept-encoding: identity\r\n"


def test_the_catalog_never_asks_mistral() -> None:
    assert load(env={}).providers["mistral"].stream_usage is False
    assert load(env={}).providers["groq"].stream_usage is True
    mistral = Provider.from_config("mistral", load(env={}).providers["mistral"])
    ctx = context_from_raw(b"POST", b"/v1/chat/completions", [(b"host", b"h")], STREAM, time.perf_counter_ns())
    ctx.provider, ctx.upstream_path = mistral, b"/v1/chat/completions"
    assert wants_injection(ctx) is False
