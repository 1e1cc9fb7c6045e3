"""Synthesise event logs in the COMPAT format (docs/interfaces.md section 2) for tests and benches.

The generator is a toy, not the simulator: users have a persistent activity
level (so a user's previous-day metric predicts today's, which is what CUPED
exploits), sessions have geometric length whose mean an arm can scale (a real,
known effect), and arms come from the service's MurmurHash3 assignment. Every
draw comes from one seeded `np.random.Generator`, so a seed fixes the output.
"""

from __future__ import annotations

import gzip
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import mmh3
import numpy as np
import orjson
import pandas as pd

DAY_MS = 86_400_000
START_MS = 1_732_838_400_000  # 2024-11-29T00:00:00Z


def assign_arm(user: int, experiment: str, arms: Sequence[str]) -> str:
    """The service's equal-share assignment: mmh3 x86 32-bit, seed 0, signed, Python modulo."""
    return arms[mmh3.hash(str(user) + experiment) % len(arms)]


@dataclass
class SynthSpec:
    """Knobs of a synthetic run. `effects` scales the mean session length per arm of the
    first experiment (1.0 = no effect)."""

    n_users: int = 1000
    days: int = 1
    sessions_per_day: float = 2.0
    mean_tracks: float = 8.0
    n_tracks: int = 5000
    experiments: Mapping[str, Sequence[str]] = field(default_factory=lambda: {"EXP": ("C", "T1")})
    effects: Mapping[str, float] = field(default_factory=dict)
    time_effects: Mapping[str, float] = field(default_factory=dict)
    unfinished_users: float = 0.05
    seed: int = 0
    start_ms: int = START_MS


@dataclass
class SynthEvents:
    """Generated events (COMPAT columns, plus `worker` index) in global time order."""

    frame: pd.DataFrame
    arms: dict[str, np.ndarray]  # experiment -> arm per user id (index = user)
    spec: SynthSpec


def generate(spec: SynthSpec) -> SynthEvents:
    """Events for `spec`, vectorised (a million events in well under a second)."""
    rng = np.random.default_rng(spec.seed)
    n_u = spec.n_users
    users = np.arange(n_u, dtype=np.int64)
    exp_names = list(spec.experiments)
    arms = {
        name: np.array([assign_arm(int(u), name, list(spec.experiments[name])) for u in users])
        for name in exp_names
    }
    activity = rng.gamma(2.0, 0.5, n_u)  # persistent per user: drives CUPED's correlation
    taste = rng.beta(4.0, 2.0, n_u)  # per-user mean listen fraction
    len_mult = np.ones(n_u)
    time_mult = np.ones(n_u)
    if exp_names:
        serving = arms[exp_names[0]]
        for arm, k in spec.effects.items():
            len_mult[serving == arm] = k
        for arm, k in spec.time_effects.items():
            time_mult[serving == arm] = k

    # Sessions: per user per day a Poisson count.
    n_sess_ud = rng.poisson(spec.sessions_per_day * activity[:, None], (n_u, spec.days))
    s_user = np.repeat(np.repeat(users, spec.days), n_sess_ud.ravel())
    s_day = np.repeat(np.tile(np.arange(spec.days), n_u), n_sess_ud.ravel())
    n_s = len(s_user)
    mean_len = np.maximum(spec.mean_tracks * len_mult[s_user] * (0.5 + activity[s_user] / 2), 1.0)
    s_len = rng.geometric(1.0 / mean_len).astype(np.int64)

    # Events.
    e_sess = np.repeat(np.arange(n_s), s_len)
    n = len(e_sess)
    starts = np.cumsum(s_len) - s_len
    step = np.arange(n) - np.repeat(starts, s_len)
    e_user = s_user[e_sess]
    is_last = step == s_len[e_sess] - 1
    a = 4.0 * taste[e_user] * time_mult[e_user]
    time = np.clip(rng.beta(np.maximum(a, 0.1), 4.0 * (1 - taste[e_user]) + 0.1), 0.0, 1.0)
    latency = rng.lognormal(np.log(0.0008), 0.4, n)
    track = rng.integers(0, spec.n_tracks, n)
    rec = rng.integers(0, spec.n_tracks, n)

    # Time: sessions of a user-day run one after another from a random offset.
    dur_ms = (1000 + time * 180_000).astype(np.int64)  # a step lasts what was listened
    gap_s = rng.integers(60_000, 3_600_000, n_s)
    sess_dur = np.add.reduceat(dur_ms, starts) if n else np.zeros(0, np.int64)
    block = s_user * spec.days + s_day
    span = sess_dur + gap_s
    csum = np.cumsum(span) - span
    first = np.r_[True, block[1:] != block[:-1]] if n_s else np.zeros(0, bool)
    block_base = np.maximum.accumulate(np.where(first, csum, 0))
    offset = rng.integers(0, 6 * 3_600_000, n_u * spec.days)
    s_start = spec.start_ms + s_day * DAY_MS + offset[block] + (csum - block_base)
    excl = np.cumsum(dur_ms) - dur_ms  # time before each event, globally
    e_ts = s_start[e_sess] + (excl - excl[starts][e_sess])

    keep = np.ones(n, bool)
    if spec.unfinished_users > 0 and n_s:
        # Some users' last session of the run never ends: drop its `last` line.
        last_sess = np.r_[s_user[1:] != s_user[:-1], True]
        cut_users = rng.random(n_u) < spec.unfinished_users
        cut_sess = last_sess & cut_users[s_user] & (s_len > 1)
        keep &= ~(is_last & cut_sess[e_sess])

    df = pd.DataFrame(
        {
            "message": np.where(is_last, "last", "next"),
            "timestamp": e_ts,
            "user": e_user,
            "track": track,
            "time": np.round(time, 4),
            "latency": np.round(latency, 6),
            "recommendation": np.where(is_last, -1, rec),
        }
    )[keep]
    df = df.sort_values("timestamp", kind="stable").reset_index(drop=True)
    return SynthEvents(frame=df, arms=arms, spec=spec)


