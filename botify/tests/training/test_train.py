"""`python -m botify.train` / `python -m botify.evaluate` end to end on planted COMPAT logs."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from botify.cli.evaluate import main as evaluate_main
from botify.cli.train import main as train_main
from botify.store.artifacts import load_artifact, read_meta, validate_artifact
from botify.training.models.planted import planted_events, successor, write_jsonl

N = 30


@pytest.fixture(scope="module")
def logs(tmp_path_factory):
    d = tmp_path_factory.mktemp("logs")
    write_jsonl(planted_events(n_users=100, n_tracks=N, seed=2), d)
    return d


@pytest.fixture(scope="module")
def catalog(tmp_path_factory):
    p = tmp_path_factory.mktemp("world") / "catalog.jsonl"
    p.write_text("".join(json.dumps({"track": i, "artist": f"a{i}", "title": f"t{i}"}) + "\n"
                         for i in range(N)))
    return p


@pytest.mark.parametrize("model", ["top_pop", "i2i", "contextual", "mf"])
def test_train_cli_writes_valid_artifact_and_meta(logs, catalog, tmp_path, model, capsys):
    out = tmp_path / f"{model}.jsonl"
    rc = train_main([model, "--logs", str(logs), "--out", str(out), "--catalog", str(catalog),
                     "--k", "7", "--seed", "3", "--quiet"])
    assert rc == 0
    assert str(out) in capsys.readouterr().out
    info = validate_artifact(out, N)
    assert info.max_list_len <= 7
    meta = read_meta(out)
    assert meta["model"] == model and meta["kind"] == info.kind
    assert meta["params"]["k"] == 7 and meta["params"]["seed"] == 3
    assert meta["data_window"]["events"] == 100 * 3 * 8
    assert meta["data_window"]["logs"] == [str(logs.resolve())]
    m = meta["metrics"]
    assert m["split"]["how"] == "last-day" and 0.0 <= m["hit_rate"] <= 1.0
    assert {"created_at", "served_by", "n_tracks"} <= set(meta)
    assert meta["served_by"] == {"top_pop": "top_pop", "i2i": "i2i", "contextual": "contextual",
                                 "mf": "indexed"}[model]
    if model == "contextual":
        art = load_artifact(out)
        assert all(art.lists[a][0] == successor(a, N) for a in range(N))
        assert m["hit_rate"] == pytest.approx(1.0)


def test_mf_item_output_is_served_by_i2i(logs, tmp_path):
    out = tmp_path / "mf_i2i.jsonl"
    assert train_main(["mf", "--logs", str(logs), "--out", str(out), "--output", "i2i",
                       "--factors", "8", "--no-eval", "--quiet"]) == 0
    meta = read_meta(out)
    assert meta["kind"] == "i2i" and meta["served_by"] == "i2i"
    assert meta["params"]["output"] == "i2i" and meta["params"]["factors"] == 8


def test_train_cli_same_seed_same_bytes(logs, tmp_path):
    outs = []
    for i in range(2):
        out = tmp_path / f"i2i{i}.jsonl"
        assert train_main(["i2i", "--logs", str(logs), "--out", str(out), "--window", "3",
                           "--alpha", "0.3", "--no-eval", "--quiet"]) == 0
        outs.append(out.read_bytes())
    assert outs[0] == outs[1]
    meta = read_meta(tmp_path / "i2i0.jsonl")
    assert meta["params"]["window"] == 3 and meta["params"]["alpha"] == 0.3
    assert meta["metrics"] is None


def test_train_cli_errors(logs, tmp_path, capsys):
    hidden = tmp_path / "world" / "hidden"
    hidden.mkdir(parents=True)
    (hidden / "tracks.jsonl").write_text('{"track": 0}\n')
    out = tmp_path / "x.jsonl"
    assert train_main(["top_pop", "--logs", str(logs), "--out", str(out),
                       "--catalog", str(hidden / "tracks.jsonl"), "--quiet"]) == 2
    assert "hidden" in capsys.readouterr().err
    assert train_main(["top_pop", "--logs", str(tmp_path / "none"), "--out", str(out),
                       "--quiet"]) == 2
    assert capsys.readouterr().err.startswith("error:")
    small = tmp_path / "small.jsonl"
    small.write_text('{"track": 0}\n{"track": 1}\n')
    # the catalog is smaller than the logs' ids: ids >= 2 are dropped, never written
    assert train_main(["top_pop", "--logs", str(logs), "--out", str(out), "--catalog",
                       str(small), "--no-eval", "--quiet"]) == 0
    assert set(load_artifact(out, 2).top) <= {0, 1}
    with pytest.raises(SystemExit):
        train_main(["i2i", "--logs", str(logs), "--out", str(out), "--window", "x"])


def test_help_lists_models_and_params():
    r = subprocess.run([sys.executable, "-m", "botify.train", "i2i", "--help"],
                       capture_output=True, text=True, check=True)
    assert "--window" in r.stdout and "--alpha" in r.stdout and "--logs" in r.stdout
    r = subprocess.run([sys.executable, "-m", "botify.train", "--help"],
                       capture_output=True, text=True, check=True)
    for m in ("top_pop", "i2i", "contextual", "mf", "sasrec"):
        assert m in r.stdout


def test_evaluate_cli_leaderboard_and_json(logs, tmp_path, capsys):
    art = tmp_path / "top.jsonl"
    assert train_main(["top_pop", "--logs", str(logs), "--out", str(art), "--quiet"]) == 0
    js = tmp_path / "lb.json"
    rc = evaluate_main(["--logs", str(logs), "--models", "contextual", "i2i", str(art),
                        "--k", "5", "--json", str(js), "--quiet"])
    assert rc == 0
    out = capsys.readouterr().out
    assert "leaderboard" in out and "contextual" in out
    data = json.loads(js.read_text())
    rows = {r["model"]: r for r in data["leaderboard"]}
    assert rows["contextual"]["hit_rate"] == pytest.approx(1.0)
    assert rows["top_pop (top.jsonl)"]["note"].startswith("leak")  # trained on all the logs
    assert data["leaderboard"][0]["model"] == "contextual"
    assert evaluate_main(["--logs", str(logs), "--models", "nope", "--quiet"]) == 2
