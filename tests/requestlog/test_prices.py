"""Exact costs from the shipped price table, name resolution, tiers, cache pricing, overrides, reload.

Expected costs are computed here from the YAML numbers themselves (read with PyYAML, converted with
Decimal(str(x))), never from PriceTable, so a wrong formula or a mis-read price fails the test.
"""

from __future__ import annotations

import os
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml

from fastgw.requestlog.prices import SHIPPED_PRICES, PriceError, PriceTable
from fastgw.requestlog.usage import Usage, extract_usage

FIX = Path(__file__).resolve().parent.parent / "fixtures" / "usage"
RAW: dict[str, Any] = yaml.safe_load(SHIPPED_PRICES.read_text())
NANO_PER_USD = 10**9
PER_MTOK = 10**6


def price(provider: str, model: str, field: str, tier: int | None = None) -> Decimal:
    entry = RAW["providers"][provider]["models"][model]
    if tier is not None:
        entry = entry["tiers"][tier]
    return Decimal(str(entry[field]))


def nano(*token_price_pairs: tuple[int, Decimal]) -> int:
    """sum(tokens x USD-per-million) in nano-dollars; the test data keeps it integral."""
    total = sum((Decimal(t) * p for t, p in token_price_pairs), Decimal(0)) * NANO_PER_USD / PER_MTOK
    assert total == total.to_integral_value(), total
    return int(total)


@pytest.fixture
def table() -> PriceTable:
    return PriceTable.load()


# --------------------------------------------------------------------- the shipped file


def test_shipped_file_is_dated_and_sourced() -> None:
    assert str(RAW["as_of"]) == PriceTable.load().as_of
    for name, section in RAW["providers"].items():
        assert section.get("source"), f"{name} has no source note"
        assert section["models"], name
    assert {"openai", "anthropic", "google", "mistral", "groq", "deepseek", "xai", "together"} <= set(RAW["providers"])


@pytest.mark.parametrize("provider,model", [
    (p, m) for p, s in RAW["providers"].items() for m in s["models"]])
def test_every_shipped_model_resolves_to_itself(table: PriceTable, provider: str, model: str) -> None:
    got = table.resolve(provider, model)
    assert got is not None and got.input == price(provider, model, "input")


def test_one_million_prompt_tokens_cost_the_input_price(table: PriceTable) -> None:
    u = Usage(prompt_tokens=1_000_000)
    assert table.cost("openai", "gpt-4o-mini", u) == (int(price("openai", "gpt-4o-mini", "input") * NANO_PER_USD), None)
    assert table.cost("openai", "gpt-4o-mini", u) == (150_000_000, None)  # $0.15
    out = Usage(completion_tokens=1_000_000)
    assert table.cost("anthropic", "claude-haiku-4-5", out) == (int(price("anthropic", "claude-haiku-4-5", "output") * NANO_PER_USD), None)


def test_embeddings_have_no_output_price(table: PriceTable) -> None:
    u = extract_usage("openai", "/v1/embeddings", (FIX / "openai_embeddings.json").read_bytes(), False)
    assert u is not None and u.model is not None
    assert table.cost("openai", u.model, u) == (nano((8, price("openai", "text-embedding-3-small", "input"))), None)
    assert table.cost("openai", u.model, u) == (160, None)


# --------------------------------------------------------------------- name resolution


