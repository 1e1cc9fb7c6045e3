"""`python -m botify load|load-artifact|rollback|demo`: thin, honest CLI over botify.store."""

from __future__ import annotations

import json
import subprocess
import sys
import types
from pathlib import Path

import pytest
import redis

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "tests"))
from botify.cli.main import main
from helpers_service import REPO, service_command, service_env, write_catalog

from botify import store

NS = "clitest"


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(service_command(*args), cwd=REPO, env=service_env(env), text=True,
                          capture_output=True, timeout=60)


def _i2i(path: Path, n: int, shift: int) -> Path:
    path.write_text("".join(
        json.dumps({"item_id": i, "recommendations": [(i + shift) % n, (i + 2 * shift) % n]}) + "\n"
        for i in range(n)
    ))
    return path


@pytest.fixture
def cat(tmp_path: Path) -> Path:
    return write_catalog(tmp_path / "catalog.jsonl", 100)


def _one_line_error(proc: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert proc.returncode == 2, proc
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("botify: "), proc.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


def test_load_table_switch_and_rollback(tmp_path: Path, cat: Path, redis_url: str) -> None:
    env = {"BOTIFY_REDIS_URL": redis_url, "BOTIFY_NAMESPACE": NS}
    r = redis.Redis.from_url(redis_url)
    p = run_cli("load", "catalog", str(cat), env=env)
    assert p.returncode == 0, p.stderr
    assert "100 tracks" in p.stdout and store.catalog_size(r, NS) == 100

    p = run_cli("load", "table", "i2i", str(_i2i(tmp_path / "v1.jsonl", 100, 1)), env=env)
    assert p.returncode == 0, p.stderr
    v1 = store.current_table_version(r, "i2i", NS)
    assert v1 and v1 in p.stdout

    # load-artifact: needs the sidecar, validates, switches atomically to the new version
    art = _i2i(tmp_path / "v2.jsonl", 100, 7)
    p = run_cli("load-artifact", str(art), "--as", "i2i", env=env)
    _one_line_error(p, "meta.json")
    Path(str(art) + ".meta.json").write_text(json.dumps({"model": "test", "kind": "i2i", "params": {}}))
    p = run_cli("load-artifact", str(art), "--as", "i2i", env=env)
    assert p.returncode == 0, p.stderr
    v2 = store.current_table_version(r, "i2i", NS)
    assert v2 != v1 and v2 in p.stdout
    row = store.unpack_ids(r.hget(store.Keys(NS).table_data("i2i", v2), "3"))
    assert list(row) == [10, 17]

    p = run_cli("rollback", "i2i", env=env)
    assert p.returncode == 0, p.stderr
    assert store.current_table_version(r, "i2i", NS) == v1 and v1 in p.stdout

    p = run_cli("rollback", "i2i", env=env)
    _one_line_error(p, "no previous version")

    # --no-switch stages a version without making it live
    p = run_cli("load", "table", "i2i", str(art), "--no-switch", env=env)
    assert p.returncode == 0 and store.current_table_version(r, "i2i", NS) == v1


def test_bad_inputs_are_one_line_errors(tmp_path: Path, cat: Path, redis_url: str) -> None:
    env = {"BOTIFY_REDIS_URL": redis_url, "BOTIFY_NAMESPACE": NS}
    _one_line_error(run_cli("load", "catalog", str(tmp_path / "missing.jsonl"), env=env), "not found")
    bad_cat = tmp_path / "bad.jsonl"
    bad_cat.write_text('{"track": 5, "artist": "a", "title": "t"}\n')
    _one_line_error(run_cli("load", "catalog", str(bad_cat), env=env), "0..0")
    # a table before any catalog: refused, says why
    _one_line_error(run_cli("load", "table", "i2i", str(_i2i(tmp_path / "t.jsonl", 10, 1)), env=env),
                    "no catalog")
    assert run_cli("load", "catalog", str(cat), env=env).returncode == 0
    unknown = tmp_path / "unknown.jsonl"
    unknown.write_text(json.dumps({"item_id": 1, "recommendations": [5, 100000]}) + "\n")
    p = run_cli("load", "table", "i2i", str(unknown), env=env)
    _one_line_error(p, "unknown track")
    assert store.current_table_version(redis.Redis.from_url(redis_url), "i2i", NS) is None
    _one_line_error(run_cli("load", "catalog", str(cat), env={"BOTIFY_REDIS_URL": "redis://127.0.0.1:1/0"}),
                    "cannot reach Redis")
    _one_line_error(run_cli("rollback", "nothing", env=env), "no previous version")


def test_without_redis_url_loads_into_the_embedded_redis_for_the_next_serve(tmp_path: Path, cat: Path) -> None:
    env = {"BOTIFY_RUN_DIR": str(tmp_path / "run")}
    assert run_cli("load", "catalog", str(cat), env=env).returncode == 0
    p = run_cli("load", "table", "i2i", str(_i2i(tmp_path / "t.jsonl", 100, 3)), env=env)
    assert p.returncode == 0, p.stderr
    from botify.service.embedded_redis import EmbeddedRedis

    with EmbeddedRedis(tmp_path / "run") as server:  # what `serve` will start: data kept
        assert store.current_table_version(redis.Redis.from_url(server.url), "i2i", "botify")


def test_help_for_every_command() -> None:
    for args in (["--help"], ["serve", "--help"], ["load", "catalog", "--help"], ["load", "table", "--help"],
                 ["load-artifact", "--help"], ["rollback", "--help"]):
        p = run_cli(*args)
        assert p.returncode == 0 and "usage:" in p.stdout, (args, p.stderr)


def test_demo_dispatches_to_botify_demo_lazily(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[list[str]] = []
    fake = types.ModuleType("botify.cli.demo")
    fake.main = lambda argv: seen.append(list(argv)) or 7  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "botify.cli.demo", fake)
    import botify

    monkeypatch.setattr(botify, "demo", fake, raising=False)
    assert main(["demo", "--help", "--episodes", "3"]) == 7
    assert seen == [["--help", "--episodes", "3"]]
