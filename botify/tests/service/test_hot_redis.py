"""The hot path's raw Redis connection against a real redis-server (TCP and unix socket)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
import redis
from botify.service.embedded_redis import EmbeddedRedis
from botify.service.hot_redis import FastCommands, RawConnection, _PyConnection, _raw_factory
from botify.store import connect


def test_commands_replies_and_error_replies(redis_url: str) -> None:
    fast = FastCommands(connect(redis_url))
    assert fast.call("PING") == b"PONG"
    assert fast.call("HSET", "h", "a", b"\x00\x01", "b", 7) == 2
    assert fast.hmget("h", [b"a", b"missing", b"b"]) == [b"\x00\x01", None, b"7"]
    with pytest.raises(redis.ResponseError, match="WRONGTYPE"):
        fast.call("LPUSH", "h", "x")
    assert fast.call("PING") == b"PONG"  # an error reply leaves the connection usable


def test_pipeline_replies_in_order_and_errors_keep_the_connection_in_step(redis_url: str) -> None:
    fast = FastCommands(connect(redis_url))
    assert fast.pipeline([("LPUSH", "l", "a"), ("LPUSH", "l", "b"), ("LRANGE", "l", 0, -1), ("SADD", "s", 1)]) == [
        1, 2, [b"b", b"a"], 1,
    ]
    with pytest.raises(redis.ResponseError, match="WRONGTYPE"):
        fast.pipeline([("SET", "x", 1), ("LPUSH", "x", "y"), ("SET", "after", 2)])
    assert fast.call("GET", "after") == b"2"  # the command after the error ran, its reply was read
    assert fast.call("PING") == b"PONG"
    big = [("LPUSH", "big", "v" * 1000)] * 300  # replies and request larger than one recv()
    assert fast.pipeline(big)[-1] == 300
    assert len(b"".join(fast.call("LRANGE", "big", 0, -1))) == 300_000


def test_database_number_of_the_url_is_selected(redis_url: str) -> None:
    url = redis_url.rsplit("/", 1)[0] + "/5"
    FastCommands(connect(url)).call("SET", "where", "db5")
    assert redis.Redis.from_url(url).get("where") == b"db5"
    assert redis.Redis.from_url(redis_url).get("where") is None


def test_password_is_sent(redis_url: str) -> None:
    admin = redis.Redis.from_url(redis_url)
    admin.config_set("requirepass", "s3cret")
    try:
        host_port = redis_url.split("//", 1)[1].split("/", 1)[0]
        assert FastCommands(connect(f"redis://:s3cret@{host_port}/0")).call("PING") == b"PONG"
        with pytest.raises(redis.AuthenticationError):  # a ConnectionError: the breaker counts it
            FastCommands(connect(f"redis://:wrong@{host_port}/0")).call("PING")
    finally:
        redis.Redis.from_url(redis_url.replace("//", "//:s3cret@", 1)).config_set("requirepass", "")


def test_slow_reply_raises_redis_timeout_and_the_next_call_reconnects(redis_url: str) -> None:
    fast = FastCommands(connect(redis_url, timeout=0.2))
    t0 = time.monotonic()
    with pytest.raises(redis.TimeoutError):
        fast.call("BLPOP", "never-pushed", 2)  # the server holds the reply for 2 s
    assert 0.15 < time.monotonic() - t0 < 1.5
    assert fast.call("PING") == b"PONG"  # a fresh connection: the late BLPOP reply cannot be misread


def test_unreachable_redis_raises_connection_error(tmp_path: Path) -> None:
    with pytest.raises(redis.ConnectionError):
        FastCommands(connect(f"unix://{tmp_path}/nothing.sock")).call("PING")
    with pytest.raises(redis.ConnectionError):
        RawConnection(("127.0.0.1", 1), timeout=0.2)


def test_server_going_away_is_a_connection_error_then_recovery(redis_factory) -> None:  # type: ignore[no-untyped-def]
    with redis_factory() as server:
        fast = FastCommands(connect(server.url))
        assert fast.call("PING") == b"PONG"
        server.stop()
        with pytest.raises(redis.ConnectionError):
            fast.call("PING")
        server.start()
        assert fast.call("PING") == b"PONG"


def test_unix_socket_of_the_embedded_redis(tmp_path: Path) -> None:
    server = EmbeddedRedis(tmp_path / "run", persist=False)
    url = server.start()
    try:
        assert url.startswith("unix://")
        fast = FastCommands(connect(url))
        assert isinstance(fast._conn(), RawConnection)
        assert fast.call("SET", "a", 1) == b"OK"
        assert fast.call("GET", "a") == b"1"
    finally:
        server.stop()


def test_tls_clients_keep_the_redis_py_connection(redis_url: str) -> None:
    tls = redis.Redis.from_url("rediss://127.0.0.1:1/0", socket_connect_timeout=0.2)
    assert _raw_factory(tls.connection_pool) is None
    with pytest.raises(redis.ConnectionError):
        FastCommands(tls).call("PING")  # nothing listens there; redis-py's SSL connection says so
    plain = _PyConnection(connect(redis_url).connection_pool)  # the same interface, redis-py inside
    assert plain.call_many([("PING",), ("ECHO", "x")]) == [b"PONG", b"x"]
    plain.disconnect()


def test_one_connection_per_thread_and_per_forked_process(redis_url: str) -> None:
    import threading

    fast = FastCommands(connect(redis_url))
    ids = {fast.call("CLIENT", "ID")}
    t = threading.Thread(target=lambda: ids.add(fast.call("CLIENT", "ID")))
    t.start()
    t.join()
    assert len(ids) == 2
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        try:
            os.write(w, str(fast.call("CLIENT", "ID")).encode())
        finally:
            os._exit(0)
    os.close(w)
    os.waitpid(pid, 0)
    child_id = int(os.read(r, 64))
    os.close(r)
    assert child_id not in ids  # the child never writes on its parent's socket


def test_redis_py_fallback_pipeline_reads_every_reply_after_an_error(redis_url: str) -> None:
    conn = _PyConnection(connect(redis_url).connection_pool)
    try:
        with pytest.raises(redis.ResponseError, match="WRONGTYPE"):
            conn.call_many([("SET", "k", 1), ("LPUSH", "k", "x"), ("SET", "after", 2)])
        assert conn.call_many([("GET", "after"), ("PING",)]) == [b"2", b"PONG"]  # still in step
    finally:
        conn.disconnect()
