"""Redis as the store: key layout, bulk loaders and versioned tables.

The full layout is documented in docs/store.md. Values are JSON (track
metadata, table metadata) or packed little-endian int32 arrays (lists of
track ids): never pickle, so nothing read from Redis can execute code.

Tables (recommendation artifacts) are versioned: a new version is loaded
beside the live one and `switch_table` flips one pointer atomically, so a
request never sees a half-loaded table; `rollback_table` flips it back.
"""

from __future__ import annotations

import hashlib
import logging
import time
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import redis as redis_lib
from redis.backoff import NoBackoff
from redis.retry import Retry

from botify.store.artifacts import ArtifactError, parse_artifact
from botify.store.catalog import Catalog

log = logging.getLogger("botify.store")

TOP_FIELD = b"top"
_CHUNK = 2000


class TableError(ValueError):
    """A recommendation artifact is malformed, empty or names unknown tracks."""


class StoreError(RuntimeError):
    """The store is not in a state that allows the operation (e.g. no catalog)."""


# ---------------------------------------------------------------- key layout


class Keys:
    """Every Redis key botify uses, under one namespace prefix."""

    def __init__(self, namespace: str) -> None:
        self.ns = namespace

    # catalog
    def catalog_current(self) -> str:
        return f"{self.ns}:catalog:current"

    def catalog_lock(self) -> str:
        return f"{self.ns}:catalog:lock"

    def catalog_loads(self) -> str:
        return f"{self.ns}:catalog:loads"

    def catalog_tracks(self, version: str) -> str:
        return f"{self.ns}:catalog:{version}:tracks"

    def catalog_artists(self, version: str) -> str:
        return f"{self.ns}:catalog:{version}:artists"

    def catalog_meta(self, version: str) -> str:
        return f"{self.ns}:catalog:{version}:meta"

    # per-user state
    def recent(self, user: int) -> str:
        return f"{self.ns}:user:{user}:recent"

    def session(self, user: int) -> str:
        return f"{self.ns}:user:{user}:session"

    # tables
    def tables(self) -> str:
        return f"{self.ns}:tables"

    def table_current(self, name: str) -> str:
        return f"{self.ns}:table:{name}:current"

    def table_history(self, name: str) -> str:
        return f"{self.ns}:table:{name}:history"

    def table_versions(self, name: str) -> str:
        return f"{self.ns}:table:{name}:versions"

    def table_data(self, name: str, version: str) -> str:
        return f"{self.ns}:table:{name}:{version}:data"

    def table_meta(self, name: str, version: str) -> str:
        return f"{self.ns}:table:{name}:{version}:meta"


# ---------------------------------------------------------------- helpers


def encode_listen(track: int, time: float) -> bytes:
    """One entry of a user's recent-listens list: the JSON text `[track,time]`.

    JSON because the whole list then parses in one C call (decode_listens: ~5 us for
    50 entries, against ~30 us for splitting `track:time` strings entry by entry),
    and it stays readable in redis-cli. The time keeps its exact float value.
    """
    return orjson.dumps([track, time])


def decode_listens(raw: list[bytes]) -> list[tuple[int, float]]:
    """A recent-listens list as [(track, time)].

    One `orjson.loads` for the whole list when every entry is a JSON pair, as
    encode_listen writes them (only botify writes these keys): the shape is checked
    there, the number types are not. Otherwise entry by entry, strictly: entries of
    the earlier `track:time` layout (a Redis that outlived an upgrade) are read, and
    anything else raises ValueError.
    """
    if not raw:
        return []
    try:
        return [(t, f) for t, f in orjson.loads(b"[" + b",".join(raw) + b"]")]
    except (orjson.JSONDecodeError, TypeError, ValueError):
        return [_decode_listen(x) for x in raw]


