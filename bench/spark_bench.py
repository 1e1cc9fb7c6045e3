"""Spark engine benchmark: ~1M COMPAT events -> load + sessionize + A/B table, and i2i training.

    .venv/bin/python bench/spark_bench.py [--events 1000000] [--master 'local[*]']
        [--embedded] [--write-benchmarks]

Steps:
1. synthesise ~N events with botify.analysis.synth (the same spec as
   bench/offline_bench.py) and write them as the service does (2 worker dirs,
   rotated files) into a temp dir (not timed);
2. start a SparkSession (timed separately: JVM start is a fixed cost);
3. time read_events (parse, validate, dedup, cache), the A/B analysis
   (filter, sessionize, per-user aggregates, statistics), then i2i and top_pop
   training (default parameters, k=100) from the same cached events;
4. --embedded: the same steps with the embedded engine in this process, for a
   same-machine, same-moment comparison.

Peak memory: the driver JVM's VmHWM (local mode: driver and executors are one
JVM) and this Python process's VmHWM. Prints a markdown table and a JSON line;
--write-benchmarks rewrites the "Spark" section of BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MARK_BEGIN = "<!-- spark-bench:begin -->"
MARK_END = "<!-- spark-bench:end -->"
N_TRACKS = 5000  # SynthSpec default: every synthesised id is < 5000


def _hwm_mb(pid: int | str = "self") -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        return None
    return None


def synthesise(n_events: int, logdir: Path, seed: int) -> int:
    from botify.analysis.synth import write_benchmark_logs

    return write_benchmark_logs(n_events, logdir, seed)


def run_spark(logdir: Path, master: str) -> dict[str, float | int | None]:
    from botify.spark import ab as sab
    from botify.spark import logs as slogs
    from botify.spark import sessions as ssess
    from botify.spark import train as strain
    from botify.spark.session import get_spark
    from botify.training.models import i2i, top_pop

    out: dict[str, float | int | None] = {}
    t = time.perf_counter()
    spark = get_spark(master, "botify-bench")
    out["spark_start_s"] = time.perf_counter() - t

    t = time.perf_counter()
    loaded = slogs.read_events(spark, logdir)
    out["read_s"] = time.perf_counter() - t
    out["events"] = loaded.report.events
    t = time.perf_counter()
    res = sab.analyze(loaded, "EXP")
    out["ab_s"] = time.perf_counter() - t
    out["load_ab_s"] = out["read_s"] + out["ab_s"]
    out["users"] = int(sum(res.users_per_arm.values()))

    t = time.perf_counter()
    rows = strain.train_rows(ssess.sessionize(loaded.events), N_TRACKS)
    art = strain.fit_i2i(rows, i2i.Params(), k=100)
    out["i2i_s"] = time.perf_counter() - t
    out["i2i_rows"] = len(art)
    t = time.perf_counter()
    top = strain.fit_top_pop(rows, top_pop.Params(), k=100)
    out["top_pop_s"] = time.perf_counter() - t
    out["top_pop_len"] = len(top.top)
    jvm_pid = spark.sparkContext._gateway.proc.pid  # local mode: the one JVM
    out["jvm_peak_mb"] = _hwm_mb(jvm_pid)
    out["python_peak_mb"] = _hwm_mb()
    loaded.unpersist()
    return out


def run_embedded(logdir: Path) -> dict[str, float]:
    from botify.analysis.ab import analyze
    from botify.analysis.logs import read_events
    from botify.analysis.sessions import sessionize
    from botify.training.models import i2i
    from botify.training.models.base import TrainData

    out: dict[str, float] = {}
    t = time.perf_counter()
    loaded = read_events(logdir)
    analyze(loaded.events, "EXP")
    out["emb_load_ab_s"] = time.perf_counter() - t
    t = time.perf_counter()
    data = TrainData.from_events(sessionize(loaded.events).events, N_TRACKS)
    i2i.fit(data, i2i.Params(), k=100, seed=0)
    out["emb_i2i_s"] = time.perf_counter() - t
    return out


def table(r: dict, args: argparse.Namespace) -> str:
    def f(k: str) -> str:
        v = r.get(k)
        return "-" if v is None else f"{v:.1f}"

    lines = [
        f"| step ({r['events']:,} events, {r['users']:,} users, Spark {args.master}) | seconds |",
        "| --- | ---: |",
        f"| SparkSession start (JVM) | {f('spark_start_s')} |",
        f"| read + validate + dedup + cache | {f('read_s')} |",
        f"| A/B: filter, sessionize, per-user aggregates, statistics | {f('ab_s')} |",
        f"| **load + sessionize + A/B table** | **{f('load_ab_s')}** |",
        f"| i2i training (window 5, k 100; {r['i2i_rows']:,} tracks) | {f('i2i_s')} |",
        f"| top_pop training (k 100) | {f('top_pop_s')} |",
    ]
    if "emb_load_ab_s" in r:
        lines += [
            f"| embedded, same run: load + sessionize + A/B table | {f('emb_load_ab_s')} |",
            f"| embedded, same run: i2i training | {f('emb_i2i_s')} |",
        ]
    lines.append(
        f"\nPeak memory: driver JVM {f('jvm_peak_mb')} MB (VmHWM), Python {f('python_peak_mb')} MB."
    )
    return "\n".join(lines)


def write_benchmarks(text: str) -> None:
    path = ROOT / "BENCHMARKS.md"
    old = path.read_text() if path.exists() else "# Benchmarks\n"
    block = f"{MARK_BEGIN}\n{text}\n{MARK_END}"
    if MARK_BEGIN in old:
        new = re.sub(re.escape(MARK_BEGIN) + ".*?" + re.escape(MARK_END), block, old, flags=re.S)
    else:
        new = old.rstrip("\n") + "\n\n" + block + "\n"
    path.write_text(new)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--events", type=int, default=1_000_000)
    p.add_argument("--master", default="local[*]")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--embedded", action="store_true", help="also time the embedded engine")
    p.add_argument("--write-benchmarks", action="store_true")
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="botify-spark-bench-") as tmp:
        logdir = Path(tmp) / "logs"
        print(f"synthesising ~{args.events:,} events ...", file=sys.stderr)
        synthesise(args.events, logdir, args.seed)
        r: dict = run_spark(logdir, args.master)
        if args.embedded:
            r.update(run_embedded(logdir))
    r["machine"] = f"{platform.processor() or platform.machine()}, {os.cpu_count()} cpu"
    r["load_avg_1m"] = os.getloadavg()[0]
    txt = table(r, args)
    print(txt)
    print(json.dumps(r))
    if args.write_benchmarks:
        header = (
            "## Spark\n\n"
            f"`.venv/bin/python bench/spark_bench.py --events {args.events} --master "
            f"'{args.master}'{' --embedded' if args.embedded else ''} --write-benchmarks` "
            f"({r['machine']}; load average {r['load_avg_1m']:.1f} at the end: the machine "
            "was shared with other jobs, so these are upper bounds).\n\n"
        )
        write_benchmarks(header + txt)
    return 0


if __name__ == "__main__":
    sys.exit(main())
