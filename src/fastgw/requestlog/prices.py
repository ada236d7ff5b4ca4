"""Model prices and the exact cost of one request, in integer nano-dollars (1e-9 USD).

The table is data (``fastgw/data/prices.yaml``, laid under an optional user file) because prices
change more often than code; its header documents the fields and the matching rule. Costs are
exact: every price is read as ``Decimal(str(x))`` (a YAML float such as 0.075 becomes exactly
0.075, not its binary neighbour), the sum is taken in Decimal and rounded once, half to even, to a
whole nano-dollar. An unknown model costs ``None`` with the reason ``"unknown_model"``, never 0, and
is counted per model name in ``unknown_counts`` so the gap shows up in metrics.

Billing follows ``Usage``'s definitions (see ``usage.py``): ``prompt_tokens`` holds every input
token, of which ``cache_read_tokens`` are billed at ``cached_input`` instead of ``input`` and
``cache_write_tokens`` at ``cache_write`` (the 1-hour part at ``cache_write_1h``); the rest at
``input``. ``completion_tokens`` already include reasoning tokens (OpenAI, Anthropic and DeepSeek
count them there; ``usage.py`` folds in Gemini's and xAI's), so reasoning is billed as output once
and ``reasoning_tokens`` is not billed again. A tier applies to the whole request when the prompt
is above its ``above_input_tokens``, as Anthropic, Google, OpenAI and xAI bill long contexts.
"""

from __future__ import annotations

import os
import re
from collections import Counter
from dataclasses import dataclass, field, replace
from datetime import date
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation, localcontext
from pathlib import Path
from typing import Any

import yaml

from fastgw.requestlog.usage import Usage

__all__ = ["Price", "PriceError", "PriceTable", "SHIPPED_PRICES", "NANO_PER_TOKEN_AT_1_USD_PER_MTOK"]

SHIPPED_PRICES = Path(__file__).resolve().parent.parent / "data" / "prices.yaml"

# 1 USD per million tokens = 1e9 nano-dollars / 1e6 tokens = 1000 nano-dollars per token
NANO_PER_TOKEN_AT_1_USD_PER_MTOK = 1000

_PRICE_KEYS = ("input", "output", "cached_input", "cache_write", "cache_write_1h")
_ENTRY_KEYS = frozenset(_PRICE_KEYS) | {"tiers", "aliases", "note"}
_TOP_KEYS = frozenset({"as_of", "provider_aliases", "providers"})
_SECTION_KEYS = frozenset({"source", "models", "strip", "vendors"})

_WORD = r"(?:latest|preview|exp|experimental|beta|v\d+)"
_VERSION_SUFFIX = re.compile(rf"(?:\d{{3,8}}|{_WORD})(?:[-@](?:\d{{2,8}}|{_WORD}))*")
_RESOLVE_CACHE_MAX = 4096
_SCALE = 10**9

