"""Spark engine parity: the same logs through both engines give the same numbers.

One local[2] SparkSession for the whole module (JVM start is the expensive
part), small synthetic COMPAT logs written to disk the way the service writes
them (two workers, rotation, gzipped rotated files, a duplicated file, bad
lines). Every comparison is exact except floating-point sums, which are
compared at 1e-9 relative (Spark adds in a different order).
"""

from __future__ import annotations

import gzip
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("pyspark", reason="pyspark not installed (pip install 'botify[spark]')")
from botify.spark.session import java_available

if not java_available():
    pytest.skip("Java not found (pyspark needs OpenJDK 17+)", allow_module_level=True)

from botify.analysis import ab as eab
from botify.analysis import synth
from botify.analysis.logs import read_events
from botify.analysis.sessions import sessionize
from botify.cli import spark as scli
from botify.spark import ab as sab
from botify.spark import logs as slogs
from botify.spark import sessions as ssess
from botify.spark import train as strain
from botify.spark.session import get_spark
from botify.store.artifacts import load_artifact, read_meta
from botify.training.models import i2i, top_pop
from botify.training.models.base import TrainData

pytestmark = [
    pytest.mark.spark,
    # pyspark 4.x warns about pandas 3 on every toPandas(); not our code's problem
    pytest.mark.filterwarnings("ignore::FutureWarning:pyspark.*"),
    pytest.mark.filterwarnings("ignore:The copy keyword is deprecated"),
]

RTOL = 1e-9
N_TRACKS = 200

BAD_LINES = "\n".join(
    [
        '{"message":"next"}',  # missing_field
        "[1, 2]",  # not_object
        '{"a":',  # invalid_json
        "not json at all",  # invalid_json
        "",  # blank: not a record
        '{"message":"bye","timestamp":1,"user":1,"track":1,"time":0.5}',  # unknown_message
        '{"message":"next","timestamp":1,"user":1,"track":1,"time":1.5}',  # out_of_range
        '{"message":"next","timestamp":1,"user":1,"track":1,"time":0.5,"latency":-1}',
        '{"message":"next","timestamp":"yesterday","user":1,"track":1,"time":0.5}',
        '{"message":"next","timestamp":1,"user":"1","track":1,"time":0.5}',  # wrong_type
        '{"message":"next","timestamp":1,"user":1.5,"track":1,"time":0.5}',  # wrong_type
        "{'message':'next','timestamp':1,'user':1,'track':1,'time':0.5}",  # invalid_json
        '{"message":"next","timestamp":1,"user":1,"track":1,"time":NaN}',  # invalid_json
        '{"message": "ne',  # truncated (last line, no newline)
    ]
)


@pytest.fixture(scope="module")
def spark():
    s = get_spark("local[2]", "botify-tests", shuffle_partitions=4)
    yield s
    s.catalog.clearCache()
    s.stop()  # give the JVM's memory back to the rest of the suite


def _write_run(d: Path, seed: int, start_ms: int, *, iso: bool = False) -> None:
    spec = synth.SynthSpec(
        n_users=250,
        seed=seed,
        n_tracks=N_TRACKS,
        mean_tracks=8.0,
        experiments={"EXP": ("C", "T1", "T2"), "OTHER": ("C", "T1")},
        effects={"T1": 1.3},
        start_ms=start_ms,
    )
    sy = synth.generate(spec)
    synth.write_logs(
        sy,
        d,
        workers=2,
        rotate_every=900,
        gzip_rotated=True,
        timestamps="iso" if iso else "ms",
        seed=seed,
    )


