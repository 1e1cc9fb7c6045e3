"""``python -m sim.run``: simulate days of users against a recommender.

The course-compatible surface (unchanged from the course, docs/interfaces.md)::

    python -m sim.run --episodes 1000 --config config/env.yml single --recommender remote --seed 31337
    python -m sim.run --episodes 1000 --config config/env.yml multi --processes 4

``--episodes`` is the number of sessions per day (per process in ``multi``,
as in the course). ``single`` pauses at the end of each day with a y/n prompt
so that models can be retrained; ``--days N`` runs N days without asking, and
without a terminal on stdin one day is run. The end-of-run markdown table goes
to stdout; progress, prompts and notes go to stderr.

Exit codes: 0 done, 1 service or agent failure, 2 bad arguments/config/data,
130 interrupted (the table of the finished days is still printed).
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any

import orjson

from sim.agents.base import AgentError
from sim.agents.console import ConsoleQuitError
from sim.client import ServiceError
from sim.config import ConfigError, SimConfig, load_config
from sim.report import Episode, OutputError, RecordWriter, summary_table

RECOMMENDERS = ("remote", "dummy", "console", "oracle")
MULTI_RECOMMENDERS = ("remote", "dummy", "oracle")
ORACLE_NOTE = (
    "**oracle: an upper bound, not a recommender.** It reads each user's hidden "
    "taste, which no service can see; use it only as the ceiling for real models."
)


class UsageError(ValueError):
    """Bad command-line arguments (exit 2)."""


# --------------------------------------------------------------------------- arguments
def _common(p: argparse.ArgumentParser, suppress: bool) -> None:
    """Options accepted both before and after the subcommand."""
    d = (lambda v: argparse.SUPPRESS) if suppress else (lambda v: v)
    p.add_argument("--seed", type=int, default=d(None), help="run seed (default 31337)")
    p.add_argument("--days", type=int, default=d(None),
                   help="run N days without the end-of-day prompt")
    p.add_argument("--first-day", type=int, default=d(None),
                   help="number of the first day (default 1), for drivers that run one day "
                   "per call (botify.lab): day d of a run is the same wherever it starts")
    p.add_argument("--out", type=Path, default=d(None),
                   help="per-episode records (day, episode, user, steps, reward): .jsonl or .csv")
    p.add_argument("--concurrency", type=int, default=d(None),
                   help="remote sessions in flight per process (default: config service.concurrency)")
    p.add_argument("--world", type=Path, default=d(None),
                   help="world directory (overrides the config's world)")
    p.add_argument("--no-progress", action="store_true", default=d(False),
                   help="no progress bar (it is shown by default when stderr is a terminal)")
    p.add_argument("--quiet", action="store_true", default=d(False),
                   help="only the final table on stdout")
    p.add_argument("--realism", choices=("production", "course"), default=d(None),
                   help="user-model setting, overriding the config's user_model.realism: "
                   "course = the course's rules exactly, production = production-like traffic "
                   "(sim/README.md, Realism)")
    p.add_argument("--state", type=Path, default=d(None),
                   help="returning users' state file (JSON): read if it exists, written after "
                   "every day, so runs of one day each (botify.lab) continue the same users")
    p.add_argument("--url", default=d(None), metavar="http://HOST:PORT",
                   help="the service's address (overrides the config's service.host/port)")
    p.add_argument("--host", default=d(None), help="the service's host (overrides service.host)")
    p.add_argument("--port", type=int, default=d(None),
                   help="the service's port (overrides service.port)")


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="python -m sim.run",
        description="Simulate botify's users against a recommender, day by day.",
        epilog="Example: python -m sim.run --episodes 1000 --config config/env.yml "
        "single --recommender remote --seed 31337. Exit codes: 0 done, 1 service or agent "
        "failure, 2 bad arguments/config/data files, 130 interrupted. Docs: sim/CLI.md",
    )
    ap.add_argument("--episodes", type=int, default=1000,
                    help="sessions per day (per process in multi); default 1000")
    ap.add_argument("--config", type=Path, default=Path("config/env.yml"),
                    help="simulator config YAML (default config/env.yml)")
    _common(ap, suppress=False)
    sub = ap.add_subparsers(dest="mode", required=True, metavar="{single,multi}")
    single = sub.add_parser("single", help="one process; pauses at the end of each day")
    single.add_argument("--recommender", choices=RECOMMENDERS, default="remote",
                        help="remote: the HTTP service; dummy: random tracks; console: you type "
                        "track ids; oracle: upper bound from the hidden taste (default remote)")
    _common(single, suppress=True)
    multi = sub.add_parser("multi", help="several processes, each with a derived seed")
    multi.add_argument("--processes", type=int, default=2, help="worker processes (default 2)")
    multi.add_argument("--recommender", choices=MULTI_RECOMMENDERS, default="remote",
                       help="default remote")
    _common(multi, suppress=True)
    return ap


@dataclass
class Options:
    mode: str
    recommender: str
    episodes: int
    config: Path
    seed: int
    days: int | None
    out: Path | None
    concurrency: int | None
    world: Path | None
    progress: bool
    quiet: bool
    processes: int = 1
    first_day: int = 1
    host: str | None = None
    port: int | None = None
    realism: str | None = None
    state: Path | None = None


def parse_url(url: str) -> tuple[str, int]:
    """``http://host:port`` -> (host, port); the remote agent speaks plain HTTP to a root path."""
    from urllib.parse import urlsplit

    try:
        u = urlsplit(url)
        port = u.port
    except ValueError as e:
        raise UsageError(f"--url {url!r}: {e}") from None
    if u.scheme != "http":
        raise UsageError(f"--url {url!r}: expected http://HOST:PORT (scheme must be http)")
    if not u.hostname:
        raise UsageError(f"--url {url!r}: no host")
    if u.path not in ("", "/") or u.query or u.fragment:
        raise UsageError(f"--url {url!r}: the service is addressed at its root, drop the path")
    return u.hostname, 80 if port is None else port


