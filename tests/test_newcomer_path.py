"""What a first-time student runs into from a fresh clone: generated folders stay out of
git and are removed by `make clean`, the repository is self-contained (no reference to
files outside it), and the Makefile's install targets install what each command needs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
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


# -- make demo installs only what it needs --------------------------------------------

HEAVY = ("torch", "implicit", "pyspark", "jupyterlab")


def _pip_lines(target: str) -> list[str]:
    out = _make_dry_run(target, "VENV=/nonexistent-venv")
    return [line for line in out.splitlines() if "-m pip install" in line and " -e " in line]


def test_make_demo_installs_only_the_analysis_extra() -> None:
    demo = _make_dry_run("demo", "VENV=/nonexistent-venv")
    assert "botify[offline]" in demo and "-m botify demo" in demo
    for extra in ("train", "spark", "notebooks"):
        assert extra not in demo.replace("install-", ""), demo
    assert "requirements-dev.txt" not in demo


@pytest.mark.parametrize(("target", "extra"), [("install-train", "train"), ("install-spark", "spark"),
                                               ("install-notebooks", "notebooks"), ("notebooks", "notebooks")])
def test_heavy_extras_come_with_the_targets_that_need_them(target: str, extra: str) -> None:
    lines = _pip_lines(target)
    assert lines and all(extra in line for line in lines), lines


def test_make_install_still_installs_everything_for_make_test() -> None:
    (line,) = _pip_lines("install")
    assert "offline,train,spark,notebooks" in line and "-r requirements-dev.txt" in line
    assert "install" in _make_dry_run("test", "VENV=/nonexistent-venv")


def test_pip_is_not_silenced() -> None:
    for target in ("install", "install-demo", "install-notebooks"):
        out = _make_dry_run(target, "VENV=/nonexistent-venv")
        assert " -q" not in out, f"make {target} hides pip's progress"
        assert "echo \"==> [" in out or "==> [" in out


def test_the_demo_imports_no_heavy_extra() -> None:
    """`make demo` runs without torch, implicit, pyspark or JupyterLab: the lab, the demo
    command, the analysis and the lab's default models import none of them."""
    code = (
        "import importlib.abc, sys\n"
        "class Block(importlib.abc.MetaPathFinder):\n"
        f"    def find_spec(self, name, path=None, target=None):\n"
        f"        if name.split('.')[0] in {HEAVY!r}:\n"
        "            raise ImportError(f'blocked heavy import: {name}')\n"
        "sys.meta_path.insert(0, Block())\n"
        "import botify.cli.demo, botify.cli.main, botify.lab, botify.analysis.ab, botify.analysis.report\n"
        "from botify.lab import LabOptions\n"
        "from botify.training.models import get_model\n"
        "for m in LabOptions.__dataclass_fields__['models'].default_factory():\n"
        "    get_model(m)\n"
        "print('ok')\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr[-3000:]


# -- make notebooks -----------------------------------------------------------------------


def _start(args: list[str], root: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(ROOT / "jupyter" / "start.py"), *args], cwd=root,
                          capture_output=True, text=True, timeout=60, env=env)


def test_notebooks_target_starts_jupyterlab_through_the_helper() -> None:
    out = _make_dry_run("notebooks", "VENV=/nonexistent-venv")
    assert "/nonexistent-venv/bin/python jupyter/start.py" in out


def test_notebook_paths_find_the_newest_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sys.path.insert(0, str(ROOT / "jupyter"))
    try:
        import _paths
    finally:
        sys.path.remove(str(ROOT / "jupyter"))
    monkeypatch.delenv("BOTIFY_LOGS", raising=False)
    monkeypatch.delenv("BOTIFY_WORLD", raising=False)
    with pytest.raises(FileNotFoundError, match="make demo"):
        _paths.newest_run_logs(tmp_path)
    assert _paths.world_dir(tmp_path) == tmp_path / "data" / "world"
    old, new = tmp_path / "runs" / "demo-1" / "logs", tmp_path / "runs" / "demo-2" / "logs"
    for i, logs in enumerate((new, old)):  # the older one is written last, with an older mtime
        logs.mkdir(parents=True)
        os.utime(logs, (1_000_000 + i * -10, 1_000_000 + i * -10))
    (new.parent / "lab.json").write_text(json.dumps({"world": "worlds/w1"}))
    assert _paths.newest_run_logs(tmp_path) == new
    assert _paths.logs_dir(tmp_path) == new
    assert _paths.world_dir(tmp_path) == tmp_path / "worlds" / "w1"
    monkeypatch.setenv("BOTIFY_LOGS", str(old))
    assert _paths.logs_dir(tmp_path) == old
    assert _paths.world_dir(tmp_path) == tmp_path / "data" / "world"  # old has no lab.json
    # the notebooks use the helper, not their own copy of it
    for nb in (ROOT / "jupyter").glob("*.ipynb"):
        first_code = next(c for c in json.loads(nb.read_text())["cells"] if c["cell_type"] == "code")
        src = "".join(first_code["source"])
        assert "from _paths import" in src and "def " not in src, nb.name


def test_start_says_which_run_or_that_there_is_none(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BOTIFY_")}
    logs = tmp_path / "runs" / "lab-x" / "logs"
    env["BOTIFY_LOGS"] = str(logs)
    proc = _start(["--dry-run"], tmp_path, env)
    assert proc.returncode == 2 and "not a directory" in proc.stderr, proc
    logs.mkdir(parents=True)
    proc = _start(["--dry-run", "--port", "0"], tmp_path, env)
    assert proc.returncode == 0, proc.stderr
    assert f"logs {logs}" in proc.stdout
    root = " --allow-root" if os.geteuid() == 0 else ""
    assert f"{sys.executable} -m jupyterlab --notebook-dir={ROOT / 'jupyter'}{root} --port 0" in proc.stdout


def test_make_notebooks_really_starts_jupyterlab(tmp_path: Path) -> None:
    """With the notebooks extra installed, start.py brings JupyterLab up on jupyter/ with the
    run pinned in its environment; stopped again within seconds."""
    pytest.importorskip("jupyterlab")
    import signal
    import socket
    import time
    import urllib.request

    logs = tmp_path / "runs" / "demo-x" / "logs"
    logs.mkdir(parents=True)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith("BOTIFY_")}
    env.update(BOTIFY_LOGS=str(logs), JUPYTER_RUNTIME_DIR=str(tmp_path / "rt"),
               JUPYTER_CONFIG_DIR=str(tmp_path / "cfg"), JUPYTER_DATA_DIR=str(tmp_path / "data"))
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "jupyter" / "start.py"), "--no-browser", "--ip=127.0.0.1",
         f"--port={port}", "--IdentityProvider.token=", "--ServerApp.password="],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        body = ""
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/contents", timeout=2) as r:
                    body = r.read().decode()
                break
            except OSError:
                time.sleep(0.3)
        assert "ab_analysis.ipynb" in body, body[:500]
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            out, _ = proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out, _ = proc.communicate()
    assert f"notebooks: logs {logs}" in out
