"""Gymnasium environment `sim/MusicSession-v0`: one listening session per episode.

Observation: {"user": Discrete(U), "track": Discrete(N), "time": Box(0, 1, (1,))}
(the user, the track just played and its listen time); action: the next track
id (Discrete(N)); reward: its listen time; terminated when the budget runs out,
truncated at `max_session_steps`. All randomness comes from `self.np_random`
(seeded by `reset(seed=...)`): same seed, same episodes.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from sim.model import Session, UserModel, UserModelParams
from sim.world import GeneratorParams, World, build

SMALL_WORLD = {"seed": 0, "n_tracks": 2000, "n_users": 500}


@lru_cache(maxsize=4)
def small_world(seed: int = 0, n_tracks: int = 2000, n_users: int = 500) -> World:
    """A small in-memory world for tests and demos when no world path is given."""
    return build(GeneratorParams(seed=seed, n_tracks=n_tracks, n_users=n_users))


class MusicSessionEnv(gym.Env):
    """A user listening to the tracks a recommender picks, one session per episode."""

    metadata = {"render_modes": ["ansi"], "render_fps": 4}

    def __init__(self, world: World | str | Path | None = None,
                 params: UserModelParams | dict | None = None,
                 render_mode: str | None = None, day: int = 0) -> None:
        if world is None:
            world = small_world(**SMALL_WORLD)
        elif not isinstance(world, World):
            world = World.load(world)
        if isinstance(params, dict):
            params = UserModelParams.from_dict(params)
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode must be one of {self.metadata['render_modes']}")
        self.world = world
        self.model = UserModel(world, params)
        self.render_mode = render_mode
        self._day = day
        self.observation_space = spaces.Dict({
            "user": spaces.Discrete(world.n_users),
            "track": spaces.Discrete(world.n_tracks),
            "time": spaces.Box(0.0, 1.0, shape=(1,), dtype=np.float32),
        })
        self.action_space = spaces.Discrete(world.n_tracks)
        self.session: Session | None = None
        self._day_started = False

    def _obs(self) -> dict[str, Any]:
        s = self.session
        return {"user": s.user, "track": s.last_track,
                "time": np.array([s.last_time], dtype=np.float32)}

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        options = options or {}
        if not self._day_started or seed is not None or "day" in options:
            self._day = int(options.get("day", self._day))
            self.model.begin_day(self._day, self.np_random)
            self._day_started = True
        self.session = self.model.start_session(self.np_random, options.get("user"))
        return self._obs(), {"first_track": self.session.first_track, "day": self._day}

    def step(self, action):
        s = self.session
        if s is None or s.done:
            raise RuntimeError("call reset() before step()")
        reward = s.listen(int(action))
        info = {"steps": s.steps, "session_reward": s.reward}
        return self._obs(), reward, s.done and not s.truncated, s.truncated, info

    def render(self) -> str | None:
        if self.render_mode != "ansi" or self.session is None:
            return None
        s = self.session
        w = self.world
        return (f"user {s.user} step {s.steps}: {w.track_artist_name(s.last_track)} - "
                f"{w.track_title(s.last_track)} (track {s.last_track}) time {s.last_time:.2f}")
