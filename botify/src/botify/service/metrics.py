"""Prometheus metrics that add up across worker processes.

Each process counts in plain dicts (a request costs a few dict updates) and
a daemon thread drops a JSON snapshot of its totals into `metrics_dir` about
once a second (write to a temp file, then rename: readers never see half a
file). `GET /metrics` sums the snapshots of all processes that share this
process's parent (the workers of one gunicorn/granian server) plus its own
live numbers, and renders the Prometheus text format.

Why not prometheus_client's multiprocess mode: it needs an environment
variable set before import and a directory wiped by the server at every
start; the parent-pid grouping here tolerates stale files of earlier runs
and keeps the totals of workers that were restarted.
"""

from __future__ import annotations

import bisect
import contextlib
import logging
import os
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import orjson

log = logging.getLogger("botify.service.metrics")

LATENCY_BUCKETS: tuple[float, ...] = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
)

# name -> (type, help, label names)
FAMILIES: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "botify_http_requests_total": (
        "counter", "HTTP requests by endpoint, method and status code.", ("endpoint", "method", "status"),
    ),
    "botify_http_request_duration_seconds": (
        "histogram", "Server time of HTTP requests by endpoint.", ("endpoint",),
    ),
    "botify_recommendations_total": (
        "counter", "Recommendations served, by answering recommender and serving experiment arm.",
        ("recommender", "experiment", "arm"),
    ),
    "botify_recommendation_duration_seconds": (
        "histogram", "Server time of /next by answering recommender and serving experiment arm.",
        ("recommender", "experiment", "arm"),
    ),
    "botify_fallbacks_total": (
        "counter", "Recommendations where the configured recommender could not answer, by serving experiment arm.",
        ("recommender", "reason", "experiment", "arm"),
    ),
    "botify_rejected_requests_total": (
        "counter", "Requests rejected with a 4xx, by error code.", ("error",),
    ),
    "botify_redis_errors_total": (
        "counter", "Redis calls that failed (connection, timeout).", ("operation",),
    ),
    "botify_reloads_total": (
        "counter", "Live reloads of experiments or tables, by what and outcome.", ("what", "outcome"),
    ),
}


