"""Offline analysis benchmark: 1M COMPAT events -> load + sessionize + A/B table.

    .venv/bin/python bench/offline_bench.py [--events 1000000] [--course-events N]

Steps:
1. synthesise ~N events with botify.analysis.synth and write them as the service
   does (2 worker dirs, rotated files) into a temp dir (not timed);
2. in a fresh child process (so peak RSS is the pipeline's own): time
   read_events, sessionize and analyze (analyze sessionizes again internally:
   the "total" is read_events + analyze, i.e. logs to A/B table);
3. the reference: the course's notebook approach, clearly labelled below:
   pd.read_json per file, then a per-user Python row loop (iterrows) to
   sessionize. It runs on the first `--course-events` events of the same data
   by user (all of them by default) because it is slow.

Prints a markdown table and a JSON line; --write-benchmarks also rewrites the
"Offline analysis" block of BENCHMARKS.md.

--baseline REV compares against the reader of an earlier commit on the same
files: `git show REV:botify/src/botify/analysis/logs.py` is loaded as a module
and the two readers run in alternation (`--rounds` each, every run in a fresh
child process), so that a noisy shared machine slows both alike; the ratios of
their medians are reported beside the absolute figures.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from collections import namedtuple
from pathlib import Path

import numpy as np
import pandas as pd


def _rss_mb() -> float:
    """Peak RSS of this process image. ru_maxrss would do, except that Linux carries
    it across exec: a child would report the parent's peak (the synthesised data)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def synthesise(n_events: int, logdir: Path, seed: int, ids: bool = False) -> int:
    from botify.analysis.synth import write_benchmark_logs

    return write_benchmark_logs(n_events, logdir, seed, ids=ids)


def _cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _load_reader(module_file: Path | None):
    """read_events of the working tree, or of a module file (an earlier commit's logs.py)."""
    if module_file is None:
        from botify.analysis.logs import read_events

        return read_events
    import importlib.util

    spec = importlib.util.spec_from_file_location("baseline_logs", module_file)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules["baseline_logs"] = mod
    spec.loader.exec_module(mod)
    return mod.read_events


def run_pipeline(logdir: Path, reader_file: Path | None = None) -> dict[str, float]:
    """The embedded engine, timed step by step (runs in a child process)."""
    t0 = time.perf_counter()
    from botify.analysis.ab import analyze
    from botify.analysis.sessions import sessionize

    read_events = _load_reader(reader_file)

    t_import = time.perf_counter() - t0
    cpu0 = _cpu_s()
    t0 = time.perf_counter()
    loaded = read_events(logdir)
    t_read = time.perf_counter() - t0
    t0 = time.perf_counter()
    s = sessionize(loaded.events)
    t_sess = time.perf_counter() - t0
    t0 = time.perf_counter()
    res = analyze(loaded.events, "EXP")
    t_ab = time.perf_counter() - t0
    cpu = _cpu_s() - cpu0
    return {
        "events": len(loaded.events),
        "files": loaded.report.files_read,
        "sessions": len(s.sessions),
        "users": int(sum(res.users_per_arm.values())),
        "import_s": t_import,
        "read_s": t_read,
        "sessionize_s": t_sess,
        "ab_s": t_ab,
        "total_s": t_read + t_ab,
        "cpu_s": cpu,  # user+sys of all threads over read + sessionize + analyze
        "peak_rss_mb": _rss_mb(),
    }


# --------------------------------------------------------------------------- reference
# THE COURSE'S ROW-LOOP SESSIONIZATION (reference, not botify code): pandas
# read_json per file, then per (user, arm) a Python loop over rows with iterrows.

CourseSession = namedtuple("CourseSession", ["timestamp", "tracks", "time", "latency"])


def course_sessionize(user_data: pd.DataFrame) -> list[dict[str, float]]:
    sessions = []
    session = None
    for _, row in user_data.sort_values("timestamp").iterrows():
        if session is None:
            session = CourseSession(row["timestamp"], 0, 0, 0)
        session = session._replace(
            tracks=session.tracks + 1,
            time=session.time + row["time"],
            latency=session.latency + row["latency"] * 1000,
        )
        if row["message"] == "last":
            sessions.append(session._asdict())
            session = None
    return sessions


