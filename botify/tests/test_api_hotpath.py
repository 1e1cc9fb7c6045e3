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
