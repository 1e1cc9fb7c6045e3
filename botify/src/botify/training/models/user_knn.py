"""User-based kNN: a user gets what the listeners most like them listened to.

The neighbours come from ``implicit``'s nearest-neighbour models (cosine, TF-IDF or
BM25 weighting) fitted on the transposed matrix, so that its "items" are our users:
the library of the field does the all-pairs top-K; botify only turns logs into the
user x track matrix and the neighbours' listens into per-user lists.

Score of track j for user u: ``sum over the K most similar other users v of
sim(u, v) * X[v, j]`` with ``X`` the summed listen time (the user's own listens do not
count: u is not its own neighbour). Served by ``indexed`` (the user's first unplayed
entry); users absent from the logs fall back.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp
from botify.store.artifacts import Artifact
from botify.training.models.base import TrainData, model, topk_csr

KIND = "user"


@dataclass
class Params:
    """Neighbourhood size and similarity."""

    neighbours: int = field(default=50, metadata={"help": "most similar users that vote"})
    similarity: str = field(
        default="cosine",
        metadata={"help": "implicit's weighting: cosine, tfidf or bm25",
                  "choices": ["cosine", "tfidf", "bm25"]},
    )
    min_time: float = field(
        default=0.0, metadata={"help": "plays listened less than this fraction are ignored"}
    )
    filter_listened: bool = field(
        default=False, metadata={"help": "drop tracks the user already listened to"}
    )


def user_similarity(x: sp.csr_matrix, params: Params) -> sp.csr_matrix:
    """users x users similarity: each row's ``neighbours`` best other users (no diagonal)."""
    from implicit.nearest_neighbours import BM25Recommender, CosineRecommender, TFIDFRecommender
    from threadpoolctl import threadpool_limits

    if params.neighbours < 1:
        raise ValueError("neighbours must be >= 1")
    cls = {"cosine": CosineRecommender, "tfidf": TFIDFRecommender, "bm25": BM25Recommender}
    try:
        knn = cls[params.similarity](K=params.neighbours + 1, num_threads=1)  # +1: the user itself
    except KeyError:
        raise ValueError("similarity must be cosine, tfidf or bm25") from None
    with warnings.catch_warnings(), threadpool_limits(1, "blas"):
        warnings.simplefilter("ignore")  # implicit's BLAS-threads and CSR-conversion notices
        knn.fit(x.T.tocsr(), show_progress=False)  # columns of the input = our users
    s = knn.similarity.tocsr().astype(np.float64)
    s.setdiag(0.0)
    s.eliminate_zeros()
    return s


@model("user_knn", serves="indexed")
def fit(data: TrainData, params: Params, *, k: int, seed: int) -> Artifact:
    """Per-user lists voted by similar users; deterministic (``seed`` unused)."""
    from botify.training.models.mf import user_item_matrix

    x, users = user_item_matrix(data, params.min_time)
    if x.nnz == 0:
        return Artifact("user", lists={})
    x = x.astype(np.float64)
    s = user_similarity(x, params)
    scores = (s @ x).tocsr()
    scores.sort_indices()
    if params.filter_listened:
        seen = x.copy()
        seen.data[:] = 1.0
        scores = scores - scores.multiply(seen)  # zero scores are dropped by topk_csr
        scores.sort_indices()
    rows = np.arange(scores.shape[0], dtype=np.int64)
    by_row = topk_csr(rows, scores.indptr.astype(np.int64), scores.indices.astype(np.int64),
                      scores.data, k)
    return Artifact("user", lists={int(users[r]): lst for r, lst in by_row.items()})
