"""When an upstream answer is worth another try, and how long to wait before it.

The policy follows Helicone's ``Helicone-Retry-*`` headers (num 5, factor 2, min 1000 ms, max
10000 ms): the n-th retry waits ``min(min_timeout * factor**n, max_timeout)``, jittered down to half
of that at random so a fleet of clients that failed together does not retry together. An upstream's
``Retry-After`` (seconds or an HTTP date) replaces the backoff, capped by ``max_timeout``: the
upstream knows better than our formula, but a client should not wait minutes on a header.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass
from email.utils import parsedate_to_datetime

from fastgw.config import RetryConfig
from fastgw.errors import InvalidHeader

# 408 and 409 are left out on purpose: Helicone and the OpenAI SDK differ on them, and neither is
# a sign that the same request will fare better in a second.
RETRYABLE_STATUSES = frozenset({429, 500, 502, 503, 504})


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    num: int  # retries after the first attempt
    factor: float
    min_timeout: float  # seconds
    max_timeout: float  # seconds

    @classmethod
    def from_config(cls, rc: RetryConfig) -> RetryPolicy | None:
        return cls(rc.num, rc.factor, rc.min_timeout, rc.max_timeout) if rc.enabled else None

    def backoff(self, retry: int, rand: Callable[[], float] = random.random) -> float:
        """Seconds to wait before retry number ``retry`` (0 = the first retry)."""
        ceiling = min(self.min_timeout * self.factor**retry, self.max_timeout)
        return ceiling * (0.5 + 0.5 * rand())

    def wait(self, retry: int, retry_after: float | None, rand: Callable[[], float] = random.random) -> float:
        """The wait before retry ``retry``: the upstream's Retry-After when it gave one, capped."""
        if retry_after is not None:
            return min(max(retry_after, 0.0), self.max_timeout)
        return self.backoff(retry, rand)


def policy_from_headers(helicone: object, default: RetryPolicy | None) -> RetryPolicy | None:
    """The request's retry policy: Helicone-Retry-* headers over the route's (or global) default.

    ``Helicone-Retry-Enabled: false`` turns retries off even where config turns them on; any other
    header given without ``-Enabled: true`` tunes the config default (if there is one). A value that
    does not parse is a 400 naming the header, never a silent default.
    """
    h = helicone
    enabled = getattr(h, "retry_enabled", None)
    if enabled is not None:
        flag = enabled.strip().lower()
        if flag not in ("true", "false", "1", "0"):
            raise InvalidHeader(f"Helicone-Retry-Enabled must be true or false, got {enabled[:64]!r}")
        if flag in ("false", "0"):
            return None
        base = default or RetryPolicy(5, 2.0, 1.0, 10.0)
    elif default is None:
        return None
    else:
        base = default
    num = _number(getattr(h, "retry_num", None), "Helicone-Retry-Num", int, 0, 20)
    factor = _number(getattr(h, "retry_factor", None), "Helicone-Retry-Factor", float, 1.0, 10.0)
    lo = _number(getattr(h, "retry_min_timeout", None), "Helicone-Retry-Min-Timeout", float, 0.0, 600_000.0)
    hi = _number(getattr(h, "retry_max_timeout", None), "Helicone-Retry-Max-Timeout", float, 0.0, 600_000.0)
    min_s = base.min_timeout if lo is None else lo / 1000.0
    max_s = base.max_timeout if hi is None else hi / 1000.0
    if min_s > max_s:
        if hi is None:  # only the minimum was given: the maximum follows it up
            max_s = min_s
        else:
            raise InvalidHeader("Helicone-Retry-Min-Timeout must not be above Helicone-Retry-Max-Timeout")
    return RetryPolicy(base.num if num is None else int(num), base.factor if factor is None else factor, min_s, max_s)


def _number(raw: str | None, header: str, kind: type, lo: float, hi: float) -> float | None:
    if raw is None:
        return None
    try:
        value = kind(raw.strip())
    except ValueError:
        raise InvalidHeader(f"{header} must be a {'whole ' if kind is int else ''}number, got {raw[:64]!r}") from None
    if math.isnan(value) or not lo <= value <= hi:
        raise InvalidHeader(f"{header} must be between {lo:g} and {hi:g}, got {raw[:64]!r}")
    return value


def retry_after_seconds(value: bytes | str | None, now_epoch: float) -> float | None:
    """``Retry-After`` as seconds from now: delta-seconds or an HTTP date (RFC 9110 §10.2.3).

    ``retry-after-ms`` (OpenAI's and Anthropic's finer variant) is read by the caller first when present.
    None when absent or unreadable: a header we cannot read is no reason to fail the request.
    """
    if value is None:
        return None
    text = value.decode("latin-1") if isinstance(value, bytes) else value
    text = text.strip()
    if not text:
        return None
    try:
        return max(0.0, float(text))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - now_epoch)
