"""What the Router reads from an upstream's response head: Retry-After in its three spellings."""

from __future__ import annotations

import time
from email.utils import formatdate

import pytest

from fastgw.stages.base import Response
from fastgw.stages.router import _retry_after


def test_seconds_milliseconds_and_dates() -> None:
    assert _retry_after(Response(429, b"Retry-After: 3\r\n", body=b"")) == 3.0
    assert _retry_after(Response(429, b"retry-after-ms: 250\r\nretry-after: 1\r\n", body=b"")) == 0.25
    assert _retry_after(Response(503, b"Retry-After: 1\r\nRetry-After-Ms: 1500\r\n", body=b"")) == 1.5
    date = formatdate(time.time() + 20, usegmt=True).encode()
    assert _retry_after(Response(503, b"x: y\r\nretry-after: " + date + b"\r\n", body=b"")) == pytest.approx(20, abs=1.5)


def test_absent_or_unreadable_is_none() -> None:
    assert _retry_after(None) is None
    assert _retry_after(Response(503, b"content-type: application/json\r\n", body=b"")) is None
    assert _retry_after(Response(503, b"retry-after: later\r\n", body=b"")) is None
    assert _retry_after(Response(503, b"x-retry-after: 5\r\n", body=b"")) is None  # another header's suffix
