"""The one A/B verdict gate: ship / don't ship / invalid, with the reasons, for every consumer.

Why one function: the CLI, the HTML report, the notebooks and `botify.lab`'s
promotion used to read the effects table each their own way (the lab promoted
on the uncorrected interval and ignored a broken split). Here every rule that
decides whether an effect can be believed lives in one place:

- the split: a sample-ratio check against the shares the experiment was
  *configured* with (the service writes them beside its log, see
  `read_config_snapshots`), and every configured arm must have been served;
- serving health: the share of each arm's answers that came from a fallback
  (a recommender that raises is answered by `random`, which would otherwise
  "win" under the broken recommender's name);
- enough users: no verdict under `min_users` per arm, a warning below the
  size the power table says is needed;
- significance after Holm across arms x metrics, on the primary metric, in
  the metric's good direction, with no other metric significantly worse.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pandas as pd

SHIP = "ship"
DONT_SHIP = "don't ship"
INVALID = "invalid"

#: +1: higher is better; -1: lower is better (a latency increase is bad).
DIRECTION: dict[str, int] = {
    "time": 1,
    "sessions": 1,
    "mean_request_latency": -1,
    "mean_tracks_per_session": 1,
    "mean_time_per_session": 1,
    "time_per_session": 1,
    "tracks_per_session": 1,
    "request_latency_ms": -1,
}

#: The file each worker directory holds next to its events (one JSON line per (re)load).
SNAPSHOT_FILE = "experiments.jsonl"


def direction(metric: str) -> int:
    """+1 when an increase of `metric` is good, -1 when it is bad."""
    return DIRECTION.get(metric, 1)


@dataclass(frozen=True)
class Gate:
    """Thresholds of the gate (the CLI flags and the lab options set them)."""

    primary: str = "time"
    alpha: float = 0.05
    max_fallback: float = 0.01
    min_users: int = 30
    #: relative effect the experiment should be able to detect (comfortable size)
    target: float = 0.05
    power: float = 0.8


# --------------------------------------------------------------------------- configured shares


@dataclass(frozen=True)
class Configured:
    """An experiment as the service was configured to run it (from the snapshots)."""

    name: str
    arms: dict[str, str]  # arm -> recommender
    shares: dict[str, float]  # arm -> share (equal when the config gave none)
    changed: bool = False  # the arms or shares differ between snapshots of this run
    sources: int = 1


def _snapshot_files(paths: str | Path | Sequence[str | Path]) -> list[Path]:
    if isinstance(paths, str | Path):
        paths = [paths]
    out: list[Path] = []
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            out.extend(sorted(p.rglob(SNAPSHOT_FILE)))
        elif p.is_file():
            sib = p.parent / SNAPSHOT_FILE
            if sib.is_file() and sib not in out:
                out.append(sib)
    return out


def read_config_snapshots(paths: str | Path | Sequence[str | Path]) -> list[dict[str, Any]]:
    """Every configuration snapshot found beside the given logs, oldest first.

    A line that does not parse is skipped (a worker killed mid-write): the
    snapshot is advisory, the events are the data.
    """
    recs: list[dict[str, Any]] = []
    for f in _snapshot_files(paths):
        try:
            lines = f.read_bytes().splitlines()
        except OSError:
            continue
        for line in lines:
            try:
                obj = orjson.loads(line)
            except orjson.JSONDecodeError:
                continue
            if isinstance(obj, dict) and isinstance(obj.get("experiments"), list):
                recs.append(obj)
    recs.sort(key=lambda r: r.get("timestamp") or 0)
    return recs


def _is_share(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and 0 <= v <= 1


def configured_experiment(snapshots: Iterable[dict[str, Any]], name: str) -> Configured | None:
    """The configured arms and shares of experiment `name`, or None when no snapshot names it."""
    seen: list[tuple[tuple[tuple[str, str], ...], tuple[tuple[str, float], ...]]] = []
    for rec in snapshots:
        for e in rec.get("experiments") or []:
            if not isinstance(e, dict) or e.get("name") != name:
                continue
            arms = e.get("arms")
            if not isinstance(arms, dict) or not arms:
                continue
            sh = e.get("shares")
            if isinstance(sh, dict) and sh:
                vals = [sh.get(a, 0.0) for a in arms]
                if not all(_is_share(v) for v in vals) or sum(vals) <= 0:
                    continue  # a damaged snapshot line: advisory only, never a crash
                shares = {str(a): float(v) for a, v in zip(arms, vals, strict=True)}
            else:
                shares = {str(a): 1.0 / len(arms) for a in arms}
            key = (
                tuple(sorted((str(a), str(r)) for a, r in arms.items())),
                tuple(sorted((a, round(v, 6)) for a, v in shares.items())),
            )
            seen.append(key)
    if not seen:
        return None
    arms_t, shares_t = seen[-1]
    return Configured(
        name=name,
        arms=dict(arms_t),
        shares=dict(shares_t),
        changed=len(set(seen)) > 1,
        sources=len(seen),
    )


# --------------------------------------------------------------------------- serving health

HEALTH_COLUMNS = ["arm", "answers", "fallback_answers", "fallback_share",
                  "fallback_recommender", "fallback_reason"]  # fmt: skip


def _codes(s: pd.Series) -> tuple[np.ndarray, list[Any]]:
    if not isinstance(s.dtype, pd.CategoricalDtype):
        s = s.astype("category")
    return s.cat.codes.to_numpy().astype(np.int64), list(s.cat.categories)


def serving_health(events: pd.DataFrame, arm_col: str) -> pd.DataFrame:
    """Per arm: `next` answers, how many came from a fallback, and the main fallback and reason.

    Columns: arm, answers, fallback_answers, fallback_share, fallback_recommender,
    fallback_reason. Empty when the logs carry no `fallback` field (course logs).
    Works on category codes: a million events cost a few array passes.
    """
    if "fallback" not in events.columns or arm_col not in events.columns or not len(events):
        return pd.DataFrame(columns=HEALTH_COLUMNS)
    nxt = (events["message"] == "next").to_numpy(bool)
    arm, arm_names = _codes(events[arm_col])
    fb, fb_names = _codes(events["fallback"])
    if "recommender" in events.columns:
        rec, rec_names = _codes(events["recommender"])
    else:
        rec, rec_names = np.full(len(events), -1, np.int64), []
    keep = nxt & (arm >= 0)
    total = np.bincount(arm[keep], minlength=len(arm_names))
    f = keep & (fb >= 0)
    parts = pd.DataFrame({"arm": arm[f], "rec": rec[f], "fb": fb[f]})
    grouped = parts.groupby(["arm", "rec", "fb"]).size().reset_index(name="n")
    rows = [
        {
            "arm": arm_names[int(r.arm)],
            "recommender": rec_names[int(r.rec)] if r.rec >= 0 else None,
            "fallback": fb_names[int(r.fb)],
            "n": int(r.n),
        }
        for r in grouped.itertuples(index=False)
    ]
    fb_per_arm = np.bincount(arm[f], minlength=len(arm_names))
    for i, name in enumerate(arm_names):
        if total[i]:
            rows.append(
                {"arm": name, "recommender": None, "fallback": None, "n": int(total[i] - fb_per_arm[i])}
            )
    if not rows:
        return pd.DataFrame(columns=HEALTH_COLUMNS)
    return health_from_counts(pd.DataFrame(rows))


def health_from_counts(counts: pd.DataFrame) -> pd.DataFrame:
    """The `serving_health` table from (arm, recommender, fallback, n) counts of `next` events.

    Why: a distributed engine counts the groups and ships only these rows to the
    driver; the share and the main fallback are then computed here, once.
    """
    rows = []
    for a, g in counts.groupby("arm", sort=True):
        total = int(g["n"].sum())
        f = g.loc[g["fallback"].notna()]
        k = int(f["n"].sum())
        top_rec = top_reason = None
        if k:
            by_rec = f.assign(r=f["recommender"].fillna("?")).groupby("r")["n"].sum()
            top_rec = str(by_rec.sort_values(ascending=False, kind="stable").index[0])
            by_reason = f.groupby("fallback")["n"].sum()
            top_reason = str(by_reason.sort_values(ascending=False, kind="stable").index[0])
        rows.append(
            {
                "arm": str(a),
                "answers": total,
                "fallback_answers": k,
                "fallback_share": k / total if total else math.nan,
                "fallback_recommender": top_rec,
                "fallback_reason": top_reason,
            }
        )
    return pd.DataFrame(rows, columns=HEALTH_COLUMNS)


# --------------------------------------------------------------------------- the verdict


@dataclass
class ArmVerdict:
    """One treatment's decision against the control, with why."""

    arm: str
    decision: str
    reasons: list[str] = field(default_factory=list)
    effect: float = math.nan  # primary metric, % of control
    lower: float = math.nan
    upper: float = math.nan
    p_holm: float = math.nan


