"""The A/B table: the course's method exactly, then the checks it lacks.

Course method (docs/interfaces.md, "The course's A/B analysis"): keep the events that carry the experiment,
sessionize per user (a session ends with `last`; unfinished tails are dropped),
aggregate per (arm, user): `time` (total listen time), `sessions`,
`mean_request_latency` (ms), `mean_tracks_per_session`, `mean_time_per_session`;
for every treatment and metric compare user-level means with Welch's interval.

Beyond it: p-values and Holm across arms x metrics, a sample-ratio-mismatch
check, CUPED with the same users' metrics from earlier logs, delta-method
intervals for pooled session-level ratios, and a power / MDE table.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from botify.analysis import stats
from botify.analysis import verdict as vd
from botify.analysis.logs import EXP_PREFIX, LoadReport, read_events
from botify.analysis.sessions import sessionize

METRICS = (
    "time",
    "sessions",
    "mean_request_latency",
    "mean_tracks_per_session",
    "mean_time_per_session",
)
#: Pooled session-level ratios: name -> (numerator, denominator) user sums.
RATIOS = {
    "time_per_session": ("time", "sessions"),
    "tracks_per_session": ("tracks", "sessions"),
    "request_latency_ms": ("latency_ms", "latency_n"),
}


class AbError(ValueError):
    """The analysis cannot be done (no such experiment, no control...): a user error."""


def _arm_key(a: str) -> tuple[int, int, str]:
    m = re.fullmatch(r"T(\d+)", a)
    if a == "C":
        return (0, 0, a)
    return (1, int(m.group(1)), a) if m else (2, 0, a)


def sort_arms(arms: Sequence[str], control: str = "C") -> list[str]:
    """Control first, then T1, T2, ... numerically, then anything else."""
    rest = sorted((a for a in arms if a != control), key=_arm_key)
    return ([control] if control in arms else []) + rest


def arm_codes(arm: pd.Series) -> tuple[np.ndarray, list[str]]:
    """(int codes, -1 = no arm; arm names) without materialising a million strings."""
    if not isinstance(arm.dtype, pd.CategoricalDtype):
        arm = arm.astype("category")
    codes = arm.cat.codes.to_numpy().astype(np.int64)
    return codes, [str(c) for c in arm.cat.categories]


def arm_strings(arm: pd.Series) -> np.ndarray:
    """Arm names as a numpy object array (via the categories: cheap on big frames)."""
    codes, names = arm_codes(arm)
    lut = np.array(names + [None], dtype=object)
    return lut[codes]


def user_level(sessions: pd.DataFrame, arm_col: str = "arm") -> pd.DataFrame:
    """The course's per-(arm, user) table: sums over *finished* sessions.

    As the course does, a user whose sessions are all unfinished keeps a row
    with time 0 and sessions 0; the three mean_* metrics are undefined (NaN)
    for that row, so only they leave the user out.
    """
    fin = sessions["finished"].to_numpy(bool)
    s = pd.DataFrame(
        {
            arm_col: sessions[arm_col],
            "user": sessions["user"],
            "fin": fin.astype(np.int64),
            "tracks": np.where(fin, sessions["tracks"].to_numpy(np.int64), 0),
            "time": np.where(fin, sessions["time"].to_numpy(np.float64), 0.0),
            "latency_sum": np.where(fin, sessions["latency_sum"].to_numpy(np.float64), 0.0),
            "latency_n": np.where(fin, sessions["latency_n"].to_numpy(np.int64), 0),
        }
    )
    g = s.groupby([arm_col, "user"], observed=True, sort=True)
    u = g.agg(
        sessions=("fin", "sum"),
        tracks=("tracks", "sum"),
        time=("time", "sum"),
        latency_sum=("latency_sum", "sum"),
        latency_n=("latency_n", "sum"),
    ).reset_index()
    u = u.rename(columns={arm_col: "arm"})
    u["arm"] = arm_strings(u["arm"])
    u["latency_ms"] = u["latency_sum"] * 1000.0
    with np.errstate(invalid="ignore", divide="ignore"):
        u["mean_request_latency"] = u["latency_ms"] / u["latency_n"]
        u["mean_tracks_per_session"] = u["tracks"] / u["sessions"]
        u["mean_time_per_session"] = u["time"] / u["sessions"]
    return u


@dataclass
class AbResult:
    """Everything the terminal, JSON and HTML outputs show."""

    experiment: str
    control: str
    arms: list[str]
    alpha: float
    users_per_arm: dict[str, int]  # users with a row (any session), as the course counts
    table: pd.DataFrame  # course metrics: one row per (treatment, metric)
    ratios: pd.DataFrame  # delta-method pooled ratios
    srm: stats.SRM
    user_level: pd.DataFrame
    session_lengths: pd.DataFrame  # arm, tracks, sessions
    timeline: pd.DataFrame  # arm, time, cumulative time per session
    cuped: pd.DataFrame | None = None
    power: pd.DataFrame | None = None
    unfinished_sessions: int = 0
    warnings: list[str] = field(default_factory=list)
    load_report: LoadReport | None = None
    previous_load_report: LoadReport | None = None
    health: pd.DataFrame | None = None  # per arm: share of answers from a fallback
    configured: vd.Configured | None = None  # arms and shares from the service's snapshot
    srm_threshold: float = 0.001
    verdict: vd.Verdict | None = None  # the gate's decision (botify.analysis.verdict)

    def to_dict(self) -> dict[str, Any]:
        def rows(df: pd.DataFrame | None) -> list[dict[str, Any]] | None:
            if df is None:
                return None
            out = []
            for rec in df.to_dict(orient="records"):
                out.append({k: _jsonable(v) for k, v in rec.items()})
            return out

        return {
            "experiment": self.experiment,
            "control": self.control,
            "arms": self.arms,
            "alpha": self.alpha,
            "users_per_arm": self.users_per_arm,
            "effects": rows(self.table),
            "ratios": rows(self.ratios),
            "cuped": rows(self.cuped),
            "power": rows(self.power),
            "srm": {
                **{k: _jsonable(v) for k, v in self.srm.to_dict().items()},
                "threshold": self.srm_threshold,
                "shares": None if self.configured is None else self.configured.shares,
            },
            "serving_health": rows(self.health),
            "verdict": self.verdict.to_dict() if self.verdict else None,
            "unfinished_sessions": self.unfinished_sessions,
            "warnings": self.warnings,
            "logs": self.load_report.to_dict() if self.load_report else None,
            "previous_logs": self.previous_load_report.to_dict()
            if self.previous_load_report
            else None,
        }


def _jsonable(v: Any) -> Any:
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, tuple):
        return [_jsonable(x) for x in v]
    if isinstance(v, pd.Timestamp):
        return v.isoformat()
    return v


def holm_table(rows: list[dict[str, Any]], alpha: float) -> pd.DataFrame:
    """Rows of effects as a table, with Holm-adjusted p-values across all its rows."""
    df = pd.DataFrame(rows)
    if len(df):
        df["p_holm"] = stats.holm(df["p_value"].to_numpy())
        df["significant_holm"] = df["p_holm"] <= alpha
    return df


def effects_table(
    moments: dict[str, dict[str, stats.Moments]],
    control: str,
    treatments: Sequence[str],
    metrics: Sequence[str] = METRICS,
    alpha: float = 0.05,
) -> pd.DataFrame:
    """The course table from per-arm, per-metric moments of the user-level values.

    Engine-independent: a distributed engine aggregates count, sum and sum of
    squares per (arm, metric), builds `stats.Moments.from_sums`, and gets the
    very same rows (Welch CI, p-value, Holm across arms x metrics). Beside the
    course's percent interval (`lower`, `upper`: the absolute interval over the
    control mean) each row has the delta-method relative interval
    (`rel_lower`, `rel_upper`), which also counts the control mean's
    uncertainty; the verdict uses the latter.
    """
    rows = []
    for arm in treatments:
        for m in metrics:
            c, t = moments[control][m], moments[arm][m]
            e = stats.welch(c, t, alpha)
            rel = stats.relative_of(c, t, alpha)
            rows.append({"treatment": arm, "metric": m, **e.to_dict(), **rel.to_dict()})
    return holm_table(rows, alpha)


def _moments(u: pd.DataFrame, metrics: Sequence[str]) -> dict[str, stats.Moments]:
    out = {}
    for m in metrics:
        x = u[m].to_numpy(np.float64)
        out[m] = stats.Moments.of(x[~np.isnan(x)])
    return out


TIMELINE_COLUMNS = ["arm", "time", "elapsed", "time_per_session", "sessions"]


def timeline_buckets(arm_sessions: int, points: int = 100) -> int:
    """How many points an arm with `arm_sessions` finished sessions gets (at most one per session)."""
    return max(1, min(points, arm_sessions))


def timeline_from_buckets(g: pd.DataFrame, arms: list[str], first_end_ms: int) -> pd.DataFrame:
    """Cumulative time per session per arm from per-(arm, bucket) sums (either engine).

    `g` has arm, bucket, sessions, time and end_ms (the last session end in the
    bucket). Buckets are equal shares of each arm's finished sessions in end
    order, so the curve has resolution however short the run (a simulated day
    of 20 s used to give one point per arm on a per-minute axis).
    """
    out = []
    for arm in arms:
        a = g.loc[g["arm"] == arm].sort_values("bucket")
        if a.empty:
            continue
        cs = a["sessions"].to_numpy(np.int64).cumsum()
        end = a["end_ms"].to_numpy(np.int64)
        out.append(
            pd.DataFrame(
                {
                    "arm": arm,
                    "time": pd.to_datetime(end, unit="ms", utc=True),
                    "elapsed": (end - first_end_ms) / 1000.0,
                    "time_per_session": a["time"].to_numpy(np.float64).cumsum() / cs,
                    "sessions": cs,
                }
            )
        )
    return pd.concat(out, ignore_index=True) if out else pd.DataFrame(columns=TIMELINE_COLUMNS)


def _timeline(fin: pd.DataFrame, arms: list[str], points: int = 100) -> pd.DataFrame:
    """Cumulative pooled time per session per arm, against finished sessions so far."""
    if fin.empty:
        return pd.DataFrame(columns=TIMELINE_COLUMNS)
    from botify.analysis.logs import timestamp_ms

    end = timestamp_ms(fin["end"])
    arm = arm_strings(fin["arm"])
    user = fin["user"].to_numpy(np.int64)
    sid = fin["session_id"].to_numpy(np.int64)
    time = fin["time"].to_numpy(np.float64)
    frames = []
    for a in arms:
        m = arm == a
        if not m.any():
            continue
        order = np.lexsort((sid[m], user[m], end[m]))  # (end, user, session order)
        n = int(m.sum())
        p = timeline_buckets(n, points)
        rank = np.arange(1, n + 1)
        bucket = -((-rank * p) // n)  # ceil(rank * p / n): 1..p
        df = pd.DataFrame({"bucket": bucket, "time": time[m][order], "end_ms": end[m][order]})
        agg = df.groupby("bucket", sort=True).agg(
            sessions=("time", "size"), time=("time", "sum"), end_ms=("end_ms", "max")
        )
        frames.append(agg.reset_index().assign(arm=a))
    g = pd.concat(frames, ignore_index=True)
    return timeline_from_buckets(g, arms, int(end.min()))


def _cuped(
    u: pd.DataFrame,
    previous_events: pd.DataFrame,
    control: str,
    treatments: list[str],
    metrics: Sequence[str],
    alpha: float,
    warnings: list[str],
) -> pd.DataFrame | None:
    """CUPED with the previous events sessionized and aggregated here (embedded engine)."""
    ps = sessionize(previous_events).sessions
    prev = user_level(ps.assign(arm="all"), "arm")
    return cuped_table(u, prev, control, treatments, metrics, alpha, warnings)


def cuped_table(
    u: pd.DataFrame,
    prev: pd.DataFrame,
    control: str,
    treatments: list[str],
    metrics: Sequence[str],
    alpha: float,
    warnings: list[str],
) -> pd.DataFrame | None:
    """Welch on CUPED-adjusted user metrics; the covariate is the same metric on earlier logs.

    `prev` holds the previous period's per-user metrics (a `user` column), from
    whichever engine aggregated them; this part is engine-independent.
    """
    prev = prev.set_index("user")
    covered = u["user"].isin(prev.index).to_numpy()
    coverage = float(covered.mean()) if len(u) else 0.0
    if coverage == 0:
        warnings.append("CUPED skipped: no user of this experiment appears in the previous logs")
        return None
    rows = []
    arm_all = u["arm"].to_numpy()
    for m in metrics:
        y_all = u[m].to_numpy(np.float64)
        x_all = u["user"].map(prev[m]).to_numpy(np.float64)
        ok = ~np.isnan(y_all)
        y, x, arm = y_all[ok], x_all[ok], arm_all[ok]
        have = ~np.isnan(x)
        if have.sum() < 3:
            continue
        # Users with no history get the mean covariate: their adjustment is zero.
        x = np.where(have, x, x[have].mean())
        theta = stats.cuped_theta(y, x)
        adj = stats.cuped_adjust(y, x, theta)
        corr = float(np.corrcoef(y[have], x[have])[0, 1]) if have.sum() > 2 else math.nan
        var_raw = float(np.var(y, ddof=1))
        var_adj = float(np.var(adj, ddof=1))
        c_mean = float(y[arm == control].mean()) if (arm == control).any() else math.nan
        # percent of the *raw* control mean: CUPED keeps the means, only narrows the CI
        scale = 100.0 / c_mean if c_mean else math.nan
        for t in treatments:
            e = stats.welch(
                stats.Moments.of(adj[arm == control]), stats.Moments.of(adj[arm == t]), alpha
            )
            lo, hi = sorted((e.lower_abs * scale, e.upper_abs * scale))
            rows.append(
                {
                    "treatment": t,
                    "metric": m,
                    "theta": theta,
                    "coverage": coverage,
                    "users_pre": int(covered.sum()),
                    "corr": corr,
                    "variance_reduction": 1 - var_adj / var_raw if var_raw > 0 else math.nan,
                    "diff": e.diff,
                    "effect": e.diff * scale,
                    "lower": lo,
                    "upper": hi,
                    "p_value": e.p_value,
                    "significant": e.significant,
                }
            )
    return holm_table(rows, alpha)


def power_table(
    per_arm: dict[str, pd.DataFrame],
    control: str,
    treatments: list[str],
    metrics: Sequence[str],
    alpha: float,
    power: float,
    target: float | None,
) -> pd.DataFrame:
    rows = []
    c = per_arm[control]
    n_t = min((len(per_arm[t]) for t in treatments), default=0)
    for m in metrics:
        x = c[m].dropna().to_numpy(np.float64)
        if x.size < 2:
            continue
        sd = float(x.std(ddof=1))
        mean = float(x.mean())
        abs_mde = stats.mde(sd, x.size, n_t, alpha, power)
        row: dict[str, Any] = {
            "metric": m,
            "control_mean": mean,
            "control_sd": sd,
            "n_control": int(x.size),
            "n_treatment": int(n_t),
            "mde_abs": abs_mde,
            "mde_pct": abs_mde / mean * 100 if mean else math.nan,
        }
        if target is not None and mean and sd > 0:
            n_c, n_tt = stats.sample_size(sd, target * mean, alpha, power)
            row["target_pct"] = target * 100
            row["users_per_arm_needed"] = max(n_c, n_tt)
        rows.append(row)
    return pd.DataFrame(rows)


def ratio_table(
    per_arm: dict[str, pd.DataFrame], control: str, treatments: list[str], alpha: float
) -> pd.DataFrame:
    """Delta-method intervals for the pooled session-level ratios, Holm-corrected."""
    rows = []
    for arm in treatments:
        for name, (num, den) in RATIOS.items():
            rc = stats.Ratio.of(per_arm[control][num], per_arm[control][den])
            rt = stats.Ratio.of(per_arm[arm][num], per_arm[arm][den])
            e = stats.delta_effect(rc, rt, alpha)
            rel = stats.relative_of_ratios(rc, rt, alpha)
            rows.append({"treatment": arm, "metric": name, **e.to_dict(), **rel.to_dict()})
    return holm_table(rows, alpha)


def check_arms(
    users_by_arm: dict[str, int],
    experiment: str,
    control: str,
    n_multi: int,
    shares: dict[str, float] | None,
    srm_threshold: float,
    warnings: list[str],
) -> tuple[list[str], list[str], stats.SRM]:
    """Arms, treatments with users and the SRM check, from users per arm (any engine).

    Raises AbError when the control or every treatment is empty; appends warnings
    for empty arms, users seen in several arms and a sample-ratio mismatch.
    """
    users_by_arm = dict(users_by_arm)
    arms_seen = list(users_by_arm)
    if shares:
        for a in shares:
            users_by_arm.setdefault(a, 0)
    arms = sort_arms(list(users_by_arm), control)
    if control not in arms or users_by_arm.get(control, 0) == 0:
        raise AbError(
            f"control arm {control!r} has no users in experiment {experiment!r}; arms seen: "
            + (", ".join(sort_arms(arms_seen, control)) or "none")
        )
    for a in arms:
        if users_by_arm.get(a, 0) == 0:
            warnings.append(f"arm {a} has no users")
    treatments = [a for a in arms if a != control and users_by_arm.get(a, 0) > 0]
    if not treatments:
        raise AbError(f"experiment {experiment!r} has no treatment arm with users (only {control})")
    if n_multi:
        warnings.append(
            f"{n_multi} user(s) logged in more than one arm of {experiment}: assignment is not stable"
        )
    srm = stats.srm_check({a: int(users_by_arm.get(a, 0)) for a in arms}, shares, srm_threshold)
    if srm.mismatch:
        warnings.append(
            f"SAMPLE RATIO MISMATCH: users per arm {dict(zip(srm.arms, srm.observed, strict=True))} "
            f"vs expected {dict(zip(srm.arms, [round(x, 1) for x in srm.expected], strict=True))} "
            f"(chi2={srm.chi2:.1f}, p={srm.p_value:.2g}); the split is broken, do not trust the effects"
        )
    return arms, treatments, srm


def analyze(
    events: pd.DataFrame,
    experiment: str,
    control: str = "C",
    *,
    alpha: float = 0.05,
    previous_events: pd.DataFrame | None = None,
    shares: dict[str, float] | None = None,
    mde_target: float | None = None,
    power: float = 0.8,
    srm_threshold: float = 0.001,
    configured: vd.Configured | None = None,
    gate: vd.Gate | None = None,
) -> AbResult:
    """A/B analysis of one experiment on loaded events (see module docstring).

    `configured` (from `verdict.read_config_snapshots` beside the logs) gives the
    shares the SRM check tests against when `shares` is not given, and the arms
    that must have been served; `gate` sets the verdict's thresholds.

    Raises AbError when the experiment or its control arm is absent, or no
    treatment arm has users. Degenerate arms (fewer than 2 users) are warned
    about and get NaN rows instead of crashing.
    """
    col = EXP_PREFIX + experiment
    seen = sorted(c[len(EXP_PREFIX) :] for c in events.columns if c.startswith(EXP_PREFIX))
    if col not in events.columns:
        raise AbError(
            f"experiment {experiment!r} is not in the logs; experiments seen: "
            + (", ".join(seen) if seen else "none")
        )
    warnings: list[str] = []
    arm_ev = events[col]
    has = arm_ev.notna().to_numpy()
    if not has.all():
        # The course keeps only events that carry the experiment (groupby drops NaN).
        events = events.loc[has]
    codes, names = arm_codes(events[col])
    # distinct (user, arm) pairs: users per arm, and users seen in several arms
    pairs = pd.DataFrame({"user": events["user"].to_numpy(np.int64), "arm": codes})
    pairs = pairs.drop_duplicates()
    per_code = np.bincount(pairs["arm"].to_numpy(), minlength=len(names))
    users_by_arm = {names[i]: int(k) for i, k in enumerate(per_code) if k > 0}
    n_multi = int(len(pairs) - pairs["user"].nunique())
    if shares is None and configured is not None:
        shares = configured.shares
    arms, treatments, srm = check_arms(
        users_by_arm, experiment, control, n_multi, shares, srm_threshold, warnings
    )

    sz = sessionize(events)
    sess = sz.sessions.rename(columns={col: "arm"})
    u = user_level(sess, "arm")
    per_arm = {a: u.loc[u["arm"] == a] for a in arms}
    users_per_arm = {a: len(per_arm[a]) for a in arms}
    finished_users = {a: int((per_arm[a]["sessions"] > 0).sum()) for a in arms}
    for a in arms:
        if 0 < users_per_arm[a] and finished_users[a] < 2:
            warnings.append(
                f"arm {a} has {finished_users[a]} user(s) with a finished session: no CI"
            )
    if finished_users[control] == 0:
        raise AbError(f"control arm {control!r} has no user with a finished session")

    moments = {a: _moments(per_arm[a], METRICS) for a in [control, *treatments]}
    table = effects_table(moments, control, treatments, METRICS, alpha)

    ratios = ratio_table(per_arm, control, treatments, alpha)

    fin = sess.loc[sess["finished"].to_numpy()]
    lengths = (
        fin.assign(arm=arm_strings(fin["arm"]))
        .groupby(["arm", "tracks"], observed=True)
        .size()
        .rename("sessions")
        .reset_index()
    )
    cuped = None
    if previous_events is not None:
        if len(previous_events) == 0:
            warnings.append("CUPED skipped: the previous logs hold no events")
        else:
            cuped = _cuped(u, previous_events, control, treatments, METRICS, alpha, warnings)
    pw = power_table(per_arm, control, treatments, METRICS, alpha, power, mde_target)
    res = AbResult(
        experiment=experiment,
        control=control,
        arms=arms,
        alpha=alpha,
        users_per_arm=users_per_arm,
        table=table,
        ratios=ratios,
        srm=srm,
        user_level=u,
        session_lengths=lengths,
        timeline=_timeline(fin, arms),
        cuped=cuped,
        power=pw,
        unfinished_sessions=sz.n_unfinished,
        warnings=warnings,
        health=vd.serving_health(events, col),
        configured=configured,
        srm_threshold=srm_threshold,
    )
    return attach_verdict(res, gate, mde_target, power)


def attach_verdict(
    res: AbResult, gate: vd.Gate | None = None, mde_target: float | None = None, power: float = 0.8
) -> AbResult:
    """Run the verdict gate on a result (either engine); its size warnings stay in `res.verdict`."""
    g = gate or vd.Gate(alpha=res.alpha, power=power)
    if mde_target is not None and gate is None:
        g = vd.Gate(alpha=res.alpha, power=power, target=mde_target)
    treatments = [a for a in res.arms if a != res.control and a in set(res.table.get("treatment", []))]
    res.verdict = vd.decide(
        table=res.table,
        control=res.control,
        treatments=treatments,
        users_per_arm=res.users_per_arm,
        srm_mismatch=res.srm.mismatch,
        srm_p=res.srm.p_value,
        srm_threshold=res.srm_threshold,
        served=dict(zip(res.srm.arms, res.srm.observed, strict=True)),
        health=res.health,
        configured=res.configured,
        power=res.power,
        gate=g,
    )
    return res


def analyze_logs(
    logs: str | Path | Sequence[str | Path],
    experiment: str,
    control: str = "C",
    *,
    previous_logs: str | Path | Sequence[str | Path] | None = None,
    **kw: Any,
) -> AbResult:
    """read_events + analyze, carrying the load reports into the result."""
    loaded = read_events(logs)
    prev = read_events(previous_logs) if previous_logs is not None else None
    if "configured" not in kw:
        kw["configured"] = vd.configured_experiment(vd.read_config_snapshots(logs), experiment)
    res = analyze(
        loaded.events,
        experiment,
        control,
        previous_events=prev.events if prev is not None else None,
        **kw,
    )
    res.load_report = loaded.report
    res.previous_load_report = prev.report if prev is not None else None
    if loaded.report.bad or loaded.report.duplicates:
        res.warnings.insert(0, "logs: " + loaded.report.summary())
    return res


__all__ = [
    "METRICS",
    "RATIOS",
    "AbError",
    "AbResult",
    "analyze",
    "analyze_logs",
    "attach_verdict",
    "check_arms",
    "cuped_table",
    "power_table",
    "ratio_table",
    "arm_codes",
    "arm_strings",
    "effects_table",
    "sort_arms",
    "timeline_buckets",
    "timeline_from_buckets",
    "user_level",
]
