"""Engine-independent A/B statistics.

Everything here works on *sufficient statistics* (counts, means, variances,
co-moments) or on small numpy arrays, so the embedded engine and a Spark job
compute their aggregates their own way and share this one implementation of
the maths. No pandas, no I/O.

Conventions follow the course: variances are sample variances (ddof=1), the
interval is the Welch interval on the difference of means with
Welch-Satterthwaite degrees of freedom, the percent effect and its interval are
the difference and its interval divided by the control mean, and an effect is
"significant" when that interval excludes zero.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
from scipy import stats as sps


@dataclass(frozen=True)
class Moments:
    """n, mean and sample variance (ddof=1) of one arm's per-unit values."""

    n: int
    mean: float
    var: float

    @classmethod
    def of(cls, x: np.ndarray | Sequence[float]) -> Moments:
        a = np.asarray(x, dtype=np.float64)
        n = int(a.size)
        mean = float(a.mean()) if n else math.nan
        var = float(a.var(ddof=1)) if n > 1 else math.nan
        return cls(n, mean, var)

    @classmethod
    def from_sums(cls, n: int, s: float, ss: float) -> Moments:
        """From count, sum and sum of squares (what a distributed engine aggregates)."""
        if n == 0:
            return cls(0, math.nan, math.nan)
        mean = s / n
        var = (ss - n * mean * mean) / (n - 1) if n > 1 else math.nan
        return cls(int(n), float(mean), float(max(var, 0.0)) if n > 1 else math.nan)


@dataclass(frozen=True)
class Effect:
    """Treatment minus control, absolute and in percent of the control mean."""

    control_mean: float
    treatment_mean: float
    n_control: int
    n_treatment: int
    diff: float
    se: float
    df: float
    lower_abs: float
    upper_abs: float
    effect: float  # percent of control mean
    lower: float  # percent
    upper: float  # percent
    p_value: float
    significant: bool

    def to_dict(self) -> dict[str, float | int | bool]:
        return asdict(self)


def welch_df(n0: int, n1: int, v0: float, v1: float) -> float:
    """Welch-Satterthwaite degrees of freedom."""
    a, b = v0 / n0, v1 / n1
    den = a * a / (n0 - 1) + b * b / (n1 - 1)
    return (a + b) ** 2 / den if den > 0 else math.inf


def _pct(x: float, base: float) -> float:
    return x / base * 100.0 if base != 0 else math.nan


def _undefined_effect(c_value: float, t_value: float, n_c: int, n_t: int) -> Effect:
    """Both point values and the % difference, NaN for everything that needs a variance."""
    nan = math.nan
    diff = t_value - c_value
    return Effect(c_value, t_value, n_c, n_t, diff, nan, nan, nan, nan,
                  _pct(diff, c_value), nan, nan, nan, False)


def welch(control: Moments, treatment: Moments, alpha: float = 0.05) -> Effect:
    """The course's interval (Welch, W-S df) plus a two-sided p-value from the same t.

    Degenerate inputs (fewer than 2 units in an arm) give NaN statistics and
    significant=False instead of raising: an empty arm is reported, not fatal.
    """
    c, t = control, treatment
    diff = t.mean - c.mean
    if c.n < 2 or t.n < 2 or math.isnan(c.var) or math.isnan(t.var):
        return _undefined_effect(c.mean, t.mean, c.n, t.n)
    se = math.sqrt(c.var / c.n + t.var / t.n)
    df = welch_df(c.n, t.n, c.var, t.var)
    if se == 0:
        # Both arms constant: the difference is exact.
        p = 1.0 if diff == 0 else 0.0
        half = 0.0
    else:
        half = float(sps.t.ppf(1 - alpha / 2, df)) * se
        p = float(2 * sps.t.sf(abs(diff) / se, df))
    lo, hi = diff - half, diff + half
    lo_p, hi_p = sorted((_pct(lo, c.mean), _pct(hi, c.mean)))
    significant = bool((diff + half) * (diff - half) > 0)
    return Effect(
        c.mean,
        t.mean,
        c.n,
        t.n,
        diff,
        se,
        df,
        lo,
        hi,
        _pct(diff, c.mean),
        lo_p,
        hi_p,
        p,
        significant,
    )