@dataclass
class Verdict:
    """The gate's answer for a whole experiment, and per treatment arm."""

    decision: str
    arm: str | None  # the arm to ship (decision == SHIP)
    reasons: list[str]
    warnings: list[str]
    arms: dict[str, ArmVerdict]
    gate: Gate

    def summary(self) -> str:
        """One line for a terminal or a log."""
        head = self.decision.upper() + (f" {self.arm}" if self.arm else "")
        return head + (": " + "; ".join(self.reasons) if self.reasons else "")

    def to_dict(self) -> dict[str, Any]:
        def clean(v: Any) -> Any:
            return None if isinstance(v, float) and not math.isfinite(v) else v

        return {
            "decision": self.decision,
            "arm": self.arm,
            "reasons": list(self.reasons),
            "warnings": list(self.warnings),
            "arms": {
                a: {k: clean(v) for k, v in asdict(av).items()} for a, av in self.arms.items()
            },
            "gate": asdict(self.gate),
        }


def _pct(x: float) -> str:
    return f"{x * 100:.0f}%" if x >= 0.01 or x == 0 else f"{x * 100:.2g}%"


def _health_reason(row: dict[str, Any]) -> str:
    return (
        f"{row['arm']}: {_pct(row['fallback_share'])} of answers from fallback "
        f"`{row['fallback_recommender']}`, reason {row['fallback_reason']}"
    )