def _decode_listen(entry: bytes) -> tuple[int, float]:
    if entry[:1] == b"[":
        try:
            t, f = orjson.loads(entry)
        except (orjson.JSONDecodeError, TypeError) as exc:
            raise ValueError(f"malformed listen {entry[:40]!r}") from exc
    else:
        t, _, f = entry.partition(b":")
    if type(t) is not int and not isinstance(t, bytes):
        raise ValueError(f"malformed listen {entry[:40]!r}")
    try:
        return int(t), float(f)
    except TypeError as exc:  # e.g. [1, null]
        raise ValueError(f"malformed listen {entry[:40]!r}") from exc


def connect(url: str, timeout: float = 0.25) -> redis_lib.Redis:
    """A client with short timeouts and no hidden retries.

    Why: when Redis is gone a request must fall back within milliseconds,
    not sit in redis-py's default retry/backoff loop.
    """
    return redis_lib.Redis.from_url(
        url,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        retry=Retry(NoBackoff(), 0),
        health_check_interval=0,
    )


def pack_ids(ids: Iterable[int]) -> bytes:
    """Track ids as packed little-endian int32 (4 bytes per id)."""
    return np.asarray(list(ids), dtype="<i4").tobytes()


def unpack_ids(raw: bytes | None) -> np.ndarray:
    """Inverse of pack_ids; an empty array for a missing value."""
    if not raw:
        return np.zeros(0, dtype="<i4")
    return np.frombuffer(raw, dtype="<i4")


def _s(value: Any) -> str | None:
    if value is None:
        return None
    return value.decode() if isinstance(value, bytes) else str(value)


