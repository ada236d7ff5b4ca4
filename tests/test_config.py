"""fastgw.config: defaults, the YAML file, ${VAR} interpolation, FASTGW__* overrides, validation."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from fastgw.config import Config, ConfigError, Duration, Size, load
from fastgw.providers.catalog import CATALOG


def write(tmp_path: Path, text: str, name: str = "fastgw.yaml") -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def load_error(path: str | None, env: dict[str, str] | None = None) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load(path, env={} if env is None else env)
    return info.value


# --- defaults and the file -----------------------------------------------------------------------


def test_defaults_without_a_file() -> None:
    config = load(None, env={})
    assert isinstance(config, Config)
    assert (config.server.host, config.server.port, config.server.workers) == ("127.0.0.1", 8787, 1)
    assert config.default_provider == "openai"
    assert set(config.providers) == set(CATALOG)  # the built-in providers (providers/catalog.py)
    assert config.providers["openai"].base_url == "https://api.openai.com"
    assert config.providers["openai"].format == "openai"
    assert config.providers["anthropic"].format == "anthropic"
    assert config.upstream.verify is True and config.upstream.ca_bundle is None
    assert config.source == ""


def test_empty_file_is_the_defaults(tmp_path: Path) -> None:
    config = load(write(tmp_path, ""), env={})
    assert config.server.port == 8787
    assert set(config.providers) == set(CATALOG)  # the built-in providers (providers/catalog.py)


def test_file_with_providers(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
server:
  host: 0.0.0.0
  port: 9100
  workers: 4
providers:
  local:
    base_url: http://127.0.0.1:8000/v1
    format: openai
    api_key: sk-local
  openai:
    base_url: https://openai.example.com
default_provider: local
targets:
  allow: ["https://api.together.xyz", "https://*.groq.com"]
""",
    )
    config = load(path, env={})
    assert config.source == path
    assert (config.server.host, config.server.port, config.server.workers) == ("0.0.0.0", 9100, 4)
    assert set(config.providers) == set(CATALOG) | {"local"}
    local = config.providers["local"]
    assert (local.base_url, local.format, local.api_key) == ("http://127.0.0.1:8000/v1", "openai", "sk-local")
    # Overriding a built-in keeps its other defaults.
    assert config.providers["openai"].base_url == "https://openai.example.com"
    assert config.providers["openai"].format == "openai"
    assert config.default_provider == "local"
    assert config.targets.allow == ("https://api.together.xyz", "https://*.groq.com")


def test_missing_file_is_an_error(tmp_path: Path) -> None:
    path = str(tmp_path / "nope.yaml")
    err = load_error(path)
    assert "cannot read config file" in str(err)
    assert path in str(err)


def test_invalid_yaml_and_non_mapping(tmp_path: Path) -> None:
    assert "invalid YAML" in str(load_error(write(tmp_path, "server: [1, 2\n")))
    assert "top level must be a mapping" in str(load_error(write(tmp_path, "- 1\n- 2\n")))


# --- interpolation -------------------------------------------------------------------------------


