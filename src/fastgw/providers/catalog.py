"""The providers fastgw knows without configuration: base URL, wire format and chat endpoint.

Data only, so adding a provider is one line. ``base_url`` is chosen so that a client's OpenAI
``base_url`` of ``http://gateway/<name>/v1`` (``/<name>`` for Perplexity and the native
Anthropic/Gemini paths) reaches the provider's own path: ``/groq/v1/chat/completions`` becomes
``https://api.groq.com/openai/v1/chat/completions``. ``chat_path`` is where the unified API sends
an OpenAI-format chat request, after the base URL. The auth scheme follows from the format
(providers/formats.py): OpenAI-format providers read ``Authorization: Bearer``, Anthropic
``x-api-key``, Gemini ``x-goog-api-key`` (AI Studio also takes ``?key=``). ``stream_usage: false``
keeps the gateway from adding ``stream_options`` to a provider's streams for its log.

Config (``providers:``) overrides any field and adds servers of its own, e.g. vLLM or Ollama:
``providers: {myvllm: {base_url: "http://10.0.0.5:8000", format: openai}}``.
"""

from __future__ import annotations

from typing import Any

CATALOG: dict[str, dict[str, Any]] = {
    "openai": {"base_url": "https://api.openai.com", "format": "openai"},
    "anthropic": {"base_url": "https://api.anthropic.com", "format": "anthropic"},
    "gemini": {"base_url": "https://generativelanguage.googleapis.com", "format": "gemini"},
    "groq": {"base_url": "https://api.groq.com/openai", "format": "openai"},
    # stream_usage: Mistral is reported (public issue threads, not verified here) to answer 422
    # extra_forbidden to stream_options, so the gateway never adds it (stages/stream_usage.py).
    "mistral": {"base_url": "https://api.mistral.ai", "format": "openai", "stream_usage": False},
    "deepseek": {"base_url": "https://api.deepseek.com", "format": "openai"},
    "xai": {"base_url": "https://api.x.ai", "format": "openai"},
    "together": {"base_url": "https://api.together.xyz", "format": "openai"},
    "fireworks": {"base_url": "https://api.fireworks.ai/inference", "format": "openai"},
    "openrouter": {"base_url": "https://openrouter.ai/api", "format": "openai"},
    "perplexity": {"base_url": "https://api.perplexity.ai", "format": "openai", "chat_path": "/chat/completions"},
    # {region}: providers.bedrock.region, else AWS_REGION / AWS_DEFAULT_REGION, else us-east-1
    "bedrock": {"base_url": "https://bedrock-runtime.{region}.amazonaws.com", "format": "bedrock"},
}
