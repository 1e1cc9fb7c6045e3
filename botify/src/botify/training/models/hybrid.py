"""A hybrid factorisation with item features (LightFM-style), trained with torch on the CPU.

Why: plain matrix factorisation knows a track only by its id, so a track played a
few times has a noisy vector and a never-played one none at all. Here a track's
vector is the sum of the vectors of its features, as in LightFM: its id (only for
tracks the logs saw), its artist, each of its genres, its decade and its mood (all
from the public catalog). Tracks of one artist or genre share most of their vector,
so what the logs say about some of them carries over to the rest.

Why torch and not LightFM: the LightFM package builds from source (a C extension
compiled with -march=native, plus scikit-learn) and RecTools' wrapper of it comes
with RecTools' numpy<2/pandas<3 pins; the model itself is an embedding bag, a dot
product and a BPR loss, which torch (already the ``train`` extra's) does directly.

Score of track i for user u: ``<p_u, q_i> + b_i`` with ``q_i = sum_f w_if v_f`` and
``b_i = sum_f w_if c_f`` over the track's features (weights ``w`` sum to 1 per
track, LightFM's normalisation). Loss: BPR against ``negatives`` uniformly drawn
catalog tracks per positive (a positive is a (user, track) pair listened at least
``min_time``), L2 on the embeddings of the batch.

Output: ``user`` (default; the user's best tracks of the whole catalog, served by
``indexed``) or ``i2i`` (each track's nearest tracks by cosine of ``q``, served by
``i2i``/``contextual``; never-played tracks get rows too, from their features).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import scipy.sparse as sp
from botify.store.artifacts import Artifact
from botify.training.models.base import TrainData, model

KIND = "user"  # default output; "i2i" with output=i2i


@dataclass
class Params:
    """Features, embedding size and training schedule."""

    catalog: str = field(
        default="",
        metadata={"help": "public catalog.jsonl (item features); filled from --catalog",
                  "cli": False},
    )
    output: str = field(
        default="user",
        metadata={"help": "user: per-user lists; i2i: item neighbours", "choices": ["user", "i2i"]},
    )
    features: str = field(
        default="id,artist,genre,year,mood",
        metadata={"help": "comma-separated item features among id, artist, genre, year, mood"},
    )
    factors: int = field(default=32, metadata={"help": "embedding dimensions"})
    epochs: int = field(default=10, metadata={"help": "passes over the positives"})
    lr: float = field(default=0.02, metadata={"help": "Adam learning rate"})
    l2: float = field(default=1e-5, metadata={"help": "L2 penalty on the batch's embeddings"})
    negatives: int = field(default=4, metadata={"help": "sampled negative tracks per positive"})
    batch: int = field(default=2048, metadata={"help": "positives per step"})
    min_time: float = field(
        default=0.5, metadata={"help": "a (user, track) pair listened this much is a positive"}
    )
    filter_listened: bool = field(
        default=False, metadata={"help": "drop tracks the user already listened to (output=user)"}
    )
    threads: int = field(default=1, metadata={"help": "torch CPU threads (1 = reproducible)"})


FEATURES = ("id", "artist", "genre", "year", "mood")
_CATALOG_CACHE: dict[tuple[str, int, int], list[dict[str, Any]]] = {}


def read_catalog(path: str | Path) -> list[dict[str, Any]]:
    """The public catalog's rows (JSON lines with a ``track`` id), cached by mtime."""
    p = Path(path)
    if not str(path):
        raise ValueError("hybrid needs the public catalog for its item features: pass --catalog")
    if "hidden" in p.resolve().parts:
        raise ValueError(f"{p}: refusing to read the simulator's hidden files")
    st = os.stat(p)
    key = (str(p.resolve()), st.st_mtime_ns, st.st_size)
    if key not in _CATALOG_CACHE:
        rows = []
        with p.open("rb") as fh:
            for lineno, line in enumerate(fh, start=1):
                if not line.strip():
                    continue
                try:
                    row = orjson.loads(line)
                    row["track"] = int(row["track"])
                except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
                    raise ValueError(f"{p}:{lineno}: not a catalog line with a 'track' id") from None
                rows.append(row)
        _CATALOG_CACHE.clear()
        _CATALOG_CACHE[key] = rows
    return _CATALOG_CACHE[key]


