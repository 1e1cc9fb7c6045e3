"""Next-track transitions: what was listened to right after each track.

The service's ``contextual`` recommender answers from the track just played, so the
natural table is P(next | previous), weighted by how much of the next track was
listened: a transition users skipped is evidence against, not for.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from botify.store.artifacts import Artifact
from botify.training.models.base import TrainData, model, topk_by_row

KIND = "i2i"


@dataclass
class Params:
    """How transitions are scored."""

    score: str = field(
        default="sum",
        metadata={
            "help": "sum: total listen time of the next track; mean: its mean listen "
            "time shrunk towards the global mean with `shrinkage` pseudo-plays",
            "choices": ["sum", "mean"],
        },
    )
    shrinkage: float = field(default=5.0, metadata={"help": "pseudo-plays for score=mean"})
    min_time: float = field(
        default=0.0, metadata={"help": "next plays listened less than this count zero"}
    )


def transitions(data: TrainData, params: Params) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Distinct (previous, next) pairs with their summed next-listen time and their count."""
    i, j = data.pairs(1)
    a, b = data.track[i], data.track[j]
    t = data.time[j]
    t = np.where(t >= params.min_time, t, 0.0)
    n = np.int64(data.n_tracks)
    keys, inv = np.unique(a * n + b, return_inverse=True)
    w = np.bincount(inv, weights=t, minlength=len(keys))
    c = np.bincount(inv, minlength=len(keys)).astype(np.float64)
    return keys // n, keys % n, w, c


@model("contextual", serves="contextual")
def fit(data: TrainData, params: Params, *, k: int, seed: int) -> Artifact:
    """Top-k successors per track (deterministic; ``seed`` unused)."""
    if params.score not in ("sum", "mean"):
        raise ValueError("score must be 'sum' or 'mean'")
    prev, nxt, w, c = transitions(data, params)
    if params.score == "sum":
        s = w
    else:
        mu = float(w.sum() / c.sum()) if c.sum() else 0.0
        s = np.where(w > 0, (w + params.shrinkage * mu) / (c + params.shrinkage), 0.0)
    return Artifact("i2i", lists=topk_by_row(prev, nxt, s, k))
