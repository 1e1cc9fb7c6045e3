"""sticky_then_top: the artist just played after a long listen, else the top list (docs/recommenders.md)."""

from botify.recommenders import Recommender, register


@register("sticky_then_top")
class StickyThenTop(Recommender):
    """Stay with the artist while the user listens to most of the track, else go to the top list."""

    fallbacks = ("random",)  # who answers when this one hands over

    def configure(self, threshold: float = 0.5, table: str = "top_pop") -> None:  # from experiments.yml
        self.threshold = float(threshold)
        self.top = self.ctx.table(table)  # a Redis table, always its live version

    def recommend_next(self, user: int, prev_track: int, prev_track_time: float) -> int:
        ctx = self.ctx  # this request: catalog, played, recent, rng (docs/recommenders.md)
        if prev_track_time >= self.threshold:
            same = ctx.catalog.tracks_of_artist(ctx.catalog[prev_track].artist)
            start = ctx.rng.randrange(len(same))
            pick = ctx.first_unplayed([*same[start:], *same[:start]])
            if pick is not None:
                return pick
        top = self.top.get(b"top")
        pick = None if top is None else ctx.first_unplayed(top)
        if pick is None:
            return self.fallback.recommend_next(user, prev_track, prev_track_time, because="no_candidate")
        return pick
