"""Intervals right for every arm size: delta-method relative effects and Welch t for ratio metrics."""

from __future__ import annotations

import math

import numpy as np
import pytest
from botify.analysis import stats
from botify.analysis.ab import analyze
from botify.analysis.synth import SynthSpec, events_frame, generate
from scipy import stats as sps


def test_relative_delta_by_hand() -> None:
    c = stats.Moments(n=10, mean=2.0, var=1.0)
    t = stats.Moments(n=20, mean=3.0, var=4.0)
    r = stats.relative_of(c, t)
    # Var(T/C) = v_T/C^2 + T^2 v_C/C^4 with v = var/n: 0.2/4 + 9*0.1/16
    var = 0.2 / 4 + 9 * 0.1 / 16
    df = (0.1 + 0.2) ** 2 / (0.1**2 / 9 + 0.2**2 / 19)
    q = sps.t.ppf(0.975, df)
    assert r.effect == pytest.approx(50.0)
    assert r.se == pytest.approx(math.sqrt(var) * 100)
    assert r.lower == pytest.approx((0.5 - q * math.sqrt(var)) * 100)
    assert r.upper == pytest.approx((0.5 + q * math.sqrt(var)) * 100)
    assert r.p_value == pytest.approx(2 * sps.t.sf(0.5 / math.sqrt(var), df))
    # degenerate arms: NaN interval, never an exception
    assert math.isnan(stats.relative_of(stats.Moments(1, 2.0, math.nan), t).lower)
    assert math.isnan(stats.relative_of(stats.Moments(5, 0.0, 1.0), t).effect)


def test_delta_relative_interval_covers_where_the_course_column_does_not() -> None:
    """True means 1 and 2 (+100%): dividing by the control mean as if it were exact
    undercovers at any size; the delta-method interval counts its uncertainty."""
    rng = np.random.default_rng(4)
    n, runs = 100, 1000
    course = delta = 0
    for _ in range(runs):
        c = stats.Moments.of(rng.gamma(2.0, 0.5, n))
        t = stats.Moments.of(rng.gamma(2.0, 1.0, n))
        w, r = stats.welch(c, t), stats.relative_of(c, t)
        course += w.lower <= 100 <= w.upper
        delta += r.lower <= 100 <= r.upper
    assert 0.93 <= delta / runs <= 0.965, delta / runs
    assert course / runs < 0.91, course / runs


def _ratio_arm(rng: np.random.Generator, n: int) -> stats.Ratio:
    sessions = rng.poisson(2, n) + 1
    time = np.array([rng.exponential(2.0, k).sum() for k in sessions])
    return stats.Ratio.of(time, sessions)


def test_ratio_metrics_use_welch_t_with_small_arms() -> None:
    rng = np.random.default_rng(3)
    runs, n = 1500, 12
    t_cover = z_cover = 0
    for _ in range(runs):
        rc, rt = _ratio_arm(rng, n), _ratio_arm(rng, n)
        e = stats.delta_effect(rc, rt)
        assert math.isfinite(e.df) and e.df < 2 * n
        t_cover += e.lower_abs <= 0 <= e.upper_abs
        half_z = 1.959964 * math.sqrt(rc.var + rt.var)
        z_cover += e.diff - half_z <= 0 <= e.diff + half_z
    # an arm of 12 users: the normal interval is too narrow, Welch's t is not
    assert z_cover / runs < 0.94 <= t_cover / runs <= 0.965, (z_cover / runs, t_cover / runs)


def test_tables_carry_both_columns_and_the_verdict_uses_the_delta_interval() -> None:
    ev = events_frame(generate(SynthSpec(n_users=2000, seed=8, effects={"T1": 1.25})))
    res = analyze(ev, "EXP")
    for table in (res.table, res.ratios):
        for col in ("lower", "upper", "rel_lower", "rel_upper", "rel_se"):
            assert col in table.columns
    row = res.table.set_index("metric").loc["time"]
    assert row["rel_effect"] == pytest.approx(row["effect"])
    # wider than the course column: the control mean's uncertainty is counted
    assert row["rel_upper"] - row["rel_lower"] > row["upper"] - row["lower"]
    av = res.verdict.arms["T1"]
    assert (av.lower, av.upper) == (row["rel_lower"], row["rel_upper"])
    assert np.isfinite(res.ratios["df"]).all()
