"""Calibration harness: reference policies' mean session length over seeds, and issue 18's targets.

`python -m sim.calibrate --targets --seeds 5` measures, in the production
setting, what makes the simulator a testbed for A/B testing: each adjacent step
of the ladder random < top_pop < sticky_artist < i2i < sequential as an A/B
test with 10,000 users per arm, the oracle above them, CUPED's variance
reduction with the previous day, the A/A false-positive rate over 200
experiments and 7-day retention (run_targets; sim/README.md "Realism").
The rest of this docstring is about the course-setting table (no --targets).

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
                         "(default 5 per user; with --targets: sessions of day 1, default 60000)")
    ap.add_argument("--targets", action="store_true",
                    help="measure issue 18's targets in the production setting instead "
                         "(ladder steps, CUPED, A/A false positives, retention; default world "
                         "50000 tracks, 40000 users)")
    ap.add_argument("--realism", choices=("production", "course"), default="production",
                    help="user-model setting for --targets (default production)")
    ap.add_argument("--aa-days", type=int, default=40,
                    help="A/A experiments (one simulated day each) per seed, --targets")
    ap.add_argument("--arm-users", type=int, default=10_000,
                    help="users per arm of each ladder experiment, --targets")
    args = ap.parse_args(argv)
    if args.targets:
        return _main_targets(args)
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


def _main_targets(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    users = args.users if args.users != 10_000 else 40_000
    day = args.day_sessions or 60_000
    if args.seeds < 1 or args.tracks < 10 or users < 2 or day < 1 or args.aa_days < 7 \
            or args.arm_users < 2:
        print("error: need --seeds >= 1, --tracks >= 10, --users >= 2, --day-sessions >= 1, "
              "--aa-days >= 7, --arm-users >= 2", file=sys.stderr)
        return 2
    params = UserModelParams.preset(args.realism)
    t0 = time.perf_counter()
    results = []
    try:
        for s in tqdm(range(args.first_seed, args.first_seed + args.seeds), desc="seeds"):
            results.append(run_targets(s, n_tracks=args.tracks, n_users=users, day_sessions=day,
                                       arm_users=args.arm_users, aa_days=args.aa_days,
                                       params=params))
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    text, ok = targets_report(results)
    print(f"\nrealism: {args.realism}; world {args.tracks} tracks, {users} users; "
          f"{day} sessions on day 1; {args.arm_users} users per arm; time = the A/B's "
          f"per-user time (first track 1.0 included)\n")
    print(text)
    print(f"\nall targets met: {'yes' if ok else 'NO'} ({time.perf_counter() - t0:.0f} s)")
    return 0




# ------------------------------------------------------------ production targets
#: the ladder of issue 18, from worst to best (the oracle is checked above it)
LADDER = ("random", "top_pop", "sticky_artist", "i2i", "sequential")
Z975 = 1.959963984540054  # Welch df here is in the thousands: the normal quantile


@dataclass
class Welch:
    """Difference of two arm means, in percent of the control (`a`) mean, 95% CI."""

    effect: float
    lower: float
    upper: float

    @property
    def significant(self) -> bool:
        return self.lower > 0 or self.upper < 0


def welch(a: np.ndarray, b: np.ndarray) -> Welch:
    """The course's test: Welch's interval of mean(b) - mean(a), relative to mean(a)."""
    ma, mb = float(a.mean()), float(b.mean())
    h = Z975 * float(np.sqrt(a.var(ddof=1) / a.size + b.var(ddof=1) / b.size))
    return Welch((mb - ma) / ma * 100, (mb - ma - h) / ma * 100, (mb - ma + h) / ma * 100)


def ab_time(results, n_users: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-user `time` as the A/B reads it (every logged listen, the first track's 1.0
    included) and per-user session counts, for a day's results."""
    time_u = np.bincount(results.users, weights=results.rewards + 1.0, minlength=n_users)
    sess_u = np.bincount(results.users, minlength=n_users)
    return time_u, sess_u


def cuped_reduction(y: np.ndarray, x: np.ndarray) -> float:
    """Share of Var(y) removed by y - theta * x with the optimal theta (= corr^2)."""
    c = np.cov(x, y)
    if c[0, 0] <= 0 or c[1, 1] <= 0:
        return 0.0
    return float(c[0, 1] ** 2 / (c[0, 0] * c[1, 1]))


@dataclass
class TargetResult:
    """Everything `--targets` measures on one seed (sim/README.md "Realism")."""

    seed: int
    active_users: int
    ladder_means: dict[str, float]           # mean A/B time per session, all day-2 sessions
    steps: list[tuple[str, str, Welch]]      # adjacent ladder pairs, 10,000 users per arm
    oracle_mean: float
    cuped: float                             # mean variance reduction, previous day, same recommender
    aa_user: float                           # A/A false-positive rate, user-level Welch
    aa_session: float                        # ... session-level Welch (the trap)
    aa_runs: int
    top20_share: float                       # share of sessions made by the top 20% users (7 days)
    retention: dict[str, list[int]]          # DAU per day over 7 days, per recommender
    returning: dict[str, float]              # share of day-1 users active on day 7


