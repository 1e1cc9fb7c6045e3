"""`botify contest make|score|board` (= `python -m botify.contest`): the offline contest kit.

The work is botify.training.contest's; this module parses, prints and turns faults into
``error: ...`` lines (each naming the file and line at fault) with exit code 2.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from botify.training.contest import (
    ContestError,
    KitOptions,
    make_kit,
    score_submission,
    write_board,
)


def build_parser() -> argparse.ArgumentParser:
    """The ``botify contest`` parser: make, score, board."""
    d = KitOptions()
    p = argparse.ArgumentParser(
        prog="botify contest",
        description="Homework kit: an offline next-tracks contest with a public and a private "
        "leaderboard (docs/training.md, 'Homework kits').",
    )
    sub = p.add_subparsers(dest="action", required=True, metavar="ACTION")

    m = sub.add_parser("make", help="cut a kit (train set, test set, hidden answers) from event logs")
    m.add_argument("--logs", nargs="+", required=True, type=Path, metavar="DIR",
                   help="event log directories or files (events-*.jsonl[.gz])")
    m.add_argument("--out", required=True, type=Path, metavar="DIR",
                   help="kit directory: DIR/public goes to students, DIR/answers stays with you")
    m.add_argument("--seed", type=int, default=d.seed,
                   help="fixes the session cuts and the public/private split (default %(default)s)")
    m.add_argument("--k", type=int, default=d.k, help="tracks per user scored (default %(default)s)")
    m.add_argument("--public-share", type=float, default=d.public_share,
                   help="share of test users on the public board (default %(default)s)")
    m.add_argument("--min-time", type=float, default=d.min_time,
                   help="a held-out track is an answer when listened >= this (default %(default)s)")
    m.add_argument("--split", default=d.split,
                   help="auto | last-day | fraction | epoch ms | ISO time (default %(default)s)")
    m.add_argument("--test-fraction", type=float, default=d.test_fraction,
                   help="share of sessions held out with --split fraction (default %(default)s)")
    m.add_argument("--catalog", type=Path, metavar="FILE",
                   help="public catalog.jsonl: its size bounds valid track ids "
                   "(default: largest id in the logs + 1)")
    m.add_argument("--baselines", default=",".join(d.baselines),
                   help="models the kit trains on the train set as baseline rows, comma-separated, "
                   "'' for none (default %(default)s)")
    m.add_argument("--force", action="store_true", help="replace an existing kit in --out")

    s = sub.add_parser("score", help="validate a submission, score it, record the score")
    s.add_argument("--answers", required=True, type=Path, metavar="DIR",
                   help="the kit's answers directory (or the kit directory)")
    s.add_argument("submission", type=Path, metavar="SUBMISSION",
                   help='JSON lines {"user": id, "tracks": [ids, best first]}')
    s.add_argument("--name", help="name on the board (default: the file name without extension)")
    s.add_argument("--show-private", action="store_true",
                   help="also print the private score (it is recorded either way)")

    b = sub.add_parser("board", help="HTML leaderboard of every scored submission and the baselines")
    b.add_argument("dir", type=Path, metavar="DIR", help="the kit's answers directory (or the kit directory)")
    b.add_argument("--reveal-private", action="store_true",
                   help="show and rank by the private part (the final standing)")
    b.add_argument("--out", type=Path, metavar="FILE.html", help="default DIR/leaderboard.html")
    b.add_argument("--force", action="store_true", help="overwrite an existing FILE.html")
    return p


def _make(args: argparse.Namespace) -> int:
    from botify.training.train import TrainError, catalog_size

    baselines = tuple(x.strip() for x in args.baselines.split(",") if x.strip())
    if baselines:
        from botify.training.models import MODELS

        unknown = [x for x in baselines if x not in MODELS]
        if unknown:
            raise ContestError(f"--baselines: unknown model {unknown[0]!r}; choose from {', '.join(MODELS)}")
    options = KitOptions(seed=args.seed, k=args.k, public_share=args.public_share,
                         min_time=args.min_time, split=args.split,
                         test_fraction=args.test_fraction, baselines=baselines)
    try:
        n_tracks = catalog_size(args.catalog) if args.catalog else None
    except TrainError as exc:
        raise ContestError(str(exc)) from None
    meta = make_kit(args.logs, args.out, options, n_tracks=n_tracks, catalog=args.catalog,
                    force=args.force, log=lambda msg: print(f"warning: {msg}", file=sys.stderr))
    s, u = meta["split"], meta["users"]
    print(f"{args.out}: contest kit, k={meta['k']}; train: {s['train_events']} events, "
          f"{s['train_sessions']} sessions before {s['cutoff']} (split {s['how']}); "
          f"test: {u['public'] + u['private']} users "
          f"({u['public']} public / {u['private']} private), {meta['n_tracks']} tracks")
    print(f"  give students {args.out / 'public'}; keep {args.out / 'answers'}")
    if meta["baselines"]:
        from botify.training.contest import load_answers, score_file

        ans = load_answers(args.out)
        for model, b in meta["baselines"].items():
            pub, _priv, _n = score_file(ans, ans.dir / b["file"])
            print(f"  baseline {model}: public ndcg@{ans.k}={pub.ndcg:.4f} recall@{ans.k}={pub.recall:.4f}")
    return 0


def _score(args: argparse.Namespace) -> int:
    rec = score_submission(args.answers, args.submission, name=args.name)
    k, pub, priv = rec["k"], rec["public"], rec["private"]
    line = (f"{rec['submission']} ({rec['sha256'][:12]}): public ndcg@{k}={pub['ndcg']:.4f} "
            f"recall@{k}={pub['recall']:.4f}")
    if args.show_private:
        line += f"; private ndcg@{k}={priv['ndcg']:.4f} recall@{k}={priv['recall']:.4f}"
    print(line)
    missing = pub["missing"] + priv["missing"]
    if missing:
        print(f"  {missing} test user(s) missing from the submission: scored 0")
    return 0


def _board(args: argparse.Namespace) -> int:
    path = write_board(args.dir, args.out, reveal_private=args.reveal_private, force=args.force)
    print(f"leaderboard: {path}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point; returns the exit code."""
    args = build_parser().parse_args(argv)
    run = {"make": _make, "score": _score, "board": _board}[args.action]
    try:
        return run(args)
    except ContestError as exc:
        for line in str(exc).splitlines():
            print(f"error: {line}", file=sys.stderr)
        return 2
    except (OSError, ValueError, ImportError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
