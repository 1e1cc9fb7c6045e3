"""indexed: the user's own precomputed list (the course's Indexed)."""

from __future__ import annotations

from botify.recommenders.base import Recommender, register


@register("indexed")
class Indexed(Recommender):
    """The user's own precomputed list (a `user` table), first unplayed entry."""

    fallbacks = ("top_pop", "random")

    def configure(self, table: str = "indexed") -> None:
        self.lists = self.ctx.table(table)

    def recommend_next(self, user: int, prev_track: int, prev_track_time: float) -> int:
        row = self.lists.get(user)
        if row is None or not len(row):
            return self.fallback.recommend_next(user, prev_track, prev_track_time, because="cold_user")
        pick = self.ctx.first_unplayed(row)
        if pick is None:
            return self.fallback.recommend_next(user, prev_track, prev_track_time, because="exhausted")
        return pick
