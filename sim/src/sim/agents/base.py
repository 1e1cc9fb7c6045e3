"""What an agent (the recommender side of a simulated session) must provide.

Two flavours: a synchronous :class:`Agent` answers in-process, one session
at a time (dummy, oracle, console, any Python callable); an
:class:`AsyncAgent` answers over the network and lets the runner keep many
sessions in flight (remote). The runner, not the agent, owns the sessions: an
agent only ever sees what the service would see (user, last track, listen
time), except the oracle, which is handed the session on purpose.
"""

from __future__ import annotations

from typing import Any


class AgentError(RuntimeError):
    """An agent produced something unusable (one-line message for the CLI)."""


class Agent:
    """Synchronous agent. Subclasses override ``recommend``."""

    name = "agent"
    #: printed above the results table; the oracle says it is an upper bound.
    label: str | None = None
    #: False for agents that need a human at the keyboard (no progress bar).
    batch = True

    def begin_day(self, day: int) -> None:
        """Called before the first session of each day."""

    def start(self, session: Any) -> None:
        """Called when a session starts, before the first ``recommend``."""

    def recommend(self, user: int, track: int, time: float) -> int:
        raise NotImplementedError

    def last(self, user: int, track: int, time: float) -> None:
        """The session ended after ``track`` was listened to for ``time``."""

    def end(self, session: Any) -> None:
        """Called after ``last`` with the finished session (reward, steps known)."""

    def close(self) -> None:
        """Release resources (connections, files)."""


class AsyncAgent:
    """Network agent: coroutines per step; ``slot`` is the session's connection slot."""

    name = "async"
    label: str | None = None
    batch = True

    def begin_day(self, day: int) -> None:
        """Called before the first session of each day."""

    async def next(self, slot: list[Any], user: int, track: int, time: float) -> int:
        raise NotImplementedError

    async def last(self, slot: list[Any], user: int, track: int, time: float) -> None:
        raise NotImplementedError

    def close(self) -> None:
        """Release resources."""
