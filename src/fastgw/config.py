"""Configuration: typed, frozen sections, validated once at start.

Sources are layered in this order: the defaults below, the YAML file (with ``${VAR}`` and
``${VAR:-default}`` interpolation), then ``FASTGW__SECTION__KEY=value`` environment overrides
(values parsed as YAML scalars). ``load`` validates the result: unknown keys and wrong types are
errors that name the key and the file, so a typo never silently falls back to a default.

Durations accept numbers (seconds) or strings such as ``"250ms"``, ``"30s"``, ``"5m"``; sizes
accept integers (bytes) or strings such as ``"64KiB"``, ``"32MiB"``.
"""

from __future__ import annotations

import dataclasses
import os
import re
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Mapping
from urllib.parse import urlsplit

import yaml

from fastgw.providers.catalog import CATALOG

ENV_PREFIX = "FASTGW__"


class ConfigError(ValueError):
    """A configuration problem, with the dotted key and the file it came from."""

    def __init__(self, key: str, message: str, source: str) -> None:
        self.key = key
        self.source = source
        where = f" in {source}" if source else ""
        super().__init__(f"{key}: {message}{where}" if key else f"{message}{where}")


class Duration(float):
    """Seconds, written in config as a number or as '250ms', '30s', '5m', '1h', '7d'."""


class Size(int):
    """Bytes, written in config as an integer or as '64KiB', '32MiB', '1GB'."""


_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_SIZE_UNITS = {"": 1, "b": 1, "kb": 1000, "kib": 1024, "mb": 1000**2, "mib": 1024**2, "gb": 1000**3, "gib": 1024**3}


@dataclass(frozen=True, slots=True)
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = 8787
    workers: int = 1
    backlog: int = 2048
    max_connections: int = 10_000
    max_head_size: Size = Size(64 * 1024)
    max_body_size: Size = Size(32 * 1024 * 1024)
    header_timeout: Duration = Duration(10.0)
    # Time allowed for a request body once its head is in; slow uploads of big prompts need room.
    body_timeout: Duration = Duration(60.0)
    keepalive_timeout: Duration = Duration(30.0)
    # A client that reads nothing of a response for this long is dropped (its upstream with it).
    send_timeout: Duration = Duration(60.0)
    graceful_timeout: Duration = Duration(30.0)
    # Above this many bytes queued on a client socket we stop reading from the upstream.
    write_high_water: Size = Size(256 * 1024)


@dataclass(frozen=True, slots=True)
class UpstreamConfig:
    connect_timeout: Duration = Duration(10.0)
    # Time allowed between two reads of an upstream response. Reasoning models can think for minutes.
    read_timeout: Duration = Duration(600.0)
    max_connections_per_origin: int = 512
    max_idle_per_origin: int = 128
    idle_timeout: Duration = Duration(30.0)
    verify: bool = True
    # None: the system CA store (or SSL_CERT_FILE); a path: that PEM bundle instead.
    ca_bundle: str | None = None
    # None: HTTPS_PROXY / https_proxy from the environment; "" disables the proxy.
    https_proxy: str | None = None
    # A non-idempotent request that fails on a reused connection is sent again only if the failure
    # came this soon after sending (a connection that was already dead), never later.
    stale_retry_window: Duration = Duration(0.25)
    # Above this many bytes read ahead from an upstream we stop reading it until the client catches up.
    read_high_water: Size = Size(256 * 1024)


@dataclass(frozen=True, slots=True)
class ProviderConfig:
    base_url: str
    # The wire format decides the auth header ("openai": Authorization Bearer, "anthropic": x-api-key).
    format: str = "openai"
    # None: the client's own credential passes through; a key: it is injected instead.
    api_key: str | None = None
    # Where the unified API sends an OpenAI-format chat request, after base_url (providers/catalog.py).
    chat_path: str = "/v1/chat/completions"
    # Unified API: leave out OpenAI parameters this provider can't honour instead of answering 400.
    drop_params: bool = False
    # Streams may be asked for usage on the client's behalf (logging.inject_stream_usage); false for
    # a provider that refuses stream_options (providers/catalog.py).
    stream_usage: bool = True
    # Bedrock (format bedrock): the AWS region; None: AWS_REGION, then AWS_DEFAULT_REGION, then us-east-1.
    region: str | None = None
    # Bedrock: the key pair requests are signed with (SigV4); None: AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY
    # / AWS_SESSION_TOKEN from the environment. Clients never send AWS credentials.
    aws_access_key_id: str | None = None
    aws_secret_access_key: str | None = None
    aws_session_token: str | None = None
    # Azure OpenAI (format azure): api-version added when the client's query has none.
    api_version: str | None = None


