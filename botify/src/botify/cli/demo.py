"""`make demo` / `python -m botify demo`: the whole product in one short run.

Why a separate entry point: newcomers should see the full loop (world, service on an
embedded Redis, real HTTP traffic with an A/B experiment, analysis, a trained model
deployed live and tested) in a few minutes with no flags. It is the lab with small,
fixed defaults; every default can still be overridden with the lab's flags.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from botify import lab
from botify.cli.lab import main as lab_main

DEMO_DEFAULTS = ["--days", "2", "--sessions", "8000", "--models", "artist_i2i,i2i,contextual"]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the lab with the demo's defaults (later flags override earlier ones)."""
    args = list(sys.argv[1:] if argv is None else argv)
    if "-h" in args or "--help" in args:
        print("python -m botify demo [lab flags]: the lab (python -m botify.lab) with "
              f"defaults {' '.join(DEMO_DEFAULTS)}; see python -m botify.lab --help")
        return 0
    name = [] if any(a.startswith("--name") for a in args) else ["--name", lab.run_name("demo")]
    return lab_main([*DEMO_DEFAULTS, *name, *args])


