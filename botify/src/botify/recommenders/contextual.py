"""contextual: a random unplayed neighbour of the track just played (the course's Contextual)."""

from __future__ import annotations

import numpy as np

from botify.recommenders.base import Fallback, Recommender, register


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