@dataclass(frozen=True, slots=True)
class TargetsConfig:
    """Which upstreams ``Helicone-Target-Url`` may reach; everything else gets 403."""

    # Entries are scheme://host[:port][/path]: "https://api.together.xyz", "https://*.groq.com",
    # "http://127.0.0.1:*". The host may start with "*." and the port may be "*".
    allow: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class LoggingConfig:
    """Where request logs go and what they keep. Workers only capture; the exporter does the rest."""

    enabled: bool = True
    # chdb:///path (embedded ClickHouse, the default), http(s)://user:pass@host:8123/db, jsonl:///dir, none
    sink: str = "chdb://./fastgw-data"
    # Each body is kept up to this size (streams keep their head and tail); longer ones are flagged.
    body_max_bytes: Size = Size(256 * 1024)
    omit_request_bodies: bool = False  # as if every request carried Helicone-Omit-Request: true
    omit_response_bodies: bool = False
    body_ttl_days: int = 30  # 0 keeps bodies forever
    # Ask OpenAI-compatible streams for usage when the client didn't, and hide that extra chunk.
    inject_stream_usage: bool = True
    # Shared memory per worker. The exporter frees a batch's bytes only once its sink has written
    # it, so a ring should hold two batches: 5,000 records of ~2.5 KB are ~12 MB. At 16 MiB a
    # worker at saturation spilled 25-60% of its records to disk in 5-s bursts; at 64 MiB, none.
    ring_size: Size = Size(64 * 1024 * 1024)
    # Rings and spill files live here; None: /dev/shm/fastgw-<port> for rings, ./fastgw-spill for spills.
    run_dir: str | None = None
    spill_dir: str | None = None
    batch_max_records: int = 5000
    batch_max_age: Duration = Duration(1.0)
    # A user price file that extends or overrides the shipped table; re-read when it changes.
    prices_file: str | None = None
    # The exporter runs under Linux's SCHED_IDLE policy: it gets a core only when no request-path
    # process (worker, the app, its clients) wants it, and a waking one preempts it at once. A nice
    # value only lowers its share; its bursts still delay what shares its core. bench_logging.py
    # --only gateway (exporter on the core of the client and the mock): p99 @16 conn 2.9 ms under
    # SCHED_IDLE, 5.4 ms at nice 10, 3.0 ms with logging off. The price: on a machine saturated by
    # requests the exporter falls behind and the rings spill to disk until the load drops (there,
    # the worker spent 98 µs a request instead of 88 at nice 10).
    exporter_idle: bool = True
    # The exporter's niceness (0-19) where SCHED_IDLE is off or refused (not Linux).
    exporter_nice: int = 10
    # Where the kernel schedules sessions as groups (autogroups: processes outside a cpu cgroup),
    # SCHED_IDLE and nice rank the exporter only within the session of `fastgw serve`, and an app
    # started from another session would share a core with it half and half. So the exporter
    # starts a session of its own at autogroup nice 19 (exporter_nice without SCHED_IDLE; none at
    # nice 0, where it would weigh as much as the workers' whole session; none where the session
    # is the boot session's, the root task group, already the best place for SCHED_IDLE). Off:
    # it stays in the session it inherits (one process group for job control).
    exporter_own_session: bool = True
    # Under SCHED_IDLE, also a cpu cgroup of its own marked cpu.idle (Linux 5.15+), under the one it
    # inherits, where the process may make one (root, a delegated subtree): only there does a task of
    # another session or cgroup that wakes on its core preempt it at once instead of waiting for the
    # scheduler's tick (requestlog/idle_cgroup.py): cgroup v1, or v2's root cgroup with the cpu
    # controller already given to its children. Elsewhere nothing changes.
    # Off where something else must be the only one to write the cgroup tree (systemd without
    # Delegate=yes, an orchestrator's agent).
    exporter_idle_cgroup: bool = True
    # Processes that decode, enrich and encode large chunks beside the exporter, past Python's one
    # lock (requestlog/prepare_helpers.py); chDB sinks only. -1: one fewer than the cores the exporter
    # may use (none on one core); 0: none.
    exporter_helpers: int = -1


