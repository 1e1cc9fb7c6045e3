"""Sessionization on Spark, with the embedded engine's semantics.

A session is a user's run of events up to and including a `last` event, in
the embedded engine's order (`botify.analysis.sessions.event_order`): by `seq`
within epochs (a new one at each `seq == 1`) for a user whose events all carry
`seq`, else by (timestamp, file order, line order); the tail after a user's final
`last` is an unfinished session. Each event's session index within its user is
the number of `last` events strictly before it: one window pass per user,
no per-row Python.

Session keys are (user, sidx). The embedded engine numbers sessions globally in
(user, time) order, which is the same order as (user, sidx); `session_ids`
gives that global number when a caller needs it (small data only).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from botify.spark.logs import ORDER

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame

SESSION_KEY = ("user", "sidx")
#: Order of a user's events once `sessionize` added the seq keys.
EVENT_ORDER = ("ord_epoch", "ord_seq", *ORDER)


def _with_order(events: DataFrame) -> DataFrame:
    """Adds `ord_epoch`, `ord_seq`: with ORDER, each user's events in the order they happened.

    Mirrors `event_order`: a user whose events all carry `seq` is ordered by
    (epoch, seq), where an epoch starts at each `seq == 1` in (timestamp, seq)
    order (the Redis counter expired or was lost); anyone else by ORDER alone.
    """
    from pyspark.sql import Window
    from pyspark.sql import functions as sf

    by_user = Window.partitionBy("user")
    ok = sf.min(sf.col("seq").isNotNull().cast("int")).over(by_user) == 1
    ev = events.withColumn("_ok", ok)
    sv = sf.when(sf.col("_ok"), sf.col("seq")).otherwise(sf.lit(0))
    w = by_user.orderBy(sf.col("timestamp"), sv, *[sf.col(c) for c in ORDER[1:]]).rowsBetween(
        Window.unboundedPreceding, Window.currentRow
    )
    restart = (sf.col("_ok") & (sf.col("seq") == 1)).cast("long")
    ev = ev.withColumn("_epoch", sf.sum(restart).over(w))
    return ev.select(
        *events.columns,
        sf.when(sf.col("_ok"), sf.col("_epoch")).otherwise(sf.lit(0)).cast("long").alias("ord_epoch"),
        sf.when(sf.col("_ok"), sf.col("seq")).otherwise(sf.lit(0)).cast("long").alias("ord_seq"),
    )


def sessionize(events: DataFrame) -> DataFrame:
    """Events plus `sidx` (session index within the user), `step` and `is_last`."""
    from pyspark.sql import Window
    from pyspark.sql import functions as sf

    events = _with_order(events)
    order = [sf.col(c) for c in EVENT_ORDER]
    w_user = Window.partitionBy("user").orderBy(*order)
    is_last = (sf.col("message") == "last").cast("int")
    ev = events.withColumn("is_last", is_last)
    ev = ev.withColumn(
        "sidx",
        sf.coalesce(
            sf.sum("is_last").over(w_user.rowsBetween(Window.unboundedPreceding, -1)),
            sf.lit(0),
        ).cast("long"),
    )
    w_sess = Window.partitionBy(*SESSION_KEY).orderBy(*order)
    return ev.withColumn("step", (sf.row_number().over(w_sess) - 1).cast("long"))


def _first(col: str | Column) -> Column:
    """Value of `col` on the session's first event (the embedded engine's choice for arms)."""
    from pyspark.sql import functions as sf

    return sf.min_by(col, sf.struct(*[sf.col(c) for c in EVENT_ORDER]))


def sessions(sessionized: DataFrame, arm: Column | None = None) -> DataFrame:
    """One row per session: user, sidx, start, end (ms), tracks, time, latency_sum,
    latency_n, finished, and `arm` (of the first event) when an arm column is given."""
    from pyspark.sql import functions as sf

    aggs = [
        sf.min("timestamp").alias("start"),
        sf.max("timestamp").alias("end"),
        sf.count(sf.lit(1)).alias("tracks"),
        sf.sum("time").alias("time"),
        sf.sum(sf.coalesce(sf.col("latency"), sf.lit(0.0))).alias("latency_sum"),
        sf.count("latency").alias("latency_n"),
        (sf.max("is_last") == 1).alias("finished"),
    ]
    if arm is not None:
        aggs.append(_first(arm).alias("arm"))
    return sessionized.groupBy(*SESSION_KEY).agg(*aggs)


def session_ids(sessions_df: DataFrame) -> DataFrame:
    """Adds `session_id`: the embedded engine's global session number (0.. in user, sidx order).

    Uses a global ordering (one partition): meant for parity checks and small runs.
    """
    from pyspark.sql import Window
    from pyspark.sql import functions as sf

    w = Window.orderBy(*SESSION_KEY)
    return sessions_df.withColumn("session_id", (sf.row_number().over(w) - 1).cast("long"))


def summary(sessions_df: DataFrame) -> dict[str, int]:
    """Counts for a report line: sessions, finished, unfinished, unfinished events."""
    from pyspark.sql import functions as sf

    r = sessions_df.agg(
        sf.count(sf.lit(1)).alias("sessions"),
        sf.sum(sf.col("finished").cast("long")).alias("finished"),
        sf.sum(sf.when(~sf.col("finished"), sf.col("tracks")).otherwise(0)).alias("unf_events"),
    ).collect()[0]
    n = int(r["sessions"] or 0)
    fin = int(r["finished"] or 0)
    return {
        "sessions": n,
        "finished": fin,
        "unfinished": n - fin,
        "unfinished_events": int(r["unf_events"] or 0),
    }


__all__ = ["EVENT_ORDER", "SESSION_KEY", "session_ids", "sessionize", "sessions", "summary"]
