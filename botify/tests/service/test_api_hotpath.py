"""The /next and /last hot path reads the body straight from wsgi.input: same answers."""

from __future__ import annotations

import io
import json
import sys
from typing import Any

from botify_svc_helpers import read_lines


def _call(app: Any, path: str, body: bytes, length: bool = True) -> tuple[str, dict[str, str], bytes]:
    env: dict[str, Any] = {
        "REQUEST_METHOD": "POST", "PATH_INFO": path, "SERVER_NAME": "t", "SERVER_PORT": "80",
        "wsgi.url_scheme": "http", "CONTENT_TYPE": "application/json", "wsgi.input": io.BytesIO(body),
        "SERVER_PROTOCOL": "HTTP/1.1", "wsgi.errors": sys.stderr,
    }
    if length:
        env["CONTENT_LENGTH"] = str(len(body))
    else:  # chunked: the server says the stream ends by itself
        env["wsgi.input_terminated"] = True
    out: dict[str, Any] = {}

    def start_response(status: str, headers: list[tuple[str, str]]) -> None:
        out["status"], out["headers"] = status, dict(headers)

    data = b"".join(app(env, start_response))
    return out["status"], out["headers"], data


def test_next_and_last_with_and_without_content_length(app) -> None:  # type: ignore[no-untyped-def]
    for length in (True, False):
        status, headers, data = _call(app, "/next/7", b'{"track": 3, "time": 0.5}', length)
        assert status.startswith("200") and headers["Content-Type"] == "application/json"
        assert json.loads(data)["user"] == 7
        status, _, data = _call(app, "/last/7", b'{"track": 3, "time": 1}', length)
        assert status.startswith("200") and json.loads(data) == {"user": 7}


def test_oversized_body_with_length_is_413_and_logged_truncated(app, settings) -> None:  # type: ignore[no-untyped-def]
    body = json.dumps({"track": 1, "time": 0.5, "pad": "x" * 5000}).encode()
    status, _, data = _call(app, "/next/1", body)
    assert status.startswith("413") and json.loads(data)["error"] == "payload_too_large"
    app.extensions["botify"].eventlog.flush()
    rejected = read_lines(settings.log_dir, "rejected")
    assert rejected[-1]["status"] == 413 and rejected[-1]["body"] == body[:512].decode()
    assert read_lines(settings.log_dir, "events") == []


def test_rejected_body_logged_from_the_fast_path(app, settings) -> None:  # type: ignore[no-untyped-def]
    status, _, _ = _call(app, "/last/2", b'{"track": "x", "time": 0.5}')
    assert status.startswith("400")
    app.extensions["botify"].eventlog.flush()
    rejected = read_lines(settings.log_dir, "rejected")
    assert rejected[-1]["body"] == '{"track": "x", "time": 0.5}' and rejected[-1]["latency"] >= 0


def test_a_warm_next_costs_redis_only_the_state_commands(make_app, settings, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """With the table rows cached, /next sends Redis the state pipeline and nothing else.

    A Lua script, a table read or a pointer refresh per request would each show up here
    (they cost 40-120 us of server CPU per request on the benchmark machine).
    """
    import time

    import redis
    from botify_svc_helpers import write_yaml

    from botify import store

    write_yaml(settings.experiments_file, "experiments:\n  - name: I2I\n    arms: {C: i2i, T1: i2i}\n")
    table = tmp_path / "i2i.jsonl"
    table.write_text("".join(json.dumps({"item_id": i, "recommendations": [(i + k) % 60 for k in range(1, 9)]}) + "\n"
                             for i in range(60)))
    rd = store.connect(settings.redis_url)
    store.load_catalog(rd, settings.catalog, "t")
    store.switch_table(rd, "i2i", store.load_table(rd, "i2i", table, "t"), "t")
    app = make_app(reload_interval=3600.0)  # no pointer refresh during the measured requests
    c = app.test_client()
    assert c.post("/next/1", json={"track": 0, "time": 1.0}).status_code == 200
    tables = app.extensions["botify"].tables
    deadline = time.monotonic() + 10
    while len(tables.cache) < 60 and time.monotonic() < deadline:  # the background warm-up
        time.sleep(0.02)
    assert len(tables.cache) == 60
    admin = redis.Redis.from_url(settings.redis_url)
    admin.config_resetstat()
    n = 25
    for i in range(n):
        r = c.post(f"/next/{100 + i % 5}", json={"track": i % 60, "time": 0.5})
        assert r.status_code == 200
    stats = admin.info("commandstats")
    calls = {k.removeprefix("cmdstat_"): v["calls"] for k, v in stats.items()}
    calls.pop("info", None)
    calls.pop("config|resetstat", None)
    # + INCR/EXPIRE of the user's event counter: the `seq` field that orders a user's events
    assert calls == {"lpush": n, "ltrim": n, "expire": 3 * n, "sadd": n, "lrange": n, "smembers": n,
                     "incr": n}, calls  # fmt: skip
