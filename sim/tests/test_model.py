"""Pin every rule of the course user model (issue 2 section 2)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sim.env import small_world
from sim.model import Session, UserModel, UserModelParams, round_time
from sim.world import from_records


def sigmoid(z: float) -> float:
    return 1.0 / (1.0 + math.exp(-z))


def tiny_world(bias: float = 0.5, sharp: float = 4.0, **user_extra):
    """Artist A: tracks 0-3 at e=[1,0]; B: track 4 at [0,1]; C: track 5 at [0.6,0.8].

    One user whose only interest is track 0 and who takes the single nearest
    track as first track (per-user override interest_neighbours=1): ties go to
    the lowest id, so every session starts on track 0.
    """
    tracks = [{"track": i, "artist": a, "title": f"t{i}"}
              for i, a in enumerate(["A", "A", "A", "A", "B", "C"])]
    emb = np.array([[1, 0], [1, 0], [1, 0], [1, 0], [0, 1], [0.6, 0.8]], dtype=np.float32)
    user = {"user": 0, "interests": [0], "consume_bias": bias, "consume_sharpness": sharp,
            "interest_neighbours": 1, **user_extra}
    return from_records(tracks, emb, [user])


def start(world, params=None, seed=0) -> Session:
    return UserModel(world, params or UserModelParams()).start_session(np.random.default_rng(seed))


def test_first_track_counts_as_fully_listened():
    s = start(tiny_world())
    assert (s.user, s.first_track, s.last_track, s.last_time) == (0, 0, 0, 1.0)
    assert (s.steps, s.reward, s.done) == (0, 0.0, False)
    assert s.played == {0}


def test_listen_time_formula_and_artist_discount():
    s = start(tiny_world(bias=0.5, sharp=4.0))
    v = sigmoid((1.0 - 0.5) * 4.0)
    # track 1 is artist A's second play in the session (the first track counts): k = 1
    assert s.listen(1) == round(v * 0.8, 2) == 0.70
    assert s.listen(2) == round(v * 0.8**2, 2) == 0.56
    assert s.listen(3) == round(v * 0.8**3, 2) == 0.45
    # a different artist is undiscounted: x = 0 for B, x = 0.6 for C
    assert s.listen(4) == round(sigmoid((0.0 - 0.5) * 4.0), 2) == 0.12
    assert s.listen(5) == pytest.approx(round(sigmoid((0.6 - 0.5) * 4.0), 2))
    assert s.reward == pytest.approx(0.70 + 0.56 + 0.45 + 0.12 + s.last_time)


def test_gamma_parameter_and_override():
    s = start(tiny_world(), UserModelParams(artist_discount_gamma=0.5))
    assert s.listen(1) == round(sigmoid(2.0) * 0.5, 2)
    s = start(tiny_world(artist_discount_gamma=1.0), UserModelParams(artist_discount_gamma=0.5))
    assert s.listen(1) == round(sigmoid(2.0), 2)  # per-user override wins


def test_repeat_earns_zero_and_counts_as_an_artist_play_like_the_course():
    s = start(tiny_world())
    assert s.listen(0) == 0.0          # the first track again
    assert s.listen(1) == 0.56         # k = 2: the repeat counted (course), 0.8808 * 0.8^2
    assert s.listen(1) == 0.0


def test_repeat_not_counted_when_switched_off():
    s = start(tiny_world(), UserModelParams(repeat_counts_artist_play=False))
    assert s.listen(0) == 0.0
    assert s.listen(1) == 0.70         # k still 1: the repeat did not count


def test_budget_drops_surely_on_zero_and_never_on_one():
    s = start(tiny_world(), UserModelParams(session_budget=3))
    for i in range(3):
        assert not s.done
        s.listen(0)                    # repeat: time 0 -> budget drops with prob. 1
        assert s.budget == 2 - i
    assert s.done and s.steps == 3
    with pytest.raises(RuntimeError):
        s.listen(1)
    # time 1.0 (bias far below): the budget never drops
    s = start(tiny_world(bias=-10.0, sharp=10.0, artist_discount_gamma=1.0),
              UserModelParams(session_budget=1))
    for t in (1, 2, 3, 4, 5):
        assert s.listen(t) == 1.0
    assert s.budget == 1 and not s.done


def test_budget_drops_with_probability_one_minus_time():
    # x = 0.6 for track 5 with bias 0.6 -> sigmoid(0) = 0.5 -> time 0.5
    world = tiny_world(bias=0.6, sharp=4.0)
    model = UserModel(world, UserModelParams(session_budget=1))
    rng = np.random.default_rng(123)
    drops = 0
    n = 4000
    for _ in range(n):
        s = model.start_session(rng)
        assert s.listen(5) == 0.5
        drops += s.done
    # Binomial(4000, 0.5): s.d. 0.0079; the fixed seed makes this exact and repeatable
    assert abs(drops / n - 0.5) < 0.03


def test_times_are_rounded_to_two_decimals():
    w = small_world()
    model = UserModel(w)
    rng = np.random.default_rng(5)
    times = []
    for _ in range(50):
        s = model.start_session(rng)
        while not s.done:
            times.append(s.listen(int(rng.integers(w.n_tracks))))
    t = np.array(times)
    assert np.all((t >= 0) & (t <= 1))
    assert np.allclose(t * 100, np.round(t * 100), atol=1e-9)
    assert round_time(0.125) == 0.12 and round_time(0.135) == 0.14  # half-even on 100*x


def test_first_track_is_among_k_nearest_of_an_interest():
    w = small_world()
    for k in (1, 3, 10):
        model = UserModel(w, UserModelParams(interest_neighbours=k))
        rng = np.random.default_rng(k)
        firsts: dict[int, set[int]] = {}
        for _ in range(300):
            s = model.start_session(rng)
            assert s.interest in set(w.user_interests(s.user).tolist())
            near = w.nearest(w.embeddings[s.interest], k)[0]
            assert s.first_track in set(near.tolist())
            assert np.allclose(s.taste, w.embeddings[s.interest])
            firsts.setdefault(s.interest, set()).add(s.first_track)
        if k > 1:  # uniform among the k: some interest shows more than one first track
            assert max(len(v) for v in firsts.values()) > 1


def test_users_are_uniform_and_explicit_user_is_respected():
    w = small_world()
    model = UserModel(w)
    rng = np.random.default_rng(0)
    users = [model.start_session(rng).user for _ in range(5000)]
    counts = np.bincount(users, minlength=w.n_users)
    assert counts.min() > 0 and counts.max() < 30  # mean 10
    assert model.start_session(rng, user=7).user == 7
    with pytest.raises(ValueError):
        model.start_session(rng, user=w.n_users)


def test_same_seed_same_trace():
    w = small_world()

    def trace(seed):
        model = UserModel(w)
        rng = np.random.default_rng(seed)
        act = np.random.default_rng(99)
        out = []
        for _ in range(20):
            s = model.start_session(rng)
            out.append(("start", s.user, s.first_track))
            while not s.done:
                out.append(s.listen(int(act.integers(w.n_tracks))))
        return out

    assert trace(1) == trace(1)
    assert trace(1) != trace(2)


def test_params_from_dict_validates_by_field_name():
    p = UserModelParams.from_dict({"session_budget": 7, "artist_discount_gamma": 0.5,
                                   "daily_hype": True})
    assert (p.session_budget, p.artist_discount_gamma, p.daily_hype) == (7, 0.5, True)
    with pytest.raises(ValueError, match="user_model.sesion_budget"):
        UserModelParams.from_dict({"sesion_budget": 7})
    with pytest.raises(ValueError, match="session_budget"):
        UserModelParams.from_dict({"session_budget": "five"})
    with pytest.raises(ValueError, match="artist_discount_gamma"):
        UserModelParams(artist_discount_gamma=1.5)
    assert UserModelParams() == UserModelParams.from_dict(None)


def test_invalid_track_rejected():
    s = start(tiny_world())
    with pytest.raises(ValueError):
        s.listen(6)
    with pytest.raises(ValueError):
        s.listen(-1)
