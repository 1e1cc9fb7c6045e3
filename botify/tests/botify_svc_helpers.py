"""Helpers for the service tests (imported by name: botify/tests is on sys.path under pytest)."""

from __future__ import annotations

import json
from pathlib import Path

N_TRACKS = 60
N_ARTISTS = 6


def write_tracks(path: Path, n: int = N_TRACKS, artists: int = N_ARTISTS) -> Path:
    """A COMPAT tracks file: ids 0..n-1, artist i % artists (deterministic)."""
    with path.open("w", encoding="utf-8") as f:
        for i in range(n):
            f.write(json.dumps({"track": i, "artist": f"Artist {i % artists}", "title": f"Track {i}",
                                "genres": ["test"], "year": 2000 + i % 20}) + "\n")
    return path


def write_yaml(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def read_lines(log_dir: Path, prefix: str = "events") -> list[dict]:
    """Every line of every `prefix-*.jsonl` under log_dir, parsed (fails on a torn line)."""
    out = []
    for p in sorted(log_dir.rglob(f"{prefix}-*.jsonl")):
        for line in p.read_bytes().splitlines():
            out.append(json.loads(line))
    return out
