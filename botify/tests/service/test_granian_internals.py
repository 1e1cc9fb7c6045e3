"""botify's hooks into granian's private internals, checked against the real objects of the pinned version.

granian has no public per-worker stop hook, so botify.service.server wraps three of its
internals (see its docstrings): the WSGI worker's `granian._signals.set_sync_signals`
(the drain), and the master's `_stop_workers` / `_respawn_workers` (SIGTERM repeated to
workers still starting; prometheus_client told about workers that ended). A granian
upgrade that renames or reshapes any of them fails here, not in production.
"""

from __future__ import annotations

import importlib.metadata
import inspect
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import tomllib
from pathlib import Path
from typing import Any

import pytest
from botify.service import server as serve
from botify.store.settings import Settings

REPO = Path(__file__).resolve().parents[3]


def test_granian_is_pinned_to_the_installed_version() -> None:
    deps = tomllib.loads((REPO / "botify" / "pyproject.toml").read_text())["project"]["dependencies"]
    pins = [d for d in deps if d.replace(" ", "").lower().startswith("granian")]
    assert pins == [f"granian=={importlib.metadata.version('granian')}"], pins


def _server(tmp_path: Path) -> Any:
    settings = Settings(catalog=tmp_path / "c.jsonl", log_dir=tmp_path / "logs", run_dir=tmp_path / "run",
                        port=0, workers=1)
    return serve.build_granian_server(settings, serve.ServerOptions())


def test_the_master_internals_botify_wraps_exist_with_the_expected_shape(tmp_path: Path) -> None:
    from granian.server import Server
    from granian.server.mp import WorkerProcess

    server = _server(tmp_path)
    assert isinstance(server, Server)
    # both wrapped on the instance (a missing attribute would silently skip the wrap)
    assert {"_stop_workers", "_respawn_workers"} <= set(vars(server))
    assert list(inspect.signature(Server._stop_workers).parameters) == ["self"]
    assert list(inspect.signature(Server._respawn_workers).parameters)[:4] == [
        "self", "workers", "spawn_target", "target_loader",
    ]
    assert server.wrks == [] and server.interrupt_signal is False
    assert "self.inner = " in inspect.getsource(WorkerProcess._spawn)  # worker.inner: a Process (pid)


def _loses_first_sigterm(ready: Any) -> None:
    """A worker still starting: its first SIGTERM is lost, the second stops it."""
    seen: list[int] = []

    def handler(*_: Any) -> None:
        if seen:
            os._exit(0)
        seen.append(1)

    signal.signal(signal.SIGTERM, handler)
    ready.send(True)
    time.sleep(30)
    os._exit(5)


def test_master_repeats_sigterm_to_a_real_worker_that_lost_the_first_and_marks_it_dead(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import multiprocessing

    from botify.service import metrics
    from granian.server.mp import WorkerProcess

    dead: list[int] = []
    monkeypatch.setattr(metrics, "mark_process_dead", dead.append)
    server = _server(tmp_path)
    parent_end, child_end = multiprocessing.Pipe()
    worker = WorkerProcess(parent=server, idx=0, target=_loses_first_sigterm, args=(child_end,))
    worker.start()
    try:
        assert parent_end.poll(20) and parent_end.recv() is True
        server.wrks.append(worker)
        t0 = time.monotonic()
        server._stop_workers()  # granian's own: one SIGTERM, then join up to the 15 s kill timeout
        took = time.monotonic() - t0
        assert not worker.is_alive() and worker.inner.exitcode == 0
        assert took < 3, f"stop took {took:.1f} s (the repeat did not reach the worker)"
        assert dead == [worker.inner.pid]
        assert server.wrks == []
    finally:
        if worker.is_alive():
            worker.kill()
            worker.join()


DRAIN_PROBE = """
    import inspect, json, os, signal, sys, threading, time
    from types import SimpleNamespace
    from granian.server.mp import MPServer
    # granian's WSGI worker imports set_sync_signals at call time: a patch of the module counts
    assert "from granian._signals import set_sync_signals" in inspect.getsource(MPServer._spawn_wsgi_worker)
    from botify.service import server as serve
    events = []
    real_set = serve._set_with_deadline
    def recording_set(stop_event, grace, force_exit=os._exit):
        events.append(("stop", time.monotonic(), type(stop_event).__name__))
        real_set(stop_event, grace, lambda code: None)  # the real WorkerSignal.set(), no exit
    serve._set_with_deadline = recording_set
    service = SimpleNamespace(begin_drain=lambda: events.append(("drain", time.monotonic(), "")))
    serve._install_drain(SimpleNamespace(extensions={"botify": service}), 0.3, 0)
    from granian._signals import set_sync_signals  # exactly what granian's worker does
    from granian._granian import WorkerSignal
    ev = set_sync_signals()
    assert isinstance(ev, WorkerSignal), type(ev)
    assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    t0 = time.monotonic()
    os.kill(os.getpid(), signal.SIGTERM)
    os.kill(os.getpid(), signal.SIGTERM)  # a repeat from the master is ignored
    deadline = time.monotonic() + 5
    while len(events) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    print(json.dumps([(kind, round(t - t0, 3), name) for kind, t, name in events]))
"""


def test_worker_drain_hooks_into_the_real_granian_signal_setup() -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO / "botify" / "src"),
                                                                      os.environ.get("PYTHONPATH", "")]))}
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(DRAIN_PROBE)], env=env,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    events = json.loads(out.stdout.strip().splitlines()[-1])
    assert [e[0] for e in events] == ["drain", "stop"], events
    assert events[0][1] < 0.2  # the drain starts at once
    assert events[1][1] >= 0.3 and events[1][2] == "WorkerSignal"  # granian's own event, after the drain
