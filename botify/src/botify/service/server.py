"""`python -m botify serve`: the production server (granian WSGI, N worker processes).

Why granian: measured with wrk on loopback, 2 workers, 64 connections, the same Flask
app served by granian answers 2-3x the requests per second of gunicorn (sync, gthread
or gevent workers) with a lower p99 (figures and method in docs/service.md). Its HTTP
layer is Rust (hyper): keep-alive, TCP_NODELAY on the listening socket (so Nagle never
adds 40 ms), and only the WSGI callable runs under the GIL.

What the master process does before any worker exists, so that every startup fault is
one clear line and a non-zero exit instead of N workers dying with N tracebacks:

1. settings are read and validated; the log dir must be writable; the catalog must
   parse; the experiments config must be valid; the port must be free;
2. Redis: BOTIFY_REDIS_URL must answer PING, or, without one, an embedded redis-server
   is started on a unix socket under the run dir (see botify.service.embedded_redis);
3. the catalog is loaded into Redis once (workers never race to load it);
4. granian forks the workers, each building the app with the resolved settings.

On SIGTERM/SIGINT granian stops the workers, then the embedded Redis is stopped. Each
worker first drains (see `_install_drain`): for BOTIFY_DRAIN_SECONDS (default 1 s) it
keeps serving, but /health answers 503 and every answer carries `Connection: close`, so
keep-alive clients (nginx upstream pools included) close their connections after a
complete answer instead of having an idle connection cut under a request in flight.
Only then does granian stop: in-flight requests finish and the event log flushes.
"""

from __future__ import annotations

import errno
import gc
import importlib
import inspect
import logging
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from botify.store.settings import Settings

if TYPE_CHECKING:
    from botify.store.catalog import Catalog

log = logging.getLogger("botify.service.server")

DEFAULT_APP = "botify.service.app:create_app"

#: default drain: long enough for every busy keep-alive connection to get one more answer
DEFAULT_DRAIN_SECONDS = 1.0
#: must stay well below WORKER_KILL_TIMEOUT (granian SIGKILLs a worker after that)
MAX_DRAIN_SECONDS = 10.0


class StartupError(RuntimeError):
    """A fault that prevents the service from starting; str() is the one line shown."""


@dataclass(frozen=True)
class ServerOptions:
    """Serving knobs that are not app settings (they do not reach the app)."""

    threads: int = 2
    app_factory: str = DEFAULT_APP
    load_catalog: bool = True
    backlog: int = 2048
    access_log: bool = False
    #: seconds a worker keeps serving with `Connection: close` after SIGTERM (0: no drain;
    #: None: $BOTIFY_DRAIN_SECONDS, else DEFAULT_DRAIN_SECONDS)
    drain_seconds: float | None = None


def drain_seconds_from_env(env: dict[str, str] | None = None) -> float:
    """BOTIFY_DRAIN_SECONDS (default 1.0, 0..10); a bad value is a StartupError."""
    raw = (os.environ if env is None else env).get("BOTIFY_DRAIN_SECONDS", "").strip()
    if not raw:
        return DEFAULT_DRAIN_SECONDS
    try:
        value = float(raw)
    except ValueError:
        raise StartupError(f"BOTIFY_DRAIN_SECONDS must be a number of seconds, got {raw!r}") from None
    if not 0.0 <= value <= MAX_DRAIN_SECONDS:
        raise StartupError(f"BOTIFY_DRAIN_SECONDS must be in 0..{MAX_DRAIN_SECONDS:g}, got {raw}")
    return value


