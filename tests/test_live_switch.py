"""Delivery under live traffic: tables switched and rolled back while /next is hammered.

Issue 4 section 5: a new table version goes live atomically, with no moment of
half-loaded state. Here a real 2-worker service answers /next from several threads
while the main thread loads and switches versions A and B of the i2i table (and rolls
back once). Every answer must come from A or B: never a fallback, never a missing table.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import redis
import requests
from helpers_service import botify_service, write_catalog, write_experiments

from botify import store

N_TRACKS = 200
NS = "switch"


def _table(path: Path, shift: int) -> Path:
    """Track t -> [t+shift, t+shift+1] (mod N): each version's answer is recognisable."""
    with path.open("w") as f:
        for t in range(N_TRACKS):
            recs = [(t + shift) % N_TRACKS, (t + shift + 1) % N_TRACKS]
            f.write(json.dumps({"item_id": t, "recommendations": recs}) + "\n")
    return path


def test_switches_under_traffic_never_expose_a_missing_table(tmp_path: Path, redis_url: str) -> None:
    catalog = write_catalog(tmp_path / "catalog.jsonl", N_TRACKS, artists=20)
    experiments = write_experiments(tmp_path / "experiments.yml", {"C": "i2i", "T1": "i2i"})
    table_a, table_b = _table(tmp_path / "a.jsonl", 1), _table(tmp_path / "b.jsonl", 3)
    r = redis.Redis.from_url(redis_url)
    store.load_catalog(r, catalog, NS)
    store.switch_table(r, "i2i", store.load_table(r, "i2i", table_a, NS), NS)

    answers: list[tuple[int, int, int]] = []  # (status, track, recommendation)
    stop = threading.Event()
    lock = threading.Lock()

    with botify_service(redis_url=redis_url, catalog=catalog, log_dir=tmp_path / "logs",
                        experiments=experiments, workers=2, namespace=NS) as svc:

        def client(worker: int) -> None:
            s = requests.Session()
            i = 0
            while not stop.is_set():
                user = worker * 1_000_000 + i  # a new user per request: one anchor, the track
                track = (user * 7) % N_TRACKS
                resp = s.post(f"{svc.url}/next/{user}", json={"track": track, "time": 1.0}, timeout=10)
                rec = resp.json().get("track", -1) if resp.status_code == 200 else -1
                with lock:
                    answers.append((resp.status_code, track, rec))
                i += 1

        threads = [threading.Thread(target=client, args=(w,)) for w in range(4)]
        for t in threads:
            t.start()
        try:
            for i in range(12):
                time.sleep(0.15)
                table = table_b if i % 2 == 0 else table_a
                store.switch_table(r, "i2i", store.load_table(r, "i2i", table, NS), NS)
            time.sleep(0.15)
            store.rollback_table(r, "i2i", NS)
            time.sleep(0.3)
        finally:
            stop.set()
            for t in threads:
                t.join(timeout=30)

    assert len(answers) > 200, len(answers)
    bad = [(s, t, rec) for s, t, rec in answers
           if s != 200 or rec not in ((t + 1) % N_TRACKS, (t + 3) % N_TRACKS)]
    assert not bad, bad[:10]
    seen = {(rec - t) % N_TRACKS for _, t, rec in answers}
    assert seen == {1, 3}, "both versions must have served while switching"

    events = [json.loads(line) for f in (tmp_path / "logs").rglob("events-*.jsonl")
              for line in f.read_text().splitlines()]
    nexts = [e for e in events if e["message"] == "next"]
    assert len(nexts) == len(answers)
    assert {(e["recommender"], e["fallback"]) for e in nexts} == {("i2i", None)}
