"""Prometheus metrics of the service, summed over a server's worker processes.

Built on prometheus_client. Under `python -m botify serve` the master sets
PROMETHEUS_MULTIPROC_DIR (a fresh directory per server run, see
botify.service.server) before any worker forks: every worker then counts in
its own memory-mapped files and `GET /metrics`, whichever worker answers,
sums the files of all workers, the dead ones included. So a counter never
goes backwards, neither when a worker dies and is respawned nor between two
scrapes served by different workers a moment apart. Without that variable (an
app built in a test, `flask run`) each `Metrics` keeps its own in-process
registry.

The call sites name a family and pass label values as a tuple
(`metrics.inc("botify_fallbacks_total", (recommender, reason, experiment, arm))`); the labelled
children are cached so the hot path pays one dict lookup and the value update.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
    values,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST

log = logging.getLogger("botify.service.metrics")

#: the environment variable that switches prometheus_client to its multiprocess mode
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

CONTENT_TYPE = CONTENT_TYPE_LATEST

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
    "botify_eventlog_errors_total": (
        "counter", "Event-log records the writer thread lost (not serialisable, or the write failed).",
        ("stream", "reason"),
    ),
}


def multiprocess_dir() -> Path | None:
    """The shared metrics directory of this server run, or None (single-process mode)."""
    raw = os.environ.get(MULTIPROC_ENV)
    return Path(raw) if raw else None


def _ensure_value_class() -> None:
    """Make prometheus_client honour PROMETHEUS_MULTIPROC_DIR even if it was imported first.

    Why: prometheus_client picks its value class once, when `prometheus_client.values`
    is imported. botify.service.server sets the variable before importing the app, but
    a process that imported prometheus_client earlier (a test harness, an embedding
    application) would otherwise count in process memory only, and /metrics would show
    one worker's numbers. `values.get_value_class()` is the function the library itself
    uses for that choice.
    """
    if multiprocess_dir() is not None and values.ValueClass is values.MutexValue:
        values.ValueClass = values.get_value_class()


class Metrics:
    """The service's counters and histograms (see the module docstring)."""

    def __init__(self) -> None:
        _ensure_value_class()
        self.directory = multiprocess_dir()
        self.registry = CollectorRegistry(auto_describe=True)
        self._families: dict[str, Counter | Histogram] = {}
        for name, (kind, help_, labels) in FAMILIES.items():
            if kind == "counter":
                self._families[name] = Counter(name, help_, labels, registry=self.registry)
            else:
                self._families[name] = Histogram(
                    name, help_, labels, buckets=LATENCY_BUCKETS, registry=self.registry
                )
        # (family, label values) -> the labelled child's bound inc/observe
        self._children: dict[tuple[str, tuple[str, ...]], Any] = {}

    def _child(self, name: str, labels: tuple[str, ...], method: str) -> Any:
        child = getattr(self._families[name].labels(*labels), method)
        if len(self._children) < 10_000:  # label values are bounded; this is a safety net
            self._children[(name, labels)] = child
        return child

    def inc(self, name: str, labels: tuple[str, ...], value: float = 1.0) -> None:
        """Add `value` to the counter `name` with these label values."""
        fn = self._children.get((name, labels))
        if fn is None:
            fn = self._child(name, labels, "inc")
        fn(value)

    def observe(self, name: str, labels: tuple[str, ...], seconds: float) -> None:
        """Record one duration in the histogram `name`."""
        fn = self._children.get((name, labels))
        if fn is None:
            fn = self._child(name, labels, "observe")
        fn(seconds)

    def render(self) -> bytes:
        """Prometheus text exposition: all workers of this server run, summed."""
        if self.directory is None:
            return generate_latest(self.registry)
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path=str(self.directory))
        return generate_latest(registry)


def prepare_multiprocess_dir(path: Path) -> Path:
    """Create an empty metrics directory for a new server run and point the environment at it.

    Called by the server master before any worker forks (and before the app is
    imported). Files of an earlier run in the same directory would be summed into
    this run's counters, so the directory is emptied first.
    """
    path.mkdir(parents=True, exist_ok=True)
    for f in path.glob("*.db"):
        f.unlink(missing_ok=True)
    os.environ[MULTIPROC_ENV] = str(path)
    return path


def mark_process_dead(pid: int) -> None:
    """Bookkeeping for a worker that exited (prometheus_client's multiprocess contract).

    Its counters and histograms stay in the sum (that is what keeps them monotonic);
    only live gauges would be dropped.
    """
    directory = multiprocess_dir()
    if directory is not None:
        multiprocess.mark_process_dead(pid, str(directory))
