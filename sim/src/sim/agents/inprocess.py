"""Plug any Python recommender into the simulator, no HTTP involved.

    from sim.agents import run_inprocess
    from sim.world import World

    world = World.load("data/world")
    result = run_inprocess(lambda user, track, time: (track + 1) % world.n_tracks,
                           world, episodes=2000, days=1, seed=31337)
    print(result.table())

Same seeds, sessions and table as ``python -m sim.run ... single`` with the
same world, user model parameters, seed and episodes, so a model can be
checked offline before it is deployed behind the service.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sim.agents.base import Agent, AsyncAgent
from sim.agents.simple import CallableAgent
from sim.report import Episode, mean_sem, summary_table


@dataclass
class RunResult:
    """Episodes of a run (in day, episode order) and the daily active users if simulated."""

    episodes: list[Episode]
    dau: dict[int, int] = field(default_factory=dict)
    label: str = ""

    def mean_reward(self) -> tuple[float, float]:
        return mean_sem([e.reward for e in self.episodes])

    def mean_steps(self) -> tuple[float, float]:
        return mean_sem([float(e.steps) for e in self.episodes])

    def table(self) -> str:
        return summary_table(self.episodes, self.dau or None, title=f"Results: {self.label}")


def run_inprocess(
    recommend: Callable[[int, int, float], int] | Agent | AsyncAgent,
    world: Any,
    *,
    episodes: int = 1000,
    days: int = 1,
    seed: int = 31337,
    params: Any = None,
    concurrency: int = 16,
    progress: bool = False,
) -> RunResult:
    """Run ``days`` days of ``episodes`` sessions against ``recommend``.

    ``recommend(user, track, time) -> track`` gets the track just played and
    its listen fraction and returns the next track id (0..n_tracks-1). An
    :class:`Agent` (e.g. ``OracleAgent``) is accepted too. ``world`` is a
    ``sim.world.World`` or a world directory; ``params`` a
    ``sim.model.UserModelParams`` (default: the course-faithful model).
    """
    from sim.agents.runner import Simulation, make_day_process, make_jobs

    if episodes < 1 or days < 1:
        raise ValueError("episodes and days must be >= 1")
    if isinstance(world, str | Path):
        from sim.world import World

        world = World.load(world)
    agent = recommend if isinstance(recommend, Agent | AsyncAgent) else CallableAgent(recommend)
    from sim.model import UserModelParams

    params = params if params is not None else UserModelParams()
    sim = Simulation(world, params, seed, day_process=make_day_process(world, params))
    out: list[Episode] = []
    dau: dict[int, int] = {}
    bar: Any = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=episodes * days, unit="session")
    try:
        for day in range(1, days + 1):
            sim.begin_day(day)
            eps = sim.run(day, agent, make_jobs(episodes, sim.users_for_day(day, episodes)),
                          concurrency, bar)
            stats = sim.end_day(eps)
            if stats is not None and stats.get("dau") is not None:
                dau[day] = int(stats["dau"])
            out.extend(eps)
    finally:
        if bar is not None:
            bar.close()
    return RunResult(out, dau, label=getattr(agent, "label", None) or agent.name)
