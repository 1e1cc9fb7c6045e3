"""Sessions come out of the logs exactly as the simulator played them, whatever process logged them.

The real thing, twice: a 2-worker `python -m botify serve`, and two single-worker
replicas behind nginx, each under the simulator's remote agent with many sessions
in flight and users playing session after session (so a user's `last` on one
worker and their next session's first `next` on another often share a
millisecond). The simulator's own per-session records (`--out`) are the truth:
every one must appear in the analysis exactly once, with the same number of
tracks and the same total time, and no session may be left unfinished.

What the remote agent sends per session (sim/src/sim/agents/remote.py): one
`/next` carrying the first track with time 1.0, one `/next` per step, then one
`/last`; so a session of `steps` steps and reward R is `steps + 1` events whose
`time` sums to `1.0 + R`.
"""

from __future__ import annotations

import json
import math
import signal
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from helpers_nginx import nginx_binary, nginx_proxy
from helpers_service import REPO, service_env, start_service, write_experiments

EPISODES = 500
CONCURRENCY = 48


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # Few users for many episodes: each user plays several sessions back to back.
    out = tmp_path_factory.mktemp("world") / "world"
    subprocess.run(
        [sys.executable, "-m", "sim.world", "generate", "--seed", "17", "--tracks", "1500",
         "--users", "60", "--out", str(out)],
        cwd=REPO, env=service_env(), check=True, capture_output=True, timeout=120,
    )
    return out


def _simulate(world: Path, port: int, out: Path) -> list[dict]:
    config = out.parent / "env.yml"
    config.write_text(
        f"world: {world}\nservice:\n  host: 127.0.0.1\n  port: {port}\n  concurrency: {CONCURRENCY}\n"
    )
    sim = subprocess.run(
        [sys.executable, "-m", "sim.run", "--episodes", str(EPISODES), "--config", str(config),
         "single", "--recommender", "remote", "--seed", "9", "--days", "1", "--no-progress",
         "--out", str(out)],
        cwd=REPO, env=service_env(), capture_output=True, text=True, timeout=180,
        stdin=subprocess.DEVNULL,
    )
    assert sim.returncode == 0, sim.stderr[-3000:]
    return [json.loads(line) for line in out.read_text().splitlines() if line.strip()]


def _check_exact(logs: Path, records: list[dict]) -> None:
    from botify.analysis.logs import read_events
    from botify.analysis.sessions import sessionize

    loaded = read_events(logs)
    ev = loaded.events
    assert loaded.report.bad == 0, loaded.report.summary()
    assert ev["seq"].notna().all(), "every event of a healthy service carries seq"
    assert ev["event_id"].nunique() == len(ev), "event ids are unique across workers"
    assert ev["event_id"].str.len().min() > 0
    sz = sessionize(ev)
    s = sz.sessions
    assert sz.n_unfinished == 0, s.loc[~s["finished"]]
    got: dict[int, list[tuple[int, float]]] = defaultdict(list)
    for r in s.itertuples(index=False):  # per user, in order
        got[int(r.user)].append((int(r.tracks), float(r.time)))
    want: dict[int, list[tuple[int, float]]] = defaultdict(list)
    for r in sorted(records, key=lambda r: r["episode"]):  # a user's sessions run in episode order
        want[int(r["user"])].append((int(r["steps"]) + 1, 1.0 + float(r["reward"])))
    assert len(records) == EPISODES
    assert sum(len(v) for v in got.values()) == EPISODES
    assert sorted(got) == sorted(want)
    for user, sessions in want.items():
        mine = got[user]
        assert [t for t, _ in mine] == [t for t, _ in sessions], user
        assert all(math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)
                   for (_, a), (_, b) in zip(mine, sessions, strict=True)), user
    # For the record: how many sessions the old order (time, then file) would have cut wrong.
    old = sessionize(ev.drop(columns=["seq"])).sessions
    print(f"sessions: {len(s)}; without seq: {len(old)} sessions, "
          f"{int((~old['finished']).sum())} unfinished")


def test_two_workers_log_every_simulated_session_exactly(tmp_path: Path, world: Path, redis_url: str) -> None:
    logs = tmp_path / "logs"
    experiments = write_experiments(tmp_path / "experiments.yml", {"C": "random", "T1": "sticky_artist"},
                                    name="EXACT")
    svc = start_service(catalog=world / "catalog.jsonl", log_dir=logs, experiments=experiments,
                        redis_url=redis_url, workers=2, run_dir=tmp_path / "run")
    try:
        records = _simulate(world, svc.port, tmp_path / "episodes.jsonl")
    finally:
        code = svc.stop(signal.SIGTERM)
    assert code == 0, svc.output()[-2000:]
    assert len(list(logs.glob("*/events-*.jsonl"))) == 2, "both workers logged"
    _check_exact(logs, records)
    # each worker wrote the experiments snapshot beside its events: the gate tests against it
    from botify.analysis import verdict as vd
    from botify.analysis.ab import analyze_logs

    assert len(list(logs.glob(f"*/{vd.SNAPSHOT_FILE}"))) == 2
    res = analyze_logs(logs, "EXACT")
    assert res.configured is not None and res.configured.shares == {"C": 0.5, "T1": 0.5}
    assert res.configured.arms == {"C": "random", "T1": "sticky_artist"}
    h = res.health.set_index("arm")
    assert (h["answers"] > 0).all() and res.verdict is not None


@pytest.mark.skipif(nginx_binary() is None, reason="nginx is not installed (Debian package nginx)")
def test_two_replicas_behind_nginx_log_every_simulated_session_exactly(
    tmp_path: Path, world: Path, redis_url: str
) -> None:
    logs = tmp_path / "logs"
    experiments = write_experiments(tmp_path / "experiments.yml", {"C": "random", "T1": "sticky_artist"},
                                    name="EXACT")
    replicas = []
    try:
        for k in range(2):
            replicas.append(start_service(
                catalog=world / "catalog.jsonl", log_dir=logs, experiments=experiments,
                redis_url=redis_url, workers=1, run_dir=tmp_path / f"run{k}",
            ))
        with nginx_proxy([f"127.0.0.1:{svc.port}" for svc in replicas], workdir=tmp_path / "nginx") as ng:
            records = _simulate(world, ng.port, tmp_path / "episodes.jsonl")
    finally:
        codes = [svc.stop(signal.SIGTERM) for svc in replicas]
    assert codes == [0, 0], [svc.output()[-2000:] for svc in replicas]
    assert len(list(logs.glob("*/events-*.jsonl"))) == 2, "both replicas logged"
    _check_exact(logs, records)