def configure_logging(level: str = "INFO") -> None:
    """One format for the master, the workers and granian: time, pid, level, message."""
    root = logging.getLogger()
    if not any(getattr(h, "_botify", False) for h in root.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(
            logging.Formatter("%(asctime)s [%(process)d] %(levelname)s %(name)s: %(message)s")
        )
        handler._botify = True  # type: ignore[attr-defined]
        root.addHandler(handler)
    root.setLevel(level.upper() if isinstance(level, str) else level)


def _reason(exc: BaseException) -> str:
    """The shortest honest description of an exception, on one line."""
    if isinstance(exc, OSError) and exc.strerror:
        text = exc.strerror
    else:
        text = str(exc) or type(exc).__name__
    return " ".join(text.split())


# -- preflight checks (master, before any worker) ------------------------------------


def check_log_dir(path: Path) -> None:
    """The event log dir exists (or can be created) and accepts a new file."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".botify-write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise StartupError(f"log dir {path} is not writable: {_reason(exc)}") from None


def check_catalog(path: Path) -> Catalog:
    """The catalog parses as a COMPAT tracks file (parsed once, reused for the load)."""
    from botify.store.catalog import Catalog, CatalogError

    if not path.is_file():
        raise StartupError(f"catalog {path} not found (set BOTIFY_CATALOG or --catalog)")
    try:
        return Catalog.from_file(path)
    except CatalogError as exc:
        raise StartupError(f"catalog {path} is invalid: {_reason(exc)}") from None


def check_experiments(settings: Settings, catalog: Catalog) -> None:
    """The experiments config parses and names only known recommenders.

    Same parser as the workers use; a missing file is allowed (the app then serves
    the default recommender to everyone and says so in its log).
    """
    from botify.recommenders import Context
    from botify.service.experiments import ExperimentConfigError, load_experiments_file

    path = settings.experiments_file
    if not path.exists():
        log.warning("no experiments config at %s: every request gets %r", path, settings.default_recommender)
        return
    ctx = Context(catalog, tables=None, seed=settings.seed)
    try:
        load_experiments_file(path, ctx, settings.default_recommender, settings.recommenders_dir)
    except (ExperimentConfigError, OSError, ValueError, TypeError) as exc:
        raise StartupError(f"experiments config {path} is invalid: {_reason(exc)}") from None


def check_port_free(host: str, port: int) -> None:
    """Fail early and clearly if the port is taken.

    granian binds with SO_REUSEPORT, so a second server on a busy port would silently
    share it with the first; a probe bind without SO_REUSEPORT detects that.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise StartupError(f"port {port} on {host} is already in use") from None
            raise StartupError(f"cannot listen on {host}:{port}: {_reason(exc)}") from None


def check_redis(url: str, timeout: float = 2.0) -> None:
    """The given Redis answers PING."""
    import redis

    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=timeout, socket_timeout=timeout)
    except ValueError as exc:
        raise StartupError(f"BOTIFY_REDIS_URL {url!r} is not a Redis URL: {_reason(exc)}") from None
    try:
        client.ping()
    except redis.RedisError as exc:
        raise StartupError(f"cannot reach Redis at {url}: {_reason(exc)}") from None
    finally:
        client.close()


def load_catalog_once(settings: Settings, catalog: Catalog) -> int:
    """Load the catalog into Redis from the master, before the workers exist.

    store.load_catalog is idempotent and once-only across processes (a Redis lock and
    a content digest), so N replicas starting together load it once in total.
    """
    import redis

    from botify import store

    client = redis.Redis.from_url(settings.redis_url or "", socket_timeout=30)
    try:
        return int(store.load_catalog(
            client, settings.catalog, settings.namespace, catalog=catalog,
            timeout=settings.catalog_load_timeout,
        ))
    except (OSError, ValueError, redis.RedisError, store.StoreError) as exc:
        raise StartupError(f"cannot load catalog {settings.catalog} into Redis: {_reason(exc)}") from None
    finally:
        client.close()


# -- workers -------------------------------------------------------------------------


def import_factory(spec: str) -> Callable[..., Any]:
    """'package.module:callable' -> the callable."""
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise StartupError(f"app factory {spec!r} must look like 'package.module:callable'")
    try:
        module = importlib.import_module(module_name)
        return getattr(module, attr)
    except (ImportError, AttributeError) as exc:
        raise StartupError(f"cannot import app factory {spec}: {_reason(exc)}") from None


