"""indexed: the user's own precomputed list (the course's Indexed)."""

from __future__ import annotations

from botify.recommenders.base import Fallback, Recommender, register


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