def events_frame(synth: SynthEvents) -> pd.DataFrame:
    """The frame `read_events` would return for these events, without files.

    For statistical tests that run the analysis hundreds of times; the
    file path (write_logs + read_events) is tested separately.
    """
    import pyarrow as pa
    from botify.analysis.logs import EXP_PREFIX, _to_pandas

    df = synth.frame
    users = df["user"].to_numpy()
    is_last = (df["message"] == "last").to_numpy()
    cols = {
        "message": pa.array(df["message"].to_numpy(), pa.string()),
        "timestamp": pa.array(df["timestamp"].to_numpy(), pa.int64()),
        "user": pa.array(users, pa.int64()),
        "track": pa.array(df["track"].to_numpy(), pa.int64()),
        "time": pa.array(df["time"].to_numpy(), pa.float64()),
        "latency": pa.array(df["latency"].to_numpy(), pa.float64()),
        "recommendation": pa.array(df["recommendation"].to_numpy(), pa.int64(), mask=is_last),
        "recommender": pa.nulls(len(df), pa.string()),
        "fallback": pa.nulls(len(df), pa.string()),
    }
    exp_cols = []
    for name, arms in synth.arms.items():
        cols[EXP_PREFIX + name] = pa.array(arms[users], pa.string())
        exp_cols.append(EXP_PREFIX + name)
    return _to_pandas(pa.table(cols), exp_cols)


def n_users_for(n_events: int, spec: SynthSpec) -> int:
    """Users needed for about `n_events` events with `spec`'s other knobs."""
    per_user = spec.days * spec.sessions_per_day * spec.mean_tracks
    return max(1, int(round(n_events / per_user)))


