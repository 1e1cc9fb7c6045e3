"""Shared plumbing for the trainers: the training data view and vectorised top-K."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

import numpy as np
import pandas as pd

REQUIRED_COLUMNS = ("user", "track", "time", "session_id", "step")


@dataclass
class TrainData:
    """Played tracks in session order, as flat numpy arrays.

    Built from sessionized events (one row per event; ``track`` is the track just
    played and ``time`` how much of it was listened). Rows are sorted by
    (session, step) so that consecutive rows of a session are consecutive tracks.
    """

    user: np.ndarray  # int64
    track: np.ndarray  # int64
    time: np.ndarray  # float64, clipped to [0, 1]
    session: np.ndarray  # int64 dense session index 0..S-1
    timestamp: np.ndarray | None  # int64 ms, or None when unknown
    n_tracks: int

    @classmethod
    def from_events(cls, events: pd.DataFrame, n_tracks: int | None = None) -> TrainData:
        """Check the columns, drop unusable rows, sort by session and step."""
        missing = [c for c in REQUIRED_COLUMNS if c not in events.columns]
        if missing:
            raise ValueError(f"events lack columns {missing} (sessionize them first)")
        ev = events.loc[events["track"].notna() & events["user"].notna(), list(events.columns)]
        track = ev["track"].to_numpy(dtype=np.int64)
        if len(track) and track.min() < 0:
            raise ValueError("negative track ids in events")
        seen_max = int(track.max()) + 1 if len(track) else 0
        if n_tracks is None:
            n_tracks = seen_max
        elif seen_max > n_tracks:
            # Logs may mention ids the catalog does not have (a stale catalog); never
            # recommend them: drop those rows rather than fail or index out of range.
            keep = track < n_tracks
            ev = ev.loc[keep]
        sess_codes, _ = pd.factorize(ev["session_id"], sort=True)
        order = np.lexsort((ev["step"].to_numpy(), sess_codes))
        ts = None
        if "timestamp" in ev.columns:
            col = ev["timestamp"]
            if pd.api.types.is_datetime64_any_dtype(col):
                ts = col.dt.as_unit("ms").astype("int64").to_numpy()
            else:
                ts = col.to_numpy(dtype=np.int64)
            ts = ts[order]
        t = ev["time"].to_numpy(dtype=np.float64, na_value=0.0)
        return cls(
            user=ev["user"].to_numpy(dtype=np.int64)[order],
            track=ev["track"].to_numpy(dtype=np.int64)[order],
            time=np.clip(np.nan_to_num(t[order]), 0.0, 1.0),
            session=sess_codes[order].astype(np.int64),
            timestamp=ts,
            n_tracks=int(n_tracks),
        )

    def __len__(self) -> int:
        return len(self.track)

    def pairs(self, offset: int) -> tuple[np.ndarray, np.ndarray]:
        """Row indices (i, i + offset) that lie in the same session."""
        if offset <= 0 or offset >= len(self.track):
            e = np.empty(0, dtype=np.int64)
            return e, e
        i = np.arange(len(self.track) - offset, dtype=np.int64)
        same = self.session[:-offset] == self.session[offset:]
        i = i[same]
        return i, i + offset

    def session_bounds(self) -> np.ndarray:
        """Start offsets of each session plus the end: sessions are rows [b[s], b[s+1])."""
        if len(self.session) == 0:
            return np.zeros(1, dtype=np.int64)
        change = np.flatnonzero(np.diff(self.session)) + 1
        return np.concatenate(([0], change, [len(self.session)])).astype(np.int64)

    def listen_time_per_track(self) -> np.ndarray:
        """Total listen time per track id (length n_tracks)."""
        return np.bincount(self.track, weights=self.time, minlength=self.n_tracks)


def topk_by_row(
    rows: np.ndarray,
    cols: np.ndarray,
    scores: np.ndarray,
    k: int,
) -> dict[int, list[int]]:
    """Top-k columns per row from a sparse (row, col, score) list, ties broken by col id.

    Fully vectorised (one lexsort) so it scales to tens of millions of entries; the
    deterministic tie-break is what makes equal inputs give byte-equal artifacts.
    """
    if k <= 0:
        raise ValueError("k must be positive")
    rows = np.asarray(rows, dtype=np.int64)
    cols = np.asarray(cols, dtype=np.int64)
    scores = np.asarray(scores, dtype=np.float64)
    keep = scores > 0
    rows, cols, scores = rows[keep], cols[keep], scores[keep]
    if len(rows) == 0:
        return {}
    order = np.lexsort((cols, -scores, rows))
    rows, cols = rows[order], cols[order]
    starts = np.flatnonzero(np.r_[True, rows[1:] != rows[:-1]])
    counts = np.diff(np.r_[starts, len(rows)])
    rank = np.arange(len(rows)) - np.repeat(starts, counts)
    sel = rank < k
    rows, cols = rows[sel], cols[sel]
    starts = np.flatnonzero(np.r_[True, rows[1:] != rows[:-1]])
    keys = rows[starts].tolist()
    chunks = np.split(cols, starts[1:])
    return {k_: c.tolist() for k_, c in zip(keys, chunks, strict=True)}


def topk_dense(scores: np.ndarray, k: int, exclude: np.ndarray | None = None) -> np.ndarray:
    """Top-k column indices of each row of a dense score matrix, ties broken by index.

    ``exclude`` (bool, same shape) masks out entries such as the item itself.
    Returns an int64 array (rows, min(k, n_cols)).
    """
    s = np.array(scores, dtype=np.float64, copy=True)
    if exclude is not None:
        s[exclude] = -np.inf
    n = s.shape[1]
    kk = min(k, n)
    if kk < n:
        # argpartition is deterministic for equal inputs; a tie exactly at the cut is
        # resolved by it (not by index), which keeps runs reproducible.
        cand = np.sort(np.argpartition(-s, kk - 1, axis=1)[:, :kk], axis=1)
    else:
        cand = np.broadcast_to(np.arange(n), s.shape)
    cs = np.take_along_axis(s, cand, axis=1)
    order = np.argsort(-cs, axis=1, kind="stable")  # stable: equal scores keep id order
    return np.take_along_axis(cand, order, axis=1).astype(np.int64)


def params_dict(params: Any) -> dict[str, Any]:
    """A dataclass of parameters as a JSON-ready dict (for the meta sidecar)."""
    return {f.name: getattr(params, f.name) for f in fields(params)}
