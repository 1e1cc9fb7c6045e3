"""EASE (Steck, 2019): the closed-form linear item-item autoencoder, on the most played tracks.

Why by hand: RecTools' ``EASEModel`` is the library of the field for it, but RecTools
0.19 pins numpy<2 and pandas<3 and would downgrade the project's stack; the closed
form is a few lines of numpy (``P = (X^T X + lambda I)^-1``, ``B = I - P / diag(P)``
with a zero diagonal), so the library would add nothing but its pins.

Why only the ``n_items`` most played tracks: the inverse is a dense ``n x n`` matrix
(50k tracks would be 20 GB and hours of CPU). 5000 tracks cost ~0.2 GB and a few
seconds, and on a day of logs they hold most of the listen time; a track outside
them gets no row (the service falls back to the next recommender of the chain).

Output: ``i2i`` (default; each track's best ``B[i, j]``, served by ``i2i`` or
``contextual``, also for users the model never saw) or ``user`` (the user's row of
``X B``, served by ``indexed``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp
from botify.store.artifacts import Artifact
from botify.training.models.base import TrainData, model, topk_dense

KIND = "i2i"  # default output; "user" with output=user


@dataclass
class Params:
    """Size of the item set, the ridge penalty and the input weighting."""

    n_items: int = field(
        default=5000, metadata={"help": "most played tracks kept (the dense inverse is n^2)"}
    )
    reg: float = field(default=250.0, metadata={"help": "L2 penalty lambda on the diagonal"})
    output: str = field(
        default="i2i",
        metadata={"help": "i2i: item neighbours; user: per-user lists", "choices": ["i2i", "user"]},
    )
    min_time: float = field(
        default=0.0, metadata={"help": "plays listened less than this fraction are ignored"}
    )
    binary: bool = field(
        default=False, metadata={"help": "X is 1 where the user listened, not summed listen time"}
    )
    filter_listened: bool = field(
        default=False, metadata={"help": "drop tracks the user already listened to (output=user)"}
    )


def interaction_matrix(
    data: TrainData, min_time: float, n_items: int, binary: bool
) -> tuple[sp.csr_matrix, np.ndarray, np.ndarray]:
    """(users x kept tracks matrix, user ids of its rows, track ids of its columns).

    Kept tracks: the ``n_items`` with the most listen time, ties by id (deterministic).
    """
    t = np.where(data.time >= min_time, data.time, 0.0)
    pop = np.bincount(data.track, weights=t, minlength=data.n_tracks)
    order = np.lexsort((np.arange(len(pop)), -pop))
    items = np.sort(order[pop[order] > 0][:n_items])
    col = np.full(data.n_tracks, -1, dtype=np.int64)
    col[items] = np.arange(len(items))
    keep = (col[data.track] >= 0) & (t > 0)
    users, row = np.unique(data.user[keep], return_inverse=True)
    vals = np.ones(int(keep.sum())) if binary else t[keep]
    m = sp.coo_matrix((vals, (row, col[data.track[keep]])), shape=(len(users), len(items))).tocsr()
    m.sum_duplicates()
    if binary:
        m.data[:] = 1.0
    return m, users, items


def ease_weights(x: sp.csr_matrix, reg: float) -> np.ndarray:
    """The EASE item-item weights B (zero diagonal) of a users x items matrix."""
    if reg <= 0:
        raise ValueError("reg must be positive")
    from scipy.linalg import lapack

    g = (x.T @ x).toarray().astype(np.float64)
    g[np.diag_indices_from(g)] += reg
    # G is symmetric positive definite: a Cholesky inverse (potrf + potri) costs about
    # half of np.linalg.inv's LU and fills only the lower triangle, mirrored below.
    c, info = lapack.dpotrf(g, lower=True, overwrite_a=True)
    if info != 0:
        raise ValueError(f"X^T X + reg I is not positive definite (LAPACK info {info})")
    p, info = lapack.dpotri(c, lower=True, overwrite_c=True)
    if info != 0:
        raise ValueError(f"Cholesky inverse failed (LAPACK info {info})")
    p = np.tril(p) + np.tril(p, -1).T
    b = p / (-np.diag(p))  # column j divided by -P_jj
    b[np.diag_indices_from(b)] = 0.0
    return b


@model("ease", serves="i2i")
def fit(data: TrainData, params: Params, *, k: int, seed: int, chunk: int = 1024) -> Artifact:
    """Closed-form EASE on the top ``n_items`` tracks; deterministic (``seed`` unused)."""
    if params.output not in ("i2i", "user"):
        raise ValueError("output must be 'i2i' or 'user'")
    if params.n_items < 2:
        raise ValueError("n_items must be at least 2")
    from threadpoolctl import threadpool_limits

    x, users, items = interaction_matrix(data, params.min_time, params.n_items, params.binary)
    if x.nnz == 0 or len(items) < 2:
        return Artifact(params.output, lists={})
    with threadpool_limits(1, "blas"):  # one BLAS thread: same bytes on every machine
        b = ease_weights(x, params.reg)
    lists: dict[int, list[int]] = {}
    if params.output == "i2i":
        kk = min(k, len(items) - 1)
        for s in range(0, len(items), chunk):
            scores = b[s : s + chunk]
            excl = np.zeros(scores.shape, dtype=bool)
            excl[np.arange(scores.shape[0]), np.arange(s, s + scores.shape[0])] = True
            top = topk_dense(scores, kk, excl)
            for r, item in enumerate(items[s : s + chunk].tolist()):
                row = top[r][scores[r, top[r]] > 0]  # only tracks the model says go together
                if len(row):
                    lists[item] = items[row].tolist()
        return Artifact("i2i", lists=lists)
    for s in range(0, len(users), chunk):
        xs = x[s : s + chunk]
        scores = np.asarray(xs @ b)
        excl = xs.toarray() > 0 if params.filter_listened else None
        top = topk_dense(scores, k, excl)
        for r, u in enumerate(users[s : s + chunk].tolist()):
            row = top[r][np.take(scores[r], top[r]) > 0]
            if excl is not None:
                row = row[~excl[r, row]]
            if len(row):
                lists[u] = items[row].tolist()
    return Artifact("user", lists=lists)
