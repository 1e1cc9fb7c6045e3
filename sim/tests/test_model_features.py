"""Off-by-default extensions: daily hype, taste drift, returning users/churn/DAU."""

from __future__ import annotations

import numpy as np
import pytest
from sim.batch import BatchEngine
from sim.days import DayProcess
from sim.env import small_world
from sim.model import UserModel, UserModelParams
from sim.policies import OraclePolicy, RandomPolicy


def test_features_are_off_by_default():
    p = UserModelParams()
    assert not (p.returning_users or p.daily_hype or p.taste_drift)
    m = UserModel(small_world())
    m.begin_day(0, np.random.default_rng(0))
    assert m.boost is None and m.hype.size == 0


def test_daily_hype_boosts_the_day_s_trending_tracks():
    w = small_world()
    m = UserModel(w, UserModelParams(daily_hype=True, hype_tracks=20, hype_boost=0.3))
    m.begin_day(0, np.random.default_rng(1))
    day0 = m.hype.copy()
    assert day0.size == 20
    m.begin_day(1, np.random.default_rng(2))
    assert not np.array_equal(day0, m.hype)          # a new trend every day
    plain = UserModel(w)
    rng = np.random.default_rng(3)
    s = m.start_session(rng, user=5)
    s0 = plain.start_session(np.random.default_rng(3), user=5)
    h = int(m.hype[0])
    assert s.appeal(h) > s0.appeal(h)
    x = float(w.embeddings[h] @ s.taste)
    assert s.appeal(h) == pytest.approx(1 / (1 + np.exp(-(x + 0.3 - s._bias) * s._sharp)))
    # a policy playing hyped tracks gains from hype (batched engine too)
    hyped = lambda e: m.hype[np.random.default_rng(e.steps.sum()).integers(0, 20, e.user.size)]  # noqa: E731
    on, _ = BatchEngine(m, 256, seed=4).run(hyped, 2000)
    off, _ = BatchEngine(plain, 256, seed=4).run(hyped, 2000)
    assert on.rewards.mean() > off.rewards.mean() + 0.1


def test_taste_drifts_toward_enjoyed_tracks():
    w = small_world()
    m = UserModel(w, UserModelParams(taste_drift=True, drift_rate=0.5))
    s = m.start_session(np.random.default_rng(0), user=3)
    start = s.taste.copy()
    # pick an unplayed track the user likes somewhat but that is not the taste itself
    scores = w.embeddings @ start
    r = int(np.argsort(-scores)[30])
    t = s.listen(r)
    assert t > 0
    assert float(w.embeddings[r] @ s.taste) > float(w.embeddings[r] @ start)
    assert np.linalg.norm(s.taste) == pytest.approx(1.0, abs=1e-5)
    assert np.allclose(m.emb[s.interest], start)     # the world's embedding is untouched
    # off: taste never moves
    s2 = UserModel(w).start_session(np.random.default_rng(0), user=3)
    s2.listen(r)
    assert np.array_equal(s2.taste, start)


def test_drift_in_batch_engine_changes_outcomes():
    w = small_world()
    on = UserModel(w, UserModelParams(taste_drift=True, drift_rate=0.5))
    a, _ = BatchEngine(on, 256, seed=1).run(OraclePolicy(w), 300)
    b, _ = BatchEngine(UserModel(w), 256, seed=1).run(OraclePolicy(w), 300)
    assert not np.array_equal(a.rewards, b.rewards)


def test_days_off_is_uniform_course_behaviour():
    dp = DayProcess(500)
    users = dp.users_for_day(0, 1000, np.random.default_rng(0))
    assert users.size == 1000 and users.min() >= 0 and users.max() < 500
    dp.end_sessions(users, np.ones(1000))
    rep = dp.end_day()
    assert rep["dau"] == np.unique(users).size and rep["churned"] == 0


def _simulate_days(policy_factory, days=4, seed=0):
    w = small_world()
    params = UserModelParams(returning_users=True)
    model = UserModel(w, params)
    dp = DayProcess(w.n_users, params)
    rng = np.random.default_rng(seed)
    reports = []
    for d in range(days):
        users = dp.users_for_day(d, 1000, rng)
        res, _ = BatchEngine(model, 512, seed=seed + d).run(policy_factory(w), users)
        dp.end_sessions(res.users, res.rewards)
        reports.append(dp.end_day(rng))
    return reports


def test_returning_users_reward_good_recommendations_with_dau():
    bad = _simulate_days(lambda w: RandomPolicy(w, seed=1))
    good = _simulate_days(OraclePolicy)
    assert bad[0]["sessions"] == pytest.approx(1000, rel=0.15)  # day 0 sets the scale
    assert bad[0]["dau"] == pytest.approx(good[0]["dau"], rel=0.1)
    assert good[-1]["dau"] > 1.5 * bad[-1]["dau"]       # satisfied users come back
    assert bad[-1]["churned_total"] > good[-1]["churned_total"]
    assert bad[-1]["dau"] < bad[0]["dau"]               # random recommendations lose users
    for r in bad:
        assert {"day", "dau", "churned", "sessions"} <= set(r)


def test_churned_users_never_return():
    params = UserModelParams(returning_users=True, churn_below=10.0, churn_prob=1.0)
    dp = DayProcess(100, params)
    rng = np.random.default_rng(0)
    users = dp.users_for_day(0, 200, rng)
    dp.end_sessions(users, np.zeros(users.size))
    rep = dp.end_day(rng)
    assert rep["churned"] == np.unique(users).size
    later = dp.users_for_day(1, 200, rng)
    assert not np.isin(later, users).any()