@pytest.fixture(scope="module")
def logs(tmp_path_factory) -> Path:
    """A damaged run: gz rotation, a plain copy of a gz file, a file of bad lines,
    an empty file, a rejected-*.jsonl that is not an event file, and some events
    without the experiment (they must be dropped by the A/B, kept by training)."""
    d = tmp_path_factory.mktemp("spark_logs")
    _write_run(d, seed=3, start_ms=synth.START_MS + synth.DAY_MS)
    gz = sorted(d.rglob("events-*.jsonl.gz"))[0]
    (gz.parent / gz.name[:-3]).write_bytes(gzip.decompress(gz.read_bytes()))
    w0 = sorted(p for p in d.iterdir() if p.is_dir())[0]
    (w0 / "events-000090.jsonl").write_text(BAD_LINES)
    (w0 / "events-000091.jsonl").write_text("")
    (w0 / "rejected-000001.jsonl").write_text('{"message":"next","user":1}\n')
    no_exp = [
        {"message": "next", "timestamp": synth.START_MS + synth.DAY_MS + 1000 * i, "user": 7,
         "track": 5 + i, "time": 0.5, "latency": 0.001, "recommendation": 3}
        for i in range(5)
    ]
    (w0 / "events-000092.jsonl").write_text("".join(json.dumps(o) + "\n" for o in no_exp))
    return d