def parse_args(argv: Sequence[str] | None) -> Options:
    ns = build_parser().parse_args(argv)
    o = Options(
        mode=ns.mode,
        recommender=ns.recommender,
        episodes=ns.episodes,
        config=ns.config,
        seed=31337 if ns.seed is None else ns.seed,
        days=ns.days,
        out=ns.out,
        concurrency=ns.concurrency,
        world=ns.world,
        progress=not ns.no_progress,
        quiet=ns.quiet,
        processes=getattr(ns, "processes", 1),
        first_day=1 if ns.first_day is None else ns.first_day,
        realism=ns.realism,
        state=ns.state,
    )
    if ns.url is not None:
        if ns.host is not None or ns.port is not None:
            raise UsageError("give either --url or --host/--port, not both")
        o.host, o.port = parse_url(ns.url)
    else:
        o.host, o.port = ns.host, ns.port
    if o.host is not None and not o.host.strip():
        raise UsageError("--host must not be empty")
    if o.port is not None and not 1 <= o.port <= 65535:
        raise UsageError(f"--port must be in 1..65535, got {o.port}")
    if o.episodes < 1:
        raise UsageError(f"--episodes must be >= 1, got {o.episodes}")
    if o.days is not None and o.days < 1:
        raise UsageError(f"--days must be >= 1, got {o.days}")
    if o.first_day < 1:
        raise UsageError(f"--first-day must be >= 1, got {o.first_day}")
    if o.concurrency is not None and not 1 <= o.concurrency <= 10000:
        raise UsageError(f"--concurrency must be in 1..10000, got {o.concurrency}")
    if o.mode == "multi" and not 1 <= o.processes <= 256:
        raise UsageError(f"--processes must be in 1..256, got {o.processes}")
    if o.seed < 0:
        raise UsageError(f"--seed must be >= 0, got {o.seed}")
    if o.out is not None:
        RecordWriter(o.out)  # validates the suffix before any work is done
    return o


# --------------------------------------------------------------------------- setup
def with_service(cfg: SimConfig, host: str | None, port: int | None,
                 realism: str | None = None) -> SimConfig:
    """The config with the command line's service address and realism (if any) replacing the file's."""
    import dataclasses

    if realism is not None:
        cfg = dataclasses.replace(cfg, realism=realism)
    changes = {k: v for k, v in (("host", host), ("port", port)) if v is not None}
    if not changes:
        return cfg
    return dataclasses.replace(cfg, service=dataclasses.replace(cfg.service, **changes))


def load_world(cfg: SimConfig, override: Path | None) -> Any:
    from sim.world import World, WorldError

    directory = override if override is not None else cfg.world
    if not directory.is_dir():
        raise ConfigError(
            f"world directory not found: {directory} (config 'world'; create it with "
            f"python -m sim.world generate --out {directory})"
        )
    try:
        return World.load(directory)
    except WorldError as e:
        raise ConfigError(str(e)) from None