_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@dataclass(frozen=True, slots=True)
class Price:
    """USD per million tokens for one model; ``tiers`` are (threshold, Price), highest threshold first."""

    input: Decimal
    output: Decimal
    cached_input: Decimal
    cache_write: Decimal
    cache_write_1h: Decimal
    tiers: tuple[tuple[int, "Price"], ...] = ()
    # The five prices in units of 1e-9 USD per million tokens, when each has at most 9 decimals
    # (every real price does): then a cost is integer arithmetic, exact, and ~10x cheaper than
    # Decimal. None sends ``cost`` down the Decimal path.
    scaled: tuple[int, int, int, int, int] | None = field(default=None, init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        values = [self.input, self.output, self.cached_input, self.cache_write, self.cache_write_1h]
        ints = [v * _SCALE for v in values]
        exact = all(i == i.to_integral_value() for i in ints)
        object.__setattr__(self, "scaled", tuple(int(i) for i in ints) if exact else None)

    def for_prompt(self, prompt_tokens: int) -> "Price":
        for above, tier in self.tiers:
            if prompt_tokens > above:
                return tier
        return self


class PriceError(ValueError):
    """A price file that cannot be used; the message names the file and the key."""


def _decimal(v: Any, where: str) -> Decimal:
    if isinstance(v, bool) or not isinstance(v, (int, float, str)):
        raise PriceError(f"{where}: a price must be a number or a numeric string, got {v!r}")
    try:
        d = Decimal(str(v).strip())
    except InvalidOperation:
        raise PriceError(f"{where}: {v!r} is not a number") from None
    if not d.is_finite() or d < 0:
        raise PriceError(f"{where}: {v!r} is not a finite price >= 0")
    return d


def _price(raw: Any, where: str, base: Price | None = None) -> Price:
    """An entry (``base`` None) or a tier (fields it leaves out come from ``base``)."""
    if not isinstance(raw, dict):
        raise PriceError(f"{where}: expected a mapping, got {type(raw).__name__}")
    allowed = _ENTRY_KEYS if base is None else frozenset(_PRICE_KEYS) | {"above_input_tokens"}
    unknown = sorted(set(raw) - allowed)
    if unknown:
        raise PriceError(f"{where}: unknown key(s) {', '.join(map(str, unknown))}")
    got = {k: _decimal(raw[k], f"{where}.{k}") for k in _PRICE_KEYS if raw.get(k) is not None}
    if base is not None:
        return replace(base, tiers=(), **got)
    if "input" not in got:
        raise PriceError(f"{where}: 'input' is required")
    inp = got["input"]
    write = got.get("cache_write", inp)
    p = Price(input=inp, output=got.get("output", Decimal(0)), cached_input=got.get("cached_input", inp),
              cache_write=write, cache_write_1h=got.get("cache_write_1h", write))
    tiers_raw = raw.get("tiers") or []
    if not isinstance(tiers_raw, list):
        raise PriceError(f"{where}.tiers: expected a list")
    tiers = []
    for i, t in enumerate(tiers_raw):
        above = t.get("above_input_tokens") if isinstance(t, dict) else None
        if type(above) is not int or above < 0:
            raise PriceError(f"{where}.tiers[{i}].above_input_tokens: expected an integer >= 0")
        tiers.append((above, _price(t, f"{where}.tiers[{i}]", p)))
    return replace(p, tiers=tuple(sorted(tiers, key=lambda t: -t[0])))


@dataclass(slots=True)
class _Section:
    entries: dict[str, Price]
    aliases: dict[str, str]  # alias -> entry name, so an override of the entry carries its aliases
    strip: list[re.Pattern[str]] = field(default_factory=list)  # removed from a model name first
    vendors: dict[str, str] = field(default_factory=dict)  # "<vendor>." name prefix -> section to ask

    def exact(self, name: str) -> Price | None:
        p = self.entries.get(name)
        if p is None and name in self.aliases:
            p = self.entries.get(self.aliases[name])
        return p


def _norm_model(model: str) -> str:
    m = model.strip().lower()
    return m[7:] if m.startswith("models/") else m


def _parse(path: Path, providers: dict[str, _Section], provider_aliases: dict[str, str]) -> str | None:
    """Lay the file at ``path`` over ``providers`` / ``provider_aliases`` (mutated); return its as_of."""
    try:
        with open(path, "rb") as f:
            doc = yaml.load(f, Loader=_Loader)
    except (OSError, yaml.YAMLError) as e:
        raise PriceError(f"{path}: {e}") from None
    if not isinstance(doc, dict):
        raise PriceError(f"{path}: expected a mapping at the top")
    unknown = sorted(set(doc) - _TOP_KEYS)
    if unknown:
        raise PriceError(f"{path}: unknown top-level key(s) {', '.join(map(str, unknown))}")
    provider_aliases_raw = doc.get("provider_aliases") or {}
    if not isinstance(provider_aliases_raw, dict):
        raise PriceError(f"{path}: provider_aliases: expected a mapping")
    for alias, target in provider_aliases_raw.items():
        provider_aliases[str(alias).lower()] = str(target).lower()
    for pname, section in (doc.get("providers") or {}).items():
        where = f"{path}: providers.{pname}"
        if not isinstance(section, dict) or set(section) - _SECTION_KEYS:
            raise PriceError(f"{where}: expected a mapping with 'models' (and 'source')")
        sec = providers.setdefault(str(pname).lower(), _Section({}, {}))
        _model_id_rules(section, sec, where)
        models = section.get("models") or {}
        if not isinstance(models, dict):
            raise PriceError(f"{where}.models: expected a mapping")
        for name, raw in models.items():
            key = _norm_model(str(name))
            sec.entries[key] = _price(raw, f"{where}.models.{name}")
            aliases = raw.get("aliases") or []
            if not isinstance(aliases, list):
                raise PriceError(f"{where}.models.{name}.aliases: expected a list")
            for alias in aliases:
                sec.aliases[_norm_model(str(alias))] = key
    as_of = doc.get("as_of")
    return as_of.isoformat() if isinstance(as_of, date) else (str(as_of) if as_of is not None else None)


def _model_id_rules(section: dict[str, Any], sec: _Section, where: str) -> None:
    """A section's ``strip`` (regexes removed from model names before matching) and ``vendors``
    (``vendor.model`` names not found here are looked up in that vendor's section): how a hosting
    provider's model ids (Bedrock's ``us.anthropic.claude-...-v1:0``) reach the right price."""
    strip = section.get("strip")
    if strip is not None:
        if not isinstance(strip, list) or not all(isinstance(x, str) for x in strip):
            raise PriceError(f"{where}.strip: expected a list of regular expressions")
        try:
            sec.strip = [re.compile(x) for x in strip]
        except re.error as e:
            raise PriceError(f"{where}.strip: {e}") from None
    vendors = section.get("vendors")
    if vendors is not None:
        if not isinstance(vendors, dict):
            raise PriceError(f"{where}.vendors: expected a mapping of name prefix to section")
        sec.vendors = {str(k).lower(): str(v).lower() for k, v in vendors.items()}


def _stat(path: Path) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_mtime_ns, st.st_size


class PriceTable:
    """The merged price table with model-name resolution, exact costs and unknown-model counts."""

    def __init__(self, paths: tuple[Path, ...]) -> None:
        self.paths = paths
        self.unknown_counts: Counter[str] = Counter()  # kept across reloads
        self.last_error: str | None = None
        self._stats = tuple(_stat(p) for p in paths)
        self._providers: dict[str, _Section] = {}
        self._provider_aliases: dict[str, str] = {}
        self.as_of: str | None = None
        self._cache: dict[tuple[str, str], Price | None] = {}
        self._build()

    @classmethod
    def load(cls, path: str | os.PathLike[str] | None = None) -> "PriceTable":
        """The shipped table, extended and overridden by the user file at ``path`` if one is given.

        Raises ``PriceError`` (a ``ValueError``) naming the file and key when a file is unusable.
        """
        paths = (SHIPPED_PRICES,) if path is None else (SHIPPED_PRICES, Path(path))
        return cls(paths)

    def _build(self) -> None:
        providers: dict[str, _Section] = {}
        aliases: dict[str, str] = {}
        as_of = None
        for p in self.paths:
            as_of = _parse(p, providers, aliases) or as_of
        self._providers, self._provider_aliases, self.as_of = providers, aliases, as_of
        self._cache = {}

    def reload_if_changed(self) -> bool:
        """Re-read the files if one's mtime or size changed; True if the table was replaced.

        Two ``stat`` calls when nothing changed, so it is cheap once per export batch. A file that
        no longer parses leaves the current table in place (``last_error`` says why) and is tried
        again only when it changes again.
        """
        stats = tuple(_stat(p) for p in self.paths)
        if stats == self._stats:
            return False
        self._stats = stats
        try:
            self._build()
        except PriceError as e:
            self.last_error = str(e)
            return False
        self.last_error = None
        return True

    # ------------------------------------------------------------------ lookup

    def _sections(self, provider: str) -> list[_Section]:
        p = provider.strip().lower()
        p = self._provider_aliases.get(p, p)
        sec = self._providers.get(p)
        return [sec] if sec is not None else list(self._providers.values())

    def resolve(self, provider: str, model: str) -> Price | None:
        """The Price for ``model`` served by ``provider``, by the rule in prices.yaml's header."""
        key = (provider, model)
        if key in self._cache:
            return self._cache[key]
        name = _norm_model(model)
        sections = self._sections(provider)
        found = self._in_section(sections[0], name) if len(sections) == 1 else self._find(sections, name)
        if len(self._cache) >= _RESOLVE_CACHE_MAX:
            self._cache.clear()
        self._cache[key] = found
        return found

    def _find(self, sections: list[_Section], name: str) -> Price | None:
        found = next((p for s in sections if (p := s.exact(name)) is not None), None)
        return found if found is not None else self._prefix(sections, name)

    def _in_section(self, section: _Section, name: str) -> Price | None:
        """The provider's own section, after its ``strip`` rules; then its ``vendors``' sections."""
        for pattern in section.strip:
            name = pattern.sub("", name)
        found = self._find([section], name)
        if found is None and section.vendors:
            vendor, dot, rest = name.partition(".")
            other = self._providers.get(section.vendors.get(vendor, "")) if dot else None
            if other is not None and other is not section:
                found = self._find([other], rest)
        return found

    @staticmethod
    def _prefix(sections: list[_Section], name: str) -> Price | None:
        """Longest entry that is a prefix of ``name`` ending at ``-``/``@`` with a version suffix after."""
        for i in range(len(name) - 1, 0, -1):
            if name[i] not in "-@" or not _VERSION_SUFFIX.fullmatch(name, i + 1):
                continue
            head = name[:i]
            for s in sections:
                p = s.exact(head)
                if p is not None:
                    return p
        return None

    # ------------------------------------------------------------------ cost

    def cost(self, provider: str, model: str | None, usage: Usage) -> tuple[int | None, str | None]:
        """``(nano_usd, None)``, or ``(None, reason)``: ``unknown_model`` (counted), ``no_model``, ``no_usage``."""
        if usage.source == "none":
            return None, "no_usage"
        if not model:
            return None, "no_model"
        price = self.resolve(provider, model)
        if price is None:
            self.unknown_counts[model] += 1
            return None, "unknown_model"
        prompt = max(usage.prompt_tokens, 0)
        p = price.for_prompt(prompt)
        read = min(max(usage.cache_read_tokens, 0), prompt)
        write = min(max(usage.cache_write_tokens, 0), prompt - read)
        write_1h = min(max(usage.cache_write_1h_tokens, 0), write)
        uncached = prompt - read - write
        completion = max(usage.completion_tokens, 0)
        if p.scaled is not None:
            i_in, i_out, i_read, i_write, i_write_1h = p.scaled
            total = (uncached * i_in + read * i_read + (write - write_1h) * i_write + write_1h * i_write_1h
                     + completion * i_out)  # in 1e-9 USD per Mtok x tokens = 1e-6 nano-USD
            nano, rest = divmod(total, _SCALE // NANO_PER_TOKEN_AT_1_USD_PER_MTOK)
            half = _SCALE // NANO_PER_TOKEN_AT_1_USD_PER_MTOK // 2
            if rest > half or (rest == half and nano & 1):  # round half to even, as the Decimal path
                nano += 1
            return nano, None
        with localcontext() as ctx:
            ctx.prec = 60  # far above any token count x price: every step below is exact
            usd_tokens = (uncached * p.input + read * p.cached_input + (write - write_1h) * p.cache_write
                          + write_1h * p.cache_write_1h + max(usage.completion_tokens, 0) * p.output)
            nano = (usd_tokens * NANO_PER_TOKEN_AT_1_USD_PER_MTOK).to_integral_value(ROUND_HALF_EVEN)
        return int(nano), None
