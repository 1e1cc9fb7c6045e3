"""The course's daily loop, unattended (`botify lab`, `python -m botify.lab`).

Why this exists: in the course the loop (traffic -> logs -> analysis -> models ->
deploy -> A/B test -> decide) is a set of notebooks, artifacts are copied by hand and
the service is restarted. Here one command runs it the way a production team would:

  day 1   the course's first experiment (random vs sticky_artist) on live traffic;
          the winner becomes the champion;
  day d   models trained on all logs so far are loaded into the *running* service
          (new table versions, atomic switch, no restart), and an experiment pits
          the champion (control) against them; the best significant challenger
          becomes the next champion.

Every piece is the real one: `python -m sim.world` builds the world, `python -m
botify serve` serves on a real Redis (embedded unless --redis-url), `python -m
sim.run` sends the HTTP traffic, and the analysis and training are the package's
own (`botify.offline`). Reports go to reports/<run>/, logs and artifacts to runs/<run>/.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import html
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import yaml

REPO_CONFIG = Path("config/env.yml")
#: Redis key prefix of the lab's service (fixed: the lab loads its tables under it)
NAMESPACE = "botify"
BASELINE = ("random", "sticky_artist")

# Per-model training settings of the loop. `contextual` serves a random entry of its
# list, so its lists are short (k=20). `artist_i2i` (served by i2i: first unplayed)
# alternates 5 own tracks with the best tracks of 10 related artists; 30 entries cover
# any session; it needs the public catalog's artist names (added by model_training).
MODEL_TRAINING: dict[str, dict[str, Any]] = {
    "contextual": {"k": 20, "params": {}},
    "artist_i2i": {"k": 30, "params": {}},
}


def model_training(model: str, catalog: Path) -> tuple[int, dict[str, Any]]:
    """(list length k, model params) the loop trains `model` with."""
    from botify.training.train import catalog_params

    cfg = MODEL_TRAINING.get(model, {})
    params = {**cfg.get("params", {}), **catalog_params(model, catalog)}
    return int(cfg.get("k", 100)), params


class LabError(RuntimeError):
    """A user-facing failure of the loop: printed as one line."""


@dataclass
class LabOptions:
    """Everything a lab run depends on (also written to runs/<run>/lab.json)."""

    days: int = 3
    sessions: int = 3000
    seed: int = 31337
    world: Path = Path("data/world")
    tracks: int = 50_000
    users: int = 10_000
    models: list[str] = field(default_factory=lambda: ["artist_i2i", "i2i", "contextual"])
    workers: int = 2
    concurrency: int = 32
    redis_url: str | None = None
    name: str = ""
    runs_dir: Path = Path("runs")
    reports_dir: Path = Path("reports")
    sim_config: Path = REPO_CONFIG
    metric: str = "time"
    #: the verdict gate's thresholds (botify.analysis.verdict.Gate)
    max_fallback: float = 0.01
    min_users: int = 30
    #: promote on the always-valid interval (confidence sequence) instead of the fixed one
    sequential: bool = False
    #: the simulator's user-model setting (production, course); None: the sim config's own
    realism: str | None = None


@dataclass
class DayResult:
    day: int
    experiment: str
    arms: dict[str, str]
    champion_before: str
    champion_after: str
    users_per_arm: dict[str, int]
    effects: list[dict[str, Any]]
    mean_session_time: dict[str, float]
    report: str
    warnings: list[str]
    leaderboard: list[dict[str, Any]] = field(default_factory=list)
    verdict: dict[str, Any] | None = None


# -- small process helpers ------------------------------------------------------------


def _say(msg: str) -> None:
    print(f"[lab] {msg}", flush=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _python() -> str:
    return sys.executable


def _run(cmd: list[str], what: str, **kw: Any) -> None:
    """Run a child command in the foreground; its progress bars go straight to the terminal."""
    proc = subprocess.run(cmd, check=False, **kw)
    if proc.returncode != 0:
        raise LabError(f"{what} failed (exit {proc.returncode}): {' '.join(cmd)}")


def ensure_world(opts: LabOptions) -> Path:
    """Generate the world once; later runs reuse it (same seed and sizes)."""
    import importlib.util

    if importlib.util.find_spec("sim") is None:
        raise LabError("the simulator package is not installed: pip install ./sim (or make install)")
    meta = opts.world / "world.json"
    if meta.is_file():
        info = orjson.loads(meta.read_bytes())
        same = (
            info.get("params", {}).get("seed") == opts.seed
            and info.get("n_tracks") == opts.tracks
            and info.get("n_users") == opts.users
        )
        if same:
            _say(f"world: reusing {opts.world} (seed {opts.seed}, {opts.tracks} tracks, {opts.users} users)")
            return opts.world
        _say(f"world: {opts.world} was made with other settings; generating anew")
    _say(f"world: generating {opts.tracks} tracks and {opts.users} users into {opts.world}")
    _run(
        [_python(), "-m", "sim.world", "generate", "--seed", str(opts.seed),
         "--tracks", str(opts.tracks), "--users", str(opts.users), "--out", str(opts.world)],
        "world generation",
    )
    return opts.world


@contextlib.contextmanager
def redis_for_lab(opts: LabOptions, run_dir: Path) -> Iterator[str]:
    """The Redis URL of the run: the given one, or an embedded server owned by the lab."""
    if opts.redis_url:
        yield opts.redis_url
        return
    from botify.service.embedded_redis import EmbeddedRedis

    server = EmbeddedRedis(run_dir / "redis", persist=False)
    url = server.start()
    _say(f"redis: embedded redis-server at {url}")
    try:
        yield url
    finally:
        server.stop()


@contextlib.contextmanager
def service(opts: LabOptions, run_dir: Path, redis_url: str, experiments: Path) -> Iterator[str]:
    """`python -m botify serve` as a child process; stopped with SIGTERM (logs flushed)."""
    port = _free_port()
    env = {
        **os.environ,
        "BOTIFY_REDIS_URL": redis_url,
        "BOTIFY_CATALOG": str(opts.world / "catalog.jsonl"),
        "BOTIFY_LOG_DIR": str(run_dir / "logs"),
        "BOTIFY_EXPERIMENTS": str(experiments),
        "BOTIFY_RUN_DIR": str(run_dir / "service"),
        "BOTIFY_SEED": str(opts.seed),
        "BOTIFY_PORT": str(port),
        "BOTIFY_WORKERS": str(opts.workers),
        "BOTIFY_NAMESPACE": NAMESPACE,  # the lab loads tables under the same prefix
    }
    log = (run_dir / "service.log").open("ab")
    proc = subprocess.Popen(
        [_python(), "-m", "botify", "serve"], env=env, stdout=log, stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(base, proc, run_dir / "service.log")
        _say(f"service: {opts.workers} workers at {base} (log {run_dir / 'service.log'})")
        yield base
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        log.close()


def _get_json(url: str, timeout: float = 2.0) -> tuple[int, Any]:
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status, orjson.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, None


def _wait_healthy(base: str, proc: subprocess.Popen[bytes], log: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = log.read_text(errors="replace").strip().splitlines()[-3:]
            raise LabError("the service exited at start: " + " | ".join(tail))
        with contextlib.suppress(OSError):
            status, _ = _get_json(base + "/health", timeout=1)
            if status == 200:
                return
        time.sleep(0.1)
    raise LabError(f"the service did not become healthy within {timeout:.0f} s (see {log})")


def _wait_experiment_live(base: str, name: str, timeout: float = 15) -> None:
    """The service reloads experiments.yml by mtime; wait until it serves the new one."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            status, body = _get_json(base + "/experiments")
            if status == 200 and any(e.get("name") == name for e in body.get("experiments", [])):
                return
        time.sleep(0.2)
    raise LabError(f"the service did not pick up experiment {name} within {timeout:.0f} s")


