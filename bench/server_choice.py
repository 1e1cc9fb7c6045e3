"""Which WSGI server runs botify: the measurement behind docs/service.md.

    .venv/bin/python bench/server_choice.py [--duration 5]

Same app (botify.service.app:create_app with an i2i table, and the bare-Flask floor of
bench/floor_app.py), same Redis (one embedded redis-server on a unix socket), 2
worker processes, wrk on loopback at 64 connections (and 1 for /next). Servers:
gunicorn sync, gunicorn gthread (4 threads), gunicorn gevent (if gevent is installed),
granian WSGI with 1, 2 and 4 threads per worker. gunicorn and gevent are not botify
dependencies: install them into the venv to include them (`pip install gunicorn gevent`).
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import redis

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))
sys.path.insert(0, str(REPO / "tests"))
from botify.service.embedded_redis import EmbeddedRedis  # noqa: E402
from helpers_service import children_of, free_port, http_get, service_env  # noqa: E402
from service_bench import LUA, run_wrk, write_inputs  # noqa: E402

from botify import store  # noqa: E402


def servers(workers: int) -> dict[str, list[str] | None]:
    py = sys.executable
    has = {m: importlib.util.find_spec(m) is not None for m in ("gunicorn", "gevent")}
    g = [py, "-m", "gunicorn", "-w", str(workers), "--log-level", "warning", "--backlog", "2048"]
    return {
        "gunicorn sync": g + ["-k", "sync"] if has["gunicorn"] else None,
        "gunicorn gthread x4": g + ["-k", "gthread", "--threads", "4"] if has["gunicorn"] else None,
        "gunicorn gevent": g + ["-k", "gevent", "--worker-connections", "1000"]
        if has["gunicorn"] and has["gevent"] else None,
        "granian x1": [py, "-m", "botify", "serve", "--workers", str(workers), "--threads", "1"],
        "granian x2": [py, "-m", "botify", "serve", "--workers", str(workers), "--threads", "2"],
        "granian x4": [py, "-m", "botify", "serve", "--workers", str(workers), "--threads", "4"],
    }


def start(cmd: list[str], app: str, port: int, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """app: 'botify' or 'floor'."""
    if "gunicorn" in cmd:
        target = "botify.service.app:create_app()" if app == "botify" else "bench.floor_app:create_app()"
        full = cmd + ["-b", f"127.0.0.1:{port}", target]
    else:
        full = cmd + ["--port", str(port)]
        if app == "floor":
            full += ["--app", "bench.floor_app:create_app", "--no-load-catalog"]
    with log.open("ab") as f:
        proc = subprocess.Popen(full, cwd=REPO, env=env, stdout=f, stderr=subprocess.STDOUT,
                                start_new_session=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{' '.join(full)} exited: {log.read_text()[-2000:]}")
        try:
            if http_get(f"http://127.0.0.1:{port}/health", timeout=1)[0] == 200:
                return proc
        except OSError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"{' '.join(full)} not healthy: {log.read_text()[-2000:]}")


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--duration", type=float, default=5.0)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--tracks", type=int, default=50_000)
    ap.add_argument("--only", default="", help="comma-separated substrings of server names to run")
    args = ap.parse_args(argv)
    d = Path(tempfile.mkdtemp(prefix="botify-server-choice-"))
    rows = []
    try:
        catalog, table, experiments = write_inputs(d, args.tracks, 50, 1)
        with EmbeddedRedis(d / "run", persist=False) as er:
            r = redis.Redis.from_url(er.url)
            store.load_catalog(r, catalog, "botify")
            store.switch_table(r, "i2i", store.load_table(r, "i2i", table, "botify"), "botify")
            env = service_env({
                "BOTIFY_REDIS_URL": er.url, "BOTIFY_CATALOG": str(catalog), "BOTIFY_EXPERIMENTS": str(experiments),
                "BOTIFY_LOG_DIR": str(d / "logs"), "BOTIFY_RUN_DIR": str(d / "srv-run"),
                "BOTIFY_METRICS_DIR": str(d / "metrics"), "BOTIFY_LOG_LEVEL": "WARNING",
                "BOTIFY_BENCH_TRACKS": str(args.tracks),
            })
            for name, cmd in servers(args.workers).items():
                if args.only and not any(o.strip() in name for o in args.only.split(",")):
                    continue
                if cmd is None:
                    print(f"{name}: not installed, skipped", flush=True)
                    continue
                res = {}
                for app in ("floor", "botify"):
                    port = free_port()
                    proc = start(cmd, app, port, env, d / "server.log")
                    try:
                        url = f"http://127.0.0.1:{port}"
                        pids = [proc.pid, *children_of(proc.pid), *([er.proc.pid] if er.proc else [])]
                        if app == "floor":
                            run_wrk(f"{url}/floor", 64, 2, 2, None, env)
                            res["floor"] = run_wrk(f"{url}/floor", 64, 2, args.duration, None, env, pids)
                        else:
                            run_wrk(url, 64, 2, 2, LUA, env)
                            res["next"] = run_wrk(url, 64, 2, args.duration, LUA, env, pids)
                            res["next1"] = run_wrk(url, 1, 1, args.duration, LUA, env, pids)
                    finally:
                        stop(proc)
                f, n, n1 = res["floor"], res["next"], res["next1"]
                cpu_f = f["server_cpu_us_per_req"] + f["wrk_cpu_us_per_req"]
                cpu_n = n["server_cpu_us_per_req"] + n["wrk_cpu_us_per_req"]
                row = (f"| {name} | {f['rps']:.0f} | {f['p99_ms']:.1f} ms | {cpu_f:.0f} us | {n['rps']:.0f} | {n['p50_ms']:.1f} ms "
                       f"| {n['p99_ms']:.1f} ms | {cpu_n:.0f} us | {n1['p50_ms']:.2f} ms | {n['non_2xx'] + n['socket_errors']:.0f} |")
                rows.append(row)
                print(row, flush=True)
    finally:
        shutil.rmtree(d, ignore_errors=True)
    print(f"\n1-minute load average at the end: {os.getloadavg()[0]:.1f}. CPU = server processes + wrk, per request.")
    print("\n| server (2 workers) | floor req/s | floor p99 | floor CPU | /next req/s | /next p50 | /next p99 "
          "| /next CPU | /next p50 at 1 conn | errors |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
