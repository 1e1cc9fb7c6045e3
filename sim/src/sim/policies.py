"""Reference policies for calibration and in-process evaluation (batched).

- random: uniform tracks (the course's first baseline);
- sticky_artist: a random track of the previous track's artist (the course's
  "sticky artist" recommender);
- same_genre: a random track of ANOTHER artist sharing the previous track's
  primary genre, from the public catalog only (the content baseline: genre
  tags are coarse, so it should beat random but not the artist or the
  co-listening structure);
- top_pop: a random unplayed track among the most played ones of a log;
- i2i: an item-to-item table learned from logged traffic (see I2IPolicy.fit);
- sequential: the same learned table used with the session's sequence: it
  continues from the last track the user liked (not a skipped one) and
  prefers unplayed tracks of artists the session has played least;
- oracle: an upper bound that reads the HIDDEN taste of the user; it is not a
  recommender anyone could build and is labelled as such everywhere.

Each is a callable `policy(engine) -> actions` for sim.batch.BatchEngine and
also has `recommend(user, track, time) -> track` for one request at a time.
"""

from __future__ import annotations

import numpy as np

from sim.batch import BatchEngine, EventLog
from sim.world import World


class RandomPolicy:
    name = "random"

    def __init__(self, world: World, seed: int = 0) -> None:
        self.n = world.n_tracks
        self.rng = np.random.default_rng(seed)

    def __call__(self, engine: BatchEngine) -> np.ndarray:
        return self.rng.integers(0, self.n, size=engine.user.size)

    def recommend(self, user: int, track: int, time: float) -> int:
        return int(self.rng.integers(self.n))


class StickyArtistPolicy:
    name = "sticky_artist"

    def __init__(self, world: World, seed: int = 0) -> None:
        self.off, self.tracks = world.artist_tracks()
        self.cnt = np.diff(self.off)
        self.artist = world.track_artist
        self.rng = np.random.default_rng(seed)

    def _pick(self, last: np.ndarray) -> np.ndarray:
        a = self.artist[last]
        return self.tracks[self.off[a] + (self.rng.random(last.size) * self.cnt[a]).astype(np.int64)]

    def __call__(self, engine: BatchEngine) -> np.ndarray:
        return self._pick(engine.last_track)

    def recommend(self, user: int, track: int, time: float) -> int:
        return int(self._pick(np.array([track]))[0])


class SameGenrePolicy:
    """A random track of another artist with the previous track's primary genre.

    Reads only the public catalog (`genres[0]` and the artist); tracks without a
    genre, or genres with a single artist, fall back to a random track. The
    "another artist" draw retries a few times and keeps a same-artist track only
    if every retry failed (rare outside tiny genres).
    """

    name = "same_genre"

    def __init__(self, world: World, seed: int = 0, retries: int = 8) -> None:
        self.n = world.n_tracks
        self.artist = world.track_artist
        labels = [g[0] if g else "" for g in world.track_genres]
        names, code = np.unique(np.array(labels, dtype=object).astype(str), return_inverse=True)
        code = code.astype(np.int64)
        self.code = code
        order = np.argsort(code, kind="stable")
        counts = np.bincount(code, minlength=len(names))
        self.off = np.zeros(len(names) + 1, dtype=np.int64)
        np.cumsum(counts, out=self.off[1:])
        self.tracks = order.astype(np.int64)
        self.cnt = counts
        # a genre is usable if it is a real tag and has more than one artist
        n_art = np.array([np.unique(self.artist[order[self.off[g]:self.off[g + 1]]]).size
                          for g in range(len(names))])
        self.ok = (n_art > 1) & (names != "")
        self.retries = retries
        self.rng = np.random.default_rng(seed)

    def _pick(self, last: np.ndarray) -> np.ndarray:
        last = np.asarray(last, dtype=np.int64)
        g = self.code[last]
        out = self.tracks[self.off[g] + (self.rng.random(last.size) * self.cnt[g]).astype(np.int64)]
        for _ in range(self.retries):
            bad = np.flatnonzero(self.artist[out] == self.artist[last])
            if bad.size == 0:
                break
            gb = g[bad]
            out[bad] = self.tracks[self.off[gb]
                                   + (self.rng.random(bad.size) * self.cnt[gb]).astype(np.int64)]
        ok = self.ok[g]
        if not ok.all():
            out = np.where(ok, out, self.rng.integers(0, self.n, size=last.size))
        return out

    def __call__(self, engine: BatchEngine) -> np.ndarray:
        return self._pick(engine.last_track)

    def recommend(self, user: int, track: int, time: float) -> int:
        return int(self._pick(np.array([track]))[0])


