"""Credentials inside URLs: the query rule (and its cheap precheck) and userinfo."""

from __future__ import annotations

import pytest

from fastgw.redact import _HINTS, _NAME_PARTS, _NAMES, redact_query, redact_target, redact_url


@pytest.mark.parametrize(("target", "logged"), [
    (b"/v1/chat/completions", b"/v1/chat/completions"),
    (b"/g:streamGenerateContent?alt=sse", b"/g:streamGenerateContent?alt=sse"),
    (b"/g?key=S&alt=sse", b"/g?key=[redacted]&alt=sse"),
    (b"/v?KEY=S&Api_Key=S&api-key=S&apikey=S", b"/v?KEY=[redacted]&Api_Key=[redacted]&api-key=[redacted]&apikey=[redacted]"),
    (b"/v?access_token=S&Token=S&auth=S&client_secret=S", b"/v?access_token=[redacted]&Token=[redacted]&auth=[redacted]&client_secret=[redacted]"),
    (b"/v?X-Amz-Security-Token=S&sig=S&password=S&pwd=S", b"/v?X-Amz-Security-Token=[redacted]&sig=[redacted]&password=[redacted]&pwd=[redacted]"),
    (b"/v?k%65y=S&flag&a=1", b"/v?k%65y=[redacted]&flag&a=1"),  # a name is judged decoded
    (b"/v?a=1&key=S#frag", b"/v?a=1&key=[redacted]#frag"),
    (b"/v?keys_only", b"/v?keys_only"),  # no value, nothing to hide
    (b"/v?access_token=abc;def", b"/v?access_token=[redacted]"),  # a value runs to "&": its tail went
    (b"/v?a=1;key=S&b=2", b"/v?a=1;key=[redacted]&b=2"),  # ";" as a separator, as some servers read it
])
def test_credential_query_values_are_redacted_and_the_rest_kept(target: bytes, logged: bytes) -> None:
    assert redact_query(target) == logged


def test_the_precheck_covers_every_credential_name() -> None:
    """redact_query skips its regex unless a hint occurs: each name must contain one."""
    for name in (*_NAME_PARTS, *_NAMES):
        assert any(hint in name for hint in _HINTS), name


@pytest.mark.parametrize(("url", "shown"), [
    ("https://user:sk-S@api.example.com", "https://[redacted]@api.example.com"),
    ("https://api.example.com/?key=sk-S", "https://api.example.com/?key=[redacted]"),
    ("https://u:p/a@ss@h/x?a=1&access_token=sk-S", "https://[redacted]@h/x?a=1&access_token=[redacted]"),
    ("user:sk-S@host/path", "[redacted]@host/path"),  # no scheme: still userinfo
    ("https://[::1", "https://[::1"),  # unparseable: shown as it is, never an exception
    ("https://api.example.com/v1", "https://api.example.com/v1"),
    ("https://user:pa?ss@host/v1", "https://[redacted]@host/v1"),  # "?" or "#" in a password
    ("https://user:pa#ss@host/v1", "https://[redacted]@host/v1"),
    ("https://host/x?email=a@b.example", "https://host/x?email=a@b.example"),  # an "@" in the query alone
])
def test_urls_lose_userinfo_and_credential_query_values(url: str, shown: str) -> None:
    assert redact_url(url) == shown


@pytest.mark.parametrize(("target", "logged"), [
    (b"/v1/chat/completions?key=S", b"/v1/chat/completions?key=[redacted]"),
    # absolute form: the HTTP parser takes it, routing refuses it later, and the row logs it
    (b"http://alice:sk-S@gw.local/v1/../v1/chat/completions", b"http://[redacted]@gw.local/v1/../v1/chat/completions"),
    (b"http://gw.local/v1?key=S", b"http://gw.local/v1?key=[redacted]"),
])
def test_request_targets_lose_userinfo_in_absolute_form(target: bytes, logged: bytes) -> None:
    assert redact_target(target) == logged
