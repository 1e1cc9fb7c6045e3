"""Runs simulated sessions against an agent, day by day, reproducibly.

Seeding: every session draws from its own ``np.random.Generator`` derived
from (run seed, process, day, episode) with ``np.random.SeedSequence``, so a
session's users and listens do not depend on how many sessions are in flight
or in which order the service answers. Day-level randomness (the day's
trending tracks, who returns) comes from (run seed, day) only, so every
process of a ``multi`` run sees the same day.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from sim.agents.base import Agent, AgentError, AsyncAgent
from sim.report import Episode

Job = tuple[int, int | None]  # (episode number within the day, user or None = model picks)

_DAY, _SESSION, _AGENT = 0, 1, 2


def day_rng(seed: int, day: int, stream: int = 0) -> np.random.Generator:
    """Day-level stream shared by every process of a run.

    Streams: 0 the model's day (hype), 1 who comes today, 2 who churns tonight.
    """
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(_DAY, day, stream)))


def process_root(seed: int, process: int | None, processes: int) -> np.random.SeedSequence:
    """The seed of one process: the run seed itself, or its ``spawn``-ed child for multi."""
    top = np.random.SeedSequence(seed)
    if process is None:
        return top
    return top.spawn(processes)[process]


def session_rng(root: np.random.SeedSequence, day: int, episode: int) -> np.random.Generator:
    key = (*root.spawn_key, _SESSION, day, episode)
    return np.random.default_rng(np.random.SeedSequence(root.entropy, spawn_key=key))


def agent_rng(root: np.random.SeedSequence, day: int) -> np.random.Generator:
    key = (*root.spawn_key, _AGENT, day)
    return np.random.default_rng(np.random.SeedSequence(root.entropy, spawn_key=key))


class Progress:
    """Minimal progress sink (tqdm-compatible ``update``)."""

    def update(self, n: int = 1) -> None:  # pragma: no cover - trivial
        pass


def _check_track(rec: Any, n_tracks: int, who: str, user: int) -> int:
    if isinstance(rec, bool) or not isinstance(rec, int | np.integer):
        raise AgentError(f"{who} returned {rec!r} for user {user}, not an integer track id")
    t = int(rec)
    if not 0 <= t < n_tracks:
        raise AgentError(
            f"{who} returned track {t} for user {user}, outside the catalog (0..{n_tracks - 1})"
        )
    return t


def run_sessions(
    model: Any,
    agent: Agent,
    day: int,
    jobs: Sequence[Job],
    root: np.random.SeedSequence,
    n_tracks: int,
    progress: Any = None,
) -> list[Episode]:
    """Sessions one after another against a synchronous agent."""
    out: list[Episode] = []
    who = f"agent {agent.name!r}"
    for episode, user in jobs:
        s = model.start_session(session_rng(root, day, episode), user)
        agent.start(s)
        while not s.done:
            rec = agent.recommend(s.user, s.last_track, s.last_time)
            if type(rec) is not int or not 0 <= rec < n_tracks:
                rec = _check_track(rec, n_tracks, who, s.user)
            s.listen(rec)
        agent.last(s.user, s.last_track, s.last_time)
        agent.end(s)
        out.append(Episode(day, episode, int(s.user), int(s.steps), float(s.reward)))
        if progress is not None:
            progress.update(1)
    return out


async def run_sessions_async(
    model: Any,
    agent: AsyncAgent,
    day: int,
    jobs: Sequence[Job],
    root: np.random.SeedSequence,
    concurrency: int,
    progress: Any = None,
) -> list[Episode]:
    """Up to ``concurrency`` sessions in flight, each on its own keep-alive connection.

    A user never has two sessions in flight: a later session of a busy user
    waits, and waiting sessions of one user start in episode order. A real
    listener has one session at a time, the service sessionizes its logs per
    user, and a service that keeps per-user state sees the same sequence of
    requests per user on every run.

    The first failing session (ServiceError) cancels the others and is re-raised.
    Results are returned in episode order whatever order the sessions finished in.
    """
    out: list[Episode] = []
    it = iter(jobs)
    loop = asyncio.get_running_loop()
    busy: dict[int, deque[asyncio.Future[None]]] = {}  # user -> FIFO of waiting sessions

    async def worker() -> None:
        slot: list[Any] = [None]
        try:
            for episode, user in it:
                s = model.start_session(session_rng(root, day, episode), user)
                u = s.user
                waiting = busy.get(u)
                if waiting is None:
                    busy[u] = deque()
                else:
                    turn = loop.create_future()
                    waiting.append(turn)
                    await turn  # handed over by the session before, in FIFO order
                while not s.done:
                    rec = await agent.next(slot, u, s.last_track, s.last_time)
                    s.listen(rec)  # only a valid answer advances the session
                await agent.last(slot, u, s.last_track, s.last_time)
                waiting = busy[u]
                if waiting:
                    waiting.popleft().set_result(None)
                else:
                    del busy[u]
                out.append(Episode(day, episode, int(u), int(s.steps), float(s.reward)))
                if progress is not None:
                    progress.update(1)
        finally:
            if slot[0] is not None:
                slot[0].close()

    tasks = [asyncio.create_task(worker()) for _ in range(max(1, min(concurrency, len(jobs))))]
    try:
        done, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
    finally:
        for t in tasks:
            if not t.done():
                t.cancel()
    if pending:
        await asyncio.gather(*pending, return_exceptions=True)
    errors = [t.exception() for t in tasks if t.done() and not t.cancelled()]  # retrieves all
    first = next((e for e in errors if e is not None), None)
    if first is not None:
        raise first
    out.sort(key=lambda e: e.episode)
    return out


def run_day(
    model: Any,
    agent: Agent | AsyncAgent,
    day: int,
    jobs: Sequence[Job],
    root: np.random.SeedSequence,
    n_tracks: int,
    concurrency: int = 1,
    progress: Any = None,
) -> list[Episode]:
    """One day's sessions with either kind of agent."""
    agent.begin_day(day)
    if isinstance(agent, AsyncAgent):
        return asyncio.run(
            run_sessions_async(model, agent, day, jobs, root, concurrency, progress)
        )
    return run_sessions(model, agent, day, jobs, root, n_tracks, progress)


