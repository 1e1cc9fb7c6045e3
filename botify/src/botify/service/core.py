"""The service core behind the resources: one `Service` per worker process.

`botify.service.app.create_app(settings)` builds one `Service` per process: the in-process
catalog, a Redis client with short timeouts, the live experiments, the table
version cache, the event log and the metrics. The resources in botify.service.resources
only parse, call the service and shape answers.

The /next hot path: validate (no I/O), assign arms (mmh3, no I/O), one Redis
pipeline that records the listen and reads the user's recent listens and
session (and, at most once a second, the live table versions), then at most
one more round trip for table rows, then an enqueue to the log writer.
"""

from __future__ import annotations

import itertools
import logging
import os
import secrets
import threading
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import redis as redis_lib
from botify.recommenders import Context, RequestRng, TableReader, random_track
from botify.recommenders.discovery import RESTART_MESSAGE, pending
from botify.service.eventlog import EventLog
from botify.service.experiments import ExperimentSet, ExperimentsHolder
from botify.service.metrics import Metrics
from botify.store.catalog import Catalog
from botify.store.settings import Settings
from redis.utils import HIREDIS_AVAILABLE

from botify import store

if TYPE_CHECKING:
    from flask import Flask

log = logging.getLogger("botify")

BREAKER_FAILURES = 3  # consecutive Redis failures that open the breaker

REDIS_ERRORS = (redis_lib.ConnectionError, redis_lib.TimeoutError, OSError)


class Tables(TableReader):
    """Live table versions (refreshed from Redis at most once per interval) and row reads."""

    def __init__(self, service: Service) -> None:
        self.service = service
        self.versions: dict[str, str | None] = {}
        self.keys = store.Keys(service.settings.namespace)
        # Read-through cache of rows, keyed by (table, version, key): a switch changes
        # the version, so a cached row can never be served for the wrong version.
        self.cache: dict[tuple[str, str, bytes], np.ndarray | None] = {}
        self.cache_rows = service.settings.table_cache_rows

    def version(self, name: str) -> str | None:
        return self.versions.get(name)

    def _data_key(self, name: str) -> str:
        return self.keys.table_data(name, self.versions[name] or "")

    def get(self, name: str, key: int | bytes) -> np.ndarray | None:
        return self.get_many(name, [key])[0]

    def warm_async(self, name: str, version: str) -> None:
        """Fill the row cache with a whole new table version in the background.

        Why: with the table in memory an i2i answer needs no second round trip.
        Only when the table fits in `table_cache_rows`; reads stay correct
        without it (read-through), just slower until the cache is warm.
        """
        if not self.service.settings.table_warm or not self.cache_rows:
            return

        def run() -> None:
            key = self.keys.table_data(name, version)
            try:
                client = self.service.redis
                n = client.hlen(key)
                if n + len(self.cache) > self.cache_rows:
                    return
                t0 = time.perf_counter()
                cursor = 0
                while True:
                    cursor, chunk = client.hscan(key, cursor, count=2000)
                    for f, raw in chunk.items():
                        self.cache[(name, version, f)] = store.unpack_ids(raw) if raw else None
                    if cursor == 0:
                        break
                    time.sleep(0)  # let request threads run between chunks
                log.info("table %s %s: %d rows cached in %.2fs", name, version, n, time.perf_counter() - t0)
            except Exception as exc:
                log.warning("table %s: warming the row cache failed: %s", name, exc)

        threading.Thread(target=run, name=f"botify-warm-{name}", daemon=True).start()

    def get_many(self, name: str, keys: Sequence[int | bytes]) -> list[np.ndarray | None]:
        if not keys:
            return []
        version = self.versions.get(name) or ""
        fields = [k if isinstance(k, bytes) else str(k).encode() for k in keys]
        cache = self.cache
        out = [cache.get((name, version, f), _MISS) for f in fields]
        missing = [i for i, row in enumerate(out) if row is _MISS]
        if missing:
            raws = self.service.redis_call(
                "table", self.service.redis.hmget, self.keys.table_data(name, version), [fields[i] for i in missing]
            )
            if self.cache_rows and len(cache) + len(missing) > self.cache_rows:
                cache.clear()
            for i, raw in zip(missing, raws, strict=True):
                row = store.unpack_ids(raw) if raw else None
                out[i] = row
                if self.cache_rows:
                    cache[(name, version, fields[i])] = row
        return out  # type: ignore[return-value]


