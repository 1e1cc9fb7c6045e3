"""`botify COMMAND` (= `python -m botify COMMAND`): serve, load, load-artifact, rollback,
ab, train, evaluate, lab, demo, new-recommender.

Every command reads the same settings (defaults, then --config / $BOTIFY_CONFIG, then
BOTIFY_* variables, then the command-line flags) and reports faults as one line
`botify: ...` with exit code 2, never a traceback.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from botify.store.settings import ConfigError, Settings


class CLIError(RuntimeError):
    """A user-facing fault: printed as one line, exit code 2."""


# -- settings ------------------------------------------------------------------------


def _common(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("settings (override the config file and BOTIFY_* variables)")
    g.add_argument("--config", type=Path, metavar="FILE", help="YAML settings file (default $BOTIFY_CONFIG)")
    g.add_argument("--redis-url", metavar="URL", help="Redis URL (default $BOTIFY_REDIS_URL; unset = embedded)")
    g.add_argument("--namespace", help="Redis key prefix (default $BOTIFY_NAMESPACE or 'botify')")
    g.add_argument("--run-dir", type=Path, metavar="DIR",
                   help="where the embedded Redis lives (default run/); load-artifact and rollback "
                   "also find a service running from another run dir")


def _settings(args: argparse.Namespace, **extra: Any) -> Settings:
    try:
        settings = Settings.load(args.config)
        changes = {
            "redis_url": args.redis_url,
            "namespace": args.namespace,
            "run_dir": args.run_dir,
            **extra,
        }
        changes = {k: v for k, v in changes.items() if v is not None}
        return settings.with_overrides(**changes) if changes else settings
    except ConfigError as exc:
        raise CLIError(str(exc)) from None


@contextmanager
def _redis(settings: Settings, *, live_only: bool = False) -> Iterator[Any]:
    """A client on BOTIFY_REDIS_URL or the running service's embedded Redis.

    ``live_only`` (load-artifact, rollback: they change what a running service serves)
    never falls back to a temporary embedded Redis: a fresh one would be empty and the
    command would fail with a misleading "no catalog"; ``botify load`` stages data in one
    for the next ``serve``.
    """
    import redis

    from botify.service.embedded_redis import EmbeddedRedisError, redis_url_for_cli

    try:
        with redis_url_for_cli(settings.redis_url, settings.run_dir, live_only=live_only) as url:
            try:
                client = redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=60)
                client.ping()
            except ValueError as exc:
                raise CLIError(f"{url!r} is not a Redis URL: {exc}") from None
            except redis.RedisError as exc:
                raise CLIError(f"cannot reach Redis at {url}: {exc}") from None
            try:
                yield client
            finally:
                client.close()
    except EmbeddedRedisError as exc:
        raise CLIError(str(exc)) from None


def _store_call(what: str, fn: Callable[[], Any]) -> Any:
    """Run a store operation; its validation errors become one CLI line."""
    import redis

    from botify import store

    try:
        return fn()
    except FileNotFoundError as exc:
        raise CLIError(f"{what}: file not found: {exc.filename}") from None
    except OSError as exc:
        raise CLIError(f"{what}: {exc.strerror or exc}") from None
    except redis.RedisError as exc:
        raise CLIError(f"{what}: Redis error: {exc}") from None
    except (ValueError, store.StoreError) as exc:
        raise CLIError(f"{what}: {exc}") from None


def _need_file(path: Path) -> Path:
    if not path.is_file():
        raise CLIError(f"file not found: {path}")
    return path


# -- commands --------------------------------------------------------------------------


def cmd_serve(args: argparse.Namespace) -> int:
    from botify.service.server import ServerOptions, run

    extra = {
        "host": args.host,
        "port": args.port,
        "workers": args.workers,
        "catalog": args.catalog,
        "log_dir": args.log_dir,
        "experiments_file": args.experiments,
    }
    settings = _settings(args, **extra)
    if not 1 <= args.threads <= 64:
        raise CLIError(f"--threads must be in 1..64, got {args.threads}")
    options = ServerOptions(
        threads=args.threads,
        app_factory=args.app,
        load_catalog=not args.no_load_catalog,
        access_log=args.access_log,
    )
    return run(settings, options)


def _load_and_switch(r: Any, settings: Settings, name: str, path: Path, switch: bool) -> str:
    from botify import store

    version = _store_call(f"load table {name} from {path}",
                          lambda: store.load_table(r, name, path, settings.namespace))
    if switch:
        _store_call(f"switch table {name}", lambda: store.switch_table(
            r, name, version, settings.namespace, keep=settings.table_keep_versions))
    return str(version)


def cmd_load(args: argparse.Namespace) -> int:
    from botify import store
    from botify.store.catalog import Catalog

    settings = _settings(args)
    path = _need_file(args.file)
    t0 = time.monotonic()
    if args.kind == "catalog":
        catalog = _store_call(f"catalog {path}", lambda: Catalog.from_file(path))
        with _redis(settings) as r:
            n = _store_call(f"load catalog {path}", lambda: store.load_catalog(
                r, path, settings.namespace, catalog=catalog))
        print(f"catalog {path}: {n} tracks live in Redis ({time.monotonic() - t0:.2f} s)")
        return 0
    with _redis(settings) as r:
        version = _load_and_switch(r, settings, args.name, path, switch=not args.no_switch)
    state = "loaded (not live: switch later)" if args.no_switch else "loaded and live"
    print(f"table {args.name}: version {version} {state} from {path} ({time.monotonic() - t0:.2f} s)")
    return 0


def cmd_load_artifact(args: argparse.Namespace) -> int:
    import orjson

    settings = _settings(args)
    path = _need_file(args.file)
    sidecar = Path(str(path) + ".meta.json")
    if not sidecar.is_file():
        raise CLIError(f"artifact {path} has no sidecar {sidecar.name} (model, kind, params, ...)")
    try:
        meta = orjson.loads(sidecar.read_bytes())
    except orjson.JSONDecodeError as exc:
        raise CLIError(f"{sidecar}: not JSON ({exc})") from None
    if not isinstance(meta, dict) or meta.get("kind") not in ("i2i", "user", "top"):
        raise CLIError(f"{sidecar}: 'kind' must be one of i2i, user, top")
    t0 = time.monotonic()
    with _redis(settings, live_only=True) as r:
        version = _load_and_switch(r, settings, args.name, path, switch=True)
    print(f"table {args.name}: {meta['kind']} artifact {path} (model {meta.get('model', '?')}) "
          f"is live as version {version} ({time.monotonic() - t0:.2f} s)")
    return 0


def cmd_rollback(args: argparse.Namespace) -> int:
    from botify import store

    settings = _settings(args)
    with _redis(settings, live_only=True) as r:
        version = _store_call(
            f"rollback {args.name}", lambda: store.rollback_table(r, args.name, settings.namespace)
        )
    print(f"table {args.name}: rolled back, live version is now {version}")
    return 0


def cmd_new_recommender(args: argparse.Namespace) -> int:
    from botify.recommenders.scaffold import ScaffoldError, new_recommender

    folder = args.dir if args.dir is not None else _settings(args).recommenders_dir
    try:
        written = new_recommender(args.name, folder, force=args.force)
    except ScaffoldError as exc:
        raise CLIError(str(exc)) from None
    code, test, config = written
    print(f"wrote {code}\n      {test}\n      {config}")
    print(f"test it:      python -m pytest {test}")
    print(f"switch it on: merge {config} into config/experiments.yml (then restart a running service once:")
    print("              new recommender code is loaded at start)")
    return 0


def _forward(module: str) -> Callable[[list[str]], int]:
    """A command whose own parser lives in botify.cli.MODULE (imported only when run)."""

    def run(argv: list[str]) -> int:
        import importlib

        try:
            mod = importlib.import_module(f"botify.cli.{module}")
        except ImportError as exc:  # an optional dependency of that command is missing
            raise CLIError(f"{module} is not available: {exc}") from None
        return int(mod.main(argv) or 0)

    return run


#: commands that keep their own parser (`botify ab --help` is python -m botify.ab's)
FORWARDED: dict[str, tuple[str, str]] = {
    "ab": ("ab", "A/B verdicts from event logs (python -m botify.ab)"),
    "train": ("train", "train a model from event logs into an artifact (python -m botify.train)"),
    "evaluate": ("evaluate", "offline leaderboard of models and artifacts (python -m botify.evaluate)"),
    "lab": ("lab", "the day loop: traffic, analysis, training, deploy, A/B (python -m botify.lab)"),
    "demo": ("demo", "the whole loop in a few minutes: world, service, A/B traffic, analysis, a model"),
    "contest": ("contest", "homework kit: offline contest make, score, board (python -m botify.contest)"),
}


# -- parser ---------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="botify",
        description="botify: a production-like music recommender service (`python -m botify` is the same).",
    )
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)

    s = sub.add_parser("serve", help="run the HTTP service (granian, N workers)",
                       description="Run the service. Without BOTIFY_REDIS_URL an embedded "
                                   "redis-server is started on a unix socket under the run dir.")
    _common(s)
    s.add_argument("--host", help="address to bind (default $BOTIFY_HOST or 127.0.0.1)")
    s.add_argument("--port", type=int, help="TCP port (default $BOTIFY_PORT or 5001)")
    s.add_argument("--workers", type=int, help="worker processes (default $BOTIFY_WORKERS or 2)")
    s.add_argument("--threads", type=int, default=2,
                   help="WSGI threads per worker (default 2: see docs/service.md)")
    s.add_argument("--catalog", type=Path, metavar="FILE", help="tracks file (default $BOTIFY_CATALOG)")
    s.add_argument("--log-dir", type=Path, metavar="DIR", help="event log dir (default $BOTIFY_LOG_DIR)")
    s.add_argument("--experiments", type=Path, metavar="FILE", help="experiments config (default $BOTIFY_EXPERIMENTS)")
    s.add_argument("--access-log", action="store_true", help="log every request (slow; for debugging)")
    s.add_argument("--app", default="botify.service.app:create_app", metavar="MODULE:FACTORY",
                   help=argparse.SUPPRESS)  # benchmarks serve a bare Flask floor app on the same stack
    s.add_argument("--no-load-catalog", action="store_true", help=argparse.SUPPRESS)
    s.set_defaults(func=cmd_serve)

    ld = sub.add_parser("load", help="load a catalog or a recommendation table into Redis")
    ld_sub = ld.add_subparsers(dest="kind", metavar="WHAT", required=True)
    c = ld_sub.add_parser("catalog", help="load a tracks file (the course's JSON lines)")
    _common(c)
    c.add_argument("file", type=Path, metavar="FILE")
    c.set_defaults(func=cmd_load, no_switch=False)
    t = ld_sub.add_parser("table", help="load a recommendation table as a new version and switch to it")
    _common(t)
    t.add_argument("name", metavar="NAME", help="table name, e.g. i2i")
    t.add_argument("file", type=Path, metavar="FILE")
    t.add_argument("--no-switch", action="store_true",
                   help="load the new version beside the live one without making it live")
    t.set_defaults(func=cmd_load)

    a = sub.add_parser("load-artifact", help="validate an artifact (+ FILE.meta.json), load it, switch atomically")
    _common(a)
    a.add_argument("file", type=Path, metavar="FILE")
    a.add_argument("--as", dest="name", required=True, metavar="NAME", help="table name to load it as")
    a.set_defaults(func=cmd_load_artifact)

    r = sub.add_parser("rollback", help="make the previous version of a table current again")
    _common(r)
    r.add_argument("name", metavar="NAME")
    r.set_defaults(func=cmd_rollback)

    n = sub.add_parser("new-recommender", help="write a working recommender, its test and its config snippet",
                       description="Write NAME.py (the class), test_NAME.py (its test) and NAME.yml (the "
                                   "experiments.yml snippet that switches it on) into the recommenders folder.")
    _common(n)
    n.add_argument("name", metavar="NAME", help="recommender name: lower case, digits and _, e.g. sticky_then_top")
    n.add_argument("--dir", type=Path, metavar="DIR", help="folder (default: the recommenders_dir setting, recommenders/)")
    n.add_argument("--force", action="store_true", help="overwrite existing files")
    n.set_defaults(func=cmd_new_recommender)

    for name, (_module, help_) in FORWARDED.items():
        f = sub.add_parser(name, help=help_, add_help=False)
        f.add_argument("forwarded", nargs=argparse.REMAINDER)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    # forwarded commands hand everything after their name (--help included) to their own parser
    if argv[:1] and argv[0] in FORWARDED:
        command, rest = argv[0], argv[1:]
        args = argparse.Namespace(func=lambda _a: _forward(FORWARDED[command][0])(rest))
    else:
        args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except CLIError as exc:
        print(f"botify: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("botify: interrupted", file=sys.stderr)
        return 130


