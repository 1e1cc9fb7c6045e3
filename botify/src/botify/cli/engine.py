"""`--engine {embedded,spark}` for `botify ab` and `botify train`.

The entry points keep their parsers; this module adds two flags and runs the
Spark path with the parsed arguments, printing and writing exactly what the
embedded path does (same AbResult, same report writers, same artifact writer).
Nothing here imports pyspark until the Spark path actually runs, so `--help`
stays instant and the embedded path never needs Java.

Until the entry points call these hooks, `python -m botify.spark ab ...`
and `python -m botify.spark train MODEL ...` run the same code.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ENGINES = ("embedded", "spark")


def add_engine_args(parser: argparse.ArgumentParser) -> None:
    """Add `--engine {embedded,spark}` and `--spark-master URL` to a parser."""
    parser.add_argument(
        "--engine",
        choices=ENGINES,
        default="embedded",
        help="embedded (pandas, default) or spark (pyspark + Java 17; same numbers)",
    )
    parser.add_argument(
        "--spark-master",
        metavar="URL",
        default=None,
        help="Spark master for --engine spark: local[*] (default, or $BOTIFY_SPARK_MASTER), "
        "spark://host:7077, yarn, k8s://...; --logs may then be hdfs:// or s3a:// URIs",
    )


def _err(msg: str) -> int:
    print(f"error: {msg}", file=sys.stderr)
    return 2


def run_ab(args: argparse.Namespace) -> int:
    """The Spark path of `python -m botify.ab` (same flags, same outputs)."""
    from rich.console import Console

    from botify.analysis import verdict as vd
    from botify.analysis.ab import AbError
    from botify.cli.ab_output import gate_from_args
    from botify.spark.ab import analyze, config_snapshots
    from botify.spark.logs import read_events
    from botify.spark.session import SparkUnavailableError, get_spark

    con = Console() if sys.stdout.isatty() else Console(width=150)
    t0 = time.perf_counter()
    try:
        spark = get_spark(getattr(args, "spark_master", None), "botify-ab")
    except SparkUnavailableError as exc:
        return _err(str(exc))
    try:
        loaded = read_events(spark, args.logs)
        prev = read_events(spark, args.previous_logs) if args.previous_logs else None
    except FileNotFoundError as exc:
        return _err(str(exc))
    name = args.experiment
    if name is None:
        if len(loaded.experiments) != 1:
            return _err(
                "--experiment is required; experiments in the logs: "
                + (", ".join(loaded.experiments) or "none")
            )
        name = loaded.experiments[0]
    if loaded.report.events == 0:
        return _err(f"no valid events in {', '.join(map(str, args.logs))}")
    try:
        res = analyze(
            loaded,
            name,
            args.control,
            alpha=args.alpha,
            previous=prev,
            shares=args.shares,
            mde_target=args.mde,
            power=args.power,
            srm_threshold=args.srm_threshold,
            configured=vd.configured_experiment(config_snapshots(args.logs), name),
            gate=gate_from_args(args),
        )
    except AbError as exc:
        return _err(str(exc))
    finally:
        loaded.unpersist()
        if prev is not None:
            prev.unpersist()
    from botify.cli.ab_output import emit

    return emit(res, args, con, t0, engine=f"spark {spark.sparkContext.master}")


def run_train(args: argparse.Namespace) -> int:
    """The Spark path of `python -m botify.train MODEL` (top_pop and i2i)."""
    from botify.spark.logs import read_events
    from botify.spark.session import SparkUnavailableError, get_spark
    from botify.spark.sessions import sessionize
    from botify.spark.train import SPARK_MODELS, train_artifact
    from botify.store.artifacts import ArtifactError, write_artifact
    from botify.training.train import TrainError, catalog_size

    if args.model not in SPARK_MODELS:
        return _err(
            f"model {args.model!r} is not available with --engine spark "
            f"(only {', '.join(SPARK_MODELS)})"
        )
    params = {k[2:]: v for k, v in vars(args).items() if k.startswith("p_")}
    for d in args.logs:
        if "hidden" in Path(str(d)).parts:
            return _err(f"{d}: refusing to read the simulator's hidden files")
    try:
        n_tracks = catalog_size(args.catalog) if args.catalog else None
        spark = get_spark(getattr(args, "spark_master", None), "botify-train")
        loaded = read_events(spark, args.logs)
        for w in loaded.report.warnings:
            if not args.quiet:
                print(f"logs: {w}", file=sys.stderr)
        if loaded.report.events == 0:
            raise TrainError(f"no events found under {', '.join(map(str, args.logs))}")
        art, meta = train_artifact(
            args.model,
            sessionize(loaded.events),
            n_tracks=n_tracks,
            params=params,
            k=args.k,
            seed=args.seed,
        )
        loaded.unpersist()
        meta["data_window"]["logs"] = [str(x) for x in args.logs]
        if args.catalog:
            meta["catalog"] = str(Path(args.catalog).resolve())
        write_artifact(args.out, art, meta)
    except (
        TrainError,
        ValueError,
        ImportError,
        FileNotFoundError,
        ArtifactError,
        SparkUnavailableError,
    ) as exc:
        return _err(str(exc))
    print(
        f"{args.out}: {meta['kind']} artifact, {meta['rows']} rows, model {args.model} "
        f"(served by {meta['served_by']}), trained on spark in {meta['train_seconds']:.1f} s"
    )
    return 0


def run_spark(command: str, args: argparse.Namespace) -> int:
    """Dispatch for the entry points' hook: command is "ab" or "train"."""
    if command == "ab":
        return run_ab(args)
    if command == "train":
        return run_train(args)
    raise ValueError(f"unknown command {command!r}")


__all__ = ["ENGINES", "add_engine_args", "run_ab", "run_spark", "run_train"]