def _worker_app(
    factory_spec: str, settings: Settings, catalog: Catalog | None, drain_seconds: float = 0.0
) -> Any:
    """Runs in each worker process: build the WSGI app, or exit with one line.

    The catalog parsed by the master is inherited through fork (no re-parse per
    worker) when the factory accepts it.
    """
    _startup_signals_in_worker()
    try:
        factory = import_factory(factory_spec)
        kwargs: dict[str, Any] = {}
        if catalog is not None and "catalog" in inspect.signature(factory).parameters:
            kwargs["catalog"] = catalog
        app = factory(settings, **kwargs)
    except Exception as exc:  # report; no traceback per worker
        print(f"botify: worker {os.getpid()} cannot start: {_reason(exc)}", file=sys.stderr)
        sys.stderr.flush()
        os._exit(3)
    _flush_logs_at_worker_exit()
    _install_drain(app, drain_seconds, settings.port)
    # Everything built so far (modules, catalog, app) lives as long as the worker: move it
    # out of the collector's generations, so full collections scan only per-request
    # garbage (shorter GC pauses, a better p99) and do not touch, hence un-share,
    # the pages inherited from the master.
    gc.freeze()
    return app


def _startup_signals_in_worker() -> None:
    """Close the window in which a starting worker would ignore SIGTERM.

    A forked worker inherits the master's granian handler, which only sets a flag in
    the child's copy of the server: a SIGTERM arriving before granian installs the
    worker's own handler would be lost, the worker would serve on, and the master
    would wait for it forever. So: exit now if the stop already came, else die on
    SIGTERM/SIGINT until the app (whose event log chains onto this) and then granian
    install their handlers. A worker that is still starting has served nothing.
    """
    server = _GRANIAN_SERVER
    if server is not None and getattr(server, "interrupt_signal", False):
        os._exit(0)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _flush_logs_at_worker_exit() -> None:
    """Make the event logs flush when a granian worker stops.

    granian replaces the app's SIGTERM handlers with its own in each worker, and its
    workers are multiprocessing children, which end with os._exit: atexit handlers
    never run there. multiprocessing's own exit finalizers do, after the server has
    drained its in-flight requests, so the writer's queue is written out from there.
    """
    from multiprocessing import util

    def flush() -> None:
        eventlog = sys.modules.get("botify.service.eventlog")
        if eventlog is not None:
            eventlog.close_all(10.0)

    util.Finalize(None, flush, exitpriority=100)


def _listening_sockets(port: int) -> list[int]:
    """File descriptors of this process's TCP sockets listening on `port`.

    On Linux each granian worker binds its own SO_REUSEPORT socket, so these belong to
    this worker alone (a SIGHUP-respawned worker has its own).
    """
    fds = []
    try:
        names = os.listdir("/proc/self/fd")
    except OSError:
        return fds
    for name in names:
        fd = int(name)
        try:
            sock = socket.socket(fileno=fd)
        except OSError:
            continue
        try:
            if (sock.type == socket.SOCK_STREAM and sock.family in (socket.AF_INET, socket.AF_INET6)
                    and sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN)
                    and sock.getsockname()[1] == port):
                fds.append(fd)
        except OSError:
            pass
        finally:
            sock.detach()  # the fd stays open: it is not ours to close
    return fds


def _stop_listening(port: int) -> int:
    """Refuse new connections now; returns how many listening sockets were shut.

    shutdown(SHUT_RD) on a listening socket makes the kernel refuse new connections
    (ECONNREFUSED: a client or nginx retries elsewhere at once) instead of queueing
    them in a backlog that nobody accepts any more and that is reset at exit (a
    client that already sent its request there sees the connection cut).
    """
    n = 0
    for fd in _listening_sockets(port):
        sock = socket.socket(fileno=fd)
        try:
            sock.shutdown(socket.SHUT_RD)
            n += 1
        except OSError:
            pass
        finally:
            sock.detach()
    return n


