"""A gateway key as stored: what it may do. The key itself is not here, only its hash."""

from __future__ import annotations

import fnmatch
import re
from dataclasses import asdict, dataclass, field
from typing import Any

import orjson


@dataclass(frozen=True, slots=True)
class Budget:
    """USD caps per UTC calendar day, per UTC calendar month and in total; None: no cap."""

    day: float | None = None
    month: float | None = None
    total: float | None = None

    def caps(self) -> list[tuple[str, float]]:
        """The periods that have a cap, as (period, USD)."""
        return [(p, v) for p, v in (("day", self.day), ("month", self.month), ("total", self.total)) if v is not None]


@dataclass(frozen=True, slots=True)
class KeyRecord:
    key_hash: str  # hex SHA-256 of the key (keys/token.py)
    key_id: str  # public name: "key_" + the hash's first 16 hex digits
    name: str
    hint: str  # "fgw-...abcd", so a person recognises their key in a listing
    created_at: float  # Unix seconds
    team: str | None = None  # None: no team; else the team whose budget (keys.teams) it shares
    # Requested model names the key may use: exact names or globs ("gpt-4o*", "anthropic/*").
    # Empty: every model.
    models: tuple[str, ...] = ()
    ratelimit: tuple[str, ...] = ()  # Helicone policies, checked with the key as the scope
    budget: Budget = field(default_factory=Budget)
    credentials: tuple[str, ...] = ()  # names of config credentials this key's requests use
    revoked_at: float | None = None  # None: active

    def to_json(self) -> bytes:
        return orjson.dumps(asdict(self))

    @classmethod
    def from_json(cls, raw: bytes | str) -> KeyRecord:
        data: dict[str, Any] = orjson.loads(raw)
        data["budget"] = Budget(**data.get("budget") or {})
        for name in ("models", "ratelimit", "credentials"):
            data[name] = tuple(data.get(name) or ())
        return cls(**data)


class ModelMatcher:
    """Whether a requested model is among a key's allowed names (exact, or ``*``/``?`` globs).

    Globs compile once into one regex; exact names are a set lookup.
    """

    __slots__ = ("_exact", "_globs")

    def __init__(self, patterns: tuple[str, ...]) -> None:
        self._exact = frozenset(p for p in patterns if not any(c in p for c in "*?["))
        globs = [fnmatch.translate(p) for p in patterns if p not in self._exact]
        self._globs = re.compile("|".join(globs)) if globs else None

    def allows(self, model: str) -> bool:
        return model in self._exact or (self._globs is not None and self._globs.match(model) is not None)
