"""sticky_artist: another track by the artist just played (the course's StickyArtist)."""

from __future__ import annotations

from botify.recommenders.base import Recommender, register


@register("sticky_artist")
class StickyArtist(Recommender):
    """Another track by the artist of the track just played (in-process catalog)."""

    def recommend_next(self, user: int, prev_track: int, prev_track_time: float) -> int:
        ctx = self.ctx
        tracks = ctx.catalog.tracks_of_artist(ctx.catalog.artist_of(prev_track))
        n = len(tracks)
        if n:
            for _ in range(8):
                t = int(tracks[ctx.rng.randrange(n)])
                if t != prev_track and t not in ctx.played:
                    return t
            left = [int(t) for t in tracks if t != prev_track and int(t) not in ctx.played]
            if left:
                return left[ctx.rng.randrange(len(left))]
        return self.fallback.recommend_next(user, prev_track, prev_track_time, because="artist_exhausted")