def _day(model, dp, day: int, n_sessions: int, policy, seed: int, n_parallel: int):
    """One simulated day of the day process with one policy for everybody."""
    model.begin_day(day, np.random.default_rng([seed, day, 0]))
    users = dp.users_for_day(day, n_sessions, np.random.default_rng([seed, day, 1]))
    res, log = BatchEngine(model, n_parallel, seed=seed * 7919 + day).run(policy, users, log=True)
    dp.end_sessions(res.users, res.rewards)
    dp.end_day(np.random.default_rng([seed, day, 2]))
    return res, log


def run_targets(seed: int, *, n_tracks: int = 50_000, n_users: int = 40_000,
                day_sessions: int = 60_000, arm_users: int = 10_000, aa_days: int = 40,
                retention_days: int = 7, params: UserModelParams | None = None,
                n_parallel: int = 4096) -> TargetResult:
    """Measure issue 18's targets on one seeded world, in-process (batched engine).

    Day 1: everybody gets random recommendations (the logged traffic the
    top_pop, i2i and sequential models learn from). Day 2: every ladder policy
    plays the same day-2 sessions (common random numbers); for each adjacent
    pair the first `arm_users` of a seeded shuffle of day 2's active users are
    the control arm (lower rung) and the next `arm_users` the treatment.
    A/A: `aa_days` consecutive days under i2i, each split at random into two
    halves; CUPED with the previous day on the same chain. Retention: 7-day
    chains under random, i2i and sequential from the same start.
    """
    from sim.days import DayProcess
    from sim.policies import (
        I2IPolicy,
        OraclePolicy,
        RandomPolicy,
        SequentialPolicy,
        StickyArtistPolicy,
        TopPopPolicy,
        learn_i2i,
    )

    p = params or UserModelParams.preset("production")
    world = build(GeneratorParams(seed=seed, n_tracks=n_tracks, n_users=n_users))
    world.interest_neighbours(100)
    model = UserModel(world, p)
    dp = DayProcess(world.n_users, p)
    res1, log1 = _day(model, dp, 1, day_sessions, RandomPolicy(world, seed=seed * 1000 + 2),
                      seed, n_parallel)
    x_u, _ = ab_time(res1, world.n_users)
    table = learn_i2i(world, log1, seed=seed)
    policies = {
        "random": RandomPolicy(world, seed=seed * 1000 + 3),
        "top_pop": TopPopPolicy.fit(world, log1, seed=seed * 1000 + 4),
        "sticky_artist": StickyArtistPolicy(world, seed=seed * 1000 + 5),
        "i2i": I2IPolicy(world, table, seed=seed * 1000 + 6),
        "sequential": SequentialPolicy(world, table, seed=seed * 1000 + 7),
    }
    # day 2: who comes is decided once; every policy plays those sessions
    model.begin_day(2, np.random.default_rng([seed, 2, 0]))
    users2 = dp.users_for_day(2, day_sessions, np.random.default_rng([seed, 2, 1]))
    active = np.unique(users2)
    if active.size < 2 * arm_users:
        raise ValueError(f"seed {seed}: {active.size} active users on day 2, need "
                         f"{2 * arm_users} (raise n_users or day_sessions)")
    shuffled = np.random.default_rng([seed, 99]).permutation(active)
    arm_c, arm_t = shuffled[:arm_users], shuffled[arm_users:2 * arm_users]
    per_user: dict[str, np.ndarray] = {}
    means: dict[str, float] = {}
    for name, pol in policies.items():
        res, _ = BatchEngine(model, n_parallel, seed=seed * 1000 + 8).run(pol, users2)
        per_user[name] = ab_time(res, world.n_users)[0]
        means[name] = float((res.rewards + 1.0).mean())
    steps = [(lo, hi, welch(per_user[lo][arm_c], per_user[hi][arm_t]))
             for lo, hi in zip(LADDER, LADDER[1:], strict=False)]
    # the oracle on the treatment arm's sessions only (it is the slow one)
    in_t = np.isin(users2, arm_t)
    ores, _ = BatchEngine(model, n_parallel, seed=seed * 1000 + 8).run(OraclePolicy(world),
                                                                       users2[in_t])
    oracle_mean = float((ores.rewards + 1.0).mean())

    # A/A and CUPED: a chain of days under i2i (a fresh day process from day 1's state)
    def chain(policy, days: int, first_day: int = 3):
        d = DayProcess(world.n_users, p)
        d.end_sessions(res1.users, res1.rewards)
        d.end_day()
        d.users_for_day(1, day_sessions, np.random.default_rng([seed, 1, 1]))  # sets the scale
        d._reward_sum[:] = 0
        d._sessions[:] = 0
        out = []
        for k in range(days):
            res, _ = _day(model, d, first_day + k, day_sessions, policy, seed, n_parallel)
            out.append(res)
        return out

    aa = chain(I2IPolicy(world, table, seed=seed * 1000 + 9), aa_days)
    fp_user = fp_session = 0
    cuped = []
    prev_time = x_u
    sessions_by_user = np.zeros(world.n_users)
    for k, res in enumerate(aa):
        t_u, s_u = ab_time(res, world.n_users)
        act = np.flatnonzero(s_u)
        half = np.random.default_rng([seed, 500, k]).permutation(act)
        a_users, b_users = half[: act.size // 2], half[act.size // 2:]
        fp_user += welch(t_u[a_users], t_u[b_users]).significant
        in_a = np.zeros(world.n_users, dtype=bool)
        in_a[a_users] = True
        st = res.rewards + 1.0
        fp_session += welch(st[in_a[res.users]], st[~in_a[res.users]]).significant
        cuped.append(cuped_reduction(t_u[act], prev_time[act]))
        prev_time = t_u
        if k < retention_days:
            sessions_by_user += s_u
    srt = np.sort(sessions_by_user)[::-1]
    top20 = float(srt[: max(1, world.n_users // 5)].sum() / max(srt.sum(), 1))

    dau: dict[str, list[int]] = {}
    returning: dict[str, float] = {}
    for name, pol in (("random", RandomPolicy(world, seed=seed * 1000 + 10)),
                      ("i2i", I2IPolicy(world, table, seed=seed * 1000 + 11)),
                      ("sequential", SequentialPolicy(world, table, seed=seed * 1000 + 12))):
        days = chain(pol, retention_days) if name != "i2i" else aa[:retention_days]
        act = [np.unique(r.users) for r in days]
        dau[name] = [int(a.size) for a in act]
        returning[name] = float(np.isin(act[0], act[-1]).mean())
    return TargetResult(seed, int(active.size), means, steps, oracle_mean,
                        float(np.mean(cuped)), fp_user / len(aa), fp_session / len(aa), len(aa),
                        top20, dau, returning)


def targets_report(results: list[TargetResult]) -> tuple[str, bool]:
    """Markdown tables of the targets over seeds and whether every target is met."""
    ok = True
    lines = ["| seed | active users day 2 | " + " | ".join(
        f"{lo} -> {hi}" for lo, hi in zip(LADDER, LADDER[1:], strict=False))
        + " | oracle vs sequential |", "|---|---:|" + "---|" * len(LADDER)]
    for r in results:
        cells = []
        for _, _, w in r.steps:
            good = 3.0 <= w.effect <= 60.0 and w.significant and w.lower > 0
            ok &= good
            cells.append(f"{w.effect:+.1f}% [{w.lower:+.1f}, {w.upper:+.1f}]"
                         + ("" if good else " **miss**"))
        orc = r.oracle_mean / r.ladder_means["sequential"] - 1
        ok &= orc > 0
        lines.append(f"| {r.seed} | {r.active_users} | " + " | ".join(cells)
                     + f" | {orc * 100:+.1f}% |")
    orders = {tuple(sorted(LADDER, key=lambda n: r.ladder_means[n])) for r in results}
    same_order = orders == {LADDER}
    ok &= same_order
    lines += ["", "| seed | CUPED, previous day | A/A FP user-level | A/A FP session-level "
              "| top 20% users' share of sessions | DAU day 1 -> 7: random / i2i / sequential "
              "| day-1 users back on day 7: random / i2i / sequential |",
              "|---|---:|---:|---:|---:|---|---|"]
    for r in results:
        ok &= r.cuped >= 0.30
        dau = " / ".join(f"{v[0]}->{v[-1]}" for v in r.retention.values())
        back = " / ".join(f"{v:.1%}" for v in r.returning.values())
        lines.append(f"| {r.seed} | {r.cuped:.1%} | {r.aa_user:.1%} ({r.aa_runs}) | "
                     f"{r.aa_session:.1%} | {r.top20_share:.1%} | {dau} | {back} |")
    fp = float(np.mean([r.aa_user for r in results]))
    n_aa = sum(r.aa_runs for r in results)
    fp_s = float(np.mean([r.aa_session for r in results]))
    ok &= abs(fp - 0.05) <= 0.015
    ret_ok = all(r.returning["random"] < r.returning["i2i"] for r in results)
    ok &= ret_ok
    lines += ["", f"A/A false-positive rate over {n_aa} experiments: user-level {fp:.1%} "
              f"(target 5% ± 1.5%), session-level {fp_s:.1%}. Ladder in the same order on every "
              f"seed: {'yes' if same_order else 'NO'}. Random keeps fewer returning users than "
              f"i2i on every seed: {'yes' if ret_ok else 'NO'}."]
    return "\n".join(lines), bool(ok)


if __name__ == "__main__":
    sys.exit(main())