class I2IPolicy:
    """Item-to-item recommendations learned from logged traffic (artist co-listening).

    `table` (A, L) holds, per artist, related artists learned from the log
    (learn_i2i below; -1 = none). After track t it plays a random track
    of one of the `top` artists related to t's artist; tracks of artists the
    log never saw get a random track. Uses only the log and the public catalog.
    """

    name = "i2i"

    def __init__(self, world: World, table: np.ndarray, seed: int = 0, top: int = 10) -> None:
        self.n = world.n_tracks
        self.artist = world.track_artist
        self.off, self.tracks = world.artist_tracks()
        self.cnt = np.diff(self.off)
        self.table = np.asarray(table, dtype=np.int64)
        if self.table.ndim != 2 or self.table.shape[0] != world.n_artists:
            raise ValueError("i2i table must have one row per artist")
        self.len = (self.table >= 0).sum(axis=1)
        self.top = top
        self.rng = np.random.default_rng(seed)

    @classmethod
    def fit(cls, world: World, log: EventLog, seed: int = 0, top: int = 10,
            **kwargs) -> I2IPolicy:
        return cls(world, learn_i2i(world, log, seed=seed, **kwargs), seed=seed, top=top)

    def _pick(self, last: np.ndarray) -> np.ndarray:
        a = self.artist[last]
        n = np.minimum(self.len[a], self.top)
        r = (self.rng.random(last.size) * np.maximum(n, 1)).astype(np.int64)
        b = self.table[a, r]
        b = np.where(n > 0, b, 0)
        rec = self.tracks[self.off[b] + (self.rng.random(last.size) * self.cnt[b]).astype(np.int64)]
        fallback = self.rng.integers(0, self.n, size=last.size)
        return np.where(n > 0, rec, fallback)

    def __call__(self, engine: BatchEngine) -> np.ndarray:
        return self._pick(engine.last_track)

    def recommend(self, user: int, track: int, time: float) -> int:
        return int(self._pick(np.array([track]))[0])


def _played(engine: BatchEngine, cand: np.ndarray) -> np.ndarray:
    """(B, C) bool: candidate already played in the slot's session."""
    w = int(engine.hist_len.max()) if engine.hist_len.size else 0
    valid = (np.arange(w) < engine.hist_len[:, None])[:, None, :]
    return ((engine.hist[:, None, :w] == cand[:, :, None]) & valid).any(axis=2)


def _artist_count(engine: BatchEngine, cand: np.ndarray) -> np.ndarray:
    """(B, C) earlier plays in the session of each candidate's artist."""
    w = int(engine.hist_len.max()) if engine.hist_len.size else 0
    valid = (np.arange(w) < engine.hist_len[:, None])[:, None, :]
    art = engine.track_artist[cand]
    return ((engine.hist_art[:, None, :w] == art[:, :, None]) & valid).sum(axis=2)


class TopPopPolicy:
    """A random unplayed track among the `k` tracks most listened to in a log.

    "Listened" = the session's first tracks and the tracks played for at
    least `min_time` (the service's top_pop counts plays the same way).
    """

    name = "top_pop"

    def __init__(self, world: World, top: np.ndarray, seed: int = 0, tries: int = 4) -> None:
        self.top = np.asarray(top, dtype=np.int64)
        if self.top.size == 0:
            raise ValueError("top_pop needs at least one track")
        self.tries = tries
        self.rng = np.random.default_rng(seed)

    @classmethod
    def fit(cls, world: World, log: EventLog, seed: int = 0, k: int = 100,
            min_time: float = 0.5) -> TopPopPolicy:
        played = log.recommendation if log.played is None else log.played
        first = np.zeros(log.session.size, dtype=bool)
        first[np.unique(log.session, return_index=True)[1]] = True
        tracks = np.concatenate([log.track[first], played[log.reward >= min_time]])
        counts = np.bincount(tracks.astype(np.int64), minlength=world.n_tracks)
        order = np.lexsort((np.arange(world.n_tracks), -counts))
        return cls(world, order[:k], seed=seed)

    def __call__(self, engine: BatchEngine) -> np.ndarray:
        b = engine.user.size
        cand = self.top[(self.rng.random((b, self.tries)) * self.top.size).astype(np.int64)]
        ok = ~_played(engine, cand)
        first_ok = np.where(ok.any(axis=1), np.argmax(ok, axis=1), 0)
        return cand[np.arange(b), first_ok]

    def recommend(self, user: int, track: int, time: float) -> int:
        return int(self.top[int(self.rng.integers(self.top.size))])


