"""The embedded Redis: real redis-server, unix socket only, one owner, nothing left behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import redis
from botify.service.embedded_redis import (
    EmbeddedRedis,
    EmbeddedRedisError,
    redis_url_for_cli,
    running_url,
)


def _tcp_listen_inodes() -> set[str]:
    """Socket inodes of every TCP socket in LISTEN state (IPv4 and IPv6)."""
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            cols = line.split()
            if cols[3] == "0A":  # TCP_LISTEN
                inodes.add(cols[9])
    return inodes


def _socket_inodes(pid: int) -> set[str]:
    out: set[str] = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            out.add(target[8:-1])
    return out


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_embedded_redis_is_real_on_unix_socket_without_tcp(tmp_path: Path) -> None:
    server = EmbeddedRedis(tmp_path / "run")
    url = server.start()
    try:
        assert url.startswith("unix://") and url.endswith("redis.sock?db=0")
        client = redis.Redis.from_url(url)
        assert client.ping()
        assert client.info("server")["redis_version"]  # a genuine server answers INFO
        pid = server.proc.pid  # type: ignore[union-attr]
        assert not (_socket_inodes(pid) & _tcp_listen_inodes()), "embedded Redis listens on TCP"
        assert running_url(tmp_path / "run") == url
        assert (tmp_path / "run").stat().st_mode & 0o077 == 0, "run dir must be private (0700)"
        client.close()
    finally:
        server.stop()
    assert not _alive(pid)
    assert running_url(tmp_path / "run") is None
    assert not Path(server.socket_path).exists()


def test_data_survives_a_clean_restart(tmp_path: Path) -> None:
    with EmbeddedRedis(tmp_path) as first:
        redis.Redis.from_url(first.url).set("k", "v")
    with EmbeddedRedis(tmp_path) as second:
        assert redis.Redis.from_url(second.url).get("k") == b"v"


def test_second_owner_of_the_same_run_dir_is_refused(tmp_path: Path) -> None:
    with EmbeddedRedis(tmp_path):
        with pytest.raises(EmbeddedRedisError, match="already runs the embedded Redis"):
            EmbeddedRedis(tmp_path).start()


def test_long_run_dir_gets_a_short_socket_path(tmp_path: Path) -> None:
    deep = tmp_path / ("d" * 60) / ("e" * 60)
    with EmbeddedRedis(deep) as server:
        assert len(server.socket_path) < 108
        assert redis.Redis.from_url(server.url).ping()
        short_dir = os.path.dirname(server.socket_path)
    assert not os.path.exists(short_dir)


def test_cli_url_prefers_given_url_then_live_server_then_temporary(tmp_path: Path) -> None:
    with redis_url_for_cli("redis://example.invalid:1/0", tmp_path) as url:
        assert url == "redis://example.invalid:1/0"
    with EmbeddedRedis(tmp_path) as live:
        with redis_url_for_cli(None, tmp_path) as url:
            assert url == live.url
    with redis_url_for_cli(None, tmp_path) as url:
        redis.Redis.from_url(url).set("loaded", "1")
    assert running_url(tmp_path) is None  # the temporary server is gone...
    with EmbeddedRedis(tmp_path) as again:  # ...and what was loaded through it is kept
        assert redis.Redis.from_url(again.url).get("loaded") == b"1"


def test_redis_dies_with_its_owner_even_on_sigkill(tmp_path: Path) -> None:
    script = textwrap.dedent(f"""
        import sys, time
        from botify.service.embedded_redis import EmbeddedRedis
        s = EmbeddedRedis({str(tmp_path)!r})
        s.start()
        print(s.proc.pid, flush=True)
        time.sleep(60)
    """)
    owner = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        redis_pid = int(owner.stdout.readline())  # type: ignore[union-attr]
        assert _alive(redis_pid)
        owner.send_signal(signal.SIGKILL)
        owner.wait(timeout=10)
        deadline = time.monotonic() + 10
        while _alive(redis_pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _alive(redis_pid), "redis-server outlived its SIGKILLed owner"
    finally:
        if owner.poll() is None:
            owner.kill()
            owner.wait()
