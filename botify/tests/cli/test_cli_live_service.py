"""`load-artifact` and `rollback` reach the running service's Redis, wherever it runs from.

The newcomer's trap this guards against: the service runs with one --run-dir (or inside a
lab run), the student types the README's `botify load-artifact ... --as i2i` from the repo
root, and the command used to start a fresh, empty embedded Redis in ./run and answer
"no catalog in Redis". Now it finds the live service's Redis through the announcements in
the state dir, or says plainly that no service runs and which option points at one.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import redis

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "tests"))
from botify.service.embedded_redis import (
    EmbeddedRedis,
    EmbeddedRedisError,
    live_servers,
    redis_url_for_cli,
)
from helpers_service import botify_service, http_get, write_catalog
from test_cli import _one_line_error, run_cli

from botify import store


def _artifact(path: Path, n: int, shift: int) -> Path:
    path.write_text("".join(
        json.dumps({"item_id": i, "recommendations": [(i + shift) % n]}) + "\n" for i in range(n)))
    Path(f"{path}.meta.json").write_text(json.dumps({"model": "test", "kind": "i2i", "params": {}}))
    return path


@pytest.fixture
def state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private announcement directory: other services on this machine stay invisible."""
    d = tmp_path / "state"
    monkeypatch.setenv("BOTIFY_STATE_DIR", str(d))
    return d


def test_load_artifact_and_rollback_find_the_service_of_another_run_dir(
        tmp_path: Path, state: Path) -> None:
    cat = write_catalog(tmp_path / "catalog.jsonl", 50)
    env = {"BOTIFY_STATE_DIR": str(state)}
    elsewhere = tmp_path / "not-the-service-run-dir"  # what ./run is for a student
    with botify_service(catalog=cat, log_dir=tmp_path / "logs", run_dir=tmp_path / "svc-run",
                        extra_env=env) as svc:
        assert [s.run_dir for s in live_servers()] == [(tmp_path / "svc-run").resolve()]
        p = run_cli("load-artifact", str(_artifact(tmp_path / "v1.jsonl", 50, 1)), "--as", "i2i",
                    "--run-dir", str(elsewhere), env=env)
        assert p.returncode == 0, p.stderr
        assert "is live as version" in p.stdout
        assert str((tmp_path / "svc-run").resolve()) in p.stderr  # says whose Redis it used
        p = run_cli("load-artifact", str(_artifact(tmp_path / "v2.jsonl", 50, 2)), "--as", "i2i",
                    "--run-dir", str(elsewhere), env=env)
        assert p.returncode == 0, p.stderr

        # the table is live in the running service's own Redis
        assert http_get(f"{svc.url}/health")[0] == 200
        url = (tmp_path / "svc-run" / "redis.url").read_text().strip()
        r = redis.Redis.from_url(url)
        v2 = store.current_table_version(r, "i2i", "botify")
        assert v2 and v2 in p.stdout

        p = run_cli("rollback", "i2i", "--run-dir", str(elsewhere), env=env)
        assert p.returncode == 0, p.stderr
        v1 = store.current_table_version(r, "i2i", "botify")
        assert v1 != v2 and v1 in p.stdout
        r.close()
    assert not (elsewhere / "redis.sock").exists(), "a fresh embedded Redis was started"

    # the service is gone: a plain one-line answer, and no empty Redis started
    p = run_cli("rollback", "i2i", "--run-dir", str(elsewhere), env=env)
    _one_line_error(p, "no botify service runs from", "--run-dir", "--redis-url")
    p = run_cli("load-artifact", str(tmp_path / "v1.jsonl"), "--as", "i2i", env=env)
    _one_line_error(p, "no botify service runs from")
    assert not elsewhere.exists()
    assert live_servers() == []


def test_several_services_elsewhere_are_named_not_guessed(tmp_path: Path, state: Path) -> None:
    with EmbeddedRedis(tmp_path / "a"), EmbeddedRedis(tmp_path / "b"):
        with pytest.raises(EmbeddedRedisError, match="2 run elsewhere") as err:
            with redis_url_for_cli(None, tmp_path / "run", live_only=True):
                pass
        assert f"--run-dir {(tmp_path / 'a').resolve()}" in str(err.value)
        assert f"--run-dir {(tmp_path / 'b').resolve()}" in str(err.value)
        # its own run dir still wins when a service runs there
        with redis_url_for_cli(None, tmp_path / "b", live_only=True) as url:
            assert "/b/" in url or url == (tmp_path / "b" / "redis.url").read_text().strip()


def test_a_one_shot_load_is_not_announced_and_stale_announcements_are_dropped(
        tmp_path: Path, state: Path) -> None:
    with redis_url_for_cli(None, tmp_path / "run") as url:  # `botify load`: temporary server
        assert redis.Redis.from_url(url).ping()
        assert live_servers() == []
    state.mkdir(mode=0o700, exist_ok=True)
    stale = state / "redis-999999999-1.json"  # an owner killed before it could clean up
    stale.write_text(json.dumps({"url": f"unix://{tmp_path}/gone.sock?db=0",
                                 "run_dir": str(tmp_path), "pid": 2**22 + 12345}))
    assert live_servers() == []
    assert not stale.exists()
