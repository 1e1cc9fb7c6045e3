"""Training benchmark: how long each trainer takes on ~1M synthetic COMPAT events.

    .venv/bin/python bench/train_bench.py [--events 1000000] [--models i2i,top_pop,...]

Logs come from botify.analysis.synth (uniform random tracks: the worst case for i2i,
almost every co-occurring pair is distinct), written as the service writes them,
then read back. Reported per stage: reading + sessionizing, each model's fit (wall and CPU
time of this process: on a shared machine CPU time is the steadier figure),
writing its artifact, and the end-to-end CLI (`python -m botify.train i2i ... --no-eval`,
a fresh process, so it includes imports) with that process's CPU time and peak RSS
(measured by GNU time when installed).
The issue's target: i2i training on 1M events <= 30 s.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from botify.analysis.logs import read_events
from botify.analysis.sessions import sessionize
from botify.analysis.synth import SynthSpec, generate, n_users_for, write_logs
from botify.store.artifacts import write_artifact
from botify.training.models import get_model
from botify.training.models.base import TrainData


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--n-tracks", type=int, default=5000)
    ap.add_argument("--models", default="i2i,top_pop,contextual,mf",
                    help="comma list; sasrec is slow on 1M events (add it explicitly)")
    ap.add_argument("--k", type=int, default=100)
    ap.add_argument("--sasrec-epochs", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", help="write the figures here")
    args = ap.parse_args()

    res: dict[str, object] = {"events_requested": args.events, "n_tracks": args.n_tracks,
                              "python": platform.python_version(), "machine": platform.machine()}
    with tempfile.TemporaryDirectory(prefix="train_bench_") as tmp:
        logdir = Path(tmp) / "logs"
        spec = SynthSpec(n_tracks=args.n_tracks, days=2, seed=args.seed)
        spec.n_users = n_users_for(args.events, spec)
        t0 = time.perf_counter()
        write_logs(generate(spec), logdir, workers=2)
        res["synth_write_s"] = round(time.perf_counter() - t0, 2)

        t0 = time.perf_counter()
        loaded = read_events(logdir)
        ses = sessionize(loaded.events)
        res["read_sessionize_s"] = round(time.perf_counter() - t0, 2)
        res["events"] = len(ses.events)
        res["sessions"] = len(ses.sessions)
        t0 = time.perf_counter()
        data = TrainData.from_events(ses.events, args.n_tracks)
        res["traindata_s"] = round(time.perf_counter() - t0, 2)
        print(f"{res['events']:,} events, {res['sessions']:,} sessions; read+sessionize "
              f"{res['read_sessionize_s']} s", flush=True)

        for name in [m for m in args.models.split(",") if m]:
            mod = get_model(name)
            p = mod.Params()
            kw = {}
            if name == "sasrec":
                p.epochs = args.sasrec_epochs
                kw["progress"] = False
            t0, c0 = time.perf_counter(), time.process_time()
            art = mod.fit(data, p, k=args.k, seed=args.seed, **kw)
            fit_s = time.perf_counter() - t0
            res[f"{name}_fit_cpu_s"] = round(time.process_time() - c0, 2)
            t0 = time.perf_counter()
            write_artifact(Path(tmp) / f"{name}.jsonl", art, {"model": name})
            write_s = time.perf_counter() - t0
            res[f"{name}_fit_s"] = round(fit_s, 2)
            res[f"{name}_write_s"] = round(write_s, 2)
            res[f"{name}_rows"] = len(art)
            print(f"{name}: fit {fit_s:.2f} s (CPU {res[f'{name}_fit_cpu_s']} s), write {write_s:.2f} s, "
                  f"{len(art):,} rows", flush=True)

        # end to end, fresh process. Its peak RSS comes from GNU time when present: the
        # rusage of our own children would include this big process's pages at fork time.
        out = Path(tmp) / "cli_i2i.jsonl"
        cmd = [sys.executable, "-m", "botify.train", "i2i", "--logs", str(logdir),
               "--out", str(out), "--k", str(args.k), "--no-eval", "--quiet"]
        gnu_time = shutil.which("time") or ("/usr/bin/time" if Path("/usr/bin/time").exists() else None)
        if gnu_time:
            cmd = [gnu_time, "-f", "%M %U %S", *cmd]
        t0 = time.perf_counter()
        r = subprocess.run(cmd, check=True, capture_output=True, text=True)
        res["cli_i2i_end_to_end_s"] = round(time.perf_counter() - t0, 2)
        if gnu_time:
            kb, user, sys_ = r.stderr.strip().splitlines()[-1].split()
            res["cli_i2i_cpu_s"] = round(float(user) + float(sys_), 2)
            res["cli_peak_rss_mb"] = round(int(kb) / 1024, 1)
        print(f"CLI i2i end to end: {res['cli_i2i_end_to_end_s']} s (CPU "
              f"{res.get('cli_i2i_cpu_s', '?')} s), peak RSS {res.get('cli_peak_rss_mb', '?')} MB",
              flush=True)
    res["bench_peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    print(json.dumps(res, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
