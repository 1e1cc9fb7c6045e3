"""The oracle: an upper bound that cheats by reading the user's hidden taste.

No real recommender can see the taste, so its numbers are a ceiling, never
a result to compare models against as equals; the CLI labels its table so.
Greedy: at each step it plays the unplayed track with the highest expected
listen time under the model's own rules (appeal, hype boost, artist
discount), recomputing when the taste drifts.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from sim.agents.base import Agent

_CANDIDATES = 256


class OracleAgent(Agent):
    name = "oracle"
    label = "oracle (upper bound: reads the hidden taste)"

    def __init__(self, world: Any, params: Any = None) -> None:
        self.world = world
        self.emb = world.embeddings
        self.track_artist = world.track_artist
        self._session: Any = None
        self._order: np.ndarray | None = None
        self._taste_id = 0

    def start(self, session: Any) -> None:
        self._session = session
        self._order = None

    def _rank(self, s: Any) -> None:
        """Best candidates by raw appeal (taste score + hype), then their appeal values."""
        scores = self.emb @ s.taste
        boost = getattr(s.model, "boost", None)
        if boost is not None:
            scores = scores + boost
        n = scores.shape[0]
        k = min(_CANDIDATES, n)
        top = np.argpartition(-scores, k - 1)[:k] if k < n else np.arange(n)
        order = top[np.lexsort((top, -scores[top]))]  # best first, ties by id
        z = (scores[order].astype(np.float64) - s._bias) * s._sharp
        self._order = order
        self._artists = self.track_artist[order]
        self._appeal = 1.0 / (1.0 + np.exp(-z))

    def recommend(self, user: int, track: int, time: float) -> int:
        s = self._session
        if s is None or s.user != user:
            raise RuntimeError("OracleAgent.recommend called outside a session it was started on")
        if self._order is None or getattr(s.model.params, "taste_drift", False):
            self._rank(s)
        value = self._appeal.copy()
        for artist, k in s.artist_plays.items():
            value[self._artists == artist] *= s._gamma**k
        value[np.isin(self._order, np.fromiter(s.played, dtype=np.int64))] = -1.0
        i = int(np.argmax(value))
        if value[i] >= 0:
            return int(self._order[i])
        # every candidate already played: any unplayed track
        return next(t for t in range(self.world.n_tracks) if t not in s.played)
