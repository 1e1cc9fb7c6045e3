"""random: uniform over the catalog; the service's last resort, so it needs nothing but the catalog size."""

from __future__ import annotations

from botify.recommenders.base import Recommender, register


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
