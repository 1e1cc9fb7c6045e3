"""Offline metrics against hand-computed examples; the temporal split; the leaderboard."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from botify.analysis.sessions import sessionize
from botify.store.artifacts import Artifact, write_artifact
from botify.training.evaluate import (
    DAY_MS,
    evaluate_models,
    leaderboard,
    next_track_targets,
    popularity_percentile,
    render_leaderboard,
    score_artifact,
    temporal_split,
)
from botify.training.models.planted import planted_events

T0 = 1_732_838_400_000  # a UTC midnight


def frame(sessions: list[tuple[int, int, list[tuple[int, float]]]]) -> pd.DataFrame:
    """Sessionized events from (user, start ms, [(track, time), ...])."""
    rows = []
    for sid, (user, start, tracks) in enumerate(sessions):
        for step, (track, t) in enumerate(tracks):
            rows.append({"user": user, "session_id": sid, "step": step, "track": track,
                         "time": t, "timestamp": pd.Timestamp(start + step * 1000, unit="ms", tz="UTC")})
    return pd.DataFrame(rows)


def targets_of(rows: list[tuple[int, int, int]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["user", "prev", "next"]).assign(next_time=1.0)


def test_metrics_hand_computed_i2i():
    # 4 targets: rank 1, rank 2, miss (not in list), miss (no list for prev=9)
    art = Artifact("i2i", lists={0: [1, 2, 3], 5: [7, 6]})
    t = targets_of([(0, 0, 1), (0, 5, 6), (1, 0, 4), (1, 9, 1)])
    pct = np.linspace(0.0, 1.0, 10)  # track i has percentile i/9
    m = score_artifact(art, t, k=3, n_tracks=10, pop_pct=pct)
    assert m["hit_rate"] == pytest.approx(2 / 4)
    assert m["ndcg"] == pytest.approx((1.0 + 1.0 / math.log2(3)) / 4)
    assert m["mrr"] == pytest.approx((1.0 + 0.5) / 4)
    assert m["ctx_coverage"] == pytest.approx(3 / 4)
    # lists served: [1,2,3] (twice) and [7,6]: 5 distinct tracks of 10
    assert m["coverage"] == pytest.approx(5 / 10)
    # served slots: 2 x (1+2+3)/9 + (7+6)/9 over 2*3 + 2 = 8 slots
    assert m["pop_pct"] == pytest.approx((2 * 6 / 9 + 13 / 9) / 8)


def test_metrics_cut_at_k_and_other_kinds():
    t = targets_of([(0, 0, 3), (1, 0, 2)])
    pct = np.zeros(5)
    i2i = Artifact("i2i", lists={0: [1, 2, 3]})
    m = score_artifact(i2i, t, k=2, n_tracks=5, pop_pct=pct)
    assert m["hit_rate"] == pytest.approx(0.5)  # track 3 sits at rank 3 > k
    assert m["mrr"] == pytest.approx(0.25)
    top = Artifact("top", top=[2, 3])
    m = score_artifact(top, t, k=2, n_tracks=5, pop_pct=pct)
    assert (m["hit_rate"], m["mrr"], m["coverage"]) == pytest.approx((1.0, 0.75, 0.4))
    users = Artifact("user", lists={1: [2]})  # user 0 has no list
    m = score_artifact(users, t, k=2, n_tracks=5, pop_pct=pct)
    assert (m["hit_rate"], m["ctx_coverage"]) == pytest.approx((0.5, 0.5))
    with pytest.raises(ValueError, match="no test targets"):
        score_artifact(top, t.iloc[:0], k=2, n_tracks=5, pop_pct=pct)


def test_popularity_percentile_hand():
    assert popularity_percentile(np.array([0.0, 5.0, 1.0, 0.0])).tolist() == pytest.approx(
        [1 / 6, 1.0, 2 / 3, 1 / 6]  # ranks 1.5, 4, 3, 1.5 -> (r - 1) / 3
    )


def test_targets_filter_by_listen_time_and_stay_in_sessions():
    ev = frame([(1, T0, [(0, 1.0), (1, 0.9), (2, 0.1), (3, 0.6)]), (2, T0, [(7, 1.0)])])
    t = next_track_targets(ev, min_time=0.5)
    assert list(zip(t["prev"], t["next"], strict=True)) == [(0, 1), (2, 3)]
    assert len(next_track_targets(ev, min_time=0.0)) == 3


def test_temporal_split_modes():
    ev = frame([(1, T0 + 1000, [(0, 1.0), (1, 1.0)]),
                (1, T0 + DAY_MS - 1500, [(2, 1.0), (3, 1.0), (4, 1.0)]),  # crosses midnight
                (2, T0 + DAY_MS + 5000, [(5, 1.0), (6, 1.0)])])
    train, test, info = temporal_split(ev, "last-day")
    assert info.how == "last-day" and info.cutoff_ms == T0 + DAY_MS
    # the session that started before midnight stays whole in train
    assert sorted(train["track"]) == [0, 1, 2, 3, 4] and sorted(test["track"]) == [5, 6]
    assert (info.train_sessions, info.test_sessions) == (2, 1)
    _, _, auto = temporal_split(ev)
    assert auto.how == "last-day"
    train, test, info = temporal_split(ev, "fraction", test_fraction=0.5)
    assert info.how == "fraction=0.5" and sorted(test["track"]) == [2, 3, 4, 5, 6]
    _, test, info = temporal_split(ev, str(T0 + DAY_MS + 1))
    assert info.how == "at" and sorted(test["track"]) == [5, 6]
    _, test, _ = temporal_split(ev, "2024-11-29T23:00:00Z")
    assert sorted(test["track"]) == [2, 3, 4, 5, 6]
    with pytest.raises(ValueError, match="no session starts on the last day"):
        temporal_split(ev.iloc[:5], "last-day")  # only the midnight-crossing session reaches it
    one_day = frame([(1, T0 + 1000, [(0, 1.0)]), (2, T0 + 9000, [(1, 1.0)])])
    with pytest.raises(ValueError, match="all sessions start on the last day"):
        temporal_split(one_day, "last-day")
    assert temporal_split(one_day)[2].how.startswith("fraction")  # auto falls back
    with pytest.raises(ValueError, match="expected auto"):
        temporal_split(ev, "yesterday-ish")
    with pytest.raises(ValueError, match="empty train or test"):
        temporal_split(ev, str(T0))


@pytest.fixture(scope="module")
def planted() -> pd.DataFrame:
    return sessionize(planted_events(n_users=120, n_tracks=30, seed=1)).events


def test_leaderboard_ranks_contextual_above_top_pop(planted, tmp_path):
    lb = leaderboard(planted, ["top_pop", "contextual"], n_tracks=30, split="last-day", k=5)
    tab = lb.table.set_index("model")
    assert list(lb.table["model"]) == ["contextual", "top_pop"]
    assert tab.loc["contextual", "hit_rate"] == pytest.approx(1.0)
    assert tab.loc["top_pop", "hit_rate"] < 0.5
    assert tab.loc["top_pop", "pop_pct"] > tab.loc["contextual", "pop_pct"]
    js = lb.to_json()
    assert js["split"]["how"] == "last-day" and len(js["leaderboard"]) == 2
    render_leaderboard(lb)  # builds a rich table without error


def test_leaderboard_flags_leaky_artifacts(planted, tmp_path):
    train, test, info = temporal_split(planted, "last-day")
    p1 = write_artifact(tmp_path / "a.jsonl", Artifact("top", top=[0, 1]),
                        {"model": "top_pop", "data_window": {"end_ms": info.cutoff_ms + 1}})
    p2 = write_artifact(tmp_path / "b.jsonl", Artifact("top", top=[0, 1]),
                        {"model": "x", "data_window": {"end_ms": info.cutoff_ms - 1}})
    p3 = write_artifact(tmp_path / "c.jsonl", Artifact("top", top=[0, 1]))
    lb = evaluate_models(train, test, info, [p1, p2, p3], n_tracks=30, k=5)
    notes = dict(zip(lb.table["model"], lb.table["note"], strict=True))
    assert notes["top_pop (a.jsonl)"].startswith("leak")
    assert notes["x (b.jsonl)"] == ""
    assert "unknown" in notes["c (c.jsonl)"]
    with pytest.raises(ValueError, match="neither an artifact file nor a model"):
        evaluate_models(train, test, info, ["nope"], n_tracks=30)


def test_separate_test_logs(planted):
    train, test, _ = temporal_split(planted, "last-day")
    lb = leaderboard(train, ["contextual"], n_tracks=30, test_events=test, k=5)
    assert lb.split.how == "separate-test-logs"
    assert lb.table.loc[0, "hit_rate"] == pytest.approx(1.0)
