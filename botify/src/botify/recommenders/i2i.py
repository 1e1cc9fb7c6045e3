"""i2i: item-to-item from the user's recent listens, anchors weighted by listen time."""

from __future__ import annotations

from collections.abc import Sequence

from botify.recommenders.base import Recommender, register


@register("i2i")
class I2I(Recommender):
    """Item-to-item from the user's recent listens.

    Anchors are drawn from the recent listens without replacement, weighted
    by total listen time per track (all zero: uniform); the answer is the
    first unplayed neighbour of the first anchor that has one. All anchor
    rows come in one Redis round trip.
    """

    fallbacks = ("top_pop", "random")

    def configure(self, table: str = "i2i", anchors: int = 3) -> None:
        if int(anchors) < 1:
            raise ValueError("i2i: anchors must be >= 1")
        self.anchors = int(anchors)
        self.neighbours = self.ctx.table(table)

    def choose_anchors(self, recent: Sequence[tuple[int, float]]) -> list[int]:
        weight: dict[int, float] = {}
        for track, t in recent:
            weight[track] = weight.get(track, 0.0) + (t if t > 0.0 else 0.0)
        tracks = list(weight)
        chosen = self.ctx.rng.weighted_sample(list(weight.values()), self.anchors) if tracks else []
        return [tracks[i] for i in chosen]

    def recommend_next(self, user: int, prev_track: int, prev_track_time: float) -> int:
        anchors = self.choose_anchors(self.ctx.recent) or [prev_track]
        rows = [row for row in self.neighbours.get_many(anchors) if row is not None and len(row)]
        for row in rows:
            pick = self.ctx.first_unplayed(row)
            if pick is not None:
                return pick
        return self.fallback.recommend_next(user, prev_track, prev_track_time, because="exhausted" if rows else "cold_user")