@pytest.mark.parametrize("provider,served,entry", [
    ("openai", "gpt-4o-2024-08-06", "gpt-4o"),
    ("openai", "gpt-4o-mini-2024-07-18", "gpt-4o-mini"),       # the longer family, not gpt-4o
    ("openai", "gpt-4.1-nano-2025-04-14", "gpt-4.1-nano"),
    ("openai", "o3-mini-2025-01-31", "o3-mini"),
    ("openai", "gpt-5-2025-08-07", "gpt-5"),
    ("openai", "gpt-5-chat-latest", "gpt-5"),                   # alias
    ("openai", "gpt-4-0613", "gpt-4"),
    ("openai", "gpt-4-turbo-preview", "gpt-4-turbo"),
    ("anthropic", "claude-sonnet-4-5-20250929", "claude-sonnet-4-5"),
    ("anthropic", "claude-opus-4-1-20250805", "claude-opus-4-1"),
    ("anthropic", "claude-opus-4-20250514", "claude-opus-4"),
    ("anthropic", "claude-opus-4-0", "claude-opus-4"),          # alias
    ("anthropic", "claude-haiku-4-5@20251001", "claude-haiku-4-5"),  # Vertex spelling
    ("anthropic", "claude-3-5-haiku-latest", "claude-3-5-haiku"),
    ("anthropic", "Claude-Sonnet-4-5", "claude-sonnet-4-5"),    # case-insensitive
    ("google", "models/gemini-2.5-flash", "gemini-2.5-flash"),
    ("google", "gemini-2.5-flash-lite-preview-06-17", "gemini-2.5-flash-lite"),
    ("google", "gemini-2.0-flash-001", "gemini-2.0-flash"),
    ("google", "gemini-3-pro-preview", "gemini-3-pro"),
    ("mistral", "mistral-large-latest", "mistral-large"),
    ("mistral", "mistral-small-2506", "mistral-small"),
    ("xai", "grok-4-0709", "grok-4"),
    ("xai", "grok-3-mini-latest", "grok-3-mini"),
    ("together", "META-LLAMA/Llama-3.3-70B-Instruct-Turbo", "meta-llama/Llama-3.3-70B-Instruct-Turbo"),
])
def test_dated_and_aliased_names_resolve_to_their_family(table: PriceTable, provider: str, served: str,
                                                         entry: str) -> None:
    u = Usage(prompt_tokens=1000, completion_tokens=1000)
    expected = nano((1000, price(provider, entry, "input")), (1000, price(provider, entry, "output")))
    assert table.cost(provider, served, u) == (expected, None)


def test_exact_entry_beats_prefix(table: PriceTable) -> None:
    u = Usage(prompt_tokens=1_000_000)
    assert table.cost("openai", "gpt-4o-2024-05-13", u) == (5 * NANO_PER_USD, None)  # not gpt-4o's $2.50
    assert table.cost("mistral", "mistral-large-2411", u) == (2 * NANO_PER_USD, None)


@pytest.mark.parametrize("provider,model", [
    ("openai", "gpt-4o-audio-preview"),   # a different product of the family: not priced as gpt-4o
    ("openai", "gpt-4-32k"),
    ("anthropic", "claude-opus-4-8"),     # a newer version, not claude-opus-4
    ("openai", "gpt-4.5-preview"),        # "." is not a boundary: not gpt-4
    ("openai", "gpt-4ox"),
])
def test_non_version_suffix_is_unknown(table: PriceTable, provider: str, model: str) -> None:
    assert table.resolve(provider, model) is None


def test_provider_aliases_and_fallback_for_unlisted_provider(table: PriceTable) -> None:
    u = Usage(prompt_tokens=1_000_000)
    assert table.cost("gemini", "gemini-2.5-flash", u) == (int(price("google", "gemini-2.5-flash", "input") * NANO_PER_USD), None)
    # a provider named in fastgw.yaml but absent here: every section is searched, in file order
    assert table.cost("my-proxy", "gpt-4o-2024-08-06", u) == (int(price("openai", "gpt-4o", "input") * NANO_PER_USD), None)
    # a listed provider is searched alone: Groq does not serve claude
    assert table.cost("groq", "claude-sonnet-4-5", u) == (None, "unknown_model")


