"""The event log loses, duplicates and tears nothing: rotation, threads, fork, SIGTERM."""

from __future__ import annotations

import json
import multiprocessing
import os
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

from botify.service.eventlog import EventLog
from botify_svc_helpers import read_lines


def _event(i: int, pad: int = 40) -> dict:
    return {"message": "next", "timestamp": 1, "user": i % 97, "track": i, "time": 0.5, "latency": 0.001,
            "recommendation": i + 1, "experiments": {"A": "C"}, "pad": "x" * (i % pad)}


def test_rotation_under_concurrent_writers_keeps_every_line_once(tmp_path: Path) -> None:
    log = EventLog(tmp_path, max_bytes=4096)
    n_threads, per_thread = 8, 1500

    def work(k: int) -> None:
        for j in range(per_thread):
            log.event(_event(k * per_thread + j))

    threads = [threading.Thread(target=work, args=(k,)) for k in range(n_threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    log.close()
    files = sorted(log.directory.glob("events-*.jsonl"))
    assert len(files) > 20  # rotated many times
    assert [f.name for f in files] == [f"events-{i:06d}.jsonl" for i in range(1, len(files) + 1)]
    for f in files:
        assert f.stat().st_size <= 4096
        assert f.read_bytes().endswith(b"\n")
    ids = [e["track"] for e in read_lines(tmp_path)]
    assert len(ids) == n_threads * per_thread
    assert sorted(ids) == list(range(n_threads * per_thread))
    assert log.lines_written() == n_threads * per_thread


def test_directory_layout_and_pandas_loads_it(tmp_path: Path) -> None:
    import socket

    log = EventLog(tmp_path, max_bytes=2048)
    for i in range(100):
        log.event(_event(i))
    log.rejected({"message": "rejected", "status": 400})
    log.close()
    host, pid, start = log.directory.name.rsplit("-", 2)
    assert host == socket.gethostname() and int(pid) == os.getpid() and int(start) > 0
    assert (log.directory / "rejected-000001.jsonl").exists()
    try:
        import pandas as pd
    except ImportError:
        return
    frames = [pd.read_json(p, lines=True) for p in sorted(tmp_path.glob("**/events-*.jsonl"))]
    assert sum(len(f) for f in frames) == 100


def _child_logs(log: EventLog, n: int) -> None:
    for i in range(n):
        log.event(_event(10_000 + i))
    # no explicit close: the multiprocessing finalizer must flush (the child ends with os._exit)


def test_fork_child_gets_its_own_directory_and_flushes_at_exit(tmp_path: Path) -> None:
    log = EventLog(tmp_path, max_bytes=10_000)
    log.event(_event(1))
    log.flush()
    ctx = multiprocessing.get_context("fork")
    p = ctx.Process(target=_child_logs, args=(log, 3000))
    p.start()
    p.join(30)
    assert p.exitcode == 0
    log.close()
    dirs = sorted(d.name for d in tmp_path.iterdir())
    assert len(dirs) == 2
    assert len(read_lines(tmp_path)) == 3001


def test_sigterm_flushes_everything_enqueued(tmp_path: Path) -> None:
    script = textwrap.dedent(
        f"""
        import os, signal, sys
        from botify.service.eventlog import EventLog, install_signal_handlers
        log = EventLog({str(tmp_path)!r}, max_bytes=5000)
        assert install_signal_handlers()
        for i in range(20000):
            log.event({{"message": "next", "i": i}})
        os.kill(os.getpid(), signal.SIGTERM)
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert proc.returncode == -15, proc.stderr  # died of SIGTERM, after flushing
    lines = read_lines(tmp_path)
    assert sorted(x["i"] for x in lines) == list(range(20000))


def test_unserialisable_record_does_not_kill_the_writer(tmp_path: Path) -> None:
    log = EventLog(tmp_path)
    log.event({"bad": object()})
    log.event({"ok": 1})
    log.close()
    assert read_lines(tmp_path) == [{"ok": 1}] and log.errors == 1
    assert json.dumps(read_lines(tmp_path))
