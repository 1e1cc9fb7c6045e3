"""`python -m botify.ab`: A/B verdicts from event logs.

    python -m botify.ab --logs LOGDIR --experiment STICKY_ARTIST [--control C]
        [--json out.json] [--html out.html] [--previous-logs EARLIER_LOGDIR]
        [--mde 0.02] [--power 0.8] [--alpha 0.05] [--shares C=0.5,T1=0.5]
        [--metric time] [--max-fallback 0.01] [--min-users 30]

The verdict (ship / don't ship / invalid) is botify.analysis.verdict's gate;
the configured shares come from the service's experiments.jsonl beside the
logs unless --shares is given.

Exit status: 0 analysed, 2 usage or data error (one clear line on stderr),
3 with --fail-on-srm when the sample-ratio check failed (verdicts not to be trusted),
4 with --fail-on-invalid when the gate says the experiment is invalid.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from rich.console import Console

from botify.cli.ab_output import emit, gate_from_args
from botify.cli.engine import add_engine_args, run_spark


def _shares(text: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for part in text.split(","):
        arm, _, val = part.partition("=")
        try:
            out[arm.strip()] = float(val)
        except ValueError:
            raise argparse.ArgumentTypeError(f"bad share {part!r}: expected ARM=FRACTION") from None
    if any(v < 0 for v in out.values()) or sum(out.values()) <= 0:
        raise argparse.ArgumentTypeError("shares must be non-negative and not all zero")
    return out


def _fraction(text: str) -> float:
    v = float(text)
    if not 0 < v < 1:
        raise argparse.ArgumentTypeError(f"{text} is not in (0, 1)")
    return v


def _positive_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if v < 2:
        raise argparse.ArgumentTypeError(f"{text} must be at least 2")
    return v


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m botify.ab",
        description="A/B analysis of botify event logs: the course's Welch table, plus "
        "p-values, Holm, SRM, CUPED, delta-method ratios and power.",
    )
    p.add_argument("--logs", nargs="+", required=True, help="log directories or event files")
    p.add_argument("--experiment", help="experiment name (default: the only one in the logs)")
    p.add_argument("--control", default="C", help="control arm (default C)")
    p.add_argument("--alpha", type=_fraction, default=0.05, help="1 - confidence (default 0.05)")
    p.add_argument("--json", type=Path, help="write the full result as JSON here")
    p.add_argument("--html", type=Path, help="write a self-contained HTML report here")
    p.add_argument(
        "--previous-logs",
        nargs="+",
        help="earlier logs of the same users: enables CUPED with each metric's previous value",
    )
    p.add_argument(
        "--mde",
        type=_fraction,
        help="target relative effect (e.g. 0.02 = 2%%): print users per arm needed to detect it",
    )
    p.add_argument("--power", type=_fraction, default=0.8, help="power for MDE (default 0.8)")
    p.add_argument("--shares", type=_shares, help="configured shares, e.g. C=0.5,T1=0.5")
    p.add_argument("--srm-threshold", type=_fraction, default=0.001, help="SRM p-value alarm")
    p.add_argument("--fail-on-srm", action="store_true", help="exit 3 on a sample ratio mismatch")
    p.add_argument(
        "--metric",
        default="time",
        choices=("time", "sessions", "mean_request_latency", "mean_tracks_per_session",
                 "mean_time_per_session"),  # fmt: skip
        help="the metric the verdict ships on (default time); the others are guardrails",
    )
    p.add_argument(
        "--max-fallback",
        type=_fraction,
        default=0.01,
        help="an arm with a larger share of answers from a fallback is invalid (default 0.01)",
    )
    p.add_argument(
        "--min-users",
        type=_positive_int,
        default=30,
        help="no verdict with fewer users (finished sessions) per arm (default 30)",
    )
    p.add_argument(
        "--fail-on-invalid", action="store_true", help="exit 4 when the verdict is invalid"
    )
    p.add_argument("--quiet", action="store_true", help="no terminal table")
    p.add_argument(
        "--sequential",
        action="store_true",
        help="also print always-valid intervals (confidence sequences): safe to check "
        "a running experiment as often as you like",
    )
    add_engine_args(p)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.engine == "spark":
        return run_spark("ab", args)
    # Heavy imports after argument parsing so that --help is instant.
    from botify.analysis import verdict as vd
    from botify.analysis.ab import AbError, analyze
    from botify.analysis.logs import read_events

    # Piped output (CI logs, files) gets a wide table instead of rich's 80 columns.
    con = Console() if sys.stdout.isatty() else Console(width=150)
    err = Console(stderr=True)
    t0 = time.perf_counter()
    try:
        loaded = read_events(args.logs)
        prev = read_events(args.previous_logs) if args.previous_logs else None
    except FileNotFoundError as exc:
        err.print(f"[red]error:[/] {exc}")
        return 2
    exps = loaded.experiments
    name = args.experiment
    if name is None:
        if len(exps) != 1:
            err.print(
                "[red]error:[/] --experiment is required; experiments in the logs: "
                + (", ".join(exps) if exps else "none")
            )
            return 2
        name = exps[0]
    if len(loaded.events) == 0:
        err.print(f"[red]error:[/] no valid events in {', '.join(args.logs)}")
        return 2
    try:
        res = analyze(
            loaded.events,
            name,
            args.control,
            alpha=args.alpha,
            previous_events=prev.events if prev is not None else None,
            shares=args.shares,
            mde_target=args.mde,
            power=args.power,
            srm_threshold=args.srm_threshold,
            configured=vd.configured_experiment(vd.read_config_snapshots(args.logs), name),
            gate=gate_from_args(args),
        )
    except AbError as exc:
        err.print(f"[red]error:[/] {exc}")
        return 2
    res.load_report = loaded.report
    res.previous_load_report = prev.report if prev is not None else None
    code = emit(res, args, con, t0)
    if args.sequential and not args.quiet:
        from botify.analysis.sequential import format_sequential, sequential_table

        seq = sequential_table(res.user_level, args.control, args.alpha)
        con.print(format_sequential(seq, args.alpha), markup=False, highlight=False)
    return code
