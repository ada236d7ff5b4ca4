"""Wire formats: what differs between provider APIs at the pass-through level.

For now that is only the credential header. The translating formats of the unified API (request,
response and stream mapping) grow here as one module per format.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class WireFormat:
    name: str
    auth_header: bytes  # lower-cased header name the provider reads its key from
    auth_prefix: bytes  # written before the key in that header

    def auth_line(self, api_key: str) -> bytes:
        return self.auth_header + b": " + self.auth_prefix + api_key.encode("latin-1") + b"\r\n"


FORMATS: dict[str, WireFormat] = {
    "openai": WireFormat("openai", b"authorization", b"Bearer "),
    "anthropic": WireFormat("anthropic", b"x-api-key", b""),
}
