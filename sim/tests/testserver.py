"""A tiny real HTTP/1.1 server speaking the COMPAT API, for the simulator's tests.

It is a threaded ``http.server`` with persistent connections (HTTP/1.1,
Content-Length), so the remote agent is exercised over real sockets and
keep-alive exactly as it would be against botify or nginx. Tests can queue
faults (5xx, dropped connections, non-JSON, missing fields, out-of-catalog ids)
and inspect every request it saw.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

Recommend = Callable[[int, int, float], int]


@dataclass
class Seen:
    method: str
    path: str
    body: dict[str, Any] | None
    connection: int  # id of the TCP connection, to check keep-alive reuse


@dataclass
class ServerState:
    n_tracks: int
    recommend: Recommend
    faults: deque[str] = field(default_factory=deque)  # any POST: "500", "drop", "slow"
    # /next only: "garbage" (non-JSON), "missing" (no track), "outside" (id past the catalog), "ok"
    next_faults: deque[str] = field(default_factory=deque)
    seen: list[Seen] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    connections: int = 0
    titles: Callable[[int], dict[str, Any]] | None = None

    def take_fault(self, kind: str) -> str | None:
        with self.lock:
            if self.faults:
                return self.faults.popleft()
            if kind == "next" and self.next_faults:
                return self.next_faults.popleft()
            return None


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def setup(self) -> None:
        super().setup()
        # headers and body are separate writes: without NODELAY, Nagle + delayed ACK add 40 ms
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self.server.state.lock:
            self.server.state.connections += 1
            self.conn_id = self.server.state.connections

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _send(self, status: int, payload: Any, raw: bytes | None = None) -> None:
        body = raw if raw is not None else json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _record(self, body: dict[str, Any] | None) -> None:
        with self.server.state.lock:
            self.server.state.seen.append(Seen(self.command, self.path, body, self.conn_id))

    def do_GET(self) -> None:
        st = self.server.state
        self._record(None)
        if self.path == "/":
            self._send(200, {"status": "alive", "message": "test server"})
            return
        if self.path.startswith("/track/"):
            try:
                t = int(self.path.rsplit("/", 1)[1])
            except ValueError:
                self._send(404, {"error": "not found"})
                return
            if 0 <= t < st.n_tracks:
                info = st.titles(t) if st.titles else {"artist": f"Artist {t}", "title": f"Song {t}"}
                self._send(200, {"track": t, **info})
            else:
                self._send(404, {"error": f"unknown track {t}"})
            return
        self._send(404, {"error": "not found"})

    def do_POST(self) -> None:
        st = self.server.state
        length = int(self.headers.get("Content-Length", "0"))
        raw = self.rfile.read(length)
        try:
            body = json.loads(raw)
        except ValueError:
            self._send(400, {"error": "bad json"})
            return
        parts = self.path.strip("/").split("/")
        if len(parts) != 2 or parts[0] not in ("next", "last") or not parts[1].isdigit():
            self._send(404, {"error": "not found"})
            return
        fault = st.take_fault(parts[0])
        if fault == "drop":  # close the socket without answering
            self.close_connection = True
            self.connection.close()
            return
        if fault == "slow":
            time.sleep(1.0)
        if fault == "500":
            self._send(500, {"error": "injected"})
            return
        self._record(body)
        user = int(parts[1])
        if parts[0] == "last":
            self._send(200, {"user": user})
            return
        if fault == "garbage":
            self._send(200, None, raw=b"<html>oops</html>")
        elif fault == "missing":
            self._send(200, {"user": user})
        elif fault == "outside":
            self._send(200, {"user": user, "track": st.n_tracks + 5})
        else:
            self._send(200, {"user": user, "track": st.recommend(user, body["track"], body["time"])})


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    state: ServerState

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Clients hanging up mid-answer (the simulator stopping on an error) are expected."""


class TestServer:
    """Runs the server on a free loopback port in a background thread."""

    __test__ = False  # not a pytest test class

    def __init__(self, n_tracks: int, recommend: Recommend | None = None) -> None:
        self.state = ServerState(
            n_tracks=n_tracks, recommend=recommend or (lambda u, t, x: (t + 1) % n_tracks)
        )
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.state = self.state
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> TestServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def posts(self, kind: str) -> list[Seen]:
        with self.state.lock:
            return [s for s in self.state.seen if s.method == "POST" and s.path.startswith(f"/{kind}/")]


def write_config(path: Path, world: Path, port: int = 5001, extra: str = "", **service) -> Path:
    """A config YAML pointing at `world` and a service on `port` (fast retries for tests)."""
    svc = {"host": "127.0.0.1", "port": port, "retries": 2, "backoff": 0.01, "timeout": 5.0}
    svc.update(service)
    lines = [f"world: {world}", "service:"] + [f"  {k}: {v}" for k, v in svc.items()]
    path.write_text("\n".join(lines) + "\n" + extra)
    return path
