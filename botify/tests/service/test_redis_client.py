"""The service's Redis traffic: redis-py with hiredis, against a real redis-server (TCP and unix socket)."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest
import redis
from botify.service.embedded_redis import EmbeddedRedis
from botify.store import connect
from redis.utils import HIREDIS_AVAILABLE


def test_hiredis_parses_the_replies(app) -> None:  # type: ignore[no-untyped-def]
    service = app.extensions["botify"]
    assert HIREDIS_AVAILABLE
    assert service.pipeline([("PING",)]) == [True]
    conn = service.redis.connection_pool.get_connection()
    try:
        assert type(conn._parser).__name__ == "_HiredisParser"
    finally:
        service.redis.connection_pool.release(conn)


def test_pipeline_replies_in_order_and_errors_keep_the_connection_in_step(app) -> None:  # type: ignore[no-untyped-def]
    service = app.extensions["botify"]
    assert service.pipeline([("LPUSH", "l", "a"), ("LPUSH", "l", "b"), ("LRANGE", "l", 0, -1), ("SADD", "s", 1)]) == [
        1, 2, [b"b", b"a"], 1,
    ]
    with pytest.raises(redis.ResponseError, match="WRONGTYPE"):
        service.pipeline([("SET", "x", 1), ("LPUSH", "x", "y"), ("SET", "after", 2)])
    assert service.redis.get("after") == b"2"  # the command after the error ran, its reply was read
    assert service.pipeline([("PING",)]) == [True]
    big = [("LPUSH", "big", "v" * 1000)] * 300  # replies and request larger than one recv()
    assert service.pipeline(big)[-1] == 300
    assert len(b"".join(service.redis.lrange("big", 0, -1))) == 300_000


def test_the_state_round_trip_is_one_pipeline_of_nine_commands(app, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    service = app.extensions["botify"]
    sent: list[list[tuple]] = []
    real = service.pipeline
    monkeypatch.setattr(service, "pipeline", lambda cmds: sent.append(list(cmds)) or real(cmds))
    assert app.test_client().post("/next/7", json={"track": 3, "time": 0.5}).status_code == 200
    assert [[c[0] for c in cmds] for cmds in sent] == [
        ["LPUSH", "LTRIM", "EXPIRE", "SADD", "EXPIRE", "LRANGE", "SMEMBERS", "INCR", "EXPIRE"]
    ]
    assert app.test_client().post("/last/7", json={"track": 4, "time": 1.0}).status_code == 200
    assert [c[0] for c in sent[-1]] == ["LPUSH", "LTRIM", "EXPIRE", "DEL", "INCR", "EXPIRE"]
    assert service.redis.exists(service.keys.session(7)) == 0


def test_database_number_of_the_url_is_selected(redis_url: str) -> None:
    url = redis_url.rsplit("/", 1)[0] + "/5"
    connect(url).set("where", "db5")
    assert redis.Redis.from_url(url).get("where") == b"db5"
    assert redis.Redis.from_url(redis_url).get("where") is None


def test_password_is_sent(redis_url: str) -> None:
    admin = redis.Redis.from_url(redis_url)
    admin.config_set("requirepass", "s3cret")
    try:
        host_port = redis_url.split("//", 1)[1].split("/", 1)[0]
        assert connect(f"redis://:s3cret@{host_port}/0").ping()
        with pytest.raises(redis.AuthenticationError):  # a ConnectionError: the breaker counts it
            connect(f"redis://:wrong@{host_port}/0").ping()
    finally:
        redis.Redis.from_url(redis_url.replace("//", "//:s3cret@", 1)).config_set("requirepass", "")


def test_slow_reply_raises_redis_timeout_and_the_next_call_reconnects(redis_url: str) -> None:
    client = connect(redis_url, timeout=0.2)
    t0 = time.monotonic()
    with pytest.raises(redis.TimeoutError):
        client.execute_command("BLPOP", "never-pushed", 2)  # the server holds the reply for 2 s
    assert 0.15 < time.monotonic() - t0 < 1.5
    client.lpush("never-pushed", "late")  # a stale connection would misread BLPOP's late reply
    assert client.execute_command("PING") is True
    assert client.lrange("never-pushed", 0, -1) == [b"late"]


def test_unreachable_redis_raises_connection_error_without_retrying(tmp_path: Path) -> None:
    t0 = time.monotonic()
    with pytest.raises(redis.ConnectionError):
        connect(f"unix://{tmp_path}/nothing.sock").ping()
    with pytest.raises(redis.ConnectionError):
        connect("redis://127.0.0.1:1/0", timeout=0.2).ping()
    assert time.monotonic() - t0 < 1.0


def test_server_going_away_is_a_connection_error_then_recovery(redis_factory) -> None:  # type: ignore[no-untyped-def]
    with redis_factory() as server:
        client = connect(server.url)
        assert client.ping()
        server.stop()
        with pytest.raises(redis.ConnectionError):
            client.pipeline(transaction=False).ping().execute()
        server.start()
        assert client.pipeline(transaction=False).ping().execute() == [True]


def test_unix_socket_of_the_embedded_redis(tmp_path: Path) -> None:
    server = EmbeddedRedis(tmp_path / "run", persist=False)
    url = server.start()
    try:
        assert url.startswith("unix://")
        client = connect(url)
        assert client.set("a", 1) is True
        assert client.get("a") == b"1"
    finally:
        server.stop()


def test_threads_and_forked_processes_never_share_a_connection(redis_url: str) -> None:
    client = connect(redis_url)
    ids = {client.client_id()}
    barrier = threading.Barrier(2)

    def in_thread() -> None:  # two calls in flight at once need two connections
        pipe = client.pipeline(transaction=False)
        pipe.execute_command("CLIENT", "ID")
        barrier.wait(5)
        ids.add(pipe.execute()[0])

    threads = [threading.Thread(target=in_thread) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(ids) >= 2
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        try:
            os.write(w, str(client.client_id()).encode())
        finally:
            os._exit(0)
    os.close(w)
    os.waitpid(pid, 0)
    child_id = int(os.read(r, 64))
    os.close(r)
    assert child_id not in ids  # the child never writes on its parent's socket
