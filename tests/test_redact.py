"""Credentials inside URLs: the query rule (and its cheap precheck) and userinfo."""

from __future__ import annotations

import pytest

from fastgw.redact import _HINTS, _NAME_PARTS, _NAMES, redact_query, redact_url


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
])
def test_urls_lose_userinfo_and_credential_query_values(url: str, shown: str) -> None:
    assert redact_url(url) == shown
