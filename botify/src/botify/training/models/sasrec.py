"""A small SASRec-style next-track model (causal self-attention over the session), PyTorch CPU.

Training: every session is cut into windows of ``max_len`` inputs; at each position
the model predicts the next track with a softmax over the catalog (full up to 20k
tracks, else sampled against ``negatives`` tracks shared by the batch), each target
weighted by how much of it was listened (``time_weight``), so skipped tracks do not
count as positives.

Artifact (the service looks tables up by a key, it does not run the network):

- ``output=i2i`` (default): for every played track ``a``, the model scores up to
  ``contexts`` of the most recent real contexts that ended in ``a`` (the session so far,
  at most ``max_len`` tracks) plus the bare context ``[a]``; the next-track
  probabilities are averaged and the top-k (excluding ``a``) become ``a``'s list.
  This keeps what the sequence model learned about typical paths into ``a`` while
  staying servable by the per-track ``i2i``/``contextual`` recommenders.
- ``output=user``: each user's latest session (last ``max_len`` tracks) is scored once;
  the top-k become the user's list for the ``indexed`` recommender.

Only tracks that were played in the training data are recommended (the others have
untrained embeddings). Import torch lazily: the rest of botify works without it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from botify.store.artifacts import Artifact
from botify.training.models.base import TrainData, model

KIND = "i2i"


@dataclass
class Params:
    """Model size and training schedule (defaults sized for a 2-core CPU)."""

    max_len: int = field(default=20, metadata={"help": "longest input sequence"})
    dim: int = field(default=64, metadata={"help": "embedding width"})
    heads: int = field(default=2, metadata={"help": "attention heads"})
    layers: int = field(default=2, metadata={"help": "transformer blocks"})
    dropout: float = field(default=0.1, metadata={"help": "dropout rate"})
    epochs: int = field(default=5, metadata={"help": "passes over the training windows"})
    batch_size: int = field(default=128, metadata={"help": "windows per step"})
    lr: float = field(default=2e-3, metadata={"help": "Adam learning rate"})
    weight_decay: float = field(default=0.0, metadata={"help": "AdamW weight decay"})
    time_weight: bool = field(
        default=True, metadata={"help": "weight each target by its listen time"}
    )
    output: str = field(
        default="i2i",
        metadata={"help": "i2i: per-track lists; user: per-user lists", "choices": ["i2i", "user"]},
    )
    contexts: int = field(
        default=8, metadata={"help": "recent contexts averaged per track (output=i2i)"}
    )
    negatives: int = field(
        default=-1,
        metadata={"help": "sampled-softmax negatives per batch; 0 = full softmax; "
                  "-1 = full up to 20k tracks, else 2048"},
    )
    threads: int = field(default=1, metadata={"help": "torch CPU threads (1 = reproducible)"})


def _windows(data: TrainData, max_len: int) -> tuple[np.ndarray, np.ndarray]:
    """Training windows: (row index of each window's first input, number of inputs)."""
    b = data.session_bounds()
    starts_s, ends_s = b[:-1], b[1:]
    lens = ends_s - starts_s
    n_chunks = np.where(lens >= 2, -(-(lens - 1) // max_len), 0)
    sess = np.repeat(np.arange(len(lens)), n_chunks)
    first = np.repeat(np.cumsum(n_chunks) - n_chunks, n_chunks)
    c = np.arange(len(sess)) - first
    start = starts_s[sess] + c * max_len
    n_in = np.minimum(max_len, ends_s[sess] - start - 1)
    return start.astype(np.int64), n_in.astype(np.int64)


def _context_windows(
    data: TrainData, rows: np.ndarray, max_len: int
) -> tuple[np.ndarray, np.ndarray]:
    """Contexts ending at ``rows``: (row of the context's first track, context length)."""
    b = data.session_bounds()
    sess_start = b[:-1][data.session[rows]]
    first = np.maximum(sess_start, rows - max_len + 1)
    return first, rows - first + 1


def _gather(
    tokens: np.ndarray, first: np.ndarray, length: np.ndarray, max_len: int
) -> np.ndarray:
    """Left-aligned token matrix (pad 0 on the right) of the given row windows."""
    j = np.arange(max_len)
    idx = first[:, None] + j[None, :]
    valid = j[None, :] < length[:, None]
    out = np.zeros((len(first), max_len), dtype=tokens.dtype)
    out[valid] = tokens[idx[valid]]
    return out


def _build_model(n_items: int, p: Params) -> Any:
    import torch
    from torch import nn

    class SASRec(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.item = nn.Embedding(n_items + 1, p.dim, padding_idx=0)
            self.pos = nn.Embedding(p.max_len, p.dim)
            layer = nn.TransformerEncoderLayer(
                p.dim, p.heads, 2 * p.dim, p.dropout, batch_first=True, norm_first=True
            )
            self.enc = nn.TransformerEncoder(layer, p.layers, enable_nested_tensor=False)
            self.norm = nn.LayerNorm(p.dim)
            self.drop = nn.Dropout(p.dropout)
            mask = torch.triu(torch.ones(p.max_len, p.max_len, dtype=torch.bool), diagonal=1)
            self.register_buffer("causal", mask, persistent=False)
            # Small init: the output layer is tied to the item table, and N(0, 1) embeddings
            # give logits in the tens and a diverging first epoch.
            nn.init.normal_(self.item.weight, std=0.02)
            nn.init.normal_(self.pos.weight, std=0.02)
            with torch.no_grad():
                self.item.weight[0].zero_()

        def forward(self, seq: torch.Tensor) -> torch.Tensor:
            t = seq.shape[1]
            h = self.item(seq) + self.pos.weight[:t][None]
            # Right padding + causal mask: real positions never attend to padding, so
            # no key-padding mask is needed (and no all-masked rows can produce NaN).
            h = self.enc(self.drop(h), mask=self.causal[:t, :t])
            return self.norm(h)

        def scores(self, h: torch.Tensor) -> torch.Tensor:
            return h @ self.item.weight[1:].T

    return SASRec()


@model("sasrec", serves="i2i")
def fit(
    data: TrainData, params: Params, *, k: int, seed: int, progress: bool | str = True
) -> Artifact:
    """Train on the session windows, then tabulate next-track lists (see module doc).

    ``progress``: a bar per epoch with its mean loss so far, so a student sees how far a
    run of several minutes is and whether it still learns; a string labels the bars
    (``botify train`` fits twice: once for the offline evaluation, once on all logs).
    """
    import torch
    from tqdm.auto import tqdm

    p = params
    if p.output not in ("i2i", "user"):
        raise ValueError("output must be 'i2i' or 'user'")
    if p.dim % p.heads:
        raise ValueError("dim must be a multiple of heads")
    tokens = data.track + 1  # 0 is padding
    start, n_in = _windows(data, p.max_len)
    if len(start) == 0:
        raise ValueError("no session has two or more tracks: nothing to learn from")
    x_all = _gather(tokens, start, n_in, p.max_len)
    y_all = _gather(tokens, start + 1, n_in, p.max_len)
    w_src = data.time if p.time_weight else np.ones_like(data.time)
    w_all = _gather(w_src, start + 1, n_in, p.max_len).astype(np.float32)
    w_all[y_all == 0] = 0.0
    played = np.bincount(data.track, minlength=data.n_tracks) > 0
    played_ids = np.flatnonzero(played)
    n_neg = p.negatives if p.negatives >= 0 else (0 if data.n_tracks <= 20_000 else 2048)

    prev_threads = torch.get_num_threads()
    prev_det = torch.are_deterministic_algorithms_enabled()
    torch.set_num_threads(max(1, p.threads))
    torch.use_deterministic_algorithms(True)
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = _build_model(data.n_tracks, p)
            opt = torch.optim.AdamW(model.parameters(), lr=p.lr, weight_decay=p.weight_decay)
            rng = np.random.default_rng(seed)
            x_t, y_t, w_t = map(torch.from_numpy, (x_all, y_all, w_all))
            n_batches = -(-len(x_all) // p.batch_size)
            label = progress if isinstance(progress, str) else "sasrec"
            model.train()
            for epoch in range(p.epochs):
                bar = tqdm(total=n_batches, desc=f"{label}: epoch {epoch + 1}/{p.epochs}",
                           unit="batch", disable=not progress)
                loss_sum, loss_n = 0.0, 0
                perm = torch.from_numpy(rng.permutation(len(x_all)))
                for bi in range(n_batches):
                    idx = perm[bi * p.batch_size : (bi + 1) * p.batch_size]
                    xb, yb, wb = x_t[idx], y_t[idx], w_t[idx]
                    h = model(xb)
                    tgt = (yb - 1).clamp(min=0)
                    if n_neg == 0:
                        logits = model.scores(h).reshape(-1, data.n_tracks)
                        target = tgt.reshape(-1)
                    else:
                        # sampled softmax: the positive against negatives shared by the batch
                        neg = torch.from_numpy(rng.choice(played_ids, n_neg))
                        emb = model.item.weight[1:]
                        pos = (h * emb[tgt]).sum(-1, keepdim=True)
                        logits = torch.cat([pos, h @ emb[neg].T], dim=-1)
                        # a sampled "negative" equal to the positive is not a negative
                        clash = torch.cat([torch.zeros_like(pos, dtype=torch.bool),
                                           neg[None, None, :] == tgt[..., None]], dim=-1)
                        logits = logits.masked_fill(clash, float("-inf"))
                        logits = logits.reshape(-1, n_neg + 1)
                        target = torch.zeros(logits.shape[0], dtype=torch.long)
                    loss_all = torch.nn.functional.cross_entropy(logits, target, reduction="none")
                    wsum = wb.sum()
                    if wsum <= 0:
                        bar.update()
                        continue
                    loss = (loss_all * wb.reshape(-1)).sum() / wsum
                    opt.zero_grad()
                    loss.backward()
                    opt.step()
                    loss_sum, loss_n = loss_sum + loss.item(), loss_n + 1
                    bar.update()
                    bar.set_postfix(loss=f"{loss_sum / loss_n:.3f}", refresh=False)
                bar.close()
            model.eval()
            with torch.no_grad():
                if p.output == "user":
                    return _tabulate_users(model, data, tokens, played, p, k)
                return _tabulate_items(model, data, tokens, played, p, k,
                                       bar=f"{label}: next-track lists" if progress else None)
    finally:
        torch.set_num_threads(prev_threads)
        torch.use_deterministic_algorithms(prev_det)


def _last_scores(model: Any, seqs: np.ndarray, lengths: np.ndarray, batch: int = 512) -> Any:
    """Log-probabilities of the next track after each sequence (rows x n_tracks)."""
    import torch

    out = []
    for s in range(0, len(seqs), batch):
        xb = torch.from_numpy(seqs[s : s + batch])
        h = model(xb)
        last = torch.from_numpy(lengths[s : s + batch] - 1)
        hl = h[torch.arange(len(xb)), last]
        out.append(torch.log_softmax(model.scores(hl), dim=-1))
    return torch.cat(out)


def _topk_masked(scores: Any, k: int, mask: Any) -> np.ndarray:
    import torch

    s = scores.masked_fill(mask, float("-inf"))
    kk = min(k, s.shape[1])
    vals, idx = torch.topk(s, kk, dim=1, sorted=True)
    idx = idx.numpy()
    ok = torch.isfinite(vals).numpy()
    return np.where(ok, idx, -1)


def _tabulate_items(
    model: Any, data: TrainData, tokens: np.ndarray, played: np.ndarray, p: Params, k: int,
    bar: str | None = None,
) -> Artifact:
    import torch
    from tqdm.auto import tqdm

    items = np.flatnonzero(played)
    # Most recent occurrences of each track (by timestamp when known, else log order).
    when = data.timestamp if data.timestamp is not None else np.arange(len(data))
    order = np.lexsort((-np.arange(len(data)), -when, data.track))
    tr = data.track[order]
    grp_start = np.flatnonzero(np.r_[True, tr[1:] != tr[:-1]])
    counts = np.diff(np.r_[grp_start, len(tr)])
    rank = np.arange(len(tr)) - np.repeat(grp_start, counts)
    rows = order[rank < p.contexts]
    first, length = _context_windows(data, rows, p.max_len)
    owner = data.track[rows]
    # plus the bare [a] context for every played track
    ctx = np.concatenate([_gather(tokens, first, length, p.max_len),
                          _gather(items + 1, np.arange(len(items)), np.ones(len(items), dtype=np.int64), p.max_len)])
    ctx_len = np.concatenate([length, np.ones(len(items), dtype=np.int64)])
    owner = np.concatenate([owner, items])
    srt = np.argsort(owner, kind="stable")
    ctx, ctx_len, owner = ctx[srt], ctx_len[srt], owner[srt]
    pos_of = np.full(data.n_tracks, -1, dtype=np.int64)
    pos_of[items] = np.arange(len(items))
    not_played = torch.from_numpy(~played)
    lists: dict[int, list[int]] = {}
    chunk = 256  # owners per chunk
    bounds = np.searchsorted(owner, items)
    bounds = np.r_[bounds, len(owner)]
    # a full softmax per context: on 50k tracks this takes as long as the epochs, so it
    # gets its own bar (a silent minute looks like a hang)
    progress = tqdm(total=len(items), desc=bar, unit="track", disable=bar is None)
    for c0 in range(0, len(items), chunk):
        c1 = min(c0 + chunk, len(items))
        lo, hi = bounds[c0], bounds[c1]
        logp = _last_scores(model, ctx[lo:hi], ctx_len[lo:hi])
        probs = torch.exp(logp)
        local = torch.from_numpy(pos_of[owner[lo:hi]] - c0)
        acc = torch.zeros(c1 - c0, data.n_tracks, dtype=probs.dtype)
        acc.index_add_(0, local, probs)
        mask = not_played[None, :].repeat(c1 - c0, 1)
        mask[torch.arange(c1 - c0), torch.from_numpy(items[c0:c1])] = True  # not itself
        top = _topk_masked(acc, k, mask)
        for r, a in enumerate(items[c0:c1].tolist()):
            row = top[r][top[r] >= 0]
            if len(row):
                lists[a] = row.tolist()
        progress.update(c1 - c0)
    progress.close()
    return Artifact("i2i", lists=lists)


def _tabulate_users(
    model: Any, data: TrainData, tokens: np.ndarray, played: np.ndarray, p: Params, k: int
) -> Artifact:
    import torch

    # each user's latest session: the one holding the user's latest event
    when = data.timestamp if data.timestamp is not None else np.arange(len(data))
    order = np.lexsort((np.arange(len(data)), when, data.user))
    u_sorted = data.user[order]
    last_of_user = order[np.r_[u_sorted[1:] != u_sorted[:-1], True]]
    # the last row of that session (sessions are contiguous and step-ordered)
    b = data.session_bounds()
    last_rows = b[1:][data.session[last_of_user]] - 1
    first, length = _context_windows(data, last_rows, p.max_len)
    seqs = _gather(tokens, first, length, p.max_len)
    logp = _last_scores(model, seqs, length)
    mask = torch.from_numpy(~played)[None, :].repeat(len(seqs), 1)
    top = _topk_masked(logp, k, mask)
    lists = {}
    for r, u in enumerate(data.user[last_of_user].tolist()):
        row = top[r][top[r] >= 0]
        if len(row):
            lists[u] = row.tolist()
    return Artifact("user", lists=lists)
