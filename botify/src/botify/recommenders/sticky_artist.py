"""sticky_artist: another track by the artist just played (the course's StickyArtist)."""

from __future__ import annotations

from botify.recommenders.base import Fallback, Recommender, register


@register("sticky_artist")
class StickyArtist(Recommender):
    """Another track by the artist of the track just played (in-process catalog)."""

    def recommend_next(self, user: int, prev_track: int, prev_track_time: float) -> int:
        tracks = self.catalog.tracks_of_artist(self.catalog.artist_of(prev_track))
        played = self.played(user)
        n = len(tracks)
        if n:
            for _ in range(8):
                t = int(tracks[self.rng.randrange(n)])
                if t != prev_track and t not in played:
                    return t
            left = [int(t) for t in tracks if t != prev_track and int(t) not in played]
            if left:
                return left[self.rng.randrange(len(left))]
        raise Fallback("artist_exhausted")
