"""Lossless JSON-lines event log: enqueue on the request path, write in a thread.

Layout (docs/interfaces.md section 2): each worker process writes into its own
directory LOGDIR/<hostname>-<pid>-<start ms>/, so processes never share a
file. Accepted requests go to events-NNNNNN.jsonl, rejected (4xx) ones to
rejected-NNNNNN.jsonl. When a file would grow past `max_bytes` the next line
opens the next number: files are never renamed, and each line is written
whole into exactly one file (no loss, no duplicate, no torn line).

Why a thread per process: the request only pays for a queue put (~1 us);
serialisation (orjson) and the write() happen off the request path.
"""

from __future__ import annotations

import atexit
import logging
import multiprocessing.util
import os
import queue
import signal
import socket
import threading
import time
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

log = logging.getLogger("botify.service.eventlog")

_STOP = object()
_BATCH = 4096
_LINGER = 0.005

_instances: weakref.WeakSet[EventLog] = weakref.WeakSet()


class _Stream:
    """One numbered series of files (events-* or rejected-*) with size rotation."""

    def __init__(self, directory: Path, prefix: str, max_bytes: int) -> None:
        self.directory = directory
        self.prefix = prefix
        self.max_bytes = max_bytes
        self.number = 0
        self.size = 0
        self.fh: Any = None
        self.lines = 0

    def _open_next(self) -> None:
        if self.fh is not None:
            self.fh.close()
        self.number += 1
        path = self.directory / f"{self.prefix}-{self.number:06d}.jsonl"
        # Unbuffered: each batch goes out in write() calls of whole lines.
        self.fh = open(path, "ab", buffering=0)
        self.size = path.stat().st_size

    def write(self, lines: list[bytes]) -> None:
        if self.fh is None:
            self._open_next()
        chunk: list[bytes] = []
        chunk_size = 0
        for line in lines:
            n = len(line)
            if self.size + chunk_size + n > self.max_bytes and (self.size + chunk_size) > 0:
                self._flush(chunk)
                chunk, chunk_size = [], 0
                self._open_next()
            chunk.append(line)
            chunk_size += n
        self._flush(chunk)

    def _flush(self, chunk: list[bytes]) -> None:
        if not chunk:
            return
        data = memoryview(b"".join(chunk))
        while data:
            written = self.fh.write(data)
            data = data[written:]
        self.size += sum(len(c) for c in chunk)
        self.lines += len(chunk)

    def close(self) -> None:
        if self.fh is not None:
            self.fh.close()
            self.fh = None


