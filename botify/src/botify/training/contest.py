"""Homework kits: an offline next-tracks contest made from event logs and scored on hidden answers.

A teacher turns a run's logs into a kit (``make_kit``): students get a train set (a COMPAT
event log, so every botify tool reads it) and a test set of session prefixes; the teacher
keeps the answers, split into a public and a private part so that a leaderboard climbed
by probing the public part does not decide the final ranking. ``score_submission``
validates a submission line by line (a student must learn which line is wrong, not that
"something" is) and records its score; ``render_board`` turns the recorded scores plus
the kit's own baselines into a self-contained HTML leaderboard.

Everything derives from the logs and one seed, and nothing records a path or a clock in
the kit, so the same logs and seed give byte-identical files on any machine.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import html
import math
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pandas as pd
from botify.analysis.logs import EXP_PREFIX, LoadReport, read_events, timestamp_ms
from botify.analysis.sessions import sessionize
from botify.store.artifacts import Artifact
from botify.training.evaluate import temporal_split

KIT_FORMAT = "botify-contest/1"
#: the kit's layout (relative to the --out directory)
PUBLIC, ANSWERS = "public", "answers"
TRAIN_LOG = "train/events-000001.jsonl"
TEST_FILE, CONTEST_FILE, SAMPLE_FILE = "test.jsonl", "contest.json", "sample_submission.jsonl"
PUBLIC_ANSWERS, PRIVATE_ANSWERS, ANSWERS_META = "public.jsonl", "private.jsonl", "answers.json"
SCORES_FILE, BASELINES_DIR = "scores.jsonl", "baselines"
MAX_ERRORS = 20
#: a submission is at most a few hundred bytes per test user; this bounds memory, not honesty
MAX_SUBMISSION_BYTES = 256 * 1024 * 1024


class ContestError(ValueError):
    """A user-facing fault: one or more lines, each naming the file (and line) at fault."""


@dataclass(frozen=True)
class Query:
    """One test user: the prefix of a held-out session, and the tracks that followed."""

    user: int
    prefix: list[int]
    times: list[float]
    timestamps: list[int]
    answers: list[int]


@dataclass(frozen=True)
class KitOptions:
    """How a kit is cut from the logs (recorded in answers.json; the public part omits the seed)."""

    seed: int = 0
    k: int = 10
    public_share: float = 0.5
    min_time: float = 0.5
    split: str = "auto"
    test_fraction: float = 0.2
    baselines: tuple[str, ...] = ("top_pop", "i2i")
    list_len: int = 100


@dataclass(frozen=True)
class PartScore:
    """Mean NDCG@k and recall@k over one part's users (a missing user scores 0)."""

    ndcg: float
    recall: float
    users: int
    missing: int


# ------------------------------------------------------------------------------- making


def _dump_lines(rows: Iterable[dict[str, Any]]) -> bytes:
    return b"".join(orjson.dumps(r, option=orjson.OPT_APPEND_NEWLINE) for r in rows)


def _write_lines(path: Path, rows: Iterable[dict[str, Any]], chunk: int = 50_000) -> None:
    """JSON lines streamed in chunks: a million-event train log never sits in memory twice."""
    path.parent.mkdir(parents=True, exist_ok=True)
    dump, opt = orjson.dumps, orjson.OPT_APPEND_NEWLINE
    with path.open("wb") as fh:
        buf: list[bytes] = []
        for r in rows:
            buf.append(dump(r, option=opt))
            if len(buf) >= chunk:
                fh.write(b"".join(buf))
                buf.clear()
        fh.write(b"".join(buf))


