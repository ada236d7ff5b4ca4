"""Helicone-Fallbacks: the JSON shape, onCodes with ranges, header and body overrides."""

from __future__ import annotations

import orjson
import pytest

from fastgw.errors import InvalidHeader
from fastgw.routing.fallbacks import override_body, parse_fallbacks, with_headers


def test_parses_helicones_shape() -> None:
    raw = orjson.dumps([
        {"target-url": "https://a.example", "headers": {"Authorization": "Bearer a"},
         "onCodes": [429, {"from": 500, "to": 599}]},
        {"target-url": "https://b.example", "headers": {}, "onCodes": [], "bodyKeyOverride": {"model": "m2"}},
    ]).decode()
    first, second = parse_fallbacks(raw)
    assert first.target_url == "https://a.example" and first.headers == (("Authorization", "Bearer a"),)
    assert first.falls_back_on(429) and first.falls_back_on(500) and first.falls_back_on(599)
    assert not first.falls_back_on(400) and not first.falls_back_on(200) and not first.falls_back_on(428)
    assert second.body_override == {"model": "m2"} and not second.falls_back_on(500)


@pytest.mark.parametrize("raw,needle", [
    ("not json", "JSON list"),
    ("[]", "non-empty"),
    ('{"target-url": "x"}', "non-empty"),
    ('[{"headers": {}}]', "target-url"),
    ('[{"target-url": "https://a", "onCodes": [99]}]', "onCodes"),
    ('[{"target-url": "https://a", "onCodes": [{"from": 600, "to": 700}]}]', "onCodes"),
    ('[{"target-url": "https://a", "onCodes": [{"from": 500, "to": 400}]}]', "onCodes"),
    ('[{"target-url": "https://a", "headers": {"x": 1}}]', "headers"),
    ('[{"target-url": "https://a", "headers": {"bad name": "v"}}]', "invalid header"),
    ('[{"target-url": "https://a", "headers": {"x": "a\\r\\nb: c"}}]', "invalid header"),
    ('[{"target-url": "https://a", "bodyKeyOverride": [1]}]', "bodyKeyOverride"),
])
def test_bad_headers_are_400s_that_say_what_is_wrong(raw: str, needle: str) -> None:
    with pytest.raises(InvalidHeader) as info:
        parse_fallbacks(raw)
    assert needle in info.value.message and "Helicone-Fallbacks" in info.value.message


def test_body_override_merges_objects_and_replaces_the_rest() -> None:
    body = orjson.dumps({"model": "a", "metadata": {"x": 1, "y": 2}, "messages": [1]})
    out = orjson.loads(override_body(body, {"model": "b", "metadata": {"y": 3}, "messages": []}))
    assert out == {"model": "b", "metadata": {"x": 1, "y": 3}, "messages": []}
    with pytest.raises(InvalidHeader):
        override_body(b"[1]", {"model": "b"})


def test_entry_headers_replace_the_requests_in_any_case() -> None:
    raw = [(b"Authorization", b"Bearer client"), (b"X-Keep", b"1")]
    out = with_headers(raw, (("authorization", "Bearer entry"),))
    assert out == [(b"X-Keep", b"1"), (b"authorization", b"Bearer entry")]
    assert with_headers(raw, ()) is raw
