"""The order a route's targets are tried in: the first serves, the rest are its fallbacks.

Every strategy works on tiers: targets that may take a request and are under no rate-limit
pressure come first, pressured ones next; ejected targets only when nothing else is left. In that
case (every target ejected) the request still goes out, to the target whose ejection ends soonest,
then the others in the same order: an outage of our own making (refusing while every provider may
already have recovered) is worse than one more request to a provider that may still be failing.

Within a tier:
  ordered   the configured order (a plain fallback chain);
  weighted  weighted random without replacement (Efraimidis-Spirakis keys ``u ** (1 / w)``);
  latency   power of two choices: two distinct targets at random, the lower of latency x (in flight
            + 1) first; the rest by that score. Two random picks rather than the global best keep
            one fast target from being stampeded by every worker at once;
  cost      cheapest first by the configured model's price (unknown prices last).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from fastgw.routing.health import Health


@dataclass(frozen=True, slots=True)
class Candidate:
    key: str  # the target's id in Health
    weight: float = 1.0
    cost: float | None = None  # relative price per request; None: unknown


def order(candidates: Sequence[Candidate], strategy: str, health: Health, now: float,
          rand: Callable[[], float] = random.random) -> list[int]:
    """Indices into ``candidates``, in the order to try them."""
    ready, pressured, ejected = [], [], []
    for i, c in enumerate(candidates):
        if not health.available(c.key, now):
            ejected.append(i)
        elif health.pressured(c.key, now):
            pressured.append(i)
        else:
            ready.append(i)
    if not ready and not pressured:
        return sorted(ejected, key=lambda i: health.get(candidates[i].key).ejected_until)
    prior = health.prior([c.key for c in candidates], now)
    return [*_within(ready, candidates, strategy, health, now, rand, prior),
            *_within(pressured, candidates, strategy, health, now, rand, prior)]


def _within(tier: list[int], candidates: Sequence[Candidate], strategy: str, health: Health, now: float,
            rand: Callable[[], float], prior: float) -> list[int]:
    if len(tier) < 2 or strategy == "ordered":
        return tier
    if strategy == "weighted":
        keys = {i: _weight_key(rand(), candidates[i].weight) for i in tier}
        return sorted(tier, key=lambda i: -keys[i])
    if strategy == "cost":
        return sorted(tier, key=lambda i: (candidates[i].cost is None, candidates[i].cost or 0.0))
    if strategy == "latency":
        score = {i: health.latency(candidates[i].key, now, prior) * (health.get(candidates[i].key).in_flight + 1)
                 for i in tier}
        a = tier[min(int(rand() * len(tier)), len(tier) - 1)]
        others = [i for i in tier if i != a]
        b = others[min(int(rand() * len(others)), len(others) - 1)]
        first = a if score[a] <= score[b] else b
        return [first, *sorted((i for i in tier if i != first), key=lambda i: score[i])]
    raise ValueError(f"unknown strategy {strategy!r}")


def _weight_key(u: float, weight: float) -> float:
    return max(u, 1e-12) ** (1.0 / weight)
