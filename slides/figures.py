"""Figures and tables for the slide decks, produced by the project itself.

`python slides/figures.py [--out slides/build/figures]` writes:

- `user-flow.png`: the repo's session-flow diagram (rendered from docs/user-flow.dot);
- `architecture.png`: the online and offline halves and what flows between them;
- `listen-curve.png`: the user model's listening curve and artist discount;
- `session-lengths.png` + `calibration.md`: session length per reference policy
  (random, sticky_artist, learned i2i, oracle) on a seeded world, played by the
  simulator's batched engine;
- `ab-effects.png` + `ab-table.md` (+ `ab-extra.md`): a simulated A/B test (random vs
  sticky_artist, users split by the service's MurmurHash3 assignment, a pre-period for
  CUPED), written as COMPAT event logs and analysed by `botify.analysis.ab.analyze_logs`.

Why simulate in-process instead of through the service: a figure build should take
seconds and need no ports; the batched engine plays the same user model as the HTTP
path. What it cannot give is latency (no server answers), so latency rows are left out.
Same arguments give the same numbers (every draw is seeded).
"""

from __future__ import annotations

import argparse
import base64
import math
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from botify.analysis.ab import AbResult
    from matplotlib.figure import Figure
    from sim.batch import BatchEngine, EventLog, SessionResults
    from sim.calibrate import CalibrationResult
    from sim.world import World

ROOT = Path(__file__).resolve().parents[1]
COLORS = ["#3b6fd8", "#d8703b", "#3b8f5a", "#8f3bd8"]


def _figure(w: float, h: float, ncols: int = 1) -> tuple[Figure, Any]:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(w, h))
    axes = fig.subplots(1, ncols)
    return fig, axes


def _save(fig: Figure, path: Path) -> Path:
    fig.savefig(path, dpi=110, bbox_inches="tight")
    return path


# ---------------------------------------------------------------- the architecture


def architecture(out: Path) -> Path:
    """Boxes and arrows of the online and offline halves (matplotlib, no Graphviz needed)."""
    from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

    fig, ax = _figure(12.5, 5.2)
    ax.set_xlim(0, 12.5)
    ax.set_ylim(0, 5.2)
    ax.axis("off")
    online, offline, store = "#eef4ff", "#fff4e8", "#eefaf1"

    def box(x: float, y: float, w: float, h: float, text: str, color: str) -> None:
        ax.add_patch(FancyBboxPatch((x, y), w, h, boxstyle="round,pad=0.05,rounding_size=0.12",
                                    fc=color, ec="#3b4a66", lw=1.3))
        ax.text(x + w / 2, y + h / 2, text, ha="center", va="center", fontsize=10.5)

    def arrow(x0: float, y0: float, x1: float, y1: float, label: str = "",
              dy: float = 0.16, rad: float = 0.0) -> None:
        ax.add_patch(FancyArrowPatch((x0, y0), (x1, y1), arrowstyle="-|>", mutation_scale=14,
                                     lw=1.3, color="#3b4a66",
                                     connectionstyle=f"arc3,rad={rad}"))
        if label:
            ax.text((x0 + x1) / 2, (y0 + y1) / 2 + dy, label, ha="center", va="bottom",
                    fontsize=8.5, color="#555f73")

    ax.text(0.1, 5.0, "online", fontsize=12, weight="bold", color="#3b6fd8")
    ax.text(8.4, 5.0, "offline", fontsize=12, weight="bold", color="#d8703b")
    box(0.1, 3.5, 1.9, 1.0, "sim\n(simulated users)", online)
    box(2.6, 3.5, 1.3, 1.0, "nginx\n:5001", online)
    for i in range(3):
        box(4.5 + 0.12 * i, 3.35 + 0.15 * i, 2.0, 1.0, "" if i < 2 else "botify workers\n(Flask, x N)",
            online)
    box(4.5, 0.5, 2.2, 1.3, "Redis\ncatalog, user histories,\nversioned tables", store)
    box(8.4, 3.5, 2.0, 1.0, "event logs\n(JSON lines)", offline)
    box(8.4, 1.9, 3.9, 1.0, "A/B analysis (Welch, Holm, SRM, CUPED)\ntraining, offline evaluation",
        offline)
    box(8.4, 0.5, 2.0, 1.0, "artifacts\n(JSONL + meta)", offline)
    arrow(2.0, 4.0, 2.6, 4.0, "HTTP")
    arrow(3.9, 4.0, 4.5, 4.0)
    arrow(6.8, 4.0, 8.4, 4.0, "one line per request")
    arrow(5.4, 3.35, 5.4, 1.85)
    arrow(5.9, 1.85, 5.9, 3.35)
    ax.text(5.3, 2.6, "user state", ha="right", va="center", fontsize=8.5, color="#555f73")
    ax.text(6.0, 2.6, "tables", ha="left", va="center", fontsize=8.5, color="#555f73")
    arrow(9.4, 3.5, 9.4, 2.95)
    arrow(9.4, 1.9, 9.4, 1.55)
    arrow(8.4, 1.0, 6.75, 1.0, "load + atomic switch", dy=-0.42)
    return _save(fig, out / "architecture.png")


