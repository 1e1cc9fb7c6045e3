"""`top_pop` and `i2i` training on Spark, with the embedded trainers' definitions.

Same parameters (the `Params` dataclasses of botify.training.models.top_pop/i2i),
same data preparation as `TrainData.from_events` (rows with track ids outside
the catalog dropped *before* positions are counted, listen time clipped to
[0, 1], sessions in (user, time) order), same scores and the same ranking:
score descending, then track id ascending, scores <= 0 never listed.

The only difference is floating-point summation order (Spark sums in parallel),
so a score may differ from the embedded one in its last bits; two candidates
whose scores agree to ~1e-15 may then swap. The parity test accepts exactly
that and nothing else.
"""

from __future__ import annotations

import time as _time
from typing import TYPE_CHECKING, Any

from botify.store.artifacts import Artifact

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

    from botify.training.models import i2i as i2i_mod
    from botify.training.models import top_pop as top_pop_mod

SPARK_MODELS = ("top_pop", "i2i")


def catalog_bounds(sessionized: DataFrame) -> tuple[int, int, int]:
    """(min track id, max track id, events): validates ids like TrainData does."""
    from pyspark.sql import functions as sf

    r = sessionized.agg(
        sf.min("track").alias("lo"), sf.max("track").alias("hi"), sf.count(sf.lit(1)).alias("n")
    ).collect()[0]
    if r["n"] == 0:
        return 0, -1, 0
    return int(r["lo"]), int(r["hi"]), int(r["n"])


def train_rows(sessionized: DataFrame, n_tracks: int) -> DataFrame:
    """Played tracks with `pos` (0.. within the session after dropping unknown ids) and
    `t` (listen time clipped to [0, 1]): `TrainData.from_events` on Spark."""
    from pyspark.sql import Window
    from pyspark.sql import functions as sf

    ev = sessionized.filter(
        sf.col("track").isNotNull() & sf.col("user").isNotNull() & (sf.col("track") < n_tracks)
    )
    t = sf.coalesce(sf.col("time"), sf.lit(0.0))
    t = sf.when(sf.isnan(t), 0.0).otherwise(sf.least(sf.greatest(t, sf.lit(0.0)), sf.lit(1.0)))
    w = Window.partitionBy("user", "sidx").orderBy("step")
    return ev.select(
        "user",
        "sidx",
        "track",
        t.alias("t"),
        (sf.row_number().over(w) - 1).cast("long").alias("pos"),
    )


def top_pop_scores(rows: DataFrame, params: top_pop_mod.Params) -> DataFrame:
    """(track, score): total listen time per track, plays under min_time count zero."""
    from pyspark.sql import functions as sf

    w = sf.when(sf.col("t") >= params.min_time, sf.col("t")).otherwise(0.0)
    return rows.groupBy("track").agg(sf.sum(w).alias("score"))


def fit_top_pop(rows: DataFrame, params: top_pop_mod.Params, *, k: int) -> Artifact:
    """Tracks by total listen time, best first; ties by track id."""
    from pyspark.sql import functions as sf

    s = top_pop_scores(rows, params).filter(sf.col("score") > 0)
    top = s.orderBy(sf.col("score").desc(), sf.col("track").asc()).limit(k).collect()
    return Artifact("top", top=[int(r["track"]) for r in top])


def i2i_scores(rows: DataFrame, params: i2i_mod.Params) -> DataFrame:
    """(a, b, c, score): symmetric co-occurrence within `window` steps and its
    popularity-normalised score, as `models.i2i.cooccurrence` + `fit` define them."""
    from pyspark.sql import Window
    from pyspark.sql import functions as sf

    if params.window < 1:
        raise ValueError("window must be >= 1")
    tw = sf.when(sf.col("t") >= params.min_time, sf.col("t")).otherwise(0.0)
    w = Window.partitionBy("user", "sidx").orderBy("pos")
    base = rows.select("user", "sidx", "pos", "track", tw.alias("w"))
    cols = [sf.col("track").alias("a"), sf.col("w")]
    for d in range(1, params.window + 1):
        cols += [sf.lead("track", d).over(w).alias(f"b{d}"), sf.lead("w", d).over(w).alias(f"w{d}")]
    led = base.select(*cols)
    # Python computes decay ** (d - 1) once per distance, exactly as the embedded trainer.
    pair_structs = [
        sf.struct(
            sf.col(f"b{d}").alias("b"),
            ((sf.col("w") * sf.col(f"w{d}")) * sf.lit(float(params.decay ** (d - 1)))).alias("w"),
        )
        for d in range(1, params.window + 1)
    ]
    pairs = led.select("a", sf.explode(sf.array(*pair_structs)).alias("p"))
    pairs = pairs.select("a", sf.col("p.b").alias("b"), sf.col("p.w").alias("w")).filter(
        sf.col("b").isNotNull() & (sf.col("w") > 0) & (sf.col("a") != sf.col("b"))
    )
    # The matrix is symmetric: sum each unordered pair once, then mirror (half the shuffle).
    und = pairs.groupBy(
        sf.least("a", "b").alias("lo"), sf.greatest("a", "b").alias("hi")
    ).agg(sf.sum("w").alias("c"))
    c = und.select(
        sf.explode(
            sf.array(
                sf.struct(sf.col("lo").alias("a"), sf.col("hi").alias("b"), sf.col("c")),
                sf.struct(sf.col("hi").alias("a"), sf.col("lo").alias("b"), sf.col("c")),
            )
        ).alias("q")
    ).select("q.*")
    if params.min_support > 0:
        c = c.filter(sf.col("c") >= params.min_support)
    pop = c.groupBy("a").agg(sf.sum("c").alias("pop"))
    if params.alpha == 0.5:
        norm = sf.sqrt("pop")  # numpy's x ** 0.5 is sqrt too: both correctly rounded
    else:
        norm = sf.pow(sf.col("pop"), sf.lit(float(params.alpha)))
    pop = pop.select(
        "a", sf.when(sf.col("pop") > 0, norm).otherwise(sf.lit(1.0)).alias("norm")
    )
    # one row per track: small enough to ship to every task
    na = sf.broadcast(pop.select(sf.col("a"), sf.col("norm").alias("na")))
    nb = sf.broadcast(pop.select(sf.col("a").alias("b"), sf.col("norm").alias("nb")))
    return (
        c.join(na, "a")
        .join(nb, "b")
        .select("a", "b", "c", (sf.col("c") / (sf.col("na") * sf.col("nb"))).alias("score"))
    )


