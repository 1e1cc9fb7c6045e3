"""Vectorised sessionization against a hand example and a row-loop reference."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from botify.analysis.logs import read_events
from botify.analysis.sessions import sessionize
from botify.analysis.synth import SynthSpec, generate, write_logs


def _frame(rows: list[tuple[int, int, str, float]]) -> pd.DataFrame:
    user, ts, msg, time = zip(*rows, strict=True)
    return pd.DataFrame(
        {
            "message": pd.Categorical(msg, categories=["next", "last"]),
            "timestamp": pd.to_datetime(np.array(ts), unit="ms", utc=True),
            "user": np.array(user, np.int64),
            "track": np.arange(len(rows), dtype=np.int64),
            "time": np.array(time),
            "latency": np.full(len(rows), 0.002),
        }
    )


def test_hand_example() -> None:
    ev = _frame(
        [
            (1, 10, "next", 0.5),
            (1, 20, "next", 0.25),
            (1, 30, "last", 1.0),
            (1, 40, "next", 0.1),
            (1, 50, "last", 0.2),
            (1, 60, "next", 0.3),  # unfinished tail
            (2, 5, "last", 0.9),  # one-event session
            (3, 7, "next", 0.4),  # user with only an unfinished session
        ]
    )
    s = sessionize(ev)
    assert s.events["session_id"].tolist() == [0, 0, 0, 1, 1, 2, 3, 4]
    assert s.events["step"].tolist() == [0, 1, 2, 0, 1, 0, 0, 0]
    ss = s.sessions
    assert ss["user"].tolist() == [1, 1, 1, 2, 3]
    assert ss["tracks"].tolist() == [3, 2, 1, 1, 1]
    np.testing.assert_allclose(ss["time"], [1.75, 0.3, 0.3, 0.9, 0.4])
    assert ss["finished"].tolist() == [True, True, False, True, False]
    assert ss["start"].dt.as_unit("ms").array.asi8.tolist() == [10, 40, 60, 5, 7]
    assert ss["end"].dt.as_unit("ms").array.asi8.tolist() == [30, 50, 60, 5, 7]
    np.testing.assert_allclose(ss["latency_sum"], [0.006, 0.004, 0.002, 0.002, 0.002])
    assert s.n_unfinished == 2 and s.n_unfinished_events == 2
    assert s.unfinished["track"].tolist() == [5, 7]


def test_unsorted_input_is_sorted_not_missessionized() -> None:
    ev = _frame([(2, 5, "last", 0.9), (1, 30, "last", 1.0), (1, 10, "next", 0.5)])
    s = sessionize(ev)
    assert s.events["user"].tolist() == [1, 1, 2]
    assert s.sessions["tracks"].tolist() == [2, 1]
    assert ev["user"].tolist() == [2, 1, 1]  # input untouched


def test_empty() -> None:
    s = sessionize(_frame([(1, 1, "next", 0.1)]).iloc[:0])
    assert len(s.sessions) == 0 and len(s.events) == 0 and s.n_unfinished == 0


def _row_loop(events: pd.DataFrame) -> list[tuple[int, int, float]]:
    """Reference: the course-style loop, keeping unfinished tails too."""
    out: list[tuple[int, int, float]] = []
    for _, g in events.groupby("user", sort=True):
        cur = None
        for _, row in g.iterrows():
            if cur is None:
                cur = [int(row["user"]), 0, 0.0]
            cur[1] += 1
            cur[2] += row["time"]
            if row["message"] == "last":
                out.append(tuple(cur))
                cur = None
        if cur is not None:
            out.append(tuple(cur))
    return out


def test_matches_row_loop_on_synthetic_logs(tmp_path: Path) -> None:
    synth = generate(SynthSpec(n_users=150, days=2, seed=11, unfinished_users=0.3))
    write_logs(synth, tmp_path, workers=3, rotate_every=500)
    ev = read_events(tmp_path).events
    s = sessionize(ev)
    ref = _row_loop(ev)
    got = list(
        zip(
            s.sessions["user"].tolist(),
            s.sessions["tracks"].tolist(),
            s.sessions["time"].tolist(),
            strict=True,
        )
    )
    assert len(got) == len(ref)
    for a, b in zip(got, ref, strict=True):
        assert a[:2] == b[:2]
        assert abs(a[2] - b[2]) < 1e-9
    assert s.n_unfinished > 0
    # session ids are global and contiguous; steps restart at 0
    assert (np.diff(s.events["session_id"].to_numpy()) >= 0).all()
    first = s.events.groupby("session_id")["step"].min()
    assert (first == 0).all()
    assert "exp:EXP" in s.sessions.columns


def _lines(rows: list[dict[str, object]]) -> bytes:
    import orjson

    return b"".join(orjson.dumps(r) + b"\n" for r in rows)


def _ev(user: int, ts: int, msg: str, seq: int | None, time: float) -> dict[str, object]:
    return {"message": msg, "timestamp": ts, "user": user, "track": 1, "time": time,
            "latency": 0.001, "recommendation": None if msg == "last" else 2,
            "experiments": {"E": "C"}, "seq": seq, "event_id": f"x-{user}-{seq}-{ts}"}  # fmt: skip


def test_seq_orders_events_two_workers_logged_in_the_same_millisecond(tmp_path: Path) -> None:
    """A 3-track session whose `last` (worker A) shares a millisecond with the next
    session's first `next` (worker B): file order would cut it wrong, seq does not."""
    a, b = tmp_path / "host-1-1", tmp_path / "host-2-1"
    a.mkdir()
    b.mkdir()
    # user 7: next(1) next(2) last(3) | next(4) last(5); events 3 and 4 in the same ms,
    # and worker B's file (event 4) is read before worker A's (event 3) for that tie.
    (b / "events-000001.jsonl").write_bytes(_lines([
        _ev(7, 1000, "next", 1, 0.5), _ev(7, 1003, "next", 4, 0.1), _ev(7, 1005, "last", 5, 0.2),
    ]))  # fmt: skip
    (a / "events-000001.jsonl").write_bytes(_lines([
        _ev(7, 1001, "next", 2, 0.3), _ev(7, 1003, "last", 3, 0.4),
    ]))  # fmt: skip
    ev = read_events([b, a]).events
    assert ev["seq"].tolist() == [1, 2, 4, 3, 5]  # the reader's (time, file) order
    sz = sessionize(ev)
    s = sz.sessions
    assert s["tracks"].tolist() == [3, 2] and s["finished"].all()
    assert np.allclose(s["time"], [1.2, 0.3])
    assert sz.events["seq"].tolist() == [1, 2, 3, 4, 5]
    # without seq (old logs), the same lines keep today's order: the known wrong cut
    # (next, next, next, last | last) instead of (next, next, last | next, last)
    old = ev.drop(columns=["seq", "event_id"])
    assert sessionize(old).sessions["tracks"].tolist() == [4, 1]


