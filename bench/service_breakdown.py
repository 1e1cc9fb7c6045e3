"""Where /next's CPU goes, in-process: bare Flask vs Flask-RESTful vs botify, per request.

    .venv/bin/python bench/service_breakdown.py

Calls each WSGI app directly (no server, no network) and reports the calling thread's
CPU time per request (median of 5 interleaved rounds of 3,000): a bare Flask POST view
returning a constant, the same as a Flask-RESTful Resource, botify's GET / (its request
hooks and a tiny view), and botify's POST /next served by i2i (embedded Redis, 50k-track
catalog and i2i table loaded). CPU time, unlike wall time, hardly moves with other load
on the machine, so the differences between rows are what the hot path costs.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import redis
from flask import Flask
from flask_restful import Api, Resource

sys.path.insert(0, str(Path(__file__).resolve().parent))
from botify.service.app import create_app
from botify.service.embedded_redis import EmbeddedRedis
from botify.store.settings import Settings
from service_bench import write_inputs

from botify import store

ROUNDS, N = 5, 3000


def environ(path: str, method: str = "POST", track: int = 0) -> dict[str, Any]:
    body = json.dumps({"track": track, "time": 0.5}).encode()
    return {"REQUEST_METHOD": method, "PATH_INFO": path, "SERVER_NAME": "bench", "SERVER_PORT": "80",
            "wsgi.url_scheme": "http", "CONTENT_TYPE": "application/json", "CONTENT_LENGTH": str(len(body)),
            "wsgi.input": io.BytesIO(body), "SERVER_PROTOCOL": "HTTP/1.1", "wsgi.errors": sys.stderr}


def call(app: Any, env: dict[str, Any]) -> None:
    status: list[str] = []
    b"".join(app(env, lambda s, h: status.append(s)))
    if not status[0].startswith("200"):
        raise RuntimeError(f"{env['PATH_INFO']}: {status[0]}")


def bare_flask() -> Flask:
    app = Flask("bare")

    @app.post("/next/<int:user>")
    def view(user: int) -> dict[str, int]:
        return {"user": user, "track": 1}

    return app


def restful() -> Flask:
    app = Flask("restful")

    class Next(Resource):
        def post(self, user: int) -> dict[str, int]:
            return {"user": user, "track": 1}

    Api(app).add_resource(Next, "/next/<int:user>")
    return app


def main() -> int:
    d = Path(tempfile.mkdtemp(prefix="botify-breakdown-"))
    server = EmbeddedRedis(d / "run", persist=False)
    try:
        catalog, table, experiments = write_inputs(d, 50_000, 50, 1)
        url = server.start()
        r = redis.Redis.from_url(url)
        store.load_catalog(r, catalog, "botify")
        store.switch_table(r, "i2i", store.load_table(r, "i2i", table, "botify"), "botify")
        settings = Settings.load(env={}).with_overrides(
            redis_url=url, catalog=catalog, experiments_file=experiments, log_dir=d / "logs", run_dir=d / "srv")
        botify, bare, rest = create_app(settings), bare_flask(), restful()
        rng = np.random.default_rng(1)
        cases: dict[str, Callable[[int], None]] = {
            "bare Flask POST view, constant": lambda i: call(bare, environ(f"/next/{i % 10000}")),
            "Flask-RESTful Resource POST, constant": lambda i: call(rest, environ(f"/next/{i % 10000}")),
            "botify GET / (request hooks + tiny view)": lambda i: call(botify, environ("/", "GET")),
            "botify POST /next (i2i)": lambda i: call(botify, environ(
                f"/next/{int(rng.integers(0, 10000))}", track=int(rng.integers(0, 50000)))),
        }
        for f in cases.values():
            for i in range(300):
                f(i)
        res: dict[str, list[float]] = {k: [] for k in cases}
        for _ in range(ROUNDS):
            for k, f in cases.items():
                c0 = time.thread_time()
                for i in range(N):
                    f(i)
                res[k].append(1e6 * (time.thread_time() - c0) / N)
        print(f"CPU time of the request thread per request, median of {ROUNDS} x {N} "
              f"(1-minute load average {os.getloadavg()[0]:.1f}):")
        for k, v in res.items():
            print(f"{sorted(v)[ROUNDS // 2]:7.0f} us  {k}")
    finally:
        server.stop()
        shutil.rmtree(d, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
