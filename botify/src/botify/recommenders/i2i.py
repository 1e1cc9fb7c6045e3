"""i2i: item-to-item from the user's recent listens, anchors weighted by listen time."""

from __future__ import annotations

from collections.abc import Sequence

from botify.recommenders.base import Fallback, Recommender, register


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
