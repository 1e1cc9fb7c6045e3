"""Offline evaluation of recommendation artifacts on held-out event logs.

Protocol
--------
1. **Temporal split** of the sessionized events: a session belongs to the test part
   when it *starts* at or after the cutoff (sessions are never cut in two). The
   cutoff is the start of the last UTC day (``last-day``), the time that leaves the
   last ``test_fraction`` of sessions for testing (``fraction``), an explicit time, or
   ``auto`` (last day when the logs span two days or more, else fraction).
2. **Targets**: every transition ``prev -> next`` inside a test session whose next
   track was listened to for at least ``min_time`` (a skipped track is not something
   the user wanted next). The logging policy chose what was played, so these
   numbers compare models with each other on the same data; they are not an
   unbiased estimate of online listen time.
3. **Lists**: what the artifact would have served: the ``prev`` track's list
   (``i2i``), the user's list (``user``) or the single ``top`` list, cut at ``k``.
   A context without a list counts as a miss (``ctx_coverage`` shows how often).
4. **Metrics** (means over targets): ``hit_rate`` = next track in the top k;
   ``ndcg`` = 1/log2(rank+1) (one relevant item, so the ideal DCG is 1);
   ``mrr`` = 1/rank within the top k (0 when absent); ``coverage`` = distinct tracks
   among the lists served / catalog size; ``pop_pct`` = mean popularity percentile
   (training listen time, ties averaged, 0 least .. 1 most popular) of the served
   tracks: higher means more popularity-biased.
"""

from __future__ import annotations

import datetime as dt
import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from botify.store.artifacts import Artifact, load_artifact, read_meta
from botify.training.models.base import TrainData

DAY_MS = 86_400_000
METRIC_COLUMNS = ("hit_rate", "ndcg", "mrr", "coverage", "pop_pct", "ctx_coverage")


@dataclass(frozen=True)
class SplitInfo:
    """How the events were split (recorded in meta and reports)."""

    how: str
    cutoff_ms: int
    cutoff: str
    train_events: int
    test_events: int
    train_sessions: int
    test_sessions: int


def _ts_ms(events: pd.DataFrame) -> np.ndarray:
    col = events["timestamp"]
    if pd.api.types.is_datetime64_any_dtype(col):
        return col.dt.as_unit("ms").astype("int64").to_numpy()
    return col.to_numpy(dtype=np.int64)


def iso_ms(ms: int) -> str:
    """UTC ISO-8601 of epoch milliseconds."""
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).isoformat(timespec="milliseconds")


def data_window(events: pd.DataFrame) -> dict[str, Any]:
    """First/last event time and sizes of a sessionized frame (for meta.json)."""
    if len(events) == 0:
        return {"start": None, "end": None, "start_ms": None, "end_ms": None,
                "events": 0, "sessions": 0, "users": 0}
    ts = _ts_ms(events)
    lo, hi = int(ts.min()), int(ts.max())
    return {
        "start": iso_ms(lo),
        "end": iso_ms(hi),
        "start_ms": lo,
        "end_ms": hi,
        "events": len(events),
        "sessions": int(events["session_id"].nunique()),
        "users": int(events["user"].nunique()),
    }


