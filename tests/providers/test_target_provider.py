"""A raw target URL's provider (Helicone-Target-Url, a fallback's target-url) and stream usage."""

from __future__ import annotations

from fastgw import config
from fastgw.providers.table import build_table, parse_base_url, target_provider


def test_a_target_at_mistrals_origin_is_not_asked_for_stream_usage() -> None:
    """A review's: a target built its provider with the default (ask), so Mistral reached by
    Helicone-Target-Url or a fallback got the stream_options its catalog entry rules out."""
    providers = build_table(config.load(None, env={})).values()
    mistral = target_provider(*parse_base_url("https://api.mistral.ai/v1"), providers)
    assert (mistral.name, mistral.stream_usage, mistral.auth_line) == ("target:https://api.mistral.ai:443", False, None)
    assert target_provider(*parse_base_url("https://api.openai.com"), providers).stream_usage
    assert target_provider(*parse_base_url("https://llm.internal.example:8000/v1"), providers).stream_usage
