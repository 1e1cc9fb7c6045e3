"""Vectorised sessionization: a session is a user's run of events up to and including `last`.

The course sessionizes with a Python loop over rows per user (seconds per 100k
events); here session boundaries are found with array comparisons on events
already sorted by (user, timestamp), and session aggregates with
`np.add.reduceat`, so the cost is a few passes over contiguous arrays.

Order within a user: by the event's `seq` when every event of that user
carries one (the service takes it from Redis: one counter per user, so the
order is exact even when two workers log the same millisecond), else by
timestamp and file order as before (course logs, or Redis down). The counter
expires with the session state and restarts at 1, so `seq` orders events
within an *epoch* that starts at each `seq == 1`; epochs are ordered by time.

A user's events after their final `last` form an *unfinished* session: the
service stopped (or the day ended) mid-session. It keeps a session id so that
training can still use those interactions, but it is flagged and the course's
A/B method leaves it out.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from botify.analysis.logs import EXP_PREFIX, timestamp_ms


@dataclass
class Sessionized:
    """Events with `session_id`/`step`, one row per session, and the unfinished tails."""

    events: pd.DataFrame
    sessions: pd.DataFrame

    @property
    def unfinished(self) -> pd.DataFrame:
        """Events of sessions with no `last` yet (each user's tail), with their session_id."""
        ids = self.sessions.loc[~self.sessions["finished"].to_numpy(), "session_id"].to_numpy()
        mask = np.isin(self.events["session_id"].to_numpy(), ids)
        return self.events.loc[mask]

    @property
    def n_unfinished(self) -> int:
        """Number of unfinished sessions (at most one per user)."""
        return int((~self.sessions["finished"].to_numpy()).sum())

    @property
    def n_unfinished_events(self) -> int:
        return int(self.sessions.loc[~self.sessions["finished"], "tracks"].sum())

    def finished_sessions(self) -> pd.DataFrame:
        return self.sessions.loc[self.sessions["finished"].to_numpy()]


def _is_sorted(user: np.ndarray, ts: np.ndarray) -> bool:
    if len(user) < 2:
        return True
    du = np.diff(user)
    if (du < 0).any():
        return False
    same = du == 0
    return not (np.diff(ts)[same] < 0).any()


def event_order(
    user: np.ndarray, ts: np.ndarray, seq: np.ndarray | None = None, has_seq: np.ndarray | None = None
) -> np.ndarray | None:
    """Permutation putting every user's events in the order they happened; None if already so.

    Rows in equal (user, timestamp) keep their input order (file order) unless
    the user's events all carry `seq`, which then decides (see module docstring).
    """
    n = len(user)
    order: np.ndarray | None = None if _is_sorted(user, ts) else np.lexsort((ts, user))
    if seq is None or has_seq is None or n == 0 or not has_seq.any():
        return order
    idx = np.arange(n) if order is None else order
    u, t, s, h = user[idx], ts[idx], seq[idx], has_seq[idx]
    ustart = np.r_[True, u[1:] != u[:-1]]
    run = np.cumsum(ustart) - 1
    ok = (np.bincount(run, weights=~h, minlength=int(run[-1]) + 1) == 0)[run]
    sv = np.where(ok, s, 0)
    # same-millisecond ties by seq first, so that a counter restart (seq == 1)
    # is seen before the events that follow it
    o1 = np.lexsort((sv, t, u))
    u, s, ok, ustart = u[o1], sv[o1], ok[o1], ustart[o1]
    ustart = np.r_[True, u[1:] != u[:-1]]
    epoch = np.cumsum(ustart | (ok & (s == 1)))
    pos = np.arange(n)
    o2 = np.lexsort((np.where(ok, s, pos), np.where(ok, epoch, 0), u))
    final = idx[o1][o2]
    return None if np.array_equal(final, np.arange(n)) else final


def session_starts(user: np.ndarray, is_last: np.ndarray) -> np.ndarray:
    """Boolean mask of rows opening a session (input sorted by user, then time)."""
    n = len(user)
    starts = np.empty(n, bool)
    if n == 0:
        return starts
    starts[0] = True
    starts[1:] = (user[1:] != user[:-1]) | is_last[:-1]
    return starts


def sessionize(events: pd.DataFrame) -> Sessionized:
    """Assign sessions to events in each user's order (`event_order`).

    Input sorted by (user, timestamp) as `read_events` returns it costs one
    check; anything else is sorted (stably) first rather than silently
    mis-sessionized. Returns a new frame; the input is not modified.
    """
    ev = events
    user = ev["user"].to_numpy(dtype=np.int64)
    ts = timestamp_ms(ev["timestamp"])
    seq = has_seq = None
    if "seq" in ev.columns:
        sc = ev["seq"]
        has_seq = sc.notna().to_numpy(dtype=bool)
        if has_seq.any():
            seq = sc.to_numpy(dtype=np.int64, na_value=0)
    order = event_order(user, ts, seq, has_seq)
    if order is not None:
        ev = ev.iloc[order]
        user = user[order]
        ts = ts[order]
    ev = ev.reset_index(drop=True)
    n = len(ev)
    msg = ev["message"]
    is_last = (msg == "last").to_numpy(dtype=bool) if n else np.zeros(0, bool)
    starts = session_starts(user, is_last)
    sid = np.cumsum(starts, dtype=np.int64) - 1
    start_idx = np.flatnonzero(starts)
    step = np.arange(n, dtype=np.int64) - start_idx[sid] if n else np.zeros(0, np.int64)
    ev["session_id"] = sid
    ev["step"] = step

    n_s = len(start_idx)
    end_idx = np.empty(n_s, np.int64)
    if n_s:
        end_idx[:-1] = start_idx[1:] - 1
        end_idx[-1] = n - 1
    tracks = end_idx - start_idx + 1
    time = ev["time"].to_numpy(dtype=np.float64)
    lat = ev["latency"].to_numpy(dtype=np.float64)
    lat_ok = ~np.isnan(lat)
    if n_s:
        time_sum = np.add.reduceat(time, start_idx)
        lat_sum = np.add.reduceat(np.where(lat_ok, lat, 0.0), start_idx)
        lat_n = np.add.reduceat(lat_ok.astype(np.int64), start_idx)
    else:
        time_sum = lat_sum = np.zeros(0)
        lat_n = np.zeros(0, np.int64)
    tsv = ev["timestamp"]
    sessions = pd.DataFrame(
        {
            "user": user[start_idx],
            "session_id": np.arange(n_s, dtype=np.int64),
            "start": tsv.iloc[start_idx].reset_index(drop=True),
            "end": tsv.iloc[end_idx].reset_index(drop=True),
            "tracks": tracks,
            "time": time_sum,
            "latency_sum": lat_sum,
            "latency_n": lat_n,
            "finished": is_last[end_idx] if n_s else np.zeros(0, bool),
        }
    )
    for c in ev.columns:
        if c.startswith(EXP_PREFIX):
            sessions[c] = ev[c].iloc[start_idx].reset_index(drop=True)
    return Sessionized(events=ev, sessions=sessions)


__all__ = ["Sessionized", "event_order", "session_starts", "sessionize"]
