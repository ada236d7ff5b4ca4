"""Helicone-RateLimit-Policy: parsing, the canonical text, and which bucket a request draws from.

Grammar (Helicone's): ``quota;w=seconds[;u=request|cents][;s=user|<property>]``.

* ``quota`` is digits with an optional fraction (``10``, ``2.5``; no sign, no exponent) and must be
  more than 0.
* ``w`` is whole seconds, 60 to 31,536,000 (365 days) inclusive.
* ``u`` is ``request`` (the default) or ``cents``.
* ``s`` is absent (one bucket for everyone under the policy), ``user`` (a bucket per
  ``Helicone-User-Id``) or a property name (a bucket per ``Helicone-Property-<name>`` value).
  Names are ``[A-Za-z0-9_-]+`` like Helicone's, and case-insensitive like header names, so they are
  kept lower-cased. A property called ``user`` cannot be segmented on: ``s=user`` means the user.

We are more forgiving than Helicone's own regex where it costs nothing to be: spaces around ``;``
and ``=``, and parameter names and unit values in any case, are accepted. We are stricter where a
typo would otherwise silently change the limit: unknown, repeated or empty parameters are errors,
not ignored, and every error names what is wrong.

The canonical text (``Policy.normalised``) is ``<quota>;w=<seconds>;u=<unit>`` plus ``;s=<segment>``
when segmented. The unit is always written, so the text says what it limits without knowing the
default; the quota is the shortest decimal that reads back as the same float, without ``.0`` for
whole numbers and never in exponent form (the grammar has none). It parses back to an equal Policy,
and it is what goes in the ``Helicone-RateLimit-Policy`` response header and in bucket keys.
"""

from __future__ import annotations

import functools
import hashlib
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Literal

HEADER = "Helicone-RateLimit-Policy"
MIN_WINDOW_S = 60
MAX_WINDOW_S = 365 * 86400

Unit = Literal["request", "cents"]

_QUOTA = re.compile(r"\d+(?:\.\d+)?")
_WINDOW = re.compile(r"\d+")
_SEGMENT = re.compile(r"[A-Za-z0-9_-]+")
_PARAMS = ("w", "u", "s")