def temporal_split(
    events: pd.DataFrame,
    how: str = "auto",
    test_fraction: float = 0.2,
) -> tuple[pd.DataFrame, pd.DataFrame, SplitInfo]:
    """Split sessionized events by session start time (see module doc for ``how``)."""
    if len(events) == 0:
        raise ValueError("no events to split")
    if not 0.0 < test_fraction < 1.0:
        raise ValueError("test_fraction must be in (0, 1)")
    ts = _ts_ms(events)
    sid = events["session_id"].to_numpy()
    codes, uniq = pd.factorize(sid)
    start = pd.Series(ts).groupby(codes, sort=True).min().to_numpy()  # index = code
    hi = int(ts.max())
    mode = how
    last_day = (hi // DAY_MS) * DAY_MS
    if how == "auto":
        # the last UTC day when sessions start both before and on it, else a fraction
        ok = bool((start < last_day).any() and (start >= last_day).any())
        mode = "last-day" if ok else "fraction"
    if mode == "last-day":
        cutoff = last_day
        if not (start < cutoff).any():
            raise ValueError(
                "last-day split: all sessions start on the last day; use --split fraction"
            )
        if not (start >= cutoff).any():
            raise ValueError(
                "last-day split: no session starts on the last day; use --split fraction"
            )
    elif mode == "fraction":
        s_sorted = np.sort(start)
        idx = min(len(s_sorted) - 1, int(math.floor(len(s_sorted) * (1.0 - test_fraction))))
        cutoff = int(s_sorted[idx])
        if cutoff <= int(s_sorted[0]):
            raise ValueError("fraction split leaves no training sessions (too few sessions)")
        mode = f"fraction={test_fraction:g}"
    else:
        try:
            cutoff = int(how)
        except ValueError:
            try:
                t = pd.Timestamp(how)
            except ValueError:
                raise ValueError(
                    f"--split {how!r}: expected auto, last-day, fraction, epoch ms or ISO time"
                ) from None
            t = t.tz_localize("UTC") if t.tzinfo is None else t.tz_convert("UTC")
            cutoff = int(t.value // 1_000_000)
        mode = "at"
    is_test = start[codes] >= cutoff
    train, test = events.loc[~is_test], events.loc[is_test]
    if len(train) == 0 or len(test) == 0:
        raise ValueError(f"split at {iso_ms(cutoff)} leaves an empty train or test part")
    info = SplitInfo(
        how=mode,
        cutoff_ms=cutoff,
        cutoff=iso_ms(cutoff),
        train_events=len(train),
        test_events=len(test),
        train_sessions=int((start < cutoff).sum()),
        test_sessions=int((start >= cutoff).sum()),
    )
    return train, test, info


def next_track_targets(test: pd.DataFrame, min_time: float = 0.5) -> pd.DataFrame:
    """Transitions prev -> next inside test sessions whose next track was listened >= min_time."""
    d = TrainData.from_events(test)
    i, j = d.pairs(1)
    keep = d.time[j] >= min_time
    i, j = i[keep], j[keep]
    return pd.DataFrame(
        {"user": d.user[i], "prev": d.track[i], "next": d.track[j], "next_time": d.time[j]}
    )


def _lists_matrix(artifact: Artifact, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(sorted keys, key-row matrix of the first k ids padded with -1); top: no keys, 1 row."""
    if artifact.kind == "top":
        m = np.full((1, k), -1, dtype=np.int64)
        top = artifact.top[:k]
        m[0, : len(top)] = top
        return np.empty(0, dtype=np.int64), m
    keys = np.array(sorted(artifact.lists), dtype=np.int64)
    m = np.full((len(keys) + 1, k), -1, dtype=np.int64)  # last row: "no list"
    for r, key in enumerate(keys.tolist()):
        lst = artifact.lists[key][:k]
        m[r, : len(lst)] = lst
    return keys, m


def popularity_percentile(train_time: np.ndarray) -> np.ndarray:
    """Percentile rank of each track's training listen time (ties averaged), 0..1."""
    from scipy.stats import rankdata

    n = len(train_time)
    if n < 2:
        return np.zeros(n)
    return (rankdata(train_time, method="average") - 1.0) / (n - 1.0)


def score_artifact(
    artifact: Artifact,
    targets: pd.DataFrame,
    *,
    k: int,
    n_tracks: int,
    pop_pct: np.ndarray,
    chunk: int = 200_000,
) -> dict[str, float]:
    """Metrics of one artifact on the targets (see module doc for definitions)."""
    if k <= 0:
        raise ValueError("k must be positive")
    n = len(targets)
    if n == 0:
        raise ValueError("no test targets (no test transitions with enough listen time)")
    keys, m = _lists_matrix(artifact, k)
    if artifact.kind == "top":
        rows = np.zeros(n, dtype=np.int64)
    else:
        ctx = targets["prev" if artifact.kind == "i2i" else "user"].to_numpy(dtype=np.int64)
        pos = np.searchsorted(keys, ctx)
        pos_c = np.minimum(pos, max(len(keys) - 1, 0))
        found = (pos < len(keys)) & (keys[pos_c] == ctx) if len(keys) else np.zeros(n, bool)
        rows = np.where(found, pos_c, len(keys))
    nxt = targets["next"].to_numpy(dtype=np.int64)
    rank = np.zeros(n, dtype=np.int64)
    served = np.zeros(len(m), dtype=bool)
    served[np.unique(rows)] = True
    for s in range(0, n, chunk):
        lists = m[rows[s : s + chunk]]
        hit = lists == nxt[s : s + chunk, None]
        any_hit = hit.any(axis=1)
        rank[s : s + chunk] = np.where(any_hit, hit.argmax(axis=1) + 1, 0)
    has_list = (m[rows] >= 0).any(axis=1) if len(m) else np.zeros(n, bool)
    served_ids = m[served]
    served_ids = np.unique(served_ids[served_ids >= 0])
    # popularity bias: mean percentile over every served slot (weighted by target count)
    valid = m >= 0
    pct = np.where(valid, pop_pct[np.where(valid, m, 0)], 0.0)
    row_sum, row_cnt = pct.sum(axis=1), valid.sum(axis=1)
    uses = np.bincount(rows, minlength=len(m))
    tot_cnt = float((uses * row_cnt).sum())
    hits = rank > 0
    safe_rank = np.where(hits, rank, 1)
    return {
        "hit_rate": float(hits.mean()),
        "ndcg": float(np.where(hits, 1.0 / np.log2(safe_rank + 1.0), 0.0).mean()),
        "mrr": float(np.where(hits, 1.0 / safe_rank, 0.0).mean()),
        "coverage": float(len(served_ids) / n_tracks),
        "pop_pct": float((uses * row_sum).sum() / tot_cnt) if tot_cnt else float("nan"),
        "ctx_coverage": float(has_list.mean()),
    }


@dataclass
class Leaderboard:
    """The leaderboard table plus how it was computed (for JSON and the HTML report)."""

    table: pd.DataFrame
    split: SplitInfo
    k: int
    min_time: float
    n_targets: int
    n_tracks: int
    target_pop_pct: float

    def to_json(self) -> dict[str, Any]:
        """JSON-ready dict (NaN becomes null)."""
        rows = self.table.astype(object).where(self.table.notna(), None).to_dict("records")
        return {
            "split": asdict(self.split),
            "k": self.k,
            "min_time": self.min_time,
            "n_targets": self.n_targets,
            "n_tracks": self.n_tracks,
            "target_pop_pct": self.target_pop_pct,
            "leaderboard": rows,
        }


def evaluate_models(
    train: pd.DataFrame,
    test: pd.DataFrame,
    split: SplitInfo,
    models: Sequence[str | Path],
    *,
    n_tracks: int,
    k: int = 10,
    min_time: float = 0.5,
    list_len: int = 100,
    seed: int = 0,
    params: dict[str, dict[str, Any]] | None = None,
    progress: bool = False,
) -> Leaderboard:
    """Leaderboard of artifacts (paths) and/or model names (trained here on ``train``).

    A model name (``top_pop``, ``i2i``, ...) is trained on the train part with its
    default parameters (overridden by ``params[name]``), so the comparison is leak-free.
    An artifact file is evaluated as is; when its meta says it saw data at or after
    the cutoff, the row gets a ``leak`` warning because its numbers are optimistic.
    """
    from botify.training.models import MODELS, fit_model, get_model, make_params

    targets = next_track_targets(test, min_time)
    tdata = TrainData.from_events(train, n_tracks)
    pct = popularity_percentile(tdata.listen_time_per_track())
    rows = []
    for spec in models:
        path = Path(spec)
        t0 = time.perf_counter()
        note = ""
        if path.is_file():
            art = load_artifact(path, n_tracks)
            meta = read_meta(path) or {}
            name = str(meta.get("model") or path.stem)
            label = f"{name} ({path.name})"
            end_ms = (meta.get("data_window") or {}).get("end_ms")
            if end_ms is not None and int(end_ms) >= split.cutoff_ms:
                note = "leak: artifact trained on test-period data"
            elif end_ms is None:
                note = "no data window in meta: leakage unknown"
            train_s = float("nan")
        elif str(spec) in MODELS:
            name = label = str(spec)
            p = make_params(get_model(name), (params or {}).get(name, {}))
            art = fit_model(name, tdata, p, k=list_len, seed=seed,
                            progress=f"{name}, offline evaluation (train split)" if progress else False)
            train_s = time.perf_counter() - t0
        else:
            raise ValueError(f"{spec}: neither an artifact file nor a model ({', '.join(MODELS)})")
        metrics = score_artifact(art, targets, k=k, n_tracks=n_tracks, pop_pct=pct)
        rows.append({"model": label, "kind": art.kind, **metrics, "train_s": train_s, "note": note})
    table = pd.DataFrame(rows, columns=["model", "kind", *METRIC_COLUMNS, "train_s", "note"])
    table = table.sort_values(["ndcg", "hit_rate"], ascending=False, kind="stable").reset_index(
        drop=True
    )
    tgt_pct = float(pct[targets["next"].to_numpy()].mean()) if len(targets) else float("nan")
    return Leaderboard(table, split, k, min_time, len(targets), n_tracks, tgt_pct)


def leaderboard(
    events: pd.DataFrame,
    models: Sequence[str | Path],
    *,
    n_tracks: int,
    split: str = "auto",
    test_fraction: float = 0.2,
    test_events: pd.DataFrame | None = None,
    **kw: Any,
) -> Leaderboard:
    """Split sessionized ``events`` (or use ``test_events`` as the test part) and rank models.

    This is the function the HTML report calls; ``.table`` is the leaderboard DataFrame.
    """
    if test_events is not None:
        tw = data_window(test_events)
        info = SplitInfo("separate-test-logs", int(tw["start_ms"]), str(tw["start"]),
                         len(events), len(test_events),
                         int(events["session_id"].nunique()), tw["sessions"])
        return evaluate_models(events, test_events, info, models, n_tracks=n_tracks, **kw)
    train, test, info = temporal_split(events, split, test_fraction)
    return evaluate_models(train, test, info, models, n_tracks=n_tracks, **kw)


def render_leaderboard(lb: Leaderboard) -> Any:
    """A rich Table of the leaderboard."""
    from rich.table import Table

    s = lb.split
    t = Table(
        title=f"Offline next-track leaderboard (k={lb.k}, {lb.n_targets} targets with listen >= "
        f"{lb.min_time:g}; split {s.how} at {s.cutoff}: {s.train_sessions} train / "
        f"{s.test_sessions} test sessions)"
    )
    t.add_column("model")
    t.add_column("kind")
    for c in (f"hit@{lb.k}", f"ndcg@{lb.k}", f"mrr@{lb.k}", "coverage", "pop pct", "ctx cov"):
        t.add_column(c, justify="right")
    t.add_column("train s", justify="right")
    t.add_column("note")
    for r in lb.table.itertuples(index=False):
        t.add_row(
            str(r.model), str(r.kind),
            *(f"{getattr(r, c):.4f}" for c in METRIC_COLUMNS),
            "-" if math.isnan(r.train_s) else f"{r.train_s:.1f}",
            str(r.note),
        )
    t.caption = f"pop pct of the targets themselves: {lb.target_pop_pct:.3f}"
    return t
