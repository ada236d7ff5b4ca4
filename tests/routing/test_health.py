"""Health: ejection on a run of failures or an error rate, half-open probes, cool-downs that
grow, rate-limit pressure and the peak-EWMA latency. The clock is a number we pass in."""

from __future__ import annotations

import math

import pytest

from fastgw.config import HealthConfig
from fastgw.routing.health import NEUTRAL_LATENCY_S, Health, State

CFG = HealthConfig(consecutive_failures=3, error_rate=0.5, window=10.0, min_requests=6, cooldown=5.0,
                   max_cooldown=12.0, latency_decay=1.0)


def outcome(h: Health, now: float, failed: bool, latency: float | None = 0.1, key: str = "t") -> None:
    h.finished(key, now, failed, latency, h.started(key, now))


def test_a_run_of_failures_ejects_for_the_cooldown() -> None:
    h = Health(CFG)
    outcome(h, 0.0, True)
    outcome(h, 0.1, True)
    assert h.available("t", 0.2)
    outcome(h, 0.2, True)
    assert h.get("t").state == State.EJECTED
    assert not h.available("t", 5.1) and h.available("t", 5.2 + 0.01)


def test_a_success_resets_the_run() -> None:
    h = Health(CFG)
    for i, failed in enumerate([True, True, False, True, True]):
        outcome(h, i * 0.1, failed)
    assert h.get("t").state == State.CLOSED


def test_error_rate_over_the_window_ejects_only_with_enough_requests() -> None:
    h = Health(CFG)
    for i, failed in enumerate([True, False, True, False, True]):  # 3 of 5: below min_requests
        outcome(h, float(i), failed)
    assert h.get("t").state == State.CLOSED
    outcome(h, 5.0, False)  # 3 of 6 = 0.5
    assert h.get("t").state == State.EJECTED


def test_old_answers_leave_the_window() -> None:
    h = Health(CFG)
    for i in range(4):
        outcome(h, float(i), i % 2 == 1)
    for i in range(4):  # 20 s later: the early failures no longer count
        outcome(h, 20.0 + i, False)
    assert h.get("t").failures_in_window == 0 and len(h.get("t").events) == 4


def test_half_open_allows_one_probe_success_closes() -> None:
    h = Health(CFG)
    for i in range(3):
        outcome(h, 0.0, True)
    probe = h.started("t", 6.0)
    assert h.get("t").state == State.HALF_OPEN
    assert not h.available("t", 6.5)  # the probe is out: nobody else
    h.finished("t", 7.0, False, 0.1, probe)
    assert h.get("t").state == State.CLOSED and h.get("t").ejections == 0 and h.available("t", 7.0)


def test_failed_probe_ejects_again_for_longer_up_to_the_cap() -> None:
    h = Health(CFG)
    for i in range(3):
        outcome(h, 0.0, True)
    assert h.get("t").ejected_until == 5.0
    outcome(h, 6.0, True)  # probe fails: 10 s
    assert h.get("t").ejected_until == 16.0
    outcome(h, 17.0, True)  # 20 s, capped at 12
    assert h.get("t").ejected_until == 29.0


def test_a_probe_that_never_reports_is_given_up_after_a_cooldown() -> None:
    h = Health(CFG)
    for i in range(3):
        outcome(h, 0.0, True)
    probe = h.started("t", 6.0)
    assert not h.available("t", 10.9) and h.available("t", 11.0)
    h.abandoned("t", probe)
    assert h.available("t", 6.1) and h.get("t").in_flight == 0


def test_rate_limit_hints_are_pressure_not_failure() -> None:
    h = Health(CFG)
    h.rate_limit_hint("t", 0.0, retry_after=2.0, remaining=None)
    assert h.pressured("t", 1.9) and not h.pressured("t", 2.0)
    h.rate_limit_hint("t", 10.0, retry_after=None, remaining=50)
    assert not h.pressured("t", 10.0)
    h.rate_limit_hint("t", 10.0, retry_after=None, remaining=0)
    assert h.pressured("t", 14.9) and h.get("t").state == State.CLOSED


def test_peak_ewma_jumps_up_decays_down_and_fades_to_the_prior() -> None:
    h = Health(CFG)
    assert h.latency("t", 0.0, prior=0.3) == 0.3  # unknown: the neutral prior
    outcome(h, 0.0, False, 0.1)
    outcome(h, 0.0, False, 0.5)
    assert h.get("t").latency == 0.5  # a slow answer counts at once
    outcome(h, 1.0, False, 0.1)  # one time constant later: e^-1 of the old value remains
    assert h.get("t").latency == pytest.approx(0.5 * 0.36788 + 0.1 * 0.63212, rel=1e-4)
    assert h.latency("t", 1.0, prior=1.0) == pytest.approx(h.get("t").latency)  # fresh: as measured
    fresh = h.get("t").latency
    assert h.latency("t", 2.0, prior=1.0) == pytest.approx(fresh * math.exp(-1))  # one decay later
    assert h.latency("t", 100.0, prior=1.0) < 1e-5  # stale: it will be tried (and measured) again


def test_prior_is_the_mean_of_measured_targets() -> None:
    h = Health(CFG)
    assert h.prior(["a", "b"], 0.0) == NEUTRAL_LATENCY_S
    outcome(h, 0.0, False, 0.2, key="a")
    outcome(h, 0.0, False, 0.4, key="b")
    assert h.prior(["a", "b", "c"], 0.0) == pytest.approx(0.3)
    assert h.prior(["a", "c"], 2.0) == h.latency("a", 2.0, 0.0)  # one measured target: an even draw


def test_a_request_sent_to_an_ejected_target_anyway_is_its_probe() -> None:
    h = Health(CFG)
    for i in range(3):
        outcome(h, 0.0, True)
    probe = h.started("t", 1.0)  # every target of the route was ejected: this one was least bad
    h.finished("t", 1.1, False, 0.1, probe)
    assert h.get("t").state == State.CLOSED and h.available("t", 1.2)


def test_only_the_probe_resolves_half_open() -> None:
    """A request sent before the ejection that ends while the target is half-open says nothing about
    it now: its failure neither re-ejects the target, nor its success closes it, nor its cancellation
    lets a second probe out; the probe's own answer decides."""
    h = Health(CFG)
    old_fail, old_ok, old_cancel = (h.started("t", 0.0) for _ in range(3))
    for _ in range(3):
        outcome(h, 0.5, True)  # ejected until 5.5
    probe = h.started("t", 6.0)
    h.finished("t", 6.2, True, None, old_fail)
    h.finished("t", 6.3, False, 0.1, old_ok)
    h.abandoned("t", old_cancel)
    th = h.get("t")
    assert th.state == State.HALF_OPEN and th.ejections == 1 and not h.available("t", 6.4)
    h.finished("t", 6.5, False, 0.1, probe)
    assert h.get("t").state == State.CLOSED and h.available("t", 6.6)
