"""Always-valid A/B table (`botify ab --sequential`, `botify lab --sequential`).

Why a separate table: the course's Welch interval is right for one look decided in
advance; people who watch an experiment while it runs and stop when it looks good
need the confidence sequence of `botify.analysis.stats.sequential`, which stays at
the promised error rate at every look (docs/analysis.md, "Peeking"). The maths is
in stats.py; this module only lays the user-level rows out per arm and metric.
"""

from __future__ import annotations

import pandas as pd
from botify.analysis import stats

#: The course's user-level metrics, in the course table's order.
METRICS = (
    "time",
    "sessions",
    "mean_request_latency",
    "mean_tracks_per_session",
    "mean_time_per_session",
)


def sequential_table(
    user_level: pd.DataFrame,
    control: str = "C",
    alpha: float = 0.05,
    n_star: float = stats.CS_TUNING_N,
    metrics: tuple[str, ...] = METRICS,
) -> pd.DataFrame:
    """One row per (treatment, metric): effect and its always-valid interval, in percent
    of the control mean as the course table, and whether it excludes zero.

    `user_level` has one row per (arm, user) with the metric columns (AbResult.user_level).
    """
    rows: list[dict[str, object]] = []
    arms = [str(a) for a in pd.unique(user_level["arm"].astype(str))]
    if control not in arms:
        return pd.DataFrame(rows)
    by_arm = {a: g for a, g in user_level.groupby(user_level["arm"].astype(str), sort=False)}
    for arm in sorted(a for a in arms if a != control):
        for m in metrics:
            if m not in user_level.columns:
                continue
            c = stats.Moments.of(by_arm[control][m].dropna().to_numpy())
            t = stats.Moments.of(by_arm[arm][m].dropna().to_numpy())
            e = stats.sequential(c, t, alpha, n_star)
            rows.append({"treatment": arm, "metric": m} | e.to_dict())
    return pd.DataFrame(rows)


def format_sequential(table: pd.DataFrame, alpha: float = 0.05) -> str:
    """Plain-text table for a terminal (fits 80 columns)."""
    if table.empty:
        return "sequential: no treatment arm with users"
    n_star = int(table["n_star"].iloc[0])
    lines = [
        f"Always-valid {100 * (1 - alpha):.0f}% intervals, safe at every look",
        f"(asymptotic confidence sequence tuned at {n_star} users)",
        f"{'arm':<4} {'metric':<24} {'effect':>8} {'interval':>21} {'signif.':>7}",
    ]
    for r in table.itertuples(index=False):
        ci = f"[{r.lower:+.2f}%, {r.upper:+.2f}%]"
        lines.append(
            f"{r.treatment:<4} {r.metric:<24} {r.effect:>+7.2f}% {ci:>21} "
            f"{'yes' if r.significant else 'no':>7}"
        )
    return "\n".join(lines)


__all__ = ["METRICS", "format_sequential", "sequential_table"]