def make_agent(name: str, world: Any, cfg: SimConfig, sim: Any) -> Any:
    from sim.agents import ConsoleAgent, DummyAgent, OracleAgent, RemoteAgent
    from sim.agents.runner import agent_rng

    if name == "dummy":
        return DummyAgent(world.n_tracks, lambda day: agent_rng(sim.root, day))
    if name == "remote":
        return RemoteAgent(cfg.service.client_options(), world.n_tracks)
    if name == "console":
        return ConsoleAgent(world, cfg.service.client_options())
    if name == "oracle":
        return OracleAgent(world, sim.params)
    raise UsageError(f"unknown recommender {name!r}")


def _note(opts: Options, text: str) -> None:
    if not opts.quiet:
        print(text, file=sys.stderr, flush=True)


def _progress(opts: Options, total: int, desc: str) -> Any:
    from tqdm import tqdm

    enabled = opts.progress and not opts.quiet and sys.stderr.isatty()
    return tqdm(total=total, desc=desc, unit="session", disable=not enabled, file=sys.stderr,
                mininterval=0.25, dynamic_ncols=True)


def ask_continue(day: int, stdin: Any = None, stream: Any = None) -> bool:
    """The course's end-of-day prompt; anything but y/n asks again, end of input stops."""
    stdin = stdin or sys.stdin
    stream = stream or sys.stderr
    while True:
        stream.write(f"End of day {day}. Would you like to start a new day? (y/n) ")
        stream.flush()
        line = stdin.readline()
        if not line:
            stream.write("\n")
            return False
        answer = line.strip().lower()
        if answer in ("y", "yes"):
            stream.write("Moving to the next day!\n")
            return True
        if answer in ("n", "no"):
            stream.write("Ending the simulation\n")
            return False


class _Days:
    """Decides whether another day follows: --days N, else the prompt on a terminal, else stop."""

    def __init__(self, opts: Options) -> None:
        self.opts = opts
        self.interactive = opts.days is None and sys.stdin.isatty()

    def more(self, day: int) -> bool:
        if self.opts.days is not None:
            return day < self.opts.first_day + self.opts.days - 1
        if not self.interactive:
            return False
        return ask_continue(day)


# --------------------------------------------------------------------------- single
def run_single(opts: Options, cfg: SimConfig, episodes_out: list[Episode], dau: dict[int, int],
               writer: RecordWriter | None) -> str | None:
    from sim.agents.runner import Simulation, make_day_process, make_jobs

    world = load_world(cfg, opts.world)
    params = cfg.model_params()
    sim = Simulation(world, params, opts.seed, day_process=make_day_process(world, params))
    load_state(opts, sim)
    agent = make_agent(opts.recommender, world, cfg, sim)
    concurrency = opts.concurrency or cfg.service.concurrency
    note = ORACLE_NOTE if opts.recommender == "oracle" else None
    if note:
        _note(opts, note)
    if opts.recommender == "remote":
        _note(opts, f"remote service {agent.client.base}, {concurrency} sessions in flight")
    days = _Days(opts)
    day = opts.first_day
    try:
        while True:
            sim.begin_day(day)
            users = sim.users_for_day(day, opts.episodes)
            jobs = make_jobs(opts.episodes, users)
            show = getattr(agent, "batch", True)
            with _progress(opts if show else _no_progress(opts), len(jobs), f"day {day}") as bar:
                eps = sim.run(day, agent, jobs, concurrency, bar)
            _finish_day(opts, sim, day, _stamp(sim, day, eps), episodes_out, dau, writer)
            save_state(opts, sim)
            if not days.more(day):
                break
            day += 1
    finally:
        agent.close()
    return note


def load_state(opts: Options, sim: Any) -> None:
    """Continue the returning users of an earlier run (--state), when the file exists."""
    if opts.state is None or sim.day_process is None or not opts.state.exists():
        return
    try:
        data = orjson.loads(opts.state.read_bytes())
        if not isinstance(data, dict):
            raise ValueError("expected a JSON object")
        sim.day_process.load_state(data, str(opts.state))
    except (OSError, ValueError) as e:
        raise ConfigError(f"--state {opts.state}: {e}") from None


def save_state(opts: Options, sim: Any) -> None:
    if opts.state is None or sim.day_process is None:
        return
    tmp = opts.state.with_suffix(opts.state.suffix + ".tmp")
    try:
        tmp.write_bytes(orjson.dumps(sim.day_process.state()))
        tmp.replace(opts.state)
    except OSError as e:
        raise OutputError(f"--state {opts.state}: cannot write: {e.strerror or e}") from None


