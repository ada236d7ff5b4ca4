"""Balancing: each strategy's order, health tiers, and the all-ejected case. Seeded randomness."""

from __future__ import annotations

import math
import random
from collections import Counter

from fastgw.config import HealthConfig
from fastgw.routing.balance import Candidate, order
from fastgw.routing.health import Health

CFG = HealthConfig(consecutive_failures=1, cooldown=10.0, max_cooldown=40.0, latency_decay=5.0)
A, B, C = Candidate("a", 1.0, 3.0), Candidate("b", 3.0, 1.0), Candidate("c", 1.0, None)


def eject(h: Health, key: str, now: float) -> None:
    h.finished(key, now, True, None, h.started(key, now))


def test_ordered_keeps_config_order() -> None:
    assert order([A, B, C], "ordered", Health(CFG), 0.0) == [0, 1, 2]


def test_weighted_follows_the_weights() -> None:
    rng = random.Random(7)
    firsts = Counter(order([A, B], "weighted", Health(CFG), 0.0, rng.random)[0] for _ in range(4000))
    assert 0.70 < firsts[1] / 4000 < 0.80  # weight 3 of 4


def test_cost_puts_the_cheapest_first_and_unknown_prices_last() -> None:
    assert order([A, B, C], "cost", Health(CFG), 0.0) == [1, 0, 2]


def test_latency_prefers_the_faster_and_never_picks_the_slowest_of_three_first() -> None:
    h = Health(CFG)
    for key, lat in (("a", 0.3), ("b", 0.05), ("c", 0.2)):
        h.started(key, 0.0)
        h.finished(key, 0.0, False, lat)
    rng = random.Random(1)
    firsts = Counter(order([A, B, C], "latency", h, 0.0, rng.random)[0] for _ in range(3000))
    assert firsts[0] == 0  # the slowest loses every pair it is in
    assert firsts[1] > firsts[2] > 0  # two random choices: the fastest most, the middle when b isn't drawn
    assert order([A, B, C], "latency", h, 0.0, lambda: 0.0)[1:] in ([1, 2], [2, 1], [1, 0], [2, 0])


def test_latency_counts_requests_in_flight() -> None:
    h = Health(CFG)
    for key in ("a", "b"):
        h.started(key, 0.0)
        h.finished(key, 0.0, False, 0.1)
    for _ in range(3):
        h.started("a", 0.0)  # three requests still out on a
    assert order([A, B], "latency", h, 0.0, random.Random(3).random)[0] == 1


def test_ejected_targets_are_left_out_pressured_ones_go_last() -> None:
    h = Health(CFG)
    eject(h, "a", 0.0)
    h.rate_limit_hint("b", 0.0, 5.0, None)
    assert order([A, B, C], "ordered", h, 1.0) == [2, 1]
    assert order([A, B, C], "ordered", h, 11.0) == [0, 1, 2]  # a's cool-down and b's pressure are over


def test_when_all_are_ejected_the_one_back_soonest_goes_first() -> None:
    h = Health(CFG)
    eject(h, "b", 0.0)
    eject(h, "a", 2.0)
    eject(h, "c", 1.0)
    assert order([A, B, C], "latency", h, 3.0) == [1, 2, 0]


def test_a_slow_target_left_alone_is_tried_again_later() -> None:
    h = Health(CFG)  # latency_decay 5 s: an estimate nobody refreshes fades with that time constant
    for key, lat in (("a", 0.3), ("b", 0.05)):
        h.started(key, 0.0)
        h.finished(key, 0.0, False, lat)
    for t in range(1, 11):  # b keeps serving (and being measured); a gets nothing
        h.started("b", float(t))
        h.finished("b", float(t), False, 0.05)
        now = t + 0.01
        first = order([A, B], "latency", h, now, random.Random(0).random)[0]
        assert first == (1 if 0.3 * math.exp(-now / 5) > 0.05 else 0), t  # a back after 5 * ln(6) = 9 s


def test_an_unmeasured_target_is_an_even_draw_against_a_measured_one() -> None:
    h = Health(CFG)
    h.started("a", 0.0)
    h.finished("a", 0.0, False, 0.2)
    rng = random.Random(5)
    firsts = Counter(order([A, B], "latency", h, 3.0, rng.random)[0] for _ in range(2000))
    assert 800 < firsts[1] < 1200  # b, never measured, is neither favoured nor shunned
