"""Cache directives from the real header parser's output, so header names are checked end to end."""

from __future__ import annotations

import pytest

from fastgw._native import headers
from fastgw.cache import (
    MAX_TTL_S,
    CacheDirective,
    directive_from_headers,
    parse_cache_control,
    parse_ignore_keys,
)
from fastgw.errors import BadRequest

DAY = 86400
DEFAULT = 7 * DAY


def directive(cache_control: bytes | None = None, default: int = DEFAULT, **helicone: str) -> CacheDirective | None:
    raw = [(b"helicone-" + name.replace("_", "-").encode(), value.encode("latin-1")) for name, value in helicone.items()]
    return directive_from_headers(headers.parse_headers(raw).helicone, cache_control, default)


def test_no_cache_headers_is_none() -> None:
    assert directive() is None
    assert directive(b"max-age=60") is None


@pytest.mark.parametrize(
    ("given", "read", "save"),
    [
        ({"cache_enabled": "true"}, True, True),
        ({"cache_enabled": "TRUE"}, True, True),
        ({"cache_enabled": "True", "cache_read": "false"}, True, True),
        ({"cache_read": "true"}, True, False),
        ({"cache_save": "true"}, False, True),
        ({"cache_read": "true", "cache_save": "tRuE"}, True, True),
        ({"cache_enabled": "false", "cache_save": "true"}, False, True),
        ({"cache_enabled": "false", "cache_read": "true"}, True, False),
    ],
)
def test_header_combinations(given: dict[str, str], read: bool, save: bool) -> None:
    d = directive(**given)
    assert d is not None
    assert (d.read, d.save) == (read, save)
    assert (d.ttl_s, d.bucket_max, d.seed, d.ignore_keys) == (DEFAULT, 1, None, ())


@pytest.mark.parametrize("value", ["false", "1", "yes", "on", "", "true-ish"])
def test_anything_but_true_is_off(value: str) -> None:
    assert directive(cache_enabled=value) is None
    assert directive(cache_read=value, cache_save=value) is None


@pytest.mark.parametrize(
    ("cache_control", "ttl"),
    [
        (None, DEFAULT),
        (b"", DEFAULT),
        (b"no-cache", DEFAULT),
        (b"max-age=60", 60),
        (b"s-maxage=30", 30),
        (b"max-age=60, s-maxage=30", 30),
        (b"s-maxage=30,max-age=60", 30),
        (b"  Max-Age = 90 ,public", 90),
        (b"MAX-AGE=90", 90),
        (b'private="a, b", max-age=120', 120),
        (b'max-age="45"', 45),
        (b'no-cache="x\\"y, z", s-maxage=7', 7),
        (b"max-age=10, max-age=20", 10),
        (b"max-age=31536000", MAX_TTL_S),
        (b"max-age=31536001", MAX_TTL_S),
        (b"max-age=99999999999999999999999999", MAX_TTL_S),
        (b",,  , max-age=5,,", 5),
    ],
)
def test_ttl_from_cache_control(cache_control: bytes | None, ttl: int) -> None:
    d = directive(cache_control, cache_enabled="true")
    assert d is not None and d.ttl_s == ttl


def test_default_ttl_is_configurable_and_clamped() -> None:
    assert directive(None, default=3600, cache_enabled="true").ttl_s == 3600  # type: ignore[union-attr]
    assert directive(None, default=400 * DAY, cache_enabled="true").ttl_s == MAX_TTL_S  # type: ignore[union-attr]


@pytest.mark.parametrize("cache_control", [b"max-age=abc", b"max-age=", b"max-age", b"s-maxage=-1", b"max-age=1.5", b"s-maxage=+3", b'max-age="x"'])
def test_bad_cache_control_is_400_naming_the_header(cache_control: bytes) -> None:
    with pytest.raises(BadRequest, match="Cache-Control") as info:
        directive(cache_control, cache_enabled="true")
    assert info.value.status == 400


def test_bad_cache_control_is_ignored_when_not_caching() -> None:
    assert directive(b"max-age=abc") is None


def test_max_age_zero_means_do_not_store() -> None:
    d = directive(b"max-age=0", cache_enabled="true")
    assert d is not None and (d.read, d.save, d.ttl_s) == (True, False, 0)
    assert directive(b"s-maxage=0, max-age=60", cache_save="true") is None
    d = directive(b"max-age=0", cache_read="true")
    assert d is not None and (d.read, d.save) == (True, False)


@pytest.mark.parametrize(("value", "size"), [("1", 1), ("2", 2), ("20", 20), (" 7 ", 7), ("007", 7)])
def test_bucket_max_size(value: str, size: int) -> None:
    d = directive(cache_enabled="true", cache_bucket_max_size=value)
    assert d is not None and d.bucket_max == size


@pytest.mark.parametrize("value", ["0", "21", "abc", "-1", "+5", "1_0", "2.0", "", "99999999999999999999", "٣"])
def test_bucket_max_size_out_of_range_is_400(value: str) -> None:
    with pytest.raises(BadRequest, match="Helicone-Cache-Bucket-Max-Size") as info:
        directive_from_headers(_Helicone(cache_enabled="true", cache_bucket_max_size=value), None, DEFAULT)
    assert info.value.status == 400
    assert "1 to 20" in info.value.message


class _Helicone:
    """For values the header parser would refuse to produce (non-latin-1 digits)."""

    def __init__(self, **values: str) -> None:
        for name in ("cache_enabled", "cache_save", "cache_read", "cache_bucket_max_size", "cache_seed", "cache_ignore_keys"):
            setattr(self, name, values.get(name))


def test_seed_passes_through() -> None:
    d = directive(cache_enabled="true", cache_seed="user-42")
    assert d is not None and d.seed == "user-42"
    d = directive(cache_enabled="true", cache_seed="")
    assert d is not None and d.seed is None


@pytest.mark.parametrize(
    ("value", "keys"),
    [
        (None, ()),
        ("", ()),
        ("user", (b"user",)),
        ("user, metadata ,stream", (b"user", b"metadata", b"stream")),
        (" , a,, b ,", (b"a", b"b")),
        ("caf\u00c3\u00a9", ("café".encode(),)),  # UTF-8 bytes as the latin-1 parser decoded them
    ],
)
def test_ignore_keys(value: str | None, keys: tuple[bytes, ...]) -> None:
    assert parse_ignore_keys(value) == keys


def test_ignore_keys_reach_the_directive() -> None:
    d = directive(cache_read="true", cache_ignore_keys="user,  temperature")
    assert d is not None and d.ignore_keys == (b"user", b"temperature")


def test_parse_cache_control_shapes() -> None:
    assert parse_cache_control(b'No-Store, max-age = "12", ext="a,b\\"c", s-maxage=3, max-age=4') == {
        "no-store": None,
        "max-age": "12",
        "ext": 'a,b"c',
        "s-maxage": "3",
    }
    assert parse_cache_control(b'x="unterminated, max-age=1') == {"x": "unterminated, max-age=1"}


def test_repeated_headers_share_one_directive_and_errors_repeat() -> None:
    first = directive(b"max-age=60", cache_enabled="true", cache_bucket_max_size="3")
    assert first is directive(b"max-age=60", cache_enabled="true", cache_bucket_max_size="3")
    assert directive(b"max-age=61", cache_enabled="true", cache_bucket_max_size="3") == CacheDirective(
        read=True, save=True, ttl_s=61, bucket_max=3, seed=None, ignore_keys=()
    )
    for _ in range(2):
        with pytest.raises(BadRequest):
            directive(cache_enabled="true", cache_bucket_max_size="30")
