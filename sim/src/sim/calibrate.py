"""Calibration harness: reference policies' mean session length over seeds.

`python -m sim.calibrate --seeds 5` generates one world per seed, plays
`--sessions` sessions of each reference policy with the batched engine and
prints a markdown table of mean session length (sum of listen times) +- its
standard error. The i2i policy is learned from ONE simulated day of logged
random traffic (`--day-sessions`, default 5 sessions per user) with a
different seed from the evaluation.

How the i2i is learned (learn_i2i), from the log alone plus the public catalog:
1. baskets per user: the tracks users came with (first tracks) and random
   recommendations they listened to for at least `min_time`;
2. artist co-listening counts for every pair of artists in a basket
   (symmetrically normalised by artist degree);
3. a rank-`rank` spectral embedding of that matrix (randomised eigensolver),
   which smooths sparse counts into "users who like A like B" neighbourhoods;
4. for every artist, its `n_related` most similar artists. The policy plays a
   random track of one of the previous track's `top` related artists.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass

import numpy as np

from sim.batch import BatchEngine, EventLog
from sim.model import UserModel, UserModelParams
from sim.world import GeneratorParams, World, build

POLICIES = ("random", "same_genre", "sticky_artist", "i2i", "oracle")


# ------------------------------------------------------------- i2i learning


def _artist_pairs(world: World, log: EventLog, min_time: float) -> tuple[np.ndarray, ...]:
    """Weighted artist co-occurrence pairs within per-user baskets."""
    ta = world.track_artist.astype(np.int64)
    # each session's first logged step has the session's first track as `track`
    first = np.zeros(log.session.size, dtype=bool)
    first[np.unique(log.session, return_index=True)[1]] = True
    pos = log.reward >= min_time
    key = np.concatenate([log.user[first], log.user[pos]])
    art = np.concatenate([ta[log.track[first]], ta[log.recommendation[pos]]])
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


@dataclass
class CalibrationResult:
    seed: int
    policy: str
    sessions: int
    mean: float
    se: float
    mean_steps: float


def run_seed(seed: int, *, n_tracks: int = 50_000, n_users: int = 10_000,
             sessions: int = 20_000, day_sessions: int | None = None,
             params: UserModelParams | None = None, world: World | None = None,
             oracle_sessions: int | None = None, n_parallel: int = 4096,
             progress: bool = False) -> list[CalibrationResult]:
    """All reference policies on one seeded world."""
    from sim.policies import (
        I2IPolicy,
        OraclePolicy,
        RandomPolicy,
        SameGenrePolicy,
        StickyArtistPolicy,
    )

    if world is None:
        world = build(GeneratorParams(seed=seed, n_tracks=n_tracks, n_users=n_users))
    world.interest_neighbours(100)   # the oracle's pool; the model's k=10 is its prefix
    model = UserModel(world, params or UserModelParams())
    model.begin_day(0, np.random.default_rng([seed, 0]))
    day = day_sessions if day_sessions is not None else 5 * world.n_users
    _, log = BatchEngine(model, n_parallel, seed=seed * 1000 + 1).run(
        RandomPolicy(world, seed=seed * 1000 + 2), day, log=True)
    out = []
    policies = {
        "random": RandomPolicy(world, seed=seed * 1000 + 3),
        "same_genre": SameGenrePolicy(world, seed=seed * 1000 + 6),
        "sticky_artist": StickyArtistPolicy(world, seed=seed * 1000 + 4),
        "i2i": I2IPolicy(world, learn_i2i(world, log, seed=seed), seed=seed * 1000 + 5),
        "oracle": OraclePolicy(world),
    }
    for name, pol in policies.items():
        n = sessions if name != "oracle" else (oracle_sessions or max(1, sessions // 4))
        res, _ = BatchEngine(model, n_parallel, seed=seed * 1000 + 7).run(pol, n,
                                                                         progress=progress)
        s = res.summary()
        out.append(CalibrationResult(seed, name, n, s["mean_reward"], s["se_reward"],
                                     s["mean_steps"]))
    return out


def markdown_table(results: list[CalibrationResult]) -> str:
    seeds = sorted({r.seed for r in results})
    names = [p for p in POLICIES if any(r.policy == p for r in results)]
    by = {(r.seed, r.policy): r for r in results}
    head = "| policy | " + " | ".join(f"seed {s}" for s in seeds) + " | mean over seeds |"
    sep = "|---|" + "---|" * (len(seeds) + 1)
    lines = [head, sep]
    for p in names:
        cells = [f"{by[s, p].mean:.3f} ± {by[s, p].se:.3f}" for s in seeds]
        means = np.array([by[s, p].mean for s in seeds])
        se = means.std(ddof=1) / np.sqrt(len(means)) if len(means) > 1 else float("nan")
        label = "oracle (hidden taste, upper bound)" if p == "oracle" else p
        lines.append(f"| {label} | " + " | ".join(cells) + f" | {means.mean():.3f} ± {se:.3f} |")
    return "\n".join(lines)


def ordering_holds(results: list[CalibrationResult]) -> bool:
    """random < same_genre < sticky_artist < i2i < oracle on every seed, each gap beyond 3 s.e."""
    by = {(r.seed, r.policy): r for r in results}
    for s in {r.seed for r in results}:
        chain = [by[s, p] for p in POLICIES]
        for lo, hi in zip(chain, chain[1:], strict=False):
            if hi.mean - lo.mean <= 3 * np.hypot(hi.se, lo.se):
                return False
    return True


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m sim.calibrate",
                                 description="Mean session length of the reference policies "
                                             "per seed (markdown table).")
    ap.add_argument("--seeds", type=int, default=5, help="number of seeds (1..N)")
    ap.add_argument("--first-seed", type=int, default=1)
    ap.add_argument("--tracks", type=int, default=50_000)
    ap.add_argument("--users", type=int, default=10_000)
    ap.add_argument("--sessions", type=int, default=20_000, help="evaluation sessions per policy")
    ap.add_argument("--day-sessions", type=int, default=None,
                    help="sessions in the logged random day the i2i learns from "
                         "(default 5 per user)")
    args = ap.parse_args(argv)
    if args.seeds < 1 or args.sessions < 2 or args.tracks < 10 or args.users < 2:
        ap.error("need --seeds >= 1, --sessions >= 2, --tracks >= 10, --users >= 2")
    results = []
    from tqdm import tqdm
    t0 = time.perf_counter()
    for s in tqdm(range(args.first_seed, args.first_seed + args.seeds), desc="seeds"):
        results += run_seed(s, n_tracks=args.tracks, n_users=args.users, sessions=args.sessions,
                            day_sessions=args.day_sessions)
    print(f"\nWorld: {args.tracks} tracks, {args.users} users; {args.sessions} sessions per "
          f"policy (oracle {max(1, args.sessions // 4)}); i2i learned from one day of "
          f"{args.day_sessions or 5 * args.users} random-traffic sessions. "
          f"Mean session length (sum of listen times) ± s.e.\n")
    print(markdown_table(results))
    print(f"\nordering random < same_genre < sticky_artist < i2i < oracle on every seed: "
          f"{'yes' if ordering_holds(results) else 'NO'} ({time.perf_counter() - t0:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
