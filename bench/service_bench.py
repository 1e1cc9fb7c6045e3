"""Service benchmark: POST /next served by i2i vs the bare-Flask floor, with wrk on loopback.

    .venv/bin/python bench/service_bench.py                     # defaults below, ~1.5 min
    .venv/bin/python bench/service_bench.py --write-benchmarks  # also update BENCHMARKS.md

What it does, all on 127.0.0.1 with free ports and a private temp dir:
1. writes a seeded catalog (50k tracks) and an i2i table (50 neighbours per track);
2. measures cold startup: `python -m botify serve` (embedded Redis, fresh run dir, so
   the catalog really is loaded) from process start to GET /health == 200, N times;
3. starts the service (2 workers, embedded Redis), loads the i2i table with
   `python -m botify load table`, and waits until /health shows it live;
4. starts the framework floors: bench/floor_app.py (bare Flask: GET /floor returns a
   constant; POST /next/<user> makes one Redis PING and returns a constant) under the
   same `python -m botify serve` stack, same workers, threads and embedded Redis;
5. runs wrk: floor, floor + one Redis round trip and /next at 64 connections, then at 1
   connection (bench/next.lua varies users, tracks and listen times; the same requests
   go to botify and to the Redis floor); reports req/s, p50/p99, /next % of floor;
6. reads the service's event logs: every request answered, which recommender
   answered, and the app's own server time per request (the `latency` field).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
from helpers_service import (  # noqa: E402 - shared with the tests on purpose
    ServiceProcess,
    children_of,
    http_get,
    http_post_json,
    service_command,
    service_env,
    start_service,
)

LUA = REPO / "bench" / "next.lua"
BEGIN, END = "<!-- service-bench:begin -->", "<!-- service-bench:end -->"
# issue 10, section 5: /next against the one-Redis-round-trip floor (the ceiling for any design
# that keeps per-user state in Redis), not against the bare floor
TARGETS = {"ratio_redis": 70.0, "p99_ms": 25.0, "p50_c1_ms": 0.6, "startup_s": 2.0}


def write_inputs(d: Path, n_tracks: int, neighbours: int, seed: int) -> tuple[Path, Path, Path]:
    """Catalog, i2i table and experiments config (every arm i2i)."""
    rng = np.random.default_rng(seed)
    n_artists = max(1, n_tracks // 12)
    artist_of = rng.integers(0, n_artists, n_tracks)
    catalog = d / "catalog.jsonl"
    with catalog.open("w") as f:
        for i in range(n_tracks):
            f.write(json.dumps({"track": i, "artist": f"Artist {artist_of[i]}", "title": f"Track {i}",
                                "genres": ["bench"], "year": 1990 + i % 35}) + "\n")
    table = d / "i2i.jsonl"
    nb = rng.integers(0, n_tracks, (n_tracks, neighbours))
    with table.open("w") as f:
        for i in range(n_tracks):
            f.write(json.dumps({"item_id": i, "recommendations": nb[i].tolist()}) + "\n")
    experiments = d / "experiments.yml"
    experiments.write_text("default: i2i\nexperiments:\n  - name: BENCH\n    arms: {C: i2i, T1: i2i}\n")
    return catalog, table, experiments


_UNIT = {"us": 1e-3, "ms": 1.0, "s": 1e3}


def _ms(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s)", text.strip())
    if not m:
        raise ValueError(f"cannot read wrk latency {text!r}")
    return float(m.group(1)) * _UNIT[m.group(2)]


def run_wrk(url: str, connections: int, threads: int, duration: float, script: Path | None,
            env: dict[str, str], server_pids: list[int] | None = None) -> dict[str, float]:
    """One wrk run; returns req/s, latency percentiles (ms), errors, CPU per request.

    CPU per request (server processes, and wrk itself) does not stretch with other load
    the way wall-clock throughput does: it is how the figures are compared on a shared box.
    """
    import resource

    redis_pids = [p for p in (server_pids or []) if b"redis-server" in _cmdline(p)]
    cpu0 = cpu_seconds(server_pids or [])
    rcpu0 = cpu_seconds(redis_pids)
    ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    cmd = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{max(1, round(duration))}s", "--latency"]
    if script is not None:
        cmd += ["-s", str(script)]
    proc = subprocess.run(cmd + [url], capture_output=True, text=True, env=env, timeout=duration + 60)
    out = proc.stdout
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if proc.returncode != 0 or rps is None:
        raise RuntimeError(f"wrk failed ({' '.join(cmd)}): {proc.stderr or out}")
    ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    res: dict[str, float] = {"rps": float(rps.group(1))}
    res["server_cpu_s"] = cpu_seconds(server_pids or []) - cpu0
    res["redis_cpu_s"] = cpu_seconds(redis_pids) - rcpu0
    res["wrk_cpu_s"] = (ru1.ru_utime + ru1.ru_stime) - (ru0.ru_utime + ru0.ru_stime)
    for pct in ("50", "75", "90", "99"):
        m = re.search(rf"^\s+{pct}%\s+(\S+)", out, re.M)
        res[f"p{pct}_ms"] = _ms(m.group(1)) if m else float("nan")
    m = re.search(r"(\d+) requests in", out)
    res["requests"] = float(m.group(1)) if m else 0.0
    m = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    res["non_2xx"] = float(m.group(1)) if m else 0.0
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    res["socket_errors"] = float(sum(int(x) for x in m.groups())) if m else 0.0
    if res["requests"]:
        res["server_cpu_us_per_req"] = 1e6 * res["server_cpu_s"] / res["requests"]
        res["wrk_cpu_us_per_req"] = 1e6 * res["wrk_cpu_s"] / res["requests"]
        res["redis_cpu_us_per_req"] = 1e6 * res["redis_cpu_s"] / res["requests"]
    return res


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def cpu_seconds(pids: list[int]) -> float:
    """utime + stime of these processes so far (Linux /proc)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / tick


