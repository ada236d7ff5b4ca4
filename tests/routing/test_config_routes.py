"""routes: and routing: config: what loads, and errors that name the key and the file."""

from __future__ import annotations

from pathlib import Path

import pytest

from fastgw.config import ConfigError, from_dict, load
from fastgw.providers.table import build_table
from fastgw.routing.table import build_routes

PROVIDERS = {"a": {"base_url": "http://127.0.0.1:9001"}, "b": {"base_url": "http://127.0.0.1:9002", "format": "anthropic"}}


def test_a_route_loads_with_its_targets_keys_and_retry() -> None:
    cfg = from_dict({
        "providers": PROVIDERS,
        "credentials": {"team-b": {"provider": "b", "api_key": "sk-ant-cred"}},
        "routes": {"smart": {"strategy": "cost", "retry": {"enabled": True, "num": 2, "min_timeout": "50ms"},
                             "targets": [{"provider": "a", "model": "gpt-4o", "api_key": "sk-a", "weight": 2},
                                         {"provider": "b", "model": "claude-sonnet-4-5", "credential": "team-b"},
                                         {"provider": "a", "model": "gpt-4o"}]}},
        "routing": {"retry": {"enabled": False}, "health": {"cooldown": "2s", "max_cooldown": "1m"}},
    })
    route = build_routes(cfg, build_table(cfg))["smart"]
    assert [t.key for t in route.targets] == ["a/gpt-4o", "b/claude-sonnet-4-5", "a/gpt-4o'"]
    assert route.targets[0].provider.auth_line == b"authorization: Bearer sk-a\r\n"
    assert route.targets[1].provider.auth_line == b"x-api-key: sk-ant-cred\r\n"
    assert route.targets[2].provider.auth_line is None  # the client's credential passes
    assert route.retry is not None and (route.retry.num, route.retry.min_timeout) == (2, 0.05)
    assert route.candidates[0].weight == 2.0 and route.candidates[0].cost is not None  # gpt-4o is priced
    assert cfg.routing.health.cooldown == 2.0


@pytest.mark.parametrize("routes,routing,key", [
    ({"x": {"targets": []}}, {}, "routes.x.targets"),
    ({"x": {"targets": [{"provider": "nope"}]}}, {}, "routes.x.targets[0].provider"),
    ({"x": {"targets": [{"provider": "a"}], "strategy": "fastest"}}, {}, "routes.x.strategy"),
    ({"x": {"targets": [{"provider": "a", "weight": 0}]}}, {}, "routes.x.targets[0].weight"),
    ({"x": {"targets": [{"provider": "a", "credential": "missing"}]}}, {}, "routes.x.targets[0].credential"),
    ({"x": {"targets": [{"provider": "a", "modle": "m"}]}}, {}, "routes.x.targets[0].modle"),
    ({"x": {"targets": [{"provider": "a"}], "retry": {"num": 99}}}, {}, "routes.x.retry.num"),
    ({}, {"retry": {"min_timeout": "5s", "max_timeout": "1s"}}, "routing.retry.max_timeout"),
    ({}, {"health": {"error_rate": 1.5}}, "routing.health.error_rate"),
    ({}, {"health": {"cooldown": "1m", "max_cooldown": "10s"}}, "routing.health.max_cooldown"),
])
def test_errors_name_the_key_and_the_file(tmp_path: Path, routes: dict, routing: dict, key: str) -> None:
    import yaml

    path = tmp_path / "fastgw.yaml"
    path.write_text(yaml.safe_dump({"providers": PROVIDERS, "routes": routes, "routing": routing}))
    with pytest.raises(ConfigError) as info:
        load(str(path), env={})
    assert info.value.key == key and str(path) in str(info.value)
