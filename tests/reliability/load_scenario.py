"""The loaded-system scenario of issue 6, points 2-4, as one orchestrated run.

Topology (the compose stack without Docker): a redis-server of the scenario's
own, two `python -m botify serve` replicas sharing one log dir with a small
BOTIFY_LOG_MAX_BYTES (so files rotate during the run), and the Debian nginx with
deploy/nginx.conf in front. The simulator's remote agent plays sessions through
nginx with 64 sessions in flight, for at least `min_load_seconds`.

Timeline (seconds after the main load starts):

    0 .......... load (calibrated run sized to `target_seconds`, topped up if it ends early)
    outage_at .. Redis stopped for `outage_seconds`, then started again (empty: no persistence)
    ............ both replicas' /health polled every 100 ms: 503 during, 200 after
    restart_at . replica B gets SIGTERM (graceful stop), stays down `replica_down_seconds`,
                 then a new B starts on the same port; nginx routes around it meanwhile
    end ........ load ends; replicas stopped with SIGTERM; logs and nginx access log collected

Used by tests/reliability/test_load_accounting.py (60 s) and bench/reliability_soak.py
(longer, figures for RELIABILITY.md). Nothing here asserts: it records what happened.
"""

from __future__ import annotations

import math
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

TESTS = Path(__file__).resolve().parents[1]
for p in (TESTS, Path(__file__).resolve().parent):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))

from helpers_nginx import nginx_proxy  # noqa: E402
from helpers_service import (  # noqa: E402
    REPO,
    ServiceProcess,
    children_of,
    http_get,
    service_env,
    start_service,
    write_experiments,
)
from rel_helpers import LogScan, generate_world, read_jsonl, scan_event_logs  # noqa: E402


@dataclass
class ScenarioConfig:
    """Knobs of the scenario; defaults are the `make test` version."""

    min_load_seconds: float = 60.0
    target_seconds: float = 80.0  # the main run is sized from the calibration to last this long
    calibration_episodes: int = 300
    concurrency: int = 64
    outage_at: float = 15.0
    outage_seconds: float = 5.0
    restart_at: float = 38.0  # and at least `settle_seconds` after /health recovered
    settle_seconds: float = 5.0
    replica_down_seconds: float = 4.0
    log_max_bytes: int = 128 * 1024
    world_tracks: int = 1500
    world_users: int = 2000
    seed: int = 7
    health_poll_interval: float = 0.1


@dataclass
class SimRun:
    """One `python -m sim.run ... single --recommender remote` process."""

    label: str
    seed: int
    episodes: int
    out: Path
    started: float
    ended: float = 0.0
    returncode: int | None = None
    stderr: str = ""
    stdout: str = ""
    records: list[dict[str, Any]] = field(default_factory=list)

    @property
    def seconds(self) -> float:
        return self.ended - self.started


@dataclass
class ScenarioResult:
    """What happened, with wall-clock times (time.time(), comparable to event timestamps / 1000)."""

    config: ScenarioConfig
    workdir: Path
    log_dir: Path
    calibration: SimRun | None = None
    runs: list[SimRun] = field(default_factory=list)  # the timed load, in order
    load_started: float = 0.0
    load_ended: float = 0.0
    scan: LogScan | None = None
    access_log: str = ""
    nginx_error_log: str = ""
    health: list[tuple[float, int, int]] = field(default_factory=list)  # (t, replica, status; 0 = no answer)
    replica_pids: dict[str, list[int]] = field(default_factory=dict)  # "A", "B", "B2" -> worker pids
    redis_stopped: float = 0.0
    redis_started: float = 0.0
    health_recovered: float | None = None
    sigterm_sent: float = 0.0
    replica_exited: float = 0.0
    replica_exit_code: int | None = None
    replica_restarted: float = 0.0
    final_exit_codes: dict[str, int] = field(default_factory=dict)
    final_stop_seconds: dict[str, float] = field(default_factory=dict)
    service_outputs: dict[str, str] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)

    @property
    def all_runs(self) -> list[SimRun]:
        return ([self.calibration] if self.calibration else []) + self.runs

    @property
    def load_seconds(self) -> float:
        return self.load_ended - self.load_started


