"""top_pop: the most popular unplayed track of a top list (the course's TopPop)."""

from __future__ import annotations

from botify.recommenders.base import Fallback, Recommender, register


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
