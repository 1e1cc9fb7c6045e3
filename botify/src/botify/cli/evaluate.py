"""``python -m botify.evaluate --logs DIR --models a.jsonl i2i ...``: offline leaderboard.

Each ``--models`` entry is an artifact file (evaluated as is) or a model name
(trained here on the train part of the split). See botify.training.evaluate for the
protocol and metric definitions.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path


def build_parser() -> argparse.ArgumentParser:
    """The ``python -m botify.evaluate`` parser."""
    p = argparse.ArgumentParser(
        prog="python -m botify.evaluate",
        description="Offline next-track leaderboard of artifacts and/or models on held-out logs.",
    )
    p.add_argument("--logs", nargs="+", required=True, metavar="DIR", help="event logs")
    p.add_argument("--models", nargs="+", required=True, metavar="MODEL",
                   help="artifact files (.jsonl) and/or model names to train on the train part "
                   "(top_pop, i2i, contextual, mf, sasrec)")
    p.add_argument("--test-logs", nargs="+", metavar="DIR",
                   help="evaluate on these logs instead of splitting --logs")
    p.add_argument("--catalog", help="public catalog.jsonl (default: max track id seen + 1)")
    p.add_argument("--split", default="auto",
                   help="auto | last-day | fraction | epoch ms | ISO time (default auto)")
    p.add_argument("--test-fraction", type=float, default=0.2, help="for --split fraction")
    p.add_argument("--k", type=int, default=10, help="metric cut-off (default 10)")
    p.add_argument("--list-len", type=int, default=100,
                   help="list length of models trained here (default 100)")
    p.add_argument("--min-time", type=float, default=0.5,
                   help="held-out next tracks listened >= this are the targets (default 0.5)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", metavar="FILE", help="also write the leaderboard as JSON")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point; returns the exit code."""
    from rich.console import Console

    from botify.store.artifacts import ArtifactError
    from botify.training.evaluate import leaderboard, render_leaderboard
    from botify.training.train import TrainError, catalog_params, catalog_size, load_sessionized

    args = build_parser().parse_args(argv)
    err = Console(stderr=True, quiet=args.quiet)
    try:
        with err.status("reading and sessionizing logs"):
            events = load_sessionized(args.logs, err)
            test = load_sessionized(args.test_logs, err) if args.test_logs else None
        params: dict[str, dict] = {}
        if args.catalog:
            n_tracks = catalog_size(args.catalog)
            # models that read the public catalog (artist_i2i) get it; artifacts need nothing
            params = {m: catalog_params(m, args.catalog) for m in args.models
                      if not Path(m).suffix}
        else:
            n_tracks = int(events["track"].max()) + 1
            if test is not None:
                n_tracks = max(n_tracks, int(test["track"].max()) + 1)
        with err.status("training / scoring models"):
            lb = leaderboard(
                events, args.models, n_tracks=n_tracks, split=args.split,
                test_fraction=args.test_fraction, test_events=test, k=args.k,
                min_time=args.min_time, list_len=args.list_len, seed=args.seed, params=params,
            )
    except (TrainError, ArtifactError, ValueError, ImportError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    Console(width=max(Console().width, 140)).print(render_leaderboard(lb))
    if args.json:
        Path(args.json).write_text(json.dumps(lb.to_json(), indent=2) + "\n")
    return 0


