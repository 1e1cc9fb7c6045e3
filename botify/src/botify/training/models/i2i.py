"""Item-to-item neighbours from co-listening within sessions.

Two tracks played close to each other in one session, both listened to well, are
evidence that the same listener likes both. Raw co-occurrence favours the most
played tracks, so each candidate is divided by its popularity to the power ``alpha``
(``alpha=0.5`` on both sides is cosine similarity).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from botify.store.artifacts import Artifact
from botify.training.models.base import (
    TrainData,
    aggregate_pairs,
    aggregate_unit_chunks,
    model,
    packed_value_bits,
    topk_csr,
)

KIND = "i2i"


@dataclass
class Params:
    """Co-occurrence window, weighting and popularity normalisation."""

    window: int = field(default=5, metadata={"help": "pair tracks at most this many steps apart"})
    alpha: float = field(
        default=0.5, metadata={"help": "divide by popularity**alpha (0 = raw co-occurrence)"}
    )
    decay: float = field(
        default=1.0,
        metadata={"help": "pair weight multiplier per step of distance, in (0, 1] (1 = none)"},
    )
    min_time: float = field(
        default=0.0, metadata={"help": "plays listened less than this fraction are ignored"}
    )
    min_support: float = field(
        default=0.0, metadata={"help": "drop pairs whose summed weight is below this"}
    )


def cooccurrence(
    data: TrainData, params: Params
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Symmetric co-occurrence of summed pair weights ``time_a * time_b`` as CSR parts
    (rows, indptr, cols, values); see base.aggregate_pairs."""
    if params.window < 1:
        raise ValueError("window must be >= 1")
    if not 0.0 < params.decay <= 1.0:
        raise ValueError("decay must be in (0, 1]")
    t = np.where(data.time >= params.min_time, data.time, 0.0)

    def chunks():  # both directions of every pair at distance d, one offset at a time
        for d in range(1, params.window + 1):
            i, j = data.pairs(d)
            if len(i) == 0:
                return
            w = t[i] * t[j] * (params.decay ** (d - 1))
            a, b = data.track[i], data.track[j]
            keep = (w > 0) & (a != b)
            a, b, w = a[keep], b[keep], w[keep]
            yield a, b, w
            yield b, a, w

    n = data.n_tracks
    if packed_value_bits(n, n) >= 20:
        return aggregate_unit_chunks(chunks(), n, n)
    parts = list(chunks())  # a catalog of millions of tracks: the float path
    if not parts:
        e = np.empty(0, dtype=np.int64)
        return e, np.zeros(1, dtype=np.int64), e, np.empty(0)
    return aggregate_pairs(*(np.concatenate(x) for x in zip(*parts, strict=True)), n)


@model("i2i", serves="i2i")
def fit(data: TrainData, params: Params, *, k: int, seed: int) -> Artifact:
    """Top-k neighbours per track by popularity-normalised co-occurrence (deterministic)."""
    keys, indptr, cols, vals = cooccurrence(data, params)
    if params.min_support > 0:
        vals = np.where(vals >= params.min_support, vals, 0.0)  # zero scores are dropped
    # a track's total pair weight is its popularity (rows hold every track with a pair)
    pop = np.zeros(data.n_tracks)
    if len(keys):
        pop[keys] = np.add.reduceat(vals, indptr[:-1])
    norm = np.where(pop > 0, pop, 1.0) ** params.alpha
    row_of = np.repeat(keys, np.diff(indptr))
    score = vals / (norm[row_of] * norm[cols])
    return Artifact("i2i", lists=topk_csr(keys, indptr, cols, score, k))
