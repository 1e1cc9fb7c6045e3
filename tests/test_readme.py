"""The README's commands exist: every `python -m` module and subcommand it shows
answers --help, and every make target it names is defined. The behaviour behind
each command is tested where it lives (sim/tests, botify/tests, tests/)."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
BLOCKS = "\n".join(re.findall(r"```\n(.*?)```", README, flags=re.S))


def _module_commands() -> list[list[str]]:
    """`python -m mod [subcommand]` prefixes from the README's code blocks, deduplicated."""
    seen: dict[tuple[str, ...], None] = {}
    for line in BLOCKS.splitlines():
        m = re.search(r"python -m (\S+)(.*)", line)
        if not m:
            continue
        words = shlex.split(m.group(2).split("#")[0])
        sub = [words[0]] if words and not words[0].startswith("-") else []
        if m.group(1) == "sim.run":
            sub = []  # sim.run's first word is an option (--episodes); its modes are tested in sim/tests
        seen[(m.group(1), *sub)] = None
    return [list(k) for k in seen]


COMMANDS = _module_commands()


def test_readme_shows_the_main_commands() -> None:
    mods = {c[0] for c in COMMANDS}
    assert {"botify", "sim.run", "sim.world", "botify.ab", "botify.train", "botify.lab"} <= mods
    assert "make demo" in README and "make test" in README


@pytest.mark.parametrize("cmd", COMMANDS, ids=lambda c: " ".join(c))
def test_readme_command_has_help(cmd: list[str]) -> None:
    proc = subprocess.run([sys.executable, "-m", *cmd, "--help"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "usage" in (proc.stdout + proc.stderr).lower()


def test_make_targets_named_in_readme_exist() -> None:
    makefile = (ROOT / "Makefile").read_text()
    for target in set(re.findall(r"make ([a-z][a-z-]+)", README)):
        assert re.search(rf"^{target}:", makefile, flags=re.M), f"make {target} is not defined"


def test_ci_runs_the_readme_test_command() -> None:
    ci = (ROOT / ".ci" / "run").read_text()
    assert re.search(r"^make test$", ci, flags=re.M)


def test_readme_links_point_at_files() -> None:
    for target in re.findall(r"\]\(([^)#]+)\)", README):
        if "://" in target:
            continue
        assert (ROOT / target).exists(), f"README links to missing {target}"
