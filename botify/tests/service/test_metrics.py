"""/metrics: prometheus_client counters summed over processes, monotonic across worker deaths."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from botify.service.metrics import FAMILIES, Metrics

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "tests"))
from helpers_service import (
    children_of,
    http_get,
    http_post_json,
    start_service,
    write_catalog,
    write_experiments,
)

NEXT_200 = 'botify_http_requests_total{endpoint="/next",method="POST",status="200"}'


def _value(text: str, prefix: str) -> float:
    for line in text.splitlines():
        if line.startswith(prefix + " "):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{prefix} not in\n{text}")


def _run_process(directory: Path, code: str) -> str:
    """Run `code` in a fresh interpreter in multiprocess mode on `directory`; its stdout."""
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(directory)}
    out = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], env=env, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    return out.stdout


WORKER = """
    import sys
    from botify.service.metrics import Metrics
    m = Metrics()
    for _ in range(int(sys.argv[1]) if len(sys.argv) > 1 else {n}):
        m.inc("botify_http_requests_total", ("/next", "POST", "200"))
        m.observe("botify_http_request_duration_seconds", ("/next",), 0.0003)
"""

RENDER = """
    import sys
    from botify.service.metrics import Metrics
    sys.stdout.write(Metrics().render().decode())
"""


def test_processes_are_summed_and_a_dead_one_still_counts(tmp_path: Path) -> None:
    _run_process(tmp_path, WORKER.format(n=3))  # a worker that counted, then exited
    _run_process(tmp_path, WORKER.format(n=5))
    text = _run_process(tmp_path, RENDER)
    assert _value(text, NEXT_200) == 8
    assert _value(text, 'botify_http_request_duration_seconds_count{endpoint="/next"}') == 8
    assert _value(text, 'botify_http_request_duration_seconds_bucket{endpoint="/next",le="0.0005"}') == 8
    assert _value(text, 'botify_http_request_duration_seconds_bucket{endpoint="/next",le="0.00025"}') == 0
    # the dead workers' bookkeeping drops nothing a counter needs
    pids = {int(f.stem.rsplit("_", 1)[1]) for f in tmp_path.glob("counter_*.db")}
    assert len(pids) == 2
    env_code = "from botify.service.metrics import mark_process_dead\n" + "".join(
        f"mark_process_dead({p})\n" for p in pids
    )
    _run_process(tmp_path, env_code)
    assert _value(_run_process(tmp_path, RENDER), NEXT_200) == 8


def test_every_family_is_exported_with_its_type(tmp_path: Path) -> None:
    m = Metrics()
    text = m.render().decode()
    for name, (kind, _help, _labels) in FAMILIES.items():
        assert f"# TYPE {name} {kind}" in text, name


def test_in_process_registries_are_independent() -> None:
    a, b = Metrics(), Metrics()
    a.inc("botify_fallbacks_total", ("top_pop", "empty", "EXP", "T1"))
    a.inc("botify_fallbacks_total", ("top_pop", "empty", "EXP", "T1"), 2)
    text_a, text_b = a.render().decode(), b.render().decode()
    assert _value(
        text_a, 'botify_fallbacks_total{arm="T1",experiment="EXP",reason="empty",recommender="top_pop"}'
    ) == 3
    assert 'recommender="top_pop"' not in text_b


def test_eventlog_writer_errors_are_exported(client) -> None:  # type: ignore[no-untyped-def]
    service = client.application.extensions["botify"]
    service.eventlog.event({"message": "next", "bad": object()})  # orjson cannot write it
    assert service.eventlog.flush(10)
    text = client.get("/metrics").get_data(as_text=True)
    assert _value(text, 'botify_eventlog_errors_total{reason="not_serialisable",stream="events"}') == 1


@pytest.mark.timeout(120)
def test_counters_never_go_backwards_across_scrapes_and_replaced_workers(tmp_path: Path, redis_url: str) -> None:
    """A real server, 2 workers: scrapes a moment apart, and workers replaced by SIGHUP."""
    catalog = write_catalog(tmp_path / "catalog.jsonl", 200)
    experiments = write_experiments(tmp_path / "experiments.yml", {"C": "random", "T1": "random"})
    run_dir = tmp_path / "run"
    svc = start_service(catalog=catalog, log_dir=tmp_path / "logs", experiments=experiments,
                        redis_url=redis_url, workers=2, run_dir=run_dir)
    seen: list[float] = []

    def scrape() -> float:
        status, body = http_get(f"{svc.url}/metrics", timeout=5)
        assert status == 200
        value = _value(body.decode(), NEXT_200)
        seen.append(value)
        return value

    try:
        sent = 0
        for u in range(40):
            assert http_post_json(f"{svc.url}/next/{u}", {"track": 1, "time": 0.5})[0] == 200
            sent += 1
            scrape()  # keep-alive-less scrapes land on either worker
        assert seen[-1] == sent  # every request counted at once, whichever worker answers
        before = set(children_of(svc.proc.pid))
        svc.proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 40
        while time.monotonic() < deadline:
            if http_post_json(f"{svc.url}/next/{sent}", {"track": 1, "time": 0.5})[0] == 200:
                sent += 1
            scrape()
            now = set(children_of(svc.proc.pid))
            if not before & now and len(now) == 2:
                break
            time.sleep(0.01)
        assert not before & set(children_of(svc.proc.pid)), "workers were not replaced"
        for _ in range(20):
            scrape()
        assert seen[-1] == sent, (seen[-1], sent)  # the old workers' counts are kept
        assert all(b >= a for a, b in zip(seen, seen[1:], strict=False)), seen
        assert len(list((run_dir / "metrics").glob("server-*"))) == 1
    finally:
        code = svc.stop(signal.SIGTERM)
    assert code == 0, svc.output()[-2000:]
    assert not list((run_dir / "metrics").glob("server-*"))  # removed with its server
