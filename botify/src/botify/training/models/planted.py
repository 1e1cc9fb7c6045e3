"""Event logs with a planted, known answer: what each trainer must recover.

Used by tests and benches (not by training). Tracks ``0..n_tracks-1``; every session
is a walk where, with probability ``follow``, the next track is the planted successor
``succ(t) = (a * t + b) % n_tracks`` and is listened to well (time in [0.7, 1]);
otherwise a uniformly random track that is mostly skipped (time in [0, 0.3]). Track
popularity is skewed by drawing first tracks from a Zipf-like law, so ``top_pop``
has a non-trivial ranking.
"""

from __future__ import annotations

from math import gcd
from pathlib import Path

import numpy as np
import orjson
import pandas as pd

START_MS = 1_732_838_400_000  # 2024-11-29T00:00:00Z
DAY_MS = 86_400_000


def successor(t: np.ndarray | int, n_tracks: int, a: int = 7, b: int = 3) -> np.ndarray | int:
    """The planted next track of ``t``."""
    return (a * t + b) % n_tracks


def planted_events(
    *,
    n_users: int = 200,
    n_tracks: int = 60,
    sessions_per_user: int = 3,
    session_len: int = 8,
    follow: float = 0.8,
    days: int = 2,
    seed: int = 0,
    a: int = 7,
    b: int = 3,
) -> pd.DataFrame:
    """Events in the columns of botify.analysis.logs.read_events (message, timestamp, user, track, time, latency,
    recommendation), sorted by (user, timestamp); sessions end with a ``last`` event."""
    if gcd(a, n_tracks) != 1:
        raise ValueError("a must be coprime with n_tracks so that succ is a permutation")
    rng = np.random.default_rng(seed)
    n_s = n_users * sessions_per_user
    zipf = 1.0 / np.arange(1, n_tracks + 1) ** 0.8
    first = rng.choice(n_tracks, size=n_s, p=zipf / zipf.sum())
    tracks = np.empty((n_s, session_len), dtype=np.int64)
    times = np.empty((n_s, session_len))
    tracks[:, 0] = first
    times[:, 0] = rng.uniform(0.7, 1.0, n_s)
    for s in range(1, session_len):
        fol = rng.random(n_s) < follow
        rand = rng.integers(0, n_tracks, n_s)
        tracks[:, s] = np.where(fol, successor(tracks[:, s - 1], n_tracks, a, b), rand)
        times[:, s] = np.where(fol, rng.uniform(0.7, 1.0, n_s), rng.uniform(0.0, 0.3, n_s))
    user = np.repeat(np.arange(n_users), sessions_per_user)
    k = np.tile(np.arange(sessions_per_user), n_users)
    # sessions of a user spread evenly over the days, steps 3 minutes apart
    day = (k * days) // sessions_per_user
    start = START_MS + day * DAY_MS + (user * 37_000) % (DAY_MS // 2) + k * 3_600_000 % DAY_MS
    ts = start[:, None] + np.arange(session_len)[None, :] * 180_000
    msg = np.full((n_s, session_len), "next", dtype=object)
    msg[:, -1] = "last"
    rec = np.empty((n_s, session_len), dtype=object)
    rec[:, :-1] = tracks[:, 1:]
    rec[:, -1] = None
    df = pd.DataFrame(
        {
            "message": msg.ravel(),
            "timestamp": pd.to_datetime(ts.ravel(), unit="ms", utc=True),
            "user": np.repeat(user, session_len),
            "track": tracks.ravel(),
            "time": np.round(times.ravel(), 4),
            "latency": 0.001,
            "recommendation": rec.ravel(),
        }
    )
    return df.sort_values(["user", "timestamp"], kind="stable").reset_index(drop=True)


def write_jsonl(events: pd.DataFrame, logdir: str | Path, worker: str = "planted-1-0") -> Path:
    """Write events as one service worker's ``events-000001.jsonl`` (timestamps in ms)."""
    d = Path(logdir) / worker
    d.mkdir(parents=True, exist_ok=True)
    ts = events["timestamp"].dt.as_unit("ms").astype("int64").to_numpy()
    lines = [
        orjson.dumps({
            "message": m, "timestamp": int(t), "user": int(u), "track": int(tr),
            "time": float(tm), "latency": float(lt),
            "recommendation": None if r is None or pd.isna(r) else int(r), "experiments": {},
        })
        for m, t, u, tr, tm, lt, r in zip(
            events["message"], ts, events["user"], events["track"], events["time"],
            events["latency"], events["recommendation"], strict=True,
        )
    ]
    path = d / "events-000001.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path
