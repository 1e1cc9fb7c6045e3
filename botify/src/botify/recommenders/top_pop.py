"""top_pop: the most popular unplayed track of a top list (the course's TopPop)."""

from __future__ import annotations

from botify.recommenders.base import Recommender, register


@register("top_pop")
class TopPop(Recommender):
    """The most popular unplayed track of a top list (row `top` of its table), best first."""

    def configure(self, table: str = "top_pop") -> None:
        self.top = self.ctx.table(table)

    def recommend_next(self, user: int, prev_track: int, prev_track_time: float) -> int:
        top = self.top.get(b"top")
        if top is None or not len(top):
            return self.fallback.recommend_next(user, prev_track, prev_track_time, because="no_table")
        pick = self.ctx.first_unplayed(top)
        if pick is None:
            return self.fallback.recommend_next(user, prev_track, prev_track_time, because="exhausted")
        return pick