def welch_samples(control: np.ndarray, treatment: np.ndarray, alpha: float = 0.05) -> Effect:
    return welch(Moments.of(control), Moments.of(treatment), alpha)


def holm(p_values: Sequence[float] | np.ndarray) -> np.ndarray:
    """Holm-Bonferroni adjusted p-values (step-down, monotone, capped at 1); NaN stays NaN.

    Reject H_i at level alpha iff adjusted p_i <= alpha: this controls the
    family-wise error rate over all arms x metrics without assuming independence.
    """
    p = np.asarray(p_values, dtype=np.float64)
    out = np.full(p.shape, np.nan)
    ok = ~np.isnan(p)
    q = p[ok]
    m = q.size
    if m == 0:
        return out
    order = np.argsort(q, kind="stable")
    adj = (m - np.arange(m)) * q[order]
    adj = np.minimum(np.maximum.accumulate(adj), 1.0)
    res = np.empty(m)
    res[order] = adj
    out[ok] = res
    return out


@dataclass(frozen=True)
class SRM:
    """Sample-ratio mismatch: are users split across arms as configured?"""

    arms: tuple[str, ...]
    observed: tuple[int, ...]
    expected: tuple[float, ...]
    chi2: float
    p_value: float
    mismatch: bool  # p below the threshold: the split itself is broken

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def srm_check(
    counts: dict[str, int],
    shares: dict[str, float] | None = None,
    threshold: float = 0.001,
) -> SRM:
    """Chi-square goodness of fit of users per arm against the configured shares.

    The usual threshold is strict (0.001) because with many users any real
    mismatch gives a tiny p-value, and a false alarm stops a valid experiment.
    """
    arms = tuple(sorted(counts))
    obs = np.array([counts[a] for a in arms], dtype=np.float64)
    if shares is None:
        w = np.ones(len(arms))
    else:
        w = np.array([float(shares.get(a, 0.0)) for a in arms])
    total = obs.sum()
    if len(arms) < 2 or total == 0 or w.sum() <= 0:
        return SRM(arms, tuple(int(x) for x in obs), tuple(obs), math.nan, math.nan, False)
    exp = w / w.sum() * total
    chi2, p = sps.chisquare(obs, exp)
    return SRM(
        arms,
        tuple(int(x) for x in obs),
        tuple(float(x) for x in exp),
        float(chi2),
        float(p),
        bool(p < threshold),
    )


def cuped_theta(y: np.ndarray, x: np.ndarray) -> float:
    """theta = cov(y, x) / var(x), pooled over all arms (arm-independent, so unbiased)."""
    y = np.asarray(y, np.float64)
    x = np.asarray(x, np.float64)
    vx = float(np.var(x, ddof=1)) if x.size > 1 else 0.0
    if vx == 0 or not np.isfinite(vx):
        return 0.0
    return float(np.cov(y, x, ddof=1)[0, 1] / vx)


def cuped_adjust(y: np.ndarray, x: np.ndarray, theta: float | None = None) -> np.ndarray:
    """y - theta * (x - mean(x)): same mean as y, variance shrunk by corr(y, x)^2."""
    y = np.asarray(y, np.float64)
    x = np.asarray(x, np.float64)
    th = cuped_theta(y, x) if theta is None else theta
    return y - th * (x - x.mean())


