"""The statistics bench_logging_p99.py and bench_sink_down.py give their verdicts with: a P99 target
is called met or missed from ``median_interval``, a difference beyond noise from ``sign_test``."""

from __future__ import annotations

import math
import random
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import run_bench as rb  # noqa: E402


def test_median_interval_order_statistics() -> None:
    xs = [float(x) for x in range(15, 0, -1)]  # unsorted on purpose
    lo, hi, coverage = rb.median_interval(xs)
    assert (lo, hi) == (4.0, 12.0)  # the 4th smallest and the 4th largest of 15
    assert coverage == pytest.approx(1 - 2 * sum(math.comb(15, i) for i in range(4)) / 2**15)
    assert coverage >= 0.95
    # One step narrower would fall under 95%: the interval is the narrowest that keeps it.
    assert 1 - 2 * sum(math.comb(15, i) for i in range(5)) / 2**15 < 0.95


@pytest.mark.parametrize("n", [2, 3, 4, 5])
def test_median_interval_too_few_values_is_the_whole_range(n: int) -> None:
    lo, hi, coverage = rb.median_interval([float(x) for x in range(n)])
    assert (lo, hi) == (0.0, n - 1.0)
    assert coverage < 0.95  # so bench_logging_p99 gives no verdict


def test_median_interval_covers_the_median_as_often_as_it_says() -> None:
    rng = random.Random(7)
    trials, hits = 3000, 0
    for _ in range(trials):
        lo, hi, coverage = rb.median_interval([rng.lognormvariate(0, 0.5) for _ in range(15)])
        hits += lo <= 1.0 <= hi  # the lognormal's median is exp(0) = 1
    assert abs(hits / trials - coverage) < 0.02


def test_sign_test() -> None:
    assert rb.sign_test([1, 2, 3], [1, 2, 3]) == (0, 0, 1.0)  # no pair differs
    k, n, p = rb.sign_test([1.0] * 12, [2.0] * 12)
    assert (k, n) == (12, 12) and p == pytest.approx(2 / 2**12)
    k, n, p = rb.sign_test([1, 2, 3, 4], [2, 1, 4, 3])
    assert (k, n, p) == (2, 4, 1.0)
