"""Event log reader: formats, rotation, gzip, duplicates and bad lines."""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import numpy as np
import orjson
import pandas as pd
import pytest
from botify.analysis.logs import read_events
from botify.analysis.synth import SynthSpec, generate, write_logs


def _synth(seed: int = 3, n_users: int = 300) -> object:
    return generate(
        SynthSpec(
            n_users=n_users,
            days=2,
            seed=seed,
            experiments={"EXP": ("C", "T1"), "OTHER": ("C", "T1", "T2")},
        )
    )


def _expected(synth) -> pd.DataFrame:
    df = synth.frame.sort_values(["user", "timestamp"], kind="stable").reset_index(drop=True)
    return df


def _check_same(ev: pd.DataFrame, synth) -> None:
    exp = _expected(synth)
    assert len(ev) == len(exp)
    # ties on (user, timestamp) are impossible in synth data, so order is fully determined
    np.testing.assert_array_equal(ev["user"].to_numpy(), exp["user"].to_numpy())
    ms = ev["timestamp"].dt.as_unit("ms").array.asi8
    np.testing.assert_array_equal(ms, exp["timestamp"].to_numpy())
    np.testing.assert_array_equal(ev["track"].to_numpy(), exp["track"].to_numpy())
    np.testing.assert_allclose(ev["time"].to_numpy(), exp["time"].to_numpy())
    np.testing.assert_allclose(ev["latency"].to_numpy(), exp["latency"].to_numpy())
    assert (ev["message"].astype(str).to_numpy() == exp["message"].to_numpy()).all()
    rec = ev["recommendation"]
    assert rec.isna().to_numpy().tolist() == (exp["message"] == "last").tolist()
    arms = synth.arms["EXP"][ev["user"].to_numpy()]
    assert (ev["exp:EXP"].astype(str).to_numpy() == arms).all()


def test_reads_workers_rotation_gzip_with_extras(tmp_path: Path) -> None:
    s = _synth()
    paths = write_logs(s, tmp_path, workers=3, rotate_every=700, gzip_rotated=True)
    assert any(p.name.endswith(".gz") for p in paths)
    (tmp_path / paths[0].parent.name / "rejected-000001.jsonl").write_text('{"junk": 1}\n')
    (tmp_path / "notes.txt").write_text("not an event\n")
    le = read_events(tmp_path)
    r = le.report
    assert r.files_found == len(paths) and r.files_read == len(paths)
    assert r.bad == 0 and r.duplicates == 0 and r.files_slow_path == 0
    assert r.events == r.lines == len(s.frame)
    ev = le.events
    assert str(ev["message"].dtype) == "category"
    assert str(ev["timestamp"].dtype) == "datetime64[ms, UTC]"
    assert ev["user"].dtype == np.int64 and ev["track"].dtype == np.int64
    assert ev["time"].dtype == np.float64 and ev["latency"].dtype == np.float64
    assert str(ev["recommendation"].dtype) == "Int64"
    assert sorted(le.experiments) == ["EXP", "OTHER"]
    assert set(ev["recommender"].astype(str).unique()) == {"rec_C", "rec_T1"}
    _check_same(ev, s)


def test_plain_compat_and_iso_timestamps(tmp_path: Path) -> None:
    s = _synth(seed=5, n_users=120)
    write_logs(s, tmp_path / "ms", workers=1, extras=False)
    write_logs(s, tmp_path / "iso", workers=2, extras=False, timestamps="iso")
    a = read_events(tmp_path / "ms")
    b = read_events(tmp_path / "iso")
    assert a.report.bad == 0 and b.report.bad == 0
    _check_same(a.events, s)
    _check_same(b.events, s)
    assert a.events["recommender"].isna().all()
    # the course's loader reads the same files
    f = next((tmp_path / "ms").rglob("events-*.jsonl"))
    course = pd.read_json(f, lines=True)
    assert len(course) == len(a.events)


