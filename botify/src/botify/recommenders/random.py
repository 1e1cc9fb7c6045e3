"""random: uniform over the catalog; the service's last resort, so it needs nothing but the catalog size."""

from __future__ import annotations

from botify.recommenders.base import Recommender, random_track, register

__all__ = ["Random", "random_track"]


@register("random")
class Random(Recommender):
    """Uniform over the catalog; always answers."""

    fallbacks = ()

    def recommend_next(self, user: int, prev_track: int, prev_track_time: float) -> int:
        return random_track(self.ctx.catalog.size, self.ctx.rng, self.ctx.played, prev_track)
