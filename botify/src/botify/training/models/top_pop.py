"""Most-listened tracks: the baseline every other model has to beat."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from botify.store.artifacts import Artifact
from botify.training.models.base import TrainData, model

KIND = "top"


@dataclass
class Params:
    """top_pop has no tuning knobs beyond the list length."""

    min_time: float = field(
        default=0.0, metadata={"help": "ignore plays listened less than this fraction"}
    )


def scores(data: TrainData, params: Params | None = None) -> np.ndarray:
    """Total listen time per track (plays under ``min_time`` count zero)."""
    p = params or Params()
    t = np.where(data.time >= p.min_time, data.time, 0.0)
    return np.bincount(data.track, weights=t, minlength=data.n_tracks)


@model("top_pop", serves="top_pop")
def fit(data: TrainData, params: Params, *, k: int, seed: int) -> Artifact:
    """Rank tracks by total listen time; ties by track id. ``seed`` is unused (deterministic)."""
    s = scores(data, params)
    order = np.lexsort((np.arange(len(s)), -s))
    order = order[s[order] > 0][:k]
    return Artifact("top", top=order.tolist())
