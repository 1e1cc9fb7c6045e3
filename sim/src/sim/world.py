"""The music world: a seeded generator of artists, tracks, hidden embeddings and users.

`python -m sim.world generate --seed 31337 --tracks 50000 --users 10000 --out DIR`
writes the directory layout of docs/interfaces.md section 1. Same arguments give
byte-identical files: every random draw comes from one np.random.SeedSequence
spawned into independent streams, the writers format numbers deterministically,
and world.json holds no timestamp.

Geometry of the hidden embeddings (the ground truth of user taste):
genres belong to families (electronic, rock, ...); a genre centroid mixes its
family direction with its own; a genre holds scenes (hidden neighbourhoods of
~30 artists) spread widely around it; an artist sits near its scene centroid
(cross-genre artists are pulled toward a second genre, which creates
neighbourhoods that bridge genres); a track sits near its artist. So one
artist's tracks are close, a scene's artists are close (the related-artist
structure co-listening reveals), while a genre is broad and its public tag
noisy (a share of artists is filed under a sibling genre): a genre tag alone
is weak evidence of taste, as in real catalogs (sim/README.md, Calibration).
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from sim import names

GENERATOR_VERSION = "3"  # 3: release years no longer piled at LAST_YEAR
# Chosen by measurement (sim/README.md "Embedding dimension"): 32 keeps
# artist/genre structure crisp (random inner products have s.d. ~0.18, one
# artist's tracks ~0.7 apart from the rest) while one step costs a 32-float dot.
DEFAULT_DIM = 32

FAMILIES: dict[str, list[str]] = {
    "electronic": ["techno", "house", "synthpop", "ambient"],
    "rock": ["indie", "punk", "metal", "shoegaze"],
    "urban": ["hiphop", "rnb", "trap", "soul"],
    "acoustic": ["folk", "country", "singer-songwriter", "bluegrass"],
    "classic": ["jazz", "classical", "blues", "lounge"],
    "global": ["pop", "kpop", "reggae", "latin"],
}
GENRES: list[str] = [g for gs in FAMILIES.values() for g in gs]
GENRE_FAMILY = np.array([i for i, gs in enumerate(FAMILIES.values()) for _ in gs], dtype=np.int16)
# Typical debut-year window per family (eras make `year` informative); no release after LAST_YEAR.
LAST_YEAR = 2025
_FAMILY_ERA = np.array([[1985, 2024], [1968, 2020], [1985, 2024], [1960, 2022], [1950, 2015],
                        [1975, 2024]])
MOODS: list[str] = ["bright", "dark", "calm", "energetic", "melancholic", "dreamy", "warm",
                    "aggressive"]
COUNTRIES: list[str] = ["US", "GB", "DE", "FR", "SE", "NO", "JP", "KR", "BR", "MX", "NG", "JM",
                        "CA", "AU", "ES", "IT", "NL", "PL", "IN", "ZA"]


class WorldError(ValueError):
    """A world directory or file is missing or corrupt (message names the file)."""


@dataclass
class GeneratorParams:
    """Knobs of the generator; defaults are the calibrated ones (sim/README.md)."""

    seed: int = 31337
    n_tracks: int = 50_000
    n_users: int = 10_000
    dim: int = DEFAULT_DIM
    tracks_per_artist: float = 12.0      # mean; heavy-tailed across artists
    artists_per_scene: float = 30.0      # mean artists per scene (neighbourhood in a genre)
    min_scenes: int = 4                  # scenes per genre at least (small worlds)
    scene_spread: float = 2.4            # scene noise around its genre centroid
    artist_spread: float = 0.5           # artist noise around its scene centroid
    genre_tag_noise: float = 0.25        # share of artists publicly tagged with a sibling genre
    track_spread: float = 0.6            # track noise around its artist centroid
    family_weight: float = 0.55          # how much genres of one family share
    cross_genre_share: float = 0.25      # artists between two genres
    related_artists: int = 10            # chain candidates per artist
    mean_interests: float = 5.0
    interest_pop_power: float = 1.0      # chains start/leap at artists ~ fans**power
    openness_a: float = 2.0              # per-user openness ~ Beta(a, b)
    openness_b: float = 5.0
    bias_range: tuple[float, float] = (0.3, 0.5)
    sharpness_range: tuple[float, float] = (6.0, 10.0)


@dataclass
class World:
    """An in-memory world. Arrays are read-only views of the generated/loaded data."""

    embeddings: np.ndarray            # (N, d) float32 (hidden); generated: unit rows, imported: as given
    track_artist: np.ndarray          # (N,) int32
    titles: list[str]
    track_genres: list[list[str]]
    track_year: np.ndarray            # (N,) int16 (0 = unknown)
    track_mood: list[str]
    track_popularity: np.ndarray      # (N,) int64 play counts
    artist_names: list[str]
    artist_country: list[str]
    artist_genre: list[str]
    artist_fans: np.ndarray           # (A,) int64
    interest_offsets: np.ndarray      # (U+1,) int64, CSR row pointers into `interests`
    interests: np.ndarray             # (sum,) int32 track ids
    consume_bias: np.ndarray          # (U,) float64
    consume_sharpness: np.ndarray     # (U,) float64
    overrides: dict[str, np.ndarray] = field(default_factory=dict)  # per-user, NaN = default
    meta: dict = field(default_factory=dict)
    directory: Path | None = None
    _nn_cache: dict[int, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict, repr=False)
    _artist_tracks: tuple[np.ndarray, np.ndarray] | None = field(default=None, repr=False)

    # ------------------------------------------------------------------ sizes
    @property
    def n_tracks(self) -> int:
        return int(self.embeddings.shape[0])

    @property
    def n_users(self) -> int:
        return int(self.consume_bias.shape[0])

    @property
    def n_artists(self) -> int:
        return len(self.artist_names)

    @property
    def dim(self) -> int:
        return int(self.embeddings.shape[1])

    # --------------------------------------------------------------- lookups
    def track_title(self, track: int) -> str:
        return self.titles[track]

    def track_artist_name(self, track: int) -> str:
        return self.artist_names[int(self.track_artist[track])]

    def user_interests(self, user: int) -> np.ndarray:
        return self.interests[self.interest_offsets[user]:self.interest_offsets[user + 1]]

    def artist_tracks(self) -> tuple[np.ndarray, np.ndarray]:
        """CSR (offsets (A+1,), tracks) of each artist's tracks, ascending ids."""
        if self._artist_tracks is None:
            order = np.argsort(self.track_artist, kind="stable").astype(np.int32)
            counts = np.bincount(self.track_artist, minlength=self.n_artists)
            offsets = np.zeros(self.n_artists + 1, dtype=np.int64)
            np.cumsum(counts, out=offsets[1:])
            self._artist_tracks = (offsets, order)
        return self._artist_tracks

    def catalog_record(self, track: int) -> dict:
        """The public record of one track (what the service may know)."""
        return {
            "track": int(track),
            "artist": self.track_artist_name(track),
            "title": self.titles[track],
            "genres": self.track_genres[track],
            "year": int(self.track_year[track]),
            "mood": self.track_mood[track],
        }

    # ------------------------------------------------ nearest-neighbour cache
    def nearest(self, vectors: np.ndarray, k: int, block: int = 256) -> np.ndarray:
        """Exact top-k track ids by inner product for each row of `vectors`.

        Rows are ordered by decreasing score, ties by increasing id, so the
        result is deterministic. Blocked so memory stays ~block*N*4 bytes.
        """
        vectors = np.atleast_2d(np.asarray(vectors, dtype=np.float32))
        n = self.n_tracks
        k = min(k, n)
        out = np.empty((vectors.shape[0], k), dtype=np.int32)
        # Exact top-k via chunk maxima: the k-th largest chunk maximum is a lower
        # bound of the k-th largest score, so the answer lies inside the k chunks
        # with the largest maxima. This avoids an argpartition over all N columns.
        width = 64
        n_chunks = -(-n // width)
        use_chunks = n_chunks > 4 * k
        emb_t = self.embeddings.T
        if use_chunks and n_chunks * width != n:
            emb_t = np.zeros((self.dim, n_chunks * width), dtype=np.float32)
            emb_t[:, :n] = self.embeddings.T
        # one reusable score buffer: fresh 50 MB arrays per block cost page faults
        buf = np.empty((min(block, vectors.shape[0]), emb_t.shape[1]), dtype=np.float32)
        for s in range(0, vectors.shape[0], block):
            rows = min(block, vectors.shape[0] - s)
            scores = np.matmul(vectors[s:s + block], emb_t, out=buf[:rows])
            if use_chunks:
                scores[:, n:] = -np.inf
                # chunk c = columns c, c + n_chunks, ...: the max runs over a
                # strided axis with a contiguous inner axis (SIMD friendly)
                cm = scores.reshape(rows, width, n_chunks).max(axis=1)
                best = np.argpartition(-cm, k - 1, axis=1)[:, :k]
                cand = (best[:, :, None] + n_chunks * np.arange(width)).reshape(rows, -1)
                # flat np.take: much faster than take_along_axis's generic fancy indexing
                flat = cand + (np.arange(rows) * scores.shape[1])[:, None]
                csc = np.take(scores.reshape(-1), flat)
            else:
                cand = np.broadcast_to(np.arange(n), (rows, n))
                csc = scores
            part = np.argpartition(-csc, k - 1, axis=1)[:, :k] if k < cand.shape[1] else \
                np.broadcast_to(np.arange(k), (rows, k))
            ids = np.take_along_axis(cand, part, axis=1)
            top = np.take_along_axis(csc, part, axis=1)
            order = np.lexsort((ids, -top), axis=1)
            out[s:s + block] = np.take_along_axis(ids, order, axis=1)
        return out

    def interest_neighbours(self, k: int, *, progress: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """(row_of_track, table): table[row_of_track[t]] = k nearest tracks of interest track t.

        The course spends 12 ms per session on an exact search of the whole
        catalog; we do it once for every distinct interest track with blocked
        matrix products and cache it on disk next to the hidden files.
        """
        if k in self._nn_cache:
            return self._nn_cache[k]
        # a table for a larger k is sorted the same way: its first k columns are the answer
        bigger = [kk for kk in self._nn_cache if kk > k]
        if bigger:
            row, table = self._nn_cache[min(bigger)]
            self._nn_cache[k] = (row, np.ascontiguousarray(table[:, :k]))
            return self._nn_cache[k]
        distinct = np.unique(self.interests)
        cache = None
        if self.directory is not None:
            cache = self.directory / "hidden" / "cache" / f"interest_nn_k{k}.npy"
            if cache.exists():
                try:
                    arr = np.load(cache, allow_pickle=False)
                    if arr.shape == (len(distinct), k + 1) and np.array_equal(arr[:, 0], distinct):
                        return self._store_nn(k, distinct, arr[:, 1:])
                except (OSError, ValueError):
                    pass  # corrupt cache: recompute
        table = np.empty((len(distinct), min(k, self.n_tracks)), dtype=np.int32)
        block = 4096
        steps = range(0, len(distinct), block)
        if progress:
            from tqdm import tqdm
            steps = tqdm(steps, desc=f"interest {k}-NN", unit="blk", leave=False)
        for s in steps:
            table[s:s + block] = self.nearest(self.embeddings[distinct[s:s + block]], k)
        if cache is not None:
            try:
                cache.parent.mkdir(parents=True, exist_ok=True)
                tmp = cache.with_suffix(".tmp.npy")
                np.save(tmp, np.column_stack([distinct, table]).astype(np.int32))
                tmp.replace(cache)
            except OSError:
                pass  # read-only world directory: keep it in memory only
        return self._store_nn(k, distinct, table)

    def _store_nn(self, k: int, distinct: np.ndarray, table: np.ndarray):
        row = np.full(self.n_tracks, -1, dtype=np.int32)
        row[distinct] = np.arange(len(distinct), dtype=np.int32)
        self._nn_cache[k] = (row, np.ascontiguousarray(table, dtype=np.int32))
        return self._nn_cache[k]

    # -------------------------------------------------------------- save/load
    def save(self, out: Path | str) -> Path:
        """Write the directory layout of docs/interfaces.md section 1."""
        import orjson

        out = Path(out)
        hidden = out / "hidden"
        hidden.mkdir(parents=True, exist_ok=True)
        n = self.n_tracks
        artist = [self.artist_names[a] for a in self.track_artist.tolist()]
        years = self.track_year.tolist()
        pops = self.track_popularity.tolist()
        aids = self.track_artist.tolist()
        # Lines are streamed, never accumulated: orjson's bytes objects carry
        # their allocation slack, and a million of them cost gigabytes.
        with _LineWriter(out / "catalog.jsonl") as pub, \
                _LineWriter(hidden / "tracks.jsonl") as priv:
            for t in range(n):
                rec = {"track": t, "artist": artist[t], "title": self.titles[t],
                       "genres": self.track_genres[t], "year": years[t],
                       "mood": self.track_mood[t]}
                pub.add(orjson.dumps(rec))
                rec["artist_id"] = aids[t]
                rec["popularity"] = pops[t]
                priv.add(orjson.dumps(rec))
        np.save(hidden / "embeddings.npy", np.ascontiguousarray(self.embeddings, dtype=np.float32))
        fans = self.artist_fans.tolist()
        with _LineWriter(hidden / "artists.jsonl") as fh:
            for a in range(self.n_artists):
                fh.add(orjson.dumps({"artist_id": a, "name": self.artist_names[a],
                                     "country": self.artist_country[a],
                                     "genre": self.artist_genre[a], "fans": fans[a]}))
        flat = self.interests.tolist()
        off = self.interest_offsets.tolist()
        bias = self.consume_bias.tolist()
        sharp = self.consume_sharpness.tolist()
        ov = {k: v.tolist() for k, v in self.overrides.items()}
        with _LineWriter(hidden / "users.jsonl") as fh:
            for u in range(self.n_users):
                rec = {"user": u, "interests": flat[off[u]:off[u + 1]],
                       "consume_bias": bias[u], "consume_sharpness": sharp[u]}
                for key, vals in ov.items():
                    if vals[u] == vals[u]:  # not NaN
                        rec[key] = vals[u]
                fh.add(orjson.dumps(rec))
        files = ["catalog.jsonl", "hidden/tracks.jsonl", "hidden/embeddings.npy",
                 "hidden/users.jsonl", "hidden/artists.jsonl"]
        meta = dict(self.meta)
        meta.update({
            "format": "botify-world",
            "generator_version": meta.get("generator_version", GENERATOR_VERSION),
            "n_tracks": n, "n_users": self.n_users, "n_artists": self.n_artists, "dim": self.dim,
            "sha256": {f: _sha256(out / f) for f in files},
        })
        (out / "world.json").write_bytes(orjson.dumps(meta, option=orjson.OPT_INDENT_2
                                                      | orjson.OPT_SORT_KEYS) + b"\n")
        self.directory = out
        return out

    @classmethod
    def load(cls, directory: Path | str, *, verify: bool = False) -> World:
        """Load a world directory; a missing or corrupt file raises WorldError naming it.

        verify=True also checks every file's sha256 against world.json.
        """
        import orjson

        d = Path(directory)
        if not d.is_dir():
            raise WorldError(f"world directory not found: {d}")
        meta_path = d / "world.json"
        meta = _read_json(meta_path) if meta_path.exists() else {}
        if verify:
            for f, digest in meta.get("sha256", {}).items():
                if _sha256(_need(d / f)) != digest:
                    raise WorldError(f"{d / f}: sha256 does not match world.json (corrupt file)")
        emb_path = _need(d / "hidden" / "embeddings.npy")
        try:
            emb = np.load(emb_path, allow_pickle=False, mmap_mode=None)
        except (OSError, ValueError) as exc:
            raise WorldError(f"{emb_path}: not a readable .npy array ({exc})") from exc
        if emb.ndim != 2 or emb.shape[0] == 0 or not np.issubdtype(emb.dtype, np.floating):
            raise WorldError(f"{emb_path}: expected a float (N, d) array, got {emb.dtype} {emb.shape}")
        # as saved: a generated world has unit rows; an imported course world keeps
        # the course's raw rows (normalising them would change every listen time)
        emb = _check_rows(emb.astype(np.float32, copy=False), emb_path)
        tracks_path = _need(d / "hidden" / "tracks.jsonl")
        tracks = _read_jsonl(tracks_path, orjson)
        if len(tracks) != emb.shape[0]:
            raise WorldError(f"{tracks_path}: {len(tracks)} tracks but embeddings.npy has "
                             f"{emb.shape[0]} rows")
        artists_path = d / "hidden" / "artists.jsonl"
        artists = _read_jsonl(artists_path, orjson) if artists_path.exists() else None
        users_path = _need(d / "hidden" / "users.jsonl")
        users = _read_jsonl(users_path, orjson)
        try:
            world = from_records(tracks, emb, users, artists)
        except (KeyError, TypeError, ValueError) as exc:
            raise WorldError(f"{d}: corrupt world data ({exc})") from exc
        world.meta = meta
        world.directory = d
        return world


# ---------------------------------------------------------------- helpers


def _need(path: Path) -> Path:
    if not path.exists():
        raise WorldError(f"missing world file: {path}")
    return path


def _read_json(path: Path) -> dict:
    import orjson

    try:
        return orjson.loads(path.read_bytes())
    except orjson.JSONDecodeError as exc:
        raise WorldError(f"{path}: invalid JSON ({exc})") from exc


def _read_jsonl(path: Path, orjson) -> list[dict]:
    """Parse a JSON-lines file. Fast path: the whole file as one JSON array (one C
    call); on any error, parse line by line to name the bad line."""
    data = path.read_bytes().strip()
    if not data:
        return []
    if b"\r" not in data and b"\n\n" not in data:
        try:
            out = orjson.loads(b"[" + data.replace(b"\n", b",") + b"]")
            if all(isinstance(r, dict) for r in out):
                return out
        except orjson.JSONDecodeError:
            pass
    out = []
    for i, line in enumerate(data.split(b"\n"), 1):
        if not line.strip():
            continue
        try:
            rec = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            raise WorldError(f"{path}:{i}: invalid JSON ({exc})") from exc
        if not isinstance(rec, dict):
            raise WorldError(f"{path}:{i}: expected a JSON object")
        out.append(rec)
    return out


class _LineWriter:
    """Buffered JSON-lines writer: joins lines in chunks (fast, bounded memory)."""

    def __init__(self, path: Path, chunk: int = 4096) -> None:
        self.fh = open(path, "wb")
        self.buf: list[bytes] = []
        self.chunk = chunk

    def add(self, line: bytes) -> None:
        self.buf.append(line)
        if len(self.buf) >= self.chunk:
            self._flush()

    def _flush(self) -> None:
        if self.buf:
            self.fh.write(b"\n".join(self.buf) + b"\n")
            self.buf = []

    def __enter__(self) -> _LineWriter:
        return self

    def __exit__(self, *exc) -> None:
        self._flush()
        self.fh.close()


def _write_lines(path: Path, lines: Sequence[bytes]) -> None:
    with open(path, "wb") as fh:
        fh.write(b"\n".join(lines))
        if lines:
            fh.write(b"\n")


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _check_rows(x: np.ndarray, where: object = "embeddings") -> np.ndarray:
    """Finite rows, C-contiguous float32; the values themselves are kept."""
    if not np.all(np.isfinite(x)):
        bad = int(np.flatnonzero(~np.isfinite(x).all(axis=1))[0])
        raise WorldError(f"{where}: row {bad} has a non-finite value")
    return np.ascontiguousarray(x, dtype=np.float32)


def _normalise(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    if np.any(norms == 0) or not np.all(np.isfinite(norms)):
        raise WorldError("embeddings contain zero or non-finite rows")
    if np.allclose(norms, 1.0, atol=1e-4):
        return np.ascontiguousarray(x, dtype=np.float32)
    return np.ascontiguousarray(x / norms, dtype=np.float32)


#: how many nearest tracks to an interest the user model considers by default (UserModelParams)
DEFAULT_INTEREST_NEIGHBOURS = 10

OVERRIDE_FIELDS = ("session_budget", "artist_discount_gamma", "interest_neighbours")


def from_records(tracks: list[dict], embeddings: np.ndarray, users: list[dict],
                 artists: list[dict] | None = None, *, normalise: bool = False) -> World:
    """Build a World from course-format records (extra fields optional).

    Tracks need "track" (0..N-1 in any order) and "artist" (a name) or "artist_id";
    users need "user", "interests", "consume_bias", "consume_sharpness".
    Embeddings are kept as given unless `normalise` (L2 rows): the course's
    simulator scores raw inner products, so normalising changes its world.
    """
    n = len(tracks)
    emb = np.asarray(embeddings, dtype=np.float32)
    emb = _normalise(emb) if normalise else _check_rows(emb)
    if emb.shape[0] != n:
        raise ValueError(f"{n} tracks but {emb.shape[0]} embedding rows")
    order = [0] * n
    seen = np.zeros(n, dtype=bool)
    for rec in tracks:
        t = int(rec["track"])
        if not 0 <= t < n or seen[t]:
            raise ValueError(f"track ids must be 0..{n - 1} without duplicates (bad id {t})")
        seen[t] = True
        order[t] = rec
    tracks = order
    if artists is not None and all("artist_id" in r for r in tracks):
        artist_names = [a["name"] for a in sorted(artists, key=lambda a: a["artist_id"])]
        artist_country = [a.get("country", "") for a in sorted(artists, key=lambda a: a["artist_id"])]
        artist_genre = [a.get("genre", "") for a in sorted(artists, key=lambda a: a["artist_id"])]
        artist_fans = np.array([a.get("fans", 0) for a in sorted(artists, key=lambda a: a["artist_id"])],
                               dtype=np.int64)
        track_artist = np.array([r["artist_id"] for r in tracks], dtype=np.int32)
        if track_artist.min() < 0 or track_artist.max() >= len(artist_names):
            raise ValueError("artist_id outside artists.jsonl")
    else:  # course tracks: artists are names; ids by first appearance
        ids: dict[str, int] = {}
        track_artist = np.empty(n, dtype=np.int32)
        for t, r in enumerate(tracks):
            track_artist[t] = ids.setdefault(str(r["artist"]), len(ids))
        artist_names = list(ids)
        artist_country = [""] * len(ids)
        artist_genre = [""] * len(ids)
        artist_fans = np.zeros(len(ids), dtype=np.int64)
    n_users = len(users)
    users_sorted: list = [None] * n_users
    for rec in users:
        u = int(rec["user"])
        if not 0 <= u < n_users or users_sorted[u] is not None:
            raise ValueError(f"user ids must be 0..{n_users - 1} without duplicates (bad id {u})")
        users_sorted[u] = rec
    lens = np.array([len(r["interests"]) for r in users_sorted], dtype=np.int64)
    if n_users and lens.min() == 0:
        raise ValueError(f"user {int(np.argmin(lens))} has no interests")
    offsets = np.zeros(n_users + 1, dtype=np.int64)
    np.cumsum(lens, out=offsets[1:])
    flat = np.fromiter((t for r in users_sorted for t in r["interests"]), dtype=np.int64,
                       count=int(offsets[-1]))
    if flat.size and (flat.min() < 0 or flat.max() >= n):
        raise ValueError("a user interest is not a track id of the catalog")
    overrides = {}
    for key in OVERRIDE_FIELDS:
        if any(key in r for r in users_sorted):
            overrides[key] = np.array([float(r.get(key, np.nan)) for r in users_sorted])
    return World(
        embeddings=emb,
        track_artist=track_artist,
        titles=[str(r.get("title", "")) for r in tracks],
        track_genres=[list(r.get("genres", [])) for r in tracks],
        track_year=np.array([int(r.get("year", 0) or 0) for r in tracks], dtype=np.int16),
        track_mood=[str(r.get("mood", "")) for r in tracks],
        track_popularity=np.array([int(r.get("popularity", 0) or 0) for r in tracks], dtype=np.int64),
        artist_names=artist_names,
        artist_country=artist_country,
        artist_genre=artist_genre,
        artist_fans=artist_fans,
        interest_offsets=offsets,
        interests=flat.astype(np.int32),
        consume_bias=np.array([float(r["consume_bias"]) for r in users_sorted], dtype=np.float64),
        consume_sharpness=np.array([float(r["consume_sharpness"]) for r in users_sorted],
                                   dtype=np.float64),
        overrides=overrides,
    )


# ---------------------------------------------------------------- generator


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def build(params: GeneratorParams, *, progress: bool = False) -> World:
    """Generate a world in memory (deterministic in params)."""
    p = params
    if p.n_tracks < 1 or p.n_users < 1 or p.dim < 2:
        raise ValueError("need n_tracks >= 1, n_users >= 1, dim >= 2")
    ss = np.random.SeedSequence(p.seed)
    r_genre, r_artist, r_track, r_names, r_users, r_meta = (np.random.default_rng(s)
                                                            for s in ss.spawn(6))
    d, n = p.dim, p.n_tracks
    n_genres = len(GENRES)
    n_fam = len(FAMILIES)

    # genres: family direction + own direction
    fam_vec = _unit(r_genre.standard_normal(size=(n_fam, d)))
    own = _unit(r_genre.standard_normal(size=(n_genres, d)))
    genre_c = _unit(p.family_weight * fam_vec[GENRE_FAMILY] + own)
    genre_pop = 1.0 / (np.arange(n_genres) + 3.0)
    genre_pop = genre_pop[r_genre.permutation(n_genres)]
    genre_pop /= genre_pop.sum()

    # artists: heavy-tailed sizes and fans
    n_art = int(min(n, max(1, round(n / p.tracks_per_artist))))
    size_w = r_artist.lognormal(0.0, 0.9, size=n_art)
    counts = np.ones(n_art, dtype=np.int64)
    if n > n_art:
        counts += r_artist.multinomial(n - n_art, size_w / size_w.sum())
    fans = np.round(r_artist.lognormal(7.0, 1.6, size=n_art) * (0.5 + size_w)).astype(np.int64) + 1
    g1 = r_artist.choice(n_genres, size=n_art, p=genre_pop)
    cross = r_artist.random(n_art) < p.cross_genre_share
    same_fam = r_artist.random(n_art) < 0.6
    # secondary genre: a sibling in the family (60%) or any other genre
    sib = (g1 // 4) * 4 + (g1 % 4 + r_artist.integers(1, 4, size=n_art)) % 4
    other = (g1 + r_artist.integers(1, n_genres, size=n_art)) % n_genres
    g2 = np.where(cross, np.where(same_fam, sib, other), -1)
    # scenes: small neighbourhoods of artists inside a genre (the hidden
    # related-artist structure that co-listening reveals); genres are broad
    # (scene centroids spread far from the genre centroid), so a genre tag
    # says little and a scene says a lot
    n_g = np.bincount(g1, minlength=n_genres)
    # at least `min_scenes` per genre, so that small worlds keep broad genres too
    sc_per_g = np.maximum(np.minimum(p.min_scenes, np.maximum(n_g, 1)),
                          np.round(n_g / p.artists_per_scene)).astype(np.int64)
    sc_off = np.concatenate([[0], np.cumsum(sc_per_g)])
    scene_genre = np.repeat(np.arange(n_genres), sc_per_g)
    scene_c = _unit(genre_c[scene_genre] + p.scene_spread
                    * r_artist.standard_normal(size=(int(sc_off[-1]), d)) / np.sqrt(d))
    scene = sc_off[g1] + (r_artist.random(n_art) * sc_per_g[g1]).astype(np.int64)
    base = scene_c[scene]
    mix = _unit(0.55 * base + 0.45 * genre_c[np.maximum(g2, 0)])
    base = np.where(cross[:, None], mix, base)
    art_c = _unit(base + p.artist_spread * r_artist.standard_normal(size=(n_art, d)) / np.sqrt(d))
    # public tags are noisy: some artists are filed under a sibling genre
    mistag = r_artist.random(n_art) < p.genre_tag_noise
    tag1 = np.where(mistag, (g1 // 4) * 4 + (g1 % 4 + r_artist.integers(1, 4, size=n_art)) % 4, g1)
    country = r_artist.integers(0, len(COUNTRIES), size=n_art)
    era = _FAMILY_ERA[GENRE_FAMILY[g1]]
    debut = (era[:, 0] + r_artist.random(n_art) * (era[:, 1] - era[:, 0])).astype(np.int64)

    # tracks: shuffled ids so id order leaks nothing about artists
    track_artist = np.repeat(np.arange(n_art, dtype=np.int32), counts)
    track_artist = track_artist[r_track.permutation(n)]
    emb = _unit(art_c[track_artist]
                + p.track_spread * r_track.standard_normal(size=(n, d)) / np.sqrt(d))
    emb = emb.astype(np.float32)
    pop = np.round(fans[track_artist] * r_track.lognormal(0.0, 0.8, size=n) / 10).astype(np.int64)
    # A track comes out 0-15 years after its artist's debut and not after LAST_YEAR: the
    # offset is scaled into the years the artist has left. (Capping debut + offset with
    # np.minimum piled every late track on the last year: 10.6% of the default catalog in
    # 2025 against 1.7% in 2024.) The same draws as before, so nothing else in the world moves.
    offset = r_track.integers(0, 16, size=n)
    span = np.minimum(16, LAST_YEAR + 1 - debut[track_artist])
    year = (debut[track_artist] + offset * span // 16).astype(np.int16)
    mood_dirs = _unit(r_track.standard_normal(size=(len(MOODS), d))).astype(np.float32)
    mood = np.argmax(emb @ mood_dirs.T + 0.15 * r_track.standard_normal(size=(n, len(MOODS))),
                     axis=1)
    tg2 = np.where(r_track.random(n) < 0.6, g2[track_artist], -1)
    tg1 = tag1[track_artist]
    tg2 = np.where(tg2 == tg1, -1, tg2)
    pair = [([GENRES[a]] if b < 0 else [GENRES[a], GENRES[b]]) for a, b in
            zip(tg1.tolist(), tg2.tolist(), strict=True)]

    # names
    artist_names = names.person_names(r_names, n_art).tolist()
    titles = names.titles(r_names, n).tolist()

    world = World(
        embeddings=emb,
        track_artist=track_artist,
        titles=titles,
        track_genres=pair,
        track_year=year,
        track_mood=[MOODS[m] for m in mood.tolist()],
        track_popularity=pop,
        artist_names=artist_names,
        artist_country=[COUNTRIES[c] for c in country.tolist()],
        artist_genre=[GENRES[g] for g in g1.tolist()],
        artist_fans=fans,
        interest_offsets=np.zeros(1, dtype=np.int64),
        interests=np.zeros(0, dtype=np.int32),
        consume_bias=np.zeros(0),
        consume_sharpness=np.zeros(0),
    )
    _make_users(world, p, r_users, art_c, g1, g2, fans)
    world.meta = {"generator_version": GENERATOR_VERSION, "params": _jsonable(asdict(p)),
                  "genres": GENRES, "moods": MOODS}
    return world


def _jsonable(d: dict) -> dict:
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in d.items()}


def _related_artists(art_c: np.ndarray, g1: np.ndarray, g2: np.ndarray, k: int) -> np.ndarray:
    """k nearest artists (centroid inner product) among artists sharing a genre.

    Restricting to shared genres keeps this ~sum(n_g^2) instead of A^2 for the
    million-track world, and cross-genre artists appear in both genres' pools,
    which is what lets interest chains wander across genres.
    """
    n_art = art_c.shape[0]
    out = np.empty((n_art, k), dtype=np.int32)
    for g in range(len(GENRES)):
        own = np.flatnonzero(g1 == g)
        if own.size == 0:
            continue
        pool = np.flatnonzero((g1 == g) | (g2 == g))
        for s in range(0, own.size, 2048):
            rows = own[s:s + 2048]
            sc = art_c[rows] @ art_c[pool].T
            sc[pool[None, :] == rows[:, None]] = -np.inf
            kk = min(k, pool.size - 1)
            if kk <= 0:
                out[rows] = rows[:, None]
                continue
            part = np.argpartition(-sc, kk - 1, axis=1)[:, :kk]
            top = np.take_along_axis(sc, part, axis=1)
            srt = np.take_along_axis(part, np.lexsort((part, -top), axis=1), axis=1)
            cand = pool[srt]
            if kk < k:  # tiny genre: repeat the best ones
                cand = cand[:, np.arange(k) % kk]
            out[rows] = cand
    return out


def _make_users(world: World, p: GeneratorParams, rng: np.random.Generator, art_c: np.ndarray,
                g1: np.ndarray, g2: np.ndarray, fans: np.ndarray) -> None:
    """Interests chained through related artists with per-user openness (vectorised)."""
    n_users = p.n_users
    n_art = art_c.shape[0]
    related = _related_artists(art_c, g1, g2, p.related_artists)
    a_off, a_tracks = world.artist_tracks()
    a_cnt = np.diff(a_off)
    weight = fans.astype(np.float64) ** p.interest_pop_power
    cum = np.cumsum(weight)
    n_int = np.minimum(1 + rng.poisson(p.mean_interests - 1, size=n_users), 40)
    openness = rng.beta(p.openness_a, p.openness_b, size=n_users)
    offsets = np.zeros(n_users + 1, dtype=np.int64)
    np.cumsum(n_int, out=offsets[1:])
    interests = np.empty(int(offsets[-1]), dtype=np.int32)
    cur = np.minimum(np.searchsorted(cum, rng.random(n_users) * cum[-1], side="right"), n_art - 1)
    for j in range(int(n_int.max())):
        live = np.flatnonzero(n_int > j)
        if j > 0:
            u = rng.random(live.size)
            jump = u < openness[live]
            stay = (~jump) & (rng.random(live.size) < 0.25)
            hop = related[cur[live], rng.integers(0, related.shape[1], size=live.size)]
            far = np.minimum(np.searchsorted(cum, rng.random(live.size) * cum[-1], side="right"),
                             n_art - 1)
            # a "jump" goes to a related artist of a popular artist: a genre leap
            far = related[far, rng.integers(0, related.shape[1], size=live.size)]
            nxt = np.where(jump, far, np.where(stay, cur[live], hop))
            cur[live] = nxt
        a = cur[live]
        pick = a_off[a] + (rng.random(live.size) * a_cnt[a]).astype(np.int64)
        interests[offsets[live] + j] = a_tracks[pick]
    lo, hi = p.bias_range
    slo, shi = p.sharpness_range
    world.interest_offsets = offsets
    world.interests = interests
    world.consume_bias = np.round(rng.uniform(lo, hi, size=n_users), 4)
    world.consume_sharpness = np.round(rng.uniform(slo, shi, size=n_users), 4)


def generate(seed: int, n_tracks: int, n_users: int, out: Path | str, dim: int = DEFAULT_DIM,
             *, progress: bool = False, **overrides) -> Path:
    """Generate a world and write it to `out` (created); returns `out` as a Path."""
    params = GeneratorParams(seed=seed, n_tracks=n_tracks, n_users=n_users, dim=dim, **overrides)
    world = build(params, progress=progress)
    return world.save(out)


# --------------------------------------------------------------------- CLI


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m sim.world",
        description="Generate a seeded synthetic music world.",
        epilog="The course's own files (tracks.jsonl, embeddings.npy, users.jsonl) become a "
               "world with: python -m sim.course_io import --tracks T.jsonl --embeddings E.npy "
               "--users U.jsonl --out DIR (embeddings kept as given; --normalise to L2-normalise "
               "them). The reverse: python -m sim.course_io export WORLD_DIR OUT_DIR. "
               "Docs: sim/README.md")
    sub = ap.add_subparsers(dest="cmd", required=True)
    g = sub.add_parser("generate", help="write a world directory (same args -> same bytes)")
    g.add_argument("--seed", type=int, default=31337)
    g.add_argument("--tracks", type=int, default=50_000)
    g.add_argument("--users", type=int, default=10_000)
    g.add_argument("--dim", type=int, default=DEFAULT_DIM)
    g.add_argument("--out", type=Path, required=True)
    g.add_argument("--no-cache", action="store_true",
                   help="skip precomputing the interest nearest-neighbour cache")
    i = sub.add_parser("info", help="print a world's sizes and check its file hashes")
    i.add_argument("directory", type=Path)
    args = ap.parse_args(argv)
    try:
        if args.cmd == "generate":
            if args.tracks < 1 or args.users < 1 or args.dim < 2:
                ap.error("--tracks and --users must be >= 1 and --dim >= 2")
            t0 = time.perf_counter()
            world = build(GeneratorParams(seed=args.seed, n_tracks=args.tracks,
                                          n_users=args.users, dim=args.dim), progress=True)
            world.save(args.out)
            t1 = time.perf_counter()
            print(f"world: {world.n_tracks} tracks, {world.n_artists} artists, {world.n_users} "
                  f"users, dim {world.dim} -> {args.out} ({t1 - t0:.1f} s)")
            if not args.no_cache and world.n_tracks * len(np.unique(world.interests)) <= 4e10:
                world.interest_neighbours(DEFAULT_INTEREST_NEIGHBOURS, progress=True)
                print(f"interest nearest-neighbour cache: {time.perf_counter() - t1:.1f} s")
        else:
            world = World.load(args.directory, verify=True)
            print(f"{args.directory}: {world.n_tracks} tracks, {world.n_artists} artists, "
                  f"{world.n_users} users, dim {world.dim}; hashes OK")
    except (WorldError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
