"""The recommender API: one class, one method, one explicitly passed context.

A recommender is a class with the course's method
`recommend_next(self, user, prev_track, prev_track_time) -> int`, registered by
name with `@register("name")` and chosen per experiment arm in
config/experiments.yml (docs/recommenders.md lists every concept).

Everything it may use is on `self.ctx`, a `Context`:
- at construction (in `configure`): `ctx.catalog`, `ctx.table(name)`, `ctx.seed`;
- inside `recommend_next`: also `ctx.played`, `ctx.recent`, `ctx.rng`,
  `ctx.first_unplayed(candidates)` for this request.
And `self.fallback.recommend_next(user, prev_track, prev_track_time)` asks the
next recommender of its chain, as the course's classes do.

Why a per-request view instead of thread-local state: the service builds one
configured instance per name when the config is loaded, and for each request
a shallow copy of it (`bind`) whose `ctx` holds that request's data. The data a
call sees is then exactly what was passed to it, in any thread, in a test or
in a notebook, and nothing of one request can leak into the next.
"""

from __future__ import annotations

import logging
from bisect import bisect_right
from collections.abc import Callable, Container, Iterable, Sequence
from dataclasses import dataclass, field
from itertools import accumulate
from typing import Any, ClassVar

import mmh3
import numpy as np
import orjson

from botify.store import decode_listens
from botify.store.catalog import Catalog

_MASK64 = (1 << 64) - 1

log = logging.getLogger("botify.recommenders")


