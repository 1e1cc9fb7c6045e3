"""What a first-time student runs into from a fresh clone: generated folders stay out of
git and are removed by `make clean`, the repository is self-contained (no reference to
files outside it), and the Makefile's install targets install what each command needs."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _git(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=60)


def _make_dry_run(target: str, *vars: str) -> str:
    proc = subprocess.run(["make", "-n", target, *vars], cwd=ROOT, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


@pytest.mark.parametrize("path", ["runs/demo-x/logs/events.jsonl", "artifacts/i2i.jsonl",
                                  "reports/demo-x/index.html", "data/world/catalog.jsonl",
                                  "run/redis.sock", "logs/events.jsonl"])
def test_generated_files_are_ignored_by_git(path: str) -> None:
    if _git("rev-parse", "--git-dir").returncode != 0:
        pytest.skip("not a git checkout")
    assert _git("check-ignore", "-q", path).returncode == 0, f"{path} would show in git status"


def test_make_clean_removes_generated_folders() -> None:
    removed = set()
    for line in _make_dry_run("clean").splitlines():
        if line.startswith("rm -rf"):
            removed |= set(line.split()[2:])
    assert {"runs", "artifacts", "reports", "logs", "data", "run"} <= removed


def test_no_tracked_file_refers_outside_the_repository() -> None:
    """The protocol reference lives in docs/interfaces.md; a path into a sibling folder
    of the clone (which a student does not have) is a dead link."""
    if _git("rev-parse", "--git-dir").returncode != 0:
        pytest.skip("not a git checkout")
    needle = "../" + "shared"  # split so this file does not match itself
    proc = _git("grep", "-n", "-I", "-F", needle)
    assert proc.returncode == 1, f"tracked files mention {needle}:\n{proc.stdout}"
    proc = _git("grep", "-n", "-I", "-F", "/work/" + "shared")
    assert proc.returncode == 1, proc.stdout


def test_compat_is_not_an_undefined_word_in_what_users_read() -> None:
    """Docs, READMEs, notebooks and slides say "the course-compatible protocol" in plain
    words; the short form COMPAT is defined once, in docs/interfaces.md, for code comments."""
    if _git("rev-parse", "--git-dir").returncode != 0:
        pytest.skip("not a git checkout")
    proc = _git("grep", "-n", "-I", "-w", "COMPAT", "--", "*.md", "*.ipynb", "*.yml",
                ":!docs/interfaces.md")
    assert proc.returncode == 1, proc.stdout
    assert "COMPAT" in (ROOT / "docs" / "interfaces.md").read_text()