@pytest.mark.parametrize("model,section,entry", [
    ("anthropic.claude-3-5-sonnet-20240620-v1:0", "anthropic", "claude-3-5-sonnet"),
    ("us.anthropic.claude-sonnet-4-5-20250929-v1:0", "anthropic", "claude-sonnet-4-5"),
    ("global.anthropic.claude-haiku-4-5-20251001-v1:0", "anthropic", "claude-haiku-4-5"),
    ("us.amazon.nova-pro-v1:0", "bedrock", "amazon.nova-pro"),
    ("amazon.nova-micro-v1:0", "bedrock", "amazon.nova-micro"),
    ("eu.meta.llama3-1-70b-instruct-v1:0", "bedrock", "meta.llama3-1-70b-instruct"),
])
def test_bedrock_model_ids(table: PriceTable, model: str, section: str, entry: str) -> None:
    """Bedrock ids lose their cross-region prefix and revision; Claude is priced from Anthropic's table."""
    got = table.resolve("bedrock", model)
    assert got is not None and got.input == price(section, entry, "input") and got.output == price(section, entry, "output")


@pytest.mark.parametrize("model", ["anthropic.claude-opus-4-8-v1:0", "cohere.command-r-v1:0", "claude-sonnet-4-5x"])
def test_unlisted_bedrock_models_are_unknown(table: PriceTable, model: str) -> None:
    assert table.resolve("bedrock", model) is None


# --------------------------------------------------------------------- unknown models


def test_unknown_model_is_none_never_zero_and_counted(table: PriceTable) -> None:
    u = Usage(prompt_tokens=10, completion_tokens=10)
    assert table.cost("openai", "gpt-9-ultra", u) == (None, "unknown_model")
    assert table.cost("openai", "gpt-9-ultra", u) == (None, "unknown_model")
    assert table.cost("anthropic", "claude-opus-4-8", Usage()) == (None, "unknown_model")
    assert table.unknown_counts == {"gpt-9-ultra": 2, "claude-opus-4-8": 1}
    assert table.cost("openai", "gpt-4o", u)[0] > 0
    assert table.unknown_counts["gpt-4o"] == 0


def test_missing_model_or_usage(table: PriceTable) -> None:
    assert table.cost("openai", "", Usage(prompt_tokens=1)) == (None, "no_model")
    assert table.cost("openai", None, Usage(prompt_tokens=1)) == (None, "no_model")
    assert table.cost("openai", "gpt-4o", Usage(source="none")) == (None, "no_usage")
    assert not table.unknown_counts


# --------------------------------------------------------------------- cache, reasoning, tiers (from fixtures)


def usage_of(name: str, fmt: str, path: str = "/p") -> Usage:
    u = extract_usage(fmt, path, (FIX / name).read_bytes(), name.endswith(".sse"))
    assert u is not None
    return u


def test_openai_cached_tokens_billed_at_cached_input_only(table: PriceTable) -> None:
    u = usage_of("openai_chat.json", "openai")  # 2006 prompt of which 1920 cached, 300 completion
    p = lambda f: price("openai", "gpt-4o", f)  # noqa: E731
    expected = nano((2006 - 1920, p("input")), (1920, p("cached_input")), (300, p("output")))
    assert table.cost("openai", "gpt-4o-2024-08-06", u) == (expected, None)
    assert expected == 5_615_000  # 86 x 2.50 + 1920 x 1.25 + 300 x 10.00 = 5615 USD-per-M = $0.005615


def test_reasoning_tokens_are_billed_once_as_output(table: PriceTable) -> None:
    u = usage_of("openai_chat_stream.sse", "openai")  # 210 completion, 192 of them reasoning
    p = lambda f: price("openai", "o4-mini", f)  # noqa: E731
    assert table.cost("openai", u.model or "", u) == (nano((14, p("input")), (210, p("output"))), None)
    g = usage_of("gemini_stream.sse", "gemini")  # thoughts folded into completion by extract_usage
    q = lambda f: price("google", "gemini-2.5-flash", f)  # noqa: E731
    assert table.cost("gemini", g.model or "", g) == (nano((9, q("input")), (41 + 962, q("output"))), None)
    x = usage_of("xai_chat.json", "openai")  # xAI: reasoning reported outside completion_tokens
    r = lambda f: price("xai", "grok-3-mini", f)  # noqa: E731
    assert table.cost("xai", "grok-3-mini", x) == (
        nano((32 - 6, r("input")), (6, r("cached_input")), (9 + 94, r("output"))), None)


