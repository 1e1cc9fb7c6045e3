"""In-process agents and the Python API (run_inprocess)."""

from __future__ import annotations

import numpy as np
import pytest
from sim.agents import AgentError, CallableAgent, DummyAgent, OracleAgent, run_inprocess
from sim.agents.runner import Simulation, make_jobs, session_rng, split_jobs
from sim.model import UserModelParams


def test_run_inprocess_is_deterministic_and_seeded(small_world):
    n = small_world.n_tracks
    rec = lambda u, t, x: (t + 1) % n  # noqa: E731
    a = run_inprocess(rec, small_world, episodes=50, days=2, seed=3)
    b = run_inprocess(rec, small_world.directory, episodes=50, days=2, seed=3)
    c = run_inprocess(rec, small_world, episodes=50, days=2, seed=4)
    assert a.episodes == b.episodes and a.episodes != c.episodes
    assert [e.day for e in a.episodes] == [1] * 50 + [2] * 50
    table = a.table()
    assert table.startswith("## Results: <lambda>")
    assert any(line.lstrip("| ").startswith("all") for line in table.splitlines())


def test_numpy_ints_accepted_and_bad_tracks_rejected(small_world):
    n = small_world.n_tracks
    res = run_inprocess(lambda u, t, x: np.int64((t + 3) % n), small_world, episodes=5)
    assert len(res.episodes) == 5
    with pytest.raises(AgentError, match="outside the catalog"):
        run_inprocess(lambda u, t, x: n, small_world, episodes=2)
    with pytest.raises(AgentError, match="outside the catalog"):
        run_inprocess(lambda u, t, x: -1, small_world, episodes=2)
    with pytest.raises(AgentError, match="not an integer track id"):
        run_inprocess(lambda u, t, x: "7", small_world, episodes=2)
    with pytest.raises(AgentError, match="not an integer track id"):
        run_inprocess(lambda u, t, x: 2.0, small_world, episodes=2)
    with pytest.raises(AgentError, match="not an integer track id"):
        run_inprocess(lambda u, t, x: True, small_world, episodes=2)


def test_callable_sees_what_the_service_would(small_world):
    calls: list[tuple[int, int, float]] = []

    def rec(user: int, track: int, time: float) -> int:
        calls.append((user, track, time))
        return (track + 11) % small_world.n_tracks

    res = run_inprocess(rec, small_world, episodes=10, seed=1)
    assert len(calls) == sum(e.steps for e in res.episodes)
    assert calls[0][2] == 1.0  # the first call of a session carries the first track, time 1.0
    assert all(type(u) is int and type(t) is int and isinstance(x, float) for u, t, x in calls)


def test_oracle_dominates_and_dummy_is_short(small_world):
    oracle = run_inprocess(OracleAgent(small_world), small_world, episodes=60, seed=2)
    dummy = run_inprocess(
        DummyAgent(small_world.n_tracks, lambda d: np.random.default_rng(d)), small_world,
        episodes=60, seed=2)
    assert oracle.mean_reward()[0] > 3 * dummy.mean_reward()[0]
    assert "oracle" in oracle.label and "upper bound" in oracle.label


def test_dummy_agent_is_uniform_and_seeded():
    a = DummyAgent(100, lambda d: np.random.default_rng([d, 1]))
    b = DummyAgent(100, lambda d: np.random.default_rng([d, 1]))
    a.begin_day(1)
    b.begin_day(1)
    xs = [a.recommend(0, 0, 1.0) for _ in range(3000)]
    assert xs == [b.recommend(0, 0, 1.0) for _ in range(3000)]
    counts = np.bincount(xs, minlength=100)
    assert counts.min() > 5 and counts.max() < 60 and max(xs) < 100


def test_returning_users_report_dau(small_world):
    params = UserModelParams(returning_users=True)
    res = run_inprocess(CallableAgent(lambda u, t, x: (t + 1) % small_world.n_tracks),
                        small_world, episodes=200, days=3, seed=5, params=params)
    assert set(res.dau) == {1, 2, 3}
    for day in (1, 2, 3):
        users = {e.user for e in res.episodes if e.day == day}
        assert res.dau[day] == len(users)
    assert "DAU" in res.table()


def test_day_streams_shared_session_streams_per_process(small_world):
    params = UserModelParams(daily_hype=True, hype_tracks=20)
    a = Simulation(small_world, params, seed=9, process=0, processes=2)
    b = Simulation(small_world, params, seed=9, process=1, processes=2)
    a.begin_day(1)
    b.begin_day(1)
    assert np.array_equal(a.model.hype, b.model.hype)  # every process sees the same trending tracks
    assert session_rng(a.root, 1, 0).random() != session_rng(b.root, 1, 0).random()


def test_split_jobs_by_user_keeps_global_episode_numbers():
    parts = split_jobs([10, 11, 12, 13, 14, 10], 2)
    assert parts == [[(0, 10), (2, 12), (4, 14), (5, 10)], [(1, 11), (3, 13)]]
    assert make_jobs(2, [5, 6], offset=4) == [(4, 5), (5, 6)]
    assert make_jobs(2) == [(0, None), (1, None)]
