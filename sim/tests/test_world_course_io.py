"""Course data files: export a world, import course files back as a world."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sim.course_io import export_course, import_course, main
from sim.model import UserModel
from sim.world import World, WorldError, generate


@pytest.fixture(scope="module")
def world_dir(tmp_path_factory):
    return generate(seed=2, n_tracks=800, n_users=60, out=tmp_path_factory.mktemp("c") / "w")


def test_export_then_import_roundtrip(world_dir, tmp_path):
    files = export_course(world_dir, tmp_path / "course")
    first = json.loads(files["tracks.jsonl"].read_text().splitlines()[0])
    assert {"track", "artist", "title"} <= set(first) and first["track"] == 0
    user = json.loads(files["users.jsonl"].read_text().splitlines()[0])
    assert set(user) == {"user", "interests", "consume_bias", "consume_sharpness"}
    assert np.load(files["embeddings.npy"]).shape == (800, 32)
    w = import_course(files["tracks.jsonl"], files["embeddings.npy"], files["users.jsonl"],
                      out=tmp_path / "back")
    orig = World.load(world_dir)
    back = World.load(tmp_path / "back")
    assert np.array_equal(back.embeddings, orig.embeddings)
    assert np.array_equal(back.interests, orig.interests)
    assert np.array_equal(back.consume_bias, orig.consume_bias)
    assert [back.track_artist_name(t) for t in range(800)] == \
        [orig.track_artist_name(t) for t in range(800)]
    assert back.titles == orig.titles and w.n_users == 60
    # the imported world simulates
    s = UserModel(back).start_session(np.random.default_rng(0))
    assert s.listen(5) >= 0.0


def test_minimal_course_files_without_extras(tmp_path):
    tracks = [{"track": 1, "artist": "X", "title": "b"}, {"track": 0, "artist": "Y", "title": "a"}]
    (tmp_path / "t.jsonl").write_text("\n".join(json.dumps(t) for t in tracks))
    np.save(tmp_path / "e.npy", np.array([[3.0, 4.0], [0.0, 2.0]]))
    (tmp_path / "u.jsonl").write_text(json.dumps(
        {"user": 0, "interests": [1], "consume_bias": 0.1, "consume_sharpness": 2.0}))
    w = import_course(tmp_path / "t.jsonl", tmp_path / "e.npy", tmp_path / "u.jsonl")
    assert w.titles == ["a", "b"] and w.track_artist_name(0) == "Y"
    assert np.allclose(w.embeddings[0], [3.0, 4.0])          # kept as given (the course's world)
    n = import_course(tmp_path / "t.jsonl", tmp_path / "e.npy", tmp_path / "u.jsonl",
                      normalise=True)
    assert np.allclose(n.embeddings[0], [0.6, 0.8])          # only on request
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"user": 0, "interests": [9], "consume_bias": 0,
                               "consume_sharpness": 1}))
    with pytest.raises(WorldError, match="interest"):
        import_course(tmp_path / "t.jsonl", tmp_path / "e.npy", bad)
    with pytest.raises(WorldError, match="missing"):
        import_course(tmp_path / "nope.jsonl", tmp_path / "e.npy", bad)


def test_cli(world_dir, tmp_path):
    assert main(["export", str(world_dir), str(tmp_path / "c")]) == 0
    assert main(["import", "--tracks", str(tmp_path / "c/tracks.jsonl"), "--embeddings",
                 str(tmp_path / "c/embeddings.npy"), "--users", str(tmp_path / "c/users.jsonl"),
                 "--out", str(tmp_path / "w2")]) == 0
    assert main(["import", "--tracks", "x", "--embeddings", "y", "--users", "z",
                 "--out", str(tmp_path / "w3")]) == 2


def test_raw_embeddings_survive_save_and_load_and_change_listen_times(tmp_path):
    tracks = [{"track": i, "artist": a, "title": f"t{i}"} for i, a in enumerate("ABC")]
    np.save(tmp_path / "e.npy", np.array([[2.0, 0.0], [1.5, 0.5], [0.0, 3.0]]))
    (tmp_path / "t.jsonl").write_text("\n".join(json.dumps(t) for t in tracks))
    (tmp_path / "u.jsonl").write_text(json.dumps(
        {"user": 0, "interests": [0], "consume_bias": 0.5, "consume_sharpness": 2.0,
         "interest_neighbours": 1}))
    files = (tmp_path / "t.jsonl", tmp_path / "e.npy", tmp_path / "u.jsonl")
    import_course(*files, out=tmp_path / "raw")
    import_course(*files, out=tmp_path / "unit", normalise=True)
    raw, unit = World.load(tmp_path / "raw"), World.load(tmp_path / "unit")
    assert np.allclose(raw.embeddings[0], [2.0, 0.0]) and np.allclose(unit.embeddings[0], [1, 0])
    assert raw.meta["embeddings_normalised"] is False and unit.meta["embeddings_normalised"]
    # <e_1, e_0> is 3.0 raw vs 0.949 unit: sigmoid((x - 0.5) * 2) differs
    t_raw = UserModel(raw).start_session(np.random.default_rng(0)).listen(1)
    t_unit = UserModel(unit).start_session(np.random.default_rng(0)).listen(1)
    assert (t_raw, t_unit) == (0.99, 0.71)


@pytest.mark.parametrize(("which", "content", "message"), [
    ("e", "shape", "e.npy: 3 rows but"),
    ("t", [{"track": 0, "title": "x"}], "t.jsonl: record 1 lacks artist"),
    ("u", [{"user": 0, "interests": [0], "consume_bias": 0.1}], "u.jsonl: record 1 lacks "
                                                                  "consume_sharpness"),
])
def test_wrong_shape_names_the_file_and_problem(tmp_path, which, content, message):
    tracks = [{"track": i, "artist": "A", "title": ""} for i in range(2)]
    users = [{"user": 0, "interests": [0], "consume_bias": 0.1, "consume_sharpness": 1.0}]
    emb = np.eye(2)
    if which == "e":
        emb = np.eye(3)
    elif which == "t":
        tracks = content
        emb = np.eye(1)
    else:
        users = content
    (tmp_path / "t.jsonl").write_text("\n".join(json.dumps(t) for t in tracks))
    (tmp_path / "u.jsonl").write_text("\n".join(json.dumps(u) for u in users))
    np.save(tmp_path / "e.npy", emb)
    with pytest.raises(WorldError, match=message):
        import_course(tmp_path / "t.jsonl", tmp_path / "e.npy", tmp_path / "u.jsonl")