def test_anthropic_cache_reads_and_5m_writes(table: PriceTable) -> None:
    u = usage_of("anthropic_stream.sse", "anthropic")  # input 12, read 20480, write 1536, output 87
    p = lambda f: price("anthropic", "claude-sonnet-4-5", f)  # noqa: E731
    expected = nano((12, p("input")), (20480, p("cached_input")), (1536, p("cache_write")), (87, p("output")))
    assert table.cost("anthropic", u.model or "", u) == (expected, None)
    assert expected == 36 * 1000 + 6_144 * 1000 + 5_760 * 1000 + 1_305 * 1000


def test_anthropic_1h_cache_writes(table: PriceTable) -> None:
    u = usage_of("anthropic_stream_thinking_1h.sse", "anthropic")  # writes: 1000 at 5m, 2000 at 1h
    p = lambda f: price("anthropic", "claude-opus-4-1", f)  # noqa: E731
    expected = nano((2048, p("input")), (1000, p("cache_write")), (2000, p("cache_write_1h")), (312, p("output")))
    assert table.cost("anthropic", u.model or "", u) == (expected, None)


def test_deepseek_cache_hits(table: PriceTable) -> None:
    u = usage_of("deepseek_chat.json", "openai")
    p = lambda f: price("deepseek", "deepseek-chat", f)  # noqa: E731
    assert table.cost("deepseek", "deepseek-chat", u) == (
        nano((48, p("input")), (1152, p("cached_input")), (80, p("output"))), None)


def test_cache_writes_without_a_write_price_bill_at_input(table: PriceTable) -> None:
    u = Usage(prompt_tokens=1000, cache_write_tokens=400, completion_tokens=0)
    assert table.cost("openai", "gpt-4.1", u) == (nano((1000, price("openai", "gpt-4.1", "input"))), None)


def test_gemini_long_context_tier_from_fixture(table: PriceTable) -> None:
    u = usage_of("gemini.json", "gemini")  # 250,112 prompt (> 200K), 200,000 cached, 1,820 output
    t = lambda f: price("google", "gemini-2.5-pro", f, tier=0)  # noqa: E731
    expected = nano((50112, t("input")), (200000, t("cached_input")), (1820, t("output")))
    assert table.cost("google", u.model or "", u) == (expected, None)
    assert RAW["providers"]["google"]["models"]["gemini-2.5-pro"]["tiers"][0]["above_input_tokens"] == 200000


@pytest.mark.parametrize("prompt,tiered", [(200_000, False), (200_001, True)])
def test_tier_boundary_is_strictly_above(table: PriceTable, prompt: int, tiered: bool) -> None:
    u = Usage(prompt_tokens=prompt, completion_tokens=1000)
    p = lambda f: price("anthropic", "claude-sonnet-4-5", f, tier=0 if tiered else None)  # noqa: E731
    assert table.cost("anthropic", "claude-sonnet-4-5-20250929", u) == (
        nano((prompt, p("input")), (1000, p("output"))), None)


def test_anthropic_tier_counts_cached_tokens_toward_the_threshold(table: PriceTable) -> None:
    u = Usage(prompt_tokens=1000 + 150_000 + 60_000, cache_read_tokens=150_000, cache_write_tokens=60_000,
              completion_tokens=500)
    t = lambda f: price("anthropic", "claude-sonnet-4", f, tier=0)  # noqa: E731
    assert table.cost("anthropic", "claude-sonnet-4-20250514", u) == (
        nano((1000, t("input")), (150_000, t("cached_input")), (60_000, t("cache_write")), (500, t("output"))), None)


# --------------------------------------------------------------------- user files, exactness, reload


def write(path: Path, text: str, mtime: int | None = None) -> Path:
    path.write_text(text)
    if mtime is not None:
        os.utime(path, ns=(mtime, mtime))
    return path


USER = """
providers:
  openai:
    models:
      gpt-4o: {input: "1.10", output: 4, aliases: [house-4o]}
  local:
    source: our vLLM box, priced at GPU cost
    models:
      llama-3.3-70b-versatile: {input: "0.0005", output: 0.1}
provider_aliases:
  lab: local
"""


