"""The A/B table on Spark: Spark aggregates, botify.analysis.ab/stats do the statistics.

Spark does everything whose size grows with the logs (filtering, sessionizing,
per-user sums, the session-length histogram, timeline buckets); what reaches
the driver is one row per (arm, user) plus small histograms. From there the
same functions as the embedded engine (`botify.analysis.ab` helpers and
`botify.analysis.stats`) build the table, so the two engines cannot drift apart
in their statistics; a parity test checks that they give the same numbers.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from botify.analysis import ab as emb
from botify.analysis import stats
from botify.analysis import verdict as vd
from botify.spark import sessions as ssess
from botify.spark.logs import SparkLoaded, arm, read_events

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession


def user_level(sess: DataFrame, by_arm: bool = True) -> pd.DataFrame:
    """The course's per-(arm, user) table (sums over finished sessions), as `ab.user_level` builds it."""
    from pyspark.sql import functions as sf

    keys = ["arm", "user"] if by_arm else ["user"]
    fin = sf.col("finished")

    def fsum(c: str, zero: Any) -> Any:
        return sf.sum(sf.when(fin, sf.col(c)).otherwise(sf.lit(zero)))

    # Users with only unfinished sessions keep a row (time 0, sessions 0), as in the course.
    agg = sess.groupBy(*keys).agg(
        sf.sum(fin.cast("long")).alias("sessions"),
        fsum("tracks", 0).alias("tracks"),
        fsum("time", 0.0).alias("time"),
        fsum("latency_sum", 0.0).alias("latency_sum"),
        fsum("latency_n", 0).alias("latency_n"),
    )
    u = agg.toPandas()
    if not by_arm:
        u.insert(0, "arm", "all")
    u = u.sort_values(["arm", "user"], kind="stable").reset_index(drop=True)
    u["arm"] = u["arm"].astype(str).to_numpy(dtype=object)
    for c in ("user", "sessions", "tracks", "latency_n"):
        u[c] = u[c].astype(np.int64)
    for c in ("time", "latency_sum"):
        u[c] = u[c].astype(np.float64)
    u["latency_ms"] = u["latency_sum"] * 1000.0
    with np.errstate(invalid="ignore", divide="ignore"):
        u["mean_request_latency"] = u["latency_ms"] / u["latency_n"]
        u["mean_tracks_per_session"] = u["tracks"] / u["sessions"]
        u["mean_time_per_session"] = u["time"] / u["sessions"]
    return u


def _moments(u: pd.DataFrame) -> dict[str, stats.Moments]:
    """Per-metric moments of one arm's users; NaN (no latency logged) left out, as embedded."""
    out = {}
    for m in emb.METRICS:
        x = u[m].to_numpy(np.float64)
        out[m] = stats.Moments.of(x[~np.isnan(x)])
    return out


def timeline(
    sess: DataFrame,
    arms: list[str],
    points: int = 100,
    span: tuple[int | None, int | None] | None = None,
) -> pd.DataFrame:
    """Cumulative pooled time per session per arm against finished sessions so far:
    `ab._timeline`'s buckets (equal shares of each arm's sessions in (end, user,
    session) order), ranked in Spark; only one row per (arm, bucket) reaches the driver."""
    from pyspark.sql import Window
    from pyspark.sql import functions as sf

    fin = sess.filter(sf.col("finished"))
    if span is None:
        r = fin.agg(sf.min("end").alias("lo"), sf.max("end").alias("hi")).collect()[0]
        span = (r["lo"], r["hi"])
    if span[0] is None or span[1] is None:
        return pd.DataFrame(columns=emb.TIMELINE_COLUMNS)
    w = Window.partitionBy("arm").orderBy("end", "user", "sidx")
    n = sf.count(sf.lit(1)).over(Window.partitionBy("arm"))
    p = sf.least(sf.lit(points), n)
    ranked = fin.select(
        "arm", "time", "end", sf.row_number().over(w).alias("rank"), n.alias("n"), p.alias("p")
    )
    bucket = sf.ceil(sf.col("rank") * sf.col("p") / sf.col("n")).cast("long")
    g = (
        ranked.groupBy("arm", bucket.alias("bucket"))
        .agg(
            sf.count(sf.lit(1)).alias("sessions"),
            sf.sum("time").alias("time"),
            sf.max("end").alias("end_ms"),
        )
        .toPandas()
    )
    g["arm"] = g["arm"].astype(str)
    return emb.timeline_from_buckets(g, arms, int(span[0]))