def _interval(row: dict[str, Any]) -> tuple[float, float, float]:
    """(effect, lower, upper) in % of control: the delta-method relative interval when present."""
    if "rel_lower" in row and row.get("rel_lower") is not None and math.isfinite(row["rel_lower"]):
        return float(row["effect"]), float(row["rel_lower"]), float(row["rel_upper"])
    return float(row["effect"]), float(row["lower"]), float(row["upper"])


def decide(
    *,
    table: pd.DataFrame,
    control: str,
    treatments: Sequence[str],
    users_per_arm: dict[str, int],
    srm_mismatch: bool,
    srm_p: float,
    srm_threshold: float,
    served: dict[str, int] | None = None,
    health: pd.DataFrame | None = None,
    configured: Configured | None = None,
    power: pd.DataFrame | None = None,
    gate: Gate | None = None,
) -> Verdict:
    """Ship / don't ship / invalid for an experiment, with the reasons a reader needs.

    `table` is the effects table (one row per treatment x metric, with `p_holm`,
    `effect`, `lower`, `upper` and, when computed, the delta-method `rel_lower`,
    `rel_upper`); Holm is across every row of it, i.e. arms x metrics.
    """
    g = gate or Gate()
    reasons: list[str] = []
    warnings: list[str] = []
    exp_invalid: list[str] = []

    # -- the split
    if srm_mismatch:
        exp_invalid.append(
            f"sample ratio mismatch (p={srm_p:.2g} < {srm_threshold:g}): the split is broken"
        )
    if configured is not None:
        if configured.changed:
            exp_invalid.append("arms or shares changed during the logs: the split is not one split")
        for a, share in configured.shares.items():
            if share > 0 and (served if served is not None else users_per_arm).get(a, 0) == 0:
                exp_invalid.append(f"arm {a} configured (share {share:.0%}) but never served")
    # -- serving health
    bad_health: dict[str, str] = {}
    if health is not None and len(health):
        for row in health.to_dict(orient="records"):
            share = row["fallback_share"]
            if isinstance(share, float) and math.isfinite(share) and share > g.max_fallback:
                bad_health[str(row["arm"])] = _health_reason(row)
    if control in bad_health:
        exp_invalid.append(bad_health[control] + " (control)")
    # -- users
    n_c = users_per_arm.get(control, 0)
    if n_c < g.min_users:
        exp_invalid.append(f"{control}: {n_c} users, fewer than the minimum {g.min_users}")
    needed = _comfortable(power, g)
    arm_verdicts: dict[str, ArmVerdict] = {}
    rows = table.to_dict(orient="records") if len(table) else []
    for t in treatments:
        av = ArmVerdict(arm=t, decision=DONT_SHIP)
        invalid: list[str] = []
        if t in bad_health:
            invalid.append(bad_health[t])
        n_t = users_per_arm.get(t, 0)
        if n_t < g.min_users:
            invalid.append(f"{t}: {n_t} users, fewer than the minimum {g.min_users}")
        elif needed is not None and min(n_t, n_c) < needed:
            warnings.append(
                f"{t}: {min(n_t, n_c)} users per arm, below the {needed} the power table needs "
                f"to detect {g.target:.0%} on {g.primary} with {g.power:.0%} power"
            )
        mine = [r for r in rows if r.get("treatment") == t]
        prim = next((r for r in mine if r.get("metric") == g.primary), None)
        if prim is not None:
            av.effect, av.lower, av.upper = _interval(prim)
            av.p_holm = float(prim.get("p_holm", math.nan))
        if invalid or exp_invalid:
            av.decision = INVALID
            av.reasons = invalid + exp_invalid
            arm_verdicts[t] = av
            continue
        if prim is None:
            av.reasons.append(f"no {g.primary} row for {t}")
            arm_verdicts[t] = av
            continue
        d = direction(g.primary)
        sig = _significant(prim, g.alpha)
        better = sig and d * av.effect > 0 and av.lower * av.upper > 0
        worse = [
            r["metric"]
            for r in mine
            if r.get("metric") != g.primary
            and _significant(r, g.alpha)
            and direction(str(r["metric"])) * float(r["effect"]) < 0
        ]
        if better and not worse:
            av.decision = SHIP
            av.reasons.append(
                f"{t}: {g.primary} {av.effect:+.2f}% [{av.lower:+.2f}%, {av.upper:+.2f}%], "
                f"Holm p={av.p_holm:.2g}"
            )
        elif better:
            av.reasons.append(f"{t}: {g.primary} better but significantly worse on {', '.join(worse)}")
        elif sig:
            av.reasons.append(f"{t}: {g.primary} significantly worse ({av.effect:+.2f}%)")
        else:
            p = av.p_holm
            av.reasons.append(
                f"{t}: {g.primary} {av.effect:+.2f}% not significant after Holm "
                f"(p={p:.2g} > {g.alpha:g})"
                if math.isfinite(p)
                else f"{t}: {g.primary} has no interval"
            )
        arm_verdicts[t] = av

    ships = [a for a in arm_verdicts.values() if a.decision == SHIP]
    if exp_invalid:
        decision, winner = INVALID, None
        reasons = list(exp_invalid)
    elif ships:
        best = max(ships, key=lambda a: direction(g.primary) * a.effect)
        decision, winner = SHIP, best.arm
        reasons = list(best.reasons)
        reasons += [r for a in arm_verdicts.values() if a.decision == INVALID for r in a.reasons]
    elif arm_verdicts and all(a.decision == INVALID for a in arm_verdicts.values()):
        decision, winner = INVALID, None
        reasons = [r for a in arm_verdicts.values() for r in a.reasons]
    else:
        decision, winner = DONT_SHIP, None
        reasons = [r for a in arm_verdicts.values() for r in a.reasons]
    return Verdict(decision, winner, reasons, warnings, arm_verdicts, g)


