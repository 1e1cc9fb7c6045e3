"""`make notebooks`: JupyterLab on jupyter/, in this environment, on the newest run's logs.

Why a script and not `jupyter lab` in the Makefile: it says which run the notebooks will
read (and stops with a plain message when there is none yet), pins that run for the
session through BOTIFY_LOGS/BOTIFY_WORLD, and starts JupyterLab with this interpreter so
the kernel sees the botify and sim packages of the project's virtualenv.

Usage: .venv/bin/python jupyter/start.py [--dry-run] [JUPYTER LAB OPTIONS ...]
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _paths import ROOT, logs_dir, world_dir  # the helper next to this file

NOTEBOOKS = Path(__file__).resolve().parent


def command(extra: Sequence[str] = ()) -> list[str]:
    """The JupyterLab command line: this interpreter, the notebooks' directory.

    As root (a container's default user) JupyterLab refuses to start without --allow-root;
    the student did not choose to be root, so it is passed for them.
    """
    root = ["--allow-root"] if os.geteuid() == 0 and "--allow-root" not in extra else []
    return [sys.executable, "-m", "jupyterlab", f"--notebook-dir={NOTEBOOKS}", *root, *extra]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="jupyter/start.py",
        description="Start JupyterLab on jupyter/ reading the newest run's logs "
        "(BOTIFY_LOGS / BOTIFY_WORLD override it). Other options go to `jupyter lab`.")
    parser.add_argument("--dry-run", action="store_true",
                        help="print the run and the command, start nothing")
    args, extra = parser.parse_known_args(argv)
    try:
        logs = logs_dir(ROOT)
    except FileNotFoundError as exc:
        print(f"notebooks: {exc}", file=sys.stderr)
        return 2
    if not logs.is_dir():
        print(f"notebooks: BOTIFY_LOGS={logs} is not a directory", file=sys.stderr)
        return 2
    world = world_dir(ROOT)
    cmd = command(extra)
    print(f"notebooks: logs {logs}\nnotebooks: world {world}")
    if args.dry_run:
        print("notebooks: would run", " ".join(cmd))
        return 0
    if importlib.util.find_spec("jupyterlab") is None:
        print("notebooks: JupyterLab is not installed in this environment: "
              "`make install-notebooks` (or pip install -e './botify[notebooks]')", file=sys.stderr)
        return 2
    env = {**os.environ, "BOTIFY_LOGS": str(logs), "BOTIFY_WORLD": str(world)}
    sys.stdout.flush()
    os.execve(sys.executable, cmd, env)  # Ctrl-C goes straight to JupyterLab


if __name__ == "__main__":
    sys.exit(main())
