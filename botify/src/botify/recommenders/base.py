"""The recommender interface, the registry and the per-request context.

A recommender is a small class with the course's method
`recommend_next(user, prev_track, prev_track_time) -> int`. It is registered
by name with `@register("name")` and chosen per experiment arm in
config/experiments.yml, so a new one never needs a change in the server.

What a recommender may use (all prepared by the service before the call):
- `self.catalog`: the in-process catalog (size, artist per track, tracks per artist);
- `self.played(user)`: tracks played in the user's current session (incl. prev_track);
- `self.recent(user)`: the user's recent listens [(track, time)], newest first;
- `self.table(name).get(key)` / `.get_many(keys)`: rows of a Redis table (np.int32 arrays);
- `self.rng`: the request's deterministic random source (RequestRng);
- `self.first_unplayed(candidates, user, prev_track)`: the usual filter.
When it cannot answer it raises `Fallback("reason")`; the service then asks
the next recommender of its fallback chain and logs the reason.
"""

from __future__ import annotations

import threading
from bisect import bisect_right
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from itertools import accumulate
from typing import Any, ClassVar

import mmh3
import numpy as np

from botify.store import decode_listens
from botify.store.catalog import Catalog

_MASK64 = (1 << 64) - 1


class Fallback(Exception):  # noqa: N818 - it is a control-flow signal, not an error
    """Raised by a recommender that cannot answer; `reason` goes into the event."""

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
        return (self.next64() >> 11) * (1.0 / (1 << 53))

    def choice(self, seq: Sequence[Any]) -> Any:
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


@dataclass
class RequestState:
    """What the service fetched for this request before calling a recommender."""

    user: int
    prev_track: int
    prev_time: float
    played: frozenset[int] | set[int]
    recent: list[tuple[int, float]] | None  # None: parse `recent_raw` on first use
    rng: RequestRng
    redis_ok: bool = True
    extra: dict[str, Any] = field(default_factory=dict)
    recent_raw: list[bytes] | None = None

    def recent_listens(self) -> list[tuple[int, float]]:
        """[(track, time)] newest first; parsed lazily (most recommenders never ask)."""
        if self.recent is None:
            self.recent = decode_listens(self.recent_raw or [])
        return self.recent


class TableReader:
    """Reads rows of the live version of named tables (see botify.service.core.Tables)."""

    def get(self, name: str, key: int | bytes) -> np.ndarray | None:  # pragma: no cover - interface
        raise NotImplementedError

    def get_many(self, name: str, keys: Sequence[int]) -> list[np.ndarray | None]:  # pragma: no cover
        raise NotImplementedError

    def version(self, name: str) -> str | None:  # pragma: no cover
        raise NotImplementedError


class _TableHandle:
    __slots__ = ("name", "reader")

    def __init__(self, reader: TableReader, name: str) -> None:
        self.reader = reader
        self.name = name

    def get(self, key: int | bytes) -> np.ndarray | None:
        """The row for `key`; raises Fallback('no_table') when the table has no live version."""
        if self.reader.version(self.name) is None:
            raise Fallback("no_table")
        return self.reader.get(self.name, key)

    def get_many(self, keys: Sequence[int]) -> list[np.ndarray | None]:
        if self.reader.version(self.name) is None:
            raise Fallback("no_table")
        return self.reader.get_many(self.name, keys)


@dataclass
class Services:
    """Per-process things every recommender instance shares."""

    catalog: Catalog
    tables: TableReader
    seed: int = 0


_local = threading.local()


def current_state() -> RequestState:
    state = getattr(_local, "state", None)
    if state is None:
        raise RuntimeError("no request state: recommend_next called outside the service")
    return state


def set_state(state: RequestState | None) -> None:
    _local.state = state


class Recommender:
    """Base class: subclass, implement recommend_next, decorate with @register."""

    #: default fallback chain (instance names); "random" always answers
    fallback: ClassVar[tuple[str, ...]] = ("random",)
    #: tables this class reads, by parameter name -> default table name
    tables: ClassVar[dict[str, str]] = {}

    def __init__(self, services: Services, name: str | None = None, **params: Any) -> None:
        self.services = services
        self.catalog = services.catalog
        self.name = name or getattr(type(self), "registered_name", type(self).__name__)
        self.params = dict(params)
        chain = params.pop("fallback", None)
        self.fallback_chain: tuple[str, ...] = tuple(chain) if chain is not None else type(self).fallback
        self.table_names: dict[str, str] = {}
        for param, default in type(self).tables.items():
            self.table_names[param] = str(params.pop(param, default))
        self.configure(**params)

    def configure(self, **params: Any) -> None:
        """Take extra parameters from the config; unknown ones are an error."""
        if params:
            raise TypeError(f"{type(self).__name__} got unknown parameter(s): {', '.join(sorted(params))}")

    # ---------------------------------------------------------------- helpers

    @property
    def state(self) -> RequestState:
        return current_state()

    @property
    def rng(self) -> RequestRng:
        return current_state().rng

    def played(self, user: int) -> frozenset[int] | set[int]:
        return current_state().played

    def recent(self, user: int) -> list[tuple[int, float]]:
        return current_state().recent_listens()

    def table(self, name: str) -> _TableHandle:
        """A live table, by table name or by this class's table parameter name."""
        return _TableHandle(self.services.tables, self.table_names.get(name, name))

    def first_unplayed(self, candidates: Iterable[int], user: int, prev_track: int) -> int | None:
        played = self.played(user)
        for c in candidates:
            c = int(c)
            if c != prev_track and c not in played:
                return c
        return None

    def recommend_next(self, user: int, prev_track: int, prev_track_time: float) -> int:
        raise NotImplementedError


REGISTRY: dict[str, type[Recommender]] = {}


def register(name: str) -> Callable[[type[Recommender]], type[Recommender]]:
    """Class decorator: make a recommender available under `name` in the config."""

    def deco(cls: type[Recommender]) -> type[Recommender]:
        if name in REGISTRY and REGISTRY[name] is not cls:
            raise ValueError(f"recommender name {name!r} is already registered by {REGISTRY[name]}")
        cls.registered_name = name  # type: ignore[attr-defined]
        REGISTRY[name] = cls
        return cls

    return deco
