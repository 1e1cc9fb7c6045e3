"""End to end: the day loop with real processes (world, Redis, service, simulator).

A small world and few sessions keep it to seconds, but nothing is mocked: the
simulator sends HTTP to `python -m botify serve`, models are trained from the
event logs and loaded into the running service, and the reports are written.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_lab_two_days_end_to_end(tmp_path: Path, redis_url: str) -> None:
    cmd = [
        sys.executable, "-m", "botify.lab", "--days", "2", "--sessions", "200",
        "--tracks", "3000", "--users", "400", "--world", str(tmp_path / "world"),
        "--models", "artist_i2i,top_pop", "--name", "t", "--runs-dir", str(tmp_path / "runs"),
        "--reports-dir", str(tmp_path / "reports"), "--redis-url", redis_url,
        "--sim-config", str(ROOT / "config" / "env.yml"),
    ]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    summary = json.loads((tmp_path / "reports" / "t" / "summary.json").read_text())
    assert [d["experiment"] for d in summary] == ["DAY1", "DAY2"]
    assert summary[0]["arms"] == {"C": "random", "T1": "sticky_artist"}
    day2 = summary[1]
    assert day2["arms"]["C"] == summary[0]["champion_after"]
    assert set(day2["arms"].values()) >= {"artist_i2i", "top_pop"} - {day2["arms"]["C"]}
    # every arm of both days got users, and the report pages exist
    for day in summary:
        assert all(n > 0 for n in day["users_per_arm"].values())
        assert (tmp_path / "reports" / "t" / day["report"]).is_file()
    index = (tmp_path / "reports" / "t" / "index.html").read_text()
    assert "data:image/png;base64," in index

    # the models were trained from the logs and made live as table versions
    artifacts = tmp_path / "runs" / "t" / "artifacts" / "day2"
    for model in ("artist_i2i", "top_pop"):
        meta = json.loads((artifacts / f"{model}.jsonl.meta.json").read_text())
        assert meta["model"] == model
    # the service's event log carries day 2's experiment for model arms
    lines = [json.loads(x) for f in (tmp_path / "runs" / "t" / "logs").rglob("events-*.jsonl")
             for x in f.read_text().splitlines()]
    served = {e["recommender"] for e in lines if "DAY2" in e.get("experiments", {})}
    assert {"artist_i2i", "top_pop"} & served


def test_lab_rejects_unknown_model(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "botify.lab", "--models", "nope", "--world", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 2
    assert "unknown model" in proc.stderr and "Traceback" not in proc.stderr