def _install_drain(app: Any, seconds: float, port: int = 0) -> None:
    """Make this worker drain before granian stops it (see the module docstring).

    granian installs the worker's SIGTERM/SIGINT handlers itself, after this loader
    returns, through granian._signals.set_sync_signals (its WSGI worker looks the
    function up at call time). Wrapping it here, in the worker only, lets our handler
    start the drain and hand the stop to granian's event `seconds` later. Without the
    drain, granian's graceful stop closes idle keep-alive connections at once, and a
    request a client was just sending on one of them fails ("upstream prematurely
    closed connection" behind nginx).
    """
    service = getattr(app, "extensions", {}).get("botify")
    try:
        from granian import _signals
    except ImportError:  # another granian layout: plain (undrained) stop
        log.warning("granian._signals not found: SIGTERM stops this worker without a drain")
        return
    original = getattr(_signals, "set_sync_signals", None)
    worker_signal = getattr(_signals, "WorkerSignal", None)
    if original is None or worker_signal is None or getattr(original, "_botify_drain", False):
        return
    drain = service is not None and seconds > 0

    def set_sync_signals_with_drain() -> Any:
        # granian's own version installs a handler that sets the stop event at once;
        # its WSGI worker registers the callback that ends its main loop only after
        # this returns, so a SIGTERM landing in between was lost and the worker waited
        # for the master's SIGKILL (2 of 8 runs of test_sigterm_while_workers_still_
        # start_stops_promptly). Our handler is the only one, and it sets the event
        # from a timer, never sooner than STOP_DELAY, by which time the callback is on.
        stop_event = worker_signal()
        # Ctrl-C in a terminal sends SIGINT to the whole process group. The master
        # turns it into an orderly SIGTERM per worker; a worker that also acted on
        # the SIGINT itself hung in granian until the master's SIGKILL 15 s later
        # (measured 3 of 3). So workers leave SIGINT to the master.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        started = threading.Event()

        def handler(signum: int, _frame: Any) -> None:
            if started.is_set():  # a second SIGTERM: the stop is already under way
                return
            started.set()
            if drain:
                service.begin_drain()
                log.info("signal %d: draining for %.2f s (health 503, Connection: close), "
                         "then stopping", signum, seconds)

            def stop() -> None:
                # granian first stops accepting (shutting the socket under its accept
                # loop instead made the worker hang until SIGKILL), then the kernel
                # refuses new connections and resets the few left in the backlog now
                # rather than at process exit.
                _set_with_deadline(stop_event, STOP_GRACE)
                if port and drain:
                    time.sleep(0.001)
                    _stop_listening(port)

            timer = threading.Timer(max(seconds if drain else 0.0, STOP_DELAY), stop)
            timer.daemon = True
            timer.start()

        signal.signal(signal.SIGTERM, handler)
        return stop_event

    set_sync_signals_with_drain._botify_drain = True  # type: ignore[attr-defined]
    _signals.set_sync_signals = set_sync_signals_with_drain


#: a worker's stop never comes sooner than this after its SIGTERM (see _install_drain)
STOP_DELAY = 0.1

#: seconds granian gets, once told to stop, before the worker flushes its logs and exits by
#: itself; MAX_DRAIN_SECONDS + STOP_GRACE stays below WORKER_KILL_TIMEOUT
STOP_GRACE = 2.0


