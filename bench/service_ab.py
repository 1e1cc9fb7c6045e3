"""Did a change make POST /next faster? Two code versions, interleaved wrk runs, medians.

    .venv/bin/python bench/service_ab.py --baseline HEAD~3            # 64 connections
    .venv/bin/python bench/service_ab.py --baseline main --connections 1
    .venv/bin/python bench/service_ab.py --baseline v0.1 --threads 1 --rounds 6

Why interleaved: on a shared or virtual machine, req/s and even CPU per request drift
by 10-30% between runs minutes apart, more than most single changes are worth. Both
versions run at the same time (same catalog, same i2i table, each on its own embedded
Redis) and wrk alternates between them (A B B A A B ...), so drift hits both alike; the
medians over the rounds are compared. The baseline is checked out from git into a
temporary worktree and imported ahead of the installed (current) botify.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO / "bench"))
from helpers_service import children_of, start_service  # noqa: E402
from service_bench import LUA, load_table, run_wrk, wait_table_live, write_inputs  # noqa: E402


def _start(name: str, d: Path, inputs: tuple[Path, Path, Path], threads: int, pythonpath: str | None):
    catalog, table, experiments = inputs
    extra = {"PYTHONPATH": f"{pythonpath}{os.pathsep}{REPO}"} if pythonpath else {}
    run = d / f"run-{name}"
    svc = start_service(catalog=catalog, log_dir=d / f"logs-{name}", experiments=experiments, workers=2,
                        run_dir=run, extra_args=["--threads", str(threads)], extra_env=extra)
    try:
        load_table(run, table, extra)
        wait_table_live(svc, "i2i")
    except BaseException:
        svc.stop()
        raise
    return svc


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--baseline", required=True, help="git revision to compare the working tree against")
    ap.add_argument("--connections", type=int, default=64)
    ap.add_argument("--threads", type=int, default=2, help="WSGI threads per worker (both versions)")
    ap.add_argument("--rounds", type=int, default=4, help="wrk runs per version")
    ap.add_argument("--duration", type=float, default=5.0, help="seconds per wrk run")
    ap.add_argument("--tracks", type=int, default=50_000)
    args = ap.parse_args(argv)
    if shutil.which("wrk") is None:
        print("service_ab: wrk is not installed (Debian package wrk)", file=sys.stderr)
        return 2
    rev = subprocess.run(["git", "rev-parse", "--short", args.baseline], cwd=REPO, capture_output=True, text=True)
    if rev.returncode != 0:
        print(f"service_ab: unknown revision {args.baseline!r}", file=sys.stderr)
        return 2
    d = Path(tempfile.mkdtemp(prefix="botify-ab-"))
    worktree = d / "baseline"
    subprocess.run(["git", "worktree", "add", "--detach", "-q", str(worktree), rev.stdout.strip()], cwd=REPO, check=True)
    services = {}
    try:
        inputs = write_inputs(d, args.tracks, 50, 1)
        print(f"baseline {rev.stdout.strip()} vs working tree; {args.connections} connections, "
              f"2 workers x {args.threads} threads, {args.rounds} x {args.duration:g} s each", flush=True)
        services[f"baseline {rev.stdout.strip()}"] = _start("baseline", d, inputs, args.threads,
                                                            str(worktree / "botify" / "src"))
        services["working tree"] = _start("current", d, inputs, args.threads, None)
        time.sleep(1.5)  # past the reload interval: every worker serves the table
        env = dict(os.environ)
        c, wt = args.connections, (2 if args.connections > 1 else 1)
        for svc in services.values():
            run_wrk(svc.url, c, wt, 3, LUA, env)  # warm-up
        results: dict[str, list[dict[str, float]]] = {n: [] for n in services}
        order = list(services.items())
        for r in range(args.rounds):
            for name, svc in (order if r % 2 == 0 else order[::-1]):
                pids = [svc.proc.pid, *children_of(svc.proc.pid)]
                results[name].append(run_wrk(svc.url, c, wt, args.duration, LUA, env, pids))
                print(f"  round {r + 1} {name:18s} {results[name][-1]['rps']:7.0f} req/s", flush=True)
    finally:
        for svc in services.values():
            svc.stop()
        subprocess.run(["git", "worktree", "remove", "--force", str(worktree)], cwd=REPO, capture_output=True)
        shutil.rmtree(d, ignore_errors=True)

    print()
    print("| version | req/s (median, range) | p50 | p99 | server CPU per request (redis-server) | errors |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    med: dict[str, float] = {}
    for name, rs in results.items():
        def m(k: str, rs: list[dict[str, float]] = rs) -> float:
            return statistics.median(x[k] for x in rs)

        med[name] = m("rps")
        errors = sum(x["non_2xx"] + x["socket_errors"] for x in rs)
        print(f"| {name} | {m('rps'):.0f} ({min(x['rps'] for x in rs):.0f}-{max(x['rps'] for x in rs):.0f}) "
              f"| {m('p50_ms'):.3f} ms | {m('p99_ms'):.2f} ms | {m('server_cpu_us_per_req'):.0f} us "
              f"({m('redis_cpu_us_per_req'):.0f} us) | {errors:.0f} |")
    base, cur = med.values()
    print(f"\nworking tree / baseline req/s: {cur / base:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