def write_logs(
    synth: SynthEvents,
    logdir: str | Path,
    *,
    workers: int = 2,
    rotate_every: int = 200_000,
    extras: bool = True,
    timestamps: str = "ms",
    gzip_rotated: bool = False,
    seed: int = 0,
    ids: bool = False,
) -> list[Path]:
    """Write events as the service does: one dir per worker, rotated `events-NNNNNN.jsonl`.

    extras=False writes the plain COMPAT fields only; timestamps="iso" writes
    ISO-8601 strings instead of epoch milliseconds; gzip_rotated gzips every
    file but the newest of each worker; ids=True adds the service's optional
    `seq` (the user's event number, from 1) and `event_id` (32 hex digits, unique).
    """
    if timestamps not in ("ms", "iso"):
        raise ValueError("timestamps must be 'ms' or 'iso'")
    rng = np.random.default_rng(seed)
    df = synth.frame
    logdir = Path(logdir)
    worker = rng.integers(0, max(1, workers), len(df))
    exp_names = list(synth.arms)
    user_arms = {name: synth.arms[name] for name in exp_names}
    serving = exp_names[0] if exp_names else None
    recs = list(synth.spec.experiments.get(serving, ())) if serving else []
    paths: list[Path] = []
    msg = df["message"].to_numpy()
    ts = df["timestamp"].to_numpy()
    us = df["user"].to_numpy()
    tr = df["track"].to_numpy()
    tm = df["time"].to_numpy()
    lt = df["latency"].to_numpy()
    rc = df["recommendation"].to_numpy()
    seq = df.groupby("user", sort=False).cumcount().to_numpy() + 1
    eid = rng.integers(0, 2**63, (len(df), 2)) if ids else None
    for w in range(max(1, workers)):
        d = logdir / f"synth-{1000 + w}-{synth.spec.start_ms}"
        d.mkdir(parents=True, exist_ok=True)
        idx = np.flatnonzero(worker == w)
        chunks = [idx[i : i + rotate_every] for i in range(0, len(idx), rotate_every)] or [idx]
        for k, chunk in enumerate(chunks, start=1):
            lines = []
            for i in chunk:
                u = int(us[i])
                m = str(msg[i])
                rec = None if m == "last" else int(rc[i])
                t = int(ts[i])
                o: dict[str, object] = {
                    "message": m,
                    "timestamp": t
                    if timestamps == "ms"
                    else pd.Timestamp(t, unit="ms", tz="UTC").isoformat(),
                    "user": u,
                    "track": int(tr[i]),
                    "time": float(tm[i]),
                    "latency": float(lt[i]),
                    "recommendation": rec,
                    "experiments": {name: str(user_arms[name][u]) for name in exp_names},
                }
                if eid is not None:
                    o["seq"] = int(seq[i])
                    o["event_id"] = f"{int(eid[i, 0]):016x}{int(eid[i, 1]):016x}"
                if extras:
                    arm = str(user_arms[serving][u]) if serving else "C"
                    o["recommender"] = f"rec_{arm}" if recs else "random"
                    o["fallback"] = None
                lines.append(orjson.dumps(o))
            data = b"\n".join(lines) + (b"\n" if lines else b"")
            path = d / f"events-{k:06d}.jsonl"
            if gzip_rotated and k < len(chunks):
                path = path.with_name(path.name + ".gz")
                path.write_bytes(gzip.compress(data, compresslevel=1))
            else:
                path.write_bytes(data)
            paths.append(path)
    return paths




def write_benchmark_logs(n_events: int, logdir: str | Path, seed: int, ids: bool = False) -> int:
    """About `n_events` events of a 2-day, 2-arm experiment (T1 +5%), written as 2 service
    workers with rotation: the data set of the offline and Spark benchmarks. Returns the
    number of events written. ids=True: with the service's `seq` and `event_id` fields."""
    spec = SynthSpec(days=2, seed=seed, experiments={"EXP": ("C", "T1")}, effects={"T1": 1.05})
    spec.n_users = n_users_for(n_events, spec)
    s = generate(spec)
    # the per-user activity spread makes the count drift; rescale users once
    spec.n_users = max(1, int(spec.n_users * n_events / max(len(s.frame), 1)))
    s = generate(spec)
    write_logs(s, logdir, workers=2, rotate_every=250_000, ids=ids)
    return len(s.frame)


__all__ = [
    "SynthEvents",
    "SynthSpec",
    "assign_arm",
    "events_frame",
    "generate",
    "n_users_for",
    "write_benchmark_logs",
    "write_logs",
]