def item_features(
    rows: list[dict[str, Any]], n_tracks: int, played: np.ndarray, use: tuple[str, ...]
) -> tuple[sp.csr_matrix, list[str]]:
    """(n_tracks x n_features matrix with rows summing to 1, feature names).

    ``id`` features exist only for ``played`` tracks; a track without any feature
    (unknown to the catalog, nothing selected) gets a shared ``none`` feature.
    """
    bad = sorted(set(use) - set(FEATURES))
    if bad:
        raise ValueError(f"unknown features {bad}; choose among {', '.join(FEATURES)}")
    names: dict[str, int] = {}
    r_idx: list[int] = []
    c_idx: list[int] = []

    def add(track: int, name: str) -> None:
        r_idx.append(track)
        c_idx.append(names.setdefault(name, len(names)))

    has = np.zeros(n_tracks, dtype=bool)
    if "id" in use:
        for t in np.flatnonzero(played).tolist():
            add(t, f"id:{t}")
            has[t] = True
    for row in rows:
        t = row["track"]
        if not 0 <= t < n_tracks:
            continue
        before = len(r_idx)
        if "artist" in use and row.get("artist"):
            add(t, f"artist:{row['artist']}")
        if "genre" in use:
            for g in row.get("genres") or []:
                add(t, f"genre:{g}")
        if "year" in use and isinstance(row.get("year"), int) and row["year"] > 0:
            add(t, f"decade:{row['year'] // 10 * 10}")
        if "mood" in use and row.get("mood"):
            add(t, f"mood:{row['mood']}")
        has[t] |= len(r_idx) > before
    for t in np.flatnonzero(~has).tolist():
        add(t, "none")
    m = sp.coo_matrix((np.ones(len(r_idx)), (r_idx, c_idx)), shape=(n_tracks, len(names))).tocsr()
    m.sum_duplicates()
    m.data[:] = 1.0
    m = sp.diags(1.0 / np.asarray(m.sum(axis=1)).ravel()) @ m
    return m.tocsr(), list(names)


