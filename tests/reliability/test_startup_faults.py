"""Issue 6, point 5: startup faults give one clear line and a non-zero exit, never a traceback.

botify/tests/test_serve.py already covers: a log dir under a regular file, a missing
catalog file, a truncated / binary / empty catalog, a YAML syntax error and an
unknown recommender in the experiments config, a refused Redis port and a non-Redis
URL scheme, a busy port, and a bad BOTIFY_WORKERS value. This module covers the
rest of each class, the faults an operator actually makes: a log dir that is a
file or on a read-only filesystem, a catalog that is a directory or valid JSON of
the wrong shape, experiments configs that parse but mean nothing, Redis URLs that
resolve nowhere, reach something that is not Redis or name a database that does
not exist, and a missing or wrong settings file.
"""

from __future__ import annotations

import json
import os
import socket
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from helpers_service import start_service, write_catalog, write_experiments


@dataclass
class Fault:
    """How to break one thing, and what the one line must say."""

    setup: Callable[[Path, dict[str, Any]], None]
    needles: tuple[str, ...]


@pytest.fixture(scope="module")
def catalog(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_catalog(tmp_path_factory.mktemp("faults") / "catalog.jsonl", 100)


@pytest.fixture(scope="module")
def silent_port() -> Iterator[int]:
    """A TCP port that accepts connections and never answers (a hung or wrong service)."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(16)
    conns: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        srv.settimeout(0.2)
        while not stop.is_set():
            try:
                conns.append(srv.accept()[0])
            except OSError:
                continue

    t = threading.Thread(target=accept, daemon=True)
    t.start()
    yield srv.getsockname()[1]
    stop.set()
    t.join(2)
    for c in conns:
        c.close()
    srv.close()


@pytest.fixture(scope="module")
def http_port() -> Iterator[int]:
    """A TCP port with an HTTP server: it answers, but not in Redis' protocol."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    server = ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def _lines(path: Path, objs: list[Any]) -> Path:
    path.write_text("".join(json.dumps(o) + "\n" for o in objs))
    return path


def _catalog(objs: list[Any]) -> Callable[[Path, dict[str, Any]], None]:
    def setup(tmp: Path, kw: dict[str, Any]) -> None:
        kw["catalog"] = _lines(tmp / "bad-catalog.jsonl", objs)
    return setup


def _experiments(text: str) -> Callable[[Path, dict[str, Any]], None]:
    def setup(tmp: Path, kw: dict[str, Any]) -> None:
        p = tmp / "experiments.yml"
        p.write_text(text)
        kw["experiments"] = p
    return setup


def _redis(url: str) -> Callable[[Path, dict[str, Any]], None]:
    def setup(tmp: Path, kw: dict[str, Any]) -> None:
        kw["redis_url"] = url.format(**kw.pop("_ports"))
    return setup


def _log_dir_is_file(tmp: Path, kw: dict[str, Any]) -> None:
    f = tmp / "logs"
    f.write_text("a file where the log directory should be")
    kw["log_dir"] = f


def _log_dir_read_only_fs(tmp: Path, kw: dict[str, Any]) -> None:
    kw["log_dir"] = Path("/proc/botify-logs")  # procfs: nobody, not even root, creates files there


def _log_dir_read_only(tmp: Path, kw: dict[str, Any]) -> None:
    d = tmp / "ro-logs"
    d.mkdir()
    d.chmod(0o555)
    kw["log_dir"] = d


def _catalog_is_dir(tmp: Path, kw: dict[str, Any]) -> None:
    d = tmp / "catalog-dir"
    d.mkdir()
    kw["catalog"] = d


def _experiments_is_dir(tmp: Path, kw: dict[str, Any]) -> None:
    d = tmp / "experiments-dir"
    d.mkdir()
    kw["experiments"] = d


def _config_file(text: str | None) -> Callable[[Path, dict[str, Any]], None]:
    def setup(tmp: Path, kw: dict[str, Any]) -> None:
        p = tmp / "botify.yml"
        if text is not None:
            p.write_text(text)
        kw["extra_env"] = {"BOTIFY_CONFIG": str(p)}
    return setup


TRACK = {"artist": "a", "title": "t"}
FAULTS: dict[str, Fault] = {
    "log-dir-is-a-file": Fault(_log_dir_is_file, ("log dir", "not writable")),
    "log-dir-on-read-only-fs": Fault(_log_dir_read_only_fs, ("log dir", "not writable")),
    "log-dir-read-only": Fault(_log_dir_read_only, ("log dir", "not writable")),
    "catalog-is-a-directory": Fault(_catalog_is_dir, ("catalog",)),
    "catalog-not-tracks": Fault(_catalog([{"foo": 1}, {"foo": 2}]), ("catalog", "invalid")),
    "catalog-id-gap": Fault(_catalog([{"track": 0, **TRACK}, {"track": 2, **TRACK}]), ("catalog", "invalid")),
    "catalog-duplicate-id": Fault(_catalog([{"track": 0, **TRACK}, {"track": 0, **TRACK}]), ("catalog", "invalid")),
    "catalog-array-lines": Fault(_catalog([[0, "a", "t"]]), ("catalog", "invalid")),
    "experiments-not-a-list": Fault(_experiments("experiments: 5\n"), ("experiments config", "invalid")),
    "experiments-no-arms": Fault(_experiments("experiments:\n  - name: X\n"), ("experiments config", "invalid")),
    "experiments-one-arm": Fault(_experiments("experiments:\n  - name: X\n    arms: {C: random}\n"),
                                 ("experiments config", "invalid")),
    "experiments-arm-names": Fault(_experiments("experiments:\n  - name: X\n    arms: {A: random, B: random}\n"),
                                   ("experiments config", "invalid")),
    "experiments-shares-sum": Fault(
        _experiments("experiments:\n  - name: X\n    arms: {C: random, T1: random}\n    shares: {C: 0.9, T1: 0.3}\n"),
        ("experiments config", "invalid")),
    "experiments-duplicate-name": Fault(
        _experiments("experiments:\n  - name: X\n    arms: {C: random, T1: random}\n"
                     "  - name: X\n    arms: {C: random, T1: random}\n"),
        ("experiments config", "invalid")),
    "experiments-unknown-key": Fault(_experiments("experiment:\n  - name: X\n    arms: {C: random, T1: random}\n"),
                                     ("experiments config", "invalid")),
    "experiments-is-a-directory": Fault(_experiments_is_dir, ("experiments config",)),
    "redis-unresolvable-host": Fault(_redis("redis://no-such-host.invalid:6379/0"), ("Redis",)),
    "redis-port-never-answers": Fault(_redis("redis://127.0.0.1:{silent}/0"), ("Redis",)),
    "redis-port-speaks-http": Fault(_redis("redis://127.0.0.1:{http}/0"), ("Redis",)),
    "redis-database-out-of-range": Fault(_redis("redis://127.0.0.1:{redis}/99999"), ("Redis",)),
    "redis-unix-socket-missing": Fault(_redis("unix:///nonexistent/botify/redis.sock"), ("Redis",)),
    "redis-url-garbage": Fault(_redis("not a url at all"), ("Redis",)),
    "config-file-missing": Fault(_config_file(None), ("config",)),
    "config-file-unknown-setting": Fault(_config_file("log_dirr: /tmp/x\n"), ("log_dirr",)),
    "config-file-not-a-mapping": Fault(_config_file("- a\n- b\n"), ("config",)),
}


def _run_fault(name: str, tmp: Path, catalog: Path, redis_process: Any, ports: dict[str, int]) -> tuple[int, str, Path]:
    kw: dict[str, Any] = {
        "catalog": catalog, "log_dir": tmp / "logs", "run_dir": tmp / "run",
        "redis_url": redis_process.url, "namespace": "relfaults",
        "experiments": write_experiments(tmp / "ok-experiments.yml"),
        "_ports": ports,
    }
    FAULTS[name].setup(tmp, kw)
    kw.pop("_ports", None)
    svc = start_service(wait=False, **kw)
    try:
        code = svc.proc.wait(timeout=90)
    finally:
        svc.stop()
    return code, svc.output(), tmp


@pytest.fixture(scope="module")
def outcomes(
    tmp_path_factory: pytest.TempPathFactory, catalog: Path, redis_process: Any, silent_port: int, http_port: int
) -> dict[str, tuple[int, str, Path]]:
    """Every fault started at once (a few processes at a time): the module takes seconds, not a minute."""
    ports = {"silent": silent_port, "http": http_port, "redis": redis_process.port}
    names = [n for n in FAULTS if not (n == "log-dir-read-only" and os.geteuid() == 0)]
    with ThreadPoolExecutor(max_workers=6) as pool:
        futures = {n: pool.submit(_run_fault, n, tmp_path_factory.mktemp(n), catalog, redis_process, ports)
                   for n in names}
        return {n: f.result() for n, f in futures.items()}


@pytest.mark.parametrize("name", list(FAULTS))
def test_startup_fault_is_one_clear_line_and_a_nonzero_exit(name: str, outcomes: dict[str, tuple[int, str, Path]]) -> None:
    if name not in outcomes:
        pytest.skip("root writes into a 0555 directory; the read-only filesystem case covers it")
    code, out, tmp = outcomes[name]
    assert code != 0, out[-3000:]
    assert "Traceback" not in out, out[-5000:]
    errors = [line for line in out.splitlines() if line.startswith("botify: ")]
    assert len(errors) == 1, out[-3000:]
    for needle in FAULTS[name].needles:
        assert needle in errors[0], errors[0]
    assert len(errors[0]) < 400, errors[0]
    # nothing was started on the way out: no embedded Redis left behind
    assert not (tmp / "run" / "redis.url").exists()