@dataclass(frozen=True)
class Ratio:
    """A ratio metric sum(num)/sum(den) over users, with its delta-method variance."""

    n: int
    ratio: float
    var: float  # variance of the ratio estimate (not of a unit)

    @classmethod
    def from_moments(cls, n: int, mx: float, my: float, vx: float, vy: float, cxy: float) -> Ratio:
        """From per-user means, variances and covariance of numerator x and denominator y."""
        if n < 2 or my == 0:
            return cls(n, mx / my if my else math.nan, math.nan)
        r = mx / my
        var = (vx - 2 * r * cxy + r * r * vy) / (n * my * my)
        return cls(n, r, max(var, 0.0))

    @classmethod
    def of(cls, x: np.ndarray, y: np.ndarray) -> Ratio:
        x = np.asarray(x, np.float64)
        y = np.asarray(y, np.float64)
        n = int(x.size)
        if n < 2:
            return cls(n, float(x.sum() / y.sum()) if n and y.sum() else math.nan, math.nan)
        c = np.cov(x, y, ddof=1)
        return cls.from_moments(n, x.mean(), y.mean(), c[0, 0], c[1, 1], c[0, 1])


def delta_effect(control: Ratio, treatment: Ratio, alpha: float = 0.05) -> Effect:
    """Difference of two independent ratio metrics with a delta-method interval (Welch t, W-S df).

    Session-level metrics such as time per session pool sessions within a user,
    so sessions are not independent; the delta method keeps the user as the
    unit of randomization and gives honest intervals.
    """
    c, t = control, treatment
    diff = t.ratio - c.ratio
    if math.isnan(c.var) or math.isnan(t.var):
        return _undefined_effect(c.ratio, t.ratio, c.n, t.n)
    se = math.sqrt(c.var + t.var)
    # Welch t on the per-user linearised values (variance per unit = var * n), not z:
    # with a dozen users per arm a normal interval is too narrow.
    df = welch_df(c.n, t.n, c.var * c.n, t.var * t.n) if se > 0 else math.inf
    half = float(sps.t.ppf(1 - alpha / 2, df)) * se
    p = float(2 * sps.t.sf(abs(diff) / se, df)) if se > 0 else (1.0 if diff == 0 else 0.0)
    lo, hi = diff - half, diff + half
    lo_p, hi_p = sorted((_pct(lo, c.ratio), _pct(hi, c.ratio)))
    return Effect(
        c.ratio,
        t.ratio,
        c.n,
        t.n,
        diff,
        se,
        df,
        lo,
        hi,
        _pct(diff, c.ratio),
        lo_p,
        hi_p,
        p,
        bool((diff + half) * (diff - half) > 0),
    )


@dataclass(frozen=True)
class Relative:
    """The relative effect (treatment / control - 1, in percent) with its delta-method interval."""

    effect: float
    se: float
    lower: float
    upper: float
    p_value: float

    def to_dict(self) -> dict[str, float]:
        return {"rel_effect": self.effect, "rel_se": self.se, "rel_lower": self.lower,
                "rel_upper": self.upper, "rel_p_value": self.p_value}  # fmt: skip


def relative_delta(
    mean_c: float, var_mean_c: float, mean_t: float, var_mean_t: float, df: float, alpha: float = 0.05
) -> Relative:
    """Interval for mean_T / mean_C - 1 by the delta method (as gbstats does), in percent.

    Why beside the course's column: dividing the absolute interval by the
    control mean treats that mean as exact; with small arms its own
    uncertainty matters. Var(T/C) ~ v_T / C^2 + T^2 v_C / C^4, where v_* are the
    variances of the two *means*; the quantile is Student's t with `df` (Welch).
    """
    nan = math.nan
    if not (math.isfinite(mean_c) and mean_c != 0 and math.isfinite(mean_t)):
        return Relative(nan, nan, nan, nan, nan)
    rel = mean_t / mean_c - 1.0
    var = var_mean_t / mean_c**2 + mean_t**2 * var_mean_c / mean_c**4
    if not math.isfinite(var) or math.isnan(df):
        return Relative(rel * 100, nan, nan, nan, nan)
    se = math.sqrt(max(var, 0.0))
    if se == 0:
        p = 1.0 if rel == 0 else 0.0
        return Relative(rel * 100, 0.0, rel * 100, rel * 100, p)
    q = float(sps.t.ppf(1 - alpha / 2, df))
    p = float(2 * sps.t.sf(abs(rel) / se, df))
    return Relative(rel * 100, se * 100, (rel - q * se) * 100, (rel + q * se) * 100, p)