def _stamp(sim: Any, day: int, eps: list[Episode]) -> list[Episode]:
    """Attach the simulated start times of the day (clock on) to its episodes."""
    from dataclasses import replace

    from sim.report import sim_time

    starts = getattr(sim.day_process, "starts", None)
    if starts is None:
        return eps
    return [replace(e, start=sim_time(day, starts[e.episode])) for e in eps]


def _no_progress(opts: Options) -> Options:
    return Options(**{**opts.__dict__, "progress": False})


def _finish_day(opts: Options, sim: Any, day: int, eps: list[Episode], episodes_out: list[Episode],
                dau: dict[int, int], writer: RecordWriter | None) -> None:
    from sim.report import mean_sem

    stats = sim.end_day(eps)
    if stats is not None:
        value = stats.get("dau", stats.get("active_users"))
        if value is not None:
            dau[day] = int(value)
    episodes_out.extend(eps)
    if writer is not None:
        writer.write(eps)
    rm, rs = mean_sem([e.reward for e in eps])
    sm, _ = mean_sem([float(e.steps) for e in eps])
    extra = f", DAU {dau[day]}" if day in dau else ""
    _note(opts, f"day {day}: {len(eps)} sessions, reward {rm:.3f} ± {rs:.3f}, steps {sm:.2f}{extra}")


# --------------------------------------------------------------------------- multi
def _send(conn: Connection, obj: Any) -> None:
    conn.send_bytes(orjson.dumps(obj))


def _recv(conn: Connection) -> Any:
    return orjson.loads(conn.recv_bytes())


