"""The asyncio HTTP/1.1 client against scripted raw responses (framing, keep-alive, retries)."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Callable

import pytest
from sim.agents.remote import RemoteAgent
from sim.client import AsyncClient, ClientOptions, ServiceError

Script = Callable[[socket.socket, int], bool]  # (conn, request index) -> keep connection open?


class RawServer:
    """Reads HTTP requests and answers each with a scripted function writing raw bytes."""

    def __init__(self, script: Script) -> None:
        self.script = script
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = int(self.sock.getsockname()[1])
        self.requests: list[bytes] = []
        self.connections = 0
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with self.lock:
                self.connections += 1
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        buf = b""
        with conn:
            while True:
                while b"\r\n\r\n" not in buf:
                    data = conn.recv(65536)
                    if not data:
                        return
                    buf += data
                head, _, rest = buf.partition(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n")[1:]:
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":")[1])
                while len(rest) < length:
                    rest += conn.recv(65536)
                buf = rest[length:]
                with self.lock:
                    self.requests.append(head + b"\r\n\r\n" + rest[:length])
                    index = len(self.requests) - 1
                if not self.script(conn, index):
                    return

    def close(self) -> None:
        self.sock.close()


def ok(body: bytes = b'{"user": 1, "track": 3}') -> bytes:
    return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)


def run_next(port: int, n: int = 1, **opts) -> list[int]:
    """n sequential /next calls on one connection slot; returns the recommended tracks."""
    options = ClientOptions(port=port, retries=opts.pop("retries", 2), backoff=0.01, **opts)
    agent = RemoteAgent(options, n_tracks=10)

    async def go() -> list[int]:
        slot: list = [None]
        out = [await agent.next(slot, 1, 2, 0.5) for _ in range(n)]
        if slot[0] is not None:
            slot[0].close()
        return out

    return asyncio.run(go())


def test_request_bytes_are_compat_http11():
    srv = RawServer(lambda c, i: c.sendall(ok()) or True)
    assert run_next(srv.port, 3) == [3, 3, 3]
    req = srv.requests[0]
    head, body = req.split(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    assert lines[0] == b"POST /next/1 HTTP/1.1"
    assert b"Content-Type: application/json" in lines
    assert b"Content-Length: %d" % len(body) in lines
    assert any(line.startswith(b"Host: 127.0.0.1:") for line in lines)
    assert body == b'{"track":2,"time":0.5}'
    assert srv.connections == 1  # keep-alive: three requests, one connection
    srv.close()


def test_split_packets_and_chunked_bodies():
    def script(c: socket.socket, i: int) -> bool:
        if i == 0:  # headers and body trickle in byte groups
            data = ok(b'{"user": 1, "track": 4}')
            for k in range(0, len(data), 7):
                c.sendall(data[k:k + 7])
                time.sleep(0.001)
        else:  # chunked, as a proxy may send it
            c.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                      b"a\r\n{\"user\": 1\r\n" b"d\r\n, \"track\": 5}\r\n" b"0\r\n\r\n")
        return True

    srv = RawServer(script)
    assert run_next(srv.port, 2) == [4, 5]
    assert srv.connections == 1
    srv.close()


def test_connection_close_and_http10_until_eof():
    def script(c: socket.socket, i: int) -> bool:
        if i == 0:
            body = b'{"user": 1, "track": 6}'
            c.sendall(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: %d\r\n\r\n%s"
                      % (len(body), body))
        else:
            c.sendall(b'HTTP/1.0 200 OK\r\n\r\n{"user": 1, "track": 7}')
        return False  # server closes after each answer

    srv = RawServer(script)
    assert run_next(srv.port, 2) == [6, 7]
    assert srv.connections == 2
    srv.close()


def test_stale_keepalive_connection_is_reopened_without_backoff():
    def script(c: socket.socket, i: int) -> bool:
        c.sendall(ok())
        return i != 0  # close silently after the first answer, as an idle timeout would

    srv = RawServer(script)
    t0 = time.perf_counter()
    assert run_next(srv.port, 2, retries=0) == [3, 3]  # no retries allowed: the stale retry is free
    assert time.perf_counter() - t0 < 2
    assert srv.connections == 2
    srv.close()


def test_5xx_then_success_is_retried_and_counted_once():
    def script(c: socket.socket, i: int) -> bool:
        if i < 2:
            c.sendall(b"HTTP/1.1 503 Busy\r\nContent-Length: 4\r\n\r\nbusy")
        else:
            c.sendall(ok())
        return True

    srv = RawServer(script)
    assert run_next(srv.port, 1, retries=2) == [3]
    assert len(srv.requests) == 3
    srv.close()


def test_5xx_forever_gives_one_line_error():
    srv = RawServer(lambda c, i: c.sendall(b"HTTP/1.1 500 Boom\r\nContent-Length: 2\r\n\r\nno") or True)
    with pytest.raises(ServiceError) as e:
        run_next(srv.port, 1, retries=2)
    msg = str(e.value)
    assert "\n" not in msg and "3 attempt(s)" in msg and "HTTP 500" in msg
    srv.close()


def test_4xx_is_not_retried():
    srv = RawServer(lambda c, i: c.sendall(
        b'HTTP/1.1 404 Not Found\r\nContent-Length: 13\r\n\r\n{"error": ""}') or True)
    with pytest.raises(ServiceError, match="HTTP 404 to POST /next/1"):
        run_next(srv.port, 1, retries=3)
    assert len(srv.requests) == 1
    srv.close()


def test_timeout_is_retried_then_reported():
    srv = RawServer(lambda c, i: (time.sleep(0.5), True)[1])  # never answers in time
    with pytest.raises(ServiceError, match=r"no answer within 0.1 s"):
        run_next(srv.port, 1, retries=1, timeout=0.1)
    assert len(srv.requests) == 2
    srv.close()


def test_user_mismatch_and_non_object_answers():
    srv = RawServer(lambda c, i: c.sendall(ok(b'{"user": 2, "track": 3}')) or True)
    with pytest.raises(ServiceError, match="for user 2"):
        run_next(srv.port)
    srv.close()
    srv = RawServer(lambda c, i: c.sendall(ok(b"[1, 2]")) or True)
    with pytest.raises(ServiceError, match="without an integer 'track'"):
        run_next(srv.port)
    srv.close()
    srv = RawServer(lambda c, i: c.sendall(ok(b'{"user": 1, "track": true}')) or True)
    with pytest.raises(ServiceError, match="without an integer 'track'"):
        run_next(srv.port)
    srv.close()


def test_build_get_and_counters():
    client = AsyncClient(ClientOptions(host="example", port=81))
    assert client.build_get(b"/track/1") == b"GET /track/1 HTTP/1.1\r\nHost: example:81\r\n\r\n"
    assert client.requests == 0 and client.retried == 0


def test_timeouts_keep_working_across_event_loops():
    """The CLI runs one asyncio loop per day with the same client: the watchdog follows."""
    state = {"slow": False}

    def script(c: socket.socket, i: int) -> bool:
        if state["slow"]:
            time.sleep(0.6)
            return False
        c.sendall(ok())
        return True

    srv = RawServer(script)
    agent = RemoteAgent(ClientOptions(port=srv.port, retries=0, timeout=0.2), n_tracks=10)

    async def one() -> int:
        slot: list = [None]
        try:
            return await agent.next(slot, 1, 2, 0.5)
        finally:
            if slot[0] is not None:
                slot[0].close()

    assert asyncio.run(one()) == 3
    state["slow"] = True
    t0 = time.perf_counter()
    with pytest.raises(ServiceError, match="no answer within 0.2 s"):
        asyncio.run(one())
    assert time.perf_counter() - t0 < 0.55
    srv.close()