@dataclass(frozen=True, slots=True)
class CacheConfig:
    """Response cache (Helicone-Cache-* headers). Requests opt in per call; nothing is cached otherwise."""

    # "memory": an LRU in each worker, bounded in bytes; "redis://host:port/db": shared by a fleet.
    backend: str = "memory"
    max_bytes: Size = Size(256 * 1024 * 1024)  # memory backend: all entries together
    max_entry_bytes: Size = Size(8 * 1024 * 1024)  # a larger response is served, not stored
    default_ttl: Duration = Duration(7 * 86400)  # without Cache-Control max-age / s-maxage
    # A Redis slower than this counts as down for the request: it bypasses the cache.
    redis_timeout: Duration = Duration(0.25)


@dataclass(frozen=True, slots=True)
class RateLimitConfig:
    """Rate limits: Helicone-RateLimit-Policy per request, and policies from config.

    Config policies use the header's grammar (``quota;w=seconds[;u=request|cents][;s=...]``).
    ``users`` and ``models`` map a user id or a requested model to a policy, and ``"*"`` in them is
    the policy for every one without its own entry. A gateway key's own policies are kept with the key
    (``fastgw keys create --ratelimit``). Where several
    apply to one request (header and config), each is checked and the strictest decides.
    """

    backend: str = "memory"  # "memory" (per worker) or "redis://host:port/db" (shared)
    fail_open: bool = True  # Redis down: let requests through (counted), or refuse with 503
    redis_timeout: Duration = Duration(0.25)
    users: Mapping[str, str] = field(default_factory=dict)
    models: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class MetricsConfig:
    """Prometheus metrics, computed by the exporter from the logged rows (served on the admin port)."""

    enabled: bool = True
    # Label caps: the first N distinct values keep their name, later ones are counted as "other",
    # so a client inventing model names cannot grow the scrape without bound.
    max_models: int = 200
    max_providers: int = 50


@dataclass(frozen=True, slots=True)
class OtelConfig:
    """OpenTelemetry traces: one span per logged request, sent by the exporter over OTLP/HTTP."""

    enabled: bool = False
    endpoint: str = "http://127.0.0.1:4318/v1/traces"
    headers: Mapping[str, str] = field(default_factory=dict)  # e.g. {authorization: "Bearer ${TOKEN}"}
    service_name: str = "fastgw"
    # Prompts and completions go into spans only when this is true (they may hold personal data).
    capture_content: bool = False
    timeout: Duration = Duration(10.0)


@dataclass(frozen=True, slots=True)
class AdminConfig:
    """The admin server (query API, dashboard, /metrics), run by the exporter process."""

    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = 8788
    # Bearer key for every admin path; required (the start is refused without it) beyond loopback.
    key: str = ""


@dataclass(frozen=True, slots=True)
class AuthConfig:
    """Gateway keys on requests (``Authorization: Bearer fgw-...`` or ``Helicone-Auth``)."""

    # False: a request without a gateway key passes as before (a loopback sidecar); one that sends
    # an fgw- key is still checked. True: no valid key, 401. Set it when listening beyond loopback.
    required: bool = False


@dataclass(frozen=True, slots=True)
class BudgetConfig:
    """Spend caps in USD per UTC calendar day, per UTC calendar month, and in total; None: no cap."""

    day: float | None = None
    month: float | None = None
    total: float | None = None


@dataclass(frozen=True, slots=True)
class KeysConfig:
    """Where gateway keys (their hashes) and their spend live; ``fastgw keys`` manages them."""

    # "sqlite://PATH": one file shared by the workers and the CLI of one host (the default, next to
    # ./fastgw-data); "redis://host:port/db": shared by a fleet.
    backend: str = "sqlite://./fastgw-keys.db"
    # A worker remembers a key this long: a revocation takes up to this long to reach every worker.
    cache_ttl: Duration = Duration(5.0)
    # A key store slower than this counts as down: keyed requests get 503 (never a free pass).
    redis_timeout: Duration = Duration(0.5)
    # Team budgets, shared by every key created with --team NAME.
    teams: Mapping[str, BudgetConfig] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class CredentialConfig:
    """A provider key that gateway keys may be granted by name; clients never see it."""

    provider: str
    api_key: str


