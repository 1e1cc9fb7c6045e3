"""A/A simulation of peeking: how often an experiment with no effect is called.

    .venv/bin/python bench/sequential_aa.py [--sims 2000] [--hours 24] [--users-per-hour 100]
        [--seed 7] [--png docs/img/peeking.png]

Why: students (and teams) watch a running experiment and stop at the first
"significant" look. With the course's fixed-horizon Welch interval that inflates
the false-positive rate far past 5%; with the always-valid confidence sequence
(`botify.analysis.stats.sequential_bounds`, `botify ab --sequential`) it stays at
or below 5% however often one looks.

Model (seeded numpy, no service): every simulated hour `--users-per-hour` new
users join each of the two identical arms; a user's metric is heavy-tailed like
the course's total listening time (lognormal, sd about 1.3x the mean). After
each hour the experiment is checked on all users so far with (a) the Welch 95%
interval, (b) the confidence sequence tuned at the final size. A run is a false
positive if any check up to that hour excludes zero. Prints a markdown table
(rate after 1, 6, 12, 24 looks, with a 95% binomial interval) and writes a PNG.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np
from scipy import stats as sps


def simulate(sims: int, hours: int, per_hour: int, seed: int) -> dict[str, np.ndarray]:
    """Cumulative moments per (simulation, hour, arm), then the two rules at every hour.

    Returns cumulative false-positive indicators, shape (sims, hours), per rule."""
    from botify.analysis.stats import sequential_bounds

    rng = np.random.default_rng(seed)
    s = np.zeros((sims, hours, 2))
    ss = np.zeros((sims, hours, 2))
    for h in range(hours):  # one hour at a time keeps memory at sims * per_hour * 2
        x = rng.lognormal(mean=3.0, sigma=1.0, size=(sims, per_hour, 2))
        s[:, h] = x.sum(axis=1)
        ss[:, h] = (x * x).sum(axis=1)
    s, ss = s.cumsum(axis=1), ss.cumsum(axis=1)
    n = (np.arange(1, hours + 1) * per_hour).astype(np.float64)[None, :, None]
    mean = s / n
    var = (ss - n * mean * mean) / (n - 1)
    n_c, n_t = n[..., 0], n[..., 0]
    # (a) the course's Welch interval, recomputed at every look
    se = np.sqrt(var[..., 0] / n_c + var[..., 1] / n_t)
    df = se**4 / ((var[..., 0] / n_c) ** 2 / (n_c - 1) + (var[..., 1] / n_t) ** 2 / (n_t - 1))
    half = sps.t.ppf(0.975, df) * se
    diff = mean[..., 1] - mean[..., 0]
    welch_hit = np.abs(diff) > half
    # (b) the always-valid confidence sequence, tuned at the planned final size
    n_star = 2 * hours * per_hour
    _, lo, hi = sequential_bounds(
        mean[..., 0], var[..., 0], n_c, mean[..., 1], var[..., 1], n_t, 0.05, n_star
    )
    cs_hit = (lo > 0) | (hi < 0)
    return {
        "welch_peeking": np.maximum.accumulate(welch_hit, axis=1),
        "sequential_peeking": np.maximum.accumulate(cs_hit, axis=1),
        "welch_last_look_only": welch_hit,
    }


def wilson(k: int, n: int) -> tuple[float, float]:
    z = 1.959964
    p = k / n
    c = (p + z * z / (2 * n)) / (1 + z * z / n)
    h = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return c - h, c + h


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--sims", type=int, default=2000)
    ap.add_argument("--hours", type=int, default=24)
    ap.add_argument("--users-per-hour", type=int, default=100, help="new users per arm per hour")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--png", type=Path, help="write the figure here")
    args = ap.parse_args()
    if args.sims < 1 or args.hours < 1 or args.users_per_hour < 2:
        ap.error("--sims and --hours must be >= 1, --users-per-hour >= 2")
    r = simulate(args.sims, args.hours, args.users_per_hour, args.seed)
    looks = sorted({1, min(6, args.hours), min(12, args.hours), args.hours})
    print(
        f"A/A, {args.sims} simulations, {args.users_per_hour} new users per arm per hour, "
        f"checked every hour for {args.hours} hours, seed {args.seed}\n"
    )
    print("| rule | " + " | ".join(f"after {h} look(s)" for h in looks) + " |")
    print("| --- |" + " ---: |" * len(looks))
    labels = {
        "welch_peeking": "Welch 95% CI, stop at the first significant look",
        "sequential_peeking": "confidence sequence (`--sequential`), same peeking",
        "welch_last_look_only": "Welch 95% CI, one look at that hour only",
    }
    for key, label in labels.items():
        cells = []
        for h in looks:
            k = int(r[key][:, h - 1].sum())
            lo, hi = wilson(k, args.sims)
            cells.append(f"{100 * k / args.sims:.1f}% [{100 * lo:.1f}, {100 * hi:.1f}]")
        print(f"| {label} | " + " | ".join(cells) + " |")
    if args.png:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        x = np.arange(1, args.hours + 1)
        fig, ax = plt.subplots(figsize=(7, 4), dpi=110)
        ax.plot(x, 100 * r["welch_peeking"].mean(axis=0), "o-", color="#d62728",
                label="Welch 95% CI, peeking every hour")
        ax.plot(x, 100 * r["sequential_peeking"].mean(axis=0), "o-", color="#2ca02c",
                label="confidence sequence, peeking every hour")
        ax.plot(x, 100 * r["welch_last_look_only"].mean(axis=0), ":", color="#7f7f7f",
                label="Welch 95% CI, a single look at that hour")
        ax.axhline(5, color="black", lw=0.8, ls="--")
        ax.set_xlabel("hours of the experiment (one look per hour)")
        ax.set_ylabel("A/A runs declared significant (%)")
        ax.set_title(f"False positives under peeking ({args.sims} A/A runs, seed {args.seed})")
        ax.set_xlim(1, args.hours)
        ax.set_ylim(0, None)
        ax.legend(loc="upper left", fontsize=8)
        fig.tight_layout()
        args.png.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(args.png)
        print(f"\nwrote {args.png}")


if __name__ == "__main__":
    main()
