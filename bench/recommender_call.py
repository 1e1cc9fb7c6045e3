"""The Python cost of one recommender call as the service makes it, two code versions interleaved.

    .venv/bin/python bench/recommender_call.py --baseline 644bb9f --rounds 4

What is timed: building the request's state and asking the serving `i2i` (20 recent
listens, 50-long rows of a 50k-track table held in memory, so no Redis) through its
fallback chain: the part of /next that the recommender API owns. CPU time of the process
(time.process_time), best of 7 repetitions of 20k calls per run, so other load on a
shared machine inflates it less than wall time; versions alternate (A B B A ...).
The baseline is `git archive`d into a temporary directory and run with PYTHONPATH.
Both API generations are understood: the per-request `Context` (this one) and the
thread-local `RequestState` it replaced.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
from io import BytesIO
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

PROBE = r'''
import time
import numpy as np
import botify.recommenders as R
from botify.store.catalog import Catalog

cat = Catalog.from_bytes(b"".join(b'{"track": %d, "artist": "a%d", "title": "t"}\n' % (i, i % 500) for i in range(50000)))
rows = {i: np.asarray([(i * 7 + j) % 50000 for j in range(1, 51)], dtype=np.int32) for i in range(50000)}


class Mem(R.TableReader):
    def version(self, name): return "v"
    def get(self, name, key): return rows.get(int(key))
    def get_many(self, name, keys): return [rows.get(int(k)) for k in keys]


recent_raw = [b"[%d,0.5]" % t for t in range(20)]
if hasattr(R, "Context"):
    ctx = R.Context(cat, Mem(), 1)
    inst = {n: R.REGISTRY[n](ctx, name=n) for n in ("i2i", "top_pop", "random")}

    def one(u):
        t = u % 50000
        c = ctx.for_request(inst, u, t, 0.5, {t, 1, 2, 3}, R.RequestRng(1, u, t, 4), recent_raw=recent_raw)
        return c.answer("i2i")
else:
    from botify.recommenders.base import set_state
    from botify.service.core import Service

    svc = R.Services(catalog=cat, tables=Mem(), seed=1)
    inst = {n: R.REGISTRY[n](svc, name=n) for n in ("i2i", "top_pop", "random")}

    class E:
        instances = inst

    class F:
        catalog = cat

    def one(u):
        t = u % 50000
        st = R.RequestState(u, t, 0.5, {t, 1, 2, 3}, None, R.RequestRng(1, u, t, 4), recent_raw=recent_raw)
        set_state(st)
        try:
            return Service._run_chain(F, E, "i2i", u, t, 0.5)
        finally:
            set_state(None)

for u in range(2000):
    one(u)
best = []
for _ in range(7):
    t0 = time.process_time()
    for u in range(20000):
        one(u)
    best.append((time.process_time() - t0) / 20000 * 1e6)
print(min(best))
'''


def _run(src: Path) -> float:
    env = {**os.environ, "PYTHONPATH": str(src)}
    out = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, check=True)
    return float(out.stdout.strip())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--baseline", required=True, help="git revision to compare the working tree against")
    ap.add_argument("--rounds", type=int, default=4, help="runs per version")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="botify-call-") as d:
        archive = subprocess.run(["git", "archive", args.baseline, "botify/src"], cwd=REPO, capture_output=True, check=True)
        with tarfile.open(fileobj=BytesIO(archive.stdout)) as tar:
            tar.extractall(d, filter="data")
        versions = {f"baseline {args.baseline}": Path(d) / "botify" / "src", "working tree": REPO / "botify" / "src"}
        results: dict[str, list[float]] = {n: [] for n in versions}
        order = list(versions.items())
        for r in range(args.rounds):
            for name, src in order if r % 2 == 0 else order[::-1]:
                results[name].append(_run(src))
                print(f"  round {r + 1} {name:22s} {results[name][-1]:6.2f} us/call", flush=True)
    print("\n| version | CPU per call (median of runs, range) |\n| --- | ---: |")
    for name, xs in results.items():
        print(f"| {name} | {statistics.median(xs):.2f} us ({min(xs):.2f}-{max(xs):.2f}) |")
    base, cur = (statistics.median(xs) for xs in results.values())
    print(f"\nworking tree / baseline CPU per call: {cur / base:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