_MISS = object()

class RedisUnavailable(Exception):  # noqa: N818 - a state, raised to switch to the fallback path
    pass


class Service:
    """Everything one worker process needs to answer requests."""

    def __init__(self, settings: Settings, catalog: Catalog | None = None) -> None:
        self.settings = settings
        self.namespace = settings.namespace
        self.keys = store.Keys(settings.namespace)
        self.started = time.time()
        self.catalog = catalog if catalog is not None else Catalog.from_file(settings.catalog)
        self.catalog_size = self.catalog.size
        if settings.redis_url is None:
            raise ValueError(
                "no redis_url: set BOTIFY_REDIS_URL, or run `python -m botify serve` to start an embedded Redis"
            )
        self.redis = store.connect(settings.redis_url, settings.redis_timeout)
        if not HIREDIS_AVAILABLE:
            log.warning("hiredis is not installed: redis-py parses replies in Python (slower /next)")
        self.metrics = Metrics()
        # event_id = this token + a counter: unique across workers, replicas and restarts
        # without coordination (64 random bits per process; an id, not a random draw).
        self._event_token = secrets.token_hex(8)
        self._event_counter = itertools.count(1)
        self.eventlog = EventLog(settings.log_dir, settings.log_max_bytes, settings.log_rejected)
        self.eventlog.on_error = self._on_eventlog_error
        self.tables = Tables(self)
        #: what every recommender is handed (docs/recommenders.md); per request a copy with its data
        self.ctx = Context(self.catalog, self.tables, settings.seed, passthrough=(RedisUnavailable,))
        self.experiments = ExperimentsHolder(
            settings.experiments_file,
            self.ctx,
            settings.default_recommender,
            settings.reload_interval,
            on_reload=self._on_experiments_reload,
            code_dir=settings.recommenders_dir,
        )
        self._snapshot_config()
        #: set on SIGTERM (botify.service.server): /health says 503 and answers close their connection
        self.draining = False
        self._down_until = 0.0
        self._failures = 0
        self.redis_error: str | None = None
        self._next_refresh = 0.0
        self._refresh_lock = threading.Lock()
        self.redis_catalog_version: str | None = None
        self._catalog_loading = threading.Lock()
        try:
            store.load_catalog(
                self.redis, settings.catalog, self.namespace, catalog=self.catalog,
                timeout=settings.catalog_load_timeout,
            )
            self.redis_catalog_version = self.catalog.digest
            self.refresh_tables()
        except REDIS_ERRORS as exc:
            self._mark_down(exc, "startup")
            log.warning("Redis unreachable at start (%s): serving fallbacks until it is back", exc)

    def _on_eventlog_error(self, stream: str, reason: str) -> None:
        self.metrics.inc("botify_eventlog_errors_total", (stream, reason))

    def _snapshot_config(self) -> None:
        """The live experiments (arms, recommenders, shares) beside the event log, for the A/B gate."""
        desc = self.experiments.current.describe()
        self.eventlog.config({"timestamp": int(time.time() * 1000), "experiments": desc})

    def _on_experiments_reload(self, what: str, outcome: str) -> None:
        self.metrics.inc("botify_reloads_total", (what, outcome))
        if outcome == "ok":
            self._snapshot_config()
        self._next_refresh = 0.0  # new instances may read tables not watched yet: look now

    # ------------------------------------------------------------ redis guard

    def _mark_down(self, exc: BaseException, operation: str) -> None:
        """Count a failure; after BREAKER_FAILURES in a row, stop trying for a while.

        One slow reply (an overloaded machine) costs one fallback; a dead or hung
        Redis costs at most BREAKER_FAILURES waits before requests skip it for
        `redis_retry_interval` seconds.
        """
        self.metrics.inc("botify_redis_errors_total", (operation,))
        self._failures += 1
        if self.redis_error is None:
            log.warning("Redis call failed (%s: %s): answering from the in-process catalog", operation, exc)
        self.redis_error = f"{type(exc).__name__}: {exc}"
        if self._failures >= BREAKER_FAILURES:
            self._down_until = time.monotonic() + self.settings.redis_retry_interval

    def _mark_up(self) -> None:
        self._failures = 0
        if self.redis_error is not None:
            log.warning("Redis is back")
            self.redis_error = None

    def redis_available(self) -> bool:
        """False while in the back-off window after a failure (no request waits on a dead Redis)."""
        return time.monotonic() >= self._down_until

    def pipeline(self, commands: Sequence[tuple[Any, ...]]) -> list[Any]:
        """Send `commands` in one round trip (a redis-py pipeline, no MULTI); their replies in order.

        redis-py takes a connection from its pool for the call (one per thread in
        flight, reset after a fork), packs and parses with hiredis, and drops the
        connection on any socket error, so the next call starts clean.
        """
        pipe = self.redis.pipeline(transaction=False)
        for command in commands:
            pipe.execute_command(*command)
        return pipe.execute()

    def redis_call(self, operation: str, fn: Any, *args: Any) -> Any:
        try:
            return fn(*args)
        except REDIS_ERRORS as exc:
            self._mark_down(exc, operation)
            raise RedisUnavailable(str(exc)) from exc

    # ------------------------------------------------------------ refresh

    def _refresh_due(self) -> bool:
        return time.monotonic() >= self._next_refresh

    def _table_names(self, exps: ExperimentSet) -> list[str]:
        return sorted(exps.table_names() | self.ctx.wanted_tables)

    def refresh_tables(self) -> None:
        """Read the live versions of the tables in use (and the catalog pointer) now."""
        exps = self.experiments.current
        names = self._table_names(exps)
        pipe = self.redis.pipeline(transaction=False)
        pipe.get(self.keys.catalog_current())
        for n in names:
            pipe.get(self.keys.table_current(n))
        res = pipe.execute()
        self._apply_refresh(names, res)

    def _apply_refresh(self, names: list[str], res: list[Any]) -> None:
        self._next_refresh = time.monotonic() + self.settings.reload_interval
        cat = res[0].decode() if res[0] else None
        self.redis_catalog_version = cat
        if cat != self.catalog.digest:
            self._reload_catalog_async()
        new = {n: (v.decode() if v else None) for n, v in zip(names, res[1:], strict=True)}
        for n, v in new.items():
            old = self.tables.versions.get(n)
            if n in self.tables.versions and old != v:
                log.info("table %s: now serving version %s", n, v)
                self.metrics.inc("botify_reloads_total", (f"table:{n}", "ok"))
            if v is not None and (n not in self.tables.versions or old != v):
                self.tables.warm_async(n, v)
        self.tables.versions = new

    def _reload_catalog_async(self) -> None:
        """Redis lost the catalog (restart without persistence) or holds another: reload it."""
        if not self._catalog_loading.acquire(blocking=False):
            return

        def run() -> None:
            try:
                store.load_catalog(
                    self.redis, self.settings.catalog, self.namespace, catalog=self.catalog,
                    timeout=self.settings.catalog_load_timeout,
                )
                self.redis_catalog_version = self.catalog.digest
            except Exception as exc:
                log.warning("catalog reload into Redis failed: %s", exc)
            finally:
                self._catalog_loading.release()

        threading.Thread(target=run, name="botify-catalog-load", daemon=True).start()

    # ------------------------------------------------------------ requests

    def _record_listen(self, rk: str, track: int, time_: float) -> list[tuple[Any, ...]]:
        """The commands that add a listen to a user's bounded, expiring recent list (/next and /last)."""
        s = self.settings
        return [
            ("LPUSH", rk, store.encode_listen(track, time_)),
            ("LTRIM", rk, 0, s.recent_listens - 1),
            ("EXPIRE", rk, s.recent_ttl),
        ]

    def _seq_commands(self, user: int) -> list[tuple[Any, ...]]:
        """INCR of the user's event counter (expiring with the session state): the event's `seq`.

        Why: workers and replicas log to separate files with millisecond clocks, so
        a `next` and a `last` of one user in the same millisecond cannot be ordered
        by time; Redis hands out one order per user, in the round trip made anyway.
        """
        k = f"{self.namespace}:user:{user}:seq"
        return [("INCR", k), ("EXPIRE", k, self.settings.session_ttl)]

    def _event_id(self) -> str:
        return f"{self._event_token}-{next(self._event_counter)}"

    def _fetch_state(
        self, user: int, track: int, time_: float, exps: ExperimentSet
    ) -> tuple[set[int], list[bytes], int]:
        """Round trip 1: record the listen, read recent listens (raw) and the session's played set.

        Also returns the event's `seq` (INCR of the user's counter). Nine plain commands
        in one write (a pipeline, no MULTI): measured here, a Lua script doing the same
        costs Redis ~40 us more CPU per call and the request ~60 us more latency. Not a
        transaction: only this user's own concurrent requests could interleave, and they
        would still each record their listen. At most once per
        reload_interval, a second small pipeline reads the table pointers.
        """
        if self._refresh_due() and self._refresh_lock.acquire(blocking=False):
            try:
                self.redis_call("refresh", self.refresh_tables)
            finally:
                self._refresh_lock.release()
        s = self.settings
        rk, sk = self.keys.recent(user), self.keys.session(user)
        res = self.redis_call(
            "state",
            self.pipeline,
            [
                *self._record_listen(rk, track, time_),
                ("SADD", sk, track),
                ("EXPIRE", sk, s.session_ttl),
                ("LRANGE", rk, 0, -1),
                ("SMEMBERS", sk),
                *self._seq_commands(user),
            ],
        )
        return set(map(int, res[6])), res[5], int(res[7])

    def next(self, user: int, track: int, time_: float, t0: float) -> tuple[int, dict[str, Any]]:
        """Answer /next: (recommended track, the event to log)."""
        exps = self.experiments.get()
        arms, serving, exp_name, arm = exps.assign(user)
        fallback: str | None = None
        answered = serving
        rec: int | None = None
        seq: int | None = None
        played: set[int] = {track}
        if self.redis_available():
            try:
                played, recent_raw, seq = self._fetch_state(user, track, time_, exps)
                self._mark_up()
                ctx = self.ctx.for_request(
                    exps.instances, user, track, time_, played,
                    RequestRng(self.settings.seed, user, track, len(played)), recent_raw=recent_raw,
                )
                rec, answered, fallback = ctx.answer(serving)
            except RedisUnavailable:
                rec = None
        if rec is None:
            fallback = "redis_unavailable"
            answered = "random"
            rng = RequestRng(self.settings.seed, user, track, 0)
            rec = random_track(self.catalog.size, rng, played, track)
        latency = time.perf_counter() - t0
        m = self.metrics
        labels = (answered, exp_name or "", arm or "")
        m.inc("botify_recommendations_total", labels)
        m.observe("botify_recommendation_duration_seconds", labels, latency)
        if fallback is not None:
            m.inc("botify_fallbacks_total", (serving, fallback, exp_name or "", arm or ""))
        event = {
            "message": "next",
            "timestamp": int(time.time() * 1000),
            "user": user,
            "track": track,
            "time": time_,
            "latency": latency,
            "recommendation": rec,
            "experiments": arms,
            "recommender": answered,
            "fallback": fallback,
            "seq": seq,
            "event_id": self._event_id(),
        }
        self.eventlog.event(event)
        return rec, event

    def last(self, user: int, track: int, time_: float, t0: float) -> dict[str, Any]:
        """Answer /last: record the final listen, end the session, log."""
        exps = self.experiments.get()
        arms, serving, _exp, _arm = exps.assign(user)
        fallback: str | None = None
        seq: int | None = None
        if self.redis_available():
            rk = self.keys.recent(user)
            commands = [*self._record_listen(rk, track, time_), ("DEL", self.keys.session(user)),
                        *self._seq_commands(user)]  # fmt: skip
            try:
                res = self.redis_call("state", self.pipeline, commands)
                seq = int(res[4])
                self._mark_up()
            except RedisUnavailable:
                fallback = "redis_unavailable"
        else:
            fallback = "redis_unavailable"
        event = {
            "message": "last",
            "timestamp": int(time.time() * 1000),
            "user": user,
            "track": track,
            "time": time_,
            "latency": time.perf_counter() - t0,
            "recommendation": None,
            "experiments": arms,
            "recommender": None,
            "fallback": fallback,
            "seq": seq,
            "event_id": self._event_id(),
        }
        self.eventlog.event(event)
        return event

    def track_json(self, track: int) -> bytes | None:
        """Raw JSON of a track from Redis; RedisUnavailable when Redis is down."""
        if not self.redis_available():
            raise RedisUnavailable(self.redis_error or "redis unavailable")
        raw = self.redis_call("track", store.get_track, self.redis, self.namespace, self.catalog.digest, track)
        self._mark_up()
        return raw

    # ------------------------------------------------------------ health

    def begin_drain(self) -> None:
        """Stop being ready: load balancers move away, clients close keep-alive connections."""
        self.draining = True

    def health(self) -> tuple[bool, dict[str, Any]]:
        """Readiness: Redis answers PING and holds this catalog; details for operators."""
        redis_state = "ok"
        catalog_in_redis = False
        try:
            self.redis.ping()
            catalog_in_redis = store.catalog_version(self.redis, self.namespace) == self.catalog.digest
            self._mark_up()
            self._down_until = 0.0
        except REDIS_ERRORS as exc:
            self._mark_down(exc, "health")
            redis_state = f"unavailable: {type(exc).__name__}"
        exps = self.experiments.current
        ready = redis_state == "ok" and catalog_in_redis and not self.draining
        body: dict[str, Any] = {
            "status": "ok" if ready else "unavailable",
            "redis": redis_state,
            "catalog": {
                "tracks": self.catalog.size,
                "version": self.catalog.digest,
                "in_redis": catalog_in_redis,
            },
            "tables": dict(self.tables.versions),
            "experiments": [e.name for e in exps.experiments],
            "experiments_error": self.experiments.last_error,
            "recommenders_pending": (new_code := pending(self.settings.recommenders_dir)),
            "recommenders_message": f"{RESTART_MESSAGE}: {', '.join(new_code)}" if new_code else None,
            "pid": os.getpid(),
            "uptime": round(time.time() - self.started, 3),
        }
        if self.draining:
            body["status"] = "draining"
        if not ready:
            body["error"] = "unavailable"
            if self.draining:
                body["message"] = "shutting down (draining)"
            else:
                body["message"] = (
                    f"Redis {redis_state}" if redis_state != "ok" else "catalog not (yet) loaded in Redis"
                )
        return ready, body


def init_app(app: Flask, catalog: Catalog | None = None) -> Service:
    """Build this process's `Service` from `app.config["BOTIFY_SETTINGS"]` and attach it to `app`.

    The Flask-extension convention: the resources find it as `app.extensions["botify"]`.
    """
    service = Service(app.config["BOTIFY_SETTINGS"], catalog=catalog)
    app.extensions["botify"] = service
    return service
