"""What `botify ab` prints and writes for a result, the same for either engine."""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

from rich.console import Console


def gate_from_args(args: argparse.Namespace) -> Any:
    """The verdict gate's thresholds from the command line (either engine)."""
    from botify.analysis.verdict import Gate

    kw: dict[str, Any] = {}
    if args.mde is not None:
        kw["target"] = args.mde
    return Gate(
        primary=args.metric,
        alpha=args.alpha,
        max_fallback=args.max_fallback,
        min_users=args.min_users,
        power=args.power,
        **kw,
    )


def emit(res: Any, args: argparse.Namespace, con: Console, t0: float, engine: str = "") -> int:
    """Terminal table, JSON and HTML of a result (either engine); returns the exit code."""
    from botify.analysis.report import print_terminal, write_html

    report = res.load_report
    if report.bad or report.duplicates:
        res.warnings.insert(0, "logs: " + report.summary())
    where = f" ({engine})" if engine else ""
    if not args.quiet:
        con.print(f"[dim]logs{where}: {report.summary()}[/]")
        print_terminal(res, con)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(res.to_dict(), indent=2, default=str), encoding="utf-8")
        if not args.quiet:
            con.print(f"JSON: {args.json}")
    if args.html:
        write_html(res, args.html)
        if not args.quiet:
            con.print(f"HTML: {args.html}")
    if not args.quiet:
        con.print(f"[dim]done in {time.perf_counter() - t0:.2f} s{where}[/]")
    if res.srm.mismatch and getattr(args, "fail_on_srm", False):
        return 3
    v = getattr(res, "verdict", None)
    if v is not None and v.decision == "invalid" and getattr(args, "fail_on_invalid", False):
        return 4
    return 0
