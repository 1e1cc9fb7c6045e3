"""Engine-independent statistics against scipy, hand computations and simulation."""

from __future__ import annotations

import math

import numpy as np
import pytest
from botify.analysis import stats
from scipy import stats as sps


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_welch_matches_scipy(seed: int) -> None:
    rng = np.random.default_rng(seed)
    c = rng.exponential(2.0, 40 + 17 * seed)
    t = rng.exponential(2.3, 55) * rng.uniform(0.5, 1.5)
    e = stats.welch_samples(c, t)
    ref = sps.ttest_ind(t, c, equal_var=False)
    ci = ref.confidence_interval(0.95)
    assert e.p_value == pytest.approx(ref.pvalue, rel=1e-9)
    assert e.df == pytest.approx(ref.df, rel=1e-9)
    assert e.lower_abs == pytest.approx(ci.low, rel=1e-9)
    assert e.upper_abs == pytest.approx(ci.high, rel=1e-9)
    assert e.effect == pytest.approx((t.mean() - c.mean()) / c.mean() * 100)
    assert e.lower == pytest.approx(ci.low / c.mean() * 100)
    assert e.significant == (ref.pvalue < 0.05)


def test_welch_hand_example() -> None:
    # control [1,2,3]: mean 2, var 1; treatment [2,4,6,8]: mean 5, var 20/3
    # se^2 = 1/3 + 20/12 = 2; df = 4 / ((1/9)/2 + (25/9)/3) = 4 / (1/18 + 25/27) = 216/53
    e = stats.welch_samples(np.array([1.0, 2, 3]), np.array([2.0, 4, 6, 8]))
    assert e.diff == pytest.approx(3.0)
    assert e.se == pytest.approx(math.sqrt(2.0))
    assert e.df == pytest.approx(216 / 53)
    q = sps.t.ppf(0.975, 216 / 53)
    assert e.upper == pytest.approx((3 + q * math.sqrt(2)) / 2 * 100)
    assert e.effect == pytest.approx(150.0)


def test_welch_degenerate_inputs_do_not_raise() -> None:
    e = stats.welch(stats.Moments.of([1.0]), stats.Moments.of([1.0, 2.0]))
    assert math.isnan(e.p_value) and not e.significant
    e = stats.welch(stats.Moments.of([]), stats.Moments.of([1.0, 2.0]))
    assert math.isnan(e.effect) and not e.significant
    e = stats.welch(stats.Moments.of([2.0, 2.0]), stats.Moments.of([3.0, 3.0]))
    assert e.p_value == 0.0 and e.significant


def test_moments_from_sums() -> None:
    x = np.random.default_rng(5).normal(3, 2, 1000)
    a = stats.Moments.of(x)
    b = stats.Moments.from_sums(len(x), float(x.sum()), float((x * x).sum()))
    assert b.n == a.n and b.mean == pytest.approx(a.mean) and b.var == pytest.approx(a.var)


def test_holm_hand_example() -> None:
    # sorted: .005*4=.02, .01*3=.03, .03*2=.06, .04*1=.04 -> running max .02 .03 .06 .06
    adj = stats.holm([0.01, 0.04, 0.03, 0.005])
    np.testing.assert_allclose(adj, [0.03, 0.06, 0.06, 0.02])
    assert list(adj <= 0.05) == [True, False, False, True]
    adj = stats.holm([0.5, math.nan, 0.6])
    assert math.isnan(adj[1]) and adj[0] == pytest.approx(1.0) and adj[2] == pytest.approx(1.0)
    assert stats.holm([]).size == 0


