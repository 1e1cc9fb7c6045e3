"""Are botify's former overrides of Flask internals worth keeping? CPU per /next with and without each.

    .venv/bin/python bench/service_overrides.py            # ~2 min
    .venv/bin/python bench/service_overrides.py --rounds 9 --n 3000

Issue 10 keeps an override of a Flask internal only if it pays more than 5% of the
request. Each candidate is applied at run time to its own copy of the real app (same
process, same embedded Redis, 50k-track catalog and i2i table as
bench/service_breakdown.py) and the copies are called in interleaved rounds, so the
machine's drift hits all alike; reported is the request thread's CPU time per POST
/next (median of the rounds), which moves far less with other load than wall time:

- ordinary: the app as create_app builds it (plain Flask, the Api's JSON representation);
- memoised ensure_sync: Flask's per-request `inspect.iscoroutinefunction` check cached;
- no sessions: a session interface that hands back one null session without building it;
- hand-built /next answer: the view returns prebuilt bytes in a Response instead of a
  dict serialised by the Api's representation.

The whole-server view of the same question (wrk, interleaved): bench/service_ab.py.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import redis

sys.path.insert(0, str(Path(__file__).resolve().parent))
from botify.service import resources
from botify.service.app import create_app
from botify.service.embedded_redis import EmbeddedRedis
from botify.store.settings import Settings
from flask import Flask, Response
from flask.sessions import SessionInterface
from service_bench import write_inputs
from service_breakdown import call, environ

from botify import store


def memoise_ensure_sync(app: Flask) -> None:
    """The former BotifyFlask.ensure_sync: cache the answer per plain function."""
    sync: set[Any] = set()
    original = app.ensure_sync

    def ensure_sync(func: Any) -> Any:
        key = getattr(func, "__func__", func)
        if key in sync:
            return func
        wrapped = original(func)
        if wrapped is func:
            sync.add(key)
        return wrapped

    app.ensure_sync = ensure_sync  # type: ignore[method-assign]


class NoSessions(SessionInterface):
    """The former _NoSessions: one null session, never rebuilt."""

    null = None

    def open_session(self, app: Flask, request: Any) -> Any:
        if self.null is None:
            self.null = self.make_null_session(app)
        return self.null

    def save_session(self, app: Flask, session: Any, response: Any) -> None:
        return None


def hand_built_post(self: Any, user: str) -> Response:
    """The former Next.post: prebuilt bytes, explicit content type."""
    service = self.service
    env = resources.request.environ
    uid = resources.parse_user(user)
    track, time_ = resources.parse_listen(resources._read_body(env), service.catalog_size)
    rec, _event = service.next(uid, track, time_, env.get(resources.T0_KEY) or time.perf_counter())
    return Response(b'{"user":%d,"track":%d}' % (uid, rec), 200, content_type=resources.JSON)


def isolated_costs() -> dict[str, float]:
    """Each override's own work against Flask's, in microseconds per call (timeit, best of 7).

    Precise where the whole-request figures drown in the machine's noise: the saving of
    an override is at most the difference of its two rows, paid once per request
    (ensure_sync: once for the view and once per after_request hook).
    """
    import timeit

    from flask import request
    from flask_restful import Api

    def best(f: Callable[[], Any], n: int = 20000) -> float:
        return 1e6 * min(timeit.repeat(f, number=n, repeat=7)) / n

    app = Flask("isolated")
    api = Api(app)
    api.representation(resources.JSON)(resources.output_json)
    memo = Flask("memo")
    memoise_ensure_sync(memo)
    no_sessions = NoSessions()

    def view() -> None:
        return None

    out: dict[str, float] = {}
    with app.test_request_context("/next/1", method="POST", data=b'{"track":1,"time":0.5}',
                                  content_type=resources.JSON):
        out["answer: dict through the Api's JSON representation"] = best(
            lambda: api.make_response({"user": 17, "track": 1234}, 200))
        out["answer: hand-built bytes in a Response"] = best(
            lambda: Response(b'{"user":%d,"track":%d}' % (17, 1234), 200, content_type=resources.JSON))
        out["ensure_sync: Flask's"] = best(lambda: app.ensure_sync(view))
        out["ensure_sync: memoised"] = best(lambda: memo.ensure_sync(view))
        si = app.session_interface

        def flask_session() -> None:  # what Flask does per request without a secret key
            session = si.open_session(app, request)
            if session is None:
                session = si.make_null_session(app)
            si.save_session(app, session, Response())

        out["session: Flask's open (a new null session) + save"] = best(flask_session)
        out["session: null-session override open + save"] = best(
            lambda: no_sessions.save_session(app, no_sessions.open_session(app, request), Response()))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--n", type=int, default=2000, help="requests per case and round")
    args = ap.parse_args(argv)
    d = Path(tempfile.mkdtemp(prefix="botify-overrides-"))
    server = EmbeddedRedis(d / "run", persist=False)
    try:
        catalog, table, experiments = write_inputs(d, 50_000, 50, 1)
        url = server.start()
        r = redis.Redis.from_url(url)
        store.load_catalog(r, catalog, "botify")
        store.switch_table(r, "i2i", store.load_table(r, "i2i", table, "botify"), "botify")
        settings = Settings.load(env={}).with_overrides(
            redis_url=url, catalog=catalog, experiments_file=experiments, log_dir=d / "logs", run_dir=d / "srv")
        apps = {name: create_app(settings) for name in
                ("ordinary", "memoised ensure_sync", "no sessions", "hand-built /next answer")}
        memoise_ensure_sync(apps["memoised ensure_sync"])
        apps["no sessions"].session_interface = NoSessions()
        ordinary_post = resources.Next.post
        rng = np.random.default_rng(1)

        def case(app: Flask, post: Callable[..., Any]) -> Callable[[int], None]:
            def run(n: int) -> None:
                resources.Next.post = post  # type: ignore[method-assign]
                try:
                    for _ in range(n):
                        call(app, environ(f"/next/{int(rng.integers(0, 10000))}", track=int(rng.integers(0, 50000))))
                finally:
                    resources.Next.post = ordinary_post  # type: ignore[method-assign]
            return run

        cases = {name: case(app, ordinary_post) for name, app in apps.items()}
        cases["hand-built /next answer"] = case(apps["hand-built /next answer"], hand_built_post)
        for f in cases.values():
            f(300)
        res: dict[str, list[float]] = {k: [] for k in cases}
        order = list(cases.items())
        load0 = os.getloadavg()[0]
        for k in range(args.rounds):
            for name, f in (order if k % 2 == 0 else order[::-1]):
                c0 = time.thread_time()
                f(args.n)
                res[name].append(1e6 * (time.thread_time() - c0) / args.n)
        base = statistics.median(res["ordinary"])
        print(f"CPU time of the request thread per POST /next (i2i), median of {args.rounds} interleaved rounds "
              f"x {args.n}; 1-minute load average {load0:.1f} -> {os.getloadavg()[0]:.1f}:")
        low = min(res["ordinary"])
        print("| variant | CPU per /next: median (range) | median vs ordinary | lowest round vs ordinary's |")
        print("| --- | ---: | ---: | ---: |")
        for name, v in res.items():
            m = statistics.median(v)
            print(f"| {name} | {m:.1f} us ({min(v):.1f}-{max(v):.1f}) | {100 * (m - base) / base:+.1f}% "
                  f"| {100 * (min(v) - low) / low:+.1f}% |")
        print()
        print("Isolated costs per call (timeit, best of 7 x 20,000):")
        print("| work | us per call |")
        print("| --- | ---: |")
        for name, us in isolated_costs().items():
            print(f"| {name} | {us:.2f} |")
    finally:
        server.stop()
        shutil.rmtree(d, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