def test_env_interpolation(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
server:
  host: ${GW_HOST}
providers:
  local:
    base_url: http://${LOCAL_HOST:-localhost}:${LOCAL_PORT:-8000}/v1
    api_key: ${LOCAL_KEY}
""",
    )
    config = load(path, env={"GW_HOST": "10.0.0.1", "LOCAL_KEY": "sk-from-env"})
    assert config.server.host == "10.0.0.1"
    assert config.providers["local"].base_url == "http://localhost:8000/v1"
    assert config.providers["local"].api_key == "sk-from-env"
    env = {"GW_HOST": "h", "LOCAL_KEY": "k", "LOCAL_HOST": "llm.internal", "LOCAL_PORT": "9"}
    assert load(path, env=env).providers["local"].base_url == "http://llm.internal:9/v1"


def test_interpolated_empty_default(tmp_path: Path) -> None:
    path = write(tmp_path, "upstream:\n  https_proxy: ${PROXY:-}\n")
    assert load(path, env={}).upstream.https_proxy == ""


def test_interpolation_gives_typed_values(tmp_path: Path) -> None:
    """``port: ${PORT}`` is a port: the value is typed as the key wants, as FASTGW__* values are."""
    path = write(
        tmp_path,
        """
server:
  port: ${PORT:-9000}
  workers: ${WORKERS}
  max_body_size: ${MAX_BODY:-1024}
upstream:
  verify: ${VERIFY:-true}
  read_timeout: ${READ_TIMEOUT}
providers:
  local:
    base_url: http://127.0.0.1:8000
    api_key: ${LOCAL_KEY}
""",
    )
    config = load(path, env={"WORKERS": "3", "READ_TIMEOUT": "90", "LOCAL_KEY": "0123"})
    assert config.server.port == 9000
    assert config.server.workers == 3
    assert config.server.max_body_size == 1024
    assert config.upstream.verify is True
    assert config.upstream.read_timeout == 90.0
    assert config.providers["local"].api_key == "0123"  # a string key stays exactly the text
    config = load(path, env={"PORT": "9001", "WORKERS": "2", "VERIFY": "false", "READ_TIMEOUT": "2m",
                             "LOCAL_KEY": "k", "MAX_BODY": "2MiB"})
    assert (config.server.port, config.upstream.verify, config.upstream.read_timeout) == (9001, False, 120.0)
    assert config.server.max_body_size == 2 * 1024 * 1024
    err = load_error(path, {"PORT": "abc", "WORKERS": "1", "READ_TIMEOUT": "1", "LOCAL_KEY": "k"})
    assert err.key == "server.port"
    assert "must be an integer" in str(err)


def test_missing_env_var_names_key_and_file(tmp_path: Path) -> None:
    path = write(tmp_path, "providers:\n  local:\n    base_url: http://x\n    api_key: ${LOCAL_KEY}\n")
    err = load_error(path, {})
    assert err.key == "providers.local.api_key"
    assert err.source == path
    assert str(err).startswith("providers.local.api_key: environment variable LOCAL_KEY is not set")
    assert path in str(err)


# --- FASTGW__* overrides -------------------------------------------------------------------------


def test_env_overrides(tmp_path: Path) -> None:
    path = write(tmp_path, "server:\n  port: 8000\nproviders:\n  local:\n    base_url: http://a:1\n")
    config = load(path, env={"FASTGW__SERVER__PORT": "9000", "FASTGW__PROVIDERS__LOCAL__BASE_URL": "http://b:2/v1"})
    assert config.server.port == 9000
    assert config.providers["local"].base_url == "http://b:2/v1"
    assert config.providers["local"].format == "openai"


def test_env_overrides_without_a_file() -> None:
    env = {
        "FASTGW__SERVER__PORT": "9000",
        "FASTGW__UPSTREAM__READ_TIMEOUT": "250ms",
        "FASTGW__UPSTREAM__VERIFY": "false",
        "FASTGW__PROVIDERS__LOCAL__BASE_URL": "http://127.0.0.1:8000",
        "FASTGW__DEFAULT_PROVIDER": "local",
        "UNRELATED": "x",
    }
    config = load(None, env=env)
    assert config.server.port == 9000
    assert config.upstream.read_timeout == 0.25
    assert config.upstream.verify is False
    assert config.providers["local"].base_url == "http://127.0.0.1:8000"
    assert config.default_provider == "local"


def test_env_override_with_a_bad_value_names_the_key() -> None:
    err = load_error(None, {"FASTGW__SERVER__PORT": "abc"})
    assert err.key == "server.port"
    err = load_error(None, {"FASTGW__SERVER__PROT": "1"})
    assert err.key == "server.prot"


# --- validation ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("prot: 1\n", "prot"),
        ("server:\n  prot: 9000\n", "server.prot"),
        ("upstream:\n  idle_timout: 3\n", "upstream.idle_timout"),
        ("providers:\n  openai:\n    baseurl: https://x\n", "providers.openai.baseurl"),
    ],
)
def test_unknown_keys_are_errors(tmp_path: Path, text: str, key: str) -> None:
    path = write(tmp_path, text)
    err = load_error(path)
    assert err.key == key
    assert str(err).startswith(f"{key}: unknown key")
    assert str(err).endswith(f" in {path}")


@pytest.mark.parametrize(
    ("text", "key", "message"),
    [
        ("server:\n  port: abc\n", "server.port", "must be an integer, not 'abc'"),
        ("server:\n  port: 70000\n", "server.port", "is not a TCP port"),
        ("server:\n  workers: 0\n", "server.workers", "must be at least 1"),
        ("server:\n  workers: 1.5\n", "server.workers", "must be an integer"),
        ("server:\n  port: true\n", "server.port", "must be an integer"),
        ("upstream:\n  verify: 'yes'\n", "upstream.verify", "must be true or false"),
        ("upstream:\n  verify: 1\n", "upstream.verify", "must be true or false"),
        ("server:\n  host: [a]\n", "server.host", "must be a string"),
        ("server: 5\n", "server", "must be a mapping"),
        ("providers: [a]\n", "providers", "must be a mapping"),
        ("providers:\n  local: http://x\n", "providers.local", "must be a mapping"),
        ("providers:\n  local:\n    format: openai\n", "providers.local", "base_url"),
        ("upstream:\n  max_connections_per_origin: 0\n", "upstream.max_connections_per_origin", "at least 1"),
        ("logging:\n  exporter_helpers: -2\n", "logging.exporter_helpers", "must be -1"),
        ("providers:\n  local:\n    base_url: https://%s.example\n" % ("a" * 64), "providers.local.base_url",
         "has a host name that can't be sent"),
    ],
)
def test_wrong_types_and_values(tmp_path: Path, text: str, key: str, message: str) -> None:
    path = write(tmp_path, text)
    err = load_error(path)
    assert err.key == key
    assert message in str(err)
    assert path in str(err)


@pytest.mark.parametrize(
    ("value", "seconds"),
    [("250ms", 0.25), ("30s", 30.0), ("5m", 300.0), ("1h", 3600.0), ("7d", 604800.0), ("1.5s", 1.5),
     (3, 3.0), (0.5, 0.5)],
)
def test_durations(tmp_path: Path, value: object, seconds: float) -> None:
    config = load(write(tmp_path, f"upstream:\n  idle_timeout: {value}\n"), env={})
    assert isinstance(config.upstream.idle_timeout, Duration)
    assert config.upstream.idle_timeout == pytest.approx(seconds)


@pytest.mark.parametrize("value", ["5 minutes", "-1", "-1s", "ms", "true", "[1]"])
def test_bad_durations(tmp_path: Path, value: str) -> None:
    err = load_error(write(tmp_path, f"upstream:\n  idle_timeout: {value}\n"))
    assert err.key == "upstream.idle_timeout"
    assert "is not a duration" in str(err)


@pytest.mark.parametrize(
    ("value", "size"),
    [("64KiB", 65536), ("32MiB", 32 * 1024 * 1024), ("1GB", 10**9), ("2kb", 2000), ("512B", 512), (1024, 1024)],
)
def test_sizes(tmp_path: Path, value: object, size: int) -> None:
    config = load(write(tmp_path, f"server:\n  max_body_size: {value}\n"), env={})
    assert isinstance(config.server.max_body_size, Size)
    assert config.server.max_body_size == size


@pytest.mark.parametrize("value", ["64 KB/s", "lots", "-5", "1.5"])
def test_bad_sizes(tmp_path: Path, value: str) -> None:
    err = load_error(write(tmp_path, f"server:\n  max_body_size: {value}\n"))
    assert err.key == "server.max_body_size"
    assert "is not a size" in str(err)


@pytest.mark.parametrize("url", ["api.example.com", "ftp://example.com", "http://", "https://x.com/v1?key=1"])
def test_invalid_base_url(tmp_path: Path, url: str) -> None:
    err = load_error(write(tmp_path, f"providers:\n  local:\n    base_url: '{url}'\n"))
    assert err.key == "providers.local.base_url"


def test_unknown_format(tmp_path: Path) -> None:
    err = load_error(write(tmp_path, "providers:\n  local:\n    base_url: http://x\n    format: bedrock-x\n"))
    assert err.key == "providers.local.format"
    assert "must be one of openai, anthropic, gemini" in str(err)


def test_default_provider_must_be_declared(tmp_path: Path) -> None:
    err = load_error(write(tmp_path, "default_provider: local\n"))
    assert err.key == "default_provider"
    assert "no provider named 'local'" in str(err)


@pytest.mark.parametrize("name", ["Local", "v1", "my provider"])
def test_bad_provider_names(tmp_path: Path, name: str) -> None:
    err = load_error(write(tmp_path, f"providers:\n  '{name}':\n    base_url: http://x\n"))
    assert err.key == f"providers.{name}"


def test_ca_bundle_must_exist(tmp_path: Path) -> None:
    err = load_error(write(tmp_path, f"upstream:\n  ca_bundle: {tmp_path / 'missing.pem'}\n"))
    assert err.key == "upstream.ca_bundle"
    (tmp_path / "ca.pem").write_text("x")
    assert load(write(tmp_path, f"upstream:\n  ca_bundle: {tmp_path / 'ca.pem'}\n"), env={}).upstream.ca_bundle


# --- fastgw check-config --------------------------------------------------------------------------


def check_config(path: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FASTGW__")}
    return subprocess.run(
        [sys.executable, "-m", "fastgw", "check-config", path], capture_output=True, text=True, env=env, timeout=60
    )


def test_check_config_ok(tmp_path: Path) -> None:
    path = write(tmp_path, "providers:\n  local:\n    base_url: http://127.0.0.1:8000\ndefault_provider: local\n")
    proc = check_config(path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"{path}: ok"
    assert proc.stderr == ""


def test_check_config_bad_file(tmp_path: Path) -> None:
    path = write(tmp_path, "server:\n  prot: 9000\n")
    proc = check_config(path)
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert proc.stderr.startswith("fastgw: server.prot: unknown key")
    assert path in proc.stderr


def test_upstream_timeouts_must_be_positive_and_source_is_not_a_key() -> None:
    from fastgw.config import ConfigError, from_dict

    with pytest.raises(ConfigError, match="upstream.read_timeout: must be positive in f.yaml"):
        from_dict({"upstream": {"read_timeout": 0}}, "f.yaml")
    with pytest.raises(ConfigError, match="source: unknown key"):
        from_dict({"source": "elsewhere"}, "f.yaml")


def test_cache_and_ratelimit_sections(tmp_path: Path) -> None:
    f = tmp_path / "c.yaml"
    f.write_text("cache: {backend: 'redis://127.0.0.1:6379/0', max_bytes: 64MiB, default_ttl: 1h}\n"
                 "ratelimit: {backend: 'redis://127.0.0.1:6379/1', fail_open: false,\n"
                 "            users: {'*': '100;w=60', bot: '5;w=60;u=cents'}, models: {gpt-4o: '10;w=3600'}}\n")
    c = load(str(f), env={})
    assert c.cache.backend == "redis://127.0.0.1:6379/0" and c.cache.max_bytes == 64 * 1024 * 1024
    assert c.cache.default_ttl == 3600
    assert c.ratelimit.fail_open is False
    assert dict(c.ratelimit.users) == {"*": "100;w=60", "bot": "5;w=60;u=cents"}
    assert dict(c.ratelimit.models) == {"gpt-4o": "10;w=3600"}
    defaults = load(None, env={})
    assert defaults.cache.backend == defaults.ratelimit.backend == "memory" and defaults.ratelimit.fail_open


@pytest.mark.parametrize(("text", "key", "needle"), [
    ("cache: {backend: 'memcached://x'}", "cache.backend", "redis://"),
    ("ratelimit: {backend: 'redis://'}", "ratelimit.backend", "redis://"),
    ("ratelimit: {users: {alice: '10;w=30'}}", "ratelimit.users.alice", "60"),
    ("ratelimit: {models: {gpt-4o: 'ten;w=60'}}", "ratelimit.models.gpt-4o", "quota"),
    ("ratelimit: {users: [a, b]}", "ratelimit.users", "mapping"),
    ("cache: {default_ttl: 400d}", "cache.default_ttl", "365d"),
    ("cache: {max_bytes: 1MiB}", "cache.max_bytes", "max_entry_bytes"),
    ("ratelimit: {keys: {k1: '1;w=60'}}", "ratelimit.keys", "unknown key"),
])
def test_bad_cache_and_ratelimit_config_names_the_key(tmp_path: Path, text: str, key: str, needle: str) -> None:
    f = tmp_path / "bad.yaml"
    f.write_text(text + "\n")
    with pytest.raises(ConfigError) as info:
        load(str(f), env={})
    assert info.value.key == key
    assert needle in str(info.value) and str(f) in str(info.value)
