"""Issue 6, point 7: A/B analysis and training on damaged logs, against the same logs undamaged.

Clean logs come from botify.analysis.synth (the service's log format: two worker
dirs, rotated files). The damaged copy adds what real runs produce: a line torn in
the middle of a file, a last line cut by a crash, lines with unknown fields or that
are not events at all, a worker directory collected twice, a gzipped copy of a
file beside the original and 30 events delivered twice. The reference is the clean logs minus exactly the one
event the torn line destroyed, i.e. what is valid in the damaged copy. Analysis
and training of the damaged copy must equal those of the reference, number for
number, and say what they skipped. Empty arms must give a warning, not a crash
or a silently different table.
"""

from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
from botify.analysis import synth
from botify.analysis.ab import AbResult, analyze, analyze_logs
from botify.analysis.logs import read_events

EXTRA_FIELDS = {"client": "sim/1.0", "trace": {"id": "ab12", "hops": [1, 2]}, "x_ratio": 1.5, "x_null": None}


@pytest.fixture(scope="module")
def logs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """clean, damaged and reference log dirs (see the module docstring)."""
    base = tmp_path_factory.mktemp("offline")
    spec = synth.SynthSpec(n_users=400, days=2, experiments={"EXP": ("C", "T1")}, effects={"T1": 1.15}, seed=11)
    clean = base / "clean"
    synth.write_logs(synth.generate(spec), clean, workers=2, rotate_every=2000, seed=1)
    workers = sorted(p for p in clean.iterdir() if p.is_dir())
    assert len(workers) == 2 and all(len(list(w.glob("events-*.jsonl"))) >= 2 for w in workers)

    damaged, reference = base / "damaged", base / "reference"
    shutil.copytree(clean, damaged)
    shutil.copytree(clean, reference)
    w0, w1 = (sorted(p for p in damaged.iterdir() if p.is_dir()))
    f0 = sorted(w0.glob("events-*.jsonl"))[0]

    # 1. a line torn in the middle of a file (a writer that lost the rest of a line)
    lines = f0.read_bytes().splitlines(keepends=True)
    torn = len(lines) // 2
    lines[torn] = lines[torn][: len(lines[torn]) // 2] + b"\n"
    f0.write_bytes(b"".join(lines))
    ref_f0 = reference / f0.relative_to(damaged)
    ref_lines = ref_f0.read_bytes().splitlines(keepends=True)
    del ref_lines[torn]
    ref_f0.write_bytes(b"".join(ref_lines))

    # 2. the last line of a worker's newest file cut by a crash (no newline)
    last1 = sorted(w1.glob("events-*.jsonl"))[-1]
    with last1.open("ab") as fh:
        fh.write(b'{"message": "next", "timestamp": 17329000001')

    # 3. unknown fields on every line of a file (must be read exactly as without them),
    #    plus lines that are JSON but not events
    f1 = sorted(w1.glob("events-*.jsonl"))[0]
    objs = [json.loads(line) for line in f1.read_text().splitlines()]
    text = "".join(json.dumps({**o, **EXTRA_FIELDS}) + "\n" for o in objs)
    text += json.dumps({"hello": "world"}) + "\n" + json.dumps(
        {"message": "rejected", "timestamp": objs[0]["timestamp"], "user": 1, "track": 2, "time": 0.5, "status": 400}
    ) + "\n"
    f1.write_text(text)

    # 4. duplicated files: a worker dir collected twice, and a gzipped copy next to its original
    shutil.copytree(w0, damaged / "copied-again" / w0.name)
    g = sorted(w1.glob("events-*.jsonl"))[1]
    g.with_name(g.name + ".gz").write_bytes(gzip.compress(g.read_bytes()))

    # 5. events delivered twice: 30 lines of a file re-sent into a new file (old-format
    #    logs, no event_id: recognised as identical lines), with an empty line between
    resent = g.read_bytes().splitlines(keepends=True)[100:130]
    (w1 / "events-000090.jsonl").write_bytes(b"".join(resent[:15]) + b"\n" + b"".join(resent[15:]))
    return {"clean": clean, "damaged": damaged, "reference": reference}


def _same_result(a: AbResult, b: AbResult) -> None:
    assert a.arms == b.arms and a.users_per_arm == b.users_per_arm
    assert a.unfinished_sessions == b.unfinished_sessions
    pd.testing.assert_frame_equal(a.table, b.table)
    pd.testing.assert_frame_equal(a.ratios, b.ratios)
    assert a.srm.to_dict() == b.srm.to_dict()


def test_reader_counts_every_kind_of_damage(logs: dict[str, Path]) -> None:
    ref = read_events(logs["reference"])
    dmg = read_events(logs["damaged"])
    r = dmg.report
    assert r.bad_lines == {"invalid_json": 1, "truncated": 1, "missing_field": 1, "unknown_message": 1}, r.bad_lines
    n_copied = len(list((logs["damaged"] / "copied-again").rglob("events-*.jsonl")))
    assert r.duplicates == n_copied + 1, r.duplicate_files
    assert r.duplicate_events == {"line": 30} and r.empty_lines == 1
    assert all(e["text"] and ":" in e["where"] for e in r.bad_examples + r.duplicate_examples)
    assert r.events == ref.report.events == len(ref.events) == len(dmg.events)
    assert ref.report.bad == 0 and ref.report.duplicates == 0
    # the warnings say what was skipped and why, in words an operator can act on
    text = "\n".join(r.warnings)
    assert "same content as" in text and "skipped 4 bad line(s)" in text, text
    assert "4 bad line(s) skipped" in r.summary() and "duplicate file(s) skipped" in r.summary()
    # the valid events are the same events, extra fields dropped
    cols = ["message", "timestamp", "user", "track", "time", "latency", "recommendation", "exp:EXP"]
    key = ["user", "timestamp", "message", "track"]
    pd.testing.assert_frame_equal(
        dmg.events[cols].sort_values(key, kind="stable").reset_index(drop=True),
        ref.events[cols].sort_values(key, kind="stable").reset_index(drop=True),
    )


def test_ab_on_damaged_logs_equals_ab_on_what_is_valid(logs: dict[str, Path]) -> None:
    dmg = analyze_logs(logs["damaged"], "EXP")
    ref = analyze_logs(logs["reference"], "EXP")
    _same_result(dmg, ref)
    assert dmg.warnings and dmg.warnings[0].startswith("logs: "), dmg.warnings
    assert "bad line(s) skipped" in dmg.warnings[0] and "duplicate file(s) skipped" in dmg.warnings[0]
    assert not any(w.startswith("logs: ") for w in ref.warnings)
    # the one destroyed event really changed something (the comparison is not vacuous)
    clean = analyze_logs(logs["clean"], "EXP")
    assert not clean.table.equals(ref.table) or clean.unfinished_sessions != ref.unfinished_sessions


def test_ab_cli_shows_the_damage(logs: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    from botify.cli.ab import main

    assert main(["--logs", str(logs["damaged"]), "--experiment", "EXP"]) == 0
    out = capsys.readouterr()
    text = " ".join((out.out + out.err).split())  # rich wraps the long summary line
    assert "4 bad line(s) skipped" in text and "duplicate file(s) skipped" in text, text[-3000:]
    assert "30 duplicated event(s) dropped (by line=30)" in text, text[-3000:]


def test_empty_arms_warn_and_leave_the_other_arms_alone(logs: dict[str, Path]) -> None:
    events = read_events(logs["reference"]).events
    base = analyze(events, "EXP")
    # a configured arm that got no user at all
    declared = analyze(events, "EXP", shares={"C": 1 / 3, "T1": 1 / 3, "T2": 1 / 3})
    assert "arm T2 has no users" in declared.warnings, declared.warnings
    assert declared.srm.mismatch  # an arm with a third of the traffic and no user: the split is broken
    t1 = declared.table.loc[declared.table["treatment"] == "T1"].reset_index(drop=True)
    pd.testing.assert_frame_equal(t1, base.table)
    # an arm whose users never finished a session: a warning and NaN, never a made-up number
    ev = events.copy()
    t1_users = ev["exp:EXP"] == "T1"
    ev["exp:EXP"] = ev["exp:EXP"].cat.add_categories(["T2"])
    lone = ev.loc[t1_users, "user"].unique()[:5]
    moved = ev["user"].isin(lone)
    ev.loc[moved, "exp:EXP"] = "T2"
    ev = ev.loc[~(moved & (ev["message"] == "last"))]
    res = analyze(ev, "EXP")
    assert any("arm T2 has 0 user(s) with a finished session" in w for w in res.warnings), res.warnings
    t2 = res.table.loc[res.table["treatment"] == "T2"]
    # the course's rows: such users count with time 0 and sessions 0, and only the three
    # mean_* metrics (undefined without a finished session) are NaN, never significant
    means = t2[t2["metric"].str.startswith("mean_")]
    assert len(means) and means["treatment_mean"].isna().all() and not means["significant"].any()
    rest = t2[t2["metric"].isin(["time", "sessions"])]
    assert len(rest) and (rest["treatment_mean"] == 0).all()
    # an experiment where only the control has users: a clear error, not a table
    from botify.analysis.ab import AbError

    only_c = events.loc[events["exp:EXP"] == "C"]
    with pytest.raises(AbError, match="no treatment arm with users"):
        analyze(only_c, "EXP")


@pytest.mark.parametrize("model", ["i2i", "top_pop"])
def test_training_on_damaged_logs_equals_training_on_what_is_valid(
    model: str, logs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from botify.cli.train import main

    outs = {}
    for name in ("damaged", "reference"):
        out = tmp_path / f"{name}.jsonl"
        code = main([model, "--logs", str(logs[name]), "--out", str(out), "--no-eval", "--seed", "3"])
        captured = capsys.readouterr()
        assert code == 0, captured.err[-3000:]
        outs[name] = (out.read_bytes(), captured.err)
    assert outs["damaged"][0] == outs["reference"][0], "same valid events must give the same artifact"
    assert outs["damaged"][0].strip(), "empty artifact"
    err = " ".join(outs["damaged"][1].split())
    assert "same content as" in err and "bad line(s)" in err, outs["damaged"][1][-3000:]
    assert "bad line(s)" not in outs["reference"][1]
