"""Event log reader, issue 16 part 5: bad lines as file:line with their text, empty
lines counted, duplicated events found (by event_id, or by an identical line in
logs without one) and dropped once instead of counted twice."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import orjson
import pandas as pd
import pytest
from botify.analysis.ab import analyze
from botify.analysis.logs import read_events
from botify.analysis.synth import SynthSpec, generate, write_logs

GOOD = {"message": "next", "timestamp": 1732900000000, "user": 1, "track": 2, "time": 0.5,
        "latency": 0.001, "recommendation": 3, "experiments": {"EXP": "C"}}


def _ev(i: int, **kw: object) -> bytes:
    return orjson.dumps({**GOOD, "timestamp": GOOD["timestamp"] + i, "track": i, **kw})


@pytest.mark.parametrize("slow", [False, True], ids=["pyarrow-path", "line-path"])
def test_bad_lines_are_file_line_with_text_and_empty_lines_counted(tmp_path: Path, slow: bool) -> None:
    lines = [
        b"",
        _ev(1),
        b"   ",
        _ev(2, message="skip"),  # unknown_message, file line 4 (record 2)
        b"",
        b"",
        _ev(3, time=1.5),  # out_of_range, file line 7 (record 3)
        _ev(4),
    ]
    if slow:
        lines.append(b"{not json")  # forces the line-by-line path: invalid_json at line 9
        lines.append(_ev(5))
    f = tmp_path / "events-000001.jsonl"
    f.write_bytes(b"\n".join(lines) + b"\n")
    r = read_events(tmp_path).report
    assert r.files_slow_path == int(slow)
    assert r.empty_lines == 4  # b"", b"   ", b"", b"": the final newline ends a line, adds none
    assert r.lines == len(lines) - 4
    expect = {(4, "unknown_message"), (7, "out_of_range")} | ({(9, "invalid_json")} if slow else set())
    assert {(e["line"], e["reason"]) for e in r.bad_examples} == expect
    for e in r.bad_examples:
        assert e["where"] == f"{f}:{e['line']}"
        assert e["text"] == lines[e["line"] - 1].decode().strip() and e["text"]
    assert "4 empty line(s)" in r.summary()


def test_empty_lines_at_end_without_newline_and_blank_file(tmp_path: Path) -> None:
    (tmp_path / "events-000001.jsonl").write_bytes(_ev(1) + b"\n\n  ")
    (tmp_path / "events-000002.jsonl").write_bytes(b"\n\n")
    r = read_events(tmp_path).report
    assert r.empty_lines == 2 + 2 and r.lines == 1 and r.events == 1


def test_duplicated_events_by_event_id_dropped_and_reported(tmp_path: Path) -> None:
    s = generate(SynthSpec(n_users=120, days=1, seed=4))
    write_logs(s, tmp_path / "logs", workers=2, rotate_every=300, ids=True)
    clean = read_events(tmp_path / "logs")
    assert clean.report.duplicated == 0
    files = sorted((tmp_path / "logs").rglob("events-*.jsonl"))
    # a shipper re-sent part of a file: 40 of its lines appear again in a new file
    resent = files[1].read_bytes().splitlines()[10:50]
    extra = tmp_path / "logs" / files[0].parent.name / "events-000099.jsonl"
    extra.write_bytes(b"\n".join(resent) + b"\n")
    dup = read_events(tmp_path / "logs")
    r = dup.report
    assert r.duplicate_events == {"event_id": 40} and r.duplicated == 40
    assert r.events == clean.report.events == len(dup.events)
    pd.testing.assert_frame_equal(dup.events, clean.events)
    ex = r.duplicate_examples[0]
    assert ex["by"] == "event_id" and ex["file"] == str(extra) and ex["line"] == 1
    assert ex["same_as"] == f"{files[1]}:11" and ex["text"] == resent[0].decode()
    assert "40 duplicated event(s) dropped (by event_id=40)" in r.summary()
    assert any("same event_id" in w for w in r.warnings)
    # the A/B numbers are those of the clean logs, not shifted by the copies
    a, b = analyze(dup.events, "EXP"), analyze(clean.events, "EXP")
    pd.testing.assert_frame_equal(a.table, b.table)


def test_old_logs_duplicates_by_identical_line_only(tmp_path: Path) -> None:
    d = tmp_path / "w"
    d.mkdir()
    same_ms_other_event = _ev(1, track=77)  # same user and millisecond, another event
    (d / "events-000001.jsonl").write_bytes(b"\n".join([_ev(1), same_ms_other_event, _ev(2)]) + b"\n")
    # the first line again (different spacing only), and the third one again
    again = orjson.loads(_ev(1))
    (d / "events-000002.jsonl").write_bytes(
        b"\n".join([_ev(3), orjson.dumps(again) + b"  ", _ev(2)]) + b"\n"
    )
    le = read_events(tmp_path)
    r = le.report
    assert r.duplicate_events == {"line": 2}
    assert len(le.events) == 4 and sorted(le.events["track"].tolist()) == [1, 2, 3, 77]
    where = sorted((e["where"], e["same_as"], e["by"]) for e in r.duplicate_examples)
    assert where == [
        (f"{d / 'events-000002.jsonl'}:2", f"{d / 'events-000001.jsonl'}:1", "line"),
        (f"{d / 'events-000002.jsonl'}:3", f"{d / 'events-000001.jsonl'}:3", "line"),
    ]


def test_distinct_events_sharing_user_and_millisecond_are_kept(tmp_path: Path) -> None:
    rows = [_ev(0, track=t, time=0.1 * t) for t in range(5)]
    (tmp_path / "events-000001.jsonl").write_bytes(b"\n".join(rows) + b"\n")
    le = read_events(tmp_path)
    assert le.report.duplicated == 0 and len(le.events) == 5
    np.testing.assert_array_equal(le.events["track"].to_numpy(), np.arange(5))


def test_mixed_ids_and_no_ids(tmp_path: Path) -> None:
    a = _ev(1, event_id="x1", seq=1)
    b = _ev(2)
    (tmp_path / "events-000001.jsonl").write_bytes(a + b"\n" + b + b"\n")
    x1_again = orjson.dumps({"event_id": "x1", **orjson.loads(_ev(1)), "seq": 1})  # other key order
    (tmp_path / "events-000002.jsonl").write_bytes(
        x1_again + b"\n" + b + b"\n" + _ev(3, event_id="x3") + b"\n"
    )
    r = read_events(tmp_path).report
    # x1 again (its text differs, the id says it is the same event) and b again
    assert r.duplicate_events == {"event_id": 1, "line": 1} and r.events == 3
    assert {e["by"] for e in r.duplicate_examples} == {"event_id", "line"}


def test_same_user_and_millisecond_different_ids_are_kept(tmp_path: Path) -> None:
    # the race of issue 16 part 1: two workers log two events of a user in one millisecond
    rows = [_ev(0, event_id="a", track=1), _ev(0, event_id="b", track=1), _ev(0, event_id="a", track=1)]
    (tmp_path / "events-000001.jsonl").write_bytes(b"\n".join(rows) + b"\n")
    le = read_events(tmp_path)
    assert le.report.duplicate_events == {"event_id": 1} and len(le.events) == 2
    assert le.report.duplicate_examples[0]["line"] == 3
    assert le.report.duplicate_examples[0]["same_as"].endswith("events-000001.jsonl:1")
