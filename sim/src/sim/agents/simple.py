"""In-process agents: uniformly random tracks, and any Python callable."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from sim.agents.base import Agent


class DummyAgent(Agent):
    """Uniformly random tracks, no service (the course's ``dummy``)."""

    name = "dummy"

    def __init__(self, n_tracks: int, rng_for_day: Callable[[int], np.random.Generator]) -> None:
        self.n_tracks = n_tracks
        self._rng_for_day = rng_for_day
        self._rng = rng_for_day(0)
        self._buf: list[int] = []

    def begin_day(self, day: int) -> None:
        self._rng = self._rng_for_day(day)
        self._buf = []

    def recommend(self, user: int, track: int, time: float) -> int:
        if not self._buf:  # draw in blocks: one numpy call per 1024 steps, not per step
            self._buf = self._rng.integers(0, self.n_tracks, size=1024).tolist()
            self._buf.reverse()
        return self._buf.pop()


class CallableAgent(Agent):
    """Wraps ``recommend(user, track, time) -> track`` so any function can be evaluated."""

    name = "callable"

    def __init__(self, recommend: Callable[[int, int, float], int], name: str | None = None) -> None:
        self._recommend = recommend
        self.name = name or getattr(recommend, "__name__", "callable")

    def recommend(self, user: int, track: int, time: float) -> int:
        return self._recommend(user, track, time)
