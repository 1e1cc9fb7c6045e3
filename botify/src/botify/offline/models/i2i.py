"""Item-to-item neighbours from co-listening within sessions.

Two tracks played close to each other in one session, both listened to well, are
evidence that the same listener likes both. Raw co-occurrence favours the most
played tracks, so each candidate is divided by its popularity to the power ``alpha``
(``alpha=0.5`` on both sides is cosine similarity).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp

from botify.offline.artifacts import Artifact
from botify.offline.models.base import TrainData, topk_by_row

KIND = "i2i"


@dataclass
class Params:
    """Co-occurrence window, weighting and popularity normalisation."""

    window: int = field(default=5, metadata={"help": "pair tracks at most this many steps apart"})
    alpha: float = field(
        default=0.5, metadata={"help": "divide by popularity**alpha (0 = raw co-occurrence)"}
    )
    decay: float = field(
        default=1.0, metadata={"help": "pair weight multiplier per step of distance (1 = none)"}
    )
    min_time: float = field(
        default=0.0, metadata={"help": "plays listened less than this fraction are ignored"}
    )
    min_support: float = field(
        default=0.0, metadata={"help": "drop pairs whose summed weight is below this"}
    )


def cooccurrence(data: TrainData, params: Params) -> sp.csr_matrix:
    """Symmetric track x track matrix of summed pair weights ``time_a * time_b``."""
    if params.window < 1:
        raise ValueError("window must be >= 1")
    t = np.where(data.time >= params.min_time, data.time, 0.0)
    rows, cols, vals = [], [], []
    for d in range(1, params.window + 1):
        i, j = data.pairs(d)
        if len(i) == 0:
            break
        w = t[i] * t[j] * (params.decay ** (d - 1))
        a, b = data.track[i], data.track[j]
        keep = (w > 0) & (a != b)
        a, b, w = a[keep], b[keep], w[keep]
        rows += [a, b]
        cols += [b, a]
        vals += [w, w]
    n = data.n_tracks
    if not rows:
        return sp.csr_matrix((n, n), dtype=np.float64)
    m = sp.coo_matrix(
        (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(n, n)
    ).tocsr()
    m.sum_duplicates()
    return m


def fit(data: TrainData, params: Params, *, k: int, seed: int) -> Artifact:
    """Top-k neighbours per track by popularity-normalised co-occurrence (deterministic)."""
    c = cooccurrence(data, params).tocoo()
    if params.min_support > 0:
        keep = c.data >= params.min_support
        c = sp.coo_matrix((c.data[keep], (c.row[keep], c.col[keep])), shape=c.shape)
    pop = np.asarray(c.sum(axis=1)).ravel()  # a track's total pair weight: its popularity
    with np.errstate(divide="ignore", invalid="ignore"):
        norm = np.where(pop > 0, pop, 1.0) ** params.alpha
    score = c.data / (norm[c.row] * norm[c.col])
    return Artifact("i2i", lists=topk_by_row(c.row, c.col, score, k))