def _log(msg: str) -> None:
    print(f"[scenario {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


class _HealthPoller(threading.Thread):
    """GET /health on every replica every `interval` s; (time, replica index, status)."""

    def __init__(self, ports: list[int], interval: float) -> None:
        super().__init__(name="health-poller", daemon=True)
        self.ports = ports
        self.interval = interval
        self.samples: list[tuple[float, int, int]] = []
        self.stop_event = threading.Event()

    def run(self) -> None:
        while not self.stop_event.is_set():
            for i, port in enumerate(list(self.ports)):
                try:
                    status, _ = http_get(f"http://127.0.0.1:{port}/health", timeout=1.0)
                except OSError:
                    status = 0
                self.samples.append((time.time(), i, status))
            self.stop_event.wait(self.interval)


def _sim_run(label: str, config_file: Path, out: Path, episodes: int, seed: int, concurrency: int) -> SimRun:
    run = SimRun(label, seed, episodes, out, started=time.time())
    proc = subprocess.run(
        [sys.executable, "-m", "sim.run", "--episodes", str(episodes), "--config", str(config_file),
         "single", "--recommender", "remote", "--seed", str(seed), "--days", "1", "--no-progress",
         "--concurrency", str(concurrency), "--out", str(out)],
        cwd=REPO, env=service_env(), capture_output=True, text=True, stdin=subprocess.DEVNULL,
        timeout=900,
    )
    run.ended = time.time()
    run.returncode = proc.returncode
    run.stderr, run.stdout = proc.stderr, proc.stdout
    run.records = read_jsonl(out) if out.exists() else []
    return run


def _sleep_until(t: float) -> None:
    while (dt := t - time.time()) > 0:
        time.sleep(min(dt, 0.2))


def run_scenario(
    redis: Any,
    config: ScenarioConfig | None = None,
    workdir: Path | None = None,
    log: Callable[[str], None] = _log,
) -> ScenarioResult:
    """Run the whole scenario against `redis` (a conftest RedisProcess this run may stop)."""
    cfg = config or ScenarioConfig()
    wd = Path(workdir or tempfile.mkdtemp(prefix="botify-scenario-"))
    wd.mkdir(parents=True, exist_ok=True)
    res = ScenarioResult(cfg, wd, wd / "logs")
    world = generate_world(wd / "world", seed=cfg.seed, tracks=cfg.world_tracks, users=cfg.world_users)
    experiments = write_experiments(wd / "experiments.yml", {"C": "random", "T1": "sticky_artist"},
                                    name="STICKY")
    env = {"BOTIFY_LOG_MAX_BYTES": str(cfg.log_max_bytes)}

    def start(name: str, port: int | None = None) -> ServiceProcess:
        svc = start_service(catalog=world / "catalog.jsonl", log_dir=res.log_dir, experiments=experiments,
                            redis_url=redis.url, workers=1, port=port, run_dir=wd / f"run-{name}",
                            extra_env=env)
        res.replica_pids[name] = children_of(svc.proc.pid)
        return svc

    live: dict[str, ServiceProcess] = {}
    poller: _HealthPoller | None = None
    try:
        live["A"] = start("A")
        live["B"] = start("B")
        ports = [live["A"].port, live["B"].port]
        log(f"replicas A:{ports[0]} B:{ports[1]}, Redis {redis.url}")
        with nginx_proxy([f"127.0.0.1:{p}" for p in ports], workdir=wd / "nginx") as ng:
            sim_cfg = wd / "env.yml"
            sim_cfg.write_text(
                f"world: {world}\nservice:\n  host: 127.0.0.1\n  port: {ng.port}\n"
                f"  concurrency: {cfg.concurrency}\n"
            )
            # Calibration: same topology and concurrency; its rate sizes the timed run.
            res.calibration = _sim_run("calibration", sim_cfg, wd / "sim-calibration.jsonl",
                                       cfg.calibration_episodes, cfg.seed + 1000, cfg.concurrency)
            cal = res.calibration
            if cal.returncode != 0:
                res.errors.append(f"calibration run failed ({cal.returncode}): {cal.stderr[-2000:]}")
                return res
            rate = cal.episodes / max(cal.seconds, 1e-3)
            log(f"calibration: {cal.episodes} sessions in {cal.seconds:.1f} s ({rate:.0f}/s)")

            poller = _HealthPoller(ports, cfg.health_poll_interval)
            poller.start()
            phases_done = threading.Event()
            driver_error: list[str] = []

            def driver() -> None:
                """Sim runs back to back until the load lasted long enough and the phases are over."""
                nonlocal rate
                episodes = max(100, math.ceil(rate * cfg.target_seconds))
                k = 0
                while True:
                    run = _sim_run(f"load-{k}", sim_cfg, wd / f"sim-load-{k}.jsonl", episodes,
                                   cfg.seed + k, cfg.concurrency)
                    res.runs.append(run)
                    log(f"{run.label}: {run.episodes} sessions in {run.seconds:.1f} s, exit {run.returncode}")
                    if run.returncode != 0:
                        driver_error.append(f"{run.label} exited {run.returncode}: {run.stderr[-2000:]}")
                        return
                    rate = run.episodes / max(run.seconds, 1e-3)
                    elapsed = time.time() - res.load_started
                    if elapsed >= cfg.min_load_seconds and phases_done.is_set():
                        return
                    remaining = max(cfg.min_load_seconds - elapsed, 10.0)
                    episodes = max(100, math.ceil(rate * remaining * 1.3))
                    k += 1

            res.load_started = time.time()
            t0 = res.load_started
            drv = threading.Thread(target=driver, name="load-driver", daemon=True)
            drv.start()
            try:
                # -- Redis outage
                _sleep_until(t0 + cfg.outage_at)
                res.redis_stopped = time.time()
                redis.stop()
                log("Redis stopped")
                _sleep_until(res.redis_stopped + cfg.outage_seconds)
                redis.start()
                res.redis_started = time.time()
                log(f"Redis started again after {res.redis_started - res.redis_stopped:.2f} s")
                deadline = time.time() + 60
                while time.time() < deadline:
                    if all(http_get(f"http://127.0.0.1:{p}/health", timeout=1.0)[0] == 200 for p in ports):
                        res.health_recovered = time.time()
                        break
                    time.sleep(0.05)
                log(f"/health 200 on both replicas at +{(res.health_recovered or math.nan) - res.redis_started:.2f} s")

                # -- SIGTERM one replica mid-load, then a new one on the same port
                _sleep_until(max(t0 + cfg.restart_at, (res.health_recovered or time.time()) + cfg.settle_seconds))
                res.sigterm_sent = time.time()
                b = live.pop("B")
                res.replica_exit_code = b.stop(signal.SIGTERM)
                res.replica_exited = time.time()
                res.service_outputs["B"] = b.output()
                log(f"replica B stopped (exit {res.replica_exit_code}) in {res.replica_exited - res.sigterm_sent:.2f} s")
                _sleep_until(res.replica_exited + cfg.replica_down_seconds)
                live["B2"] = start("B2", port=ports[1])
                res.replica_restarted = time.time()
                log("replica B started again on the same port")
            finally:
                phases_done.set()
                drv.join(timeout=900)
                res.load_ended = time.time()
                poller.stop_event.set()
                poller.join(5)
            res.errors.extend(driver_error)
            res.health = list(poller.samples)
            for name, svc in list(live.items()):
                t_stop = time.time()
                res.final_exit_codes[name] = svc.stop(signal.SIGTERM)
                res.final_stop_seconds[name] = time.time() - t_stop
                res.service_outputs[name] = svc.output()
                del live[name]
            res.access_log = ng.access_log()
            res.nginx_error_log = ng.error_log()
    finally:
        if poller is not None:
            poller.stop_event.set()
        for svc in live.values():
            svc.stop(signal.SIGTERM)
    res.scan = scan_event_logs(res.log_dir)
    return res