def _set_with_deadline(stop_event: Any, grace: float, force_exit: Callable[[int], Any] = os._exit) -> None:
    """Tell granian to stop this worker; if it has not exited `grace` s later, exit anyway.

    Why: granian's stop event, set from our timer thread, is sometimes never acted on:
    the call blocks, or returns while the worker's accept loop never logs "Stopping"
    (about 1 server stop in 6 here, granian 2.8.9, also with the code before 2026-11-30
    and with the event set from the main thread; docs/service.md, "Stopping"). The master would then SIGKILL the worker after
    WORKER_KILL_TIMEOUT, losing the event-log lines still queued. The deadline thread is
    started before the event is set, so a blocked set() cannot hold it back; it flushes
    the event logs (the drain is over: nothing is in flight) and ends the process.
    """

    def deadline() -> None:
        # Not a fault of the stop: measured 2026-12-02 (3 of 10 stops of a 2-worker server,
        # thread dumps taken here): set() had returned, yet granian never ran the worker's
        # stop callback (its main thread still waited in granian's mp._main) nor stopped the
        # accept loop: the stop is lost inside granian's WorkerSignal, and a second set() on
        # a signal whose first was not consumed blocks, so it cannot be retried. The drain is
        # over, nothing is in flight: flushing the event log and exiting is the normal end of
        # such a stop, hence INFO; only lines the log could not flush deserve a warning.
        eventlog = sys.modules.get("botify.service.eventlog")
        unflushed = False
        if eventlog is not None:
            eventlog.close_all(5.0)
            unflushed = any(t is not None and t.is_alive()
                            for t in (getattr(i, "_thread", None) for i in list(eventlog._instances)))
        if unflushed:
            log.warning("worker ended %.1f s after its stop (granian did not act on it) with its "
                        "event log still writing: lines may be lost", grace)
        else:
            log.info("worker ended by botify %.1f s after its stop (granian did not act on it; "
                     "docs/service.md, Stopping): event log flushed", grace)
        force_exit(0)

    watchdog = threading.Timer(grace, deadline)
    watchdog.daemon = True
    watchdog.start()
    stop_event.set()

#: the granian server of this process tree (read by forked workers, see above)
_GRANIAN_SERVER: Any = None

#: seconds a worker gets to drain and flush after SIGTERM before it is killed (safety
#: net; below compose's stop_grace_period of 20 s so the master still cleans up)
WORKER_KILL_TIMEOUT = 15


#: while granian stops its workers, the master repeats SIGTERM to those still alive this often
STOP_RESEND_INTERVAL = 0.5


def _repeat_stop_signal(server: Any) -> None:
    """Make granian's master repeat SIGTERM to workers that are still alive while it stops them.

    Why: granian sends each worker one SIGTERM. A worker still starting can lose it
    (between its app loader and the moment its stop handler is in place: seen as 1 CI
    failure of test_sigterm_while_workers_still_start_stops_promptly on 2026-11-30, the
    worker served on and was SIGKILLed 15 s later). A repeat reaches the handler once it
    is in place; a worker already stopping ignores it (see _install_drain), one still
    starting dies of it, having served nothing. Needs granian's `_stop_workers`; without
    it (another granian layout) the single signal stays.
    """
    original = getattr(server, "_stop_workers", None)
    if original is None:
        return

    def stop_workers() -> None:
        for worker in list(getattr(server, "wrks", [])):
            _settle_join(worker)
        done = threading.Event()

        def resend() -> None:
            while not done.wait(STOP_RESEND_INTERVAL):
                for worker in list(getattr(server, "wrks", [])):
                    try:
                        if worker.is_alive():
                            os.kill(worker.inner.pid, signal.SIGTERM)
                    except (OSError, AttributeError, ValueError):
                        pass  # exited meanwhile, or not a process worker

        threading.Thread(target=resend, name="botify-stop-resend", daemon=True).start()
        try:
            original()
        finally:
            done.set()

    server._stop_workers = stop_workers


def prepare_metrics_dir(base: Path) -> Path:
    """A fresh prometheus_client multiprocess directory for this server run (env var set).

    One subdirectory per master pid under `base`, so two servers sharing a run dir
    never sum each other's workers; those of masters no longer alive are removed.
    """
    import shutil

    from botify.service.embedded_redis import pid_alive
    from botify.service.metrics import prepare_multiprocess_dir

    try:
        base.mkdir(parents=True, exist_ok=True)
        for old in base.glob("server-*"):
            pid = old.name.removeprefix("server-")
            if pid.isdigit() and int(pid) != os.getpid() and not pid_alive(int(pid)):
                shutil.rmtree(old, ignore_errors=True)
        return prepare_multiprocess_dir(base / f"server-{os.getpid()}")
    except OSError as exc:
        raise StartupError(f"metrics dir {base} (under the run dir) is not writable: {_reason(exc)}") from None


