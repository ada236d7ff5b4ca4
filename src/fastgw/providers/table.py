"""The provider table: config resolved once at start into what a request needs at run time."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from fastgw.config import Config, ProviderConfig
from fastgw.providers.base import Adapter
from fastgw.providers.formats import FORMATS


@dataclass(frozen=True, slots=True)
class Origin:
    """Where connections go: the pool keeps one set of connections per origin."""

    scheme: str
    host: str
    port: int
    # The Host header and the URL, made once: every proxied request sends the one and logs the
    # other, and the IDNA codec alone took about 0.75 µs a call.
    host_header: bytes = field(init=False, repr=False, compare=False)
    url: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        default = 443 if self.tls else 80
        host = f"[{self.host}]" if ":" in self.host else self.host
        object.__setattr__(self, "host_header", (host if self.port == default else f"{host}:{self.port}").encode("idna"))
        object.__setattr__(self, "url", f"{self.scheme}://{self.host}:{self.port}")

    @property
    def tls(self) -> bool:
        return self.scheme == "https"

    def __str__(self) -> str:
        return self.url


def parse_base_url(url: str) -> tuple[Origin, str]:
    """Split a base URL into its origin and its path prefix (no trailing slash)."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{url!r} is not an http(s) URL")
    port = parts.port or (443 if scheme == "https" else 80)
    return Origin(scheme, parts.hostname, port), parts.path.rstrip("/")


@dataclass(frozen=True, slots=True)
class Provider:
    name: str
    origin: Origin
    base_path: str  # the base URL's path, prepended to the request's path remainder
    format: Adapter  # the wire format: auth scheme and, for the unified API, translation
    # None: the client's credential passes through. Otherwise the header line injected instead.
    auth_line: bytes | None
    chat_path: str = "/v1/chat/completions"  # the unified API's endpoint for OpenAI-format providers
    drop_params: bool = False  # unified API: drop what the provider can't honour instead of a 400
    # The configured key itself: translated attempts build their own header line from it
    # (providers/credentials.py); ``auth_line`` is the same key, prepared for pass-through.
    api_key: str | None = None
    # Streams may be sent with stream_options.include_usage the client didn't ask for (stages/stream_usage.py).
    stream_usage: bool = True

    @classmethod
    def from_config(cls, name: str, pc: ProviderConfig) -> Provider:
        fmt, base_url = FORMATS[pc.format].bind(pc)
        origin, base_path = parse_base_url(base_url)
        return cls(name, origin, base_path, fmt, fmt.auth_line(pc.api_key) if pc.api_key else None,
                   pc.chat_path, pc.drop_params, pc.api_key or None, pc.stream_usage)


def target_provider(origin: Origin, base_path: str, providers: Iterable[Provider]) -> Provider:
    """A raw target URL (Helicone-Target-Url, a fallback's target-url) as a provider: OpenAI's
    format, the client's own credential. Stream usage is asked for unless a configured provider
    at the same origin says not to (mistral's catalog entry): the origin is what the API is."""
    ask = all(p.stream_usage for p in providers if p.origin == origin)
    return Provider(f"target:{origin}", origin, base_path, FORMATS["openai"], None, stream_usage=ask)


def build_table(config: Config) -> dict[str, Provider]:
    return {name: Provider.from_config(name, pc) for name, pc in config.providers.items()}
