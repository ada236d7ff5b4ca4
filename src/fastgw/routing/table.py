"""Routes from config, resolved once at start: a model name -> its targets, ready to send to."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from fastgw.config import Config, RouteConfig
from fastgw.providers.table import Provider
from fastgw.requestlog.prices import PriceTable
from fastgw.routing.balance import Candidate
from fastgw.routing.retry import RetryPolicy


@dataclass(frozen=True, slots=True)
class Target:
    key: str  # "<provider>/<model or ''>", unique within the route: its health and log name
    provider: Provider  # with the target's own key injected, if it has one
    model: str | None  # None: the model the client asked for


@dataclass(frozen=True, slots=True)
class Route:
    name: str
    targets: tuple[Target, ...]
    candidates: tuple[Candidate, ...]  # the same targets, as the balancer sees them
    strategy: str
    retry: RetryPolicy | None  # None: no retries unless the request asks (Helicone-Retry-Enabled)


def build_routes(config: Config, providers: dict[str, Provider], prices: PriceTable | None = None) -> dict[str, Route]:
    prices = prices if prices is not None else PriceTable.load(config.logging.prices_file)
    default_retry = RetryPolicy.from_config(config.routing.retry)
    return {name: _route(name, rc, config, providers, prices, default_retry) for name, rc in config.routes.items()}


def _route(name: str, rc: RouteConfig, config: Config, providers: dict[str, Provider], prices: PriceTable,
           default_retry: RetryPolicy | None) -> Route:
    targets, candidates, seen = [], [], set()
    for tc in rc.targets:
        provider = providers[tc.provider]
        key = tc.api_key if tc.credential is None else config.credentials[tc.credential].api_key
        if key:
            # The target's own key replaces the provider's, for pass-through and translated attempts.
            provider = dataclasses.replace(provider, auth_line=provider.format.auth_line(key), api_key=key)
        tkey = f"{tc.provider}/{tc.model or ''}"
        while tkey in seen:  # the same provider and model twice (two keys): still two targets
            tkey += "'"
        seen.add(tkey)
        targets.append(Target(tkey, provider, tc.model))
        price = prices.resolve(tc.provider, tc.model or name)
        cost = float(price.input + price.output) if price is not None else None
        candidates.append(Candidate(f"{name}:{tkey}", tc.weight, cost))
    retry = RetryPolicy.from_config(rc.retry) if rc.retry is not None else default_retry
    return Route(name, tuple(targets), tuple(candidates), rc.strategy, retry)