def test_seq_restart_after_expiry_and_users_without_seq() -> None:
    ev = _frame(
        [
            (1, 100, "last", 0.2),  # epoch 1: seq 2 read before seq 1 (same ms)
            (1, 100, "next", 0.1),
            (1, 9000, "last", 0.4),  # counter expired: epoch 2 restarts at 1
            (1, 9000, "next", 0.3),
            (2, 50, "last", 0.5),  # user 2 lost its seq (Redis down): time/file order
            (2, 50, "next", 0.6),
        ]
    )
    ev["seq"] = pd.array([2, 1, 2, 1, 1, None], dtype="Int64")
    sz = sessionize(ev)
    got = sz.events[["user", "seq"]].astype(object).values.tolist()
    assert got[:4] == [[1, 1], [1, 2], [1, 1], [1, 2]]
    assert list(sz.events["message"][:4]) == ["next", "last", "next", "last"]
    assert [m for m in sz.events.loc[sz.events["user"] == 2, "message"]] == ["last", "next"]
    s = sz.sessions
    assert s.loc[s["user"] == 1, "tracks"].tolist() == [2, 2]
    assert np.allclose(s.loc[s["user"] == 1, "time"], [0.3, 0.7])
    assert s.loc[s["user"] == 1, "finished"].all()
