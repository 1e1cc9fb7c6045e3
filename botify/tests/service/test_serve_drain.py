"""Graceful drain on SIGTERM: keep-alive clients hammering one replica see no error.

Regression (reliability suite): granian's stop closed idle keep-alive connections at
once, so a request a client was just sending on one ended with "remote end closed
connection" (nginx: "upstream prematurely closed connection", a 502/503 to the user).
With the drain the worker answers `Connection: close` for BOTIFY_DRAIN_SECONDS first.
"""

from __future__ import annotations

import http.client
import json
import signal
import sys
import threading
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "tests"))
from helpers_service import start_service, write_catalog, write_experiments

N_CLIENTS = 12
NEW_CONNECTION_CUTS = {"ConnectionResetError", "BrokenPipeError", "RemoteDisconnected"}


@pytest.fixture(scope="module")
def catalog(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_catalog(tmp_path_factory.mktemp("drain") / "catalog.jsonl", 500)


class Client(threading.Thread):
    """POST /next in a loop on one keep-alive connection (http.client reconnects after
    a `Connection: close` answer); stops at the first connection refused."""

    def __init__(self, k: int, port: int, stop: threading.Event) -> None:
        super().__init__(daemon=True)
        self.k, self.port, self.stop_event = k, port, stop
        self.ok = 0
        self.closes = 0
        self.errors: list[str] = []

    def run(self) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        body = json.dumps({"track": 3, "time": 0.5})
        i = 0
        while not self.stop_event.is_set():
            fresh = conn.sock is None
            try:
                conn.request("POST", f"/next/{self.k * 100000 + i}", body=body,
                             headers={"Content-Type": "application/json"})
                resp = conn.getresponse()
                resp.read()
            except ConnectionRefusedError:
                return  # the replica is gone: the client (nginx) goes elsewhere; not an error
            except (OSError, http.client.HTTPException) as exc:
                self.errors.append(f"{type(exc).__name__}: {exc} ({'new' if fresh else 'reused'} connection)")
                conn.close()
                continue
            if resp.status == 200:
                self.ok += 1
            else:
                self.errors.append(f"HTTP {resp.status}")
            if resp.getheader("Connection", "").lower() == "close":
                self.closes += 1
            i += 1


def _hammer_and_stop(tmp_path: Path, catalog: Path, redis_url: str, drain: str) -> tuple[list[Client], int, str]:
    svc = start_service(catalog=catalog, log_dir=tmp_path / "logs", experiments=write_experiments(
        tmp_path / "exp.yml"), redis_url=redis_url, workers=1, extra_env={"BOTIFY_DRAIN_SECONDS": drain})
    stop = threading.Event()
    clients = [Client(k, svc.port, stop) for k in range(N_CLIENTS)]
    for c in clients:
        c.start()
    time.sleep(1.0)
    code = svc.stop(signal.SIGTERM)
    stop.set()
    for c in clients:
        c.join(10)
    return clients, code, svc.output()


def test_sigterm_under_keepalive_load_gives_no_client_error(tmp_path: Path, catalog: Path, redis_url: str) -> None:
    clients, code, out = _hammer_and_stop(tmp_path, catalog, redis_url, "1.0")
    assert code == 0, out
    errors = [e for c in clients for e in c.errors]
    assert sum(c.ok for c in clients) > 50
    # The bug: a request on a kept-alive connection cut by the stop. Never again.
    assert not [e for e in errors if "reused" in e or "HTTP" in e], errors
    # Left (rare, documented in docs/service.md): a connection opened in the last
    # millisecond before the socket is shut may be reset before any answer, which a
    # client sees like a refused connect. Nothing else.
    assert all(e.split(":")[0] in NEW_CONNECTION_CUTS and "new connection" in e for e in errors), errors
    # every client was told to close (the drain reached each busy connection)
    assert all(c.closes >= 1 for c in clients), [c.closes for c in clients]
    assert "draining for 1.00 s" in out
    assert "refused to gracefully stop" not in out


@pytest.mark.parametrize("drain", ["1.0", "0"])
def test_ctrl_c_to_the_process_group_stops_promptly_and_loses_nothing(
    tmp_path: Path, catalog: Path, redis_url: str, drain: str
) -> None:
    """Ctrl-C in a terminal: SIGINT reaches the master AND every worker. Workers used to
    act on it themselves and hang until the master's SIGKILL 15 s later (events in
    their queue lost); now they leave it to the master, which stops them with SIGTERM."""
    import os

    svc = start_service(catalog=catalog, log_dir=tmp_path / "logs", experiments=write_experiments(
        tmp_path / "exp.yml"), redis_url=redis_url, workers=2,
        extra_env={"BOTIFY_DRAIN_SECONDS": drain})
    stop = threading.Event()
    clients = [Client(k, svc.port, stop) for k in range(4)]
    for c in clients:
        c.start()
    time.sleep(1.0)
    t0 = time.monotonic()
    os.killpg(os.getpgid(svc.proc.pid), signal.SIGINT)  # what the terminal does
    code = svc.proc.wait(timeout=30)
    took = time.monotonic() - t0
    stop.set()
    for c in clients:
        c.join(10)
    out = svc.output()
    assert "refused to gracefully stop" not in out, out
    assert took < 8, f"stop took {took:.1f} s"
    assert code == 0, out
    lines = [json.loads(x) for f in (tmp_path / "logs").rglob("events-*.jsonl")
             for x in f.read_text().splitlines()]
    assert len(lines) >= sum(c.ok for c in clients) > 20


def test_draining_app_is_unready_and_closes_connections(app) -> None:  # type: ignore[no-untyped-def]
    client = app.test_client()
    r = client.post("/next/1", json={"track": 3, "time": 0.5})
    assert r.status_code == 200 and r.headers.get("Connection") != "close"
    assert client.get("/health").status_code == 200
    app.extensions["botify"].begin_drain()
    h = client.get("/health")
    assert h.status_code == 503 and h.json["status"] == "draining" and h.headers["Connection"] == "close"
    r = client.post("/next/1", json={"track": 3, "time": 0.5})  # still served while draining
    assert r.status_code == 200 and r.headers["Connection"] == "close"


@pytest.mark.parametrize(("raw", "expected"), [("", 1.0), ("0", 0.0), ("2.5", 2.5)])
def test_drain_seconds_from_env(raw: str, expected: float) -> None:
    from botify.service.server import drain_seconds_from_env

    assert drain_seconds_from_env({"BOTIFY_DRAIN_SECONDS": raw}) == expected


@pytest.mark.parametrize("raw", ["x", "-1", "11", "nan"])
def test_bad_drain_seconds_is_a_startup_error(raw: str) -> None:
    from botify.service.server import StartupError, drain_seconds_from_env

    with pytest.raises(StartupError, match="BOTIFY_DRAIN_SECONDS"):
        drain_seconds_from_env({"BOTIFY_DRAIN_SECONDS": raw})


def test_a_stop_granian_never_acts_on_still_ends_the_worker_with_its_log_flushed(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """granian sometimes ignores (or blocks on) its stop event: the deadline ends the worker anyway."""
    from botify.service import eventlog
    from botify.service import server as serve

    order: list[str] = []
    exited = threading.Event()

    class StuckEvent:  # what granian's WorkerSignal.set() sometimes amounts to
        def set(self) -> None:
            order.append("set")
            threading.Event().wait()  # never returns

    monkeypatch.setattr(eventlog, "close_all", lambda timeout=10.0: order.append("flush"))

    def fake_exit(code: int) -> None:
        order.append(f"exit {code}")
        exited.set()

    t0 = time.monotonic()
    threading.Thread(target=serve._set_with_deadline, args=(StuckEvent(), 0.3, fake_exit), daemon=True).start()
    assert exited.wait(5)
    assert 0.25 < time.monotonic() - t0 < 3
    assert order == ["set", "flush", "exit 0"]  # the stop was asked at once; the log flushed before the exit


def test_stop_deadlines_fit_inside_the_masters_kill_timeout() -> None:
    from botify.service import server as serve

    assert serve.MAX_DRAIN_SECONDS + serve.STOP_GRACE < serve.WORKER_KILL_TIMEOUT
