"""`botify new-recommender NAME`: the skeleton imports, passes its own test, and its snippet switches it on."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import botify.recommenders
import pytest
import yaml
from botify.cli.main import main
from botify.recommenders import REGISTRY, Context
from botify.service.experiments import parse_experiments
from botify.store.catalog import Catalog
from botify_svc_helpers import write_tracks


def test_skeleton_test_and_snippet_work(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "recommenders"
    assert main(["new-recommender", "my_homework", "--dir", str(folder)]) == 0
    out = capsys.readouterr().out
    assert "test_my_homework.py" in out and "config/experiments.yml" in out
    assert sorted(p.name for p in folder.iterdir()) == ["my_homework.py", "my_homework.yml", "test_my_homework.py"]
    # its own test passes, in a fresh interpreter, as a student would run it (with this botify)
    src = str(Path(botify.recommenders.__file__).resolve().parents[2])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")])}
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(folder / "test_my_homework.py")],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert "2 passed" in run.stdout
    # the snippet is a valid experiments.yml that serves it from the folder
    try:
        ctx = Context(Catalog.from_file(write_tracks(tmp_path / "c.jsonl")))
        exps = parse_experiments(yaml.safe_load((folder / "my_homework.yml").read_text()), ctx, code_dir=folder)
        assert exps.experiments[0].recommenders == ("random", "my_homework")
        assert exps.instances["my_homework"].threshold == 0.5
    finally:
        REGISTRY.pop("my_homework", None)


def test_bad_names_and_existing_files_are_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "r"
    for bad in ("Bad-Name", "class", "test_x", "top_pop"):
        assert main(["new-recommender", bad, "--dir", str(folder)]) == 2
    assert not folder.exists()
    assert main(["new-recommender", "again", "--dir", str(folder)]) == 0
    (folder / "again.py").write_text("# mine\n")
    assert main(["new-recommender", "again", "--dir", str(folder)]) == 2
    assert "already exists" in capsys.readouterr().err
    assert (folder / "again.py").read_text() == "# mine\n"
    assert main(["new-recommender", "again", "--dir", str(folder), "--force"]) == 0
    assert "register(\"again\")" in (folder / "again.py").read_text()
