"""The /next hot path's few Redis commands, on one raw connection per thread.

Why not the redis-py client: it wraps every command in pooling, retry and
observability layers (~60 us of CPU per command on this kind of machine).
Why not even a redis-py Connection: its Python-level command packing and
its socket timeouts (a poll() before every recv) still cost ~20 us of CPU
and ~20 us of latency per round trip here (see BENCHMARKS.md, "Service").
This module uses hiredis directly (C packing and parsing) on a blocking
socket whose timeouts are kernel socket options, so a round trip is one
send() and usually one recv().

Each thread (and each forked process) owns its connection, opened with the
client's settings (address, db, credentials, timeouts); any error closes it
so the next call starts clean. Errors are redis-py's own exception classes,
so callers (the circuit breaker in botify.service.core) need not know the difference.
Clients this module cannot reproduce exactly (TLS, credential providers) get
a redis-py Connection instead: same interface, just slower.
"""

from __future__ import annotations

import os
import socket
import struct
import threading
from typing import Any

import hiredis
import redis as redis_lib
from redis.connection import Connection, UnixDomainSocketConnection

_RECV = 65536


class RawConnection:
    """A blocking socket with SO_RCVTIMEO/SO_SNDTIMEO, hiredis framing."""

    def __init__(
        self,
        address: str | tuple[str, int],
        *,
        timeout: float | None = None,
        connect_timeout: float | None = None,
        db: int = 0,
        username: str | None = None,
        password: str | None = None,
    ) -> None:
        family = socket.AF_UNIX if isinstance(address, str) else socket.AF_INET
        if family == socket.AF_INET:
            family = socket.getaddrinfo(address[0], address[1], type=socket.SOCK_STREAM)[0][0]
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.settimeout(connect_timeout if connect_timeout is not None else timeout)
            sock.connect(address)
            if family != socket.AF_UNIX:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.settimeout(None)  # blocking: no poll() per call; the kernel enforces the timeouts
            if timeout:
                tv = struct.pack("ll", int(timeout), int(round((timeout % 1) * 1e6)))
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, tv)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, tv)
        except TimeoutError as exc:
            sock.close()
            raise redis_lib.TimeoutError(f"connecting to Redis at {address}: {exc}") from exc
        except OSError as exc:
            sock.close()
            raise redis_lib.ConnectionError(f"connecting to Redis at {address}: {exc}") from exc
        self.sock = sock
        self.reader = hiredis.Reader()
        try:
            if password:
                self.call(*(("AUTH", username, password) if username else ("AUTH", password)))
            if db:
                self.call("SELECT", db)
        except redis_lib.ResponseError as exc:  # as redis-py: a refused handshake is a connection error
            self.disconnect()
            raise redis_lib.AuthenticationError(str(exc)) from exc
        except BaseException:
            self.disconnect()
            raise

    def call(self, *args: Any) -> Any:
        """Send one command and return its reply; an error reply raises redis-py's ResponseError."""
        return self.call_many([args])[0]

    def call_many(self, commands: list[tuple[Any, ...]]) -> list[Any]:
        """Send commands in one write and read all their replies (a pipeline, not a transaction).

        Every reply is read before an error reply is raised, so the connection stays in step.
        """
        sock, reader = self.sock, self.reader
        pack = hiredis.pack_command
        replies: list[Any] = []
        try:
            sock.sendall(b"".join([pack(c) for c in commands]) if len(commands) > 1 else pack(commands[0]))
            n = len(commands)
            while len(replies) < n:
                reply = reader.gets()
                if reply is False:
                    data = sock.recv(_RECV)
                    if not data:
                        raise redis_lib.ConnectionError("Redis closed the connection")
                    reader.feed(data)
                else:
                    replies.append(reply)
        except BlockingIOError as exc:  # EAGAIN from SO_RCVTIMEO / SO_SNDTIMEO
            raise redis_lib.TimeoutError("Redis did not answer in time") from exc
        except hiredis.ProtocolError as exc:
            raise redis_lib.ConnectionError(f"Redis protocol error: {exc}") from exc
        except OSError as exc:
            raise redis_lib.ConnectionError(f"Redis connection failed: {exc}") from exc
        for reply in replies:
            if isinstance(reply, hiredis.ReplyError):
                raise redis_lib.ResponseError(str(reply))
        return replies

    def disconnect(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


class _PyConnection:
    """A redis-py Connection behind the same two methods (TLS and other exotic clients)."""

    def __init__(self, pool: redis_lib.ConnectionPool) -> None:
        self.conn = pool.make_connection()

    def call_many(self, commands: list[tuple[Any, ...]]) -> list[Any]:
        conn = self.conn
        conn.send_packed_command(conn.pack_commands(commands))
        replies: list[Any] = []
        error: redis_lib.ResponseError | None = None
        for _ in commands:
            try:
                replies.append(conn.read_response())
            except redis_lib.ResponseError as exc:  # keep reading: the connection stays in step
                error = error or exc
                replies.append(exc)
        if error is not None:
            raise error
        return replies

    def disconnect(self) -> None:
        self.conn.disconnect()


def _raw_factory(pool: redis_lib.ConnectionPool) -> Any:
    """A zero-argument connection factory reproducing `pool`'s settings, or None."""
    kw = pool.connection_kwargs
    if kw.get("credential_provider") is not None:
        return None
    if pool.connection_class is UnixDomainSocketConnection:
        address: str | tuple[str, int] = kw["path"]
    elif pool.connection_class is Connection:
        address = (kw.get("host", "localhost"), int(kw.get("port", 6379)))
    else:  # SSLConnection and custom classes
        return None
    timeout = kw.get("socket_timeout")
    connect_timeout = kw.get("socket_connect_timeout", timeout)

    def make() -> RawConnection:
        return RawConnection(
            address, timeout=timeout, connect_timeout=connect_timeout, db=int(kw.get("db") or 0),
            username=kw.get("username"), password=kw.get("password"),
        )

    return make


class FastCommands:
    """Pipelines and HMGET for the request path, one connection per thread and process."""

    def __init__(self, client: redis_lib.Redis) -> None:
        pool = client.connection_pool
        self._make = _raw_factory(pool) or (lambda: _PyConnection(pool))
        self._local = threading.local()

    def _conn(self) -> Any:
        local = self._local
        conn = getattr(local, "conn", None)
        pid = os.getpid()
        if conn is None or local.pid != pid:  # first call in this thread, or inherited through fork
            conn = self._make()
            local.conn = conn
            local.pid = pid
        return conn

    def call(self, *args: Any) -> Any:
        """One command, one reply."""
        return self.pipeline([args])[0]

    def pipeline(self, commands: list[tuple[Any, ...]]) -> list[Any]:
        """Several commands in one round trip; their replies in order."""
        conn = self._conn()
        try:
            return conn.call_many(commands)
        except redis_lib.ResponseError:
            raise  # an error reply: the connection is still in a clean state
        except BaseException:
            conn.disconnect()
            self._local.conn = None
            raise

    def hmget(self, key: str, fields: list[bytes]) -> list[bytes | None]:
        return self.call("HMGET", key, *fields)