def _mark_dead_workers(server: Any) -> None:
    """Tell prometheus_client about every worker granian stops or replaces (its multiprocess contract).

    Wraps granian's `_stop_workers` and `_respawn_workers` (the only places where its
    master ends workers): after each, the workers that ended get `mark_process_dead`.
    Their counters stay in the sums; only live gauges would be dropped.
    """
    from botify.service.metrics import mark_process_dead

    def pids() -> dict[int, Any]:
        out = {}
        for w in list(getattr(server, "wrks", [])):
            pid = getattr(getattr(w, "inner", None), "pid", None)
            if pid is not None:
                out[pid] = w
        return out

    def after(before: dict[int, Any]) -> None:
        for pid, w in before.items():
            try:
                alive = w.is_alive()
            except (OSError, ValueError, AssertionError):
                alive = False
            if not alive:
                mark_process_dead(pid)

    for attr in ("_stop_workers", "_respawn_workers"):
        original = getattr(server, attr, None)
        if original is None:
            continue

        def wrapped(*args: Any, _original: Any = original, **kwargs: Any) -> Any:
            before = pids()
            try:
                return _original(*args, **kwargs)
            finally:
                after(before)

        setattr(server, attr, wrapped)


#: how long a worker whose exit has begun (its file descriptors are closed) gets to be reaped
EXIT_SETTLE = 1.0


def _settle_join(worker: Any) -> None:
    """Make granian's join of a stopping worker also wait for an exit already under way.

    Why: granian joins each worker, then SIGKILLs it with `Killing worker-N after it
    refused to gracefully stop` if it still looks alive. The join returns when the worker's
    sentinel pipe closes, which the kernel does while the process exits but before the
    exit can be reaped; on a loaded machine that gap outlasts granian's 1 ms re-check
    (2026-12-02, load average 11: 3 of 4 runs of test_clean_stops_print_no_warning, 5
    stops each, had such a stop, with every event line written, then the warning and a
    kill of a process that was already exiting; with this, 0 of 6 runs, 30 stops). So after granian's own
    join, a worker whose sentinel is closed gets up to EXIT_SETTLE s to be reaped; one
    still running normally (sentinel open) is left to granian's timeout as before.
    """
    from multiprocessing.connection import wait

    original = getattr(worker, "join", None)
    inner = getattr(worker, "inner", None)
    if original is None or inner is None or getattr(original, "_botify_settle", False):
        return

    def join(timeout: float | None = None) -> None:
        original(timeout)
        try:
            sentinel = inner.sentinel
            deadline = time.monotonic() + EXIT_SETTLE
            while inner.is_alive() and wait([sentinel], 0) and time.monotonic() < deadline:
                time.sleep(0.005)
        except (OSError, ValueError, AttributeError):
            pass  # already reaped and closed, or another worker type: granian decides

    join._botify_settle = True  # type: ignore[attr-defined]
    worker.join = join


def _raise_exit(signum: int, _frame: Any) -> None:
    raise SystemExit(128 + signum)


