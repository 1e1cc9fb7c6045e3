"""Batched engine: many sessions advanced per call with numpy.

The same rules as sim.model.Session, vectorised over B concurrent sessions
(slots). A finished slot immediately starts the next queued session, so a
recommender that answers in batches sees a steady batch of B requests. Results
are deterministic in (seed, B, policy). Used by the calibration harness, the
benchmarks and any in-process evaluation of batch recommenders.

A policy is any callable `policy(engine) -> actions` returning one track id per
live slot; it may read the public per-slot state `user`, `last_track`,
`last_time`, `steps`, and (for history-aware policies) `hist`/`hist_len`.
`taste`, `interest` and `budget` are hidden state: only an oracle may use them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from sim.model import UserModel

Policy = Callable[["BatchEngine"], np.ndarray]


@dataclass
class SessionResults:
    """Per-session outcomes, in session (queue) order."""

    users: np.ndarray      # (S,) int64
    rewards: np.ndarray    # (S,) float64: session length = sum of listen times
    steps: np.ndarray      # (S,) int64: recommendations made
    truncated: np.ndarray  # (S,) bool: hit max_session_steps

    def summary(self) -> dict:
        n = len(self.rewards)
        se = float(self.rewards.std(ddof=1) / np.sqrt(n)) if n > 1 else float("nan")
        return {"sessions": n, "mean_reward": float(self.rewards.mean()) if n else float("nan"),
                "se_reward": se, "mean_steps": float(self.steps.mean()) if n else float("nan")}


@dataclass
class EventLog:
    """Logged traffic: one row per step (what a service would see in /next)."""

    session: np.ndarray    # (E,) session index
    user: np.ndarray       # (E,) user
    track: np.ndarray      # (E,) track just played (the request's "track")
    time: np.ndarray       # (E,) its listen time (the request's "time")
    recommendation: np.ndarray  # (E,) the track recommended
    reward: np.ndarray     # (E,) the listen time of the track played this step
    played: np.ndarray | None = None  # (E,) the track played: the recommendation or an own pick


class BatchEngine:
    """B concurrent sessions over one UserModel, advanced together."""

    def __init__(self, model: UserModel, n_parallel: int = 4096,
                 rng: np.random.Generator | None = None, *, seed: int | None = None) -> None:
        if n_parallel < 1:
            raise ValueError("n_parallel must be >= 1")
        if rng is None:
            rng = np.random.default_rng(seed)
        self.model = model
        self.rng = rng
        self.B = int(n_parallel)
        w = model.world
        self.emb = w.embeddings
        self.track_artist = w.track_artist
        self.n_tracks = w.n_tracks
        self._off = w.interest_offsets
        self._cnt = np.diff(w.interest_offsets)
        self._k = model._k
        self._state_size = 0

    # ------------------------------------------------------------ state
    def _alloc(self, b: int, h: int = 16) -> None:
        d = self.emb.shape[1]
        self.session_id = np.zeros(b, dtype=np.int64)
        self.user = np.zeros(b, dtype=np.int64)
        self.interest = np.zeros(b, dtype=np.int64)
        self.taste = np.zeros((b, d), dtype=np.float32)
        self.bias = np.zeros(b)
        self.sharp = np.zeros(b)
        self.gamma = np.zeros(b)
        self.budget = np.zeros(b, dtype=np.int64)
        self.steps = np.zeros(b, dtype=np.int64)
        self.reward = np.zeros(b)
        self.last_track = np.zeros(b, dtype=np.int64)
        self.last_time = np.zeros(b)
        self.hist = np.zeros((b, h), dtype=np.int32)
        self.hist_art = np.zeros((b, h), dtype=np.int32)
        self.hist_len = np.zeros(b, dtype=np.int64)
        self.hbase = np.zeros(b)

    _ARRAYS = ("session_id", "user", "interest", "taste", "bias", "sharp", "gamma", "budget",
               "steps", "reward", "last_track", "last_time", "hist", "hist_art", "hist_len",
               "hbase")

    def _keep(self, mask: np.ndarray) -> None:
        for name in self._ARRAYS:
            setattr(self, name, getattr(self, name)[mask])

    def _start(self, slots: np.ndarray, users: np.ndarray, ids: np.ndarray) -> None:
        """Start sessions for `users` in `slots` (vectorised session start)."""
        m = self.model
        rng = self.rng
        n = slots.size
        it = m.world.interests[self._off[users]
                               + (rng.random(n) * self._cnt[users]).astype(np.int64)]
        cand = m.first_candidates_batch(it)
        pick = (rng.random(n) * self._k[users]).astype(np.int64)
        first = cand[np.arange(n), pick].astype(np.int64)
        self.session_id[slots] = ids
        self.user[slots] = users
        self.interest[slots] = it
        self.taste[slots] = self.emb[it]
        self.bias[slots] = m._bias[users]
        self.sharp[slots] = m._sharp[users]
        self.gamma[slots] = m._gamma[users]
        self.budget[slots] = m._budget[users]
        self.hbase[slots] = m._hbase[users]
        self.steps[slots] = 0
        self.reward[slots] = 0.0
        self.last_track[slots] = first
        self.last_time[slots] = 1.0
        self.hist[slots, 0] = first
        self.hist_art[slots, 0] = self.track_artist[first]
        self.hist_len[slots] = 1

    # ------------------------------------------------------------- step
    def listen(self, actions: np.ndarray) -> np.ndarray:
        """Apply one recommendation per live slot; returns listen times (B,)."""
        a = np.asarray(actions)
        b = self.user.size
        if a.shape != (b,):
            raise ValueError(f"policy returned shape {a.shape}, expected ({b},)")
        if not np.issubdtype(a.dtype, np.integer):
            raise ValueError("policy must return integer track ids")
        if b and (a.min() < 0 or a.max() >= self.n_tracks):
            raise ValueError(f"policy returned a track outside 0..{self.n_tracks - 1}")
        a = a.astype(np.int64, copy=False)
        m = self.model
        p = m.params
        rng = self.rng
        if p.own_pick_prob:
            own = np.flatnonzero(rng.random(b) < p.own_pick_prob)
            if own.size:
                u = self.user[own]
                it = m.world.interests[self._off[u]
                                       + (rng.random(own.size) * self._cnt[u]).astype(np.int64)]
                pick = (rng.random(own.size) * self._k[u]).astype(np.int64)
                a = a.copy()
                if m.eager:   # one gather instead of whole neighbour rows
                    a[own] = m._nn_table[m._nn_row[it], pick]
                else:
                    a[own] = m.first_candidates_batch(it)[np.arange(own.size), pick]
        self.played = a
        art = self.track_artist[a]
        w = int(self.hist_len.max()) if b else 0
        valid = np.arange(w) < self.hist_len[:, None]
        rep = ((self.hist[:, :w] == a[:, None]) & valid).any(axis=1)
        k = ((self.hist_art[:, :w] == art[:, None]) & valid).sum(axis=1)
        x = np.einsum("ij,ij->i", self.emb[a], self.taste).astype(np.float64)
        if m.boost is not None:
            x += m.boost[a]
        z = (x - self.bias) * self.sharp
        v = 1.0 / (1.0 + np.exp(-z))
        t = np.rint(v * self.gamma ** k * 100.0) / 100.0
        t[rep] = 0.0
        if p.skip_prob:
            sk = rng.random(b) < p.skip_prob
            t[sk] = np.rint(t[sk] * p.skip_keep * 100.0) / 100.0
        if m.hazard:
            self.budget[rng.random(b) < self.hbase + p.end_quality * (1.0 - t)] = 0
        else:
            self.budget -= rng.random(b) >= t
        self.steps += 1
        self.reward += t
        self.last_track = a.copy()   # slots restarted later overwrite these in place
        self.last_time = t.copy()
        # a repeat is recorded too when it counts as a play of its artist (course
        # rule): the repeat test above is unchanged by a duplicate in `hist`
        new = np.arange(b) if p.repeat_counts_artist_play else np.flatnonzero(~rep)
        if new.size:
            if w >= self.hist.shape[1]:
                grow = self.hist.shape[1]
                self.hist = np.pad(self.hist, ((0, 0), (0, grow)))
                self.hist_art = np.pad(self.hist_art, ((0, 0), (0, grow)))
            pos = self.hist_len[new]
            self.hist[new, pos] = a[new]
            self.hist_art[new, pos] = art[new]
            self.hist_len[new] += 1
            if m.params.taste_drift:
                moved = new[(t[new] > 0) & ~rep[new]]
                if moved.size:
                    s = (m.params.drift_rate * t[moved])[:, None].astype(np.float32)
                    v2 = (1.0 - s) * self.taste[moved] + s * self.emb[a[moved]]
                    self.taste[moved] = v2 / np.linalg.norm(v2, axis=1, keepdims=True)
        return t

    # -------------------------------------------------------------- run
    def run(self, policy: Policy, users: np.ndarray | int, *, log: bool = False,
            progress: bool = False) -> tuple[SessionResults, EventLog | None]:
        """Play one session per entry of `users` (or that many uniform users).

        Keeps up to B sessions live; returns per-session results in queue order
        and, with log=True, the step-level event log.
        """
        rng = self.rng
        m = self.model
        if isinstance(users, (int, np.integer)):
            users = rng.integers(0, m.n_users, size=int(users))
        users = np.asarray(users, dtype=np.int64)
        if users.size and (users.min() < 0 or users.max() >= m.n_users):
            raise ValueError("a queued user id is outside the world")
        total = users.size
        res_r = np.zeros(total)
        res_s = np.zeros(total, dtype=np.int64)
        res_t = np.zeros(total, dtype=bool)
        b0 = min(self.B, total)
        self._alloc(b0)
        self._start(np.arange(b0), users[:b0], np.arange(b0))
        nxt = b0
        logs: list[tuple] = []
        max_steps = m.params.max_session_steps
        bar = None
        if progress:
            from tqdm import tqdm
            bar = tqdm(total=total, unit="session", leave=False)
        while self.user.size:
            prev_track, prev_time = self.last_track, self.last_time
            actions = np.asarray(policy(self))
            t = self.listen(actions)
            if log:
                logs.append((self.session_id.copy(), self.user.copy(), prev_track.copy(),
                             prev_time.copy(), actions.astype(np.int64), t,
                             self.played.copy()))
            over = self.steps >= max_steps
            done = (self.budget <= 0) | over
            if not done.any():
                continue
            fin = np.flatnonzero(done)
            ids = self.session_id[fin]
            res_r[ids] = self.reward[fin]
            res_s[ids] = self.steps[fin]
            res_t[ids] = over[fin] & (self.budget[fin] > 0)
            if bar is not None:
                bar.update(fin.size)
            n_new = min(fin.size, total - nxt)
            if n_new:
                slots = fin[:n_new]
                self._start(slots, users[nxt:nxt + n_new], np.arange(nxt, nxt + n_new))
                nxt += n_new
            if n_new < fin.size:
                keep = np.ones(self.user.size, dtype=bool)
                keep[fin[n_new:]] = False
                self._keep(keep)
        if bar is not None:
            bar.close()
        results = SessionResults(users, res_r, res_s, res_t)
        if not log:
            return results, None
        cols = [np.concatenate(c) if logs else np.zeros(0) for c in zip(*logs, strict=True)] \
            if logs else [np.zeros(0, dtype=np.int64)] * 7
        return results, EventLog(*cols)


def evaluate(model: UserModel, policy: Policy, users: np.ndarray | int, *, seed: int = 0,
             n_parallel: int = 4096, log: bool = False) -> tuple[SessionResults, EventLog | None]:
    """Convenience: a fresh engine seeded with `seed` playing `users` sessions."""
    return BatchEngine(model, n_parallel, seed=seed).run(policy, users, log=log)
