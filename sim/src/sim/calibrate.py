"""Calibration harness: reference policies' mean session length over seeds.

`python -m sim.calibrate --seeds 5` generates one world per seed, plays
`--sessions` sessions of each reference policy with the batched engine and
prints a markdown table of mean session length (sum of listen times) +- its
standard error. The i2i policy is learned from ONE simulated day of logged
random traffic (`--day-sessions`, default 5 sessions per user) with a
different seed from the evaluation.

How the i2i is learned (sim.policies.learn_i2i), from the log alone plus the public catalog:
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

from sim.batch import BatchEngine
from sim.model import UserModel, UserModelParams
from sim.world import GeneratorParams, World, build

POLICIES = ("random", "same_genre", "sticky_artist", "i2i", "oracle")


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
        learn_i2i,
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
