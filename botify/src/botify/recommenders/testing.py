"""Trying a recommender without the service: in tests, notebooks and the homework's own test.

Why here: a student's test should run the class exactly as the service does
(the same `Context`, the same fallback chain, the same checks of the answer),
without Redis, a server or a world on disk.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from botify.recommenders.base import REGISTRY, Context, Recommender, RequestRng, TableReader
from botify.store.catalog import Catalog


class MemoryTables(TableReader):
    """Tables held in dicts: {table name: {key: [track ids]}}; keys are ints or b"top"-like bytes."""

    def __init__(self, tables: Mapping[str, Mapping[Any, Sequence[int]]] | None = None) -> None:
        self.tables = {name: {self._key(k): list(v) for k, v in rows.items()} for name, rows in (tables or {}).items()}
        self.reads = 0

    @staticmethod
    def _key(key: Any) -> Any:
        if isinstance(key, bytes):
            key = key.decode()
        return int(key) if isinstance(key, int) or (isinstance(key, str) and key.lstrip("-").isdigit()) else key

    def version(self, name: str) -> str | None:
        return "memory" if name in self.tables else None

    def get(self, name: str, key: int | bytes) -> np.ndarray | None:
        return self.get_many(name, [key])[0]  # type: ignore[list-item]

    def get_many(self, name: str, keys: Sequence[int | bytes]) -> list[np.ndarray | None]:
        self.reads += 1
        rows = self.tables[name]
        out = [rows.get(self._key(k)) for k in keys]
        return [None if r is None else np.asarray(r, dtype=np.int32) for r in out]


def make_catalog(tracks: Catalog | Path | str | Iterable[Mapping[str, Any]]) -> Catalog:
    """A catalog from a tracks file, or from records like {"track": 0, "artist": "...", "title": "..."}."""
    if isinstance(tracks, Catalog):
        return tracks
    if isinstance(tracks, str | Path):
        return Catalog.from_file(Path(tracks))
    return Catalog.from_bytes(b"".join(json.dumps(dict(t)).encode() + b"\n" for t in tracks))


@dataclass(frozen=True)
class Answer:
    """What the service would log for one /next: the track, who answered, the fallback reason."""

    track: int
    recommender: str
    fallback: str | None


class Harness:
    """A recommender (and its fallback chain) built as the service builds it, called as it calls it."""

    def __init__(
        self,
        recommender: str | type[Recommender],
        tracks: Catalog | Path | str | Iterable[Mapping[str, Any]],
        tables: Mapping[str, Mapping[Any, Sequence[int]]] | TableReader | None = None,
        seed: int = 0,
        **params: Any,
    ) -> None:
        reader = tables if isinstance(tables, TableReader) else MemoryTables(tables)
        self.tables = reader
        self.ctx = Context(make_catalog(tracks), reader, seed)
        cls = REGISTRY[recommender] if isinstance(recommender, str) else recommender
        self.name = recommender if isinstance(recommender, str) else getattr(cls, "registered_name", cls.__name__)
        self.instances: dict[str, Recommender] = {}
        todo: list[tuple[str, type[Recommender], dict[str, Any]]] = [(self.name, cls, params)]
        while todo:
            name, c, p = todo.pop()
            if name in self.instances:
                continue
            inst = c(self.ctx, name=name, **p)
            self.instances[name] = inst
            todo.extend((f, REGISTRY[f], {}) for f in inst.fallbacks if f not in self.instances)
        if "random" not in self.instances:
            self.instances["random"] = REGISTRY["random"](self.ctx, name="random")
        self.recommender = self.instances[self.name]

    def answer(
        self,
        user: int,
        prev_track: int,
        prev_track_time: float = 1.0,
        played: Iterable[int] = (),
        recent: Sequence[tuple[int, float]] | None = None,
        step: int | None = None,
    ) -> Answer:
        """One /next: `played` is the session before this request (prev_track is added, as the service does)."""
        session = {int(t) for t in played} | {prev_track}
        listens = list(recent) if recent is not None else [(prev_track, prev_track_time)]
        rng = RequestRng(self.ctx.seed, user, prev_track, len(session) if step is None else step)
        ctx = self.ctx.for_request(self.instances, user, prev_track, prev_track_time, session, rng, recent=listens)
        track, who, reason = ctx.answer(self.name)
        return Answer(track, who, reason)

    def __call__(self, user: int, prev_track: int, prev_track_time: float = 1.0, **kw: Any) -> int:
        """Just the track (see `answer`)."""
        return self.answer(user, prev_track, prev_track_time, **kw).track