_RELEASE_LOCK = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end
return 0
"""


# ---------------------------------------------------------------- catalog


def catalog_version(redis: redis_lib.Redis, namespace: str) -> str | None:
    """Version (content digest) of the catalog currently live in Redis."""
    return _s(redis.get(Keys(namespace).catalog_current()))


def catalog_size(redis: redis_lib.Redis, namespace: str) -> int | None:
    """Number of tracks of the live catalog, None when none is loaded."""
    keys = Keys(namespace)
    version = catalog_version(redis, namespace)
    if version is None:
        return None
    meta = redis.get(keys.catalog_meta(version))
    return int(orjson.loads(meta)["size"]) if meta else None


def load_catalog(
    redis: redis_lib.Redis,
    path: Path,
    namespace: str,
    *,
    catalog: Catalog | None = None,
    timeout: float = 60.0,
) -> int:
    """Load a COMPAT tracks file into Redis once; return the number of tracks.

    Idempotent (the version is the file's content digest: loading the live
    catalog again is a no-op) and once-only when many workers and replicas
    start together: one wins a SET NX lock and loads through pipelines, the
    others wait until the version pointer names the same digest.
    """
    cat = catalog if catalog is not None else Catalog.from_file(path)
    keys = Keys(namespace)
    version = cat.digest
    if catalog_version(redis, namespace) == version:
        return cat.size
    token = uuid.uuid4().hex
    deadline = time.monotonic() + timeout
    while not redis.set(keys.catalog_lock(), token, nx=True, ex=max(30, int(timeout))):
        if catalog_version(redis, namespace) == version:
            return cat.size
        if time.monotonic() > deadline:
            raise StoreError(f"timed out after {timeout}s waiting for another loader of the catalog")
        time.sleep(0.05)
    try:
        previous = catalog_version(redis, namespace)
        if previous == version:
            return cat.size
        t0 = time.perf_counter()
        tracks_key = keys.catalog_tracks(version)
        artists_key = keys.catalog_artists(version)
        pipe = redis.pipeline(transaction=False)
        pipe.delete(tracks_key, artists_key)
        for start in range(0, cat.size, _CHUNK):
            pipe.hset(tracks_key, mapping={i: cat.raw[i] for i in range(start, min(start + _CHUNK, cat.size))})
        artists = list(cat.artist_tracks.items())
        for start in range(0, len(artists), _CHUNK):
            pipe.hset(
                artists_key,
                mapping={a: ids.astype("<i4").tobytes() for a, ids in artists[start : start + _CHUNK]},
            )
        meta = {
            "version": version,
            "size": cat.size,
            "artists": len(artists),
            "source": str(path),
            "loaded_at": int(time.time() * 1000),
        }
        pipe.set(keys.catalog_meta(version), orjson.dumps(meta))
        pipe.set(keys.catalog_current(), version)
        pipe.incr(keys.catalog_loads())
        pipe.execute()
        if previous is not None:
            redis.delete(
                keys.catalog_tracks(previous), keys.catalog_artists(previous), keys.catalog_meta(previous)
            )
        log.info(
            "loaded catalog %s (%d tracks) into Redis in %.2fs", version, cat.size, time.perf_counter() - t0
        )
        return cat.size
    finally:
        redis.eval(_RELEASE_LOCK, 1, keys.catalog_lock(), token)


def get_track(redis: redis_lib.Redis, namespace: str, version: str, track: int) -> bytes | None:
    """Raw JSON of one track of the given catalog version."""
    return redis.hget(Keys(namespace).catalog_tracks(version), track)


# ---------------------------------------------------------------- tables


def parse_table(data: bytes, source: str, catalog_size: int) -> tuple[str, dict[bytes, bytes]]:
    """Validate an artifact and return (kind, field -> packed ids).

    Why one parser for training and serving (botify.store.artifacts): a table is
    served to every user as soon as it is switched on, so what the trainers'
    validator refuses must be refused here too, with the same one-line reasons.
    """
    try:
        art = parse_artifact(data.splitlines(), catalog_size)
    except ArtifactError as exc:
        raise TableError(f"{source}: {exc}") from exc
    if art.kind == "top":
        return "top", {TOP_FIELD: pack_ids(art.top)}
    return art.kind, {str(key).encode(): pack_ids(ids) for key, ids in art.lists.items()}


def load_table(
    redis: redis_lib.Redis,
    name: str,
    path: Path,
    namespace: str,
    *,
    catalog_size: int | None = None,
) -> str:
    """Validate an artifact and load it as a new, not yet live, version of table `name`.

    Returns the version; make it live with `switch_table`. The track ids are
    checked against the catalog live in Redis (or `catalog_size` if given).
    """
    if not name or any(c in name for c in " :{}*"):
        raise TableError(f"bad table name {name!r}")
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise TableError(f"cannot read {path}: {exc.strerror}") from exc
    if catalog_size is None:
        catalog_size = catalog_size_or_fail(redis, namespace)
    kind, fields_ = parse_table(data, str(path), catalog_size)
    sidecar = Path(str(path) + ".meta.json")
    meta_extra: dict[str, Any] = {}
    if sidecar.exists():
        try:
            meta_extra = orjson.loads(sidecar.read_bytes())
        except orjson.JSONDecodeError as exc:
            raise TableError(f"{sidecar}: not JSON ({exc})") from exc
        if not isinstance(meta_extra, dict):
            raise TableError(f"{sidecar}: expected a JSON object")
        if meta_extra.get("kind") not in (None, kind):
            raise TableError(f"{sidecar}: says kind {meta_extra.get('kind')!r} but the file is a {kind} table")
    keys = Keys(namespace)
    digest = hashlib.sha256(data).hexdigest()[:8]
    version = f"{int(time.time() * 1000)}-{digest}"
    data_key = keys.table_data(name, version)
    pipe = redis.pipeline(transaction=False)
    pipe.delete(data_key)
    items = list(fields_.items())
    for start in range(0, len(items), _CHUNK):
        pipe.hset(data_key, mapping=dict(items[start : start + _CHUNK]))
    meta = {
        "table": name,
        "version": version,
        "kind": kind,
        "keys": len(items),
        "source": str(path),
        "sha256": hashlib.sha256(data).hexdigest(),
        "loaded_at": int(time.time() * 1000),
        "artifact": meta_extra,
    }
    pipe.set(keys.table_meta(name, version), orjson.dumps(meta))
    pipe.sadd(keys.table_versions(name), version)
    pipe.sadd(keys.tables(), name)
    pipe.execute()
    log.info("loaded table %s version %s (%s, %d keys)", name, version, kind, len(items))
    return version


def catalog_size_or_fail(redis: redis_lib.Redis, namespace: str) -> int:
    size = catalog_size(redis, namespace)
    if size is None:
        raise StoreError("no catalog in Redis: load the catalog before any table")
    return size


def table_meta(redis: redis_lib.Redis, name: str, version: str, namespace: str) -> dict[str, Any] | None:
    raw = redis.get(Keys(namespace).table_meta(name, version))
    return orjson.loads(raw) if raw else None


def current_table_version(redis: redis_lib.Redis, name: str, namespace: str) -> str | None:
    return _s(redis.get(Keys(namespace).table_current(name)))


def switch_table(
    redis: redis_lib.Redis, name: str, version: str, namespace: str, *, keep: int = 3
) -> str | None:
    """Make `version` the live version of table `name` atomically; return the previous one.

    The previous live version goes on a history list (for rollback); versions
    that fall off the last `keep` are deleted.
    """
    keys = Keys(namespace)
    if not redis.exists(keys.table_meta(name, version)):
        raise StoreError(f"table {name} has no loaded version {version}")
    with redis.pipeline(transaction=True) as pipe:
        while True:
            try:
                pipe.watch(keys.table_current(name))
                previous = _s(pipe.get(keys.table_current(name)))
                pipe.multi()
                if previous is not None and previous != version:
                    pipe.lpush(keys.table_history(name), previous)
                pipe.set(keys.table_current(name), version)
                pipe.execute()
                break
            except redis_lib.WatchError:
                continue
    _collect_garbage(redis, name, namespace, keep)
    log.info("table %s: switched %s -> %s", name, previous, version)
    return previous


def rollback_table(redis: redis_lib.Redis, name: str, namespace: str) -> str:
    """Make the previous live version live again; return it."""
    keys = Keys(namespace)
    with redis.pipeline(transaction=True) as pipe:
        while True:
            try:
                pipe.watch(keys.table_current(name), keys.table_history(name))
                previous = _s(pipe.lindex(keys.table_history(name), 0))
                if previous is None:
                    pipe.unwatch()
                    raise StoreError(f"table {name} has no previous version to roll back to")
                pipe.multi()
                pipe.lpop(keys.table_history(name))
                pipe.set(keys.table_current(name), previous)
                pipe.execute()
                break
            except redis_lib.WatchError:
                continue
    log.info("table %s: rolled back to %s", name, previous)
    return previous


def _collect_garbage(redis: redis_lib.Redis, name: str, namespace: str, keep: int) -> None:
    """Delete versions that were live once and are neither live nor in the last `keep`."""
    keys = Keys(namespace)
    history = [_s(v) for v in redis.lrange(keys.table_history(name), 0, -1)]
    redis.ltrim(keys.table_history(name), 0, max(0, keep - 1))
    for version in history[keep:]:
        if version and version != current_table_version(redis, name, namespace):
            redis.delete(keys.table_data(name, version), keys.table_meta(name, version))
            redis.srem(keys.table_versions(name), version)


def list_tables(redis: redis_lib.Redis, namespace: str) -> dict[str, dict[str, Any]]:
    """Table name -> {current, history, versions}: what an operator wants to see."""
    keys = Keys(namespace)
    out: dict[str, dict[str, Any]] = {}
    for raw in sorted(redis.smembers(keys.tables())):
        name = _s(raw) or ""
        out[name] = {
            "current": current_table_version(redis, name, namespace),
            "history": [_s(v) for v in redis.lrange(keys.table_history(name), 0, -1)],
            "versions": sorted(_s(v) or "" for v in redis.smembers(keys.table_versions(name))),
        }
    return out
