"""Batched engine: same rules as the scalar model, deterministic, fast paths."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sim.batch import BatchEngine, evaluate
from sim.env import MusicSessionEnv, small_world
from sim.model import UserModel, UserModelParams
from sim.policies import RandomPolicy, StickyArtistPolicy
from sim.world import from_records


def tiny_world():
    tracks = [{"track": i, "artist": a, "title": f"t{i}"}
              for i, a in enumerate(["A", "A", "A", "A", "B", "C"])]
    emb = np.array([[1, 0], [1, 0], [1, 0], [1, 0], [0, 1], [0.6, 0.8]], dtype=np.float32)
    users = [{"user": u, "interests": [0], "consume_bias": 0.5, "consume_sharpness": 4.0,
              "interest_neighbours": 1} for u in range(3)]
    return from_records(tracks, emb, users)


def scripted(seq):
    state = {"i": 0}

    def policy(engine):
        a = np.full(engine.user.size, seq[state["i"] % len(seq)], dtype=np.int64)
        state["i"] += 1
        return a
    return policy


@pytest.mark.parametrize(("repeat_counts", "last_k", "hist_len"), [
    (True, 4, 7),    # course: the repeat of track 0 is a 4th play of artist A
    (False, 3, 5),   # 0, 1, 2, 4, 3: repeats are not recorded
])
def test_batch_applies_the_same_rules(repeat_counts, last_k, hist_len):
    model = UserModel(tiny_world(), UserModelParams(session_budget=100,
                                                    repeat_counts_artist_play=repeat_counts))
    eng = BatchEngine(model, 3, seed=0)
    eng._alloc(3)
    eng._start(np.arange(3), np.arange(3), np.arange(3))
    assert np.all(eng.last_track == 0) and np.all(eng.last_time == 1.0)
    v = 1 / (1 + math.exp(-2.0))
    expected = [round(v * 0.8, 2), round(v * 0.64, 2), 0.0, round(1 / (1 + math.exp(2.0)), 2),
                0.0, round(v * 0.8**last_k, 2)]
    for track, want in zip([1, 2, 0, 4, 4, 3], expected, strict=True):
        t = eng.listen(np.full(3, track))
        assert np.allclose(t, want), (track, t, want)
    assert np.all(eng.hist_len == hist_len)


def test_budget_runs_out_on_repeats():
    model = UserModel(tiny_world(), UserModelParams(session_budget=4))
    res, log = BatchEngine(model, 2, seed=0).run(scripted([0]), np.array([0, 1, 2]), log=True)
    assert np.all(res.steps == 4) and np.all(res.rewards == 0)
    assert list(res.users) == [0, 1, 2] and len(log.reward) == 12


def test_batch_matches_scalar_env_statistically():
    w = small_world()
    model = UserModel(w)
    res, _ = evaluate(model, RandomPolicy(w, seed=1), 20000, seed=2)
    env = MusicSessionEnv(w)
    env.reset(seed=3)
    act = np.random.default_rng(4)
    rewards, ep = [], 0.0
    while len(rewards) < 5000:
        _, r, term, trunc, _ = env.step(int(act.integers(w.n_tracks)))
        ep += r
        if term or trunc:
            rewards.append(ep)
            ep = 0.0
            env.reset()
    a, b = res.rewards, np.array(rewards)
    se = math.hypot(a.std() / math.sqrt(a.size), b.std() / math.sqrt(b.size))
    assert abs(a.mean() - b.mean()) < 4 * se


def test_deterministic_in_seed_and_valid_log():
    w = small_world()
    model = UserModel(w)
    r1, l1 = evaluate(model, StickyArtistPolicy(w, seed=1), 3000, seed=5, n_parallel=256, log=True)
    r2, l2 = evaluate(model, StickyArtistPolicy(w, seed=1), 3000, seed=5, n_parallel=256, log=True)
    assert np.array_equal(r1.rewards, r2.rewards) and np.array_equal(l1.recommendation,
                                                                     l2.recommendation)
    assert len(l1.reward) == r1.steps.sum()
    assert np.isclose(l1.reward.sum(), r1.rewards.sum())
    # sticky: every recommendation is by the previous track's artist
    assert np.all(w.track_artist[l1.track] == w.track_artist[l1.recommendation])


def test_bad_policy_output_is_rejected():
    w = small_world()
    model = UserModel(w)
    with pytest.raises(ValueError, match="outside"):
        evaluate(model, lambda e: np.full(e.user.size, w.n_tracks), 10)
    with pytest.raises(ValueError, match="shape"):
        evaluate(model, lambda e: np.zeros(1, dtype=np.int64), 10, n_parallel=4)
