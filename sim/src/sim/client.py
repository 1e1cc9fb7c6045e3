"""A small asyncio HTTP/1.1 keep-alive client for the service's COMPAT API.

Why hand-rolled: the simulator must never be the bottleneck of a load test.
Measured on the 2-core dev machine (bench/sim_remote_bench.py), this client
spends a few tens of microseconds of CPU per request, several times less than
``http.client`` driven from threads (GIL hand-offs and per-request header
parsing dominate there). It speaks just enough HTTP/1.1 to talk to botify
directly or through nginx: ``Content-Length`` and chunked bodies, persistent
connections, ``Connection: close`` honoured.

One :class:`Connection` carries one request at a time (no pipelining); the
caller runs many sessions in flight, each with its own connection, so a pool
of ``concurrency`` connections is simply one slot per in-flight session.
"""

from __future__ import annotations

import asyncio
import http.client
import socket
from dataclasses import dataclass
from typing import Any

import orjson


class ServiceError(RuntimeError):
    """The service is unreachable or answered something the protocol forbids.

    The message is one line meant for the terminal, never a traceback.
    """


class _RetryableError(Exception):
    """Internal: a failure worth another attempt (connection trouble, 5xx, timeout)."""


_CRLF2 = b"\r\n\r\n"


class Connection(asyncio.Protocol):
    """One persistent HTTP/1.1 connection; ``request`` resolves to (status, body)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._transport: asyncio.Transport | None = None
        self._buf = bytearray()
        self._waiter: asyncio.Future[tuple[int, bytes]] | None = None
        self._status = 0
        self._need = -1  # body bytes still expected (-1: headers not parsed yet)
        self._chunked = False
        self._until_close = False
        self._keep_alive = True
        self.closed = False
        self.used = 0  # completed requests (a reused connection may have gone stale)

    # asyncio.Protocol callbacks -------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            if self._until_close and self._need == -2:
                self._finish(bytes(self._buf))
            else:
                waiter.set_exception(
                    _RetryableError("connection closed by the service" if exc is None else str(exc))
                )

    def data_received(self, data: bytes) -> None:
        self._buf += data
        if self._waiter is None:
            return  # unsolicited bytes; ignored, the next request resets the buffer
        try:
            self._parse()
        except _RetryableError as e:  # malformed framing: drop the connection, let caller retry
            self.close()
            if not self._waiter.done():
                self._waiter.set_exception(e)

    # parsing --------------------------------------------------------------------
    def _parse(self) -> None:
        buf = self._buf
        if self._need == -1:
            end = buf.find(_CRLF2)
            if end < 0:
                if len(buf) > 65536:
                    raise _RetryableError("response headers too long")
                return
            head = bytes(buf[:end]).split(b"\r\n")
            del buf[: end + 4]
            status_line = head[0].split(b" ", 2)
            if len(status_line) < 2 or not status_line[0].startswith(b"HTTP/1."):
                raise _RetryableError(f"not an HTTP response: {head[0][:60]!r}")
            try:
                self._status = int(status_line[1])
            except ValueError:
                raise _RetryableError(f"bad HTTP status line: {head[0][:60]!r}") from None
            self._keep_alive = status_line[0] == b"HTTP/1.1"
            length = -1
            self._chunked = False
            for line in head[1:]:
                name, _, value = line.partition(b":")
                name = name.strip().lower()
                if name == b"content-length":
                    try:
                        length = int(value)
                    except ValueError:
                        raise _RetryableError("bad Content-Length") from None
                elif name == b"transfer-encoding":
                    self._chunked = b"chunked" in value.lower()
                elif name == b"connection":
                    v = value.strip().lower()
                    if v == b"close":
                        self._keep_alive = False
                    elif v == b"keep-alive":
                        self._keep_alive = True
            if self._chunked:
                self._need = -3
            elif length >= 0:
                self._need = length
            elif self._status in (204, 304) or 100 <= self._status < 200:
                self._need = 0
            else:
                self._until_close = True
                self._keep_alive = False
                self._need = -2
                return
        if self._need >= 0:
            if len(buf) >= self._need:
                body = bytes(buf[: self._need])
                del buf[: self._need]
                self._finish(body)
        elif self._need == -3:
            self._parse_chunked()

    def _parse_chunked(self) -> None:
        buf = self._buf
        body = bytearray()
        pos = 0
        while True:
            eol = buf.find(b"\r\n", pos)
            if eol < 0:
                return
            try:
                size = int(bytes(buf[pos:eol]).split(b";")[0], 16)
            except ValueError:
                raise _RetryableError("bad chunked encoding") from None
            if size == 0:
                end = buf.find(_CRLF2, eol)  # optional trailers end with an empty line
                if end < 0:
                    return
                del buf[: end + 4]
                self._finish(bytes(body))
                return
            start = eol + 2
            if len(buf) < start + size + 2:
                return
            body += buf[start : start + size]
            pos = start + size + 2

    def _finish(self, body: bytes) -> None:
        waiter, self._waiter = self._waiter, None
        self._need = -1
        self._until_close = False
        self.used += 1
        if not self._keep_alive:
            self.close()
        if waiter is not None and not waiter.done():
            waiter.set_result((self._status, body))

    # API ------------------------------------------------------------------------
    def request(self, data: bytes) -> asyncio.Future[tuple[int, bytes]]:
        """Send a fully serialised request; the future resolves to (status, body)."""
        fut: asyncio.Future[tuple[int, bytes]] = self._loop.create_future()
        if self.closed or self._transport is None:
            fut.set_exception(_RetryableError("connection closed"))
            return fut
        self._buf.clear()
        self._need = -1
        self._waiter = fut
        self._transport.write(data)
        return fut

    def close(self) -> None:
        self.closed = True
        if self._transport is not None:
            self._transport.close()


@dataclass(frozen=True)
class ClientOptions:
    """Network behaviour of the remote agent (from the config's ``service`` section)."""

    host: str = "127.0.0.1"
    port: int = 5001
    timeout: float = 5.0
    connect_timeout: float = 2.0
    retries: int = 3
    backoff: float = 0.1
    backoff_max: float = 2.0


class AsyncClient:
    """Builds requests, owns retries and backoff; one instance serves all sessions."""

    def __init__(self, options: ClientOptions) -> None:
        self.options = options
        self.base = f"http://{options.host}:{options.port}"
        self._host_header = f"Host: {options.host}:{options.port}\r\n".encode()
        self.requests = 0
        self.retried = 0
        self._pending: list[tuple[float, asyncio.Future]] = []
        self._watchdog_loop: asyncio.AbstractEventLoop | None = None
        self._sweep_every = min(0.25, options.timeout / 4)

    async def connect(self) -> Connection:
        loop = asyncio.get_running_loop()
        o = self.options
        try:
            _, proto = await asyncio.wait_for(
                loop.create_connection(lambda: Connection(loop), o.host, o.port),
                o.connect_timeout,
            )
        except TimeoutError:
            raise _RetryableError(f"connect timed out after {o.connect_timeout:g} s") from None
        except ConnectionRefusedError:
            raise _RetryableError("connection refused (is the service running?)") from None
        except OSError as e:
            raise _RetryableError(e.strerror or str(e)) from None
        sock = proto._transport.get_extra_info("socket") if proto._transport else None
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return proto

    def _watch(self, loop: asyncio.AbstractEventLoop, fut: asyncio.Future) -> None:
        """Register a request's deadline with the client's watchdog.

        One periodic sweep per client instead of one timer per request: a
        TimerHandle per request (heap push, cancel, heap rebuilds) was a
        measurable share of the client's CPU per request.
        """
        self._pending.append((loop.time() + self.options.timeout, fut))
        if self._watchdog_loop is not loop:
            # a new event loop (asyncio.run per day): forget the old loop's requests
            self._pending = [(d, f) for d, f in self._pending if f.get_loop() is loop]
            self._watchdog_loop = loop
            loop.call_later(self._sweep_every, self._sweep, loop)

    def _sweep(self, loop: asyncio.AbstractEventLoop) -> None:
        if loop.is_closed() or self._watchdog_loop is not loop:
            return
        now = loop.time()
        keep = []
        for deadline, fut in self._pending:
            if fut.done():
                continue
            if deadline <= now:
                fut.set_exception(
                    _RetryableError(f"no answer within {self.options.timeout:g} s")
                )
            else:
                keep.append((deadline, fut))
        self._pending = keep
        if keep:
            loop.call_later(self._sweep_every, self._sweep, loop)
        else:
            self._watchdog_loop = None  # restarted by the next request

    def build_post(self, path: bytes, payload: Any) -> bytes:
        body = orjson.dumps(payload)
        return b"".join(
            (
                b"POST ",
                path,
                b" HTTP/1.1\r\n",
                self._host_header,
                b"Content-Type: application/json\r\nContent-Length: ",
                str(len(body)).encode(),
                b"\r\n\r\n",
                body,
            )
        )

    def build_get(self, path: bytes) -> bytes:
        return b"GET " + path + b" HTTP/1.1\r\n" + self._host_header + b"\r\n"

    async def send(
        self, slot: list[Connection | None], data: bytes, what: str
    ) -> tuple[int, bytes]:
        """Send ``data`` over the connection in ``slot`` (opened or replaced as needed).

        Retries connection failures, timeouts and 5xx with exponential backoff;
        a failure on a reused keep-alive connection (the server may have closed
        it while idle) is retried at once, once. Raises ServiceError at the end.
        """
        o = self.options
        loop = asyncio.get_running_loop()
        attempt = 0
        stale_retry_left = True
        last = ""
        connected = False
        while True:
            conn = slot[0]
            reused = False
            try:
                if conn is None or conn.closed:
                    conn = slot[0] = await self.connect()
                    connected = True
                else:
                    connected = True
                    reused = conn.used > 0
                fut = conn.request(data)
                self._watch(loop, fut)
                status, body = await fut
                self.requests += 1
                if status < 500:
                    return status, body
                last = f"HTTP {status} {_snippet(body)}"
            except _RetryableError as e:
                last = str(e)
                if conn is not None:
                    conn.close()
                slot[0] = None
                if reused and stale_retry_left:
                    stale_retry_left = False
                    self.retried += 1
                    continue
            if attempt >= o.retries:
                state = "failed" if connected else "unreachable"
                raise ServiceError(
                    f"service at {self.base} {state}: {what} gave up after "
                    f"{attempt + 1} attempt(s): {last}"
                )
            await asyncio.sleep(min(o.backoff * (2**attempt), o.backoff_max))
            attempt += 1
            self.retried += 1




def _snippet(body: bytes, limit: int = 80) -> str:
    text = body[:limit].decode("utf-8", "replace").replace("\n", " ").replace("\r", " ")
    return repr(text + ("..." if len(body) > limit else ""))


def decode_json(body: bytes, what: str, base: str) -> Any:
    """Parse a JSON answer or raise ServiceError naming the call."""
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        raise ServiceError(
            f"service at {base} answered non-JSON to {what}: {_snippet(body)}"
        ) from None


def get_json_sync(
    options: ClientOptions, path: str, timeout: float | None = None
) -> tuple[int, Any]:
    """One blocking GET (for the console agent, where latency does not matter)."""
    conn = http.client.HTTPConnection(
        options.host, options.port, timeout=timeout or options.timeout
    )
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        body = resp.read()
    except OSError as e:
        raise ServiceError(
            f"service at http://{options.host}:{options.port} unreachable: GET {path}: "
            f"{e.strerror or e}"
        ) from None
    finally:
        conn.close()
    base = f"http://{options.host}:{options.port}"
    return resp.status, decode_json(body, f"GET {path}", base) if body else None

