"""Gymnasium env sim/MusicSession-v0: checker, spaces, seeding, determinism."""

from __future__ import annotations

import subprocess
import sys

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env
from sim.env import MusicSessionEnv, small_world
from sim.world import generate

import sim


def test_registered_and_passes_env_checker():
    assert sim.ENV_ID in gym.registry
    env = gym.make(sim.ENV_ID)
    check_env(env.unwrapped, skip_render_check=False)
    env.close()


def test_spaces_reward_and_termination():
    env = MusicSessionEnv(params={"session_budget": 3})
    obs, info = env.reset(seed=3)
    assert env.observation_space.contains(obs)
    assert obs["time"][0] == 1.0 and obs["track"] == info["first_track"]
    assert env.action_space.n == env.world.n_tracks
    total, steps, term = 0.0, 0, False
    while not term:
        obs, r, term, trunc, info = env.step(env.action_space.sample())
        assert env.observation_space.contains(obs)
        assert obs["time"][0] == pytest.approx(r) and not trunc
        total += r
        steps += 1
    assert info["steps"] == steps and info["session_reward"] == pytest.approx(total)
    assert env.session.budget == 0
    with pytest.raises(RuntimeError):
        env.step(0)


def test_truncation_at_max_steps():
    env = MusicSessionEnv(params={"max_session_steps": 2, "session_budget": 100})
    env.reset(seed=0)
    _, _, term, trunc, _ = env.step(0)
    assert not trunc
    _, _, term, trunc, _ = env.step(1)
    assert trunc and not term


def _episodes(env, seed, n=30):
    out = []
    obs, _ = env.reset(seed=seed)
    act = np.random.default_rng(0)
    for _ in range(n):
        ep = [(int(obs["user"]), int(obs["track"]))]
        done = False
        while not done:
            obs, r, term, trunc, _ = env.step(int(act.integers(env.world.n_tracks)))
            ep.append(r)
            done = term or trunc
        out.append(ep)
        obs, _ = env.reset()
    return out


def test_same_seed_same_episodes():
    a = _episodes(MusicSessionEnv(), 11)
    b = _episodes(MusicSessionEnv(), 11)
    c = _episodes(MusicSessionEnv(), 12)
    assert a == b and a != c


def test_world_path_kwarg_and_render(tmp_path):
    d = generate(seed=4, n_tracks=600, n_users=40, out=tmp_path / "w")
    env = gym.make(sim.ENV_ID, world=str(d), render_mode="ansi")
    obs, _ = env.reset(seed=0)
    assert env.unwrapped.world.n_tracks == 600
    assert "user" in env.render()
    env.close()


def test_default_world_is_small_and_cached():
    assert small_world() is small_world()
    assert small_world().n_tracks == 2000 and small_world().n_users == 500


def test_import_sim_is_light():
    code = ("import sys, sim; heavy = [m for m in ('sim.world', 'sim.model', 'sim.env', "
            "'orjson', 'scipy', 'tqdm', 'yaml') if m in sys.modules]; print(heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
