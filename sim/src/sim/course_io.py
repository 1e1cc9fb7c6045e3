"""Import and export the course's data files (docs/interfaces.md "Course data files").

export: a world -> tracks.jsonl ({"track", "artist", "title", ...}),
embeddings.npy ((N, d) float32, row i = track i) and users.jsonl ({"user",
"interests", "consume_bias", "consume_sharpness"} + per-user overrides).
import: those three files -> a world directory that sim and botify can use
(catalog.jsonl is derived from the tracks; genres/year/mood are kept when the
course file has them, else left empty/0).

The embeddings are kept exactly as given: the course's simulator scores raw
inner products, so L2-normalising its rows changes every listen time (on the
course's files: 0.796 mean session time raw vs 0.558 normalised). `--normalise`
asks for unit rows explicitly.

    python -m sim.course_io export WORLD_DIR OUT_DIR
    python -m sim.course_io import --tracks T.jsonl --embeddings E.npy --users U.jsonl --out DIR
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from sim.world import World, WorldError, _read_jsonl, _write_lines, from_records

COURSE_FILES = ("tracks.jsonl", "embeddings.npy", "users.jsonl")


def export_course(world: World | str | Path, out: str | Path) -> dict[str, Path]:
    """Write a world as the course's tracks/embeddings/users files."""
    import orjson

    if not isinstance(world, World):
        world = World.load(world)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    lines = []
    for t in range(world.n_tracks):
        rec = world.catalog_record(t)
        lines.append(orjson.dumps(rec))
    _write_lines(out / "tracks.jsonl", lines)
    np.save(out / "embeddings.npy", world.embeddings.astype(np.float32))
    flat = world.interests.tolist()
    off = world.interest_offsets.tolist()
    bias = world.consume_bias.tolist()
    sharp = world.consume_sharpness.tolist()
    ov = {k: v.tolist() for k, v in world.overrides.items()}
    users = []
    for u in range(world.n_users):
        rec = {"user": u, "interests": flat[off[u]:off[u + 1]], "consume_bias": bias[u],
               "consume_sharpness": sharp[u]}
        for key, vals in ov.items():
            if vals[u] == vals[u]:
                rec[key] = int(vals[u]) if key != "artist_discount_gamma" else vals[u]
        users.append(orjson.dumps(rec))
    _write_lines(out / "users.jsonl", users)
    return {name: out / name for name in COURSE_FILES}


_USER_KEYS = ("user", "interests", "consume_bias", "consume_sharpness")


def _check_shape(track_recs: list[dict], n_rows: int, user_recs: list[dict], tracks: Path,
                 embeddings: Path, users: Path) -> None:
    """Name the file and the problem when a course file has the wrong shape."""
    if not track_recs:
        raise WorldError(f"{tracks}: no tracks")
    for i, rec in enumerate(track_recs, 1):
        missing = [k for k in ("track", "artist") if k not in rec]
        if missing:
            raise WorldError(f"{tracks}: record {i} lacks {', '.join(missing)}")
    if n_rows != len(track_recs):
        raise WorldError(f"{embeddings}: {n_rows} rows but {tracks} has {len(track_recs)} tracks")
    if not user_recs:
        raise WorldError(f"{users}: no users")
    for i, rec in enumerate(user_recs, 1):
        missing = [k for k in _USER_KEYS if k not in rec]
        if missing:
            raise WorldError(f"{users}: record {i} lacks {', '.join(missing)}")
        if not isinstance(rec["interests"], list):
            raise WorldError(f"{users}: record {i}: interests must be a list of track ids")


def import_course(tracks: str | Path, embeddings: str | Path, users: str | Path,
                  out: str | Path | None = None, *, normalise: bool = False) -> World:
    """Read course files into a World (and write a world directory if `out`).

    `normalise=False` (default) keeps the embeddings as given, so the course's
    files give the course's numbers; True L2-normalises the rows.
    """
    import orjson

    tracks, embeddings, users = Path(tracks), Path(embeddings), Path(users)
    for p in (tracks, embeddings, users):
        if not p.exists():
            raise WorldError(f"missing course file: {p}")
    try:
        emb = np.load(embeddings, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise WorldError(f"{embeddings}: not a readable .npy array ({exc})") from exc
    if emb.ndim != 2 or not np.issubdtype(emb.dtype, np.floating):
        raise WorldError(f"{embeddings}: expected a float (N, d) array, got {emb.dtype} {emb.shape}")
    if emb.shape[0] == 0 or emb.shape[1] == 0:
        raise WorldError(f"{embeddings}: empty array {emb.shape}")
    track_recs = _read_jsonl(tracks, orjson)
    user_recs = _read_jsonl(users, orjson)
    _check_shape(track_recs, emb.shape[0], user_recs, tracks, embeddings, users)
    try:
        world = from_records(track_recs, emb, user_recs, normalise=normalise)
    except (KeyError, TypeError, ValueError) as exc:
        raise WorldError(f"course files {tracks.name}/{embeddings.name}/{users.name}: {exc}") \
            from exc
    world.meta = {"generator_version": "course-import", "embeddings_normalised": bool(normalise),
                  "source": {"tracks": str(tracks), "embeddings": str(embeddings),
                             "users": str(users)}}
    if out is not None:
        world.save(out)
    return world


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m sim.course_io",
                                 description="Convert between sim worlds and the course files.")
    sub = ap.add_subparsers(dest="cmd", required=True)
    e = sub.add_parser("export", help="world directory -> course tracks/embeddings/users files")
    e.add_argument("world", type=Path)
    e.add_argument("out", type=Path)
    i = sub.add_parser("import", help="course files -> world directory")
    i.add_argument("--tracks", type=Path, required=True)
    i.add_argument("--embeddings", type=Path, required=True)
    i.add_argument("--users", type=Path, required=True)
    i.add_argument("--out", type=Path, required=True)
    i.add_argument("--normalise", action="store_true",
                   help="L2-normalise the embedding rows (default: keep them as given, "
                        "which is what the course's simulator uses)")
    args = ap.parse_args(argv)
    try:
        if args.cmd == "export":
            files = export_course(args.world, args.out)
            print("wrote " + ", ".join(str(p) for p in files.values()))
        else:
            w = import_course(args.tracks, args.embeddings, args.users, args.out,
                              normalise=args.normalise)
            print(f"imported {w.n_tracks} tracks, {w.n_artists} artists, {w.n_users} users "
                  f"-> {args.out}")
    except (WorldError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