def run_course_reference(logdir: Path, max_events: int | None) -> dict[str, float]:
    t0 = time.perf_counter()
    files = sorted(logdir.rglob("events-*.jsonl"))
    data = pd.concat([pd.read_json(f, lines=True) for f in files])
    t_read = time.perf_counter() - t0
    data["treatment"] = data["experiments"].map(lambda e: e["EXP"])
    if max_events is not None and max_events < len(data):
        # whole users, so sessions are not cut: the first users by id up to max_events
        per_user = data.groupby("user").size().sort_index()
        keep = per_user.index[np.cumsum(per_user.to_numpy()) <= max_events]
        data = data[data["user"].isin(keep)]
    n = len(data)
    t0 = time.perf_counter()
    sessions = data.groupby(["user", "treatment"]).apply(course_sessionize).explode()
    t_sess = time.perf_counter() - t0
    return {
        "course_read_s": t_read,
        "course_events": n,
        "course_sessionize_s": t_sess,
        "course_sessions": int(sessions.notna().sum()),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument(
        "--course-events",
        type=int,
        default=None,
        help="events given to the course's row loop (default: all of them)",
    )
    ap.add_argument("--skip-course", action="store_true")
    ap.add_argument(
        "--write-benchmarks",
        action="store_true",
        help="rewrite this bench's block in BENCHMARKS.md",
    )
    ap.add_argument(
        "--baseline",
        metavar="REV",
        help="also time the reader of git revision REV, interleaved with this one",
    )
    ap.add_argument("--rounds", type=int, default=5, help="runs of each reader with --baseline")
    ap.add_argument(
        "--with-ids",
        action="store_true",
        help="logs carry the service's seq and event_id fields (about 15%% more bytes)",
    )
    ap.add_argument("--logs", type=Path, help=argparse.SUPPRESS)  # child mode
    ap.add_argument("--reader-file", type=Path, help=argparse.SUPPRESS)  # child mode
    args = ap.parse_args()

    if args.logs is not None:  # child: time the pipeline only
        print(json.dumps(run_pipeline(args.logs, args.reader_file)))
        return

    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="botify-offline-bench-") as tmp:
        logdir = Path(tmp) / "logs"
        t0 = time.perf_counter()
        n = synthesise(args.events, logdir, args.seed, args.with_ids)
        t_synth = time.perf_counter() - t0
        size_mb = sum(f.stat().st_size for f in logdir.rglob("*")) / 1e6
        print(
            f"synthesised {n} events ({size_mb:.0f} MB JSON lines) in {t_synth:.1f} s", flush=True
        )
        if args.baseline:
            res = compare(logdir, args.baseline, args.rounds, Path(tmp))
        else:
            res = _child(logdir)
        res["json_mb"] = size_mb
        if not args.skip_course:
            print("running the course's row-loop reference (slow)...", flush=True)
            res.update(run_course_reference(logdir, args.course_events))

    table = render_table(res)
    print()
    print(table)
    print()
    print(json.dumps(res))
    if args.write_benchmarks:
        write_benchmarks(table, res, load_before, os.getloadavg()[0], args)


