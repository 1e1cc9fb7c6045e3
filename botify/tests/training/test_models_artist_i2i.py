"""artist_i2i: related artists from per-user co-listening, planted in small worlds."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from botify.training.models import SERVED_BY, artist_i2i, get_model
from botify.training.models.base import TrainData

N_ART, PER = 8, 4  # artist a owns tracks a*PER .. a*PER+3


def write_catalog(path: Path, n_art: int = N_ART, per: int = PER) -> Path:
    # names sort differently from ids, so the name -> id mapping is exercised
    path.write_text("".join(
        json.dumps({"track": t, "artist": f"artist-{(t // per) * 7 % 101:03d}", "title": f"t{t}"})
        + "\n" for t in range(n_art * per)))
    return path


def frame(sessions: list[tuple[int, list[tuple[int, float]]]]) -> pd.DataFrame:
    """Sessionized events from (user, [(track, time), ...]) per session."""
    rows = []
    for s, (u, sess) in enumerate(sessions):
        for step, (track, t) in enumerate(sess):
            rows.append({"user": u, "session_id": s, "step": step, "track": track, "time": t,
                         "timestamp": 1_700_000_000_000 + s * 10_000 + step})
    return pd.DataFrame(rows)


def planted(seed: int = 0) -> pd.DataFrame:
    """Two taste groups: artists 0-3 and 4-7. Each user belongs to one group and starts
    sessions with tracks of its group's artists (first tracks, time 1.0); sticky-style
    sessions repeat the first artist; random recommendations are listened only when
    they fall in the user's group."""
    rng = np.random.default_rng(seed)
    sessions = []
    for u in range(120):
        group = u % 2
        for _ in range(3):
            a = int(rng.integers(4)) + 4 * group
            first = a * PER + int(rng.integers(PER))
            steps = [(first, 1.0)]
            if rng.random() < 0.5:  # sticky: same artist, well listened
                steps += [(a * PER + int(x), 0.8) for x in rng.integers(PER, size=3)]
            else:  # random: other artists, listened only inside the group
                for t in rng.integers(N_ART * PER, size=3).tolist():
                    steps.append((t, 0.9 if (t // PER) // 4 == group else 0.0))
            sessions.append((u, steps))
    return frame(sessions)


def fit(df: pd.DataFrame, catalog: Path, k: int = 30, seed: int = 0, **params):
    d = TrainData.from_events(df, N_ART * PER)
    return artist_i2i.fit(d, artist_i2i.Params(catalog=str(catalog), **params), k=k, seed=seed)


def test_related_artists_stay_in_the_planted_group(tmp_path):
    cat = write_catalog(tmp_path / "catalog.jsonl")
    art = fit(planted(), cat, n_related=3, same_artist=2, per_artist=2)
    assert len(art) == N_ART * PER  # every artist was seen
    for t, lst in art.lists.items():
        a, group = t // PER, (t // PER) // 4
        assert t not in lst
        others = [x for x in lst if x // PER != a]
        assert others and all((x // PER) // 4 == group for x in others), (t, lst)
        assert {x // PER for x in others} == set(range(4 * group, 4 * group + 4)) - {a}
        assert len([x for x in lst if x // PER == a]) <= 2
    for a in range(N_ART):  # a track not among its artist's top 2 sees the full list
        full = max((art.lists[t] for t in range(a * PER, a * PER + PER)), key=len)
        is_own = [x // PER == a for x in full]
        assert is_own[:5] == [True, False, True, False, False]  # own first, alternating


def test_tracks_of_a_related_artist_are_ordered_by_listen_time(tmp_path):
    cat = write_catalog(tmp_path / "catalog.jsonl")
    # users co-listen artists 0 and 1; of artist 1, track 6 is listened most, then 4, 5
    sessions = []
    for u in range(10):
        sessions.append((u, [(0, 1.0)]))
        sessions.append((u, [(4, 1.0), (6, 1.0), (5, 0.6)]))
    sessions += [(u, [(6, 1.0)]) for u in range(10, 15)]
    art = fit(frame(sessions), cat, n_related=1, per_artist=3, same_artist=0)
    assert art.lists[0] == [6, 4, 5]
    assert art.lists[1] == [6, 4, 5]  # every track of artist 0 shares the list
    assert art.lists[6] == [0, 1, 2]  # only track 0 of artist 0 listened; then by id


def test_sticky_repeats_do_not_multiply_cross_artist_pairs(tmp_path):
    cat = write_catalog(tmp_path / "catalog.jsonl")
    # user 0: artist 2 repeated many times (sticky) with one play of artist 3;
    # users 1-2: artists 2 and 5 once each. Counting plays, 3 would be 2's best
    # partner (10 pairs vs 2); counting each artist once per user, 5 is.
    sess = [(0, [(8, 1.0)] + [(8 + i % PER, 1.0) for i in range(10)]), (0, [(12, 1.0)])]
    sess += [(u, [(8, 1.0)]) for u in (1, 2)] + [(u, [(20, 1.0)]) for u in (1, 2)]
    art = fit(frame(sess), cat, n_related=1, same_artist=0, walk=0.0)
    assert art.lists[8][0] // PER == 5


def test_deterministic_and_spectral_option(tmp_path):
    cat = write_catalog(tmp_path / "catalog.jsonl")
    df = planted(1)
    assert fit(df, cat, seed=3).lines() == fit(df, cat, seed=3).lines()
    a = fit(df, cat, seed=3, rank=2, spectral=1.0, walk=0.0, n_related=3)
    assert a.lines() == fit(df, cat, seed=3, rank=2, spectral=1.0, walk=0.0, n_related=3).lines()
    for t, lst in a.lists.items():  # the embedding keeps the two groups apart too
        assert all((x // PER) // 4 == (t // PER) // 4 for x in lst)


def test_inputs_are_validated(tmp_path):
    cat = write_catalog(tmp_path / "catalog.jsonl")
    d = TrainData.from_events(planted(), N_ART * PER)
    with pytest.raises(ValueError, match="catalog"):
        artist_i2i.fit(d, artist_i2i.Params(), k=5, seed=0)
    with pytest.raises(ValueError, match="n_related"):
        artist_i2i.fit(d, artist_i2i.Params(catalog=str(cat), n_related=0), k=5, seed=0)
    hidden = tmp_path / "hidden"
    hidden.mkdir()
    write_catalog(hidden / "catalog.jsonl")
    with pytest.raises(ValueError, match="hidden"):
        artist_i2i.catalog_artists(hidden / "catalog.jsonl")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"track": 0}\n')
    with pytest.raises(ValueError, match="artist"):
        artist_i2i.catalog_artists(bad)


def test_registered_and_served_by_i2i():
    assert get_model("artist_i2i") is artist_i2i
    assert SERVED_BY["artist_i2i"] == "i2i"


def write_planted_logs(logs: Path) -> None:
    """The planted sessions as service event logs (what the CLIs read)."""
    from botify.training.models.planted import write_jsonl

    df = planted()
    df["message"] = "next"
    df["recommendation"] = df["track"]
    df["latency"] = 0.001
    df["timestamp"] = pd.to_datetime(df["timestamp"], unit="ms")
    write_jsonl(df, logs)


def test_train_cli_fills_the_catalog(tmp_path, capsys):
    from botify.cli.train import main

    cat = write_catalog(tmp_path / "catalog.jsonl")
    write_planted_logs(tmp_path / "logs")
    out = tmp_path / "a.jsonl"
    assert main(["artist_i2i", "--logs", str(tmp_path / "logs"), "--out", str(out),
                 "--catalog", str(cat), "--no-eval", "--quiet", "--k", "5"]) == 0
    meta = json.loads(Path(str(out) + ".meta.json").read_text())
    assert meta["params"]["catalog"] == str(cat.resolve()) and meta["served_by"] == "i2i"
    assert main(["artist_i2i", "--logs", str(tmp_path / "logs"), "--out", str(out),
                 "--no-eval", "--quiet"]) == 2
    assert "needs the public catalog" in capsys.readouterr().err


def test_lab_trains_it_with_the_catalog_and_contextual_with_k20(tmp_path):
    from botify.lab import LabOptions, model_training
    from botify.training.train import catalog_params

    cat = write_catalog(tmp_path / "catalog.jsonl")
    assert "artist_i2i" in LabOptions().models
    k, params = model_training("artist_i2i", cat)
    assert params == {"catalog": str(cat.resolve())} and k == 30
    assert model_training("contextual", cat) == (20, {})
    assert catalog_params("i2i", cat) == {}


def test_evaluate_cli_passes_the_catalog(tmp_path, capsys):
    from botify.cli.evaluate import main

    cat = write_catalog(tmp_path / "catalog.jsonl")
    write_planted_logs(tmp_path / "logs")
    out = tmp_path / "lb.json"
    assert main(["--logs", str(tmp_path / "logs"), "--models", "artist_i2i", "top_pop",
                 "--catalog", str(cat), "--split", "fraction", "--json", str(out), "--quiet"]) == 0
    rows = json.loads(out.read_text())["leaderboard"]
    assert {r["model"] for r in rows} == {"artist_i2i", "top_pop"}
    assert main(["--logs", str(tmp_path / "logs"), "--models", "artist_i2i", "--quiet"]) == 2
    assert "needs the public catalog" in capsys.readouterr().err