# ---------------------------------------------------------------- the user model


def listen_curve(out: Path) -> Path:
    """sigmoid((<e, taste> - bias) * sharpness) for the generator's ranges, and gamma^k."""
    from sim.model import UserModelParams
    from sim.world import GeneratorParams

    gp, up = GeneratorParams(), UserModelParams()
    fig, (a, b) = _figure(11, 3.6, 2)
    x = np.linspace(-0.6, 1.0, 300)
    for i, (bias, sharp) in enumerate([(gp.bias_range[0], gp.sharpness_range[1]),
                                       (np.mean(gp.bias_range), np.mean(gp.sharpness_range)),
                                       (gp.bias_range[1], gp.sharpness_range[0])]):
        a.plot(x, 1 / (1 + np.exp(-(x - bias) * sharp)), color=COLORS[i], lw=2,
               label=f"bias {bias:.2f}, sharpness {sharp:.0f}")
    a.set_xlabel("<e_track, taste>")
    a.set_ylabel("listen fraction (time)")
    a.set_title("how much of a track a user listens to")
    a.legend(fontsize=8)
    a.grid(alpha=0.3)
    k = np.arange(0, 8)
    b.bar(k, up.artist_discount_gamma ** k, color=COLORS[0])
    b.set_xlabel("earlier plays of the same artist in the session (k)")
    b.set_ylabel(f"discount {up.artist_discount_gamma}^k")
    b.set_title("artist discount")
    b.grid(alpha=0.3, axis="y")
    return _save(fig, out / "listen-curve.png")