class EventLog:
    """Per-process event log with a background writer thread."""

    def __init__(self, log_dir: Path, max_bytes: int = 64 * 1024 * 1024, log_rejected: bool = True) -> None:
        self.log_dir = Path(log_dir)
        self.max_bytes = max_bytes
        self.log_rejected = log_rejected
        self._lock = threading.Lock()
        #: called from the writer thread as on_error(stream, reason) for every lost record
        #: (the service counts them in /metrics as botify_eventlog_errors_total)
        self.on_error: Callable[[str, str], None] | None = None
        self._config: dict[str, Any] | None = None
        self._reset()
        _instances.add(self)

    def _reset(self) -> None:
        """Forget the parent's state after a fork: a child starts its own dir and thread."""
        self._pid: int | None = None
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._closed = False
        self.directory: Path | None = None
        self._streams: dict[str, _Stream] = {}
        self.errors = 0

    # ------------------------------------------------------------ request path

    def event(self, record: dict[str, Any]) -> None:
        """Enqueue one accepted request's event (never blocks on disk)."""
        if self._pid is None:  # first event of this process (reset after a fork)
            self._start()
        self._queue.put(("events", record))

    def rejected(self, record: dict[str, Any]) -> None:
        """Enqueue one rejected request (4xx); a separate file series."""
        if not self.log_rejected:
            return
        if self._pid is None:
            self._start()
        self._queue.put(("rejected", record))

    def config(self, record: dict[str, Any]) -> None:
        """Record the experiments configuration beside this worker's events (start and reload).

        Why: the A/B analysis tests the split against the shares the service was
        configured with, and must know an arm that was configured but never
        served; neither can be told from the events alone. One JSON line per
        (re)load in `experiments.jsonl` of the worker directory, written when the
        directory exists (it is created by the first event).
        """
        with self._lock:
            self._config = record
            if self._pid == os.getpid() and self.directory is not None:
                self._write_config(record)

    def _write_config(self, record: dict[str, Any]) -> None:
        assert self.directory is not None
        try:
            with open(self.directory / "experiments.jsonl", "ab") as fh:
                fh.write(orjson.dumps(record, option=orjson.OPT_APPEND_NEWLINE))
        except OSError as exc:
            self.errors += 1
            log.error("cannot write the experiments snapshot: %s", exc)

    # ------------------------------------------------------------ control

    def _start(self) -> None:
        with self._lock:
            pid = os.getpid()
            if self._pid == pid:
                return
            if self._pid is not None:  # inherited through fork: the parent's thread is gone
                self._reset()
            start_ms = int(time.time() * 1000)
            directory = self.log_dir / f"{socket.gethostname()}-{pid}-{start_ms}"
            directory.mkdir(parents=True, exist_ok=True)
            self.directory = directory
            self._streams = {
                "events": _Stream(directory, "events", self.max_bytes),
                "rejected": _Stream(directory, "rejected", self.max_bytes),
            }
            self._thread = threading.Thread(target=self._run, name="botify-eventlog", daemon=True)
            if self._config is not None:
                self._write_config(self._config)
            self._pid = pid
            self._thread.start()
            # Worker processes forked by multiprocessing (granian) end with os._exit:
            # atexit never runs there, multiprocessing's finalizers do.
            multiprocessing.util.Finalize(self, self.close, exitpriority=100)

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until everything enqueued so far is written; True on success."""
        if self._pid != os.getpid() or self._thread is None or not self._thread.is_alive():
            return True
        done = threading.Event()
        self._queue.put(("flush", done))
        return done.wait(timeout)

    def close(self, timeout: float = 10.0) -> None:
        """Write everything enqueued, then stop the writer (atexit, shutdown)."""
        if self._pid != os.getpid() or self._thread is None:
            return
        if self._thread.is_alive():
            self._queue.put(_STOP)
            self._thread.join(timeout)
        self._closed = True

    def lines_written(self, stream: str = "events") -> int:
        s = self._streams.get(stream)
        return s.lines if s else 0

    # ------------------------------------------------------------ writer thread

    def _error(self, stream: str, reason: str) -> None:
        self.errors += 1
        if self.on_error is not None:
            try:
                self.on_error(stream, reason)
            except Exception:  # counting must never stop the writer
                log.exception("event-log error hook failed")

    def _run(self) -> None:
        q = self._queue
        streams = self._streams
        dumps = orjson.dumps
        while True:
            item = q.get()
            batch = [item]
            try:
                while len(batch) < _BATCH:
                    batch.append(q.get_nowait())
            except queue.Empty:
                pass
            pending: dict[str, list[bytes]] = {"events": [], "rejected": []}
            waiters: list[threading.Event] = []
            stop = False
            for it in batch:
                if it is _STOP:
                    stop = True
                    continue
                kind, payload = it
                if kind == "flush":
                    waiters.append(payload)
                    continue
                try:
                    pending[kind].append(dumps(payload, option=orjson.OPT_APPEND_NEWLINE))
                except TypeError as exc:  # a record that cannot be serialised: keep the writer alive
                    self._error(kind, "not_serialisable")
                    log.error("event not serialisable, dropped: %s", exc)
            for kind, lines in pending.items():
                if lines:
                    try:
                        streams[kind].write(lines)
                    except OSError as exc:
                        for _ in lines:
                            self._error(kind, "write_failed")
                        log.error("cannot write %s log: %s", kind, exc)
            for w in waiters:
                w.set()
            if stop:
                for s in streams.values():
                    s.close()
                return
            if len(batch) < _BATCH and not waiters:
                # Let events accumulate a little: one wake-up and one write() per
                # batch instead of per request keeps the GIL with the request threads.
                time.sleep(_LINGER)


def flush_all(timeout: float = 10.0) -> None:
    """Flush every event log of this process (for server shutdown hooks)."""
    for inst in list(_instances):
        inst.flush(timeout)


def close_all(timeout: float = 10.0) -> None:
    """Flush and stop every event log of this process (atexit)."""
    for inst in list(_instances):
        inst.close(timeout)


def _after_fork_in_child() -> None:
    for inst in list(_instances):
        inst._lock = threading.Lock()
        if inst._pid is not None:
            inst._reset()


os.register_at_fork(after_in_child=_after_fork_in_child)
atexit.register(close_all)

_installed_signals = False


def install_signal_handlers() -> bool:
    """Flush the logs on SIGTERM/SIGINT, then let the previous handler act.

    Chaining matters: under gunicorn the worker's own handler must still run
    (graceful stop, then atexit writes the rest). Only possible from the main
    thread; returns whether handlers were installed.
    """
    global _installed_signals
    if _installed_signals or threading.current_thread() is not threading.main_thread():
        return _installed_signals
    for sig in (signal.SIGTERM, signal.SIGINT):
        previous = signal.getsignal(sig)
        if previous is None:  # installed outside Python (a server's own runtime): leave it alone
            continue

        def handler(signum: int, frame: Any, _previous: Any = previous) -> None:
            flush_all(5.0)
            if callable(_previous):
                _previous(signum, frame)
            elif _previous == signal.SIG_IGN:
                return
            else:
                close_all(5.0)
                signal.signal(signum, signal.SIG_DFL)
                os.kill(os.getpid(), signum)

        signal.signal(sig, handler)
    _installed_signals = True
    return True
