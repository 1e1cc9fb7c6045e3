"""Shared test helpers: run `python -m botify serve` as a real process and wait for it.

Used by the serve, CLI and topology tests, and by anyone who needs the service over
real HTTP. Everything is on free loopback ports and private temp dirs; a service is
always stopped (SIGTERM, then SIGKILL) when its context exits, even on test failure.

    with botify_service(redis_url=redis_url, catalog=cat, log_dir=tmp / "logs") as svc:
        requests.post(f"{svc.url}/next/1", json={"track": 0, "time": 0.5})
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def write_catalog(path: Path, n: int, *, artists: int | None = None) -> Path:
    """A COMPAT tracks file with ids 0..n-1 (deterministic, no randomness)."""
    artists = artists or max(1, n // 10)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as f:
        for i in range(n):
            f.write(json.dumps({
                "track": i,
                "artist": f"Artist {i % artists}",
                "title": f"Track {i}",
                "genres": ["test"],
                "year": 2000 + i % 25,
            }) + "\n")
    return path


def write_experiments(path: Path, arms: Mapping[str, str] | None = None, name: str = "TEST") -> Path:
    """An experiments config with one experiment (default: an A/A test on `random`)."""
    arms = arms or {"C": "random", "T1": "random"}
    lines = ["experiments:", f"  - name: {name}", "    arms:"]
    lines += [f"      {arm}: {rec}" for arm, rec in arms.items()]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def http_get(url: str, timeout: float = 2.0) -> tuple[int, bytes]:
    """GET without raising on 4xx/5xx: (status, body)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def http_post_json(url: str, body: object, timeout: float = 5.0) -> tuple[int, bytes]:
    """POST a JSON body without raising on 4xx/5xx: (status, body)."""
    req = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


@dataclass
class ServiceProcess:
    """A running `python -m botify serve`; stderr goes to a file (read with .output())."""

    proc: subprocess.Popen[bytes]
    host: str
    port: int
    log_dir: Path
    run_dir: Path
    stderr_path: Path
    started_in: float = 0.0
    argv: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def output(self) -> str:
        return self.stderr_path.read_text(encoding="utf-8", errors="replace")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20.0) -> int:
        """Signal the server, wait for it (and its workers) to exit; returns the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        return int(self.proc.returncode)


def service_command(*args: str) -> list[str]:
    """argv for `python -m botify ...` with this interpreter."""
    return [sys.executable, "-m", "botify", *args]


def service_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment for a service child: no ambient BOTIFY_*, the repo importable."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("BOTIFY_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH", "")]))
    env.setdefault("PYTHONUNBUFFERED", "1")
    env.update(extra or {})
    return env


def start_service(
    *,
    catalog: Path,
    log_dir: Path,
    redis_url: str | None = None,
    experiments: Path | None = None,
    workers: int = 1,
    port: int | None = None,
    run_dir: Path | None = None,
    namespace: str | None = None,
    extra_args: Sequence[str] = (),
    extra_env: Mapping[str, str] | None = None,
    wait: bool = True,
    timeout: float = 60.0,
) -> ServiceProcess:
    """Start the service; with wait=True return once GET /health answers 200."""
    port = port or free_port()
    run_dir = run_dir or Path(tempfile.mkdtemp(prefix="botify-run-"))
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        out_dir = run_dir
    except OSError:  # a test of an unusable run dir: the server must report it, not us
        out_dir = Path(tempfile.mkdtemp(prefix="botify-out-"))
    env = {
        "BOTIFY_CATALOG": str(catalog),
        "BOTIFY_LOG_DIR": str(log_dir),
        "BOTIFY_RUN_DIR": str(run_dir),
        "BOTIFY_HOST": "127.0.0.1",
        "BOTIFY_PORT": str(port),
        "BOTIFY_WORKERS": str(workers),
    }
    if experiments is not None:
        env["BOTIFY_EXPERIMENTS"] = str(experiments)
    if redis_url:
        env["BOTIFY_REDIS_URL"] = redis_url
    if namespace:
        env["BOTIFY_NAMESPACE"] = namespace
    argv = service_command("serve", *extra_args)
    stderr_path = out_dir / "service.stderr"
    t0 = time.monotonic()
    with stderr_path.open("wb") as err:
        proc = subprocess.Popen(
            argv, cwd=REPO, env=service_env({**env, **(extra_env or {})}),
            stdin=subprocess.DEVNULL, stdout=err, stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: cleanup can reach the workers
        )
    svc = ServiceProcess(proc, "127.0.0.1", port, log_dir, run_dir, stderr_path, argv=argv)
    if wait:
        try:
            wait_healthy(svc, timeout)
        except BaseException:
            svc.stop(signal.SIGKILL if proc.poll() is None else signal.SIGTERM)
            raise
        svc.started_in = time.monotonic() - t0
    return svc


def wait_healthy(svc: ServiceProcess, timeout: float = 60.0) -> None:
    """Poll GET /health until 200; fail with the server's output if it exits or times out."""
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        if svc.proc.poll() is not None:
            raise RuntimeError(f"service exited with {svc.proc.returncode}:\n{svc.output()[-4000:]}")
        try:
            status, body = http_get(f"{svc.url}/health", timeout=1.0)
            if status == 200:
                return
            last = f"{status} {body[:200]!r}"
        except OSError as exc:
            last = str(exc)
        time.sleep(0.02)
    raise RuntimeError(f"service not healthy after {timeout:.0f} s ({last}):\n{svc.output()[-4000:]}")


@contextmanager
def botify_service(**kwargs: object) -> Iterator[ServiceProcess]:
    """start_service(...) as a context manager that always stops the service."""
    svc = start_service(**kwargs)  # type: ignore[arg-type]
    try:
        yield svc
    finally:
        svc.stop()


def children_of(pid: int) -> list[int]:
    """Live descendant pids of a process (Linux /proc walk; no psutil needed)."""
    kids: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="utf-8") as f:
                stat = f.read()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        kids.setdefault(ppid, []).append(int(entry))
    out: list[int] = []
    todo = [pid]
    while todo:
        p = todo.pop()
        for c in kids.get(p, []):
            out.append(c)
            todo.append(c)
    return out


def pid_alive(pid: int) -> bool:
    """True while a process exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False