def reference_policies(world: World, seed: int, sessions: int, day_sessions: int,
                       ) -> tuple[dict[str, SessionResults], list[CalibrationResult]]:
    """Session results per reference policy, built as sim.calibrate.run_seed builds them."""
    from sim.batch import BatchEngine
    from sim.calibrate import CalibrationResult
    from sim.model import UserModel
    from sim.policies import I2IPolicy, OraclePolicy, RandomPolicy, StickyArtistPolicy, learn_i2i

    model = UserModel(world)
    model.begin_day(0, np.random.default_rng([seed, 0]))
    _, log = BatchEngine(model, 4096, seed=seed * 1000 + 1).run(
        RandomPolicy(world, seed=seed * 1000 + 2), day_sessions, log=True)
    policies = {
        "random": RandomPolicy(world, seed=seed * 1000 + 3),
        "sticky_artist": StickyArtistPolicy(world, seed=seed * 1000 + 4),
        "i2i": I2IPolicy(world, learn_i2i(world, log, seed=seed), seed=seed * 1000 + 5),
        "oracle": OraclePolicy(world),
    }
    results: dict[str, SessionResults] = {}
    rows = []
    for name, pol in policies.items():
        n = sessions if name != "oracle" else max(1, sessions // 4)
        res, _ = BatchEngine(model, 4096, seed=seed * 1000 + 7).run(pol, n)
        results[name] = res
        s = res.summary()
        rows.append(CalibrationResult(seed, name, n, s["mean_reward"], s["se_reward"],
                                      s["mean_steps"]))
    return results, rows


def session_lengths(results: dict[str, SessionResults], out: Path) -> Path:
    fig, (a, b) = _figure(11, 3.6, 2)
    for i, (name, res) in enumerate(results.items()):
        r, s = res.rewards, res.steps
        bins = np.arange(0, max(30, int(np.quantile(r, 0.99)) + 2), 1.0)
        a.hist(r, bins=bins, histtype="step", lw=2, density=True, color=COLORS[i],
               label=f"{name} (mean {r.mean():.2f})")
        sb = np.arange(0, max(40, int(np.quantile(s, 0.99)) + 2), 2)
        b.hist(s, bins=sb, histtype="step", lw=2, density=True, color=COLORS[i], label=name)
    a.set_xlabel("session length = sum of listen times (tracks)")
    a.set_ylabel("share of sessions")
    a.set_yscale("log")
    a.legend(fontsize=8)
    a.set_title("reward per session")
    b.set_xlabel("recommendations per session")
    b.set_yscale("log")
    b.set_title("steps per session")
    b.legend(fontsize=8)
    return _save(fig, out / "session-lengths.png")


# ---------------------------------------------------------------- the A/B example


def _events_lines(log: EventLog, start_ms: int, arms: dict[str, np.ndarray]) -> list[bytes]:
    """COMPAT event lines for one batched run: a `next` per step, a `last` per session."""
    import orjson

    n = log.session.size
    ts = start_ms + 2 * np.arange(n, dtype=np.int64)
    last_row = np.full(int(log.session.max()) + 1 if n else 0, -1, dtype=np.int64)
    np.maximum.at(last_row, log.session, np.arange(n))
    lines = []
    for i in range(n):
        u = int(log.user[i])
        exps = {name: str(arm[u]) for name, arm in arms.items()}
        lines.append(orjson.dumps({
            "message": "next", "timestamp": int(ts[i]), "user": u, "track": int(log.track[i]),
            "time": float(log.time[i]), "latency": None, "recommendation": int(log.recommendation[i]),
            "experiments": exps, "recommender": None, "fallback": None}))
        if last_row[log.session[i]] == i:
            lines.append(orjson.dumps({
                "message": "last", "timestamp": int(ts[i]) + 1, "user": u,
                "track": int(log.recommendation[i]), "time": float(log.reward[i]),
                "latency": None, "recommendation": None, "experiments": exps,
                "recommender": None, "fallback": None}))
    return lines


def simulate_ab(world: World, seed: int, rounds: int, logs: Path) -> tuple[Path, Path]:
    """A pre-period on random (for CUPED) and an experiment day, as two log directories.

    Every user plays one session per round (a permutation of all users), so a user never
    has two sessions at once and the logs sessionize exactly as the service's would.
    """
    from botify.analysis.synth import assign_arm
    from sim.batch import BatchEngine
    from sim.model import UserModel
    from sim.policies import RandomPolicy, StickyArtistPolicy

    model = UserModel(world)
    model.begin_day(0, np.random.default_rng([seed, 1]))
    rng = np.random.default_rng([seed, 2])
    users = np.arange(world.n_users)
    exp_arm = np.array([assign_arm(int(u), "STICKY", ("C", "T1")) for u in users])
    treated = exp_arm == "T1"
    rnd = RandomPolicy(world, seed=seed * 1000 + 11)
    sticky = StickyArtistPolicy(world, seed=seed * 1000 + 12)

    def ab_policy(engine: BatchEngine) -> np.ndarray:
        return np.where(treated[engine.user], sticky(engine), rnd(engine))

    day_ms = 86_400_000
    start = 1_795_996_800_000  # a fixed midnight (UTC), so the logs are reproducible
    pre, exp = logs / "pre" / "w0", logs / "experiment" / "w0"
    for d in (pre, exp):
        d.mkdir(parents=True, exist_ok=True)
    plan: list[tuple[Path, Callable, dict[str, np.ndarray], int]] = [
        (pre, rnd, {}, start),
        *[(exp, ab_policy, {"STICKY": exp_arm}, start + day_ms + r * 3_600_000)
          for r in range(rounds)],
    ]
    chunks: dict[Path, list[bytes]] = {pre: [], exp: []}
    for i, (where, policy, arms, t0) in enumerate(plan):
        engine = BatchEngine(model, 4096, seed=seed * 1000 + 20 + i)
        _, log = engine.run(policy, rng.permutation(users), log=True)
        chunks[where] += _events_lines(log, t0, arms)
    for where, lines in chunks.items():
        (where / "events-000001.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    return pre.parent, exp.parent


def _fmt(x: float, digits: int = 3) -> str:
    return "n/a" if x is None or not math.isfinite(x) else f"{x:.{digits}f}"


def _p(x: float) -> str:
    return "n/a" if not math.isfinite(x) else ("< 0.001" if x < 0.001 else f"{x:.3f}")


def ab_tables(res: AbResult) -> tuple[str, str]:
    """The course's table (markdown), and the extras (SRM, delta method, CUPED)."""
    # latency: no server in the batched engine; sessions: every user plays `rounds` by design
    t = res.table[~res.table["metric"].isin(["mean_request_latency", "sessions"])]
    lines = [
        f"Users: {', '.join(f'{a} {n:,}' for a, n in res.users_per_arm.items())}.",
        "",
        "| metric | C mean | T1 mean | effect | 95% CI | p | p (Holm) |",
        "|---|---:|---:|---:|---|---:|---:|",
    ]
    for r in t.to_dict(orient="records"):
        star = " **✓**" if r["significant_holm"] else ""
        lines.append(
            f"| {r['metric']} | {_fmt(r['control_mean'])} | {_fmt(r['treatment_mean'])} | "
            f"{r['effect']:+.1f}%{star} | [{r['lower']:+.1f}%, {r['upper']:+.1f}%] | "
            f"{_p(r['p_value'])} | {_p(r['p_holm'])} |"
        )
    s = res.srm
    extra = [
        "**SRM**: users per arm "
        + ", ".join(f"{a} {n:,}" for a, n in zip(s.arms, s.observed, strict=True))
        + " against equal shares: "
        f"χ² = {s.chi2:.2f}, p = {_p(s.p_value)}: "
        + ("**mismatch, do not trust the effects**" if s.mismatch else "no mismatch."),
        "",
        "| method | metric | effect | 95% CI | variance reduction |",
        "|---|---|---:|---|---:|",
    ]
    for r in res.ratios.to_dict(orient="records"):
        if r["metric"] == "request_latency_ms":
            continue
        extra.append(f"| delta method | {r['metric']} (pooled ratio) | {r['effect']:+.1f}% | "
                     f"[{r['lower']:+.1f}%, {r['upper']:+.1f}%] | |")
    if res.cuped is not None:
        for r in res.cuped.to_dict(orient="records"):
            if r["metric"] not in ("time", "mean_time_per_session"):
                continue
            plain = t[t["metric"] == r["metric"]].iloc[0]
            extra.append(
                f"| Welch | {r['metric']} | {plain['effect']:+.1f}% | "
                f"[{plain['lower']:+.1f}%, {plain['upper']:+.1f}%] | |")
            extra.append(
                f"| CUPED | {r['metric']} | {r['effect']:+.1f}% | "
                f"[{r['lower']:+.1f}%, {r['upper']:+.1f}%] | {r['variance_reduction']:.0%} |")
    return "\n".join(lines) + "\n", "\n".join(extra) + "\n"


# ---------------------------------------------------------------- main


def build(out: Path, *, seed: int, tracks: int, users: int, sessions: int,
          rounds: int) -> list[Path]:
    """Every figure and table into `out`; returns the files written."""
    from botify.analysis.ab import analyze_logs
    from botify.analysis.report import plot_effects
    from sim.world import GeneratorParams
    from sim.world import build as build_world
    from tqdm import tqdm

    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    steps = ["user-flow", "architecture", "listen curve", "world", "reference policies", "A/B simulation",
             "A/B analysis"]
    bar = tqdm(steps, desc="figures", unit="step", file=sys.stderr)
    bar.set_postfix_str("user-flow")
    flow = ROOT / "user-flow.png"
    if not flow.is_file():
        raise SystemExit(f"figures: {flow} is missing; run `make user-flow` (needs Graphviz)")
    written.append(Path(shutil.copyfile(flow, out / "user-flow.png")))
    bar.update()
    bar.set_postfix_str("architecture")
    written.append(architecture(out))
    bar.update()
    bar.set_postfix_str("listen curve")
    written.append(listen_curve(out))
    bar.update()
    bar.set_postfix_str(f"world ({tracks} tracks, {users} users, seed {seed})")
    world = build_world(GeneratorParams(seed=seed, n_tracks=tracks, n_users=users))
    bar.update()
    bar.set_postfix_str("reference policies")
    results, rows = reference_policies(world, seed, sessions, day_sessions=5 * users)
    written.append(session_lengths(results, out))
    table = [
        "| policy | mean session length ± s.e. | recommendations per session | sessions |",
        "|---|---:|---:|---:|",
        *[f"| {'oracle (peeks at the hidden taste)' if r.policy == 'oracle' else r.policy} | "
          f"{r.mean:.3f} ± {r.se:.3f} | {r.mean_steps:.2f} | {r.sessions:,} |" for r in rows],
        "",
        f"World: seed {seed}, {tracks:,} tracks, {users:,} users; the batched engine "
        "(`sim.batch`), the policies of `sim.calibrate`.",
    ]
    (out / "calibration.md").write_text("\n".join(table) + "\n")
    written.append(out / "calibration.md")
    bar.update()
    bar.set_postfix_str("A/B simulation")
    with tempfile.TemporaryDirectory(prefix="botify-slides-") as tmp:
        pre, exp = simulate_ab(world, seed, rounds, Path(tmp))
        bar.update()
        bar.set_postfix_str("A/B analysis")
        res = analyze_logs(exp, "STICKY", previous_logs=pre)
    (out / "ab-effects.png").write_bytes(base64.b64decode(plot_effects(res)))
    main_table, extra = ab_tables(res)
    (out / "ab-table.md").write_text(main_table)
    (out / "ab-extra.md").write_text(extra)
    written += [out / "ab-effects.png", out / "ab-table.md", out / "ab-extra.md"]
    bar.update()
    bar.close()
    return written


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python slides/figures.py", description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=ROOT / "slides" / "build" / "figures",
                    help="output directory (default: slides/build/figures)")
    ap.add_argument("--seed", type=int, default=31337)
    ap.add_argument("--tracks", type=int, default=20_000, help="tracks of the figures' world")
    ap.add_argument("--users", type=int, default=4_000, help="users of the figures' world")
    ap.add_argument("--sessions", type=int, default=10_000, help="sessions per reference policy")
    ap.add_argument("--rounds", type=int, default=2,
                    help="sessions per user in the A/B experiment day")
    args = ap.parse_args(argv)
    for name in ("tracks", "users", "sessions", "rounds"):
        if getattr(args, name) < 1:
            ap.error(f"--{name} must be >= 1")
    t0 = time.monotonic()
    files = build(args.out, seed=args.seed, tracks=args.tracks, users=args.users,
                  sessions=args.sessions, rounds=args.rounds)
    print(f"figures: {len(files)} files in {args.out} ({time.monotonic() - t0:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