@pytest.fixture(scope="module")
def previous_logs(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("spark_prev")
    _write_run(d, seed=4, start_ms=synth.START_MS)
    return d


@pytest.fixture(scope="module")
def both(spark, logs):
    return read_events(logs), slogs.read_events(spark, logs)


def _report_view(r) -> dict:
    return {
        "files_found": r.files_found,
        "files_read": r.files_read,
        "duplicates": r.duplicates,
        "lines": r.lines,
        "events": r.events,
        "bad_lines": dict(sorted(r.bad_lines.items())),
    }


def test_load_report_parity(both):
    emb, spk = both
    assert _report_view(spk.report) == _report_view(emb.report)
    assert spk.report.bad_lines["wrong_type"] == 2
    assert spk.report.bad_lines["truncated"] == 1
    assert spk.report.duplicates == 1
    assert [Path(d["file"]).name for d in spk.report.duplicate_files] == [
        Path(d["file"]).name for d in emb.report.duplicate_files
    ]
    assert spk.experiments == emb.experiments == ["EXP", "OTHER"]
    assert spk.report.bad_examples and spk.report.warnings


def test_events_parity(both):
    emb, spk = both
    e = emb.events
    s = slogs.to_pandas_events(spk.events)
    assert len(s) == len(e)
    for c in ("user", "track", "timestamp"):
        assert np.array_equal(s[c].to_numpy(), e[c].to_numpy()), c
    for c in ("time", "latency"):
        np.testing.assert_array_equal(s[c].to_numpy(), e[c].to_numpy())
    assert (s["message"].astype(str).to_numpy() == e["message"].astype(str).to_numpy()).all()
    for c in ("exp:EXP", "exp:OTHER"):
        a = s[c].astype(object).where(s[c].notna(), None).tolist()
        b = e[c].astype(object).where(e[c].notna(), None).tolist()
        assert a == b


def test_iso_timestamps_parity(spark, tmp_path):
    _write_run(tmp_path, seed=5, start_ms=synth.START_MS + 123, iso=True)
    emb = read_events(tmp_path)
    spk = slogs.read_events(spark, tmp_path)
    assert spk.report.events == emb.report.events > 0 and spk.report.bad == emb.report.bad == 0
    s = slogs.to_pandas_events(spk.events)
    assert np.array_equal(s["timestamp"].to_numpy(), emb.events["timestamp"].to_numpy())
    spk.unpersist()


def test_missing_path(spark, tmp_path):
    with pytest.raises(FileNotFoundError):
        slogs.read_events(spark, tmp_path / "nope")


def test_sessions_parity(both):
    emb, spk = both
    es = sessionize(emb.events).sessions
    sdf = ssess.sessions(ssess.sessionize(spk.events)).cache()
    ss = ssess.session_ids(sdf).orderBy("session_id").toPandas()
    assert len(ss) == len(es)
    summ = ssess.summary(sdf)
    sdf.unpersist()
    assert summ["unfinished"] == int((~es["finished"]).sum()) > 0
    assert summ["sessions"] == len(es)
    assert np.array_equal(ss["session_id"].to_numpy(), es["session_id"].to_numpy())
    assert np.array_equal(ss["user"].to_numpy(), es["user"].to_numpy())
    assert np.array_equal(ss["tracks"].to_numpy(), es["tracks"].to_numpy())
    assert np.array_equal(ss["latency_n"].to_numpy(), es["latency_n"].to_numpy())
    assert np.array_equal(ss["finished"].to_numpy(), es["finished"].to_numpy())
    start_ms = es["start"].dt.as_unit("ms").astype("int64").to_numpy()
    end_ms = es["end"].dt.as_unit("ms").astype("int64").to_numpy()
    assert np.array_equal(ss["start"].to_numpy(), start_ms)
    assert np.array_equal(ss["end"].to_numpy(), end_ms)
    np.testing.assert_allclose(ss["time"], es["time"], rtol=RTOL)
    np.testing.assert_allclose(ss["latency_sum"], es["latency_sum"], rtol=RTOL)


def _frames_equal(a: pd.DataFrame, b: pd.DataFrame) -> None:
    a = a.reset_index(drop=True)
    b = b.reset_index(drop=True)
    assert list(a.columns) == list(b.columns)
    assert len(a) == len(b)
    for c in a.columns:
        x, y = a[c], b[c]
        if pd.api.types.is_float_dtype(x) or pd.api.types.is_float_dtype(y):
            np.testing.assert_allclose(
                x.to_numpy(np.float64), y.to_numpy(np.float64), rtol=RTOL, atol=0, err_msg=c
            )
        elif pd.api.types.is_datetime64_any_dtype(x):
            assert (x.to_numpy() == y.to_numpy()).all(), c
        else:
            assert x.astype(object).tolist() == y.astype(object).tolist(), c


def test_ab_parity(both, spark, previous_logs):
    emb, spk = both
    prev_emb = read_events(previous_logs)
    prev_spk = slogs.read_events(spark, previous_logs)
    kw = {"mde_target": 0.05, "shares": {"C": 0.4, "T1": 0.3, "T2": 0.3}}
    re_ = eab.analyze(emb.events, "EXP", previous_events=prev_emb.events, **kw)
    rs = sab.analyze(spk, "EXP", previous=prev_spk, **kw)
    prev_spk.unpersist()
    assert rs.arms == re_.arms == ["C", "T1", "T2"]
    assert rs.users_per_arm == re_.users_per_arm
    assert rs.unfinished_sessions == re_.unfinished_sessions > 0
    assert rs.srm == re_.srm
    assert rs.warnings == re_.warnings
    # row order of the per-user table is not part of the result: compare sorted
    _frames_equal(
        rs.user_level.sort_values(["arm", "user"]), re_.user_level.sort_values(["arm", "user"])
    )
    _frames_equal(rs.table, re_.table)
    _frames_equal(rs.ratios, re_.ratios)
    _frames_equal(rs.session_lengths, re_.session_lengths)
    _frames_equal(rs.power, re_.power)
    assert rs.cuped is not None and re_.cuped is not None
    _frames_equal(rs.cuped, re_.cuped)
    assert [x["time"] for x in rs.timeline.to_dict("records")] == [
        x["time"] for x in re_.timeline.to_dict("records")
    ]
    _frames_equal(rs.timeline.drop(columns="time"), re_.timeline.drop(columns="time"))
    # the effect planted by the synthesiser (T1 sessions 30% longer) is seen by both
    row = rs.table.set_index(["treatment", "metric"]).loc[("T1", "mean_tracks_per_session")]
    assert row["significant"] and row["effect"] > 0


def test_ab_errors_match(both):
    emb, spk = both
    for exp, control in (("NOPE", "C"), ("EXP", "X")):
        with pytest.raises(eab.AbError) as a:
            eab.analyze(emb.events, exp, control)
        with pytest.raises(eab.AbError) as b:
            sab.analyze(spk, exp, control)
        assert str(a.value) == str(b.value)


def _assert_lists_match(spark_lists, emb_lists, scores) -> int:
    """Equal lists, except that two neighbours whose exact scores agree to 1e-12 may
    swap (summation order); returns how many such swaps were seen."""
    assert set(spark_lists) == set(emb_lists)
    swaps = 0
    for key, a in emb_lists.items():
        b = spark_lists[key]
        assert len(a) == len(b), key
        if a == b:
            continue
        sa = np.array([scores[(key, x)] for x in a])
        sb = np.array([scores.get((key, x), -1.0) for x in b])
        np.testing.assert_allclose(sa, sb, rtol=1e-12)
        swaps += 1
    return swaps


@pytest.mark.parametrize(
    ("n_tracks", "params"),
    [
        (N_TRACKS, {}),
        (N_TRACKS - 40, {"window": 3, "alpha": 0.3, "decay": 0.8, "min_time": 0.2,
                         "min_support": 0.3}),
    ],
)
def test_train_parity(both, n_tracks, params):
    emb, spk = both
    data = TrainData.from_events(sessionize(emb.events).events, n_tracks)
    sz = ssess.sessionize(spk.events)
    rows = strain.train_rows(sz, n_tracks).cache()

    tp = top_pop.Params(min_time=params.get("min_time", 0.0))
    a_e = top_pop.fit(data, tp, k=50, seed=0)
    a_s = strain.fit_top_pop(rows, tp, k=50)
    assert a_s.kind == "top" and len(a_e.top) == 50
    pop = top_pop.scores(data, tp)
    _assert_lists_match({0: a_s.top}, {0: a_e.top}, {(0, t): pop[t] for t in range(n_tracks)})

    ip = i2i.Params(**params)
    i_e = i2i.fit(data, ip, k=15, seed=0)
    i_s = strain.fit_i2i(rows, ip, k=15)
    assert len(i_e.lists) > n_tracks // 2
    sc = strain.i2i_scores(rows, ip).toPandas()
    scores = {(int(a), int(b)): float(s) for a, b, s in sc[["a", "b", "score"]].to_numpy()}
    swaps = _assert_lists_match(i_s.lists, i_e.lists, scores)
    assert swaps <= 2
    assert all(max(v) < n_tracks for v in i_s.lists.values())
    rows.unpersist()


def test_cli_train_and_ab(both, logs, tmp_path, capsys):
    out = tmp_path / "i2i.jsonl"
    rc = scli.main(["train", "i2i", "--logs", str(logs), "--out", str(out), "--k", "10",
                    "--spark-master", "local[2]", "--quiet"])
    assert rc == 0, capsys.readouterr().err
    art = load_artifact(out)
    meta = read_meta(out)
    assert art.kind == "i2i" and meta["engine"] == "spark" and meta["model"] == "i2i"
    emb, _ = both
    data = TrainData.from_events(sessionize(emb.events).events, int(emb.events["track"].max()) + 1)
    ref = i2i.fit(data, i2i.Params(), k=10, seed=0)
    same = sum(art.lists[k] == ref.lists[k] for k in ref.lists)
    assert same >= len(ref.lists) - 2

    # the same through the entry point's --engine flag (python -m botify.train ... --engine spark)
    from botify.cli.train import main as train_main

    out2 = tmp_path / "i2i-engine.jsonl"
    rc = train_main(["i2i", "--logs", str(logs), "--out", str(out2), "--k", "10",
                     "--engine", "spark", "--spark-master", "local[2]", "--quiet"])
    assert rc == 0 and read_meta(out2)["engine"] == "spark"
    assert load_artifact(out2).lists == art.lists

    rc = scli.main(["train", "mf", "--logs", str(logs), "--out", str(tmp_path / "x.jsonl")])
    assert rc == 2 and "not available with --engine spark" in capsys.readouterr().err

    js = tmp_path / "ab.json"
    rc = scli.main(["ab", "--logs", str(logs), "--experiment", "EXP", "--json", str(js),
                    "--quiet"])
    assert rc == 0, capsys.readouterr().err
    res = json.loads(js.read_text())
    from botify.cli.ab import main as ab_main

    js2 = tmp_path / "ab-engine.json"
    assert ab_main(["--logs", str(logs), "--experiment", "EXP", "--json", str(js2), "--quiet",
                    "--engine", "spark", "--spark-master", "local[2]"]) == 0
    assert json.loads(js2.read_text())["effects"] == res["effects"]
    ref_ab = eab.analyze(emb.events, "EXP")
    got = {(r["treatment"], r["metric"]): r["effect"] for r in res["effects"]}
    for r in ref_ab.table.to_dict("records"):
        assert math.isclose(got[(r["treatment"], r["metric"])], r["effect"], rel_tol=RTOL)
    assert res["logs"]["bad"] == emb.report.bad

    rc = scli.main(["ab", "--logs", str(logs), "--quiet"])
    assert rc == 2 and "--experiment is required" in capsys.readouterr().err



def _s(v: object) -> str | None:
    return v if isinstance(v, str) else None  # pandas turns None into NaN


def _write_seq_run(d: Path, seed: int = 12) -> pd.DataFrame:
    """A run as the service now logs it: seq and event_id on every event, fallbacks on some
    answers, a config snapshot beside the events. Same-millisecond (last, next) pairs of a
    user are written with the later event in the file read first; some users' counters
    restart (seq 1 again), and one user lost seq on one event (Redis down).
    Returns the events in their true order (by user, then seq position)."""
    spec = synth.SynthSpec(n_users=200, seed=seed, n_tracks=N_TRACKS,
                           experiments={"EXP": ("C", "T1", "T2")}, effects={"T1": 1.3})  # fmt: skip
    sy = synth.generate(spec)
    f = sy.frame.sort_values(["user", "timestamp"], kind="stable").reset_index(drop=True)
    rng = np.random.default_rng(seed)
    f["seq"] = f.groupby("user").cumcount() + 1
    # a counter restart for a third of the users, at their second session
    is_last = (f["message"] == "last").to_numpy()
    sess = pd.Series(is_last).groupby(f["user"]).cumsum().shift(fill_value=0).to_numpy()
    sess = np.where(f["user"].to_numpy() != np.r_[-1, f["user"].to_numpy()[:-1]], 0, sess)
    restart_users = set(rng.choice(f["user"].unique(), 60, replace=False).tolist())
    for u in restart_users:
        m = (f["user"] == u).to_numpy() & (sess >= 1)
        if m.any():
            f.loc[m, "seq"] = np.arange(1, int(m.sum()) + 1)
    # same millisecond: the first event of a session takes the previous `last`'s timestamp
    worker = np.zeros(len(f), np.int64)
    u_arr, ts = f["user"].to_numpy(), f["timestamp"].to_numpy().copy()
    tied = set()
    for i in np.flatnonzero(is_last[:-1] & (u_arr[1:] == u_arr[:-1]))[:150]:
        if int(u_arr[i]) in restart_users:
            continue  # a counter restarts only after the user was idle, never within a ms
        ts[i + 1] = ts[i]
        worker[i + 1], worker[i] = 0, 1  # the later event in the directory read first
        tied.add(int(u_arr[i]))
    f["timestamp"] = ts
    arm = sy.arms["EXP"]
    f["arm"] = arm[f["user"].to_numpy()]
    nxt = (f["message"] == "next").to_numpy()
    fb = nxt & (f["arm"] == "T2").to_numpy() & (rng.random(len(f)) < 0.05)
    f["recommender"] = np.where(nxt, "rec_" + f["arm"], None)
    f.loc[fb, "recommender"] = "random"
    f["fallback"] = np.where(fb, "error", None)
    f["seq"] = f["seq"].astype(object)
    # without seq a user keeps time/file order: pick one whose order that gets right
    lost_user = next(u for u in f["user"].unique() if int(u) not in tied)
    lost = f.index[f["user"] == lost_user][1]
    f.loc[lost, "seq"] = None
    for w in (0, 1):
        wd = d / f"host-{100 + w}-1"
        wd.mkdir(parents=True, exist_ok=True)
        rows = f.loc[worker == w]
        lines = [
            json.dumps({"message": r.message, "timestamp": int(r.timestamp), "user": int(r.user),
                        "track": int(r.track), "time": float(r.time), "latency": float(r.latency),
                        "recommendation": None if r.message == "last" else int(r.recommendation),
                        "experiments": {"EXP": str(r.arm)}, "recommender": _s(r.recommender),
                        "fallback": _s(r.fallback), "seq": None if pd.isna(r.seq) else int(r.seq),
                        "event_id": f"p{w}-{i}"})
            for i, r in enumerate(rows.itertuples(index=False))
        ]  # fmt: skip
        (wd / "events-000001.jsonl").write_text("\n".join(lines) + "\n")
        snap = {"timestamp": 1, "experiments": [
            {"name": "EXP", "arms": {"C": "a", "T1": "b", "T2": "c"}, "shares": None}]}  # fmt: skip
        (wd / "experiments.jsonl").write_text(json.dumps(snap) + "\n")
    return f


def test_seq_order_fallbacks_and_configured_shares_parity(spark, tmp_path):
    truth = _write_seq_run(tmp_path)
    emb = read_events(tmp_path)
    spk = slogs.read_events(spark, tmp_path)
    # sessions: both engines cut them where the true (seq) order does
    es = sessionize(emb.events).sessions
    sdf = ssess.sessions(ssess.sessionize(spk.events)).cache()
    ss = ssess.session_ids(sdf).orderBy("session_id").toPandas()
    sdf.unpersist()
    true_s = sessionize(truth.assign(
        timestamp=pd.to_datetime(np.arange(len(truth)), unit="ms", utc=True),
        user=truth["user"].astype(np.int64), seq=None,
    )).sessions  # fmt: skip
    assert es["tracks"].tolist() == true_s["tracks"].tolist()
    np.testing.assert_allclose(es["time"], true_s["time"], rtol=RTOL)
    old = sessionize(emb.events.drop(columns=["seq"])).sessions
    assert len(old) != len(es) or old["tracks"].tolist() != es["tracks"].tolist()
    assert np.array_equal(ss["tracks"].to_numpy(), es["tracks"].to_numpy())
    assert np.array_equal(ss["finished"].to_numpy(), es["finished"].to_numpy())
    np.testing.assert_allclose(ss["time"], es["time"], rtol=RTOL)
    # the A/B with the new fields: serving health, configured shares, verdict
    re_ = eab.analyze_logs(tmp_path, "EXP")
    rs = sab.analyze_logs(spark, tmp_path, "EXP")
    spk.unpersist()
    assert re_.configured is not None and rs.configured == re_.configured
    assert rs.srm == re_.srm
    _frames_equal(rs.health, re_.health)
    t2 = re_.health.set_index("arm").loc["T2"]
    assert t2["fallback_recommender"] == "random" and t2["fallback_reason"] == "error"
    assert 0.03 < t2["fallback_share"] < 0.07
    _frames_equal(rs.table, re_.table)
    _frames_equal(rs.ratios, re_.ratios)
    _frames_equal(rs.timeline.drop(columns="time"), re_.timeline.drop(columns="time"))
    vs, ve = rs.verdict.to_dict(), re_.verdict.to_dict()
    for k in ("decision", "arm", "reasons", "warnings", "gate"):
        assert vs[k] == ve[k], k
    for a, av in ve["arms"].items():
        assert vs["arms"][a]["decision"] == av["decision"]
        assert vs["arms"][a]["reasons"] == av["reasons"]
        for k in ("effect", "lower", "upper", "p_holm"):
            assert vs["arms"][a][k] == pytest.approx(av[k], rel=RTOL), (a, k)
    assert re_.verdict.arms["T2"].decision == "invalid"