def cold_startups(d: Path, catalog: Path, experiments: Path, workers: int, runs: int) -> tuple[list[float], list[float]]:
    """Seconds from `python -m botify serve` to /health 200, fresh embedded Redis each time.

    Also the CPU seconds the server's processes used until then: on a shared machine the
    wall time stretches with the load, the CPU time hardly does.
    """
    times, cpu = [], []
    for k in range(runs):
        svc = start_service(catalog=catalog, log_dir=d / f"startup-logs-{k}", experiments=experiments,
                            workers=workers, run_dir=d / f"startup-run-{k}", timeout=60)
        times.append(svc.started_in)
        cpu.append(cpu_seconds([svc.proc.pid, *children_of(svc.proc.pid)]))
        assert svc.stop() == 0, svc.output()
    return times, cpu


def load_table(run_dir: Path, table: Path, extra_env: dict[str, str] | None = None, name: str = "i2i") -> float:
    """`python -m botify load table` into the service of `run_dir`; seconds it took."""
    t0 = time.monotonic()
    load = subprocess.run(service_command("load", "table", name, str(table)), cwd=REPO,
                          env=service_env({"BOTIFY_RUN_DIR": str(run_dir), **(extra_env or {})}),
                          capture_output=True, text=True, timeout=120)
    if load.returncode != 0:
        raise RuntimeError(f"load table {name} failed: {load.stderr}")
    return time.monotonic() - t0


