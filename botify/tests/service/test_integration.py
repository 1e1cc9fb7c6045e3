"""Integration against real redis-server processes: Redis outage, several worker processes."""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import socket
import threading
import time
import urllib.error
import urllib.request

import pytest
from botify.service.eventlog import flush_all
from botify_svc_helpers import read_lines


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def own_redis(redis_factory):  # type: ignore[no-untyped-def]
    """A redis-server of this test alone (same class as the shared fixture's, another port):
    stopping it must not break the shared one."""
    with redis_factory(prefix="botify-own-redis-") as server:
        yield server


def test_redis_down_mid_run_falls_back_reports_and_recovers(make_app, settings, own_redis) -> None:  # type: ignore[no-untyped-def]
    app = make_app(redis_url=own_redis.url, redis_retry_interval=0.2)
    c = app.test_client()
    assert c.post("/next/1", json={"track": 1, "time": 0.5}).status_code == 200
    own_redis.stop()
    t0 = time.perf_counter()
    answers = [c.post("/next/1", json={"track": 1, "time": 0.5}) for _ in range(50)]
    elapsed = time.perf_counter() - t0
    assert all(a.status_code == 200 and 0 <= a.json["track"] < 60 and a.json["track"] != 1 for a in answers)
    assert elapsed < 5  # no request hangs on the dead Redis
    assert c.post("/last/1", json={"track": 2, "time": 0.5}).status_code == 200
    h = c.get("/health")
    assert h.status_code == 503 and h.json["status"] == "unavailable" and h.json["error"] == "unavailable"
    assert c.get("/track/3").status_code == 503
    # Redis comes back (empty: no persistence); the service recovers by itself and reloads the catalog
    own_redis.start()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        c.post("/next/2", json={"track": 3, "time": 0.5})
        if c.get("/health").status_code == 200:
            break
        time.sleep(0.1)
    assert c.get("/health").status_code == 200
    assert c.get("/track/3").json["track"] == 3
    assert c.post("/next/2", json={"track": 3, "time": 0.5}).status_code == 200
    flush_all()
    events = read_lines(settings.log_dir)
    down = events[1:52]
    assert all(e["fallback"] == "redis_unavailable" for e in down)
    assert all(e["recommender"] == "random" for e in down if e["message"] == "next")
    assert events[-1]["fallback"] is None
    text = c.get("/metrics").get_data(as_text=True)
    assert 'botify_fallbacks_total{recommender="random",reason="redis_unavailable"}' in text or \
        'reason="redis_unavailable"' in text


def test_service_starts_while_redis_is_down(make_app, own_redis) -> None:  # type: ignore[no-untyped-def]
    own_redis.stop()
    c = make_app(redis_url=own_redis.url, redis_retry_interval=0.1).test_client()
    assert c.post("/next/1", json={"track": 1, "time": 0.5}).status_code == 200
    assert c.get("/health").status_code == 503
    own_redis.start()
    deadline = time.monotonic() + 10
    while c.get("/health").status_code != 200 and time.monotonic() < deadline:
        c.post("/next/1", json={"track": 1, "time": 0.5})
        time.sleep(0.1)
    assert c.get("/health").status_code == 200


# ---------------------------------------------------------------- several worker processes


def _serve(app, port: int) -> None:  # type: ignore[no-untyped-def]
    from werkzeug.serving import make_server

    make_server("127.0.0.1", port, app, threaded=True).serve_forever()


def _post(url: str, body: bytes) -> int:
    req = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"}, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            resp.read()
            return resp.status
    except urllib.error.HTTPError as exc:
        exc.read()
        return exc.code


def _wait_up(port: int) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health/live", timeout=1):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"worker on {port} did not come up")


@pytest.mark.slow
def test_log_completeness_with_several_workers_under_load(make_app, settings) -> None:  # type: ignore[no-untyped-def]
    """N accepted requests over 3 forked worker processes -> exactly N valid event lines.

    The app is built before the fork (like a preloading server), logs rotate
    (small max size), and workers are stopped with SIGTERM.
    """
    app = make_app(log_max_bytes=8192)
    ctx = multiprocessing.get_context("fork")
    ports = [free_port() for _ in range(3)]
    procs = [ctx.Process(target=_serve, args=(app, p), daemon=True) for p in ports]
    for p in procs:
        p.start()
    try:
        for port in ports:
            _wait_up(port)
        accepted = [0] * 8
        rejected = [0] * 8

        def client(k: int) -> None:
            for j in range(150):
                port = ports[(k + j) % len(ports)]
                user = k * 1000 + j % 7
                if j % 10 == 9:
                    body = b'{"track": null, "time": 0.5}'
                else:
                    body = json.dumps({"track": (k + j) % 60, "time": (j % 11) / 10}).encode()
                endpoint = "last" if j % 13 == 12 else "next"
                status = _post(f"http://127.0.0.1:{port}/{endpoint}/{user}", body)
                if status == 200:
                    accepted[k] += 1
                elif status == 400:
                    rejected[k] += 1

        threads = [threading.Thread(target=client, args=(k,)) for k in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        for p in procs:
            if p.pid is not None and p.is_alive():
                os.kill(p.pid, signal.SIGTERM)
        for p in procs:
            p.join(15)
    assert sum(accepted) + sum(rejected) == 8 * 150
    events = read_lines(settings.log_dir)  # json.loads of every line: a torn line fails here
    assert len(events) == sum(accepted)
    assert len(read_lines(settings.log_dir, "rejected")) == sum(rejected)
    worker_dirs = {p.parent for p in settings.log_dir.rglob("events-*.jsonl")}
    assert len(worker_dirs) == 3  # one directory per worker process
    assert max(int(p.stem.split("-")[1]) for p in settings.log_dir.rglob("events-*.jsonl")) > 1  # rotated


def test_breaker_opens_only_after_consecutive_failures(make_app, own_redis) -> None:  # type: ignore[no-untyped-def]
    app = make_app(redis_url=own_redis.url, redis_retry_interval=30.0)
    service = app.extensions["botify"]
    c = app.test_client()
    own_redis.stop()
    c.post("/next/1", json={"track": 1, "time": 0.5})
    assert service.redis_available()  # one failure: the next request still tries Redis
    c.post("/next/1", json={"track": 1, "time": 0.5})
    c.post("/next/1", json={"track": 1, "time": 0.5})
    assert not service.redis_available()  # three in a row: skip Redis for redis_retry_interval
    own_redis.start()
    assert c.get("/health").status_code in (200, 503)  # /health always probes, and closes the breaker
    assert service.redis_available()