def _dump_json(obj: Any) -> bytes:
    return orjson.dumps(obj, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n"


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def is_kit(out: Path) -> bool:
    """True when ``out`` holds a kit this module wrote (the only kind --force may replace)."""
    return (out / ANSWERS / ANSWERS_META).is_file() or (out / PUBLIC / CONTEST_FILE).is_file()


def check_out_dir(out: Path, force: bool) -> None:
    """Refuse to overwrite: a non-empty ``out`` needs ``force``, and must then be a kit."""
    if out.exists() and not out.is_dir():
        raise ContestError(f"{out}: exists and is not a directory")
    if out.is_dir() and any(out.iterdir()):
        if not force:
            raise ContestError(f"{out}: exists and is not empty; pass --force to replace the kit")
        if not is_kit(out):
            raise ContestError(f"{out}: not a contest kit; refusing to overwrite it even with --force")


def _column(events: pd.DataFrame, name: str, order: np.ndarray) -> list[Any]:
    """A column in ``order`` as Python values, missing ones as None (strings via their codes)."""
    col = events[name]
    if isinstance(col.dtype, pd.CategoricalDtype) or col.dtype == object:
        cat = col.astype("category")
        labels = np.array([str(c) for c in cat.cat.categories] + [None], dtype=object)
        return labels[cat.cat.codes.to_numpy()[order]].tolist()  # code -1 -> the trailing None
    if isinstance(col.dtype, pd.api.extensions.ExtensionDtype):  # nullable Int64
        return col.to_numpy(dtype=object, na_value=None)[order].tolist()
    values = col.to_numpy()[order]
    if values.dtype.kind == "f":
        out = values.astype(object)
        out[np.isnan(values)] = None
        return out.tolist()
    return values.tolist()


def event_rows(events: pd.DataFrame) -> Iterator[dict[str, Any]]:
    """COMPAT event-log records (docs/interfaces.md), in time order, of a read_events frame."""
    ts = timestamp_ms(events["timestamp"])
    order = np.lexsort((events["user"].to_numpy(), ts))  # time, then user: a log's order
    base = {c: _column(events, c, order)
            for c in ("message", "user", "track", "time", "latency", "recommendation")}
    extra = {c: _column(events, c, order) for c in ("recommender", "fallback") if c in events.columns}
    exps = {c[len(EXP_PREFIX):]: _column(events, c, order)
            for c in events.columns if c.startswith(EXP_PREFIX)}
    stamps = ts[order].tolist()
    for i in range(len(stamps)):
        row: dict[str, Any] = {
            "message": base["message"][i],
            "timestamp": stamps[i],
            "user": base["user"][i],
            "track": base["track"][i],
            "time": base["time"][i],
            "latency": base["latency"][i],
            "recommendation": base["recommendation"][i],
            "experiments": {k: v[i] for k, v in exps.items() if v[i] is not None},
        }
        for c, v in extra.items():
            if v[i] is not None:
                row[c] = v[i]
        yield row


def build_queries(test: pd.DataFrame, *, seed: int, min_time: float) -> list[Query]:
    """One query per test user: the first test session that still has a wanted track to guess.

    The tracks before a seeded cut are the prefix students see; the distinct tracks
    after it listened to at least ``min_time`` are the answers (a skipped track is not
    one the user wanted). The cut is uniform over the places that leave at least one
    answer, 1..J where J is the last wanted track's step: listening decays along a
    session, so a cut uniform over the whole session would often leave nothing to guess
    and drop the user. One uniform draw per session, in a fixed order: the seed alone
    fixes every cut.
    """
    ev = test.sort_values(["user", "session_id", "step"], kind="stable")
    user = ev["user"].to_numpy(dtype=np.int64)
    sid = ev["session_id"].to_numpy(dtype=np.int64)
    track = ev["track"].to_numpy(dtype=np.int64)
    time = np.nan_to_num(ev["time"].to_numpy(dtype=np.float64, na_value=0.0))
    ts = timestamp_ms(ev["timestamp"])
    if len(ev) == 0:
        return []
    starts = np.flatnonzero(np.r_[True, sid[1:] != sid[:-1]])
    ends = np.r_[starts[1:], len(ev)]
    draws = np.random.default_rng(np.random.SeedSequence([seed, 1])).random(len(starts))
    queries: list[Query] = []
    done: set[int] = set()
    for s, e, r in zip(starts.tolist(), ends.tolist(), draws.tolist(), strict=True):
        u = int(user[s])
        n = e - s
        if u in done or n < 2:
            continue
        wanted = np.flatnonzero(time[s + 1:e] >= min_time)
        if len(wanted) == 0:
            continue
        last_wanted = int(wanted[-1]) + 1  # step of the session's last wanted track
        cut = 1 + int(r * last_wanted)
        answers: list[int] = []
        for j in range(s + cut, e):
            t = int(track[j])
            if time[j] >= min_time and t not in answers:
                answers.append(t)
        done.add(u)
        queries.append(Query(
            user=u,
            prefix=track[s:s + cut].tolist(),
            times=[float(x) for x in time[s:s + cut]],
            timestamps=ts[s:s + cut].tolist(),
            answers=answers,
        ))
    return queries


def split_users(users: Sequence[int], *, seed: int, public_share: float) -> tuple[list[int], list[int]]:
    """Seeded public/private partition of the test users (both sorted, both non-empty)."""
    if not 0.0 < public_share < 1.0:
        raise ContestError(f"--public-share must be in (0, 1), got {public_share}")
    users = sorted(users)
    n_pub = int(round(len(users) * public_share))
    if n_pub == 0 or n_pub == len(users):
        raise ContestError(
            f"{len(users)} test user(s) cannot be split into a public and a private part "
            f"with share {public_share:g}; use more logs"
        )
    perm = np.random.default_rng(np.random.SeedSequence([seed, 2])).permutation(len(users))
    pub = {users[i] for i in perm[:n_pub].tolist()}
    return [u for u in users if u in pub], [u for u in users if u not in pub]


def popular_tracks(events: pd.DataFrame, n_tracks: int) -> list[int]:
    """Tracks by total listen time in ``events`` (ties by id): the fallback of every baseline."""
    track = events["track"].to_numpy(dtype=np.int64)
    time = np.nan_to_num(events["time"].to_numpy(dtype=np.float64, na_value=0.0))
    keep = (track >= 0) & (track < n_tracks)
    total = np.bincount(track[keep], weights=time[keep], minlength=n_tracks)
    order = np.lexsort((np.arange(n_tracks), -total))
    return order[total[order] > 0].tolist()


def artifact_submission(art: Artifact, queries: Sequence[Query], *, k: int, n_tracks: int,
                        fallback: Sequence[int] = ()) -> list[dict[str, Any]]:
    """What an artifact would serve each test user, as submission rows.

    As the service does: the last prefix track's list (i2i), the user's list (user) or
    the top list; tracks already played in the prefix are skipped, and ``fallback``
    (popular tracks) fills a short or missing list.
    """
    rows = []
    for q in queries:
        if art.kind == "top":
            cand: Sequence[int] = art.top
        elif art.kind == "i2i":
            cand = art.lists.get(q.prefix[-1], [])
        else:
            cand = art.lists.get(q.user, [])
        seen = set(q.prefix)
        out: list[int] = []
        for t in [*cand, *fallback]:
            if len(out) == k:
                break
            if t not in seen and 0 <= t < n_tracks:
                out.append(int(t))
                seen.add(t)
        rows.append({"user": q.user, "tracks": out})
    return rows


def make_kit(
    logs: Sequence[str | Path],
    out: str | Path,
    options: KitOptions = KitOptions(),
    *,
    n_tracks: int | None = None,
    catalog: str | Path | None = None,
    force: bool = False,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Cut a contest kit from event logs into ``out`` (see docs/training.md); returns answers.json.

    ``n_tracks`` bounds valid track ids (the public catalog's size); without it, the
    largest id in the logs + 1. ``log`` receives warnings,
    e.g. the file and line of every bad log record the reader skipped.
    """
    from botify.training.train import TrainError, catalog_params, load_sessionized, train_artifact

    say = log or (lambda _msg: None)
    out = Path(out)
    if options.k <= 0:
        raise ContestError(f"--k must be positive, got {options.k}")
    if not 0.0 <= options.min_time <= 1.0:
        raise ContestError(f"--min-time must be in [0, 1], got {options.min_time}")
    check_out_dir(out, force)
    for d in logs:
        if "hidden" in Path(d).resolve().parts:
            raise ContestError(f"{d}: refusing to read the simulator's hidden files")
    try:
        loaded = read_events(list(logs))
    except FileNotFoundError as exc:
        raise ContestError(f"{exc.filename or exc}: no such file or directory") from None
    _warn_bad_lines(loaded.report, say)
    if len(loaded.events) == 0:
        raise ContestError(f"no events found under {', '.join(map(str, logs))}")
    events = sessionize(loaded.events).events
    seen_max = int(events["track"].max()) + 1
    n_tracks = int(n_tracks) if n_tracks is not None else seen_max
    try:
        train, test, info = temporal_split(events, options.split, options.test_fraction)
    except ValueError as exc:
        raise ContestError(f"cannot split the logs by time: {exc}") from None
    queries = [q for q in build_queries(test, seed=options.seed, min_time=options.min_time)
               if all(0 <= t < n_tracks for t in q.answers + q.prefix)]
    public_users, private_users = split_users([q.user for q in queries], seed=options.seed,
                                              public_share=options.public_share)
    by_user = {q.user: q for q in queries}

    # build beside ``out`` and move in at the end: a failure leaves no half-written kit
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        pub, ans = tmp / PUBLIC, tmp / ANSWERS
        _write_lines(pub / TRAIN_LOG, event_rows(train))
        _write(pub / TEST_FILE, _dump_lines(
            {"user": q.user, "prefix": q.prefix, "times": q.times, "timestamps": q.timestamps}
            for q in sorted(queries, key=lambda q: q.user)
        ))
        split = asdict(info)
        contest = {
            "format": KIT_FORMAT,
            "k": options.k,
            "n_tracks": n_tracks,
            "test_users": len(queries),
            "min_time": options.min_time,
            "split": {"how": split["how"], "cutoff": split["cutoff"], "cutoff_ms": split["cutoff_ms"],
                      "train_events": split["train_events"], "train_sessions": split["train_sessions"]},
            "submission": "JSON lines {\"user\": <test user>, \"tracks\": [at most k distinct track "
                          "ids in 0..n_tracks-1, best first]}; one line per user",
            "metrics": f"mean NDCG@{options.k} and recall@{options.k} over the test users",
        }
        _write(pub / CONTEST_FILE, _dump_json(contest))
        for name, users in ((PUBLIC_ANSWERS, public_users), (PRIVATE_ANSWERS, private_users)):
            _write(ans / name, _dump_lines({"user": u, "tracks": by_user[u].answers} for u in users))

        # baselines: trained on the train set exactly as students receive it
        baselines: dict[str, dict[str, Any]] = {}
        if options.baselines:
            try:
                train_ev = load_sessionized([pub / "train"])
            except TrainError as exc:
                raise ContestError(str(exc)) from None
            fallback = popular_tracks(train_ev, n_tracks)
            ordered = sorted(queries, key=lambda q: q.user)
            for model in options.baselines:
                params = catalog_params(model, catalog) if catalog is not None else {}
                try:
                    art, meta = train_artifact(model, train_ev, n_tracks=n_tracks, params=params,
                                               k=options.list_len, seed=options.seed, evaluate=False)
                except (TrainError, ValueError) as exc:
                    raise ContestError(f"baseline {model}: {exc}") from None
                rows = artifact_submission(art, ordered, k=options.k, n_tracks=n_tracks,
                                           fallback=fallback)
                data = _dump_lines(rows)
                _write(ans / BASELINES_DIR / f"{model}.jsonl", data)
                if not (pub / SAMPLE_FILE).exists():
                    _write(pub / SAMPLE_FILE, data)
                baselines[model] = {"kind": meta["kind"], "params": meta["params"],
                                    "file": f"{BASELINES_DIR}/{model}.jsonl"}

        meta_out = {
            "format": KIT_FORMAT,
            "seed": options.seed,
            "k": options.k,
            "n_tracks": n_tracks,
            "min_time": options.min_time,
            "public_share": options.public_share,
            "split": split,
            "users": {"public": len(public_users), "private": len(private_users)},
            "answers": {"public": sum(len(by_user[u].answers) for u in public_users),
                        "private": sum(len(by_user[u].answers) for u in private_users)},
            "logs": {"events": int(loaded.report.events), "bad_lines": dict(sorted(loaded.report.bad_lines.items())),
                     "sessions": int(events["session_id"].nunique()), "users": int(events["user"].nunique())},
            "test_sha256": hashlib.sha256((pub / TEST_FILE).read_bytes()).hexdigest(),
            "baselines": baselines,
        }
        _write(ans / ANSWERS_META, _dump_json(meta_out))
        out.mkdir(exist_ok=True)
        for sub in (PUBLIC, ANSWERS):
            if (out / sub).exists():  # only a kit, and only with force (check_out_dir)
                shutil.rmtree(out / sub)
            os.replace(tmp / sub, out / sub)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return meta_out


def _warn_bad_lines(report: LoadReport, say: Callable[[str], None]) -> None:
    for ex in report.bad_examples:
        where = f"line {ex['line']}" if ex.get("line") is not None else ex["where"]
        say(f"{ex['file']}: {where}: {ex['reason']} (skipped)")
    if report.bad > len(report.bad_examples):
        say(f"... {report.bad} bad line(s) in all: {dict(sorted(report.bad_lines.items()))}")
    for d in report.duplicate_files:
        say(f"duplicate file skipped: {d}")


# ------------------------------------------------------------------------------ scoring


@dataclass
class Answers:
    """The hidden side of a kit, as ``score`` and ``board`` read it."""

    dir: Path
    meta: dict[str, Any]
    public: dict[int, list[int]]
    private: dict[int, list[int]]

    @property
    def k(self) -> int:
        return int(self.meta["k"])

    @property
    def n_tracks(self) -> int:
        return int(self.meta["n_tracks"])


def _read_answer_lines(path: Path) -> dict[int, list[int]]:
    out: dict[int, list[int]] = {}
    for lineno, line in enumerate(path.read_bytes().split(b"\n"), start=1):
        if not line.strip():
            continue
        try:
            obj = orjson.loads(line)
            out[int(obj["user"])] = [int(t) for t in obj["tracks"]]
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            raise ContestError(f"{path}:{lineno}: not an answer line "
                               '{"user": int, "tracks": [int, ...]}') from None
    return out


def load_answers(answers_dir: str | Path) -> Answers:
    """Read a kit's answers directory (``DIR`` or ``DIR/answers``)."""
    d = Path(answers_dir)
    if not (d / ANSWERS_META).is_file() and (d / ANSWERS / ANSWERS_META).is_file():
        d = d / ANSWERS
    meta_path = d / ANSWERS_META
    if not meta_path.is_file():
        raise ContestError(f"{d}: no {ANSWERS_META}; pass the answers directory of a contest kit")
    try:
        meta = orjson.loads(meta_path.read_bytes())
    except orjson.JSONDecodeError as exc:
        raise ContestError(f"{meta_path}: not JSON ({exc})") from None
    if not isinstance(meta, dict) or meta.get("format") != KIT_FORMAT:
        raise ContestError(f"{meta_path}: not a {KIT_FORMAT} kit")
    parts = []
    for name in (PUBLIC_ANSWERS, PRIVATE_ANSWERS):
        if not (d / name).is_file():
            raise ContestError(f"{d / name}: missing")
        parts.append(_read_answer_lines(d / name))
    return Answers(d, meta, parts[0], parts[1])


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def read_submission(path: str | Path, *, users: set[int], n_tracks: int, k: int,
                    max_errors: int = MAX_ERRORS) -> dict[int, list[int]]:
    """Parse and validate a submission; every fault is reported as ``FILE:LINE: what``.

    Faults: a line that is not JSON or not ``{"user": int, "tracks": [int, ...]}``, a
    user not in the test set, a track outside the catalog, a user given twice, a track
    twice in one list, more than ``k`` tracks. Users left out are not faults: they
    score 0. Up to ``max_errors`` faults are collected so one run shows most of them.
    """
    p = Path(path)
    if not p.is_file():
        raise ContestError(f"{p}: no such submission file")
    size = p.stat().st_size
    if size > MAX_SUBMISSION_BYTES:
        raise ContestError(f"{p}: {size} bytes; a submission is at most {MAX_SUBMISSION_BYTES}")
    errors: list[str] = []
    sub: dict[int, list[int]] = {}
    first_line: dict[int, int] = {}
    shape = '{"user": <int>, "tracks": [<int>, ...]}'
    for lineno, line in enumerate(p.read_bytes().split(b"\n"), start=1):
        if len(errors) >= max_errors:
            errors.append(f"{p}: stopped after {max_errors} errors")
            break
        if not line.strip():
            continue
        where = f"{p}:{lineno}"
        try:
            obj = orjson.loads(line)
        except orjson.JSONDecodeError:
            errors.append(f"{where}: not JSON: {line[:60].decode('utf-8', 'replace')!r}")
            continue
        if not isinstance(obj, dict) or set(obj) != {"user", "tracks"}:
            got = sorted(obj) if isinstance(obj, dict) else type(obj).__name__
            errors.append(f"{where}: wrong shape: expected {shape}, got {got}")
            continue
        user, tracks = obj["user"], obj["tracks"]
        if not _is_int(user):
            errors.append(f"{where}: wrong shape: \"user\" must be an integer, got {user!r}")
            continue
        if not isinstance(tracks, list) or not all(map(_is_int, tracks)):
            errors.append(f"{where}: wrong shape: \"tracks\" must be a list of integers")
            continue
        if user not in users:
            errors.append(f"{where}: unknown user {user}: not in the test set")
            continue
        if user in first_line:
            errors.append(f"{where}: duplicate user {user} (first on line {first_line[user]})")
            continue
        first_line[user] = lineno
        bad = [t for t in tracks if not 0 <= t < n_tracks]
        if bad:
            errors.append(f"{where}: unknown track {bad[0]} (track ids are 0..{n_tracks - 1})")
            continue
        dup = next((t for i, t in enumerate(tracks) if t in tracks[:i]), None)
        if dup is not None:
            errors.append(f"{where}: duplicate track {dup} in user {user}'s list")
            continue
        if len(tracks) > k:
            errors.append(f"{where}: too many tracks for user {user}: {len(tracks)} > k={k}")
            continue
        sub[user] = tracks
    if not errors and not sub:
        errors.append(f"{p}: empty submission (no lines)")
    if errors:
        raise ContestError("\n".join(errors))
    return sub


def ndcg_recall(ranked: Sequence[int], relevant: Iterable[int], k: int) -> tuple[float, float]:
    """NDCG@k and recall@k of one list with binary relevance.

    DCG = sum over the first k positions i (1-based) of rel_i / log2(i + 1); the ideal
    DCG puts min(|R|, k) relevant tracks first. recall@k = hits / min(|R|, k), so that a
    perfect list scores 1 even when more than k tracks were relevant.
    """
    rel = set(relevant)
    if not rel or k <= 0:
        return 0.0, 0.0
    top = list(ranked)[:k]
    dcg = sum(1.0 / math.log2(i + 2) for i, t in enumerate(top) if t in rel)
    n_ideal = min(len(rel), k)
    idcg = sum(1.0 / math.log2(i + 2) for i in range(n_ideal))
    hits = sum(1 for t in top if t in rel)
    return dcg / idcg, hits / n_ideal


def score_part(sub: dict[int, list[int]], answers: dict[int, list[int]], k: int) -> PartScore:
    """Means over every user of the part; a user the submission leaves out counts as 0."""
    if not answers:
        return PartScore(float("nan"), float("nan"), 0, 0)
    nd, rc = 0.0, 0.0
    missing = 0
    for u, rel in answers.items():
        if u not in sub:
            missing += 1
            continue
        a, b = ndcg_recall(sub[u], rel, k)
        nd += a
        rc += b
    n = len(answers)
    return PartScore(nd / n, rc / n, n, missing)


def score_file(answers: Answers, path: str | Path) -> tuple[PartScore, PartScore, int]:
    """Public and private scores of a submission file, and how many users it answered."""
    sub = read_submission(path, users=set(answers.public) | set(answers.private),
                          n_tracks=answers.n_tracks, k=answers.k)
    return (score_part(sub, answers.public, answers.k), score_part(sub, answers.private, answers.k),
            len(sub))


def score_submission(answers_dir: str | Path, path: str | Path, *, name: str | None = None,
                     now: dt.datetime | None = None) -> dict[str, Any]:
    """Validate and score ``path``, append the record to ``DIR/scores.jsonl``, return it."""
    ans = load_answers(answers_dir)
    p = Path(path)
    pub, priv, answered = score_file(ans, p)
    data = p.read_bytes()
    when = (now or dt.datetime.now(dt.UTC)).isoformat(timespec="seconds")
    record = {
        "submission": name or p.stem,
        "file": p.name,
        "sha256": hashlib.sha256(data).hexdigest(),
        "scored_at": when,
        "k": ans.k,
        "answered": answered,
        "public": asdict(pub),
        "private": asdict(priv),
    }
    with (ans.dir / SCORES_FILE).open("ab") as fh:
        fh.write(orjson.dumps(record) + b"\n")
    return record


# -------------------------------------------------------------------------------- board


def read_scores(answers: Answers) -> list[dict[str, Any]]:
    """The recorded scores, validated (a damaged line names its file and line)."""
    path = answers.dir / SCORES_FILE
    if not path.is_file():
        return []
    rows = []
    for lineno, line in enumerate(path.read_bytes().split(b"\n"), start=1):
        if not line.strip():
            continue
        try:
            obj = orjson.loads(line)
            ok = isinstance(obj, dict) and all(
                isinstance(obj.get(part), dict) and {"ndcg", "recall"} <= set(obj[part])
                for part in ("public", "private")
            ) and isinstance(obj.get("submission"), str) and isinstance(obj.get("sha256"), str)
        except orjson.JSONDecodeError:
            ok = False
        if not ok:
            raise ContestError(f"{path}:{lineno}: not a score record")
        rows.append(obj)
    return rows


def board_rows(answers: Answers) -> list[dict[str, Any]]:
    """Baseline rows (scored now from the kit's own baseline submissions) and recorded scores.

    The same file scored twice under one name is one row; one file under several names
    is flagged, since two students should not hand in identical bytes.
    """
    rows: list[dict[str, Any]] = []
    for model, b in sorted((answers.meta.get("baselines") or {}).items()):
        path = answers.dir / str(b.get("file", f"{BASELINES_DIR}/{model}.jsonl"))
        pub, priv, answered = score_file(answers, path)
        rows.append({"submission": f"baseline: {model}", "baseline": True, "sha256": "",
                     "scored_at": "", "answered": answered, "public": asdict(pub),
                     "private": asdict(priv), "note": "trained by the kit on the train set"})
    seen: set[tuple[str, str]] = set()
    names_by_hash: dict[str, list[str]] = {}
    for r in read_scores(answers):
        key = (r["submission"], r["sha256"])
        if key in seen:
            continue
        seen.add(key)
        names_by_hash.setdefault(r["sha256"], []).append(r["submission"])
        rows.append({**r, "baseline": False, "note": ""})
    for r in rows:
        others = [n for n in names_by_hash.get(r["sha256"], []) if n != r["submission"]]
        if others:
            r["note"] = "same bytes as " + ", ".join(others)
    return rows


def _f(x: Any) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{float(x):.4f}"


_CSS = (
    "body{font-family:system-ui,sans-serif;margin:2em;color:#222}"
    "table{border-collapse:collapse}th,td{padding:.3em .8em;border-bottom:1px solid #ddd;"
    "text-align:right}th{background:#f3f3f3}td.l,th.l{text-align:left}"
    "tr.baseline td{color:#555;font-style:italic}code{font-size:90%}"
)


def render_board(answers: Answers, *, reveal_private: bool = False) -> str:
    """A self-contained HTML leaderboard (inline CSS, no scripts, no outside links).

    Ranked by public NDCG@k; with ``reveal_private`` by private NDCG@k (the final
    standing), public columns kept beside it so the shake-up is visible.
    """
    rows = board_rows(answers)
    key = "private" if reveal_private else "public"

    def rank_key(r: dict[str, Any]) -> tuple[float, float, str]:
        nd, rc = r[key]["ndcg"], r[key]["recall"]
        return (-(nd if nd is not None else -1.0), -(rc if rc is not None else -1.0), r["submission"])

    rows.sort(key=rank_key)
    k = answers.k
    e = html.escape
    m = answers.meta
    split = m.get("split") or {}
    users = m.get("users") or {}
    head = ["#", "submission", f"public NDCG@{k}", f"public recall@{k}"]
    if reveal_private:
        head += [f"private NDCG@{k}", f"private recall@{k}"]
    head += ["users answered", "sha256", "scored at (UTC)", "note"]
    n_users = int(users.get("public", 0)) + int(users.get("private", 0))
    out = [
        "<!doctype html><html><head><meta charset=\"utf-8\">",
        f"<title>Contest leaderboard</title><style>{_CSS}</style></head><body>",
        f"<h1>Contest leaderboard ({'private part revealed' if reveal_private else 'public part'})</h1>",
        f"<p>Next tracks of held-out sessions, NDCG@{k} and recall@{k}; "
        f"{int(users.get('public', 0))} public / {int(users.get('private', 0))} private test users; "
        f"train set before {e(str(split.get('cutoff', '?')))} (split {e(str(split.get('how', '?')))}). "
        f"Ranked by {key} NDCG@{k}.</p>",
        "<table><tr>" + "".join(
            f"<th class=\"l\">{e(h)}</th>" if h in ("submission", "note") else f"<th>{e(h)}</th>"
            for h in head) + "</tr>",
    ]
    for i, r in enumerate(rows, start=1):
        cells = [str(i), f"<td class=\"l\">{e(r['submission'])}</td>",
                 _f(r["public"]["ndcg"]), _f(r["public"]["recall"])]
        if reveal_private:
            cells += [_f(r["private"]["ndcg"]), _f(r["private"]["recall"])]
        cells += [f"{int(r.get('answered', 0))}/{n_users}",
                  f"<code>{e(str(r.get('sha256', ''))[:12])}</code>", e(str(r.get("scored_at", ""))),
                  f"<td class=\"l\">{e(str(r.get('note', '')))}</td>"]
        tds = "".join(c if c.startswith("<td") else f"<td>{c}</td>" for c in cells)
        cls = " class=\"baseline\"" if r.get("baseline") else ""
        out.append(f"<tr{cls}>{tds}</tr>")
    out.append("</table>")
    if not reveal_private:
        out.append("<p>The private part decides the final ranking; it is hidden until the end.</p>")
    out.append("</body></html>\n")
    return "\n".join(out)


def write_board(answers_dir: str | Path, out: str | Path | None = None, *,
                reveal_private: bool = False, force: bool = False) -> Path:
    """Render the board to ``out`` (default ``DIR/leaderboard.html``); never overwrite unless ``force``."""
    ans = load_answers(answers_dir)
    path = Path(out) if out is not None else ans.dir / "leaderboard.html"
    if path.exists() and not force:
        raise ContestError(f"{path}: exists; pass --force to overwrite it")
    page = render_board(ans, reveal_private=reveal_private)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(page, encoding="utf-8")
    return path


__all__ = [
    "Answers",
    "ContestError",
    "KitOptions",
    "PartScore",
    "Query",
    "artifact_submission",
    "board_rows",
    "build_queries",
    "load_answers",
    "make_kit",
    "ndcg_recall",
    "read_submission",
    "render_board",
    "score_part",
    "score_submission",
    "split_users",
    "write_board",
]
