"""Metrics add up across the worker processes of one server (same parent pid)."""

from __future__ import annotations

import multiprocessing
import os
import re
from pathlib import Path

from botify.service.metrics import Metrics


def _worker(directory: str, n: int) -> None:
    m = Metrics(Path(directory))
    for _ in range(n):
        m.inc("botify_http_requests_total", ("/next", "POST", "200"))
        m.observe("botify_http_request_duration_seconds", ("/next",), 0.0003)
    m.write_snapshot()


def _value(text: str, prefix: str) -> float:
    for line in text.splitlines():
        if line.startswith(prefix):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(prefix)


def test_render_sums_sibling_processes_and_ignores_other_servers(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_worker, args=(str(tmp_path), n)) for n in (3, 5)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(20)
        assert p.exitcode == 0
    # a stale snapshot of another server (other parent pid) must not count
    (tmp_path / "999999999-1.json").write_text('{"counters": {"botify_http_requests_total": [[["/next", "POST", "200"], 1000]]}}')
    # the children's parent is this process; render as a sibling of them
    me = Metrics(tmp_path)
    me.inc("botify_http_requests_total", ("/next", "POST", "200"))
    # siblings share os.getppid() with us only if we are their sibling: emulate the server view
    files = sorted(p.name for p in tmp_path.glob(f"{os.getpid()}-*.json"))
    assert len(files) == 2
    for f in files:  # rename the children's files as if their parent were ours
        os.replace(tmp_path / f, tmp_path / f"{os.getppid()}-{f.split('-', 1)[1]}")
    text = me.render()
    assert _value(text, 'botify_http_requests_total{endpoint="/next",method="POST",status="200"}') == 9
    assert _value(text, 'botify_http_request_duration_seconds_count{endpoint="/next"}') == 8
    assert _value(text, 'botify_http_request_duration_seconds_bucket{endpoint="/next",le="0.0005"}') == 8
    assert _value(text, 'botify_http_request_duration_seconds_bucket{endpoint="/next",le="0.00025"}') == 0
    assert re.search(r"# TYPE botify_fallbacks_total counter", text)
