"""The auth:, keys: and credentials: config sections: defaults, and errors that name key and file."""

from __future__ import annotations

from pathlib import Path

import pytest

from fastgw.config import ConfigError, load
from fastgw.stages.auth import exposure_warning


def write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "fastgw.yaml"
    path.write_text(text)
    return str(path)


def test_defaults() -> None:
    c = load(None, env={})
    assert c.auth.required is False
    assert c.keys.backend == "sqlite://./fastgw-keys.db" and c.keys.cache_ttl == 5.0
    assert c.credentials == {} and c.keys.teams == {}


def test_sections_load_with_env_interpolation(tmp_path: Path) -> None:
    path = write(tmp_path, """
auth: {required: true}
keys: {backend: "redis://127.0.0.1:6379/2", cache_ttl: 250ms, teams: {research: {day: 1.5, total: 100}}}
credentials: {team-openai: {provider: openai, api_key: "${OPENAI_KEY}"}}
""")
    c = load(path, env={"OPENAI_KEY": "sk-123", "FASTGW__AUTH__REQUIRED": "false"})
    assert c.auth.required is False  # the env override wins over the file
    assert c.keys.cache_ttl == 0.25 and c.keys.teams["research"].day == 1.5 and c.keys.teams["research"].month is None
    assert c.credentials["team-openai"].api_key == "sk-123"


@pytest.mark.parametrize(("text", "key", "words"), [
    ("keys: {backend: mysql://x}", "keys.backend", "sqlite://PATH or redis://"),
    ("keys: {cache_tll: 5s}", "keys.cache_tll", "unknown key"),
    ("keys: {teams: {a: {day: -1}}}", "keys.teams.a.day", "0 or more"),
    ("keys: {teams: {a: {weekly: 3}}}", "keys.teams.a.weekly", "unknown key"),
    ("keys: {teams: {a: {day: lots}}}", "keys.teams.a.day", "must be a number"),
    ("credentials: {c: {provider: nope, api_key: k}}", "credentials.c.provider", "no provider named 'nope'"),
    ("credentials: {c: {provider: openai}}", "credentials.c", "api_key"),
    ("auth: {required: maybe}", "auth.required", "true or false"),
])
def test_errors_name_the_key_and_the_file(tmp_path: Path, text: str, key: str, words: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as exc:
        load(path, env={})
    assert exc.value.key == key and words in str(exc.value) and path in str(exc.value)


@pytest.mark.parametrize(("host", "required", "warns"), [
    ("127.0.0.1", False, False), ("::1", False, False), ("localhost", False, False),
    ("0.0.0.0", False, True), ("10.1.2.3", False, True), ("gw.internal", False, True), ("0.0.0.0", True, False),
])
def test_exposure_warning(tmp_path: Path, host: str, required: bool, warns: bool) -> None:
    c = load(write(tmp_path, f"server: {{host: '{host}'}}\nauth: {{required: {str(required).lower()}}}"), env={})
    assert (exposure_warning(c) is not None) == warns
