"""The console agent: a human plays the recommender, typing track ids.

Why it exists: feeling the user model by hand is the fastest way to
understand it (repeat a track -> 0, the artist discount, the budget). Track
titles and artists come from the service (``GET /track/<id>``) when it
answers, else from the world's catalog, so it also works offline.
"""

from __future__ import annotations

import sys
from typing import Any, TextIO

from sim.agents.base import Agent
from sim.client import ClientOptions, ServiceError, get_json_sync


class ConsoleQuitError(Exception):
    """The human asked to stop (``q`` or end of input)."""


class ConsoleAgent(Agent):
    name = "console"
    batch = False

    def __init__(
        self,
        world: Any,
        options: ClientOptions | None = None,
        stdin: TextIO | None = None,
        stdout: TextIO | None = None,
    ) -> None:
        self.world = world
        self.n_tracks = int(world.n_tracks)
        self.stdin = stdin or sys.stdin
        self.stdout = stdout or sys.stdout
        self.options = options
        self.remote = False
        if options is not None:
            try:
                status, _ = get_json_sync(options, "/", timeout=1.0)
                self.remote = status == 200
            except ServiceError:
                self.remote = False
        self._session: Any = None
        self._last_reward = 0.0

    def _say(self, text: str) -> None:
        self.stdout.write(text + "\n")
        self.stdout.flush()

    def describe(self, track: int) -> str:
        """'[42] "Title" by Artist', from the service when it answers, else the world."""
        if self.remote and self.options is not None:
            try:
                status, info = get_json_sync(self.options, f"/track/{track}", timeout=2.0)
                if status == 200 and isinstance(info, dict):
                    return f'[{track}] "{info.get("title", "?")}" by {info.get("artist", "?")}'
            except ServiceError:
                self.remote = False  # fall back to the world for the rest of the run
        return f'[{track}] "{self.world.track_title(track)}" by {self.world.track_artist_name(track)}'

    def start(self, session: Any) -> None:
        self._session = session
        self._say(f"\n=== new session: user {session.user} ===")
        self._say(f"first track {self.describe(session.first_track)} (listened 1.00)")

    def recommend(self, user: int, track: int, time: float) -> int:
        s = self._session
        if s is not None and s.steps > 0:
            self._say(
                f"user {user} listened to {self.describe(track)}: {time:.2f} "
                f"(reward {time:.2f}; session so far {s.reward:.2f} over {s.steps} steps)"
            )
        while True:
            self.stdout.write(f"next track for user {user} (0..{self.n_tracks - 1}, q to quit)> ")
            self.stdout.flush()
            line = self.stdin.readline()
            if not line:
                raise ConsoleQuitError("end of input")
            text = line.strip()
            if text.lower() in ("q", "quit", "exit"):
                raise ConsoleQuitError("quit")
            try:
                rec = int(text)
            except ValueError:
                self._say(f"  not a track id: {text!r}")
                continue
            if 0 <= rec < self.n_tracks:
                return rec
            self._say(f"  {rec} is outside the catalog (0..{self.n_tracks - 1})")

    def last(self, user: int, track: int, time: float) -> None:
        self._say(f"user {user} listened to {self.describe(track)}: {time:.2f} (reward {time:.2f})")

    def end(self, session: Any) -> None:
        self._say(
            f"=== session over: user {session.user} listened {session.reward:.2f} "
            f"over {session.steps} steps ==="
        )