def positives(data: TrainData, min_time: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(distinct (user row, track) positive pairs as two arrays, user ids of the rows).

    Only users with a positive get a row: a user who skipped everything would keep
    the random initial vector, and a list drawn from it is noise (the service falls
    back for users without a list).
    """
    keep = data.time >= min_time
    users, row = np.unique(data.user[keep], return_inverse=True)
    key = np.unique(row.astype(np.int64) * data.n_tracks + data.track[keep])
    return key // data.n_tracks, key % data.n_tracks, users


def _train(feat: sp.csr_matrix, pu: np.ndarray, pi: np.ndarray, n_users: int,
           params: Params, seed: int) -> tuple[Any, Any]:
    """(user vectors, per-track [q | b] vectors) as float32 tensors."""
    import torch

    n_tracks = feat.shape[0]
    offsets = torch.from_numpy(feat.indptr[:-1].astype(np.int64))
    fidx = torch.from_numpy(feat.indices.astype(np.int64))
    fw = torch.from_numpy(feat.data.astype(np.float32))
    emb = torch.nn.EmbeddingBag(feat.shape[1], params.factors + 1, mode="sum")
    users = torch.nn.Embedding(n_users, params.factors)
    with torch.no_grad():
        emb.weight.normal_(0.0, 0.1)
        emb.weight[:, -1] = 0.0  # the bias column
        users.weight.normal_(0.0, 0.1)
    opt = torch.optim.Adam([*emb.parameters(), *users.parameters()], lr=params.lr)
    rng = np.random.default_rng(seed)
    ptr = feat.indptr

    def items(ids: np.ndarray) -> Any:  # [q | b] of the given tracks
        starts, ends = ptr[ids], ptr[ids + 1]
        lens = ends - starts
        flat = np.repeat(starts - np.r_[0, np.cumsum(lens)[:-1]], lens) + np.arange(lens.sum())
        off = torch.from_numpy(np.r_[0, np.cumsum(lens)[:-1]].astype(np.int64))
        sel = torch.from_numpy(flat)
        return emb(fidx[sel], off, per_sample_weights=fw[sel])

    nb = params.negatives
    for _ in range(params.epochs):
        perm = rng.permutation(len(pu))
        for s in range(0, len(perm), params.batch):
            b = perm[s : s + params.batch]
            u = users(torch.from_numpy(pu[b]))
            pos = items(pi[b])
            neg = items(rng.integers(0, n_tracks, len(b) * nb)).view(len(b), nb, -1)
            sp_ = (u * pos[:, :-1]).sum(-1) + pos[:, -1]
            sn = (u[:, None, :] * neg[..., :-1]).sum(-1) + neg[..., -1]
            loss = -torch.nn.functional.logsigmoid(sp_[:, None] - sn).mean()
            loss = loss + params.l2 * (u.pow(2).sum() + pos.pow(2).sum() + neg.pow(2).sum()) / len(b)
            opt.zero_grad()
            loss.backward()
            opt.step()
    with torch.no_grad():
        allq = emb(fidx, offsets, per_sample_weights=fw)
    return users.weight.detach(), allq


@model("hybrid", serves="indexed")
def fit(data: TrainData, params: Params, *, k: int, seed: int, chunk: int = 1024) -> Artifact:
    """Train the feature factorisation (seeded, one thread), then rank tracks per user or track."""
    import torch

    if params.output not in ("user", "i2i"):
        raise ValueError("output must be 'user' or 'i2i'")
    for name in ("factors", "epochs", "negatives", "batch", "threads"):
        if getattr(params, name) < 1:
            raise ValueError(f"{name} must be >= 1")
    use = tuple(f.strip() for f in params.features.split(",") if f.strip())
    rows = read_catalog(params.catalog)
    pu, pi, user_ids = positives(data, params.min_time)
    if len(pu) == 0:
        return Artifact(params.output, lists={})
    played = np.bincount(pi, minlength=data.n_tracks) > 0
    feat, _ = item_features(rows, data.n_tracks, played, use)
    prev_threads = torch.get_num_threads()
    prev_det = torch.are_deterministic_algorithms_enabled()
    torch.set_num_threads(max(1, params.threads))
    torch.use_deterministic_algorithms(True)
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            uvec, qb = _train(feat, pu, pi, len(user_ids), params, seed)
        lists: dict[int, list[int]] = {}
        with torch.no_grad():
            if params.output == "user":
                q, bias = qb[:, :-1], qb[:, -1]
                seen = None
                if params.filter_listened:
                    seen = sp.csr_matrix((np.ones(len(pu)), (pu, pi)),
                                         shape=(len(user_ids), data.n_tracks))
                kk = min(k, data.n_tracks)
                for s in range(0, len(user_ids), chunk):
                    sc = uvec[s : s + chunk] @ q.T + bias
                    if seen is not None:
                        mask = torch.from_numpy(seen[s : s + chunk].toarray() > 0)
                        sc = sc.masked_fill(mask, float("-inf"))
                    vals, idx = torch.topk(sc, kk, dim=1, sorted=True)
                    ok = torch.isfinite(vals).numpy()
                    for r, u in enumerate(user_ids[s : s + chunk].tolist()):
                        lst = idx[r].numpy()[ok[r]]
                        if len(lst):
                            lists[u] = lst.tolist()
                return Artifact("user", lists=lists)
            q = torch.nn.functional.normalize(qb[:, :-1], dim=1)
            kk = min(k, data.n_tracks - 1)
            for s in range(0, data.n_tracks, chunk):
                sc = q[s : s + chunk] @ q.T
                n = sc.shape[0]
                sc[torch.arange(n), torch.arange(s, s + n)] = float("-inf")  # not itself
                _, idx = torch.topk(sc, kk, dim=1, sorted=True)
                for r, lst in enumerate(idx.numpy().tolist()):
                    lists[s + r] = lst
            return Artifact("i2i", lists=lists)
    finally:
        torch.set_num_threads(prev_threads)
        torch.use_deterministic_algorithms(prev_det)