@dataclass(frozen=True, slots=True)
class RetryConfig:
    """Retries of one upstream call (Helicone's defaults); Helicone-Retry-* headers override per request."""

    enabled: bool = False
    num: int = 5  # retries after the first attempt
    factor: float = 2.0
    min_timeout: Duration = Duration(1.0)  # the first backoff
    max_timeout: Duration = Duration(10.0)  # no backoff, Retry-After included, waits longer


@dataclass(frozen=True, slots=True)
class RouteTargetConfig:
    """One place a route can send a request: a provider, the model to ask it for, and whose key."""

    provider: str
    model: str | None = None  # None: the model the client asked for
    api_key: str | None = None  # sent instead of the client's credential
    credential: str | None = None  # a name in credentials: (alternative to api_key)
    weight: float = 1.0  # for strategy: weighted


@dataclass(frozen=True, slots=True)
class RouteConfig:
    """A model name clients send, served by one or more targets chosen by ``strategy``."""

    targets: tuple[RouteTargetConfig, ...] = ()
    # ordered: a fallback chain; weighted: random by weight; latency: the faster of two (peak EWMA);
    # cost: the cheapest healthy target. Whatever picks the first, the rest are its fallbacks.
    strategy: str = "ordered"
    retry: RetryConfig | None = None  # None: routing.retry


@dataclass(frozen=True, slots=True)
class HealthConfig:
    """When a route target is ejected (per worker process), and for how long."""

    consecutive_failures: int = 5
    error_rate: float = 0.5  # over the window, once it holds min_requests
    window: Duration = Duration(30.0)
    min_requests: int = 10
    cooldown: Duration = Duration(10.0)  # doubled at each failed probe, up to max_cooldown
    max_cooldown: Duration = Duration(300.0)
    latency_decay: Duration = Duration(10.0)  # peak-EWMA time constant


@dataclass(frozen=True, slots=True)
class RoutingConfig:
    retry: RetryConfig = field(default_factory=RetryConfig)
    health: HealthConfig = field(default_factory=HealthConfig)