def make_day_process(world: Any, params: Any) -> Any:
    """The returning-users process when the params switch it on, else None (course default)."""
    if not getattr(params, "returning_users", False):
        return None
    from sim.days import DayProcess

    return DayProcess(world.n_users, params)


def split_jobs(users: Sequence[int], processes: int) -> list[list[Job]]:
    """Split one day's sessions over processes by user (``user % processes``).

    Episode numbers stay the positions in the day's list, so the merged records
    read in one global order; all sessions of a user go to one process, so a user
    never has sessions in flight in two processes at once.
    """
    parts: list[list[Job]] = [[] for _ in range(processes)]
    for episode, u in enumerate(users):
        parts[int(u) % processes].append((episode, int(u)))
    return parts


class Simulation:
    """The user side of a run: world, user model, optional returning users, seeds.

    ``process``/``processes`` select a ``multi`` worker's derived seed; the
    day-level streams always come from the run seed itself.
    """

    def __init__(
        self,
        world: Any,
        params: Any = None,
        seed: int = 31337,
        process: int | None = None,
        processes: int = 1,
        day_process: Any = None,
    ) -> None:
        from sim.model import UserModel, UserModelParams

        self.world = world
        self.params = params if params is not None else UserModelParams()
        self.model = UserModel(world, self.params)
        self.seed = seed
        self.root = process_root(seed, process, processes)
        self.day_process = day_process
        self.n_tracks = int(world.n_tracks)

    def begin_day(self, day: int) -> None:
        self.model.begin_day(day, day_rng(self.seed, day, 0))

    def users_for_day(self, day: int, n_sessions: int) -> list[int] | None:
        """Who plays today's sessions when users return; None: the model samples uniformly."""
        if self.day_process is None:
            return None
        users = self.day_process.users_for_day(day, n_sessions, day_rng(self.seed, day, 1))
        return [int(u) for u in users]

    def all_users_for_day(self, day: int, n_sessions: int) -> list[int]:
        """Who plays each session, decided up front (multi): returning users, else uniform."""
        users = self.users_for_day(day, n_sessions)
        if users is not None:
            return users
        rng = day_rng(self.seed, day, 1)
        return rng.integers(0, self.world.n_users, size=n_sessions).tolist()

    def end_day(self, episodes: Sequence[Episode]) -> dict[str, Any] | None:
        if self.day_process is None:
            return None
        for e in episodes:
            self.day_process.end_session(e.user, e.reward)
        return dict(self.day_process.end_day(day_rng(self.seed, self.day_process.day, 2)))

    def run(
        self,
        day: int,
        agent: Agent | AsyncAgent,
        jobs: Sequence[Job],
        concurrency: int = 1,
        progress: Any = None,
    ) -> list[Episode]:
        return run_day(self.model, agent, day, jobs, self.root, self.n_tracks, concurrency, progress)


def make_jobs(n: int, users: Sequence[int] | None = None, offset: int = 0) -> list[Job]:
    """Episodes ``offset..offset+n-1`` with their users (or None: sampled by the model)."""
    if users is None:
        return [(offset + i, None) for i in range(n)]
    return [(offset + i, int(u)) for i, u in enumerate(users)]


Recommend = Callable[[int, int, float], int]
