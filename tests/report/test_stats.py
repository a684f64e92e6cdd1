"""dcvq.report.stats: intervals over seeds and paired intervals over images, against
known answers and scipy's own paired t-test."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as st

from dcvq.report import stats

# t(0.975, 4) from a printed table of Student's t: the interval must use it, not 1.96
T_975_4 = 2.7764451051977987


def test_ci95_is_the_t_interval_of_the_mean():
    values = [1.0, 2.0, 3.0, 4.0, 5.0]  # mean 3, sd (n-1) sqrt(2.5)
    assert stats.ci95(values) == pytest.approx(T_975_4 * math.sqrt(2.5) / math.sqrt(5))
    est = stats.estimate([5.0, None, 1.0, float("nan"), 3.0, 2.0, 4.0])
    assert est.mean == pytest.approx(3.0) and est.n == 5
    assert est.ci95 == pytest.approx(1.9632, abs=1e-4)
    # one seed: a mean without an interval; identical seeds: an interval of width 0
    assert stats.ci95([20.5]) is None and stats.estimate([20.5]).ci95 is None
    assert stats.ci95([20.5, 20.5, 20.5]) == 0.0
    assert stats.estimate([]).mean is None


def test_identical_runs_give_a_zero_difference_and_no_verdict():
    a = np.linspace(15, 25, 30)
    p = stats.paired("psnr", a, a.copy())
    assert (p.mean_diff, p.low, p.high) == (0.0, 0.0, 0.0)
    assert p.outcome == "inconclusive"


def test_a_known_shift_is_found_with_its_sign_and_direction():
    rng = np.random.default_rng(0)
    ref = rng.normal(20, 3, 200)  # images differ by ~3 dB: far more than the shift
    row = ref + 0.3 + rng.normal(0, 0.2, 200)
    p = stats.paired("psnr", row, ref)
    assert p.low < 0.3 < p.high and p.low > 0 and p.outcome == "better"
    # the same interval as scipy's paired t-test (an independent implementation)
    low, high = st.ttest_rel(row, ref).confidence_interval(0.95)
    assert (p.low, p.high) == (pytest.approx(low), pytest.approx(high))
    assert p.config_mean - p.reference_mean == pytest.approx(p.mean_diff)
    # lower is better for L1: a higher L1 is worse; the reverse difference flips it
    assert stats.paired("l1", row, ref).outcome == "worse"
    assert stats.paired("l1", ref, row).outcome == "better"
    assert stats.paired("psnr", ref, row).outcome == "worse"
    # the same shift without pairing is lost in the spread between images
    assert stats.ci95(row) + stats.ci95(ref) > 0.3
    # a shift smaller than the noise: the interval straddles 0
    noisy = ref + 0.01 + rng.normal(0, 1.0, 200)
    assert stats.paired("psnr", noisy, ref).outcome == "inconclusive"


def test_paired_needs_equal_arrays():
    with pytest.raises(ValueError, match="psnr"):
        stats.paired("psnr", np.ones(3), np.ones(4))
    assert stats.paired("psnr", np.ones(1), np.zeros(1)).outcome == "inconclusive"  # n=1
    # an exact reconstruction's infinite PSNR is left out, not a NaN mean
    p = stats.paired("psnr", np.array([np.inf, 2.0, 3.0]), np.array([1.0, 1.0, 1.0]))
    assert (p.n, p.mean_diff) == (2, 1.5)


def test_seed_difference_is_welch_s_interval():
    seed_difference = stats.seed_difference
    a, b = [20.1, 20.6, 19.9], [19.0, 19.4, 19.1, 18.8]
    d = seed_difference("psnr", a, b)
    expected = st.ttest_ind(a, b, equal_var=False).confidence_interval(0.95)
    assert (d.low, d.high) == pytest.approx((expected.low, expected.high))
    assert d.outcome == "better" and seed_difference("l1", a, b).outcome == "worse"
    same = seed_difference("psnr", [20.0, 20.0], [19.0, 19.0])
    assert (same.low, same.high, same.outcome) == (1.0, 1.0, "better")
    one = seed_difference("psnr", [20.0], [19.0, 19.2])
    assert one.low is None and one.outcome == "inconclusive"