def _child(logdir: Path, reader_file: Path | None = None) -> dict:
    cmd = [sys.executable, __file__, "--logs", str(logdir)]
    if reader_file is not None:
        cmd += ["--reader-file", str(reader_file)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def compare(logdir: Path, rev: str, rounds: int, tmp: Path) -> dict:
    """This reader and REV's, alternating; medians of each and their ratios."""
    repo = Path(__file__).resolve().parent.parent
    old_src = subprocess.run(
        ["git", "-C", str(repo), "show", f"{rev}:botify/src/botify/analysis/logs.py"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    old_file = tmp / "baseline_logs.py"
    old_file.write_text(old_src)
    runs: dict[str, list[dict]] = {"new": [], "old": []}
    for i in range(rounds):
        for which in (("new", "old") if i % 2 == 0 else ("old", "new")):
            r = _child(logdir, old_file if which == "old" else None)
            runs[which].append(r)
            print(
                f"round {i + 1} {which}: read {r['read_s']:.2f} s, total {r['total_s']:.2f} s, "
                f"cpu {r['cpu_s']:.2f} s, rss {r['peak_rss_mb']:.0f} MB",
                flush=True,
            )
    med = {w: {k: float(np.median([r[k] for r in rs])) for k in rs[0]} for w, rs in runs.items()}
    res = dict(med["new"])
    for k in ("events", "files", "sessions", "users"):  # counts: the same in every run
        res[k] = runs["new"][0][k]
    res["baseline"] = rev
    res["rounds"] = rounds
    for k in ("read_s", "total_s", "cpu_s", "peak_rss_mb"):
        res["old_" + k] = med["old"][k]
    return res


def render_table(res: dict) -> str:
    lines = [
        "| step | wall time |",
        "| --- | ---: |",
        f"| `read_events` ({res['events']} events, {res['files']} files, "
        f"{res['json_mb']:.0f} MB of JSON lines, 2 worker dirs) | {res['read_s']:.2f} s |",
        f"| `sessionize` ({res['sessions']} sessions) | {res['sessionize_s']:.3f} s |",
        f"| A/B table: `analyze` (filter, sessionize, user level, Welch, Holm, SRM, "
        f"delta-method ratios, power; {res['users']} users) | {res['ab_s']:.2f} s |",
        f"| **total, logs to A/B table** (`read_events` + `analyze`; target <= 1.0 s "
        f"on an idle machine) | **{res['total_s']:.2f} s** |",
        f"| CPU time of the three steps (user+sys, all threads) | {res['cpu_s']:.2f} s |",
        f"| peak RSS of the pipeline process | {res['peak_rss_mb']:.0f} MB |",
        f"| not timed: importing pandas, pyarrow, scipy | {res['import_s']:.2f} s |",
    ]
    if "baseline" in res:
        lines = lines[:2] + [
            f"| *median of {res['rounds']} runs each, alternating with the reader of "
            f"`{res['baseline']}` on the same files* | |"
        ] + lines[2:]
        for k, label in (
            ("read_s", "`read_events` wall"),
            ("total_s", "total wall, logs to A/B table"),
            ("cpu_s", "CPU time of the three steps"),
        ):
            lines.append(
                f"| baseline `{res['baseline']}`: {label} | {res['old_' + k]:.2f} s "
                f"(this reader: {res[k] / res['old_' + k]:.2f}x of it) |"
            )
        lines.append(
            f"| baseline `{res['baseline']}`: peak RSS | {res['old_peak_rss_mb']:.0f} MB |"
        )
    if "course_sessionize_s" in res:
        rate = res["course_events"] / res["course_sessionize_s"]
        ours = res["events"] / max(res["sessionize_s"], 1e-9)
        lines += [
            f"| course reference: `pd.read_json` of the same files | {res['course_read_s']:.2f} s |",
            f"| course reference: row-loop sessionize (iterrows per user) of "
            f"{res['course_events']} events | {res['course_sessionize_s']:.1f} s "
            f"({rate:,.0f} events/s) |",
            f"| vectorised `sessionize` vs the row loop | {ours / rate:,.0f}x faster |",
        ]
    return "\n".join(lines)


BEGIN, END = "<!-- offline-bench:begin -->", "<!-- offline-bench:end -->"


def write_benchmarks(table: str, res: dict, load_before: float, load_after: float, args) -> None:
    """Replace this bench's block in BENCHMARKS.md (creating the section if absent)."""
    path = Path(__file__).resolve().parent.parent / "BENCHMARKS.md"
    cmd = ".venv/bin/python bench/offline_bench.py --write-benchmarks"
    if args.events != 1_000_000:
        cmd += f" --events {args.events}"
    if args.course_events is not None:
        cmd += f" --course-events {args.course_events}"
    if args.baseline:
        cmd += f" --baseline {args.baseline} --rounds {args.rounds}"
    if args.with_ids:
        cmd += " --with-ids"
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    block = (
        f"{BEGIN}\nCommand: `{cmd}` (synthesis ~30 s, pipeline seconds, the course's row "
        "loop about 5 minutes; `--skip-course` or `--course-events N` to shorten).\n\n"
        f"Measured {when} on {os.cpu_count()} cores, {platform.machine()}, Python "
        f"{platform.python_version()}, pandas {pd.__version__}, pyarrow {_pyarrow_version()}. "
        f"1-minute load average before/after: {load_before:.1f} / {load_after:.1f} "
        "(anything above ~0.5 means other work shared the cores; wall times then overstate "
        "the cost, the CPU time line does not).\n\n"
        f"{table}\n{END}"
    )
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    if BEGIN in text and END in text:
        a, b = text.index(BEGIN), text.index(END) + len(END)
        text = text[:a] + block + text[b:]
    else:
        text = text.rstrip("\n") + "\n\n## Offline analysis\n\n" + INTRO + "\n\n" + block + "\n"
    path.write_text(text)
    print(f"wrote {path}")


INTRO = (
    "1M events synthesised in the COMPAT format (`botify.analysis.synth`: 2 days, 2 arms, "
    "MurmurHash3 assignment, 2 worker directories, files rotated every 250k lines: 4 files), "
    "then logs -> sessions -> A/B table with the embedded engine (pyarrow JSON reader on a "
    "thread pool, numpy, pandas) in a fresh process. The reference is the course's notebook "
    "approach on the same files: `pd.read_json` per file, then a per-user `iterrows` loop to "
    "sessionize. Method: `bench/offline_bench.py` docstring; the A/B method: docs/analysis.md."
    " Target: logs to A/B table in at most 1.0 s wall and 1.5 GB peak RSS on an otherwise idle"
    " machine. On a shared machine the wall times overstate the cost (the reader's threads wait"
    " for a core), so `--baseline REV` runs the reader of an earlier commit alternately with"
    " this one on the same files and reports the ratio of their medians."
)


def _pyarrow_version() -> str:
    import pyarrow

    return pyarrow.__version__


if __name__ == "__main__":
    main()