def relative_of(control: Moments, treatment: Moments, alpha: float = 0.05) -> Relative:
    """`relative_delta` for two arms' user-level moments (Welch df)."""
    c, t = control, treatment
    if c.n < 2 or t.n < 2 or math.isnan(c.var) or math.isnan(t.var):
        return relative_delta(c.mean, math.nan, t.mean, math.nan, math.nan, alpha)
    return relative_delta(c.mean, c.var / c.n, t.mean, t.var / t.n,
                          welch_df(c.n, t.n, c.var, t.var), alpha)  # fmt: skip


def relative_of_ratios(control: Ratio, treatment: Ratio, alpha: float = 0.05) -> Relative:
    """`relative_delta` for two ratio metrics (their delta-method variances, Welch df)."""
    c, t = control, treatment
    if math.isnan(c.var) or math.isnan(t.var):
        return relative_delta(c.ratio, math.nan, t.ratio, math.nan, math.nan, alpha)
    df = welch_df(c.n, t.n, c.var * c.n, t.var * t.n) if c.var + t.var > 0 else math.inf
    return relative_delta(c.ratio, c.var, t.ratio, t.var, df, alpha)


def mde(
    sd: float,
    n_control: int,
    n_treatment: int,
    alpha: float = 0.05,
    power: float = 0.8,
) -> float:
    """Smallest absolute difference detected with `power` by a two-sided test at `alpha`."""
    if n_control < 1 or n_treatment < 1:
        return math.nan
    z = sps.norm.ppf(1 - alpha / 2) + sps.norm.ppf(power)
    return float(z * sd * math.sqrt(1 / n_control + 1 / n_treatment))


def sample_size(
    sd: float,
    effect: float,
    alpha: float = 0.05,
    power: float = 0.8,
    ratio: float = 1.0,
) -> tuple[int, int]:
    """Users (control, treatment) to detect an absolute `effect` with `power`.

    ratio = n_treatment / n_control. Normal approximation, the standard
    n_c = (z_{1-a/2} + z_{power})^2 * sd^2 * (1 + 1/ratio) / effect^2.
    """
    if effect == 0 or sd < 0 or ratio <= 0:
        raise ValueError("effect must be non-zero, sd >= 0 and ratio > 0")
    z = sps.norm.ppf(1 - alpha / 2) + sps.norm.ppf(power)
    n_c = math.ceil((z * sd) ** 2 * (1 + 1 / ratio) / effect**2)
    return n_c, math.ceil(n_c * ratio)


# --------------------------------------------------------------------------- peeking
# Fixed-horizon intervals hold at one look decided in advance. Looking after every
# hour and stopping at the first "significant" one inflates false positives well
# past alpha. An always-valid confidence sequence holds at every look at once: the
# asymptotic confidence sequence of Waudby-Smith, Arbour, Sinha, Kennedy and Ramdas
# ("Time-uniform central limit theory and asymptotic confidence sequences", 2023),
# the one GrowthBook and Eppo use for sequential testing.

#: Total users at which the confidence sequence is tuned to be tightest (GrowthBook's
#: default); it stays valid at every other size, only somewhat wider there.
CS_TUNING_N = 5000


def cs_rho(alpha: float = 0.05, n_star: float = CS_TUNING_N) -> float:
    """The mixing parameter that makes the sequence tightest at `n_star` units."""
    la = -2.0 * math.log(alpha)
    return math.sqrt((la + math.log(la + 1.0)) / n_star)