def test_user_file_overrides_and_extends(tmp_path: Path) -> None:
    t = PriceTable.load(write(tmp_path / "prices.yaml", USER))
    u = Usage(prompt_tokens=1_000_000, completion_tokens=1_000_000)
    assert t.cost("openai", "gpt-4o-2024-08-06", u) == (int((Decimal("1.10") + 4) * NANO_PER_USD), None)
    assert t.cost("openai", "house-4o", u) == t.cost("openai", "gpt-4o", u)
    assert t.cost("openai", "gpt-4o-mini", u) == (int((price("openai", "gpt-4o-mini", "input")
                                                       + price("openai", "gpt-4o-mini", "output")) * NANO_PER_USD), None)
    # the user's provider section is searched alone, so Groq's price of the same name does not leak in
    assert t.cost("lab", "llama-3.3-70b-versatile", Usage(prompt_tokens=1_000_000)) == (500_000, None)
    assert t.cost("local", "gpt-4o", Usage(prompt_tokens=1)) == (None, "unknown_model")


def test_a_user_section_rewrites_its_own_model_ids(tmp_path: Path) -> None:
    """strip and vendors are data: a hosting provider of one's own maps its ids like Bedrock's."""
    t = PriceTable.load(write(tmp_path / "prices.yaml", (
        "providers: {myhost: {strip: ['^region-[a-z]+/', '@\\d+$'], vendors: {oa: openai},"
        " models: {house-model: {input: 7}}}}\n")))
    u = Usage(prompt_tokens=1_000_000)
    assert t.cost("myhost", "region-eu/house-model@3", u) == (7 * NANO_PER_USD, None)
    assert t.cost("myhost", "region-eu/oa.gpt-4o-2024-08-06@1", u) == t.cost("openai", "gpt-4o", u)
    assert t.cost("myhost", "region-eu/zz.gpt-4o@1", u) == (None, "unknown_model")  # no such vendor


def test_sub_nano_prices_round_half_even_once(tmp_path: Path) -> None:
    t = PriceTable.load(write(tmp_path / "prices.yaml", USER))  # local input: 0.5 nano per token
    assert [t.cost("local", "llama-3.3-70b-versatile", Usage(prompt_tokens=n))[0] for n in (1, 2, 3, 5)] == [0, 1, 2, 2]


def test_numbers_and_strings_are_read_exactly(tmp_path: Path) -> None:
    f = write(tmp_path / "p.yaml", "providers:\n  x:\n    models:\n"
                                   "      a: {input: 0.123456789, output: 0.1}\n"
                                   "      b: {input: '0.123456789', output: '0.1'}\n")
    t = PriceTable.load(f)
    u = Usage(prompt_tokens=3_000_000_001, completion_tokens=3)
    expected = int(Decimal("0.123456789") * 3_000_000_001 * 1000 + Decimal("0.1") * 3 * 1000 + Decimal("0.5"))
    assert t.cost("x", "a", u) == t.cost("x", "b", u) == (expected, None)
    assert expected == 370_370_367_423  # 370370367123.456789 + 300, rounded


def test_reload_if_changed(tmp_path: Path) -> None:
    f = write(tmp_path / "prices.yaml", "providers: {local: {models: {m: {input: 1}}}}\n", mtime=1_000_000_000_000_000_000)
    t = PriceTable.load(f)
    u = Usage(prompt_tokens=1_000_000)
    assert t.cost("local", "m", u) == (NANO_PER_USD, None)
    assert t.reload_if_changed() is False
    write(f, "providers: {local: {models: {m: {input: 2}}}}\n", mtime=1_000_000_001_000_000_000)
    assert t.reload_if_changed() is True
    assert t.cost("local", "m", u) == (2 * NANO_PER_USD, None)
    assert t.reload_if_changed() is False
    # a broken edit keeps the last good table and says why; it is not re-read until it changes again
    write(f, "providers: {local: {models: {m: {inptu: 3}}}}\n", mtime=1_000_000_002_000_000_000)
    assert t.reload_if_changed() is False
    assert t.last_error and "inptu" in t.last_error and str(f) in t.last_error
    assert t.cost("local", "m", u) == (2 * NANO_PER_USD, None)
    write(f, "providers: {local: {models: {m: {input: 3}}}}\n", mtime=1_000_000_003_000_000_000)
    assert t.reload_if_changed() is True and t.last_error is None
    assert t.cost("local", "m", u) == (3 * NANO_PER_USD, None)