def test_srm() -> None:
    ok = stats.srm_check({"C": 5000, "T1": 5060})
    assert not ok.mismatch and ok.p_value > 0.5
    # (5000-5250)^2/5250 * 2 = 23.81
    bad = stats.srm_check({"C": 5000, "T1": 5500})
    assert bad.chi2 == pytest.approx(2 * 250**2 / 5250)
    assert bad.mismatch and bad.p_value < 1e-5
    uneven = stats.srm_check({"C": 900, "T1": 100}, {"C": 0.9, "T1": 0.1})
    assert uneven.chi2 == pytest.approx(0.0) and not uneven.mismatch
    empty_arm = stats.srm_check({"C": 1000, "T1": 0})
    assert empty_arm.mismatch
    single = stats.srm_check({"C": 10})
    assert not single.mismatch and math.isnan(single.p_value)


def test_cuped_variance_reduction_on_correlated_data() -> None:
    rng = np.random.default_rng(42)
    n = 20_000
    rho = 0.8
    x = rng.normal(10, 2, n)
    y = 5 + rho * (x - 10) / 2 * 3 + math.sqrt(1 - rho**2) * 3 * rng.normal(size=n)
    theta = stats.cuped_theta(y, x)
    assert theta == pytest.approx(rho * 3 / 2, rel=0.03)
    adj = stats.cuped_adjust(y, x)
    assert adj.mean() == pytest.approx(y.mean())
    reduction = 1 - adj.var() / y.var()
    assert reduction == pytest.approx(rho**2, abs=0.02)
    # uncorrelated covariate: nothing to gain, nothing lost
    z = rng.normal(size=n)
    assert 1 - stats.cuped_adjust(y, z).var() / y.var() == pytest.approx(0, abs=0.002)
    assert stats.cuped_theta(y, np.ones(n)) == 0.0


def test_delta_method_matches_bootstrap() -> None:
    rng = np.random.default_rng(7)
    n = 3000
    sessions = rng.poisson(3, n) + 1
    time = rng.gamma(2.0, 3.0, n) * sessions * rng.uniform(0.5, 1.5, n)
    r = stats.Ratio.of(time, sessions)
    assert r.ratio == pytest.approx(time.sum() / sessions.sum())
    boot = np.empty(2000)
    for b in range(boot.size):
        i = rng.integers(0, n, n)
        boot[b] = time[i].sum() / sessions[i].sum()
    assert math.sqrt(r.var) == pytest.approx(boot.std(ddof=1), rel=0.1)
    # delta effect of two independent ratios: se adds in quadrature
    r2 = stats.Ratio.of(time * 1.1, sessions)
    e = stats.delta_effect(r, r2)
    assert e.se == pytest.approx(math.sqrt(r.var + r2.var))
    assert e.effect == pytest.approx(10.0)
    assert e.significant


def test_sample_size_and_mde() -> None:
    # n = (z_.975 + z_.8)^2 * 2 * sd^2 / effect^2 = 7.8489 * 2 / 0.01 = 1569.8
    assert stats.sample_size(1.0, 0.1) == (1570, 1570)
    m = stats.mde(1.0, 1570, 1570)
    assert m == pytest.approx(0.1, rel=1e-3)
    n_c, n_t = stats.sample_size(1.0, 0.1, ratio=2.0)
    assert n_t == math.ceil(2 * n_c) and n_c < 1570
    with pytest.raises(ValueError):
        stats.sample_size(1.0, 0.0)


def test_power_by_simulation() -> None:
    # at the computed sample size, a true effect is detected about 80% of the time
    n, _ = stats.sample_size(1.0, 0.2)
    rng = np.random.default_rng(2024)
    hits = sum(
        stats.welch_samples(rng.normal(0, 1, n), rng.normal(0.2, 1, n)).significant
        for _ in range(400)
    )
    # Binomial(400, 0.8): mean 320, sd 8; +-4 sd
    assert 288 <= hits <= 352


def test_aa_false_positive_rate_welch() -> None:
    rng = np.random.default_rng(123)
    runs = 2000
    fp = sum(
        stats.welch_samples(rng.exponential(1, 200), rng.exponential(1, 230)).significant
        for _ in range(runs)
    )
    # Binomial(2000, 0.05): mean 100, sd 9.75; a 4-sd band
    assert 61 <= fp <= 139
