"""The built-in recommenders: random, top_pop, sticky_artist, indexed, contextual, i2i.

Each one avoids the track just played and the tracks already played in the
current session whenever an alternative exists, and raises Fallback with a
reason when it cannot answer, so the next one of its chain takes over.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from botify.recommenders.base import Fallback, Recommender, register


def random_track(catalog_size: int, rng, played, prev_track: int) -> int:  # type: ignore[no-untyped-def]
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


@register("random")
class Random(Recommender):
    """Uniform over the catalog; always answers."""

    fallback = ()

    def recommend_next(self, user: int, prev_track: int, prev_track_time: float) -> int:
        return random_track(self.catalog.size, self.rng, self.played(user), prev_track)


@register("top_pop")
class TopPop(Recommender):
    """The most popular unplayed track of the `top` table (a top list), best first."""

    tables = {"table": "top_pop"}

    def recommend_next(self, user: int, prev_track: int, prev_track_time: float) -> int:
        top = self.table("table").get(b"top")
        if top is None or not len(top):
            raise Fallback("no_table")
        pick = self.first_unplayed(top, user, prev_track)
        if pick is None:
            raise Fallback("exhausted")
        return pick


@register("sticky_artist")
class StickyArtist(Recommender):
    """Another track by the artist of the track just played (in-process catalog)."""

    def recommend_next(self, user: int, prev_track: int, prev_track_time: float) -> int:
        tracks = self.catalog.tracks_of_artist(self.catalog.artist_of(prev_track))
        played = self.played(user)
        n = len(tracks)
        if n:
            for _ in range(8):
                t = int(tracks[self.rng.randrange(n)])
                if t != prev_track and t not in played:
                    return t
            left = [int(t) for t in tracks if t != prev_track and int(t) not in played]
            if left:
                return left[self.rng.randrange(len(left))]
        raise Fallback("artist_exhausted")


@register("indexed")
class Indexed(Recommender):
    """The user's own precomputed list (a `user` table), first unplayed entry."""

    tables = {"table": "indexed"}
    fallback = ("top_pop", "random")

    def recommend_next(self, user: int, prev_track: int, prev_track_time: float) -> int:
        row = self.table("table").get(user)
        if row is None or not len(row):
            raise Fallback("cold_user")
        pick = self.first_unplayed(row, user, prev_track)
        if pick is None:
            raise Fallback("exhausted")
        return pick


@register("contextual")
class Contextual(Recommender):
    """A random unplayed track among the neighbours of the track just played (an i2i table)."""

    tables = {"table": "contextual"}
    fallback = ("top_pop", "random")

    def recommend_next(self, user: int, prev_track: int, prev_track_time: float) -> int:
        row = self.table("table").get(prev_track)
        if row is None or not len(row):
            raise Fallback("cold_track")
        played = self.played(user)
        candidates = row.tolist() if isinstance(row, np.ndarray) else [int(t) for t in row]
        left = [t for t in candidates if t != prev_track and t not in played]
        if not left:
            raise Fallback("exhausted")
        return left[self.rng.randrange(len(left))]


@register("i2i")
class I2I(Recommender):
    """Item-to-item from the user's recent listens.

    Anchors are drawn from the recent listens without replacement, weighted
    by total listen time per track (all zero: uniform); the answer is the
    first unplayed neighbour of the first anchor that has one. All anchor
    rows come in one Redis round trip.
    """

    tables = {"table": "i2i"}
    fallback = ("top_pop", "random")
    anchors = 3

    def configure(self, anchors: int = 3, **params: object) -> None:
        super().configure(**params)
        if int(anchors) < 1:
            raise ValueError("i2i: anchors must be >= 1")
        self.anchors = int(anchors)

    def choose_anchors(self, recent: Sequence[tuple[int, float]]) -> list[int]:
        weight: dict[int, float] = {}
        get = weight.get
        for track, t in recent:
            weight[track] = get(track, 0.0) + (t if t > 0.0 else 0.0)
        tracks = list(weight)
        if not tracks:
            return []
        chosen = self.rng.weighted_sample(list(weight.values()), self.anchors)
        return [tracks[i] for i in chosen]

    def recommend_next(self, user: int, prev_track: int, prev_track_time: float) -> int:
        anchors = self.choose_anchors(self.recent(user)) or [prev_track]
        rows = self.table("table").get_many(anchors)
        found_row = False
        for row in rows:
            if row is None or not len(row):
                continue
            found_row = True
            pick = self.first_unplayed(row, user, prev_track)
            if pick is not None:
                return pick
        raise Fallback("exhausted" if found_row else "cold_user")