class SequentialPolicy:
    """The learned artist table used with the session's sequence (a session model).

    It keeps, per session, an anchor: the last track listened to for at least
    `like` (a skipped recommendation does not move it). Candidates are tracks
    of the anchor's related artists (and the anchor's own artist); among
    `tries` of them it plays an unplayed one whose artist the session has
    played least. Uses only the log (through the table) and the session.
    """

    name = "sequential"

    def __init__(self, world: World, table: np.ndarray, seed: int = 0, top: int = 10,
                 tries: int = 6, like: float = 0.5) -> None:
        self.i2i = I2IPolicy(world, table, seed=seed, top=top)
        self.off, self.tracks = world.artist_tracks()
        self.cnt = np.diff(self.off)
        self.artist = world.track_artist
        self.tries = tries
        self.like = like
        self.rng = np.random.default_rng(seed + 1)
        self._anchor = np.zeros(0, dtype=np.int64)
        self._users: dict[int, int] = {}

    def _cands(self, anchor: np.ndarray) -> np.ndarray:
        cols = [self.i2i._pick(anchor) for _ in range(self.tries - 1)]
        a = self.artist[anchor]                     # one more from the anchor's own artist
        cols.append(self.tracks[self.off[a] + (self.rng.random(anchor.size)
                                                * self.cnt[a]).astype(np.int64)])
        return np.stack(cols, axis=1)

    def __call__(self, engine: BatchEngine) -> np.ndarray:
        sid = engine.session_id
        if sid.size and int(sid.max()) >= self._anchor.size:
            self._anchor = np.resize(self._anchor, max(2 * self._anchor.size, int(sid.max()) + 1))
        fresh = engine.steps == 0
        liked = fresh | (engine.last_time >= self.like)
        self._anchor[sid[liked]] = engine.last_track[liked]
        anchor = self._anchor[sid]
        cand = self._cands(anchor)
        score = _artist_count(engine, cand) + 100 * _played(engine, cand)
        return cand[np.arange(cand.shape[0]), np.argmin(score, axis=1)]

    def recommend(self, user: int, track: int, time: float) -> int:
        if time >= self.like or user not in self._users:
            self._users[user] = int(track)
        return int(self._cands(np.array([self._users[user]]))[0, 0])


class OraclePolicy:
    """ORACLE (upper bound, reads hidden state): greedy best expected listen time.

    Among the `pool` tracks nearest to the session's hidden interest it picks
    the unplayed one with the highest sigmoid(...) * gamma^k for the current
    taste, i.e. it knows the user model exactly. Not a buildable recommender.
    """

    name = "oracle"

    def __init__(self, world: World, pool: int = 100) -> None:
        self.world = world
        self.pool = pool
        self._row: np.ndarray | None = None
        self._table: np.ndarray | None = None
        self._lazy: dict[int, np.ndarray] = {}

    def _candidates(self, interest: np.ndarray) -> np.ndarray:
        w = self.world
        if self._row is None:
            row, table = w.interest_neighbours(self.pool) if len(np.unique(w.interests)) \
                * w.n_tracks <= 4e10 else (None, None)
            self._row, self._table = row, table
        if self._table is not None:
            return self._table[self._row[interest]]
        missing = [t for t in np.unique(interest).tolist() if t not in self._lazy]
        if missing:
            for t, r in zip(missing, w.nearest(w.embeddings[missing], self.pool), strict=True):
                self._lazy[t] = r
        return np.stack([self._lazy[t] for t in interest.tolist()])

    def __call__(self, engine: BatchEngine) -> np.ndarray:
        cand = self._candidates(engine.interest).astype(np.int64)         # (B, C)
        emb = engine.emb
        x = np.einsum("bcd,bd->bc", emb[cand], engine.taste).astype(np.float64)
        m = engine.model
        if m.boost is not None:
            x += m.boost[cand]
        v = 1.0 / (1.0 + np.exp(-(x - engine.bias[:, None]) * engine.sharp[:, None]))
        w = int(engine.hist_len.max())
        valid = (np.arange(w) < engine.hist_len[:, None])[:, None, :]
        played = ((engine.hist[:, None, :w] == cand[:, :, None]) & valid).any(axis=2)
        art = engine.track_artist[cand]
        k = ((engine.hist_art[:, None, :w] == art[:, :, None]) & valid).sum(axis=2)
        score = v * engine.gamma[:, None] ** k
        score[played] = -1.0
        return cand[np.arange(cand.shape[0]), np.argmax(score, axis=1)]


def make_policy(name: str, world: World, seed: int = 0, **kwargs):
    """Build a reference policy by name (i2i needs `log=` logged traffic)."""
    if name == "random":
        return RandomPolicy(world, seed)
    if name == "sticky_artist":
        return StickyArtistPolicy(world, seed)
    if name == "same_genre":
        return SameGenrePolicy(world, seed)
    if name == "oracle":
        return OraclePolicy(world, **kwargs)
    if name == "i2i":
        return I2IPolicy.fit(world, kwargs.pop("log"), seed=seed, **kwargs)
    if name == "top_pop":
        return TopPopPolicy.fit(world, kwargs.pop("log"), seed=seed, **kwargs)
    if name == "sequential":
        return SequentialPolicy(world, learn_i2i(world, kwargs.pop("log"), seed=seed), seed=seed,
                                **kwargs)
    raise ValueError(f"unknown policy {name!r} (random, same_genre, top_pop, sticky_artist, i2i, "
                     "sequential, oracle)")