def fit_i2i(rows: DataFrame, params: i2i_mod.Params, *, k: int) -> Artifact:
    """Top-k neighbours per track: score desc, then track id asc (as `topk_by_row`)."""
    from pyspark.sql import Window
    from pyspark.sql import functions as sf

    if k <= 0:
        raise ValueError("k must be positive")
    s = i2i_scores(rows, params).filter(sf.col("score") > 0)
    w = Window.partitionBy("a").orderBy(sf.col("score").desc(), sf.col("b").asc())
    ranked = s.withColumn("r", sf.row_number().over(w)).filter(sf.col("r") <= k)
    lists = ranked.groupBy("a").agg(
        sf.array_sort(sf.collect_list(sf.struct("r", "b"))).alias("l")
    )
    out: dict[int, list[int]] = {}
    for r in lists.collect():  # k ids per track: small next to the pairs it came from
        out[int(r["a"])] = [int(x["b"]) for x in r["l"]]
    return Artifact("i2i", lists=dict(sorted(out.items())))


def data_window(sessionized: DataFrame) -> dict[str, Any]:
    """`evaluate.data_window` computed in Spark (first/last event, sizes)."""
    from pyspark.sql import functions as sf

    from botify.training.evaluate import iso_ms

    r = sessionized.agg(
        sf.min("timestamp").alias("lo"),
        sf.max("timestamp").alias("hi"),
        sf.count(sf.lit(1)).alias("events"),
        sf.count_distinct("user", "sidx").alias("sessions"),
        sf.count_distinct("user").alias("users"),
    ).collect()[0]
    if not r["events"]:
        return {"start": None, "end": None, "start_ms": None, "end_ms": None,
                "events": 0, "sessions": 0, "users": 0}
    lo, hi = int(r["lo"]), int(r["hi"])
    return {"start": iso_ms(lo), "end": iso_ms(hi), "start_ms": lo, "end_ms": hi,
            "events": int(r["events"]), "sessions": int(r["sessions"]), "users": int(r["users"])}


def train_artifact(
    model: str,
    sessionized: DataFrame,
    *,
    n_tracks: int | None = None,
    params: dict[str, Any] | None = None,
    k: int = 100,
    seed: int = 0,
) -> tuple[Artifact, dict[str, Any]]:
    """Train `model` (top_pop or i2i) on Spark-sessionized events; artifact + meta dict.

    The held-out evaluation of the embedded trainer is not run here (meta says so):
    run `python -m botify.evaluate` on a sample when the numbers are wanted.
    """
    from botify.training.models import SERVED_BY, get_model
    from botify.training.models.base import params_dict
    from botify.training.train import TrainError, make_params

    if model not in SPARK_MODELS:
        raise TrainError(
            f"model {model!r} is not available on Spark (only {', '.join(SPARK_MODELS)}); "
            "use the embedded engine"
        )
    if k <= 0:
        raise TrainError("--k must be positive")
    mod = get_model(model)
    p = make_params(mod, params)
    lo, hi, n = catalog_bounds(sessionized)
    if n == 0:
        raise TrainError("no events to train on")
    if lo < 0:
        raise ValueError("negative track ids in events")
    if n_tracks is None:
        n_tracks = hi + 1
    rows = train_rows(sessionized, n_tracks)
    t0 = _time.perf_counter()
    art = fit_top_pop(rows, p, k=k) if model == "top_pop" else fit_i2i(rows, p, k=k)
    seconds = _time.perf_counter() - t0
    if len(art) == 0 or (art.kind == "top" and not art.top):
        raise TrainError(f"{model}: the logs gave nothing to recommend (empty artifact)")
    meta = {
        "model": model,
        "kind": art.kind,
        "served_by": SERVED_BY[model],
        "params": {**params_dict(p), "k": k, "seed": seed},
        "data_window": data_window(sessionized),
        "n_tracks": n_tracks,
        "rows": len(art),
        "train_seconds": round(seconds, 3),
        "engine": "spark",
        "metrics": {"skipped": "held-out evaluation is not run by the spark engine"},
    }
    return art, meta


__all__ = [
    "SPARK_MODELS",
    "data_window",
    "fit_i2i",
    "fit_top_pop",
    "i2i_scores",
    "top_pop_scores",
    "train_artifact",
    "train_rows",
]
