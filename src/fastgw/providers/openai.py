"""OpenAI's chat completions format, which most providers speak (Groq, Mistral, DeepSeek, xAI, ...).

Nothing to translate: a unified request keeps its body, with ``model`` rewritten to the part after
``provider/`` and sent to the provider's own chat endpoint. Answers and errors are already OpenAI's.
"""

from __future__ import annotations

from typing import Any

import orjson

from fastgw.providers.base import Adapter, Call


class OpenAIAdapter(Adapter):
    name = "openai"
    auth_header = b"authorization"
    auth_prefix = b"Bearer "
    translates = False

    def chat_request(self, chat: dict[str, Any], call: Call) -> None:
        call.path = (call.base_path + call.chat_path).encode()
        call.body = orjson.dumps({**chat, "model": call.model})
        call.headers = b"content-type: application/json\r\n"


OPENAI = OpenAIAdapter()