def test_bad_lines_counted_by_reason_and_skipped(tmp_path: Path) -> None:
    good = {
        "message": "next",
        "timestamp": 1732900000123,
        "user": 1,
        "track": 2,
        "time": 0.5,
        "latency": 0.001,
        "recommendation": 3,
        "experiments": {"EXP": "C"},
    }
    lines = [orjson.dumps(good).decode()]
    lines.append(
        orjson.dumps({**good, "timestamp": 1732900000124, "surprise": [1, {"x": 2}]}).decode()
    )
    lines.append("this is not json")  # invalid_json
    lines.append("[1, 2, 3]")  # not_object
    lines.append(orjson.dumps({**good, "user": "seven"}).decode())  # wrong_type
    lines.append(orjson.dumps({**good, "user": 1.5}).decode())  # wrong_type
    lines.append(orjson.dumps({**good, "time": True}).decode())  # wrong_type
    lines.append(orjson.dumps({**good, "experiments": {"EXP": 1}}).decode())  # wrong_type
    lines.append(orjson.dumps({k: v for k, v in good.items() if k != "track"}).decode())  # missing
    lines.append(orjson.dumps({**good, "message": "skip"}).decode())  # unknown_message
    lines.append(orjson.dumps({**good, "timestamp": "yesterday"}).decode())  # bad_timestamp
    lines.append(orjson.dumps({**good, "time": 1.7}).decode())  # out_of_range
    lines.append(
        orjson.dumps(
            {**good, "message": "last", "timestamp": 1732900000200, "recommendation": None}
        ).decode()
    )
    lines.append('{"message": "next", "timestamp": 17329000')  # truncated (no newline at EOF)
    d = tmp_path / "w1"
    d.mkdir()
    (d / "events-000001.jsonl").write_text("\n".join(lines))
    le = read_events(tmp_path)
    r = le.report
    assert r.bad_lines == {
        "invalid_json": 1,
        "not_object": 1,
        "wrong_type": 4,
        "missing_field": 1,
        "unknown_message": 1,
        "bad_timestamp": 1,
        "out_of_range": 1,
        "truncated": 1,
    }
    assert r.lines == len(lines)
    assert r.events == 3 and len(le.events) == 3
    assert le.events["message"].astype(str).tolist() == ["next", "next", "last"]
    assert r.files_slow_path == 1
    assert any("bad line" in w for w in r.warnings)
    assert r.bad_examples and {e["reason"] for e in r.bad_examples} >= {"invalid_json", "truncated"}


def test_fast_path_validation_without_parse_errors(tmp_path: Path) -> None:
    # Every line is valid JSON with consistent types, so pyarrow parses the file;
    # the semantic checks must still run.
    rows = [
        {"message": "next", "timestamp": 1, "user": 1, "track": 1, "time": 0.2, "latency": 0.1},
        {"message": "jump", "timestamp": 2, "user": 1, "track": 1, "time": 0.2, "latency": 0.1},
        {"message": "last", "timestamp": 3, "user": 1, "track": 1, "time": -0.5, "latency": 0.1},
        {"message": "last", "timestamp": 4, "user": 1, "time": 0.5, "latency": 0.1},
        {"message": "last", "timestamp": 5, "user": 1, "track": 9, "time": 1, "latency": 0.1},
    ]
    (tmp_path / "events-000001.jsonl").write_bytes(
        b"\n".join(orjson.dumps(r) for r in rows) + b"\n"
    )
    le = read_events(tmp_path)
    assert le.report.files_slow_path == 0
    assert le.report.bad_lines == {"unknown_message": 1, "out_of_range": 1, "missing_field": 1}
    assert le.events["track"].tolist() == [1, 9]
    assert le.events["time"].tolist() == [0.2, 1.0]


def test_duplicate_file_counted_once(tmp_path: Path) -> None:
    s = _synth(seed=7, n_users=80)
    paths = write_logs(s, tmp_path, workers=1, rotate_every=10**9)
    assert len(paths) == 1
    # the rotator gzipped a file but the plain copy survived; and someone copied a dir
    with gzip.open(str(paths[0]) + ".gz", "wb") as fh:
        fh.write(paths[0].read_bytes())
    shutil.copytree(paths[0].parent, tmp_path / "copy-of-worker")
    le = read_events(tmp_path)
    assert le.report.files_found == 4
    assert le.report.duplicates == 3 and le.report.files_read == 1
    assert len(le.events) == len(s.frame)
    assert any("same content" in w for w in le.report.warnings)


