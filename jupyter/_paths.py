"""Where the notebooks read from: the newest run's logs and its world, unless told otherwise.

Shared by the three notebooks and `make notebooks` (jupyter/start.py), so that the browser,
the notebooks and the test suite agree on which run "the newest" is. Environment variables
win: BOTIFY_LOGS (a run's logs directory) and BOTIFY_WORLD (a world directory).
"""

from __future__ import annotations

import json
import os
from pathlib import Path


def repo_root(start: Path | None = None) -> Path:
    """The botify checkout this file lives in (a notebook's working directory is jupyter/)."""
    here = (start or Path(__file__).parent).resolve()
    for p in (here, *here.parents):
        if (p / "botify").is_dir() and (p / "sim").is_dir():
            return p
    return here


ROOT = repo_root()


def newest_run_logs(root: Path = ROOT) -> Path:
    """The logs of the most recent `make demo` / `python -m botify.lab` run (runs/*/logs)."""
    runs = sorted(root.glob("runs/*/logs"), key=lambda p: p.stat().st_mtime)
    if not runs:
        raise FileNotFoundError(
            f"no run in {root / 'runs'} yet: run `make demo` first, or set BOTIFY_LOGS")
    return runs[-1]


def world_of(logs: Path, root: Path = ROOT) -> Path:
    """The world a lab run used (recorded in its lab.json), else the demo's data/world."""
    lab = Path(logs).parent / "lab.json"
    if lab.is_file():
        w = Path(json.loads(lab.read_text())["world"])
        return w if w.is_absolute() else root / w
    return root / "data" / "world"


def logs_dir(root: Path = ROOT) -> Path:
    """BOTIFY_LOGS if set, else the newest run's logs."""
    return Path(os.environ.get("BOTIFY_LOGS") or newest_run_logs(root))


def world_dir(root: Path = ROOT) -> Path:
    """BOTIFY_WORLD if set, else the world of the logs read (data/world when there is no run)."""
    if os.environ.get("BOTIFY_WORLD"):
        return Path(os.environ["BOTIFY_WORLD"])
    try:
        return world_of(logs_dir(root), root)
    except FileNotFoundError:
        return root / "data" / "world"
