"""`botify lab` / `python -m botify.lab`: the day loop's command line (botify.lab runs it)."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from botify.lab import LabError, LabOptions, run_lab


def build_parser() -> argparse.ArgumentParser:
    d = LabOptions()
    p = argparse.ArgumentParser(
        prog="python -m botify.lab",
        description="Run the daily loop: simulate, analyse, train, deploy, A/B test, decide.",
    )
    p.add_argument("--days", type=int, default=d.days, help="simulated days (default %(default)s)")
    p.add_argument("--sessions", type=int, default=d.sessions, help="sessions per day (default %(default)s)")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--world", type=Path, default=d.world, help="world dir, generated if absent")
    p.add_argument("--tracks", type=int, default=d.tracks)
    p.add_argument("--users", type=int, default=d.users)
    p.add_argument("--models", default=",".join(d.models),
                   help="models trained each day, comma-separated (default %(default)s)")
    p.add_argument("--workers", type=int, default=d.workers)
    p.add_argument("--concurrency", type=int, default=d.concurrency, help="sessions in flight")
    p.add_argument("--redis-url", default=os.environ.get("BOTIFY_REDIS_URL"),
                   help="Redis to use (default: an embedded one)")
    p.add_argument("--name", default="", help="run name (default lab-<UTC time>)")
    p.add_argument("--runs-dir", type=Path, default=d.runs_dir)
    p.add_argument("--reports-dir", type=Path, default=d.reports_dir)
    p.add_argument("--sim-config", type=Path, default=d.sim_config)
    p.add_argument("--sequential", action="store_true",
                   help="promote on always-valid intervals (confidence sequences), not the fixed ones")
    p.add_argument("--realism", choices=("production", "course"), default=None,
                   help="simulated users: production-like or the course's rules "
                   "(default: the sim config's, production in config/env.yml)")
    return p


def options_from_args(args: argparse.Namespace) -> LabOptions:
    if args.days < 1 or args.sessions < 10:
        raise LabError("--days must be >= 1 and --sessions >= 10")
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    from botify.training.models import MODELS

    unknown = [m for m in models if m not in MODELS]
    if unknown:
        raise LabError(f"unknown model(s) {', '.join(unknown)}; known: {', '.join(sorted(MODELS))}")
    return LabOptions(
        days=args.days, sessions=args.sessions, seed=args.seed, world=args.world,
        tracks=args.tracks, users=args.users, models=models, workers=args.workers,
        concurrency=args.concurrency, redis_url=args.redis_url, name=args.name,
        runs_dir=args.runs_dir, reports_dir=args.reports_dir, sim_config=args.sim_config,
        sequential=args.sequential,
        realism=args.realism,
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        run_lab(options_from_args(args))
    except LabError as exc:
        print(f"botify.lab: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("botify.lab: interrupted; the service and Redis were stopped", file=sys.stderr)
        return 130
    return 0

