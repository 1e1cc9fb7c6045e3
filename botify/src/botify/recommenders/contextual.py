"""contextual: a random unplayed neighbour of the track just played (the course's Contextual)."""

from __future__ import annotations

from botify.recommenders.base import Recommender, register


@register("contextual")
class Contextual(Recommender):
    """A random unplayed track among the neighbours of the track just played (an i2i table)."""

    fallbacks = ("top_pop", "random")

    def configure(self, table: str = "contextual") -> None:
        self.neighbours = self.ctx.table(table)

    def recommend_next(self, user: int, prev_track: int, prev_track_time: float) -> int:
        row = self.neighbours.get(prev_track)
        if row is None or not len(row):
            return self.fallback.recommend_next(user, prev_track, prev_track_time, because="cold_track")
        played = self.ctx.played
        left = [t for t in row.tolist() if t != prev_track and t not in played]
        if not left:
            return self.fallback.recommend_next(user, prev_track, prev_track_time, because="exhausted")
        return left[self.ctx.rng.randrange(len(left))]