@pytest.mark.parametrize("text,needle", [
    ("providers: {x: {models: {m: {output: 1}}}}", "'input' is required"),
    ("providers: {x: {models: {m: {input: -1}}}}", "finite price"),
    ("providers: {x: {models: {m: {input: '$1'}}}}", "not a number"),
    ("providers: {x: {models: {m: {input: true}}}}", "must be a number"),
    ("providers: {x: {models: {m: {input: 1, tiers: [{input: 2}]}}}}", "above_input_tokens"),
    ("prices: {}", "unknown top-level"),
    ("providers: {x: {strip: ['(unclosed'], models: {}}}", "providers.x.strip"),
    ("providers: {x: {strip: 'us.', models: {}}}", "providers.x.strip"),
    ("providers: {x: {vendors: [anthropic], models: {}}}", "providers.x.vendors"),
])
def test_bad_user_files_name_the_file_and_key(tmp_path: Path, text: str, needle: str) -> None:
    f = write(tmp_path / "bad.yaml", text)
    with pytest.raises(PriceError) as e:
        PriceTable.load(f)
    assert needle in str(e.value) and str(f) in str(e.value)


# --------------------------------------------------------------------- integer and Decimal paths agree

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

_prices = st.decimals(min_value=0, max_value=200, places=9, allow_nan=False, allow_infinity=False)
_tokens = st.integers(min_value=0, max_value=5_000_000)


def _decimal_cost(p: Any, u: Usage) -> int:
    """The defining formula, in Decimal with ample precision, rounded half to even once."""
    from decimal import ROUND_HALF_EVEN, localcontext

    prompt = u.prompt_tokens
    read = min(u.cache_read_tokens, prompt)
    write = min(u.cache_write_tokens, prompt - read)
    w1h = min(u.cache_write_1h_tokens, write)
    with localcontext() as ctx:
        ctx.prec = 80
        usd = ((prompt - read - write) * p.input + read * p.cached_input + (write - w1h) * p.cache_write
               + w1h * p.cache_write_1h + u.completion_tokens * p.output)
        return int((usd * 1000).to_integral_value(ROUND_HALF_EVEN))


@settings(max_examples=300, deadline=None)
@given(st.tuples(_prices, _prices, _prices, _prices, _prices), _tokens, _tokens, _tokens, _tokens, _tokens)
def test_integer_fast_path_equals_decimal(prices: tuple[Decimal, ...], prompt: int, completion: int, read: int,
                                          write: int, w1h: int) -> None:
    from fastgw.requestlog.prices import Price

    p = Price(*prices)
    assert p.scaled is not None  # nine decimals or fewer: the integer path is taken
    u = Usage(prompt_tokens=prompt, completion_tokens=completion, cache_read_tokens=read,
              cache_write_tokens=write, cache_write_1h_tokens=w1h)
    t = PriceTable.load()
    t._cache[("x", "m")] = p  # resolve straight to this price
    assert t.cost("x", "m", u) == (_decimal_cost(p, u), None)


def test_prices_beyond_nine_decimals_take_the_exact_decimal_path() -> None:
    from fastgw.requestlog.prices import Price

    p = Price(Decimal("0.1234567891"), Decimal(1), Decimal(1), Decimal(1), Decimal(1))
    assert p.scaled is None
    t = PriceTable.load()
    t._cache[("x", "m")] = p
    u = Usage(prompt_tokens=7, completion_tokens=0)
    assert t.cost("x", "m", u) == (_decimal_cost(p, u), None) == (864, None)  # 864.1975237 nano