def run(settings: Settings, options: ServerOptions | None = None) -> int:
    """Start Redis (if embedded), load the catalog, serve until signalled; exit code."""
    options = options or ServerOptions()
    configure_logging(settings.log_level)
    t0 = time.monotonic()
    # Until granian installs its own handlers, a SIGTERM must still run the cleanup below.
    signal.signal(signal.SIGTERM, _raise_exit)
    signal.signal(signal.SIGINT, _raise_exit)
    embedded = None
    metrics_dir: Path | None = None
    try:
        # Before the app (and prometheus_client) is imported: the workers' metrics go to
        # files of this run, summed by /metrics (botify.service.metrics).
        metrics_dir = prepare_metrics_dir(settings.metrics_path)
        # Importing the factory first turns a broken install into one line, not N.
        import_factory(options.app_factory)
        if options.drain_seconds is None:
            options = replace(options, drain_seconds=drain_seconds_from_env())
        check_log_dir(settings.log_dir)
        catalog = None
        if options.load_catalog:
            catalog = check_catalog(settings.catalog)
            check_experiments(settings, catalog)
        check_port_free(settings.host, settings.port)
        if settings.redis_url:
            check_redis(settings.redis_url)
            log.info("using Redis at %s", settings.redis_url)
        else:
            from botify.service.embedded_redis import EmbeddedRedis, EmbeddedRedisError

            embedded = EmbeddedRedis(settings.run_dir)
            try:
                url = embedded.start()
            except EmbeddedRedisError as exc:
                embedded = None
                raise StartupError(str(exc)) from None
            log.info("embedded Redis at %s (redis-server pid %d, no TCP port)", url, embedded.proc.pid)  # type: ignore[union-attr]
            settings = settings.with_overrides(redis_url=url)
        # Children (workers, anything they spawn) see the same Redis.
        os.environ["BOTIFY_REDIS_URL"] = settings.redis_url or ""
        if catalog is not None:
            t_load = time.monotonic()
            n = load_catalog_once(settings, catalog)
            log.info("catalog %s: %d tracks in Redis (%.2f s)", settings.catalog, n, time.monotonic() - t_load)
        log.debug("worker metrics in %s", metrics_dir)
        log.info(
            "serving on http://%s:%d with %d worker(s) x %d thread(s) (granian wsgi); ready to fork after %.2f s",
            settings.host, settings.port, settings.workers, options.threads, time.monotonic() - t0,
        )
        return _serve_granian(settings, options, catalog)
    except StartupError as exc:
        print(f"botify: {exc}", file=sys.stderr)
        return 2
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
        return 0 if code in (0, 128 + signal.SIGTERM, 128 + signal.SIGINT) else code
    finally:
        if embedded is not None:
            embedded.stop()
            log.info("embedded Redis stopped")
        if metrics_dir is not None:  # this run's worker metrics end with it
            import shutil

            shutil.rmtree(metrics_dir, ignore_errors=True)


def build_granian_server(settings: Settings, options: ServerOptions) -> Any:
    """The granian server `serve` runs, with botify's stop handling hooked into its master.

    Public granian interface for everything except the two hooks (`_repeat_stop_signal`,
    `_mark_dead_workers`) and the worker's drain (`_install_drain`): granian has no
    public per-worker stop hook. botify/tests/service/test_granian_internals.py checks
    each of them against the real objects of the pinned granian version.
    """
    from granian.constants import HTTPModes, Interfaces
    from granian.log import LogLevels
    from granian.server import Server

    level = settings.log_level.lower()
    server = Server(
        target=options.app_factory,
        address=settings.host,
        port=settings.port,
        interface=Interfaces.WSGI,
        http=HTTPModes.http1,  # the COMPAT API is HTTP/1.1 (nginx speaks 1.1 upstream): no h2 sniffing
        workers=settings.workers,
        blocking_threads=options.threads,
        backlog=options.backlog,
        log_enabled=True,
        log_level=LogLevels(level) if level in LogLevels._value2member_map_ else LogLevels.info,
        log_access=options.access_log,
        workers_kill_timeout=WORKER_KILL_TIMEOUT,
    )
    _repeat_stop_signal(server)
    _mark_dead_workers(server)
    return server


def _serve_granian(settings: Settings, options: ServerOptions, catalog: Catalog | None) -> int:
    server = build_granian_server(settings, options)
    global _GRANIAN_SERVER
    _GRANIAN_SERVER = server
    # Pre-fork: the master's heap (imports, parsed catalog) is shared copy-on-write with
    # the workers; frozen objects are never traversed by the GC, so those pages stay shared.
    gc.collect()
    gc.freeze()
    try:
        server.serve(
            target_loader=partial(_worker_app, options.app_factory, settings, catalog, options.drain_seconds or 0.0),
            wrap_loader=False,
        )
    except SystemExit as exc:  # granian exits 1 when a worker died
        code = exc.code if isinstance(exc.code, int) else 1
        if code:
            log.error("a worker exited unexpectedly; server stopped (exit %d)", code)
        return code
    return 0