def _significant(row: dict[str, Any], alpha: float) -> bool:
    p = row.get("p_holm", math.nan)
    try:
        p = float(p)
    except (TypeError, ValueError):
        return False
    return math.isfinite(p) and p <= alpha


def _comfortable(power: pd.DataFrame | None, g: Gate) -> int | None:
    """Users per arm needed to detect `g.target` on the primary metric (from the power table)."""
    if power is None or not len(power) or "metric" not in power.columns:
        return None
    rows = power.loc[power["metric"] == g.primary]
    if rows.empty:
        return None
    r = rows.iloc[0]
    need = r.get("users_per_arm_needed") if "users_per_arm_needed" in rows.columns else None
    if need is not None and need == need:
        return int(need)
    from botify.analysis import stats

    sd, mean = float(r["control_sd"]), float(r["control_mean"])
    if not (math.isfinite(sd) and mean and sd > 0):
        return None
    n_c, n_t = stats.sample_size(sd, g.target * abs(mean), g.alpha, g.power)
    return max(n_c, n_t)


__all__ = [
    "DIRECTION",
    "DONT_SHIP",
    "INVALID",
    "SHIP",
    "SNAPSHOT_FILE",
    "ArmVerdict",
    "Configured",
    "Gate",
    "Verdict",
    "configured_experiment",
    "decide",
    "direction",
    "health_from_counts",
    "read_config_snapshots",
    "serving_health",
]
