"""The production-like setting (issue 18): each new rule, both engines, days, targets."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sim.batch import evaluate
from sim.calibrate import cuped_reduction, run_targets, welch
from sim.days import DayProcess
from sim.env import MusicSessionEnv, small_world
from sim.model import PRODUCTION, UserModel, UserModelParams
from sim.policies import RandomPolicy, StickyArtistPolicy


def test_presets_and_overrides():
    assert UserModelParams.preset("course") == UserModelParams()
    p = UserModelParams.preset("production")
    assert all(getattr(p, k) == v for k, v in PRODUCTION.items())
    q = UserModelParams.from_dict({"realism": "production", "own_pick_prob": 0.2})
    assert q.own_pick_prob == 0.2 and q.session_end == "hazard"      # explicit key wins
    with pytest.raises(ValueError, match="user_model.realism: 'prod' is not one of"):
        UserModelParams.from_dict({"realism": "prod"})
    with pytest.raises(ValueError, match="user_model.session_end"):
        UserModelParams(session_end="sometimes")
    with pytest.raises(ValueError, match="user_model.skip_prob must be in"):
        UserModelParams(skip_prob=-0.1)


def test_own_picks_are_the_user_s_and_not_the_recommendation():
    w = small_world()
    m = UserModel(w, UserModelParams(own_pick_prob=1.0, session_budget=50))
    s = m.start_session(np.random.default_rng(0), user=4)
    own = {int(t) for i in w.user_interests(4) for t in m.first_candidates(int(i), 4)}
    for rec in range(5):
        s.listen(1000 + rec)
        assert s.last_recommended == 1000 + rec and s.last_track in own
    res, log = evaluate(m, RandomPolicy(w, seed=1), np.full(50, 4), seed=2, log=True)
    assert np.isin(log.played, list(own)).all()
    assert not np.isin(log.recommendation, list(own)).all()
    # 0: the course's rules, the recommendation is what is played
    res, log = evaluate(UserModel(w), RandomPolicy(w, seed=1), 50, seed=2, log=True)
    assert np.array_equal(log.played, log.recommendation)


def test_hazard_end_and_unrelated_skips():
    w = small_world()
    one = UserModel(w, UserModelParams(session_end="hazard", end_base=1.0, end_quality=0.0))
    res, _ = evaluate(one, RandomPolicy(w, seed=0), 200, seed=1)
    assert np.all(res.steps == 1)
    # base 0, quality 1: a session ends exactly when a track is not fully listened to
    q = UserModel(w, UserModelParams(session_end="hazard", end_base=0.0, end_quality=1.0))
    s = q.start_session(np.random.default_rng(3), user=0)
    s.listen(s.first_track)                       # a repeat: time 0 -> surely over
    assert s.done and s.steps == 1
    skip = UserModel(w, UserModelParams(skip_prob=1.0, skip_keep=0.0))
    res, _ = evaluate(skip, StickyArtistPolicy(w, seed=0), 300, seed=1)
    assert res.rewards.max() == 0.0


def test_persistent_base_hazard_spreads_users():
    w = small_world()
    m = UserModel(w, UserModelParams.preset("production"))
    assert m._hbase.std() > 0.03 and np.median(m._hbase) == pytest.approx(0.08, rel=0.2)
    again = UserModel(w, UserModelParams.preset("production"))
    assert np.array_equal(m._hbase, again._hbase)               # traits come from traits_seed
    other = UserModel(w, UserModelParams.preset("production", traits_seed=1))
    assert not np.array_equal(m._hbase, other._hbase)


def test_popularity_term_in_appeal():
    w = small_world()
    p = UserModel(w, UserModelParams(popularity_weight=0.2))
    plain = UserModel(w)
    top = int(np.argmax(w.track_popularity))
    lp = np.log1p(w.track_popularity.astype(float))
    z = (lp[top] - lp.mean()) / lp.std()
    s = p.start_session(np.random.default_rng(0), user=1)
    s0 = plain.start_session(np.random.default_rng(0), user=1)
    x = float(w.embeddings[top] @ s.taste) + 0.2 * z
    assert s.appeal(top) == pytest.approx(1 / (1 + math.exp(-(x - s._bias) * s._sharp)), rel=1e-5)
    assert s.appeal(top) > s0.appeal(top)


@pytest.mark.parametrize("realism", ["production", "course"])
def test_batch_and_scalar_agree_statistically(realism):
    w = small_world()
    params = UserModelParams.preset(realism)
    res, _ = evaluate(UserModel(w, params), RandomPolicy(w, seed=1), 20000, seed=2)
    env = MusicSessionEnv(w, params)
    env.reset(seed=3)
    act = np.random.default_rng(4)
    rewards, steps, ep, n = [], [], 0.0, 0
    while len(rewards) < 6000:
        _, r, term, trunc, _ = env.step(int(act.integers(w.n_tracks)))
        ep += r
        n += 1
        if term or trunc:
            rewards.append(ep)
            steps.append(n)
            ep, n = 0.0, 0
            env.reset()
    for a, b in ((res.rewards, np.array(rewards)), (res.steps, np.array(steps))):
        se = math.hypot(a.std() / math.sqrt(a.size), b.std() / math.sqrt(b.size))
        assert abs(a.mean() - b.mean()) < 4 * se


def test_production_is_deterministic_in_seed():
    w = small_world()
    m = UserModel(w, UserModelParams.preset("production"))
    r1, l1 = evaluate(m, StickyArtistPolicy(w, seed=1), 2000, seed=5, log=True)
    r2, l2 = evaluate(m, StickyArtistPolicy(w, seed=1), 2000, seed=5, log=True)
    assert np.array_equal(r1.rewards, r2.rewards) and np.array_equal(l1.played, l2.played)


def test_heavy_tailed_days_respond_to_satisfaction():
    p = UserModelParams.preset("production")
    n = 20_000
    dp = DayProcess(n, p)
    counts = np.zeros(n)
    for day in range(5):
        users = dp.users_for_day(day, 15_000, np.random.default_rng(day))
        if day == 0:
            assert abs(users.size - 15_000) < 600      # day 0 brings about n_sessions
            assert np.all(np.diff(dp.starts) >= 0) and dp.starts.max() < 86400
            hours = dp.starts // 3600
            assert np.mean((hours >= 18) & (hours <= 22)) > 3 * np.mean(hours <= 5)
        counts += np.bincount(users, minlength=n)
        dp.end_sessions(users, np.full(users.size, p.return_reference))
        dp.end_day()
    top = np.sort(counts)[::-1][: n // 5].sum() / counts.sum()
    assert top > 0.5                                   # a minority makes most sessions
    # users whose sessions went well come back more than users whose sessions went badly
    good, bad = DayProcess(n, p), DayProcess(n, p)
    for dp_, reward in ((good, 5.0), (bad, 0.5)):
        u = dp_.users_for_day(0, 15_000, np.random.default_rng(0))
        dp_.end_sessions(u, np.full(u.size, reward))
        dp_.end_day()
    g = good.users_for_day(1, 15_000, np.random.default_rng(1)).size
    b = bad.users_for_day(1, 15_000, np.random.default_rng(1)).size
    assert g > 1.2 * b
    # the state round-trips (JSON-able) and continues identically
    again = DayProcess(n, p)
    again.load_state(good.state())
    a1 = good.users_for_day(2, 15_000, np.random.default_rng(2))
    a2 = again.users_for_day(2, 15_000, np.random.default_rng(2))
    assert np.array_equal(a1, a2)


def test_welch_and_cuped_helpers():
    rng = np.random.default_rng(0)
    a, b = rng.normal(10, 1, 5000), rng.normal(10.5, 1, 5000)
    w = welch(a, b)
    assert w.significant and w.lower < 5.0 < w.upper
    assert not welch(a, rng.normal(10, 1, 5000)).significant
    x = rng.normal(0, 1, 10000)
    y = x + rng.normal(0, 1, 10000)                   # corr^2 = 0.5
    assert cuped_reduction(y, x) == pytest.approx(0.5, abs=0.03)


def test_targets_on_a_small_world():
    """The full harness on a small world: the ladder's order and the production texture."""
    r = run_targets(3, n_tracks=6000, n_users=8000, day_sessions=12_000, arm_users=2000,
                    aa_days=8, retention_days=4)
    means = r.ladder_means
    assert means["random"] < means["top_pop"] < means["sticky_artist"] < means["i2i"] \
        < means["sequential"] < r.oracle_mean
    for _, _, w in r.steps:
        assert 0 < w.effect < 80
    assert r.cuped > 0.3 and r.top20_share > 0.5
    assert r.returning["random"] < r.returning["sequential"]


def test_targets_cli_prints_the_tables(capsys):
    from sim.calibrate import main

    assert main(["--targets", "--seeds", "1", "--tracks", "3000", "--users", "3000",
                 "--day-sessions", "5000", "--arm-users", "500", "--aa-days", "7"]) == 0
    out = capsys.readouterr().out
    assert "| seed | active users day 2 | random -> top_pop |" in out
    assert "A/A false-positive rate over 7 experiments" in out and "all targets met:" in out
    assert main(["--targets", "--arm-users", "1"]) == 2
    assert main(["--targets", "--seeds", "1", "--tracks", "3000", "--users", "300",
                 "--day-sessions", "500", "--aa-days", "7"]) == 2   # too few users for the arms
