"""Policy parsing, the canonical text, and bucket keys."""

from __future__ import annotations

import pytest

from fastgw.ratelimit import (
    MissingSegment,
    Policy,
    PolicyError,
    parse_policy,
    segment_key,
)
from fastgw.ratelimit.policy import format_quota


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("10;w=60", Policy(10, 60, "request", None)),
        ("1000;w=3600;u=request", Policy(1000, 3600)),
        ("10.5;w=60", Policy(10.5, 60)),
        ("0.5;w=60;u=cents", Policy(0.5, 60, "cents")),
        ("500;w=86400;s=user", Policy(500, 86400, "request", "user")),
        ("300;w=1800;s=Feature", Policy(300, 1800, "request", "feature")),
        ("300;w=1800;u=cents;s=cost-center_2", Policy(300, 1800, "cents", "cost-center_2")),
        # Spaces around ; and =, names and unit values in any case, parameters in any order.
        ("  10 ; W = 60 ; U = CENTS ; S = USER ", Policy(10, 60, "cents", "user")),
        ("10;s=team;u=request;w=60", Policy(10, 60, "request", "team")),
        ("\t010.50;w=060", Policy(10.5, 60)),
        # The bounds on w are inclusive.
        ("1;w=60", Policy(1, 60)),
        ("1;w=31536000", Policy(1, 31536000)),
    ],
)
def test_valid(text: str, expected: Policy) -> None:
    assert parse_policy(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("10;w=59", "window w=59 is below the minimum of 60 seconds"),
        ("10;w=30", "window w=30 is below the minimum of 60 seconds"),
        ("10;w=31536001", "window w=31536001 is above the maximum of 31536000 seconds (365 days)"),
        ("10;w=1.5", "window w='1.5' is not a whole number of seconds"),
        ("10;w=-60", "window w='-60' is not a whole number of seconds"),
        ("10;u=cents", "the window w=seconds is missing"),
        ("10", "the window w=seconds is missing"),
        ("0;w=60", "quota 0 must be more than 0"),
        ("0.0;w=60", "quota 0 must be more than 0"),
        ("-1;w=60", "quota '-1' is not a number"),
        ("1e3;w=60", "quota '1e3' is not a number"),
        ("ten;w=60", "quota 'ten' is not a number"),
        (".5;w=60", "quota '.5' is not a number"),
        ("", "the policy is empty"),
        ("   ", "the policy is empty"),
        (";w=60", "the quota is missing"),
        ("10;w=60;u=requests", "unit u='requests' is not request or cents"),
        ("10;w=60;u=dollars", "unit u='dollars' is not request or cents"),
        ("10;w=60;s=a.b", "segment s='a.b' must be user or a property name"),
        ("10;w=60;x=1", "unknown parameter 'x' (expected w, u or s)"),
        ("10;w=60;window=60", "unknown parameter 'window'"),
        ("10;w=60;w=120", "parameter w is given more than once"),
        ("10;w=60;W=120", "parameter w is given more than once"),
        ("10;w=60;s=user;s=team", "parameter s is given more than once"),
        ("10;w=60;", "empty parameter"),
        ("10;;w=60", "empty parameter"),
        ("10;w", "parameter 'w' is not name=value"),
        ("10;w=", "parameter w has no value"),
    ],
)
def test_invalid(text: str, message: str) -> None:
    with pytest.raises(PolicyError) as info:
        parse_policy(text)
    assert str(info.value).startswith("Helicone-RateLimit-Policy: ")
    assert message in str(info.value)
    assert isinstance(info.value, ValueError)


def test_long_garbage_is_shortened_in_the_message() -> None:
    with pytest.raises(PolicyError) as info:
        parse_policy("x" * 10_000 + ";w=60")
    assert len(str(info.value)) < 200