def cs_halfwidth(
    sd: float | np.ndarray,
    n: float | np.ndarray,
    alpha: float = 0.05,
    n_star: float = CS_TUNING_N,
) -> float | np.ndarray:
    """Half-width of the two-sided asymptotic confidence sequence for a mean of `n`
    units whose per-unit standard deviation is `sd` (eq. 9 of the paper above).

    At n = n_star it is about 1.5x the fixed-horizon 95% half-width; the price of
    being allowed to look as often as one likes."""
    rho2 = cs_rho(alpha, n_star) ** 2
    n = np.asarray(n, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        w = np.sqrt(2.0 * (n * rho2 + 1.0) / (n * n * rho2) * np.log(np.sqrt(n * rho2 + 1.0) / alpha))
    out = np.asarray(sd, dtype=np.float64) * w
    return float(out) if out.ndim == 0 else out


def sequential_bounds(
    mean_c: float | np.ndarray,
    var_c: float | np.ndarray,
    n_c: float | np.ndarray,
    mean_t: float | np.ndarray,
    var_t: float | np.ndarray,
    n_t: float | np.ndarray,
    alpha: float = 0.05,
    n_star: float = CS_TUNING_N,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(difference, lower, upper) of the always-valid interval on treatment - control,
    from each arm's moments; arrays in, arrays out (simulations check many at once).

    As GrowthBook does, the two arms count as one stream of n_c + n_t units whose
    per-unit variance makes the estimate's variance var_c/n_c + var_t/n_t."""
    n_c, n_t = np.asarray(n_c, np.float64), np.asarray(n_t, np.float64)
    diff = np.asarray(mean_t, np.float64) - np.asarray(mean_c, np.float64)
    n = n_c + n_t
    with np.errstate(divide="ignore", invalid="ignore"):
        var_est = np.asarray(var_c, np.float64) / n_c + np.asarray(var_t, np.float64) / n_t
    half = np.asarray(cs_halfwidth(np.sqrt(var_est * n), n, alpha, n_star))
    return diff, diff - half, diff + half


@dataclass(frozen=True)
class SequentialEffect:
    """An always-valid interval: as trustworthy at the 30th look as at the first."""

    control_mean: float
    treatment_mean: float
    n_control: int
    n_treatment: int
    diff: float
    lower_abs: float
    upper_abs: float
    effect: float  # percent of control mean
    lower: float  # percent
    upper: float  # percent
    significant: bool
    n_star: float

    def to_dict(self) -> dict[str, float | int | bool]:
        return asdict(self)


def sequential(
    control: Moments, treatment: Moments, alpha: float = 0.05, n_star: float = CS_TUNING_N
) -> SequentialEffect:
    """The asymptotic confidence sequence on the difference of means, in the course's
    units (absolute, and percent of the control mean); significant when it excludes 0."""
    if control.n < 2 or treatment.n < 2:
        nan = math.nan
        return SequentialEffect(
            control.mean, treatment.mean, control.n, treatment.n, nan, nan, nan, nan, nan, nan,
            False, n_star,
        )
    d, lo, hi = (
        float(x)
        for x in sequential_bounds(
            control.mean, control.var, control.n, treatment.mean, treatment.var, treatment.n,
            alpha, n_star,
        )
    )
    return SequentialEffect(
        control.mean, treatment.mean, control.n, treatment.n, d, lo, hi,
        _pct(d, control.mean), _pct(lo, control.mean), _pct(hi, control.mean),
        bool(lo > 0 or hi < 0), n_star,
    )


__all__ = [
    "CS_TUNING_N",
    "SRM",
    "Effect",
    "Moments",
    "Ratio",
    "Relative",
    "SequentialEffect",
    "cs_halfwidth",
    "cs_rho",
    "cuped_adjust",
    "cuped_theta",
    "delta_effect",
    "holm",
    "mde",
    "relative_delta",
    "relative_of",
    "relative_of_ratios",
    "sample_size",
    "sequential",
    "sequential_bounds",
    "srm_check",
    "welch",
    "welch_df",
    "welch_samples",
]