def test_damaged_gzip_recovers_prefix(tmp_path: Path) -> None:
    rows = [
        {"message": "next", "timestamp": i, "user": 1, "track": i, "time": 0.5, "latency": 0.1}
        for i in range(2000)
    ]
    blob = gzip.compress(b"\n".join(orjson.dumps(r) for r in rows) + b"\n")
    (tmp_path / "events-000001.jsonl.gz").write_bytes(blob[: len(blob) * 2 // 3])
    le = read_events(tmp_path)
    assert any("damaged gzip" in w for w in le.report.warnings)
    assert 0 < len(le.events) < 2000
    assert le.report.bad_lines.get("truncated", 0) <= 1


def test_order_user_time_then_file_order(tmp_path: Path) -> None:
    def line(ts: int, user: int, track: int, msg: str = "next") -> bytes:
        return orjson.dumps(
            {
                "message": msg,
                "timestamp": ts,
                "user": user,
                "track": track,
                "time": 0.1,
                "latency": 0.0,
            }
        )

    d = tmp_path / "w"
    d.mkdir()
    (d / "events-000002.jsonl").write_bytes(b"\n".join([line(10, 1, 3), line(5, 2, 9)]) + b"\n")
    (d / "events-000001.jsonl").write_bytes(
        b"\n".join([line(10, 1, 1), line(10, 1, 2), line(1, 1, 0)])
    )
    ev = read_events(tmp_path).events
    assert ev["user"].tolist() == [1, 1, 1, 1, 2]
    assert ev["track"].tolist() == [0, 1, 2, 3, 9]


def test_empty_and_missing(tmp_path: Path) -> None:
    le = read_events(tmp_path)
    assert len(le.events) == 0 and le.report.files_found == 0
    assert {"message", "timestamp", "user", "track", "time"} <= set(le.events.columns)
    (tmp_path / "events-000001.jsonl").write_text("")
    assert len(read_events(tmp_path).events) == 0
    with pytest.raises(FileNotFoundError):
        read_events(tmp_path / "nope")


def test_sequence_of_paths_and_explicit_file(tmp_path: Path) -> None:
    s = _synth(seed=9, n_users=60)
    write_logs(s, tmp_path / "a", workers=2)
    f = tmp_path / "data.json"  # the course's file name, given explicitly
    f.write_bytes(next((tmp_path / "a").rglob("events-000001.jsonl")).read_bytes())
    le = read_events([tmp_path / "a", str(f)])
    assert le.report.duplicates == 1
    _check_same(le.events, s)


def test_seq_and_event_id_pass_through_and_old_logs_unchanged(tmp_path: Path) -> None:
    s = _synth(seed=11, n_users=90)
    write_logs(s, tmp_path / "new", workers=2, rotate_every=400, ids=True)
    write_logs(s, tmp_path / "old", workers=2, rotate_every=400)
    new, old = read_events(tmp_path / "new"), read_events(tmp_path / "old")
    # logs written before the fields existed: the columns are there, all null (docs/analysis.md)
    assert old.events["seq"].isna().all() and old.events["event_id"].isna().all()
    _check_same(new.events, s)
    ev = new.events
    assert str(ev["seq"].dtype) == "Int64"
    # seq counts each user's events from 1 in time order: the sorted frame shows 1, 2, 3, ...
    expect = ev.groupby("user").cumcount().to_numpy() + 1
    np.testing.assert_array_equal(ev["seq"].to_numpy(dtype=np.int64), expect)
    assert ev["event_id"].str.len().eq(32).all() and ev["event_id"].is_unique
    pd.testing.assert_frame_equal(ev.drop(columns=["seq", "event_id"]), old.events.drop(columns=["seq", "event_id"]))


def test_seq_null_and_mixed_old_new_files(tmp_path: Path) -> None:
    base = {"timestamp": 1, "user": 1, "track": 1, "time": 0.5, "latency": 0.1}
    (tmp_path / "events-000001.jsonl").write_bytes(
        orjson.dumps({**base, "message": "next"}) + b"\n"
    )
    (tmp_path / "events-000002.jsonl").write_bytes(
        orjson.dumps({**base, "message": "last", "timestamp": 2, "seq": None, "event_id": "b"})
        + b"\n"
        + orjson.dumps({**base, "message": "next", "timestamp": 3, "seq": 7, "event_id": "c"})
        + b"\n"
    )
    ev = read_events(tmp_path).events
    assert ev["seq"].isna().tolist() == [True, True, False] and int(ev["seq"].iloc[2]) == 7
    assert ev["event_id"].isna().tolist() == [True, False, False]


@pytest.mark.parametrize("span", [50, 70_000, 2**33])
def test_sort_matches_lexsort_for_any_user_range(span: int) -> None:
    from botify.analysis.logs import _user_time_order

    rng = np.random.default_rng(span)
    n = 5000
    user = rng.integers(-span // 2, span // 2, n) if span > 100 else rng.integers(0, span, n)
    ts = np.concatenate([np.sort(rng.integers(0, 300, n // 2)), np.sort(rng.integers(0, 300, n - n // 2))])
    order = _user_time_order(user, ts)
    assert order is not None
    np.testing.assert_array_equal(order, np.lexsort((ts, user)))
    assert _user_time_order(user[order], ts[order]) is None