class Fallback(Exception):  # noqa: N818 - it is a control-flow signal, not an error
    """Raised by a recommender (or a table read) that cannot answer; `reason` goes into the event."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class RequestRng:
    """splitmix64 seeded from (seed, user, prev_track, step): cheap and reproducible.

    Why not a numpy Generator per request: constructing one costs more than
    the whole recommendation. The same (seed, user, prev_track, step) gives
    the same draws in every worker and replica.
    """

    __slots__ = ("state",)

    def __init__(self, seed: int, user: int, prev_track: int, step: int) -> None:
        key = f"{seed}:{user}:{prev_track}:{step}".encode()
        self.state = mmh3.hash64(key, signed=False)[0]

    def next64(self) -> int:
        self.state = (self.state + 0x9E3779B97F4A7C15) & _MASK64
        z = self.state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
        return z ^ (z >> 31)

    def randrange(self, n: int) -> int:
        """Uniform integer in [0, n) (n < 2^32, so the modulo bias is < 2^-32)."""
        return self.next64() % n

    def random(self) -> float:
        """Uniform float in [0, 1)."""
        return (self.next64() >> 11) * (1.0 / (1 << 53))

    def choice(self, seq: Sequence[Any]) -> Any:
        """One element of a non-empty sequence, uniformly."""
        return seq[self.randrange(len(seq))]

    def weighted_sample(self, weights: Sequence[float], k: int) -> list[int]:
        """Up to k distinct indices drawn without replacement with probability ~ weight.

        Successive draws (k uniforms, not one per item): cheap when k is small.
        Zero weights are drawn only after every positive one; all zero means uniform.
        """
        w = [x if x > 0.0 else 0.0 for x in weights]
        n = len(w)
        k = min(k, n)
        total = sum(w)
        out: list[int] = []
        while len(out) < k:
            if total <= 1e-12:
                rest = [i for i in range(n) if i not in out]
                out.append(rest[self.randrange(len(rest))])
                continue
            target = self.random() * total
            # the first index whose running sum passes the target (never a zero weight)
            pick = bisect_right(list(accumulate(w)), target)
            if pick >= n or w[pick] <= 0.0:  # rounding: the running sum never passed it
                pick = max(i for i in range(n) if w[i] > 0.0)
            out.append(pick)
            total -= w[pick]
            w[pick] = 0.0
        return out

    def weighted_order(self, weights: Sequence[float]) -> list[int]:
        """Indices in a weighted random order without replacement (Efraimidis-Spirakis).

        Zero weights come last (in random order); all zero means uniform.
        """
        keyed = []
        for i, w in enumerate(weights):
            u = self.random() or 1e-300
            keyed.append((u ** (1.0 / w) if w > 0 else -u, i))
        keyed.sort(reverse=True)
        return [i for _, i in keyed]


def random_track(catalog_size: int, rng: RequestRng, played: Container[int], prev_track: int) -> int:
    """A uniform catalog track that is neither prev_track nor played, if one exists.

    Needs nothing but the in-process catalog size: it is also the service's
    last resort when Redis is down.
    """
    n = catalog_size
    if n == 1:
        return 0
    for _ in range(16):
        t = rng.randrange(n)
        if t != prev_track and t not in played:
            return t
    # Dense session (most of the catalog played): enumerate what is left.
    left = [t for t in range(n) if t != prev_track and t not in played]
    if left:
        return left[rng.randrange(len(left))]
    t = rng.randrange(n - 1)
    return t + 1 if t >= prev_track else t



# ------------------------------------------------------------------ catalog


@dataclass(frozen=True)
class Track:
    """Every public field of one catalog track (COMPAT tracks file plus the world's extras)."""

    track: int
    artist: str
    title: str
    genres: tuple[str, ...] = ()
    year: int | None = None
    mood: str | None = None
    #: any other field of the track's line, as read
    extra: dict[str, Any] = field(default_factory=dict)


_TRACK_FIELDS = ("track", "artist", "title", "genres", "year", "mood")


class CatalogView:
    """The in-process catalog as recommenders see it: ids 0..size-1 and every public field.

    Why a view over `botify.store.catalog.Catalog`: the store keeps each track's raw
    JSON line (the service answers /track with it unchanged); a recommender wants
    fields. A track's line is parsed on first use and kept, so a 1M-track catalog
    costs nothing at start.
    """

    __slots__ = ("_catalog", "_tracks")

    def __init__(self, catalog: Catalog) -> None:
        self._catalog = catalog
        self._tracks: dict[int, Track] = {}

    @property
    def size(self) -> int:
        """Number of tracks; ids are 0..size-1."""
        return self._catalog.size

    def __len__(self) -> int:
        return self._catalog.size

    def __contains__(self, track: object) -> bool:
        return track in self._catalog

    def __getitem__(self, track: int) -> Track:
        """The track's public fields: `catalog[t].artist`, `.title`, `.genres`, `.year`, `.mood`."""
        t = self._tracks.get(track)
        if t is None:
            if not 0 <= track < self._catalog.size:
                raise IndexError(f"track {track} is not in the catalog (0..{self._catalog.size - 1})")
            obj = orjson.loads(self._catalog.raw[track])
            genres = obj.get("genres")
            year = obj.get("year")
            mood = obj.get("mood")
            t = Track(
                track=int(track),
                artist=str(obj["artist"]),
                title=str(obj["title"]),
                genres=tuple(str(g) for g in genres) if isinstance(genres, list) else (),
                year=year if type(year) is int else None,
                mood=mood if isinstance(mood, str) else None,
                extra={k: v for k, v in obj.items() if k not in _TRACK_FIELDS},
            )
            self._tracks[track] = t
        return t

    def artist_of(self, track: int) -> str:
        """The artist of a track (no JSON parse: kept in memory by the store)."""
        return self._catalog.artist_of(track)

    def tracks_of_artist(self, artist: str) -> np.ndarray:
        """Every track id of an artist (empty array for an unknown artist)."""
        return self._catalog.tracks_of_artist(artist)


# ------------------------------------------------------------------ tables


class TableReader:
    """Reads rows of the live version of named tables (see botify.service.core.Tables)."""

    def get(self, name: str, key: int | bytes) -> np.ndarray | None:  # pragma: no cover - interface
        raise NotImplementedError

    def get_many(self, name: str, keys: Sequence[int]) -> list[np.ndarray | None]:  # pragma: no cover
        raise NotImplementedError

    def version(self, name: str) -> str | None:  # pragma: no cover
        raise NotImplementedError


class Table:
    """A named Redis table: `get(key)` is one row (an int32 array) or None."""

    __slots__ = ("_ctx", "name")

    def __init__(self, ctx: Context, name: str) -> None:
        self._ctx = ctx
        self.name = name

    def _reader(self) -> TableReader:
        reader = self._ctx.tables
        if reader is None or reader.version(self.name) is None:
            raise Fallback("no_table")
        return reader

    def get(self, key: int | bytes) -> np.ndarray | None:
        """The row for `key` in the live version; Fallback('no_table') when none is loaded."""
        return self._reader().get(self.name, key)

    def get_many(self, keys: Sequence[int]) -> list[np.ndarray | None]:
        """Rows for several keys in one Redis round trip."""
        return self._reader().get_many(self.name, keys)

    def __repr__(self) -> str:
        return f"Table({self.name!r})"


# ------------------------------------------------------------------ context

_OUTSIDE = "only inside recommend_next: the service sets it for each request"


class Context:
    """Everything a recommender may use, handed to it explicitly.

    The service makes one per process (catalog, tables, seed: what `configure` may
    use) and, for every request, a copy with that request's data (`for_request`)
    on which it calls the serving recommender.
    """

    __slots__ = (
        "catalog", "tables", "seed", "passthrough", "wanted_tables",
        "user", "prev_track", "prev_track_time", "played", "rng",
        "_recent", "_recent_raw", "_instances", "_tried", "answered", "reason",
    )

    def __init__(
        self,
        catalog: Catalog | CatalogView,
        tables: TableReader | None = None,
        seed: int = 0,
        passthrough: tuple[type[BaseException], ...] = (),
    ) -> None:
        if catalog is None:  # recommenders may read it when they are built: never build them without it
            raise TypeError("a Context needs the real catalog (botify.store.catalog.Catalog)")
        self.catalog = catalog if isinstance(catalog, CatalogView) else CatalogView(catalog)
        self.tables = tables
        self.seed = seed
        #: exceptions that are the service's business (Redis down), never a recommender's fallback
        self.passthrough = passthrough
        #: every table name ever opened through this context or its request copies (the service keeps them live)
        self.wanted_tables: set[str] = set()
        self.user: int = -1
        self.prev_track: int = -1
        self.prev_track_time: float = 0.0
        self.played: frozenset[int] | set[int] = frozenset()
        self.rng: RequestRng | None = None
        self._recent: list[tuple[int, float]] | None = None
        self._recent_raw: list[bytes] | None = None
        self._instances: dict[str, Recommender] | None = None
        self._tried: set[str] = set()
        self.answered: str | None = None
        self.reason: str | None = None

    # ------------------------------------------------ what a recommender reads

    def table(self, name: str) -> Table:
        """A live Redis table by name.

        Open it in `configure` and keep it as an attribute: it is then live from the
        first request. One first opened inside `recommend_next` becomes live at the
        service's next table refresh (within `reload_interval`).
        """
        self.wanted_tables.add(name)
        return Table(self, name)

    @property
    def recent(self) -> list[tuple[int, float]]:
        """The user's recent listens [(track, listen fraction)], newest first (parsed on first use)."""
        if self._recent is None:
            if self._instances is None:
                raise RuntimeError(f"ctx.recent is {_OUTSIDE}")
            self._recent = decode_listens(self._recent_raw or [])
        return self._recent

    def first_unplayed(self, candidates: Iterable[int]) -> int | None:
        """The first candidate that is neither the track just played nor played this session."""
        played, prev = self.played, self.prev_track
        for c in candidates:
            c = int(c)
            if c != prev and c not in played:
                return c
        return None

    # ------------------------------------------------ what the service calls

    def for_request(
        self,
        instances: dict[str, Recommender],
        user: int,
        prev_track: int,
        prev_track_time: float,
        played: frozenset[int] | set[int],
        rng: RequestRng,
        recent: list[tuple[int, float]] | None = None,
        recent_raw: list[bytes] | None = None,
    ) -> Context:
        """A copy of this (process) context carrying one request's data."""
        ctx = Context.__new__(Context)
        ctx.catalog, ctx.tables, ctx.seed, ctx.passthrough = self.catalog, self.tables, self.seed, self.passthrough
        ctx.wanted_tables = self.wanted_tables
        ctx.user, ctx.prev_track, ctx.prev_track_time = user, prev_track, prev_track_time
        ctx.played, ctx.rng = played, rng
        ctx._recent, ctx._recent_raw = recent, recent_raw
        ctx._instances, ctx._tried = instances, set()
        ctx.answered = ctx.reason = None
        return ctx

    def answer(self, serving: str) -> tuple[int, str, str | None]:
        """Ask `serving`, then its fallback chain: (track, who answered, first reason or None).

        A recommender that raises or returns something that is not a catalog id costs
        a fallback ("error", "invalid_answer"), never a failed request.
        """
        rec = self.ask((serving,), "")
        return rec, self.answered or "random", self.reason

    def ask(self, names: Sequence[str], reason: str) -> int:
        """The first valid answer of `names` (and, breadth-first, of their fallbacks)."""
        if reason and self.reason is None:
            self.reason = reason
        instances = self._instances
        if instances is None:
            raise RuntimeError(f"self.fallback is {_OUTSIDE}")
        queue = list(names)
        size = self.catalog.size
        while queue:
            name = queue.pop(0)
            if name in self._tried:
                continue
            self._tried.add(name)
            inst = instances[name]
            before = self.answered
            try:
                rec = inst.bind(self).recommend_next(self.user, self.prev_track, self.prev_track_time)
            except Fallback as fb:
                self.reason = self.reason or fb.reason
                queue.extend(inst.fallbacks)
                continue
            except self.passthrough:
                raise
            except Exception:  # a bug in a recommender must cost a fallback, not a 500
                log.exception("recommender %s failed", name)
                self.reason = self.reason or "error"
                queue.extend(inst.fallbacks)
                continue
            if type(rec) is not int:
                try:
                    rec = int(rec)  # numpy integers
                except (TypeError, ValueError, OverflowError):
                    rec = -1
            if not 0 <= rec < size:
                log.error("recommender %s returned %r, not a catalog track", name, rec)
                self.reason = self.reason or "invalid_answer"
                self.answered = before
                queue.extend(inst.fallbacks)
                continue
            if self.answered is before:  # nobody deeper answered for it: it is the one
                self.answered = name
            return rec
        # every chain exhausted: a uniform unplayed track always answers
        self.reason = self.reason or "exhausted"
        self.answered = "random"
        rng = RequestRng(self.seed, self.user, self.prev_track, -1)
        return random_track(size, rng, self.played, self.prev_track)


class _Fallback:
    """What `self.fallback` is: the rest of a recommender's chain, for this request."""

    __slots__ = ("_ctx", "_names")

    def __init__(self, ctx: Context, names: tuple[str, ...]) -> None:
        self._ctx = ctx
        self._names = names

    def recommend_next(self, user: int, prev_track: int, prev_track_time: float, because: str = "declined") -> int:
        """The next recommender's answer; `because` is logged as the event's "fallback" reason."""
        return self._ctx.ask(self._names, because)


# ------------------------------------------------------------------ the class


class Recommender:
    """Base class: subclass, implement recommend_next, decorate with @register("name")."""

    #: default fallback chain (recommender names); "random" always answers
    fallbacks: ClassVar[tuple[str, ...]] = ("random",)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "fallback" in cls.__dict__:
            raise TypeError(
                f"{cls.__name__}: `fallback` is the next recommender at request time; "
                "declare the chain as `fallbacks = (...)`"
            )

    def __init__(self, ctx: Context, name: str | None = None, **params: Any) -> None:
        self.ctx = ctx
        self.name = name or getattr(type(self), "registered_name", type(self).__name__)
        chain = params.pop("fallback", None)
        if isinstance(chain, str):
            chain = [chain]
        self.fallbacks: tuple[str, ...] = tuple(str(c) for c in chain) if chain is not None else type(self).fallbacks
        self.configure(**params)
        #: tables this instance reads (the service keeps their live versions fresh)
        self.table_names: frozenset[str] = frozenset(
            v.name for v in vars(self).values() if isinstance(v, Table)
        )

    def configure(self, **params: Any) -> None:
        """Take parameters from experiments.yml (override with named arguments); unknown ones are an error."""
        if params:
            raise TypeError(f"{type(self).__name__} got unknown parameter(s): {', '.join(sorted(params))}")

    def bind(self, ctx: Context) -> Recommender:
        """A per-request view: the same configured object with `ctx` holding this request's data."""
        view = object.__new__(type(self))
        view.__dict__.update(self.__dict__)
        view.ctx = ctx
        return view

    @property
    def fallback(self) -> _Fallback:
        """The next recommender of this one's chain: `self.fallback.recommend_next(user, prev_track, prev_track_time)`."""
        return _Fallback(self.ctx, self.fallbacks)

    def recommend_next(self, user: int, prev_track: int, prev_track_time: float) -> int:
        """The track to play after `prev_track`, of which the user listened `prev_track_time` (0..1)."""
        raise NotImplementedError


REGISTRY: dict[str, type[Recommender]] = {}


def register(name: str) -> Callable[[type[Recommender]], type[Recommender]]:
    """Class decorator: make a recommender available under `name` in experiments.yml."""

    def deco(cls: type[Recommender]) -> type[Recommender]:
        old = REGISTRY.get(name)
        if old is not None and old is not cls and (old.__module__, old.__qualname__) != (cls.__module__, cls.__qualname__):
            raise ValueError(f"recommender name {name!r} is already registered by {old.__module__}.{old.__qualname__}")
        cls.registered_name = name  # type: ignore[attr-defined]
        REGISTRY[name] = cls
        return cls

    return deco