@dataclass(frozen=True, slots=True)
class Config:
    server: ServerConfig = field(default_factory=ServerConfig)
    upstream: UpstreamConfig = field(default_factory=UpstreamConfig)
    providers: Mapping[str, ProviderConfig] = field(default_factory=dict)
    # The provider that serves unprefixed /v1/... paths.
    default_provider: str = "openai"
    targets: TargetsConfig = field(default_factory=TargetsConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    cache: CacheConfig = field(default_factory=CacheConfig)
    ratelimit: RateLimitConfig = field(default_factory=RateLimitConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    otel: OtelConfig = field(default_factory=OtelConfig)
    admin: AdminConfig = field(default_factory=AdminConfig)
    auth: AuthConfig = field(default_factory=AuthConfig)
    keys: KeysConfig = field(default_factory=KeysConfig)
    credentials: Mapping[str, CredentialConfig] = field(default_factory=dict)
    routes: Mapping[str, RouteConfig] = field(default_factory=dict)  # model name -> targets (routing/)
    routing: RoutingConfig = field(default_factory=RoutingConfig)
    source: str = ""  # the file this came from, for messages; "" for defaults only


DEFAULT_PROVIDERS: dict[str, dict[str, Any]] = {name: dict(spec) for name, spec in CATALOG.items()}
WIRE_FORMATS = ("openai", "anthropic", "gemini", "bedrock", "azure")  # providers/formats.py has one adapter for each
ROUTE_STRATEGIES = ("ordered", "weighted", "latency", "cost")


# --- loading -----------------------------------------------------------------------------------


def load(path: str | None = None, env: Mapping[str, str] | None = None) -> Config:
    """Defaults, then the file at ``path``, then ``FASTGW__*`` overrides from ``env``; validated."""
    env = os.environ if env is None else env
    source = path or ""
    raw: dict[str, Any] = {}
    if path:
        try:
            with open(path, encoding="utf-8") as f:
                loaded = yaml.safe_load(f)
        except OSError as exc:
            raise ConfigError("", f"cannot read config file: {exc.strerror}", source) from None
        except yaml.YAMLError as exc:
            raise ConfigError("", f"invalid YAML: {exc}", source) from None
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise ConfigError("", "the top level must be a mapping", source)
        raw = _interpolate(loaded, env, "", source)
    _apply_env_overrides(raw, env, source)
    return from_dict(raw, source)


def from_dict(raw: Mapping[str, Any], source: str = "") -> Config:
    data = dict(raw)
    providers_raw = data.pop("providers", None) or {}
    if not isinstance(providers_raw, Mapping):
        raise ConfigError("providers", "must be a mapping of name to provider", source)
    merged: dict[str, Any] = {name: dict(spec) for name, spec in DEFAULT_PROVIDERS.items()}
    for name, spec in providers_raw.items():
        if not isinstance(spec, Mapping):
            raise ConfigError(f"providers.{name}", "must be a mapping", source)
        merged[str(name)] = {**merged.get(str(name), {}), **spec}
    providers = {name: _build(ProviderConfig, spec, f"providers.{name}", source) for name, spec in merged.items()}
    if "source" in data:  # a field we fill in, not a key a file may set
        raise ConfigError("source", "unknown key", source)
    config = _build(Config, {**data, "source": source}, "", source)
    config = dataclasses.replace(config, providers=providers)
    validate(config)
    return config


def validate(config: Config) -> None:
    src = config.source
    s = config.server
    if not 0 <= s.port <= 65535:
        raise ConfigError("server.port", f"{s.port} is not a TCP port", src)
    for key in ("workers", "max_connections", "backlog"):
        if getattr(s, key) < 1:
            raise ConfigError(f"server.{key}", "must be at least 1", src)
    if s.max_head_size < 1024:
        raise ConfigError("server.max_head_size", "must be at least 1KiB", src)
    for key in ("header_timeout", "body_timeout", "keepalive_timeout", "send_timeout"):
        if getattr(s, key) <= 0:
            raise ConfigError(f"server.{key}", "must be positive", src)
    u = config.upstream
    for key in ("connect_timeout", "read_timeout", "idle_timeout"):
        if getattr(u, key) <= 0:
            raise ConfigError(f"upstream.{key}", "must be positive", src)
    if u.max_connections_per_origin < 1:
        raise ConfigError("upstream.max_connections_per_origin", "must be at least 1", src)
    if u.ca_bundle is not None and not os.path.isfile(u.ca_bundle):
        raise ConfigError("upstream.ca_bundle", f"no such file: {u.ca_bundle}", src)
    for name, p in config.providers.items():
        if not re.fullmatch(r"[a-z0-9][a-z0-9_-]*", name):
            raise ConfigError(f"providers.{name}", "names are lower-case letters, digits, - and _", src)
        if name == "v1":
            raise ConfigError("providers.v1", "'v1' is reserved for the default provider's paths", src)
        _check_url(p.base_url, f"providers.{name}.base_url", src)
        if p.format not in WIRE_FORMATS:
            raise ConfigError(f"providers.{name}.format", f"must be one of {', '.join(WIRE_FORMATS)}", src)
        if not p.chat_path.startswith("/"):
            raise ConfigError(f"providers.{name}.chat_path", "must start with /", src)
        if (p.aws_access_key_id is None) != (p.aws_secret_access_key is None):
            raise ConfigError(f"providers.{name}.aws_secret_access_key",
                              "set aws_access_key_id and aws_secret_access_key together, or neither", src)
        if p.region is not None and not re.fullmatch(r"[a-z]{2}(-[a-z]+)+-\d+", p.region):
            raise ConfigError(f"providers.{name}.region", f"{p.region!r} is not an AWS region (us-east-1)", src)
    if config.default_provider not in config.providers:
        raise ConfigError("default_provider", f"no provider named {config.default_provider!r}", src)
    lg = config.logging
    if not re.fullmatch(r"(chdb|jsonl)://.*|https?://.+|none", lg.sink):
        raise ConfigError("logging.sink", f"{lg.sink!r} is not chdb://PATH, http(s)://HOST, jsonl://DIR or none", src)
    if lg.ring_size < 65536 or lg.ring_size & (lg.ring_size - 1):
        raise ConfigError("logging.ring_size", "must be a power of two of at least 64KiB", src)
    if lg.batch_max_records < 1 or lg.batch_max_age <= 0:
        raise ConfigError("logging.batch_max_records", "batches need at least one record and a positive age", src)
    if not 0 <= lg.exporter_nice <= 19:
        raise ConfigError("logging.exporter_nice", "must be between 0 and 19", src)
    if lg.exporter_helpers < -1:
        raise ConfigError("logging.exporter_helpers", "must be -1 (one fewer than the cores), 0 (none) or more", src)
    if lg.body_ttl_days < 0:
        raise ConfigError("logging.body_ttl_days", "must be 0 (forever) or more", src)
    for section in ("cache", "ratelimit"):
        backend = getattr(config, section).backend
        if backend != "memory" and not re.fullmatch(r"rediss?://[^/\s]+(/\d+)?", backend):
            raise ConfigError(f"{section}.backend", f"{backend!r} is not memory or redis://host:port[/db]", src)
        if getattr(config, section).redis_timeout <= 0:
            raise ConfigError(f"{section}.redis_timeout", "must be positive", src)
    c = config.cache
    if c.max_entry_bytes < 1 or c.max_bytes < c.max_entry_bytes:
        raise ConfigError("cache.max_bytes", "must be at least cache.max_entry_bytes (and both positive)", src)
    if not 0 < c.default_ttl <= 365 * 86400:
        raise ConfigError("cache.default_ttl", "must be between 1s and 365d", src)
    if config.ratelimit.users or config.ratelimit.models:
        # Imported here: the ratelimit package loads the Redis client, which a config check needn't.
        from fastgw.ratelimit.policy import PolicyError, parse_policy

        for kind in ("users", "models"):
            for name, text in getattr(config.ratelimit, kind).items():
                try:
                    parse_policy(text)
                except PolicyError as exc:
                    raise ConfigError(f"ratelimit.{kind}.{name}", exc.reason, src) from None
    _validate_keys(config)
    _validate_telemetry(config)
    _validate_admin(config)
    _validate_routes(config)
    for i, entry in enumerate(config.targets.allow):
        if not re.fullmatch(r"https?://(\*\.)?[A-Za-z0-9.\[\]:-]+?(:(\d+|\*))?(/[^?#*]*)?", entry):
            raise ConfigError(f"targets.allow[{i}]", f"{entry!r} is not scheme://host[:port][/path] (host may start with *., port may be *)", src)


def _validate_keys(config: Config) -> None:
    """The auth:, keys: and credentials: sections (gateway keys)."""
    src, k = config.source, config.keys
    if not re.fullmatch(r"sqlite://.+|rediss?://[^/\s]+(/\d+)?", k.backend):
        raise ConfigError("keys.backend", f"{k.backend!r} is not sqlite://PATH or redis://host:port[/db]", src)
    if k.redis_timeout <= 0:
        raise ConfigError("keys.redis_timeout", "must be positive", src)
    for team, budget in k.teams.items():
        for period in ("day", "month", "total"):
            amount = getattr(budget, period)
            if amount is not None and not (amount >= 0 and amount < 1e9):
                raise ConfigError(f"keys.teams.{team}.{period}", "must be a USD amount of 0 or more", src)
    for name, cred in config.credentials.items():
        if cred.provider not in config.providers:
            raise ConfigError(f"credentials.{name}.provider", f"no provider named {cred.provider!r}", src)
        if not cred.api_key:
            raise ConfigError(f"credentials.{name}.api_key", "is empty", src)


def _validate_routes(config: Config) -> None:
    """The routes: and routing: sections."""
    src = config.source
    retries = [("routing.retry", config.routing.retry)]
    for name, route in config.routes.items():
        key = f"routes.{name}"
        if not route.targets:
            raise ConfigError(f"{key}.targets", "needs at least one target", src)
        if route.strategy not in ROUTE_STRATEGIES:
            raise ConfigError(f"{key}.strategy", f"must be one of {', '.join(ROUTE_STRATEGIES)}", src)
        for i, t in enumerate(route.targets):
            if t.provider not in config.providers:
                raise ConfigError(f"{key}.targets[{i}].provider", f"no provider named {t.provider!r}", src)
            if t.credential is not None and t.credential not in config.credentials:
                raise ConfigError(f"{key}.targets[{i}].credential", f"no credential named {t.credential!r}", src)
            if t.api_key is not None and t.credential is not None:
                raise ConfigError(f"{key}.targets[{i}]", "set api_key or credential, not both", src)
            if not 0 < t.weight < 1e6:
                raise ConfigError(f"{key}.targets[{i}].weight", "must be a positive number", src)
        if route.retry is not None:
            retries.append((f"{key}.retry", route.retry))
    for key, r in retries:
        if not 0 <= r.num <= 20:
            raise ConfigError(f"{key}.num", "must be between 0 and 20", src)
        if not 1 <= r.factor <= 10:
            raise ConfigError(f"{key}.factor", "must be between 1 and 10", src)
        if not 0 <= r.min_timeout <= r.max_timeout <= 600:
            raise ConfigError(f"{key}.max_timeout", "needs 0 <= min_timeout <= max_timeout <= 10m", src)
    h = config.routing.health
    if h.consecutive_failures < 1 or h.min_requests < 1:
        raise ConfigError("routing.health.consecutive_failures", "thresholds must be at least 1", src)
    if not 0 < h.error_rate <= 1:
        raise ConfigError("routing.health.error_rate", "must be in (0, 1]", src)
    for k in ("window", "cooldown", "latency_decay"):
        if getattr(h, k) <= 0:
            raise ConfigError(f"routing.health.{k}", "must be positive", src)
    if h.max_cooldown < h.cooldown:
        raise ConfigError("routing.health.max_cooldown", "must be at least routing.health.cooldown", src)


def _validate_telemetry(config: Config) -> None:
    """The metrics: and otel: sections."""
    src, m, o = config.source, config.metrics, config.otel
    for key in ("max_models", "max_providers"):
        if not 1 <= getattr(m, key) <= 10_000:
            raise ConfigError(f"metrics.{key}", "must be between 1 and 10000", src)
    if o.enabled:
        _check_url(o.endpoint, "otel.endpoint", src)
    if not o.service_name:
        raise ConfigError("otel.service_name", "is empty", src)
    if o.timeout <= 0:
        raise ConfigError("otel.timeout", "must be positive", src)


def _validate_admin(config: Config) -> None:
    a, src = config.admin, config.source
    if not 0 <= a.port <= 65535:
        raise ConfigError("admin.port", f"{a.port} is not a TCP port", src)
    if a.enabled and config.logging.enabled:
        from fastgw.analytics.access import key_required

        try:
            key_required(a.host, a.key)
        except ValueError as exc:
            raise ConfigError("admin.key", str(exc), src) from None


def _check_url(url: str, key: str, source: str) -> None:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(key, f"{url!r} is not an http(s) URL", source)
    if parts.query or parts.fragment:
        raise ConfigError(key, "must not have a query or fragment", source)
    try:  # the Host header the gateway will send (providers/table.py Origin)
        (f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname).encode("idna")
    except UnicodeError as exc:
        raise ConfigError(key, f"{url!r} has a host name that can't be sent ({exc})", source) from None


_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


class _EnvText(str):
    """Text that ``${VAR}`` interpolation produced.

    YAML typed the value before interpolation, so ``port: ${PORT}`` reads as a string. Where the
    key wants a number, a bool, a duration or a size, ``_coerce`` reads this text as a YAML scalar,
    as it does ``FASTGW__*`` values; where it wants a string, the text is kept exactly (an API key
    "0123" must not become 83).
    """


def _interpolate(value: Any, env: Mapping[str, str], key: str, source: str) -> Any:
    if isinstance(value, str):

        def sub(m: re.Match[str]) -> str:
            name, default = m.group(1), m.group(2)
            if name in env:
                return env[name]
            if default is not None:
                return default
            raise ConfigError(key, f"environment variable {name} is not set (write ${{{name}:-}} to allow that)", source)

        text, count = _ENV_REF.subn(sub, value)
        return _EnvText(text) if count else value
    if isinstance(value, dict):
        return {k: _interpolate(v, env, f"{key}.{k}" if key else str(k), source) for k, v in value.items()}
    if isinstance(value, list):
        return [_interpolate(v, env, f"{key}[{i}]", source) for i, v in enumerate(value)]
    return value


def _apply_env_overrides(raw: dict[str, Any], env: Mapping[str, str], source: str) -> None:
    for name, text in env.items():
        if not name.startswith(ENV_PREFIX):
            continue
        path = [p.lower() for p in name[len(ENV_PREFIX) :].split("__") if p]
        if not path:
            continue
        node = raw
        for part in path[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(".".join(path), f"set by {name}, but {part} is not a section", source)
            node = child
        try:
            node[path[-1]] = yaml.safe_load(text) if text != "" else ""
        except yaml.YAMLError:
            node[path[-1]] = text


# --- typed construction --------------------------------------------------------------------------


def _build(cls: type, data: Any, key: str, source: str) -> Any:
    if not isinstance(data, Mapping):
        raise ConfigError(key, "must be a mapping", source)
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(map(str, data)) - known)
    if unknown:
        where = f"{key}." if key else ""
        raise ConfigError(f"{where}{unknown[0]}", f"unknown key (known: {', '.join(sorted(known - {'source'}))})", source)
    kwargs = {}
    for name, value in data.items():
        if name == "providers":  # built separately, with its defaults merged
            continue
        kwargs[name] = _coerce(hints[name], value, f"{key}.{name}" if key else name, source)
    try:
        return cls(**kwargs)
    except TypeError as exc:  # a required field is missing
        raise ConfigError(key, str(exc).split("() ", 1)[-1], source) from None


def _coerce(tp: Any, value: Any, key: str, source: str) -> Any:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return _coerce(inner, value, key, source)
    if isinstance(value, _EnvText) and tp in (bool, int, float, Duration, Size):
        value = _scalar(value)
    if dataclasses.is_dataclass(tp):
        return _build(tp, value, key, source)
    if origin is typing.get_origin(Mapping[str, str]):
        if not isinstance(value, Mapping):
            raise ConfigError(key, "must be a mapping", source)
        (k_tp, v_tp) = typing.get_args(tp)
        return {_coerce(k_tp, k, key, source): _coerce(v_tp, v, f"{key}.{k}", source) for k, v in value.items()}
    if origin is tuple:
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list):
            raise ConfigError(key, "must be a list", source)
        (inner, _) = typing.get_args(tp)
        return tuple(_coerce(inner, v, f"{key}[{i}]", source) for i, v in enumerate(value))
    if tp is Duration:
        return _duration(value, key, source)
    if tp is Size:
        return _size(value, key, source)
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(key, f"must be true or false, not {value!r}", source)
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(key, f"must be an integer, not {value!r}", source)
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise ConfigError(key, f"must be a number, not {value!r}", source)
    if tp is str:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
        raise ConfigError(key, f"must be a string, not {value!r}", source)
    raise ConfigError(key, f"unsupported type {tp}", source)  # pragma: no cover - a bug in this module


def _scalar(text: str) -> Any:
    """``text`` read as a YAML scalar; kept as text if it isn't one (the type check then says why)."""
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        return str(text)
    return value if isinstance(value, (bool, int, float, str)) else str(text)


def _duration(value: Any, key: str, source: str) -> Duration:
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0:
        return Duration(value)
    if isinstance(value, str):
        m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)\s*", value)
        if m:
            return Duration(float(m.group(1)) * _DURATION_UNITS[m.group(2)])
    raise ConfigError(key, f"{value!r} is not a duration (a number of seconds, or like '250ms', '30s', '5m')", source)


def _size(value: Any, key: str, source: str) -> Size:
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return Size(value)
    if isinstance(value, str):
        m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*", value)
        if m and m.group(2).lower() in _SIZE_UNITS:
            return Size(int(float(m.group(1)) * _SIZE_UNITS[m.group(2).lower()]))
    raise ConfigError(key, f"{value!r} is not a size (bytes, or like '64KiB', '32MiB')", source)
