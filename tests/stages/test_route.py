"""The Helicone-Target-Url allowlist: parsed parts, so no string trick turns it into an open proxy."""

from __future__ import annotations

import pytest

from fastgw.providers.table import parse_base_url
from fastgw.stages.route import TargetAllowlist

ALLOW = TargetAllowlist(("https://*.groq.com", "http://127.0.0.1:*", "https://api.together.xyz/v1"))


@pytest.mark.parametrize(
    ("url", "allowed"),
    [
        ("https://api.groq.com", True),
        ("https://a.b.groq.com/openai", True),
        ("https://groq.com", False),  # *. means a subdomain
        ("https://evil.com/x.groq.com", False),  # a wildcard never reaches past the host
        ("http://api.groq.com", False),  # scheme must match
        ("https://api.groq.com.evil.com", False),
        ("http://127.0.0.1:9", True),
        ("http://127.0.0.2:9", False),
        ("https://api.together.xyz/v1", True),
        ("https://api.together.xyz/v1/chat", True),
        ("https://api.together.xyz/v10", False),  # path prefixes end on a segment boundary
        ("https://api.together.xyz", False),
        ("https://api.together.xyz:8443/v1", False),  # the default port is implied
    ],
)
def test_allowlist(url: str, allowed: bool) -> None:
    origin, path = parse_base_url(url)
    assert ALLOW.allows(origin, path) is allowed
