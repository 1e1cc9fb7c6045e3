"""CPU per /next of two standard parts, against the hand-made ones they replaced (issue 10).

    .venv/bin/python bench/service_hotpath_costs.py                      # ~1 min
    .venv/bin/python bench/service_hotpath_costs.py --baseline 644bb9f   # also the removed code

- the state round trip (the seven commands of `Service._fetch_state`) to an embedded
  Redis on its unix socket: redis-py `pipeline(transaction=False)` as the service sends it,
  redis-py's Connection API (pack_commands + read_response, no Pipeline layers) for
  reference, and with --baseline the raw hiredis socket client `hot_redis.py` of that
  revision;
- the metrics of one /next (two counter increments, two histogram observations):
  prometheus_client in-process and in its multiprocess mode (what `serve` uses), and
  with --baseline that revision's dict counters.

Reported: the calling thread's CPU time per call (best and median of interleaved rounds),
which moves far less with other load than wall time. Code of --baseline is read with
`git show` into a temp dir, nothing is checked out.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

REPO = Path(__file__).resolve().parents[1]
STATE = [("LPUSH", "r:1", b"[1,0.5]"), ("LTRIM", "r:1", 0, 49), ("EXPIRE", "r:1", 600),
         ("SADD", "s:1", 5), ("EXPIRE", "s:1", 600), ("LRANGE", "r:1", 0, -1), ("SMEMBERS", "s:1")]


def _module_at(rev: str, path: str, name: str, d: Path) -> ModuleType:
    src = subprocess.run(["git", "show", f"{rev}:{path}"], cwd=REPO, check=True, capture_output=True).stdout
    f = d / f"{name}.py"
    f.write_bytes(src)
    spec = importlib.util.spec_from_file_location(name, f)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


def measure(cases: dict[str, Callable[[], Any]], rounds: int, n: int) -> None:
    res: dict[str, list[float]] = {k: [] for k in cases}
    order = list(cases.items())
    for r in range(rounds):
        for name, f in (order if r % 2 == 0 else order[::-1]):
            c0 = time.thread_time()
            for _ in range(n):
                f()
            res[name].append(1e6 * (time.thread_time() - c0) / n)
    print("| variant | CPU per call: best | median |")
    print("| --- | ---: | ---: |")
    for name, v in res.items():
        print(f"| {name} | {min(v):.1f} us | {statistics.median(v):.1f} us |")


def per_request_metrics(m: Any) -> Callable[[], None]:
    a, e, r = ("/next", "POST", "200"), ("/next",), ("i2i", "BENCH", "T1")

    def run() -> None:
        m.inc("botify_http_requests_total", a)
        m.observe("botify_http_request_duration_seconds", e, 0.0004)
        m.inc("botify_recommendations_total", r)
        m.observe("botify_recommendation_duration_seconds", r, 0.0003)

    return run


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--baseline", help="git revision whose hot_redis.py and metrics.py to measure too")
    ap.add_argument("--rounds", type=int, default=9)
    ap.add_argument("--n", type=int, default=1000)
    args = ap.parse_args(argv)
    d = Path(tempfile.mkdtemp(prefix="botify-costs-"))
    # multiprocess mode must be chosen before prometheus_client is imported
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(d / "prom")
    (d / "prom").mkdir()
    from botify.service import metrics as prom_metrics
    from botify.service.embedded_redis import EmbeddedRedis
    from botify.store import connect
    from prometheus_client import values

    server = EmbeddedRedis(d / "run", persist=False)
    url = server.start()
    try:
        client = connect(url)
        pool = client.connection_pool

        def pipeline() -> list[Any]:
            pipe = client.pipeline(transaction=False)
            for c in STATE:
                pipe.execute_command(*c)
            return pipe.execute()

        def connection_api() -> list[Any]:
            conn = pool.get_connection()
            try:
                conn.send_packed_command(conn.pack_commands(STATE))
                return [conn.read_response() for _ in STATE]
            finally:
                pool.release(conn)

        cases: dict[str, Callable[[], Any]] = {
            "state round trip: redis-py pipeline(transaction=False) (the service)": pipeline,
            "state round trip: redis-py Connection API (reference)": connection_api,
        }
        if args.baseline:
            hot = _module_at(args.baseline, "botify/src/botify/service/hot_redis.py", "baseline_hot_redis", d)
            fast = hot.FastCommands(client)
            cases[f"state round trip: raw hiredis socket (hot_redis.py at {args.baseline})"] = (
                lambda: fast.pipeline(STATE))
        print(f"1-minute load average {os.getloadavg()[0]:.1f}; {args.rounds} interleaved rounds x {args.n} calls")
        print()
        measure(cases, args.rounds, args.n)

        multi = prom_metrics.Metrics()  # multiprocess mode (the variable above)
        multi_run = per_request_metrics(multi)
        multi_run()  # the labelled children (and their mmap'ed values) exist from here on
        assert list((d / "prom").glob("counter_*.db")), "multiprocess mode is not in use"
        del os.environ["PROMETHEUS_MULTIPROC_DIR"]  # the in-process mode for the next instance
        values.ValueClass = values.MutexValue
        single = prom_metrics.Metrics()
        mcases: dict[str, Callable[[], Any]] = {
            "metrics of one /next: prometheus_client multiprocess (serve)": multi_run,
            "metrics of one /next: prometheus_client in-process": per_request_metrics(single),
        }
        if args.baseline:
            old = _module_at(args.baseline, "botify/src/botify/service/metrics.py", "baseline_metrics", d)
            mcases[f"metrics of one /next: dict counters (metrics.py at {args.baseline})"] = (
                per_request_metrics(old.Metrics(None)))
        print()
        measure(mcases, args.rounds, args.n * 10)
        print(f"\n1-minute load average after: {os.getloadavg()[0]:.1f}")
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