# -- the loop ----------------------------------------------------------------------------


def write_experiments(path: Path, name: str, arms: dict[str, str], recommenders: dict[str, Any]) -> None:
    """Write the experiments file atomically (the service must never read half of it)."""
    doc = {"recommenders": recommenders, "experiments": [{"name": name, "arms": arms}]}
    tmp = path.with_suffix(".tmp")
    tmp.write_text(
        "# Written by botify.lab: the experiment of the current simulated day.\n"
        + yaml.safe_dump(doc, sort_keys=False)
    )
    os.replace(tmp, path)


def write_sim_config(opts: LabOptions, base: str, path: Path) -> None:
    """The repo's simulator config, pointed at this run's world and service."""
    cfg = yaml.safe_load(opts.sim_config.read_text()) if opts.sim_config.is_file() else {}
    host, port = base.removeprefix("http://").rsplit(":", 1)
    cfg["world"] = str(opts.world.resolve())
    cfg.setdefault("service", {})
    cfg["service"].update({"host": host, "port": int(port)})
    if opts.realism is not None:
        cfg["user_model"] = {**(cfg.get("user_model") or {}), "realism": opts.realism}
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))


def simulate_day(opts: LabOptions, day: int, sim_cfg: Path, run_dir: Path) -> None:
    _say(f"day {day}: simulating {opts.sessions} sessions against the service")
    _run(
        [_python(), "-m", "sim.run", "--episodes", str(opts.sessions), "--config", str(sim_cfg),
         "single", "--recommender", "remote", "--seed", str(opts.seed), "--first-day", str(day),
         "--days", "1",
         "--concurrency", str(opts.concurrency),
         "--out", str(run_dir / f"episodes-day{day}.jsonl"),
         # returning users carry over from one day's run to the next
         "--state", str(run_dir / "sim-state.json")],
        f"simulation of day {day}",
    )


