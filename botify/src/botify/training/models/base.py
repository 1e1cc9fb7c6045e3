"""Shared plumbing for the trainers: the registry decorator, the training data view and vectorised top-K."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, fields
from typing import Any

import numpy as np
import pandas as pd

REQUIRED_COLUMNS = ("user", "track", "time", "session_id", "step")


@dataclass(frozen=True)
class ModelEntry:
    """A trainer as the registry knows it: where its `fit` lives and who serves its artifact."""

    name: str
    module: str  # the module holding fit, Params and KIND
    serves: str  # the botify.recommenders name that serves its default artifact


#: model name -> entry; filled by @model on each trainer's fit (botify.training.models imports them all)
REGISTRY: dict[str, ModelEntry] = {}


def model(name: str, serves: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator on a trainer's `fit`: register it under `name`, served online by recommender `serves`.

    Why a decorator, as for recommenders (`@register`): the model says in its own
    file what it is and what serves it, so a new trainer is one new file.
    """

    def deco(fit: Callable[..., Any]) -> Callable[..., Any]:
        old = REGISTRY.get(name)
        if old is not None and old.module != fit.__module__:
            raise ValueError(f"model name {name!r} is already registered by {old.module}")
        REGISTRY[name] = ModelEntry(name=name, module=fit.__module__, serves=serves)
        return fit

    return deco


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


def aggregate_pairs(
    rows: np.ndarray,
    cols: np.ndarray,
    vals: np.ndarray,
    n_cols: int,
    *,
    unit_weights: bool = False,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Sum duplicate (row, col) entries; returns CSR parts sorted by (row, col).

    Returns (distinct rows, indptr over those rows, cols, summed values).

    With ``unit_weights`` (every value in [0, 1]) each value is quantised to an integer
    of the bits the packed key leaves free (resolution 2^-29 for 50k tracks) and
    packed below the key, so a plain ``np.sort`` (SIMD, several times faster than an
    argsort on millions of pairs) groups them and the sums are exact integers: the
    result does not depend on summation order, hence is reproducible anywhere.
    """
    rows = np.asarray(rows, dtype=np.int64)
    cols = np.asarray(cols, dtype=np.int64)
    vals = np.asarray(vals, dtype=np.float64)
    if len(rows) == 0:
        e = np.empty(0, dtype=np.int64)
        return e, np.zeros(1, dtype=np.int64), e, np.empty(0)
    n_rows = int(rows.max()) + 1
    if unit_weights and packed_value_bits(n_rows, n_cols) >= 20:
        return aggregate_unit_chunks([(rows, cols, vals)], n_rows, n_cols)
    key = rows * np.int64(n_cols) + cols
    order = np.argsort(key, kind="stable")
    key = key[order]
    starts = np.flatnonzero(np.r_[True, key[1:] != key[:-1]])
    return _csr_from_sorted(key[starts], np.add.reduceat(vals[order], starts), n_cols)


def packed_value_bits(n_rows: int, n_cols: int) -> int:
    """Bits left for a quantised value below a packed (row, col) key in an int64."""
    key_bits = max(1, int(n_rows * n_cols - 1).bit_length())
    return min(62 - key_bits, 40)


def aggregate_unit_chunks(
    chunks: Iterable[tuple[np.ndarray, np.ndarray, np.ndarray]], n_rows: int, n_cols: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``aggregate_pairs(unit_weights=True)`` over (rows, cols, vals) chunks.

    Each chunk is packed into one int64 per entry as it arrives, so the peak memory is
    one int64 array of all entries (plus a chunk), not rows + cols + vals + keys.
    """
    val_bits = packed_value_bits(n_rows, n_cols)
    if val_bits < 20:
        raise ValueError("catalog too large for packed aggregation")
    scale = 1 << (val_bits - 1)  # 1.0 -> scale, which still fits in val_bits
    parts = []
    for rows, cols, vals in chunks:
        v = np.asarray(vals, dtype=np.float64)
        if len(v) == 0:
            continue
        if v.min() < 0 or v.max() > 1:
            raise ValueError("unit_weights needs values in [0, 1]")
        key = np.asarray(rows, dtype=np.int64) * np.int64(n_cols) + np.asarray(cols, dtype=np.int64)
        parts.append((key << val_bits) | np.rint(v * scale).astype(np.int64))
    if not parts:
        e = np.empty(0, dtype=np.int64)
        return e, np.zeros(1, dtype=np.int64), e, np.empty(0)
    packed = np.concatenate(parts)
    del parts
    packed.sort()
    key = packed >> val_bits
    packed &= (1 << val_bits) - 1  # now the quantised values
    starts = np.flatnonzero(np.r_[True, key[1:] != key[:-1]])
    summed = np.add.reduceat(packed, starts).astype(np.float64) / scale
    return _csr_from_sorted(key[starts], summed, n_cols)


def _csr_from_sorted(
    ukey: np.ndarray, summed: np.ndarray, n_cols: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    r, c = ukey // n_cols, ukey % n_cols
    rstarts = np.flatnonzero(np.r_[True, r[1:] != r[:-1]])
    indptr = np.r_[rstarts, len(r)].astype(np.int64)
    return r[rstarts], indptr, c, summed


def topk_csr(
    keys: np.ndarray, indptr: np.ndarray, cols: np.ndarray, scores: np.ndarray, k: int
) -> dict[int, list[int]]:
    """Top-k columns of each CSR row (cols sorted within a row), ties broken by col id.

    Positive scores only. A loop over rows with argpartition: each row costs
    O(nnz), and the number of rows is at most the catalog size.
    """
    if k <= 0:
        raise ValueError("k must be positive")
    out: dict[int, list[int]] = {}
    for r, key in enumerate(keys.tolist()):
        s, e = indptr[r], indptr[r + 1]
        dat = scores[s:e]
        ind = cols[s:e]
        pos = dat > 0
        if not pos.all():
            dat, ind = dat[pos], ind[pos]
        if len(dat) == 0:
            continue
        if len(dat) > k:
            kth = -np.partition(-dat, k - 1)[k - 1]
            cand = np.flatnonzero(dat >= kth)  # keeps col order; includes boundary ties
            dat, ind = dat[cand], ind[cand]
        o = np.argsort(-dat, kind="stable")[:k]  # stable: equal scores keep col order
        out[key] = ind[o].tolist()
    return out


def topk_by_row(
    rows: np.ndarray,
    cols: np.ndarray,
    scores: np.ndarray,
    k: int,
) -> dict[int, list[int]]:
    """Top-k columns per row from a (row, col, score) list of distinct pairs, ties by col id.

    The deterministic tie-break is what makes equal inputs give byte-equal artifacts.
    """
    if k <= 0:
        raise ValueError("k must be positive")
    rows = np.asarray(rows, dtype=np.int64)
    cols = np.asarray(cols, dtype=np.int64)
    if len(rows) == 0:
        return {}
    n_cols = int(cols.max()) + 1
    keys, indptr, c, summed = aggregate_pairs(rows, cols, scores, n_cols)
    return topk_csr(keys, indptr, c, summed, k)


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