def test_policy_built_in_code_is_held_to_the_same_bounds() -> None:
    with pytest.raises(PolicyError, match="below the minimum"):
        Policy(10, 59)
    with pytest.raises(PolicyError, match="more than 0"):
        Policy(-1, 60)
    with pytest.raises(PolicyError, match="not a finite number"):
        Policy(float("inf"), 60)
    with pytest.raises(PolicyError, match="not request or cents"):
        Policy(1, 60, "tokens")  # type: ignore[arg-type]
    with pytest.raises(PolicyError, match="lower-case property name"):
        Policy(1, 60, "request", "Team")
    with pytest.raises(PolicyError, match="whole number"):
        Policy(1, 60.5)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("text", "normalised"),
    [
        ("10;w=60", "10;w=60;u=request"),
        ("10.0;w=60", "10;w=60;u=request"),
        ("10.50 ; w=60 ; s=User", "10.5;w=60;u=request;s=user"),
        ("0.5;w=86400;u=CENTS;s=Team", "0.5;w=86400;u=cents;s=team"),
        ("0.00001;w=60", "0.00001;w=60;u=request"),
        ("12345678901234567890;w=60", "12345678901234567168;w=60;u=request"),  # the float it became
    ],
)
def test_normalised(text: str, normalised: str) -> None:
    policy = parse_policy(text)
    assert policy.normalised == normalised
    assert parse_policy(policy.normalised) == policy  # the canonical text reads back the same


def test_int_and_float_quotas_are_one_policy() -> None:
    assert Policy(10, 60) == Policy(10.0, 60)
    assert hash(Policy(10, 60)) == hash(Policy(10.0, 60))
    assert format_quota(2.5) == "2.5" and format_quota(3.0) == "3"


def test_parse_is_cached() -> None:
    assert parse_policy("7;w=120") is parse_policy("7;w=120")


# --- bucket keys ------------------------------------------------------------------------------

USER = parse_policy("10;w=60;s=user")
TEAM = parse_policy("10;w=60;s=team")
GLOBAL = parse_policy("10;w=60")


def test_missing_user_names_the_header() -> None:
    for user_id in (None, ""):
        with pytest.raises(MissingSegment) as info:
            segment_key(USER, user_id, {})
        assert info.value.header == "Helicone-User-Id"
        assert "Helicone-User-Id" in str(info.value)
        assert "s=user" in str(info.value)


@pytest.mark.parametrize(
    ("segment", "header"),
    [("team", "Helicone-Property-Team"), ("cost-center", "Helicone-Property-Cost-Center"), ("a_b", "Helicone-Property-A_b")],
)
def test_missing_property_names_the_header(segment: str, header: str) -> None:
    policy = Policy(10, 60, "request", segment)
    for props in ({}, {segment: ""}, {"other": "x"}):
        with pytest.raises(MissingSegment) as info:
            segment_key(policy, "u1", props)
        assert info.value.header == header
        assert f"needs the {header} header" in str(info.value)


def test_property_lookup_is_case_insensitive() -> None:
    assert segment_key(TEAM, None, {"team": "red"}) == segment_key(TEAM, None, {"Team": "red"})


def test_keys_separate_what_must_be_separate() -> None:
    keys = {
        segment_key(GLOBAL, None, {}),
        segment_key(GLOBAL, None, {}, scope="model:gpt-4o"),
        segment_key(GLOBAL, None, {}, scope="key:k1"),
        segment_key(USER, "alice", {}),
        segment_key(USER, "bob", {}),
        segment_key(parse_policy("11;w=60;s=user"), "alice", {}),
        segment_key(parse_policy("10;w=60;u=cents;s=user"), "alice", {}),
        segment_key(USER, "alice", {}, scope="model:gpt-4o"),
        segment_key(TEAM, None, {"team": "alice"}),  # a property value equal to a user id
        # Length-prefixed parts: moving text between scope and value is a different bucket.
        segment_key(TEAM, None, {"team": "b"}, scope="a"),
        segment_key(TEAM, None, {"team": "ab"}, scope=""),
    }
    assert len(keys) == 11


def test_keys_are_stable_and_bounded() -> None:
    key = segment_key(USER, "alice@example.com", {"team": "x"})
    assert key == segment_key(USER, "alice@example.com", {})  # properties don't matter for s=user
    assert key.startswith("10;w=60;u=request;s=user|")
    assert "alice" not in key
    assert len(segment_key(USER, "u" * 100_000, {})) == len(key)
    assert segment_key(GLOBAL, "alice", {"team": "x"}) == segment_key(GLOBAL, None, {})