def _worker(index: int, processes: int, opts_json: bytes, conn: Connection) -> None:
    """A multi worker: loads its own world and model, runs the days the parent sends.

    Talks JSON over a pipe (no pickled objects cross the process boundary).
    """
    from sim.agents.runner import Simulation

    try:
        o = orjson.loads(opts_json)
        cfg = with_service(load_config(o["config"]), o["host"], o["port"], o["realism"])
        world = load_world(cfg, Path(o["world"]) if o["world"] else None)
        sim = Simulation(world, cfg.model_params(), o["seed"], process=index, processes=processes)
        agent = make_agent(o["recommender"], world, cfg, sim)
        _send(conn, {"ready": index})
        while True:
            msg = _recv(conn)
            if msg is None:
                break
            day = msg["day"]
            sim.begin_day(day)
            jobs = [(e, u) for e, u in msg["jobs"]]
            prog = _PipeProgress(conn, max(1, len(jobs) // 50))
            eps = sim.run(day, agent, jobs, o["concurrency"], prog)
            prog.flush()
            _send(conn, {"day": day, "episodes": [[e.episode, e.user, e.steps, e.reward] for e in eps]})
        agent.close()
    except (ConfigError, ServiceError, AgentError) as e:
        _send(conn, {"error": str(e), "kind": type(e).__name__})
    except KeyboardInterrupt:
        pass
    except Exception as e:
        _send(conn, {"error": f"worker {index}: {type(e).__name__}: {e}", "kind": "crash"})
    finally:
        conn.close()


class _PipeProgress:
    def __init__(self, conn: Connection, every: int) -> None:
        self.conn, self.every, self.pending = conn, every, 0

    def update(self, n: int = 1) -> None:
        self.pending += n
        if self.pending >= self.every:
            self.flush()

    def flush(self) -> None:
        if self.pending:
            _send(self.conn, {"progress": self.pending})
            self.pending = 0


class _WorkerFailedError(Exception):
    def __init__(self, message: str, kind: str) -> None:
        super().__init__(message)
        self.kind = kind


def run_multi(opts: Options, cfg: SimConfig, episodes_out: list[Episode], dau: dict[int, int],
              writer: RecordWriter | None) -> str | None:
    from sim.agents.runner import Simulation, make_day_process, split_jobs

    world = load_world(cfg, opts.world)  # validate before starting workers; returning users need it
    params = cfg.model_params()
    parent = Simulation(world, params, opts.seed, day_process=make_day_process(world, params))
    load_state(opts, parent)
    note = ORACLE_NOTE if opts.recommender == "oracle" else None
    if note:
        _note(opts, note)
    concurrency = opts.concurrency or cfg.service.concurrency
    opts_json = orjson.dumps({
        "config": str(opts.config), "world": str(opts.world) if opts.world else None,
        "seed": opts.seed, "recommender": opts.recommender, "concurrency": concurrency,
        "host": opts.host, "port": opts.port, "realism": opts.realism,
    })
    method = "fork" if "fork" in mp.get_all_start_methods() else "spawn"
    ctx = mp.get_context(method)
    n_proc = opts.processes
    conns: list[Connection] = []
    procs = []
    for i in range(n_proc):
        a, b = ctx.Pipe(duplex=True)
        p = ctx.Process(target=_worker, args=(i, n_proc, opts_json, b), daemon=True,
                        name=f"sim-worker-{i}")
        p.start()
        b.close()
        conns.append(a)
        procs.append(p)
    _note(opts, f"{n_proc} processes x {opts.episodes} sessions per day, seed {opts.seed} "
          f"(process i uses SeedSequence({opts.seed}).spawn({n_proc})[i])")
    try:
        for i, c in enumerate(conns):
            msg = _expect(c, i, procs[i])
        days = _Days(opts)
        day = opts.first_day
        while True:
            users = parent.all_users_for_day(day, opts.episodes * n_proc)
            parts = split_jobs(users, n_proc)
            total = sum(len(part) for part in parts)
            for c, part in zip(conns, parts, strict=True):
                _send(c, {"day": day, "jobs": part})
            results: dict[int, list[Episode]] = {}
            with _progress(opts, total, f"day {day}") as bar:
                while len(results) < n_proc:
                    for c in wait([c for i, c in enumerate(conns) if i not in results], timeout=1.0):
                        i = conns.index(c)
                        msg = _expect(c, i, procs[i])
                        if "progress" in msg:
                            bar.update(msg["progress"])
                        elif "episodes" in msg:
                            results[i] = [Episode(day, e, u, s, r) for e, u, s, r in msg["episodes"]]
                    for i, p in enumerate(procs):
                        if i not in results and not p.is_alive() and not conns[i].poll():
                            raise _WorkerFailedError(f"worker {i} died (exit code {p.exitcode})", "crash")
            eps = sorted((e for i in range(n_proc) for e in results[i]), key=lambda e: e.episode)
            _finish_day(opts, parent, day, _stamp(parent, day, eps), episodes_out, dau, writer)
            save_state(opts, parent)
            if not days.more(day):
                break
            day += 1
        for c in conns:
            _send(c, None)
    finally:
        for c in conns:
            c.close()
        for p in procs:
            p.join(timeout=5)
            if p.is_alive():
                p.terminate()
                p.join()
    return note


def _expect(c: Connection, i: int, proc: Any) -> Any:
    try:
        msg = _recv(c)
    except EOFError:
        proc.join(timeout=5)
        raise _WorkerFailedError(f"worker {i} exited unexpectedly (exit code {proc.exitcode})",
                            "crash") from None
    if isinstance(msg, dict) and "error" in msg:
        raise _WorkerFailedError(msg["error"], msg.get("kind", "crash"))
    return msg


# --------------------------------------------------------------------------- main
def main(argv: Sequence[str] | None = None) -> int:
    try:
        opts = parse_args(argv)
    except (UsageError, OutputError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    episodes: list[Episode] = []
    dau: dict[int, int] = {}
    writer: RecordWriter | None = None
    note: str | None = ORACLE_NOTE if opts.recommender == "oracle" else None
    code = 0
    t0 = time.perf_counter()
    try:
        cfg = with_service(load_config(opts.config), opts.host, opts.port, opts.realism)
        if opts.out is not None:
            writer = RecordWriter(opts.out, clock=cfg.model_params().clock).open()
        run = run_multi if opts.mode == "multi" else run_single
        note = run(opts, cfg, episodes, dau, writer)
    except (ConfigError, OutputError, UsageError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except (ServiceError, AgentError) as e:
        print(f"error: {e}", file=sys.stderr)
        code = 1
    except _WorkerFailedError as e:
        print(f"error: {e}", file=sys.stderr)
        code = 2 if e.kind == "ConfigError" else 1
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        code = 130
    except ConsoleQuitError as e:
        print(f"console: {e}", file=sys.stderr)
    finally:
        if writer is not None:
            writer.close()
    if episodes:
        if not opts.quiet:
            print(f"Time: {time.perf_counter() - t0:.1f} seconds", file=sys.stderr)
        title = "Experiment results summary"
        if opts.recommender == "oracle":
            title += " (oracle upper bound)"
        sys.stdout.write(summary_table(episodes, dau if dau else None, title=title, note=note))
        sys.stdout.flush()
    elif code == 0:
        print("no sessions were completed", file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
