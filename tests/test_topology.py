"""The compose topology without Docker: Redis, two service replicas, nginx in front, simulator traffic.

Same pieces as docker-compose.yml: a real redis-server (conftest), two
`python -m botify serve` processes on their own ports sharing one log dir (as the
replicas share the botify-logs volume), and the Debian nginx running the config
rendered from deploy/nginx.conf. The simulator's remote agent plays sessions through
nginx; then every request nginx got an answer for must be in exactly one replica's
event log, and both replicas must have served.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import redis

sys.path.insert(0, str(Path(__file__).resolve().parent))
from helpers_nginx import nginx_binary, nginx_proxy
from helpers_service import (
    REPO,
    children_of,
    http_get,
    http_post_json,
    service_env,
    start_service,
    write_experiments,
)

pytestmark = pytest.mark.skipif(nginx_binary() is None, reason="nginx is not installed (Debian package nginx)")


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("world") / "world"
    subprocess.run(
        [sys.executable, "-m", "sim.world", "generate", "--seed", "11", "--tracks", "1500",
         "--users", "200", "--out", str(out)],
        cwd=REPO, env=service_env(), check=True, capture_output=True, timeout=120,
    )
    return out


def _events_by_dir(log_dir: Path) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for f in sorted(log_dir.glob("*/events-*.jsonl")):
        out.setdefault(f.parent.name, []).extend(
            json.loads(line) for line in f.read_text().splitlines() if line.strip()
        )
    return out


def test_two_replicas_behind_nginx_serve_and_log_simulator_traffic(
    tmp_path: Path, world: Path, redis_url: str
) -> None:
    logs = tmp_path / "logs"
    experiments = write_experiments(tmp_path / "experiments.yml", {"C": "random", "T1": "sticky_artist"},
                                    name="STICKY")
    replicas = []
    try:
        for k in range(2):
            replicas.append(start_service(
                catalog=world / "catalog.jsonl", log_dir=logs, experiments=experiments,
                redis_url=redis_url, workers=1, run_dir=tmp_path / f"run{k}",
            ))
        client = redis.Redis.from_url(redis_url)
        assert int(client.get("botify:catalog:loads") or 0) == 1, "the catalog must load once for all replicas"
        worker_pid = {svc.port: children_of(svc.proc.pid) for svc in replicas}
        assert all(len(p) == 1 for p in worker_pid.values())

        with nginx_proxy([f"127.0.0.1:{svc.port}" for svc in replicas], workdir=tmp_path / "nginx") as ng:
            # The COMPAT surface through the balancer, including a JSON 4xx.
            status, body = http_get(f"{ng.url}/")
            assert status == 200 and json.loads(body)["status"] == "alive"
            status, body = http_post_json(f"{ng.url}/next/1", {"track": None, "time": 0.5})
            assert 400 <= status < 500 and "error" in json.loads(body)

            config = tmp_path / "env.yml"
            config.write_text(
                f"world: {world}\nservice:\n  host: 127.0.0.1\n  port: {ng.port}\n  concurrency: 4\n"
            )
            sim = subprocess.run(
                [sys.executable, "-m", "sim.run", "--episodes", "60", "--config", str(config),
                 "single", "--recommender", "remote", "--seed", "5", "--days", "1", "--no-progress"],
                cwd=REPO, env=service_env(), capture_output=True, text=True, timeout=180,
                stdin=subprocess.DEVNULL,
            )
            assert sim.returncode == 0, sim.stderr[-3000:]
            assert "|" in sim.stdout  # the markdown table of the day
            access = ng.access_log()
    finally:
        codes = [svc.stop(signal.SIGTERM) for svc in replicas]
    assert codes == [0, 0], [svc.output()[-2000:] for svc in replicas]

    # nginx's view: every answered /next and /last ...
    answered = len(re.findall(r'"POST /(?:next|last)/\d+ HTTP/1\.1" 200 ', access))
    sent = len(re.findall(r'"POST /(?:next|last)/\d+ HTTP/1\.1" ', access))
    assert answered >= 120  # 60 sessions: at least one /next and one /last each
    # ... is one line in exactly one replica's log, and both replicas served.
    by_dir = _events_by_dir(logs)
    per_replica = {
        port: sum(len(ev) for d, ev in by_dir.items() if int(d.split("-")[-2]) in pids)
        for port, pids in worker_pid.items()
    }
    print("per replica:", per_replica, "answered via nginx:", answered)
    assert all(n > 0 for n in per_replica.values()), per_replica
    logged = sum(len(v) for v in by_dir.values())
    assert sum(per_replica.values()) == logged
    # Normally equal; a request the client gave up on (timeout, retried) may be logged
    # without a 200 in nginx's log, never the other way round.
    assert answered <= logged <= sent - 1, (answered, logged, sent)  # -1: the rejected request
    rejected = list(logs.glob("*/rejected-*.jsonl"))
    assert rejected, "the 4xx sent through nginx is logged apart from the events"
    every = [e for ev in by_dir.values() for e in ev]
    assert {e["message"] for e in every} == {"next", "last"}
    assert all(set(e["experiments"]) == {"STICKY"} for e in every)