def train_and_deploy(
    opts: LabOptions, day: int, run_dir: Path, redis_url: str, champion: str
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Train every model on all logs so far, load each as a new live table version."""
    import redis as redis_lib

    from botify import store
    from botify.store.artifacts import write_artifact
    from botify.training.evaluate import evaluate_models, temporal_split
    from botify.training.models import SERVED_BY
    from botify.training.train import catalog_size, load_sessionized, train_artifact

    events = load_sessionized([run_dir / "logs"])
    n_tracks = catalog_size(opts.world / "catalog.jsonl")
    out = run_dir / "artifacts" / f"day{day}"
    out.mkdir(parents=True, exist_ok=True)
    recommenders: dict[str, Any] = {}
    settings = {m: model_training(m, opts.world / "catalog.jsonl") for m in opts.models}
    client = redis_lib.Redis.from_url(redis_url, socket_timeout=60)
    try:
        for model in opts.models:
            t0 = time.monotonic()
            k, params = settings[model]
            art, meta = train_artifact(
                model, events, n_tracks=n_tracks, params=params, k=k, seed=opts.seed,
                evaluate=False,
            )
            path = out / f"{model}.jsonl"
            write_artifact(path, art, meta)
            version = store.load_table(client, model, path, NAMESPACE)
            store.switch_table(client, model, version, NAMESPACE)
            served_by = SERVED_BY[model] if art.kind != "user" else "indexed"
            # Cold tracks and users fall back to the champion first: a production model
            # never serves worse than the baseline it is meant to replace.
            chain = [c for c in (champion,) if c not in (model, "random")] + ["random"]
            recommenders[model] = {"class": served_by, "table": model, "fallback": chain}
            _say(f"day {day}: trained {model} on {len(events)} events and made it live as "
                 f"table {model} version {version} ({time.monotonic() - t0:.1f} s)")
    finally:
        client.close()
    leaderboard: list[dict[str, Any]] = []
    try:
        tr, te, info = temporal_split(events, "auto", 0.2)
        lb = evaluate_models(tr, te, info, list(opts.models), n_tracks=n_tracks, seed=opts.seed,
                             params={m: settings[m][1] for m in opts.models})
        leaderboard = [
            {k: (v.item() if hasattr(v, "item") else v) for k, v in row.items()}
            for row in lb.table.to_dict(orient="records")
        ]
    except ValueError as exc:
        _say(f"day {day}: offline evaluation skipped: {exc}")
    return recommenders, leaderboard


def analyse_day(
    opts: LabOptions, day: int, experiment: str, window: tuple[int, int], run_dir: Path,
    report_dir: Path, prev_window: tuple[int, int] | None,
) -> Any:
    from botify.analysis import verdict as vd
    from botify.analysis.ab import analyze
    from botify.analysis.logs import read_events, timestamp_ms
    from botify.analysis.report import print_terminal, write_html

    loaded = read_events(run_dir / "logs")
    ev = loaded.events
    ts = timestamp_ms(ev["timestamp"])
    today = ev.loc[(ts >= window[0]) & (ts <= window[1])]
    previous = None
    if prev_window is not None:
        previous = ev.loc[(ts >= prev_window[0]) & (ts <= prev_window[1])]
    gate = vd.Gate(primary=opts.metric, max_fallback=opts.max_fallback, min_users=opts.min_users)
    configured = vd.configured_experiment(vd.read_config_snapshots(run_dir / "logs"), experiment)
    res = analyze(
        today, experiment, "C", previous_events=previous, configured=configured, gate=gate
    )
    res.load_report = loaded.report
    from rich.console import Console

    # piped output (CI logs, files) gets a wide table instead of rich's 80 columns
    print_terminal(res, Console() if sys.stdout.isatty() else Console(width=150))
    write_html(res, report_dir / f"day{day}.html")
    return res


def pick_champion(
    res: Any, arms: dict[str, str], champion: str, metric: str = "time", sequential: bool = False
) -> str:
    """The arm the verdict gate ships (Holm, SRM, serving health, enough users), else the champion.

    Why the gate and not the table: promoting on an uncorrected interval, a broken
    split or an arm answered by its fallback crowns the wrong recommender.
    sequential=True also asks the always-valid interval (botify.analysis.sequential)
    to exclude 0, which stays trustworthy however often the experiment was looked at.
    """
    v = res.verdict
    if v is None or v.decision == "invalid":
        return champion
    if not sequential:
        return arms[v.arm] if v.decision == "ship" and v.arm in arms else champion
    from botify.analysis.sequential import sequential_table

    seq = sequential_table(res.user_level, "C", getattr(res, "alpha", 0.05))
    best, best_lift = champion, 0.0
    for arm, rec in arms.items():
        if arm == "C" or not len(seq):
            continue
        rows = seq[(seq["treatment"] == arm) & (seq["metric"] == metric)]
        if rows.empty:
            continue
        e = rows.iloc[0].to_dict()
        lift = float(e.get("effect", 0.0))
        lower = float(e.get("lower", e.get("ci_low", float("nan"))))
        if lower > 0 and lift > best_lift:
            best, best_lift = rec, lift
    return best


def _mean_time(res: Any) -> dict[str, float]:
    u = res.user_level
    return {str(a): float(g["mean_time_per_session"].mean()) for a, g in u.groupby("arm", observed=True)}


def run_name(prefix: str) -> str:
    """A sortable, unique-enough run name: prefix-YYYYmmdd-HHMMSS (UTC)."""
    return dt.datetime.now(dt.UTC).strftime(f"{prefix}-%Y%m%d-%H%M%S")


def run_lab(opts: LabOptions) -> list[DayResult]:
    name = opts.name or run_name("lab")
    run_dir = (opts.runs_dir / name).resolve()
    report_dir = (opts.reports_dir / name).resolve()
    run_dir.mkdir(parents=True, exist_ok=True)
    report_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "lab.json").write_bytes(orjson.dumps(_jsonable(opts.__dict__), option=orjson.OPT_INDENT_2))
    ensure_world(opts)
    experiments = run_dir / "experiments.yml"
    write_experiments(experiments, "DAY1", dict(zip(("C", "T1"), BASELINE, strict=True)), {})
    results: list[DayResult] = []
    champion = BASELINE[0]
    with redis_for_lab(opts, run_dir) as redis_url, service(opts, run_dir, redis_url, experiments) as base:
        sim_cfg = run_dir / "sim-env.yml"
        write_sim_config(opts, base, sim_cfg)
        prev_window = None
        recommenders: dict[str, Any] = {}
        leaderboard: list[dict[str, Any]] = []
        for day in range(1, opts.days + 1):
            exp = f"DAY{day}"
            if day == 1:
                arms = {"C": BASELINE[0], "T1": BASELINE[1]}
            else:
                recommenders, leaderboard = train_and_deploy(opts, day, run_dir, redis_url, champion)
                challengers = [m for m in opts.models if m != champion]
                arms = {"C": champion, **{f"T{i + 1}": m for i, m in enumerate(challengers)}}
                write_experiments(experiments, exp, arms, recommenders)
                _wait_experiment_live(base, exp)
            _say(f"day {day}: experiment {exp}: " + ", ".join(f"{a}={r}" for a, r in arms.items()))
            start = int(time.time() * 1000)
            simulate_day(opts, day, sim_cfg, run_dir)
            time.sleep(0.3)  # let the background log writers flush the last events
            window = (start, int(time.time() * 1000))
            res = analyse_day(opts, day, exp, window, run_dir, report_dir, prev_window)
            new_champion = pick_champion(res, arms, champion, opts.metric, opts.sequential)
            _say(f"day {day}: {res.verdict.summary() if res.verdict else 'no verdict'}")
            _say(f"day {day}: champion {champion} -> {new_champion}")
            results.append(DayResult(
                day=day, experiment=exp, arms=arms, champion_before=champion,
                champion_after=new_champion, users_per_arm=dict(res.users_per_arm),
                effects=res.to_dict()["effects"], mean_session_time=_mean_time(res),
                report=f"day{day}.html", warnings=list(res.warnings), leaderboard=leaderboard,
                verdict=res.verdict.to_dict() if res.verdict else None,
            ))
            champion = new_champion
            prev_window = window
    write_summary(results, report_dir, run_dir)
    _say(f"summary: {report_dir / 'index.html'}")
    return results


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, float) and obj != obj:
        return None
    return obj


def write_summary(results: list[DayResult], report_dir: Path, run_dir: Path) -> Path:
    """index.html: which recommender won each day, with the mean session time per arm."""
    import matplotlib

    matplotlib.use("Agg")
    import base64
    import io

    import matplotlib.pyplot as plt

    (report_dir / "summary.json").write_bytes(
        orjson.dumps(_jsonable([r.__dict__ for r in results]), option=orjson.OPT_INDENT_2)
    )
    fig, ax = plt.subplots(figsize=(9, 4.2), dpi=110)
    ticks, labels = [], []
    for r in results:
        arms = list(r.arms)
        xs = [r.day + (i - (len(arms) - 1) / 2) * 0.18 for i in range(len(arms))]
        vals = [r.mean_session_time.get(a, float("nan")) for a in arms]
        colors = ["#2f6fd0" if r.arms[a] == r.champion_after else "#9db4d6" for a in arms]
        ax.bar(xs, vals, width=0.16, color=colors)
        ticks += xs
        labels += [f"{r.arms[a]}\n{a} day {r.day}" for a in arms]
    ax.set_xticks(ticks, labels, rotation=35, ha="right", fontsize=8)
    ax.set_ylabel("mean session time per user")
    ax.set_title("Each day's experiment (dark: the arm that is champion after the day)")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    img = base64.b64encode(buf.getvalue()).decode()
    rows = "".join(
        f"<tr><td>{r.day}</td><td>{html.escape(r.experiment)}</td>"
        f"<td>{html.escape(', '.join(f'{a}={m}' for a, m in r.arms.items()))}</td>"
        f"<td>{html.escape(r.champion_before)}</td><td><b>{html.escape(r.champion_after)}</b></td>"
        f"<td>{html.escape(_verdict_text(r.verdict))}</td>"
        f"<td><a href='{r.report}'>{r.report}</a></td></tr>"
        for r in results
    )
    lb = results[-1].leaderboard if results else []
    lb_html = ""
    if lb:
        cols = list(lb[0].keys())
        lb_html = ("<h2>Offline leaderboard (last training)</h2><p>Next-track metrics on held-out "
                   "sessions of the logs. Offline rankings can disagree with the A/B test above: "
                   "the logs were served by yesterday's policies, and the A/B test decides.</p>"
                   "<table><tr>") + "".join(
            f"<th>{html.escape(c)}</th>" for c in cols) + "</tr>" + "".join(
            "<tr>" + "".join(f"<td>{_cell(row[c])}</td>" for c in cols) + "</tr>" for row in lb
        ) + "</table>"
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>botify lab {html.escape(run_dir.name)}</title>
<style>body{{font-family:sans-serif;max-width:960px;margin:2em auto}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:4px 8px}}</style></head><body>
<h1>botify lab: {html.escape(run_dir.name)}</h1>
<p>Logs and artifacts: <code>{html.escape(str(run_dir))}</code></p>
<table><tr><th>day</th><th>experiment</th><th>arms</th><th>champion before</th><th>champion after</th><th>verdict</th><th>report</th></tr>{rows}</table>
<img src="data:image/png;base64,{img}" alt="mean session time per arm and day">
{lb_html}
</body></html>"""
    out = report_dir / "index.html"
    out.write_text(page)
    return out


def _verdict_text(v: dict[str, Any] | None) -> str:
    """The day's gate decision in one cell: decision, arm, first reason."""
    if not v:
        return "n/a"
    head = str(v.get("decision", "")).upper() + (f" {v['arm']}" if v.get("arm") else "")
    reasons = v.get("reasons") or []
    return head + (f": {reasons[0]}" if reasons else "")


def _cell(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return html.escape(str(v))