def analyze(
    loaded: SparkLoaded,
    experiment: str,
    control: str = "C",
    *,
    alpha: float = 0.05,
    previous: SparkLoaded | None = None,
    shares: dict[str, float] | None = None,
    mde_target: float | None = None,
    power: float = 0.8,
    srm_threshold: float = 0.001,
    configured: vd.Configured | None = None,
    gate: vd.Gate | None = None,
) -> emb.AbResult:
    """`botify.analysis.ab.analyze` on Spark-loaded events: same arguments, same AbResult.

    Raises botify.analysis.ab.AbError in the same situations with the same messages.
    """
    from pyspark import StorageLevel
    from pyspark.sql import functions as sf

    if experiment not in loaded.experiments:
        seen = loaded.experiments
        raise emb.AbError(
            f"experiment {experiment!r} is not in the logs; experiments seen: "
            + (", ".join(seen) if seen else "none")
        )
    warnings: list[str] = []
    # The course keeps only events that carry the experiment.
    ev = loaded.events.withColumn("arm", arm(experiment)).filter(sf.col("arm").isNotNull())

    # One job: distinct users per arm and overall (rollup's null row), and the first
    # and last `last` event (the span of finished sessions' ends, for the timeline).
    is_last = sf.col("message") == "last"
    per_arm_rows = (
        ev.rollup("arm")
        .agg(
            sf.count_distinct("user").alias("n"),
            sf.min(sf.when(is_last, sf.col("timestamp"))).alias("lo"),
            sf.max(sf.when(is_last, sf.col("timestamp"))).alias("hi"),
        )
        .collect()
    )
    users_by_arm = {r["arm"]: int(r["n"]) for r in per_arm_rows if r["arm"] is not None}
    total = [r for r in per_arm_rows if r["arm"] is None]
    n_users = int(total[0]["n"]) if total else 0
    n_multi = int(sum(users_by_arm.values()) - n_users)
    span = (total[0]["lo"], total[0]["hi"]) if total else (None, None)
    if shares is None and configured is not None:
        shares = configured.shares
    arms, treatments, srm = emb.check_arms(
        users_by_arm, experiment, control, n_multi, shares, srm_threshold, warnings
    )

    # Serving health: `next` answers per (arm, who answered, fallback reason), a few rows.
    counts = (
        ev.filter(sf.col("message") == "next")
        .groupBy("arm", "recommender", "fallback")
        .agg(sf.count(sf.lit(1)).alias("n"))
        .toPandas()
    )
    health = vd.health_from_counts(counts.astype(object).where(counts.notna(), None))

    sess = ssess.sessions(ssess.sessionize(ev), sf.col("arm")).persist(
        StorageLevel.MEMORY_AND_DISK
    )
    try:
        u = user_level(sess)
        hist = (
            sess.groupBy("finished", "arm", "tracks")
            .agg(sf.count(sf.lit(1)).alias("sessions"))
            .toPandas()
        )
        unfinished = int(hist.loc[~hist["finished"].astype(bool), "sessions"].sum())
        lengths = (
            hist.loc[hist["finished"].astype(bool), ["arm", "tracks", "sessions"]]
            .sort_values(["arm", "tracks"])
            .reset_index(drop=True)
        )
        lengths["arm"] = lengths["arm"].astype(str).to_numpy(dtype=object)
        lengths["tracks"] = lengths["tracks"].astype(np.int64)
        lengths["sessions"] = lengths["sessions"].astype(np.int64)
        tl = timeline(sess, arms, span=span)
    finally:
        sess.unpersist()

    per_arm = {a: u.loc[u["arm"] == a] for a in arms}
    users_per_arm = {a: len(per_arm[a]) for a in arms}
    finished_users = {a: int((per_arm[a]["sessions"] > 0).sum()) for a in arms}
    for a in arms:
        if 0 < users_per_arm[a] and finished_users[a] < 2:
            warnings.append(
                f"arm {a} has {finished_users[a]} user(s) with a finished session: no CI"
            )
    if finished_users[control] == 0:
        raise emb.AbError(f"control arm {control!r} has no user with a finished session")

    # The statistics: the embedded engine's own functions on the per-user table.
    moments = {a: _moments(per_arm[a]) for a in [control, *treatments]}
    table = emb.effects_table(moments, control, treatments, emb.METRICS, alpha)
    ratios = emb.ratio_table(per_arm, control, treatments, alpha)

    cuped = None
    if previous is not None:
        if previous.report.events == 0:
            warnings.append("CUPED skipped: the previous logs hold no events")
        else:
            prev_sess = ssess.sessions(ssess.sessionize(previous.events))
            prev_u = user_level(prev_sess, by_arm=False)
            cuped = emb.cuped_table(u, prev_u, control, treatments, emb.METRICS, alpha, warnings)
    pw = emb.power_table(per_arm, control, treatments, emb.METRICS, alpha, power, mde_target)
    res = emb.AbResult(
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
        timeline=tl,
        cuped=cuped,
        power=pw,
        unfinished_sessions=unfinished,
        warnings=warnings,
        health=health,
        configured=configured,
        srm_threshold=srm_threshold,
    )
    res.load_report = loaded.report
    res.previous_load_report = previous.report if previous is not None else None
    return emb.attach_verdict(res, gate, mde_target, power)


def analyze_logs(
    spark: SparkSession,
    logs: str | Path | Sequence[str | Path],
    experiment: str,
    control: str = "C",
    *,
    previous_logs: str | Path | Sequence[str | Path] | None = None,
    **kw: Any,
) -> emb.AbResult:
    """read_events + analyze on Spark, carrying the load reports (as `ab.analyze_logs`)."""
    loaded = read_events(spark, logs)
    prev = read_events(spark, previous_logs) if previous_logs is not None else None
    kw.setdefault("configured", vd.configured_experiment(config_snapshots(logs), experiment))
    try:
        res = analyze(loaded, experiment, control, previous=prev, **kw)
    finally:
        loaded.unpersist()
        if prev is not None:
            prev.unpersist()
    if loaded.report.bad or loaded.report.duplicates:
        res.warnings.insert(0, "logs: " + loaded.report.summary())
    return res


def config_snapshots(logs: str | Path | Sequence[str | Path]) -> list[dict[str, Any]]:
    """Configuration snapshots beside local logs (remote URIs have none to read here)."""
    paths = [logs] if isinstance(logs, str | Path) else list(logs)
    local = [p for p in paths if "://" not in str(p) or str(p).startswith("file://")]
    local = [str(p)[len("file://"):] if str(p).startswith("file://") else p for p in local]
    return vd.read_config_snapshots(local)


__all__ = ["analyze", "analyze_logs", "config_snapshots", "timeline", "user_level"]
