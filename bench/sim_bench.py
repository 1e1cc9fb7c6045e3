"""Simulator benchmarks (issue 2 section 7): world generation/load, env.step loop,
batched engine, peak RSS. Prints a markdown table for BENCHMARKS.md.

    .venv/bin/python bench/sim_bench.py                 # default world (50k tracks, 10k users)
    .venv/bin/python bench/sim_bench.py --world DIR     # an existing world directory

Each measurement that matters for RSS runs in a fresh subprocess so its peak
RSS is its own (ru_maxrss of that process).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _child(kind: str, world: str, seconds: float) -> dict:
    import resource

    import numpy as np

    t0 = time.perf_counter()
    if kind == "env":
        import gymnasium as gym
        from sim.env import MusicSessionEnv

        import sim

        raw = MusicSessionEnv(world)
        load_s = time.perf_counter() - t0
        out = {"load_s": load_s}
        for label, env in (("raw", raw), ("gym.make", gym.make(sim.ENV_ID, world=raw.world))):
            actions = np.random.default_rng(0).integers(0, raw.world.n_tracks, 1 << 20).tolist()
            env.reset(seed=1)
            steps = episodes = 0
            start = time.perf_counter()
            while True:
                for a in actions[steps % (1 << 20):steps % (1 << 20) + 10000]:
                    _, _, term, trunc, _ = env.step(a)
                    steps += 1
                    if term or trunc:
                        env.reset()
                        episodes += 1
                if time.perf_counter() - start > seconds:
                    break
            dt = time.perf_counter() - start
            out[label] = {"steps_per_s": steps / dt, "episodes": episodes,
                          "steps_per_episode": steps / max(episodes, 1)}
    else:
        from sim.batch import BatchEngine
        from sim.model import UserModel
        from sim.world import World

        w = World.load(world)
        model = UserModel(w)
        load_s = time.perf_counter() - t0
        out = {"load_s": load_s}
        rng = np.random.default_rng(0)
        n = w.n_tracks

        def trivial(engine):
            return rng.integers(0, n, size=engine.user.size)

        for b in (4096, 16384):
            eng = BatchEngine(model, b, seed=1)
            eng.run(trivial, b * 2)  # warm-up
            sessions = 0
            steps = 0
            start = time.perf_counter()
            while time.perf_counter() - start < seconds:
                res, _ = eng.run(trivial, b * 20)
                sessions += res.steps.size
                steps += int(res.steps.sum())
            dt = time.perf_counter() - start
            out[f"B={b}"] = {"steps_per_s": steps / dt, "sessions_per_s": sessions / dt}
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--world", type=Path, help="world directory (default: generate 50k/10k)")
    ap.add_argument("--seconds", type=float, default=5.0, help="time per measurement")
    ap.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(_child(args.child[0], args.child[1], float(args.child[2]))))
        return 0
    tmp = None
    rows = []
    world = args.world
    if world is None:
        tmp = tempfile.TemporaryDirectory(prefix="sim-bench-")
        world = Path(tmp.name) / "world"
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "sim.world", "generate", "--seed", "31337",
                        "--tracks", "50000", "--users", "10000", "--out", str(world)],
                       check=True, capture_output=True)
        rows.append(("world generate 50k tracks / 10k users (incl. NN cache)",
                     f"{time.perf_counter() - t0:.1f} s", "< 10 s"))
    res = {}
    for kind in ("env", "batch"):
        p = subprocess.run([sys.executable, __file__, "--child", kind, str(world),
                            str(args.seconds)], check=True, capture_output=True, text=True)
        res[kind] = json.loads(p.stdout.strip().splitlines()[-1])
    e, b = res["env"], res["batch"]
    rows += [
        ("World load + UserModel (NN cache on disk)", f"{b['load_s'] * 1000:.0f} ms", ""),
        ("env.step loop incl. resets, raw env", f"{e['raw']['steps_per_s']:,.0f} steps/s",
         ">= 20,000"),
        ("env.step loop incl. resets, gym.make (checker wrappers)",
         f"{e['gym.make']['steps_per_s']:,.0f} steps/s", ""),
        ("batched engine, trivial recommender, B=4096",
         f"{b['B=4096']['steps_per_s']:,.0f} steps/s", ">= 1,000,000"),
        ("batched engine, trivial recommender, B=16384",
         f"{b['B=16384']['steps_per_s']:,.0f} steps/s", ""),
        ("peak RSS, env process", f"{e['peak_rss_mb']:.0f} MB", "<= 200 MB"),
        ("peak RSS, batched engine process (B up to 16384)", f"{b['peak_rss_mb']:.0f} MB",
         "<= 200 MB"),
    ]
    print("| measurement | result | target |")
    print("|---|---|---|")
    for r in rows:
        print(f"| {r[0]} | {r[1]} | {r[2]} |")
    if tmp is not None:
        tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