class PolicyError(ValueError):
    """A policy that does not parse or is out of range; the message says which part and why."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"{HEADER}: {reason}")
        self.reason = reason


class MissingSegment(ValueError):
    """The policy segments by a header the request did not send (the stage answers 400)."""

    def __init__(self, policy: Policy, header: str) -> None:
        super().__init__(
            f"{HEADER} {policy.normalised!r} segments by s={policy.segment}, which needs the {header} header"
        )
        self.header = header


def _show(text: str) -> str:
    """User text in a message: quoted, and short, since it came from a header of any length."""
    return repr(text if len(text) <= 40 else text[:40] + "...")


def format_quota(quota: float) -> str:
    if quota.is_integer():
        return str(int(quota))
    text = repr(quota)
    return format(Decimal(text), "f") if "e" in text else text


@dataclass(frozen=True, slots=True)
class Policy:
    quota: float
    window_s: int
    unit: Unit = "request"
    segment: str | None = None  # None: global; "user"; else a lower-cased property name
    _normalised: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # Here rather than in the parser, so a Policy built in code is held to the same bounds.
        if not isinstance(self.quota, (int, float)) or isinstance(self.quota, bool):
            raise PolicyError(f"quota {self.quota!r} is not a number")
        object.__setattr__(self, "quota", float(self.quota))  # 10 and 10.0 are one policy
        if not math.isfinite(self.quota):
            raise PolicyError(f"quota {self.quota} is not a finite number")
        if self.quota <= 0:
            raise PolicyError(f"quota {format_quota(self.quota)} must be more than 0")
        if not isinstance(self.window_s, int) or isinstance(self.window_s, bool):
            raise PolicyError(f"window w={self.window_s!r} must be a whole number of seconds")
        if self.window_s < MIN_WINDOW_S:
            raise PolicyError(f"window w={self.window_s} is below the minimum of {MIN_WINDOW_S} seconds")
        if self.window_s > MAX_WINDOW_S:
            raise PolicyError(f"window w={self.window_s} is above the maximum of {MAX_WINDOW_S} seconds (365 days)")
        if self.unit not in ("request", "cents"):
            raise PolicyError(f"unit u={_show(str(self.unit))} is not request or cents")
        if self.segment is not None and not (_SEGMENT.fullmatch(self.segment) and self.segment == self.segment.lower()):
            raise PolicyError(
                f"segment s={_show(str(self.segment))} must be user or a lower-case property name"
                " of letters, digits, _ and -"
            )
        text = f"{format_quota(self.quota)};w={self.window_s};u={self.unit}"
        if self.segment is not None:
            text += f";s={self.segment}"
        object.__setattr__(self, "_normalised", text)

    @property
    def normalised(self) -> str:
        return self._normalised


@functools.lru_cache(maxsize=1024)
def parse_policy(text: str) -> Policy:
    """Parse a policy; cached because the same few policies arrive on every request.

    Errors are not cached (lru_cache does not keep exceptions), so a client repeating a bad header
    pays for parsing each time, which is cheap and bounded by the header size.
    """
    parts = [p.strip() for p in text.split(";")]
    quota_text = parts[0]
    if not text.strip():
        raise PolicyError("the policy is empty (expected quota;w=seconds[;u=request|cents][;s=segment])")
    if not quota_text:
        raise PolicyError("the quota is missing before the first ';' (expected quota;w=seconds[;...])")
    if not _QUOTA.fullmatch(quota_text):
        raise PolicyError(f"quota {_show(quota_text)} is not a number (digits with an optional fraction, like 10 or 2.5)")
    quota = float(quota_text)
    params: dict[str, str] = {}
    for part in parts[1:]:
        if not part:
            raise PolicyError("empty parameter (a ';' with nothing after it)")
        name, eq, value = part.partition("=")
        name, value = name.strip().lower(), value.strip()
        if not eq:
            raise PolicyError(f"parameter {_show(part)} is not name=value")
        if name not in _PARAMS:
            raise PolicyError(f"unknown parameter {_show(name)} (expected w, u or s)")
        if name in params:
            raise PolicyError(f"parameter {name} is given more than once")
        if not value:
            raise PolicyError(f"parameter {name} has no value")
        params[name] = value
    if "w" not in params:
        raise PolicyError("the window w=seconds is missing")
    if not _WINDOW.fullmatch(params["w"]):
        raise PolicyError(f"window w={_show(params['w'])} is not a whole number of seconds")
    unit = params.get("u", "request").lower()
    if unit not in ("request", "cents"):
        raise PolicyError(f"unit u={_show(params['u'])} is not request or cents")
    segment = params.get("s")
    if segment is not None:
        if not _SEGMENT.fullmatch(segment):
            raise PolicyError(f"segment s={_show(segment)} must be user or a property name of letters, digits, _ and -")
        segment = segment.lower()
    return Policy(quota, int(params["w"]), unit, segment)  # type: ignore[arg-type]  # unit checked above


def property_header(name: str) -> str:
    """``cost-center`` -> ``Helicone-Property-Cost-Center``: the header as a person would write it."""
    return "Helicone-Property-" + "-".join(p[:1].upper() + p[1:] for p in name.split("-"))


def segment_key(policy: Policy, user_id: str | None, properties: Mapping[str, str], scope: str = "") -> str:
    """The bucket a request under ``policy`` draws from.

    ``properties`` maps property names to values, names lower-cased as the header parser gives them
    (any other case is found too, at the cost of a scan). An empty value counts as missing, as in
    Helicone. ``scope`` keeps buckets of different origins apart: a config policy for model
    ``gpt-4o`` (``"model:gpt-4o"``) must not share a bucket with the same text in a client's header.

    The key is ``<normalised policy>|<32 hex digits>``: the policy in clear, so an operator can see
    in Redis which policy a key belongs to, and a 128-bit BLAKE2b of the scope, segment kind and
    segment value. Hashing keeps keys short whatever the header length, leaves no separator a user
    id could forge (the parts are length-prefixed before hashing), and keeps user ids (often email
    addresses) out of Redis.
    """
    segment = policy.segment
    if segment is None:
        value = ""
    elif segment == "user":
        if not user_id:
            raise MissingSegment(policy, "Helicone-User-Id")
        value = user_id
    else:
        found = properties.get(segment)
        if found is None:
            found = next((v for k, v in properties.items() if k.lower() == segment), None)
        if not found:
            raise MissingSegment(policy, property_header(segment))
        value = found
    h = hashlib.blake2b(digest_size=16)
    for part in (scope, segment or "", value):
        data = part.encode("utf-8", "surrogatepass")
        h.update(b"%d:" % len(data))
        h.update(data)
    return f"{policy.normalised}|{h.hexdigest()}"