# ------------------------------------------------------------- i2i learning


def _artist_pairs(world: World, log: EventLog, min_time: float) -> tuple[np.ndarray, ...]:
    """Weighted artist co-occurrence pairs within per-user baskets."""
    ta = world.track_artist.astype(np.int64)
    # each session's first logged step has the session's first track as `track`
    first = np.zeros(log.session.size, dtype=bool)
    first[np.unique(log.session, return_index=True)[1]] = True
    pos = log.reward >= min_time
    played = log.recommendation if log.played is None else log.played
    key = np.concatenate([log.user[first], log.user[pos]])
    art = np.concatenate([ta[log.track[first]], ta[played[pos]]])
    wgt = np.concatenate([np.ones(int(first.sum())), log.reward[pos]])
    o = np.lexsort((art, key))
    key, art, wgt = key[o], art[o], wgt[o]
    starts = np.flatnonzero(np.r_[True, key[1:] != key[:-1]])
    sizes = np.diff(np.r_[starts, key.size])
    ii, jj, ww = [], [], []
    for z in np.unique(sizes):
        if z < 2:
            continue
        idx = starts[sizes == z][:, None] + np.arange(z)
        cap = min(z, 64)                      # very long baskets: first 64 items
        idx = idx[:, :cap]
        a = np.repeat(idx, cap, axis=1)
        b = np.tile(idx, (1, cap))
        keep = a != b
        ii.append(art[a[keep]])
        jj.append(art[b[keep]])
        ww.append(wgt[a[keep]] * wgt[b[keep]])
    n_art = world.n_artists
    if not ii:
        return (np.zeros(0, np.int64),) * 2 + (np.zeros(0),)
    ii, jj, ww = np.concatenate(ii), np.concatenate(jj), np.concatenate(ww)
    diff = ii != jj
    u, inv = np.unique(ii[diff] * n_art + jj[diff], return_inverse=True)
    return u // n_art, u % n_art, np.bincount(inv, weights=ww[diff])


def _spmm(rows: np.ndarray, cols: np.ndarray, vals: np.ndarray, dense: np.ndarray,
          n: int) -> np.ndarray:
    """Sparse (COO, rows sorted) times dense, numpy only."""
    out = np.zeros((n, dense.shape[1]), dtype=np.float64)
    if rows.size == 0:
        return out
    contrib = vals[:, None] * dense[cols]
    starts = np.flatnonzero(np.r_[True, rows[1:] != rows[:-1]])
    out[rows[starts]] = np.add.reduceat(contrib, starts, axis=0)
    return out


def learn_i2i(world: World, log: EventLog, *, min_time: float = 0.5, rank: int = 64,
              n_related: int = 20, seed: int = 0) -> np.ndarray:
    """(A, n_related) related artists per artist (-1 = artist unseen in the log)."""
    n_art = world.n_artists
    pi, pj, s = _artist_pairs(world, log, min_time)
    table = np.full((n_art, n_related), -1, dtype=np.int32)
    if pi.size == 0:
        return table
    deg = np.bincount(pi, weights=s, minlength=n_art) + 1.0
    v = s / np.sqrt(deg[pi] * deg[pj])
    rng = np.random.default_rng(seed)
    r = min(rank, n_art - 1)
    q = rng.standard_normal((n_art, min(r + 10, n_art)))
    for _ in range(4):                                  # randomised subspace iteration
        q, _ = np.linalg.qr(_spmm(pi, pj, v, q, n_art))
    small = q.T @ _spmm(pi, pj, v, q, n_art)
    ev, vec = np.linalg.eigh((small + small.T) / 2)
    top = np.argsort(-ev)[:r]
    emb = q @ vec[:, top] * np.sqrt(np.maximum(ev[top], 0.0))
    emb /= np.linalg.norm(emb, axis=1, keepdims=True) + 1e-12
    seen = np.zeros(n_art, dtype=bool)
    seen[pi] = True
    cand = np.flatnonzero(seen)
    k = min(n_related, cand.size - 1)
    if k < 1:
        return table
    for s0 in range(0, cand.size, 1024):
        rows = cand[s0:s0 + 1024]
        sc = emb[rows] @ emb[cand].T
        sc[cand[None, :] == rows[:, None]] = -np.inf
        part = np.argpartition(-sc, k - 1, axis=1)[:, :k]
        val = np.take_along_axis(sc, part, axis=1)
        part = np.take_along_axis(part, np.lexsort((part, -val), axis=1), axis=1)
        table[rows, :k] = cand[part]
    return table


# ---------------------------------------------------------------- harness
