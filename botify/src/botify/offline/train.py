"""Train a recommender from event logs and write its COMPAT artifact + meta sidecar.

``python -m botify.train MODEL --logs DIR --out FILE [--catalog CATALOG] [--k 100]
[--seed N] [model flags]``; ``python -m botify.train MODEL --help`` lists the flags.

Only the logs and the *public* catalog are read (the catalog only for its size, so
that no unknown id is ever written); paths under a ``hidden`` directory are refused.

Unless ``--no-eval``, the model is first trained on the temporal train part and
scored on the held-out part (botify.offline.evaluate), and those honest numbers go
to ``meta.metrics``; the artifact itself is then trained on all the logs.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import orjson
import pandas as pd

from botify.offline.artifacts import Artifact, write_artifact
from botify.offline.models import MODELS, SERVED_BY, fit_model, get_model
from botify.offline.models.base import TrainData, params_dict
from botify.offline.spark.cli import add_engine_args, run_spark


class TrainError(Exception):
    """A user-facing training failure (printed as one line by the CLI)."""


def make_params(module: ModuleType, overrides: dict[str, Any] | None = None) -> Any:
    """The model's Params with ``overrides`` applied; unknown names are an error."""
    cls = module.Params
    names = {f.name for f in dataclasses.fields(cls)}
    bad = sorted(set(overrides or {}) - names)
    if bad:
        raise TrainError(f"unknown parameter(s) {bad} for {module.__name__.rsplit('.', 1)[-1]}")
    p = cls(**(overrides or {}))
    for f in dataclasses.fields(cls):
        choices = f.metadata.get("choices")
        if choices and getattr(p, f.name) not in choices:
            raise TrainError(f"{f.name} must be one of {choices}, got {getattr(p, f.name)!r}")
    return p


def catalog_size(path: str | Path) -> int:
    """Number of tracks of a public catalog (JSON lines with ids 0..N-1)."""
    p = Path(path)
    if "hidden" in p.resolve().parts:
        raise TrainError(f"{p}: refusing to read the simulator's hidden files; pass catalog.jsonl")
    if not p.is_file():
        raise TrainError(f"{p}: no such catalog file")
    ids = []
    with p.open("rb") as fh:
        for lineno, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                ids.append(int(orjson.loads(line)["track"]))
            except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
                raise TrainError(f"{p}:{lineno}: not a catalog line with a 'track' id") from None
    if not ids:
        raise TrainError(f"{p}: empty catalog")
    if sorted(ids) != list(range(len(ids))):
        raise TrainError(f"{p}: track ids are not 0..{len(ids) - 1}")
    return len(ids)


def catalog_params(model: str, catalog: str | Path) -> dict[str, Any]:
    """``{"catalog": path}`` for models that read the public catalog (artist_i2i), else {}.

    Callers that train by name with a catalog at hand (CLIs, the lab) pass this as the
    model's params so that such models get the artist names.
    """
    names = {f.name for f in dataclasses.fields(get_model(model).Params)}
    return {"catalog": str(Path(catalog).resolve())} if "catalog" in names else {}


def load_sessionized(logs: Sequence[str | Path], console: Any = None) -> pd.DataFrame:
    """Read every event file under ``logs`` and sessionize (botify.offline.logs/sessions)."""
    from botify.offline.logs import read_events
    from botify.offline.sessions import sessionize

    for d in logs:
        if "hidden" in Path(d).resolve().parts:
            raise TrainError(f"{d}: refusing to read the simulator's hidden files")
    try:
        loaded = read_events(list(logs))
    except FileNotFoundError as exc:
        raise TrainError(str(exc)) from None
    for w in loaded.report.warnings:
        if console is not None:
            console.print(f"[yellow]logs: {w}[/]")
    if len(loaded.events) == 0:
        raise TrainError(f"no events found under {', '.join(map(str, logs))}")
    return sessionize(loaded.events).events


def train_artifact(
    model: str,
    events: pd.DataFrame,
    *,
    n_tracks: int,
    params: dict[str, Any] | None = None,
    k: int = 100,
    seed: int = 0,
    evaluate: bool = True,
    split: str = "auto",
    test_fraction: float = 0.2,
    eval_k: int = 10,
    min_time: float = 0.5,
    progress: bool = False,
) -> tuple[Artifact, dict[str, Any]]:
    """Train ``model`` on sessionized events; return the artifact and its meta dict."""
    from botify.offline.evaluate import data_window, evaluate_models, temporal_split

    mod = get_model(model)
    p = make_params(mod, params)
    if k <= 0:
        raise TrainError("--k must be positive")
    metrics: dict[str, Any] | None = None
    if evaluate:
        try:
            tr, te, info = temporal_split(events, split, test_fraction)
            lb = evaluate_models(
                tr, te, info, [model], n_tracks=n_tracks, k=eval_k, min_time=min_time,
                list_len=k, seed=seed, params={model: params_dict(p)}, progress=progress,
            )
            row = lb.table.iloc[0]
            metrics = {c: float(row[c]) for c in ("hit_rate", "ndcg", "mrr", "coverage",
                                                 "pop_pct", "ctx_coverage")}
            metrics.update(k=eval_k, min_time=min_time, n_targets=lb.n_targets,
                           split=dataclasses.asdict(info), protocol="botify.offline.evaluate")
        except ValueError as exc:
            metrics = {"skipped": str(exc)}
    data = TrainData.from_events(events, n_tracks)
    t0 = time.perf_counter()
    art = fit_model(model, data, p, k=k, seed=seed, progress=progress)
    seconds = time.perf_counter() - t0
    if len(art) == 0 or (art.kind == "top" and not art.top):
        raise TrainError(f"{model}: the logs gave nothing to recommend (empty artifact)")
    meta = {
        "model": model,
        "kind": art.kind,
        "served_by": served_by(model, art.kind),
        "params": {**params_dict(p), "k": k, "seed": seed},
        "data_window": data_window(events),
        "n_tracks": n_tracks,
        "rows": len(art),
        "train_seconds": round(seconds, 3),
        "metrics": metrics,
    }
    return art, meta


def served_by(model: str, kind: str) -> str:
    """The service recommender that reads this artifact kind (docs/recommenders.md)."""
    if kind == "user":
        return "indexed"
    if kind == "top":
        return "top_pop"
    return SERVED_BY[model] if SERVED_BY[model] in ("i2i", "contextual") else "i2i"


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
        description="Train a recommender from botify event logs; write a COMPAT artifact "
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


__all__ = ["TrainError", "build_parser", "catalog_params", "catalog_size", "load_sessionized", "main",
           "make_params", "served_by", "train_artifact"]