def wait_table_live(svc: ServiceProcess, name: str, timeout: float = 20) -> str:
    """Until /health names the table's live version (workers re-read versions on requests)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        http_post_json(f"{svc.url}/next/0", {"track": 0, "time": 0.5})
        status, body = http_get(f"{svc.url}/health")
        version = json.loads(body).get("tables", {}).get(name) if status == 200 else None
        if version:
            return str(version)
        time.sleep(0.1)
    raise RuntimeError(f"table {name} not live after {timeout} s")


def profile_worker(pid: int, seconds: int, out: Path) -> dict[str, float]:
    """py-spy (if installed) on one worker, GIL-holding samples only: where the CPU goes."""
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not os.access(spy, os.X_OK):
        return {}
    subprocess.run([spy, "record", "-p", str(pid), "-d", str(seconds), "-r", "200", "-f", "raw", "-o", str(out),
                    "--nonblocking", "--gil"], capture_output=True, timeout=seconds + 30)
    if not out.exists():
        return {}
    incl: dict[str, int] = {}
    total = 0
    for line in out.read_text().splitlines():
        if not line.strip():
            continue
        stack, n = line.rsplit(" ", 1)
        total += int(n)
        for frame in set(stack.split(";")):
            name = frame.split(" (")[0]
            incl[name] = incl.get(name, 0) + int(n)
    wanted = {"Flask.__call__": "flask+app", "Next.post": "/next view", "Service.next": "Service.next",
              "Service._fetch_state": "state round trip", "Service._run_chain": "recommender chain",
              "EventLog._run": "event log writer", "Metrics.inc": "metrics inc", "Metrics.observe": "metrics observe"}
    return {label: round(100 * incl.get(fn, 0) / total, 1) for fn, label in wanted.items()} if total else {}


def read_events(log_dir: Path) -> list[dict]:
    out = []
    for f in log_dir.glob("**/events-*.jsonl"):
        out += [json.loads(line) for line in f.read_text().splitlines() if line.strip()]
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tracks", type=int, default=50_000)
    ap.add_argument("--users", type=int, default=10_000)
    ap.add_argument("--neighbours", type=int, default=50)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2, help="WSGI threads per worker (serve's default)")
    ap.add_argument("--connections", type=int, default=64)
    ap.add_argument("--wrk-threads", type=int, default=2)
    ap.add_argument("--duration", type=float, default=10.0, help="seconds per measured wrk run")
    ap.add_argument("--warmup", type=float, default=3.0)
    ap.add_argument("--startup-runs", type=int, default=3)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "service.json")
    ap.add_argument("--write-benchmarks", action="store_true", help="update the Service section of BENCHMARKS.md")
    ap.add_argument("--keep", action="store_true", help="keep the temp dir (logs) for inspection")
    ap.add_argument("--profile", action="store_true",
                    help="during an extra /next run, sample one worker with py-spy (if installed)")
    args = ap.parse_args(argv)
    if shutil.which("wrk") is None:
        print("service_bench: wrk is not installed (Debian package wrk)", file=sys.stderr)
        return 2

    d = Path(tempfile.mkdtemp(prefix="botify-bench-"))
    services: list[ServiceProcess] = []
    load_before = os.getloadavg()[0]
    try:
        print(f"[1/6] inputs: {args.tracks} tracks, i2i with {args.neighbours} neighbours ({d})", flush=True)
        catalog, table, experiments = write_inputs(d, args.tracks, args.neighbours, args.seed)

        print(f"[2/6] cold startup x{args.startup_runs} ({args.workers} workers, embedded Redis)", flush=True)
        startups, startup_cpu = cold_startups(d, catalog, experiments, args.workers, args.startup_runs)

        print("[3/6] service + i2i table", flush=True)
        svc = start_service(catalog=catalog, log_dir=d / "logs", experiments=experiments,
                            workers=args.workers, run_dir=d / "run",
                            extra_args=["--threads", str(args.threads)])
        services.append(svc)
        table_load_s = load_table(d / "run", table)
        version = wait_table_live(svc, "i2i")
        time.sleep(1.5)  # past the reload interval: every worker sees the table on its next request

        print("[4/6] floor app on the same stack", flush=True)
        floor = start_service(catalog=catalog, log_dir=d / "floor-logs", workers=args.workers,
                              run_dir=d / "floor-run",
                              extra_args=["--app", "bench.floor_app:create_app", "--no-load-catalog",
                                          "--threads", str(args.threads)])
        services.append(floor)

        env = {**os.environ, "BOTIFY_BENCH_USERS": str(args.users), "BOTIFY_BENCH_TRACKS": str(args.tracks),
               "BOTIFY_BENCH_SEED": str(args.seed)}
        c, wt, dur = args.connections, args.wrk_threads, args.duration
        print(f"[5/6] wrk: warmup {args.warmup:g} s each, then {dur:g} s per run", flush=True)
        run_wrk(f"{floor.url}/floor", c, wt, args.warmup, None, env)
        run_wrk(floor.url, c, wt, args.warmup, LUA, env)
        run_wrk(svc.url, c, wt, args.warmup, LUA, env)
        spids = [svc.proc.pid, *children_of(svc.proc.pid)]  # master, workers, embedded redis-server
        fpids = [floor.proc.pid, *children_of(floor.proc.pid)]
        results = {
            "floor_c64": run_wrk(f"{floor.url}/floor", c, wt, dur, None, env, fpids),
            "redis_floor_c64": run_wrk(floor.url, c, wt, dur, LUA, env, fpids),
            "next_c64": run_wrk(svc.url, c, wt, dur, LUA, env, spids),
            "floor_c1": run_wrk(f"{floor.url}/floor", 1, 1, dur / 2, None, env, fpids),
            "redis_floor_c1": run_wrk(floor.url, 1, 1, dur / 2, LUA, env, fpids),
            "next_c1": run_wrk(svc.url, 1, 1, dur / 2, LUA, env, spids),
        }
        profile: dict[str, float] = {}
        if args.profile:
            import threading

            worker = next(p for p in children_of(svc.proc.pid) if b"redis" not in Path(f"/proc/{p}/cmdline").read_bytes())
            t = threading.Thread(target=run_wrk, args=(svc.url, c, wt, dur, LUA, env))
            t.start()
            time.sleep(1)
            profile = profile_worker(worker, max(1, int(dur) - 2), d / "pyspy.txt")
            t.join()
            print(f"    py-spy, % of GIL-holding samples in one worker: {profile or 'py-spy not installed'}")
        for name, r in results.items():
            print(f"    {name:10s} {r['rps']:9.0f} req/s  p50 {r['p50_ms']:.3f} ms  p99 {r['p99_ms']:.3f} ms"
                  f"  non-2xx {r['non_2xx']:.0f}  socket errors {r['socket_errors']:.0f}", flush=True)

        print("[6/6] event logs", flush=True)
        for s in services:
            s.stop(signal.SIGTERM)
        events = [e for e in read_events(d / "logs") if e["message"] == "next"]
        by_rec: dict[str, int] = {}
        for e in events:
            key = e["recommender"] + (f" ({e['fallback']})" if e.get("fallback") else "")
            by_rec[key] = by_rec.get(key, 0) + 1
        lat = np.array([e["latency"] for e in events]) * 1e3
        answered_200 = sum(r["requests"] - r["non_2xx"] for k, r in results.items() if k.startswith("next"))
        summary = {
            "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "machine": f"{os.cpu_count()} cores, {platform.machine()}, Python {platform.python_version()}",
            "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
            "startup_s": startups,
            "startup_cpu_s": startup_cpu,
            "table_load_s": table_load_s,
            "table_version": version,
            "wrk": results,
            "ratio_pct": 100 * results["next_c64"]["rps"] / results["floor_c64"]["rps"],
            # the ceiling for anything that makes one Redis round trip per request
            "redis_floor_ratio_pct": 100 * results["redis_floor_c64"]["rps"] / results["floor_c64"]["rps"],
            "next_of_redis_floor_pct": 100 * results["next_c64"]["rps"] / results["redis_floor_c64"]["rps"],
            # what the ratio would be on an idle machine where server + wrk saturate the cores
            "ratio_cpu_pct": 100 * (results["floor_c64"]["server_cpu_us_per_req"] + results["floor_c64"]["wrk_cpu_us_per_req"])
            / (results["next_c64"]["server_cpu_us_per_req"] + results["next_c64"]["wrk_cpu_us_per_req"]),
            "profile_gil_pct": profile,
            "loadavg_1min": [round(load_before, 2), round(os.getloadavg()[0], 2)],
            "events_next": len(events),
            "answered_next_measured_and_warmup_excluded": answered_200,
            "answered_by": by_rec,
            "app_latency_ms": {"p50": float(np.percentile(lat, 50)), "p99": float(np.percentile(lat, 99))},
        }
    finally:
        for s in services:
            s.stop()
        if not args.keep:
            shutil.rmtree(d, ignore_errors=True)

    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(summary, indent=2) + "\n")
    md = markdown(summary)
    print()
    print(md)
    if args.write_benchmarks:
        update_benchmarks(md)
        print(f"BENCHMARKS.md: Service section updated; raw figures in {args.out}")
    return 0


def _us(r: dict, who: str) -> str:
    v = r.get(f"{who}_cpu_us_per_req")
    if v is None:
        return "-"
    if who == "server" and r.get("redis_cpu_us_per_req"):
        return f"{v:.0f} us ({r['redis_cpu_us_per_req']:.0f} us)"
    return f"{v:.0f} us"


def _ok(ok: bool) -> str:
    return "met" if ok else "**missed**"


def markdown(s: dict) -> str:
    w = s["wrk"]
    a = s["args"]
    f64, n64, f1, n1 = w["floor_c64"], w["next_c64"], w["floor_c1"], w["next_c1"]
    r64, r1 = w.get("redis_floor_c64"), w.get("redis_floor_c1")
    st = s["startup_s"]
    lines = [
        "Command: `.venv/bin/python bench/service_bench.py --write-benchmarks` (about 2 minutes; "
        "raw figures in `bench/results/service.json`). Method: docs/service.md and the script's docstring.",
        "",
        f"Measured {s['when']} on {s['machine']}; loopback, wrk {a['wrk_threads']} threads, "
        f"{a['workers']} workers x {a['threads']} thread(s), granian WSGI, embedded Redis (unix socket); "
        f"{a['tracks']} tracks, {a['users']} users, i2i table with {a['neighbours']} neighbours per track; "
        f"{a['duration']:g} s per run after {a['warmup']:g} s warm-up. "
        f"1-minute load average before/after the run: {s['loadavg_1min'][0]:.1f} / {s['loadavg_1min'][1]:.1f} "
        f"(anything above ~0.5 means other work shared the {os.cpu_count()} cores).",
        "",
        "| endpoint | connections | req/s | p50 | p99 | server CPU per request (of which redis-server) | wrk CPU per request |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
        f"| floor (bare Flask, constant) | {a['connections']} | {f64['rps']:.0f} | {f64['p50_ms']:.2f} ms | {f64['p99_ms']:.2f} ms | {_us(f64, 'server')} | {_us(f64, 'wrk')} |",
        *([f"| floor + one Redis round trip (bare Flask, PING) | {a['connections']} | {r64['rps']:.0f} | {r64['p50_ms']:.2f} ms | {r64['p99_ms']:.2f} ms | {_us(r64, 'server')} | {_us(r64, 'wrk')} |"] if r64 else []),
        f"| `POST /next` (i2i) | {a['connections']} | {n64['rps']:.0f} | {n64['p50_ms']:.2f} ms | {n64['p99_ms']:.2f} ms | {_us(n64, 'server')} | {_us(n64, 'wrk')} |",
        f"| floor (bare Flask, constant) | 1 | {f1['rps']:.0f} | {f1['p50_ms']:.3f} ms | {f1['p99_ms']:.3f} ms | {_us(f1, 'server')} | {_us(f1, 'wrk')} |",
        *([f"| floor + one Redis round trip (bare Flask, PING) | 1 | {r1['rps']:.0f} | {r1['p50_ms']:.3f} ms | {r1['p99_ms']:.3f} ms | {_us(r1, 'server')} | {_us(r1, 'wrk')} |"] if r1 else []),
        f"| `POST /next` (i2i) | 1 | {n1['rps']:.0f} | {n1['p50_ms']:.3f} ms | {n1['p99_ms']:.3f} ms | {_us(n1, 'server')} | {_us(n1, 'wrk')} |",
        "",
        "| target | measured | |",
        "| --- | ---: | --- |",
        f"| `/next` >= 70% of the one-Redis-round-trip floor at {a['connections']} connections | "
        f"{s['next_of_redis_floor_pct']:.0f}% | {_ok(s['next_of_redis_floor_pct'] >= TARGETS['ratio_redis'])} |",
        f"| (reference) `/next`, % of the bare floor | {s['ratio_pct']:.0f}% (from CPU per request, server + wrk: "
        f"{s.get('ratio_cpu_pct', float('nan')):.0f}%); the one-round-trip floor itself: "
        f"{s['redis_floor_ratio_pct']:.0f}% of it | |",
        f"| p99 <= 25 ms at {a['connections']} connections | {n64['p99_ms']:.2f} ms | {_ok(n64['p99_ms'] <= TARGETS['p99_ms'])} |",
        f"| p50 <= 0.6 ms at 1 connection | {n1['p50_ms']:.3f} ms | {_ok(n1['p50_ms'] <= TARGETS['p50_c1_ms'])} |",
        f"| startup with {a['tracks']} tracks <= 2 s (process start to /health 200, cold Redis) | "
        f"median {statistics.median(st):.2f} s (max {max(st):.2f} s, {len(st)} runs; CPU used by the server's "
        f"processes until then: median {statistics.median(s.get('startup_cpu_s') or [float('nan')]):.2f} s) "
        f"| {_ok(max(st) <= TARGETS['startup_s'])} |",
        "",
        f"Errors: non-2xx {n64['non_2xx'] + n1['non_2xx']:.0f}, socket errors {n64['socket_errors'] + n1['socket_errors']:.0f}. "
        f"Event log: {s['events_next']} `next` lines, answered by {', '.join(f'{k}: {v}' for k, v in sorted(s['answered_by'].items()))}; "
        f"app time per `/next` (the event's `latency`) p50 {s['app_latency_ms']['p50']:.3f} ms, "
        f"p99 {s['app_latency_ms']['p99']:.3f} ms. "
        f"Loading the i2i table ({a['tracks']} rows) with `python -m botify load table`: {s['table_load_s']:.2f} s.",
    ]
    if s.get("profile_gil_pct"):
        lines += ["", "Where one worker's CPU goes under `/next` load (py-spy, GIL-holding samples, inclusive %): "
                  + ", ".join(f"{k} {v}%" for k, v in s["profile_gil_pct"].items()) + "."]
    return "\n".join(lines)


def update_benchmarks(md: str) -> None:
    path = REPO / "BENCHMARKS.md"
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    block = f"{BEGIN}\n{md}\n{END}"
    if BEGIN in text and END in text:
        text = text[: text.index(BEGIN)] + block + text[text.index(END) + len(END):]
    else:
        text = text.rstrip("\n") + "\n\n## Service\n\n" + block + "\n"
    path.write_text(text)


if __name__ == "__main__":
    sys.exit(main())
