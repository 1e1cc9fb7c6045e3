"""`botify train MODEL` / `python -m botify.train MODEL`: train a model from event logs.

``botify train MODEL --logs DIR --out FILE [--catalog CATALOG] [--k 100] [--seed N]
[model flags]``; ``botify train MODEL --help`` lists the flags. The training itself is
botify.training.train's; this module only parses and prints.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

from botify.cli.engine import add_engine_args, run_spark
from botify.store.artifacts import write_artifact
from botify.training.models import MODELS, get_model
from botify.training.train import (
    TrainError,
    catalog_params,
    catalog_size,
    load_sessionized,
    train_artifact,
)


def _field_type(f: dataclasses.Field[Any]) -> type:
    t = f.type if isinstance(f.type, type) else {"int": int, "float": float, "str": str,
                                                   "bool": bool}[str(f.type)]
    return t


def _add_params(parser: argparse.ArgumentParser, module: ModuleType) -> None:
    g = parser.add_argument_group("model parameters")
    for f in dataclasses.fields(module.Params):
        if f.metadata.get("cli") is False:  # filled from a common flag (e.g. --catalog)
            continue
        t = _field_type(f)
        flag = "--" + f.name.replace("_", "-")
        help_ = f"{f.metadata.get('help', '')} (default: {f.default})"
        if t is bool:
            g.add_argument(flag, dest=f"p_{f.name}", action=argparse.BooleanOptionalAction,
                           default=f.default, help=help_)
        else:
            g.add_argument(flag, dest=f"p_{f.name}", type=t, default=f.default,
                           choices=f.metadata.get("choices"), help=help_)


def build_parser() -> argparse.ArgumentParser:
    """The ``python -m botify.train`` parser: one sub-command per model."""
    parser = argparse.ArgumentParser(
        prog="python -m botify.train",
        description="Train a recommender from botify event logs; write an artifact in the course's format "
        "and FILE.meta.json.",
    )
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--logs", nargs="+", required=True, metavar="DIR",
                        help="event log directories or files (events-*.jsonl[.gz])")
    common.add_argument("--out", required=True, metavar="FILE", help="artifact to write (.jsonl)")
    common.add_argument("--catalog", metavar="CATALOG",
                        help="public catalog.jsonl (its size bounds track ids; default: max id seen in the logs + 1)")
    common.add_argument("--k", type=int, default=100, help="list length per key (default 100)")
    common.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    common.add_argument("--no-eval", action="store_true",
                        help="skip the held-out evaluation stored in meta.metrics")
    common.add_argument("--split", default="auto",
                        help="auto | last-day | fraction | epoch ms | ISO time (default auto)")
    common.add_argument("--test-fraction", type=float, default=0.2,
                        help="share of sessions held out with --split fraction (default 0.2)")
    common.add_argument("--eval-k", type=int, default=10, help="metric cut-off (default 10)")
    common.add_argument("--eval-min-time", type=float, default=0.5,
                        help="a held-out next track counts as a target when listened >= this (default 0.5)")
    common.add_argument("--quiet", action="store_true", help="no progress output")
    add_engine_args(common)
    sub = parser.add_subparsers(dest="model", required=True, metavar="MODEL")
    for name in MODELS:
        mod = get_model(name)
        doc = (mod.__doc__ or "").strip().splitlines()[0]
        sp = sub.add_parser(name, parents=[common], help=doc, description=mod.__doc__,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
        _add_params(sp, mod)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point; returns the exit code."""
    from rich.console import Console

    args = build_parser().parse_args(argv)
    if args.engine == "spark":
        return run_spark("train", args)
    console = Console(stderr=True, quiet=args.quiet)
    params = {k[2:]: v for k, v in vars(args).items() if k.startswith("p_")}
    if args.catalog:
        params.update(catalog_params(args.model, args.catalog))
    try:
        with console.status("reading and sessionizing logs"):
            events = load_sessionized(args.logs, console)
        n_tracks = catalog_size(args.catalog) if args.catalog else int(events["track"].max()) + 1
        console.print(f"{len(events):,} events, {events['session_id'].nunique():,} sessions, "
                      f"{n_tracks:,} tracks")
        art, meta = train_artifact(
            args.model, events, n_tracks=n_tracks, params=params, k=args.k, seed=args.seed,
            evaluate=not args.no_eval, split=args.split, test_fraction=args.test_fraction,
            eval_k=args.eval_k, min_time=args.eval_min_time, progress=not args.quiet,
        )
        meta["data_window"]["logs"] = [str(Path(x).resolve()) for x in args.logs]
        if args.catalog:
            meta["catalog"] = str(Path(args.catalog).resolve())
        write_artifact(args.out, art, meta)
    except (TrainError, ValueError, ImportError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    m = meta["metrics"] or {}
    summary = (
        f"hit@{m['k']}={m['hit_rate']:.4f} ndcg@{m['k']}={m['ndcg']:.4f}" if "hit_rate" in m
        else m.get("skipped", "not evaluated")
    )
    print(f"{args.out}: {meta['kind']} artifact, {meta['rows']} rows, model {args.model} "
          f"(served by {meta['served_by']}), trained in {meta['train_seconds']:.1f} s; {summary}")
    return 0