class Metrics:
    """Counters and histograms of one process, summed with its siblings on render."""

    def __init__(self, directory: Path | None, interval: float = 1.0) -> None:
        self.directory = Path(directory) if directory is not None else None
        self.interval = interval
        self._lock = threading.Lock()
        self._data_lock = threading.Lock()
        self._reset()
        os.register_at_fork(after_in_child=self._after_fork)

    def _reset(self) -> None:
        self.counters: dict[str, dict[tuple[str, ...], float]] = {}
        # histogram: labels -> [bucket counts..., +Inf count, sum]
        self.histograms: dict[str, dict[tuple[str, ...], list[float]]] = {}
        self._pid: int | None = None
        self._thread: threading.Thread | None = None
        self._dirty = False

    def _after_fork(self) -> None:
        self._lock = threading.Lock()
        self._data_lock = threading.Lock()
        self._reset()

    # ------------------------------------------------------------ recording

    def inc(self, name: str, labels: tuple[str, ...], value: float = 1.0) -> None:
        with self._data_lock:
            fam = self.counters.setdefault(name, {})
            fam[labels] = fam.get(labels, 0.0) + value
        self._touch()

    def observe(self, name: str, labels: tuple[str, ...], seconds: float) -> None:
        with self._data_lock:
            fam = self.histograms.setdefault(name, {})
            h = fam.get(labels)
            if h is None:
                h = fam[labels] = [0.0] * (len(LATENCY_BUCKETS) + 2)
            h[bisect.bisect_left(LATENCY_BUCKETS, seconds)] += 1
            h[-1] += seconds
        self._touch()

    def _touch(self) -> None:
        self._dirty = True
        if self._thread is None and self.directory is not None:  # reset after a fork
            self._start()

    # ------------------------------------------------------------ snapshots

    def _start(self) -> None:
        with self._lock:
            if self._pid == os.getpid():
                return
            self._pid = os.getpid()
            self._thread = threading.Thread(target=self._run, name="botify-metrics", daemon=True)
            self._thread.start()

    def _snapshot_path(self) -> Path:
        assert self.directory is not None
        return self.directory / f"{os.getppid()}-{os.getpid()}.json"

    def snapshot(self) -> dict[str, Any]:
        with self._data_lock:
            return self._snapshot_unlocked()

    def _snapshot_unlocked(self) -> dict[str, Any]:
        return {
            "counters": {n: [[list(k), v] for k, v in fam.items()] for n, fam in list(self.counters.items())},
            "histograms": {
                n: [[list(k), v] for k, v in fam.items()] for n, fam in list(self.histograms.items())
            },
        }

    def write_snapshot(self) -> None:
        """Atomically replace this process's snapshot file."""
        if self.directory is None:
            return
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self._snapshot_path()
        tmp = path.with_suffix(".tmp")
        data = orjson.dumps(self.snapshot())
        tmp.write_bytes(data)
        os.replace(tmp, path)

    def _run(self) -> None:
        while True:
            time.sleep(self.interval)
            if self._dirty:
                self._dirty = False
                try:
                    self.write_snapshot()
                except OSError as exc:
                    log.warning("cannot write metrics snapshot: %s", exc)

    # ------------------------------------------------------------ render

    def _siblings(self) -> Iterable[dict[str, Any]]:
        if self.directory is None or not self.directory.is_dir():
            return []
        prefix = f"{os.getppid()}-"
        mine = f"{os.getppid()}-{os.getpid()}.json"
        out = []
        for p in self.directory.glob(f"{prefix}*.json"):
            if p.name == mine:
                continue
            with contextlib.suppress(OSError, orjson.JSONDecodeError):
                out.append(orjson.loads(p.read_bytes()))
        return out

    def render(self) -> str:
        """Prometheus text exposition of this server's processes, summed."""
        counters: dict[str, dict[tuple[str, ...], float]] = {}
        hists: dict[str, dict[tuple[str, ...], list[float]]] = {}
        for snap in [self.snapshot(), *self._siblings()]:
            for name, rows in snap.get("counters", {}).items():
                fam = counters.setdefault(name, {})
                for labels, value in rows:
                    key = tuple(labels)
                    fam[key] = fam.get(key, 0.0) + value
            for name, rows in snap.get("histograms", {}).items():
                fam_h = hists.setdefault(name, {})
                for labels, values in rows:
                    key = tuple(labels)
                    cur = fam_h.get(key)
                    if cur is None:
                        fam_h[key] = list(values)
                    else:
                        for i, v in enumerate(values):
                            cur[i] += v
        lines: list[str] = []
        for name, (kind, help_, label_names) in FAMILIES.items():
            lines.append(f"# HELP {name} {help_}")
            lines.append(f"# TYPE {name} {kind}")
            if kind == "counter":
                for labels, value in sorted(counters.get(name, {}).items()):
                    lines.append(f"{name}{_fmt_labels(label_names, labels)} {_num(value)}")
            else:
                for labels, values in sorted(hists.get(name, {}).items()):
                    cumulative = 0.0
                    for bound, count in zip((*LATENCY_BUCKETS, float("inf")), values[:-1], strict=True):
                        cumulative += count
                        le = "+Inf" if bound == float("inf") else repr(bound)
                        lines.append(
                            f"{name}_bucket{_fmt_labels((*label_names, 'le'), (*labels, le))} {_num(cumulative)}"
                        )
                    lines.append(f"{name}_sum{_fmt_labels(label_names, labels)} {values[-1]!r}")
                    lines.append(f"{name}_count{_fmt_labels(label_names, labels)} {_num(cumulative)}")
        return "\n".join(lines) + "\n"


def _num(v: float) -> str:
    return str(int(v)) if float(v).is_integer() else repr(v)


def _escape(v: str) -> str:
    return v.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _fmt_labels(names: tuple[str, ...], values: tuple[str, ...]) -> str:
    if not names:
        return ""
    return "{" + ",".join(f'{n}="{_escape(str(v))}"' for n, v in zip(names, values, strict=True)) + "}"
