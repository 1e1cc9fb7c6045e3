"""The classics and factorisation families: EASE, user-based kNN and the feature hybrid."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from botify.analysis.sessions import sessionize
from botify.cli.train import main as train_main
from botify.store.artifacts import read_meta, validate_artifact
from botify.training.models import SERVED_BY, get_model
from botify.training.models.base import TrainData
from botify.training.models.planted import planted_events, successor, write_jsonl

N = 40


def sessions_frame(sessions: list[list[tuple[int, float]]], users: list[int]) -> pd.DataFrame:
    rows = []
    for s, sess in enumerate(sessions):
        for step, (track, t) in enumerate(sess):
            rows.append({"user": users[s], "session_id": s, "step": step, "track": track,
                         "time": t, "timestamp": 1_700_000_000_000 + s * 10_000 + step})
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def planted() -> TrainData:
    return TrainData.from_events(sessionize(planted_events(n_users=150, n_tracks=N, seed=3)).events, N)


@pytest.fixture(scope="module")
def catalog(tmp_path_factory):
    """Eight artists of five tracks each (t % 8), three genres, one decade per 10 ids."""
    p = tmp_path_factory.mktemp("world") / "catalog.jsonl"
    p.write_text("".join(json.dumps({"track": t, "artist": f"a{t % 8}", "title": f"t{t}",
                                     "genres": [f"g{t % 3}"], "year": 1980 + t,
                                     "mood": "calm" if t % 2 else "dark"}) + "\n"
                         for t in range(N)))
    return p


def fit(name: str, data: TrainData, k: int = 5, seed: int = 0, **params):
    mod = get_model(name)
    return mod.fit(data, mod.Params(**params), k=k, seed=seed)


def test_registered_with_their_servers():
    assert SERVED_BY["ease"] == "i2i"
    assert SERVED_BY["user_knn"] == "indexed"
    assert SERVED_BY["hybrid"] == "indexed"


# --- EASE --------------------------------------------------------------------------

def test_ease_weights_are_the_closed_form():
    from botify.training.models.ease import ease_weights

    rng = np.random.default_rng(0)
    x = sp.csr_matrix((rng.random((30, 6)) < 0.4).astype(float))
    b = ease_weights(x, reg=2.0)
    g = x.T @ x + 2.0 * np.eye(6)
    # B minimises ||X - XB||^2 + reg ||B||^2 subject to diag(B) = 0: the stationarity
    # condition is G B - G = -diag(mu) for some mu, i.e. G(B - I) is diagonal.
    r = g @ (b - np.eye(6))
    assert np.allclose(np.diag(b), 0.0)
    assert np.allclose(r - np.diag(np.diag(r)), 0.0, atol=1e-10)
    with pytest.raises(ValueError, match="reg"):
        ease_weights(x, reg=0.0)


def test_ease_finds_the_planted_successor(planted):
    art = fit("ease", planted, reg=10.0)
    assert art.kind == "i2i"
    # EASE sees sets of tracks per user, not order: the predecessor is as close as the
    # successor, so the successor is among the first two (random: 2 of 39, ~0.05)
    near = [successor(a, N) in art.lists[a][:2] for a in art.lists]
    assert len(art.lists) == N and np.mean(near) >= 0.8


def test_ease_keeps_only_the_most_played_items(planted):
    art = fit("ease", planted, n_items=10)
    pop = planted.listen_time_per_track()
    top10 = set(np.lexsort((np.arange(N), -pop))[:10].tolist())
    assert set(art.lists) <= top10
    assert all(set(v) <= top10 for v in art.lists.values())


def test_ease_user_output_and_filter(planted):
    art = fit("ease", planted, k=8, output="user", filter_listened=True)
    assert art.kind == "user" and len(art.lists) > 100
    played = {}
    for u, t in zip(planted.user.tolist(), planted.track.tolist(), strict=True):
        played.setdefault(u, set()).add(t)
    assert all(not (set(v) & played[u]) for u, v in art.lists.items())


# --- user kNN ----------------------------------------------------------------------

def test_user_knn_recommends_what_similar_users_played():
    # users 0 and 1 share tracks 1, 2; user 1 also played 3. User 2 plays 7, 8, 9 only.
    df = sessions_frame([[(1, 1.0), (2, 1.0)], [(1, 1.0), (2, 1.0), (3, 1.0)], [(7, 1.0), (8, 1.0), (9, 1.0)]],
                        users=[0, 1, 2])
    d = TrainData.from_events(df, 10)
    art = fit("user_knn", d, neighbours=1)
    assert art.kind == "user"
    assert 3 in art.lists[0] and not {7, 8, 9} & set(art.lists[0])
    assert 2 not in art.lists  # no similar user: nothing to vote, no row (the service falls back)
    filt = fit("user_knn", d, neighbours=1, filter_listened=True)
    assert filt.lists[0] == [3]


@pytest.mark.parametrize("similarity", ["cosine", "tfidf", "bm25"])
def test_user_knn_similarities_run_and_are_deterministic(planted, similarity):
    a = fit("user_knn", planted, k=10, similarity=similarity)
    assert len(a.lists) > 100 and all(len(v) <= 10 for v in a.lists.values())
    assert a.lines() == fit("user_knn", planted, k=10, similarity=similarity).lines()


# --- hybrid ------------------------------------------------------------------------

def test_hybrid_learns_the_planted_walks_and_is_deterministic(planted, catalog):
    # the test catalog's features are unrelated to the walks: ids only (plain BPR-MF)
    kw = {"catalog": str(catalog), "output": "i2i", "epochs": 15, "factors": 16, "features": "id"}
    art = fit("hybrid", planted, seed=4, **kw)
    assert art.kind == "i2i" and len(art.lists) == N
    hit = [successor(a, N) in art.lists[a] for a in range(N)]
    assert np.mean(hit) >= 0.6  # random 5 of 39 would be ~0.13
    assert art.lines() == fit("hybrid", planted, seed=4, **kw).lines()
    users = fit("hybrid", planted, seed=4, catalog=str(catalog), epochs=2)
    assert users.kind == "user" and len(users.lists) == 150


def test_hybrid_recommends_unplayed_tracks_of_the_artists_a_user_likes(tmp_path):
    # artist A: tracks 0..19, artist B: 20..39; only even tracks were ever played,
    # users 0..29 play A's, users 30..59 B's. The odd tracks exist only in the catalog.
    cat = tmp_path / "catalog.jsonl"
    cat.write_text("".join(json.dumps({"track": t, "artist": "A" if t < 20 else "B"}) + "\n"
                           for t in range(N)))
    rng = np.random.default_rng(0)
    sessions, users = [], []
    for u in range(60):
        base = 0 if u < 30 else 20
        for _ in range(3):
            sessions.append([(int(base + 2 * rng.integers(0, 10)), 1.0) for _ in range(6)])
            users.append(u)
    d = TrainData.from_events(sessions_frame(sessions, users), N)

    def share_own_artist(features: str) -> float:
        art = fit("hybrid", d, k=5, seed=1, catalog=str(cat), features=features, epochs=20,
                  filter_listened=True)
        ok = [(t < 20) == (u < 30) for u, lst in art.lists.items() for t in lst]
        return float(np.mean(ok))

    assert share_own_artist("id,artist") >= 0.95
    assert share_own_artist("id") < 0.8  # without features an unplayed track is noise


def test_hybrid_features_reach_tracks_the_logs_never_saw(catalog):
    from botify.training.models.hybrid import item_features, read_catalog

    played = np.zeros(N, dtype=bool)
    played[:4] = True
    m, names = item_features(read_catalog(catalog), N, played, ("id", "artist", "genre", "year", "mood"))
    assert m.shape == (N, len(names))
    assert np.allclose(np.asarray(m.sum(axis=1)).ravel(), 1.0)
    assert "id:3" in names and "id:4" not in names
    # track 12 (never played) shares its artist a4 with track 4, 20, ... and has features
    row = m[12].toarray().ravel()
    assert {names[i] for i in np.flatnonzero(row)} == {"artist:a4", "genre:g0", "decade:1990", "mood:dark"}
    # unknown catalog ids or no selected features: the shared "none" feature
    m2, names2 = item_features([], 3, np.zeros(3, dtype=bool), ("artist",))
    assert names2 == ["none"] and m2.nnz == 3
    with pytest.raises(ValueError, match="unknown features"):
        item_features([], 3, played[:3], ("colour",))


def test_hybrid_needs_the_catalog(planted, tmp_path):
    with pytest.raises(ValueError, match="--catalog"):
        fit("hybrid", planted)
    hidden = tmp_path / "hidden"
    hidden.mkdir()
    (hidden / "catalog.jsonl").write_text('{"track": 0}\n')
    with pytest.raises(ValueError, match="hidden"):
        fit("hybrid", planted, catalog=str(hidden / "catalog.jsonl"))


# --- end to end: botify train ----------------------------------------------------

@pytest.mark.parametrize(("model", "served"), [("ease", "i2i"), ("user_knn", "indexed"),
                                               ("hybrid", "indexed")])
def test_train_cli(model, served, catalog, tmp_path):
    logs = tmp_path / "logs"
    write_jsonl(planted_events(n_users=100, n_tracks=N, seed=2), logs)
    out = tmp_path / f"{model}.jsonl"
    extra = ["--epochs", "2"] if model == "hybrid" else []
    assert train_main([model, "--logs", str(logs), "--out", str(out), "--catalog", str(catalog),
                       "--k", "7", "--quiet", *extra]) == 0
    info = validate_artifact(out, N)
    meta = read_meta(out)
    assert info.max_list_len <= 7 and meta["served_by"] == served
    assert 0.0 <= meta["metrics"]["hit_rate"] <= 1.0


def test_lab_trains_the_hybrid_with_the_public_catalog(catalog):
    from botify.lab import model_training

    k, params = model_training("hybrid", catalog)
    assert params == {"catalog": str(catalog.resolve())} and k > 0
    assert model_training("ease", catalog)[1] == {}


def test_hybrid_gives_no_list_to_users_without_a_positive(catalog):
    # user 0 listened well, user 1 skipped everything: no vector was learnt for user 1
    df = sessions_frame([[(1, 1.0), (2, 0.9)], [(3, 0.1), (4, 0.2)]], users=[0, 1])
    art = fit("hybrid", TrainData.from_events(df, N), catalog=str(catalog), epochs=1)
    assert set(art.lists) == {0}
