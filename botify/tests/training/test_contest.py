"""The offline contest kit: make (determinism, no overwrite), score (validation, hand-computed
metrics, the record), board (HTML contents), on planted, synthetic and simulated logs."""

from __future__ import annotations

import hashlib
import json
import math
import subprocess
import sys
from pathlib import Path

import orjson
import pytest
from botify.analysis.logs import read_events, timestamp_ms
from botify.analysis.sessions import sessionize
from botify.analysis.synth import SynthSpec, generate, write_logs
from botify.cli.contest import main as contest_main
from botify.cli.main import main as botify_main
from botify.training.contest import (
    ContestError,
    load_answers,
    ndcg_recall,
    read_submission,
    score_part,
    score_submission,
)
from botify.training.models.planted import planted_events, successor, write_jsonl

N = 61  # tracks of the planted logs (coprime with the successor's a=7)
ROOT = Path(__file__).resolve().parents[3]


def _lines(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()]


def _files(d: Path) -> dict[str, bytes]:
    return {str(p.relative_to(d)): p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def logs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("logs")
    write_jsonl(planted_events(n_users=100, n_tracks=N, seed=2), d)
    return d


@pytest.fixture(scope="module")
def kit(logs: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("kits") / "kit"
    assert contest_main(["make", "--logs", str(logs), "--out", str(out), "--seed", "3"]) == 0
    return out


# ----------------------------------------------------------------------------------- make


def test_make_writes_train_test_and_split_answers(kit: Path, logs: Path) -> None:
    pub, ans = kit / "public", kit / "answers"
    assert sorted(_files(kit)) == [
        "answers/answers.json", "answers/baselines/i2i.jsonl", "answers/baselines/top_pop.jsonl",
        "answers/private.jsonl", "answers/public.jsonl", "public/contest.json",
        "public/sample_submission.jsonl", "public/test.jsonl", "public/train/events-000001.jsonl",
    ]
    meta = json.loads((ans / "answers.json").read_text())
    contest = json.loads((pub / "contest.json").read_text())
    assert "seed" not in contest and meta["seed"] == 3  # students cannot replay the split
    cutoff = meta["split"]["cutoff_ms"]
    assert meta["split"]["how"] == "last-day"  # two planted days: the last one is held out

    # train: a COMPAT log of every event of the sessions before the cutoff, nothing after
    train = read_events([pub / "train"]).events
    assert len(train) == meta["split"]["train_events"] == contest["split"]["train_events"]
    # whole sessions that start before the cutoff (botify's temporal_split never cuts one)
    starts = sessionize(train).sessions["start"]
    assert int(timestamp_ms(starts).max()) < cutoff

    # test: one query per user, a true prefix of one of that user's held-out sessions;
    # answers: the distinct tracks after the prefix listened >= min_time
    events = sessionize(read_events([logs]).events).events
    events["ms"] = timestamp_ms(events["timestamp"])
    test = _lines(pub / "test.jsonl")
    public, private = _lines(ans / "public.jsonl"), _lines(ans / "private.jsonl")
    answers = {r["user"]: r["tracks"] for r in public + private}
    assert {q["user"] for q in test} == set(answers)
    assert not {r["user"] for r in public} & {r["user"] for r in private}
    assert len(public) == meta["users"]["public"] and len(private) == meta["users"]["private"]
    assert abs(len(public) - len(private)) <= 1  # --public-share 0.5
    for q in test:
        assert set(q) == {"user", "prefix", "times", "timestamps"}  # no recommendation: it leaks
        mine = events[events["user"] == q["user"]]
        first = mine[mine["ms"] == q["timestamps"][0]]
        sess = mine[mine["session_id"] == first["session_id"].iloc[0]].sort_values("step")
        assert int(sess["ms"].iloc[0]) >= cutoff
        assert sess["ms"].tolist()[:len(q["prefix"])] == q["timestamps"]
        n = len(q["prefix"])
        assert sess["track"].tolist()[:n] == q["prefix"]
        rest = sess.iloc[n:]
        want = list(dict.fromkeys(rest.loc[rest["time"] >= 0.5, "track"].tolist()))
        assert answers[q["user"]] == want and want


def test_make_same_seed_same_bytes_other_seed_other_split(logs: Path, tmp_path: Path) -> None:
    for name, seed in (("a", "5"), ("b", "5"), ("c", "6")):  # default baselines: top_pop, i2i
        assert contest_main(["make", "--logs", str(logs), "--out", str(tmp_path / name),
                             "--seed", seed]) == 0
    a, b, c = (_files(tmp_path / n) for n in "abc")
    assert a == b
    assert a["public/train/events-000001.jsonl"] == c["public/train/events-000001.jsonl"]
    assert a["answers/public.jsonl"] != c["answers/public.jsonl"]


def test_make_refuses_to_overwrite_without_force(logs: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "kit"
    args = ["make", "--logs", str(logs), "--out", str(out), "--baselines", ""]
    assert contest_main(args) == 0
    (out / "answers" / "scores.jsonl").write_text('{"stale": true}\n')
    before = _files(out)
    capsys.readouterr()
    assert contest_main([*args, "--seed", "9"]) == 2
    assert f"error: {out}: exists and is not empty; pass --force" in capsys.readouterr().err
    assert _files(out) == before  # nothing touched
    assert contest_main([*args, "--seed", "9", "--force"]) == 0
    after = _files(out)
    assert "answers/scores.jsonl" not in after  # scores of the old answers are gone
    assert after["answers/public.jsonl"] != before["answers/public.jsonl"]

    other = tmp_path / "mine"
    other.mkdir()
    (other / "notes.txt").write_text("keep me")
    assert contest_main(["make", "--logs", str(logs), "--out", str(other), "--force"]) == 2
    assert "not a contest kit; refusing to overwrite it even with --force" in capsys.readouterr().err
    assert [p.name for p in other.iterdir()] == ["notes.txt"]


def test_make_failure_leaves_no_half_written_kit(logs: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "kit"
    # artist_i2i needs a catalog: the baseline fails after the train and test sets were cut
    assert contest_main(["make", "--logs", str(logs), "--out", str(out),
                         "--baselines", "top_pop,artist_i2i"]) == 2
    assert "error: baseline artist_i2i: artist_i2i needs the public catalog" in capsys.readouterr().err
    assert [p.name for p in tmp_path.iterdir()] == []


def test_make_names_file_and_line_of_bad_log_records(tmp_path: Path, capsys) -> None:
    d = tmp_path / "logs"
    path = write_jsonl(planted_events(n_users=40, n_tracks=N, seed=4), d)
    lines = path.read_bytes().split(b"\n")
    lines[6] = b'{"message": "next", "user": 3'  # line 7: cut mid-record
    path.write_bytes(b"\n".join(lines))
    assert contest_main(["make", "--logs", str(d), "--out", str(tmp_path / "kit"),
                         "--baselines", ""]) == 0
    err = capsys.readouterr().err
    assert f"warning: {path}: line 7: invalid_json (skipped)" in err
    meta = json.loads((tmp_path / "kit" / "answers" / "answers.json").read_text())
    assert meta["logs"]["bad_lines"] == {"invalid_json": 1}


def test_make_rejects_bad_options(logs: Path, tmp_path: Path, capsys) -> None:
    base = ["make", "--logs", str(logs), "--out", str(tmp_path / "k")]
    for extra, msg in (
        (["--k", "0"], "--k must be positive"),
        (["--public-share", "1"], "--public-share must be in (0, 1)"),
        (["--baselines", "nope"], "--baselines: unknown model 'nope'"),
        (["--split", "tomorrow"], "cannot split the logs by time"),
    ):
        assert contest_main([*base, *extra]) == 2
        assert msg in capsys.readouterr().err
    assert contest_main(["make", "--logs", str(tmp_path / "nowhere"), "--out", str(tmp_path / "k")]) == 2
    assert "nowhere: no such file or directory" in capsys.readouterr().err
    assert not (tmp_path / "k").exists()


def test_make_on_synthetic_multi_worker_logs_keeps_the_arms(tmp_path: Path) -> None:
    spec = SynthSpec(n_users=150, days=2, n_tracks=300, seed=1,
                     experiments={"EXP": ("C", "T1")})
    write_logs(generate(spec), tmp_path / "logs", workers=2, rotate_every=500, gzip_rotated=True)
    out = tmp_path / "kit"
    assert contest_main(["make", "--logs", str(tmp_path / "logs"), "--out", str(out),
                         "--baselines", "top_pop"]) == 0
    train = _lines(out / "public" / "train" / "events-000001.jsonl")
    assert {r["experiments"]["EXP"] for r in train} == {"C", "T1"}
    assert [r["timestamp"] for r in train] == sorted(r["timestamp"] for r in train)
    ans = load_answers(out)
    assert ans.public and ans.private


# ---------------------------------------------------------------------------------- score


def test_ndcg_recall_hand_computed() -> None:
    # relevant {1, 2, 5}; the list hits 1 at rank 2 and 2 at rank 4
    ranked, rel = [3, 1, 9, 2], [1, 2, 5]
    idcg3 = 1 + 1 / math.log2(3) + 1 / math.log2(4)  # three relevant: ideal ranks 1, 2, 3
    nd, rc = ndcg_recall(ranked, rel, 3)
    assert nd == pytest.approx((1 / math.log2(3)) / idcg3) == pytest.approx(0.296082)
    assert rc == pytest.approx(1 / 3)
    nd, rc = ndcg_recall(ranked, rel, 4)
    assert nd == pytest.approx((1 / math.log2(3) + 1 / math.log2(5)) / idcg3)
    assert rc == pytest.approx(2 / 3)
    # more relevant tracks than k: the ideal list is k hits, a perfect list scores 1
    assert ndcg_recall([5, 1], rel, 2) == pytest.approx((1.0, 1.0))
    assert ndcg_recall([], rel, 2) == (0.0, 0.0)
    # a missing user counts as zero in the mean
    part = score_part({1: ranked}, {1: rel, 2: [7]}, 3)
    assert (part.ndcg, part.recall) == pytest.approx((0.296082 / 2, 1 / 6), rel=1e-5)
    assert (part.users, part.missing) == (2, 1)


def _tiny_answers(d: Path) -> Path:
    """A hand-made answers dir: public users 1, 2; private user 3; 10 tracks, k 3."""
    d.mkdir()
    meta = {"format": "botify-contest/1", "k": 3, "n_tracks": 10, "seed": 0,
            "users": {"public": 2, "private": 1}, "split": {"cutoff": "c", "how": "h"},
            "baselines": {}}
    (d / "answers.json").write_text(json.dumps(meta))
    (d / "public.jsonl").write_text('{"user": 1, "tracks": [4]}\n{"user": 2, "tracks": [5, 6]}\n')
    (d / "private.jsonl").write_text('{"user": 3, "tracks": [7, 8, 9, 1]}\n')
    return d


def test_score_hand_computed_and_recorded(tmp_path: Path, capsys) -> None:
    ans = _tiny_answers(tmp_path / "answers")
    sub = tmp_path / "team-a.jsonl"
    # user 1: 4 at rank 2; user 2: 6 at rank 1, 5 missing; user 3: 9 at rank 1, 7 at rank 3
    sub.write_text('{"user": 1, "tracks": [0, 4, 2]}\n{"user": 2, "tracks": [6]}\n'
                   '{"user": 3, "tracks": [9, 0, 7]}\n')
    assert contest_main(["score", "--answers", str(ans), str(sub), "--show-private"]) == 0
    out = capsys.readouterr().out
    l2, l3 = 1 / math.log2(3), 1 / math.log2(4)
    pub_ndcg = ((l2 / 1) + (1 / (1 + l2))) / 2
    pub_recall = (1 + 1 / 2) / 2
    priv_ndcg = (1 + l3) / (1 + l2 + l3)  # three relevant among the first k=3 ideally
    priv_recall = 2 / 3
    assert f"team-a ({hashlib.sha256(sub.read_bytes()).hexdigest()[:12]}): " in out
    assert f"public ndcg@3={pub_ndcg:.4f} recall@3={pub_recall:.4f}" in out
    assert f"private ndcg@3={priv_ndcg:.4f} recall@3={priv_recall:.4f}" in out
    rec = _lines(ans / "scores.jsonl")
    assert len(rec) == 1
    assert rec[0]["submission"] == "team-a" and rec[0]["file"] == "team-a.jsonl"
    assert rec[0]["sha256"] == hashlib.sha256(sub.read_bytes()).hexdigest()
    assert rec[0]["public"] == {"ndcg": pytest.approx(pub_ndcg), "recall": pytest.approx(pub_recall),
                                "users": 2, "missing": 0}
    assert rec[0]["private"]["ndcg"] == pytest.approx(priv_ndcg)
    assert rec[0]["scored_at"].endswith("+00:00")
    score_submission(ans, sub, name="again")
    assert [r["submission"] for r in _lines(ans / "scores.jsonl")] == ["team-a", "again"]
    capsys.readouterr()  # without --show-private the private score is recorded, not printed
    assert contest_main(["score", "--answers", str(ans), str(sub)]) == 0
    assert "private" not in capsys.readouterr().out


def test_missing_users_count_as_zero(tmp_path: Path, capsys) -> None:
    ans = _tiny_answers(tmp_path / "answers")
    sub = tmp_path / "only-one.jsonl"
    sub.write_text('{"user": 1, "tracks": [4]}\n')
    assert contest_main(["score", "--answers", str(ans), str(sub), "--show-private"]) == 0
    out = capsys.readouterr().out
    assert "public ndcg@3=0.5000 recall@3=0.5000; private ndcg@3=0.0000 recall@3=0.0000" in out
    assert "2 test user(s) missing from the submission: scored 0" in out


@pytest.mark.parametrize(
    ("body", "line", "message"),
    [
        ('{"user": 1, "tracks": [4]}\n{"user": 2, "tracks": [5,\n', 2, "not JSON"),
        ('[1, [4]]\n', 1, "wrong shape: expected"),
        ('{"user": 1}\n', 1, "wrong shape: expected"),
        ('{"user": 1, "tracks": [4], "score": 1}\n', 1, "wrong shape: expected"),
        ('{"user": "1", "tracks": [4]}\n', 1, 'wrong shape: "user" must be an integer, got \'1\''),
        ('{"user": 1, "tracks": [true]}\n', 1, 'wrong shape: "tracks" must be a list of integers'),
        ('{"user": 1, "tracks": "4"}\n', 1, 'wrong shape: "tracks" must be a list of integers'),
        ('\n{"user": 42, "tracks": [4]}\n', 2, "unknown user 42: not in the test set"),
        ('{"user": 1, "tracks": [4, 10]}\n', 1, "unknown track 10 (track ids are 0..9)"),
        ('{"user": 1, "tracks": [-1]}\n', 1, "unknown track -1"),
        ('{"user": 1, "tracks": [4]}\n{"user": 2, "tracks": [5]}\n{"user": 1, "tracks": [4]}\n', 3,
         "duplicate user 1 (first on line 1)"),
        ('{"user": 1, "tracks": [4, 3, 4]}\n', 1, "duplicate track 4 in user 1's list"),
        ('{"user": 1, "tracks": [0, 1, 2, 3]}\n', 1, "too many tracks for user 1: 4 > k=3"),
    ],
)
def test_submission_errors_name_file_and_line(tmp_path: Path, capsys, body: str, line: int,
                                              message: str) -> None:
    ans = _tiny_answers(tmp_path / "answers")
    sub = tmp_path / "bad.jsonl"
    sub.write_text(body)
    assert contest_main(["score", "--answers", str(ans), str(sub)]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err and all(x.startswith("error: ") for x in err)
    assert f"error: {sub}:{line}: {message}" in err[0]
    assert not (ans / "scores.jsonl").exists()  # a rejected submission is not recorded


def test_submission_errors_are_collected_and_capped(tmp_path: Path) -> None:
    sub = tmp_path / "many.jsonl"
    sub.write_text('{"user": 1, "tracks": [99]}\n' + '{"user": 5, "tracks": []}\n' * 30)
    with pytest.raises(ContestError) as exc:
        read_submission(sub, users={1, 2}, n_tracks=10, k=3)
    lines = str(exc.value).splitlines()
    assert lines[0] == f"{sub}:1: unknown track 99 (track ids are 0..9)"
    assert lines[1] == f"{sub}:2: unknown user 5: not in the test set"
    assert len(lines) == 21 and lines[-1] == f"{sub}: stopped after 20 errors"
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    with pytest.raises(ContestError, match="empty submission"):
        read_submission(empty, users={1}, n_tracks=10, k=3)
    with pytest.raises(ContestError, match="no such submission file"):
        read_submission(tmp_path / "nope.jsonl", users={1}, n_tracks=10, k=3)


def test_score_needs_a_kit(tmp_path: Path, capsys) -> None:
    sub = tmp_path / "s.jsonl"
    sub.write_text('{"user": 1, "tracks": [4]}\n')
    assert contest_main(["score", "--answers", str(tmp_path), str(sub)]) == 2
    assert "no answers.json; pass the answers directory of a contest kit" in capsys.readouterr().err


# ---------------------------------------------------------------------------------- board


def test_board_shows_baselines_and_scores_private_on_request(kit: Path, tmp_path: Path,
                                                             capsys) -> None:
    ans = kit / "answers"
    test = _lines(kit / "public" / "test.jsonl")
    # a student who found the planted successor rule: only the next track, ranked first
    smart = tmp_path / "smart.jsonl"
    smart.write_text("".join(json.dumps({"user": q["user"], "tracks": [
        int(successor(q["prefix"][-1], N))]}) + "\n" for q in test))
    evil = tmp_path / "evil.jsonl"
    evil.write_text(smart.read_text())
    for path, name in ((smart, "smart"), (smart, "smart"), (evil, "<b>evil</b>")):
        assert contest_main(["score", "--answers", str(ans), str(path), "--name", name]) == 0
    assert len(_lines(ans / "scores.jsonl")) == 3

    assert botify_main(["contest", "board", str(kit)]) == 0  # the kit dir works as well
    page = (ans / "leaderboard.html").read_text()
    capsys.readouterr()
    meta = json.loads((ans / "answers.json").read_text())
    scores = {r["submission"]: r for r in _lines(ans / "scores.jsonl")}
    for row in ("baseline: i2i", "baseline: top_pop", "smart", "&lt;b&gt;evil&lt;/b&gt;"):
        assert row in page
    assert "<b>evil</b>" not in page  # names are escaped
    assert page.count("<tr") == 1 + 4  # header, 2 baselines, smart once (same bytes), evil
    assert f"{scores['smart']['public']['ndcg']:.4f}" in page
    assert "private NDCG@10" not in page and f"{scores['smart']['private']['ndcg']:.4f}" not in page
    assert "same bytes as &lt;b&gt;evil&lt;/b&gt;" in page and "same bytes as smart" in page
    assert f"{meta['users']['public']} public / {meta['users']['private']} private" in page
    # self-contained: no scripts, no links or resources from elsewhere
    for needle in ("<script", "<link", "src=", "http://", "https://"):
        assert needle not in page
    # the kit's own baselines: i2i learns the planted successor, top_pop cannot
    rows = page.split("<tr")
    i2i = next(r for r in rows if "baseline: i2i" in r)
    top = next(r for r in rows if "baseline: top_pop" in r)
    assert rows.index(i2i) < rows.index(top)

    assert contest_main(["board", str(ans)]) == 2
    assert "leaderboard.html: exists; pass --force to overwrite it" in capsys.readouterr().err
    out = tmp_path / "final.html"
    assert contest_main(["board", str(ans), "--reveal-private", "--out", str(out)]) == 0
    final = out.read_text()
    assert "private NDCG@10" in final and "private part revealed" in final
    assert f"{scores['smart']['private']['ndcg']:.4f}" in final
    assert contest_main(["board", str(ans), "--reveal-private", "--out", str(out), "--force"]) == 0


def test_board_names_the_line_of_a_damaged_score_record(tmp_path: Path, capsys) -> None:
    ans = _tiny_answers(tmp_path / "answers")
    (ans / "scores.jsonl").write_text('{"submission": "a", "sha256": "x", "public": {}, '
                                      '"private": {}}\nnot json\n')
    assert contest_main(["board", str(ans)]) == 2
    assert f"error: {ans / 'scores.jsonl'}:1: not a score record" in capsys.readouterr().err
    assert not (ans / "leaderboard.html").exists()


def test_python_m_botify_contest_help() -> None:
    for cmd in (["botify.contest"], ["botify", "contest"]):
        proc = subprocess.run([sys.executable, "-m", *cmd, "make", "--help"], cwd=ROOT,
                              capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, proc.stderr
        assert "--public-share" in proc.stdout


# ------------------------------------------------------------------- a real simulated run


@pytest.mark.slow
def test_kit_from_a_simulated_lab_day(tmp_path: Path, redis_url: str) -> None:
    """Simulator -> HTTP service -> event logs -> kit -> a baseline scored -> board."""
    cmd = [sys.executable, "-m", "botify.lab", "--days", "1", "--sessions", "150",
           "--tracks", "2000", "--users", "300", "--world", str(tmp_path / "world"),
           "--models", "top_pop", "--name", "c", "--runs-dir", str(tmp_path / "runs"),
           "--reports-dir", str(tmp_path / "reports"), "--redis-url", redis_url,
           "--sim-config", str(ROOT / "config" / "env.yml"), "--seed", "7",
           "--realism", "course"]  # many returning test users from few sessions, as when written
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    logs, kit = tmp_path / "runs" / "c" / "logs", tmp_path / "kit"
    catalog = tmp_path / "world" / "catalog.jsonl"
    assert contest_main(["make", "--logs", str(logs), "--out", str(kit), "--catalog", str(catalog),
                         "--seed", "1"]) == 0
    ans = load_answers(kit)
    assert ans.n_tracks == 2000 and len(ans.public) >= 3 and len(ans.private) >= 3
    cutoff = ans.meta["split"]["cutoff_ms"]
    train = sessionize(read_events([kit / "public" / "train"]).events)
    assert int(timestamp_ms(train.sessions["start"]).max()) < cutoff
    assert all(q["timestamps"][0] >= cutoff for q in _lines(kit / "public" / "test.jsonl"))
    rec = score_submission(ans.dir, kit / "public" / "sample_submission.jsonl", name="sample")
    assert rec["answered"] == len(ans.public) + len(ans.private)
    assert contest_main(["board", str(kit), "--reveal-private"]) == 0
    page = (ans.dir / "leaderboard.html").read_text()
    assert "baseline: i2i" in page and "sample" in page
    assert orjson.loads((kit / "public" / "contest.json").read_bytes())["n_tracks"] == 2000
