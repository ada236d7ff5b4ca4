"""Retry policy: Helicone's header semantics, backoff bounds, Retry-After in both forms."""

from __future__ import annotations

from email.utils import formatdate
from types import SimpleNamespace

import pytest

from fastgw.config import RetryConfig
from fastgw.errors import InvalidHeader
from fastgw.routing.retry import RetryPolicy, policy_from_headers, retry_after_seconds


def helicone(**values: str) -> SimpleNamespace:
    names = ("retry_enabled", "retry_num", "retry_factor", "retry_min_timeout", "retry_max_timeout")
    return SimpleNamespace(**{n: values.get(n) for n in names})


def test_no_headers_and_no_config_means_no_retries() -> None:
    assert policy_from_headers(helicone(), None) is None


def test_enabled_header_uses_helicones_defaults() -> None:
    assert policy_from_headers(helicone(retry_enabled="true"), None) == RetryPolicy(5, 2.0, 1.0, 10.0)


def test_headers_tune_each_field_in_milliseconds() -> None:
    p = policy_from_headers(helicone(retry_enabled="true", retry_num="2", retry_factor="3",
                                     retry_min_timeout="100", retry_max_timeout="500"), None)
    assert p == RetryPolicy(2, 3.0, 0.1, 0.5)


def test_false_turns_off_what_config_turned_on() -> None:
    default = RetryPolicy.from_config(RetryConfig(enabled=True, num=3))
    assert default is not None and default.num == 3
    assert policy_from_headers(helicone(retry_enabled="false"), default) is None
    assert policy_from_headers(helicone(retry_num="1"), default).num == 1  # type: ignore[union-attr]


def test_min_above_given_max_is_refused_but_min_alone_lifts_max() -> None:
    with pytest.raises(InvalidHeader, match="Min-Timeout"):
        policy_from_headers(helicone(retry_enabled="true", retry_min_timeout="5000", retry_max_timeout="100"), None)
    p = policy_from_headers(helicone(retry_enabled="true", retry_min_timeout="20000"), None)
    assert p is not None and p.min_timeout == p.max_timeout == 20.0


@pytest.mark.parametrize("field,value,header", [
    ("retry_enabled", "yes", "Helicone-Retry-Enabled"),
    ("retry_num", "two", "Helicone-Retry-Num"),
    ("retry_num", "1.5", "Helicone-Retry-Num"),
    ("retry_num", "50", "Helicone-Retry-Num"),
    ("retry_factor", "0.5", "Helicone-Retry-Factor"),
    ("retry_min_timeout", "-1", "Helicone-Retry-Min-Timeout"),
    ("retry_max_timeout", "nan", "Helicone-Retry-Max-Timeout"),
])
def test_bad_values_are_400s_naming_the_header(field: str, value: str, header: str) -> None:
    with pytest.raises(InvalidHeader) as info:
        policy_from_headers(helicone(**{"retry_enabled": "true", field: value}), None)
    assert header in info.value.message and info.value.status == 400


def test_backoff_grows_by_factor_is_capped_and_jittered_down_to_half() -> None:
    p = RetryPolicy(5, 2.0, 1.0, 10.0)
    assert [p.backoff(n, lambda: 1.0) for n in range(5)] == [1.0, 2.0, 4.0, 8.0, 10.0]
    assert [p.backoff(n, lambda: 0.0) for n in range(5)] == [0.5, 1.0, 2.0, 4.0, 5.0]


def test_retry_after_replaces_backoff_capped_by_max_timeout() -> None:
    p = RetryPolicy(5, 2.0, 1.0, 10.0)
    assert p.wait(0, 3.0, lambda: 0.0) == 3.0
    assert p.wait(4, 0.2, lambda: 1.0) == 0.2
    assert p.wait(0, 120.0) == 10.0


def test_retry_after_seconds_and_http_dates() -> None:
    now = 1_700_000_000.0
    assert retry_after_seconds(b"2", now) == 2.0
    assert retry_after_seconds(b" 0.5 ", now) == 0.5
    assert retry_after_seconds(formatdate(now + 30, usegmt=True), now) == pytest.approx(30.0)
    assert retry_after_seconds(formatdate(now - 30, usegmt=True), now) == 0.0
    assert retry_after_seconds(b"soon", now) is None
    assert retry_after_seconds(None, now) is None
