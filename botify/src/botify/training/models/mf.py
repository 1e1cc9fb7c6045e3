"""Matrix factorisation of the user x track listen-time matrix (``implicit`` ALS or BPR).

The natural output is a per-user list (``{"user", "tracks"}``), which the service's
``indexed`` recommender serves. ``output=i2i`` instead writes each track's nearest
neighbours by cosine of the item factors (``{"item_id", "recommendations"}``) for the
``i2i``/``contextual`` recommenders, which also covers users the model never saw.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp
from botify.store.artifacts import Artifact
from botify.training.models.base import TrainData, model, topk_dense

KIND = "user"  # default output; "i2i" with output=i2i


@dataclass
class Params:
    """Factorisation hyper-parameters."""

    algorithm: str = field(
        default="als", metadata={"help": "als or bpr", "choices": ["als", "bpr"]}
    )
    output: str = field(
        default="user",
        metadata={"help": "user: per-user lists; i2i: item neighbours", "choices": ["user", "i2i"]},
    )
    factors: int = field(default=32, metadata={"help": "latent dimensions"})
    iterations: int = field(default=15, metadata={"help": "ALS sweeps / BPR epochs"})
    regularization: float = field(default=0.05, metadata={"help": "L2 penalty"})
    alpha: float = field(default=10.0, metadata={"help": "ALS confidence per unit of listen time"})
    learning_rate: float = field(default=0.05, metadata={"help": "BPR learning rate"})
    min_time: float = field(
        default=0.0, metadata={"help": "plays listened less than this fraction are ignored"}
    )
    filter_listened: bool = field(
        default=False, metadata={"help": "drop tracks the user already listened to (output=user)"}
    )
    num_threads: int = field(
        default=1, metadata={"help": "implicit threads; 1 keeps runs byte-reproducible"}
    )


def user_item_matrix(data: TrainData, min_time: float = 0.0) -> tuple[sp.csr_matrix, np.ndarray]:
    """(users x tracks summed listen time, user ids of the rows)."""
    t = np.where(data.time >= min_time, data.time, 0.0)
    users, row = np.unique(data.user, return_inverse=True)
    m = sp.coo_matrix((t, (row, data.track)), shape=(len(users), data.n_tracks)).tocsr()
    m.sum_duplicates()
    m.eliminate_zeros()
    return m.astype(np.float32), users


def factorise(data: TrainData, params: Params, seed: int) -> tuple[np.ndarray, np.ndarray, sp.csr_matrix, np.ndarray]:
    """(user factors, item factors, user x item matrix, user ids)."""
    from threadpoolctl import threadpool_limits

    m, users = user_item_matrix(data, params.min_time)
    if m.nnz == 0:
        raise ValueError("no listen time in the training data")
    with warnings.catch_warnings(), threadpool_limits(1, "blas"):
        # implicit warns about BLAS threading at import; the limit above handles it.
        warnings.simplefilter("ignore", RuntimeWarning)
        if params.algorithm == "als":
            from implicit.cpu.als import AlternatingLeastSquares

            model = AlternatingLeastSquares(
                factors=params.factors,
                regularization=params.regularization,
                alpha=params.alpha,
                iterations=params.iterations,
                num_threads=params.num_threads,
                random_state=seed,
            )
        elif params.algorithm == "bpr":
            from implicit.cpu.bpr import BayesianPersonalizedRanking

            model = BayesianPersonalizedRanking(
                factors=params.factors,
                learning_rate=params.learning_rate,
                regularization=params.regularization,
                iterations=params.iterations,
                num_threads=params.num_threads,
                random_state=seed,
            )
        else:
            raise ValueError("algorithm must be 'als' or 'bpr'")
        model.fit(m, show_progress=False)
    uf = np.asarray(model.user_factors, dtype=np.float64)
    itf = np.asarray(model.item_factors, dtype=np.float64)
    return uf, itf, m, users


@model("mf", serves="indexed")
def fit(data: TrainData, params: Params, *, k: int, seed: int, chunk: int = 1024) -> Artifact:
    """Factorise, then rank tracks for every user (or every track) in row chunks."""
    if params.output not in ("user", "i2i"):
        raise ValueError("output must be 'user' or 'i2i'")
    uf, itf, m, users = factorise(data, params, seed)
    played = np.flatnonzero(np.asarray(m.sum(axis=0)).ravel() > 0)  # never-played tracks have no signal
    v = itf[played]
    lists: dict[int, list[int]] = {}
    if params.output == "user":
        for s in range(0, len(users), chunk):
            scores = uf[s : s + chunk] @ v.T
            excl = None
            if params.filter_listened:
                excl = m[s : s + chunk][:, played].toarray() > 0
            top = played[topk_dense(scores, k, excl)]
            for r, u in enumerate(users[s : s + chunk].tolist()):
                row = top[r]
                if excl is not None:
                    row = row[~np.isin(row, played[excl[r]])]
                if len(row):
                    lists[u] = row.tolist()
        return Artifact("user", lists=lists)
    if len(played) < 2:
        return Artifact("i2i", lists={})
    norms = np.linalg.norm(v, axis=1)
    vn = v / np.where(norms > 0, norms, 1.0)[:, None]
    for s in range(0, len(played), chunk):
        scores = vn[s : s + chunk] @ vn.T
        excl = np.zeros_like(scores, dtype=bool)
        excl[np.arange(scores.shape[0]), np.arange(s, s + scores.shape[0])] = True  # not itself
        # self scores -inf, so with at most n-1 picks it is never among them
        top = topk_dense(scores, min(k, len(played) - 1), excl)
        for r, item in enumerate(played[s : s + chunk].tolist()):
            lists[item] = played[top[r]].tolist()
    return Artifact("i2i", lists=lists)
