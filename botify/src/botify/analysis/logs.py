"""Read botify event logs (docs/interfaces.md section 2) into one pandas DataFrame.

Logs of a real run are messy: several worker directories, size-rotated files,
some gzipped (sometimes while the plain copy still exists), a last line cut by a
crash, an event delivered twice. The reader therefore validates every record,
counts and skips bad ones by reason (each example as file:line with the line's
text), counts empty lines, detects duplicated files by content hash and
duplicated events (same user and millisecond, and the same `event_id`, or for
logs without one the same line), keeps the first copy of each, and never raises
on bad data.

Speed: each file is parsed by pyarrow's JSON reader, several files at once on a
thread pool (pyarrow releases the GIL, so the files of a 4-worker run keep every
core busy); only a file that pyarrow rejects (a bad line somewhere, or a type it
cannot unify) is re-read line by line with orjson to find out which lines are
bad and why.
"""

from __future__ import annotations

import gzip
import hashlib
import logging
import os
import re
import zlib
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pj

log = logging.getLogger(__name__)

MESSAGES = ("next", "last")
REQUIRED = ("message", "timestamp", "user", "track", "time")
#: Optional fields of newer services, passed through as columns when any file has them:
#: `seq` (the user's event number, null when the service could not count) and
#: `event_id` (unique per event; what duplicate detection relies on).
OPTIONAL = ("seq", "event_id")
EXP_PREFIX = "exp:"
#: Reasons a record is skipped, in the order they are checked.
REASONS = (
    "invalid_json",
    "truncated",
    "not_object",
    "wrong_type",
    "missing_field",
    "unknown_message",
    "bad_timestamp",
    "out_of_range",
)
_MAX_EXAMPLES = 20
_MAX_TEXT = 1000  # characters of a line kept in an example: a service line is about 250
_ROTATION = re.compile(r"events-(\d+)\.jsonl(\.gz)?$")

PathLike = str | Path


@dataclass
class LoadReport:
    """What the reader saw: enough to tell a clean run from a damaged one."""

    files_found: int = 0
    files_read: int = 0
    files_slow_path: int = 0
    lines: int = 0
    empty_lines: int = 0
    events: int = 0
    bad_lines: dict[str, int] = field(default_factory=dict)
    bad_examples: list[dict[str, Any]] = field(default_factory=list)
    duplicate_files: list[dict[str, str]] = field(default_factory=list)
    #: duplicated events dropped (same user and millisecond as an earlier event), by
    #: how they were recognised: "event_id" (the same id) or "line" (no event_id: the
    #: same line, whitespace around it aside).
    duplicate_events: dict[str, int] = field(default_factory=dict)
    duplicate_examples: list[dict[str, Any]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def duplicates(self) -> int:
        """Number of files skipped because an identical file was already read."""
        return len(self.duplicate_files)

    @property
    def bad(self) -> int:
        return int(sum(self.bad_lines.values()))

    @property
    def duplicated(self) -> int:
        """Number of events dropped because an earlier line was the same event."""
        return int(sum(self.duplicate_events.values()))

    def to_dict(self) -> dict[str, Any]:
        return {
            "files_found": self.files_found,
            "files_read": self.files_read,
            "files_slow_path": self.files_slow_path,
            "duplicates": self.duplicates,
            "lines": self.lines,
            "empty_lines": self.empty_lines,
            "events": self.events,
            "bad": self.bad,
            "bad_lines": dict(self.bad_lines),
            "bad_examples": list(self.bad_examples),
            "duplicate_files": list(self.duplicate_files),
            "duplicated": self.duplicated,
            "duplicate_events": dict(self.duplicate_events),
            "duplicate_examples": list(self.duplicate_examples),
            "warnings": list(self.warnings),
        }

    def summary(self) -> str:
        """One line for a terminal."""
        parts = [
            f"{self.files_read} file(s) read",
            f"{self.lines} line(s)",
            f"{self.events} event(s)",
        ]
        if self.empty_lines:
            parts.append(f"{self.empty_lines} empty line(s)")
        if self.duplicates:
            parts.append(f"{self.duplicates} duplicate file(s) skipped")
        if self.duplicated:
            how = ", ".join(f"by {k}={v}" for k, v in sorted(self.duplicate_events.items()))
            parts.append(f"{self.duplicated} duplicated event(s) dropped ({how})")
        if self.bad:
            reasons = ", ".join(f"{k}={v}" for k, v in sorted(self.bad_lines.items()))
            parts.append(f"{self.bad} bad line(s) skipped ({reasons})")
        return "; ".join(parts)

    def _bad(self, reason: str, n: int = 1) -> None:
        if n:
            self.bad_lines[reason] = self.bad_lines.get(reason, 0) + int(n)

    def _example(self, path: Path, line: int | str, reason: str, text: str) -> None:
        if len(self.bad_examples) < _MAX_EXAMPLES:
            self.bad_examples.append(_located(path, line, text) | {"reason": reason})

    def _merge(self, other: LoadReport) -> None:
        for k, v in other.bad_lines.items():
            self._bad(k, v)
        room = _MAX_EXAMPLES - len(self.bad_examples)
        self.bad_examples.extend(other.bad_examples[: max(room, 0)])
        self.empty_lines += other.empty_lines
        for w in other.warnings:
            self.warnings.append(w)

    def _warn(self, msg: str) -> None:
        log.warning(msg)
        self.warnings.append(msg)


def _located(path: Path, line: int | str, text: str) -> dict[str, Any]:
    """An example line: `where` is file:line (1-based, the file's own numbering).
    A caller that cannot tell the line number passes a word instead (line is then None)."""
    if isinstance(line, int | np.integer):
        return {"file": str(path), "line": int(line), "where": f"{path}:{line}", "text": text[:_MAX_TEXT]}
    return {"file": str(path), "line": None, "where": f"{path} ({line})", "text": text[:_MAX_TEXT]}


class _Lines:
    """Where a file's records came from: their 1-based line number and text.

    Built only when something must be reported (a bad record, a duplicated
    event); the file is read again then, so nothing is kept in memory meanwhile.
    `numbers` maps records to line numbers when not every non-blank line is a
    record (the line-by-line path keeps only the lines it could parse).
    """

    def __init__(self, path: Path, data: bytes | None = None, numbers: list[int] | None = None):
        self.path = path
        self.data = data
        self.numbers = numbers
        self._bounds: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None

    def release(self) -> None:
        self.data = None
        self._bounds = None

    def _index(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(start, end, line number) of each non-blank line."""
        if self._bounds is None:
            if self.data is None:
                self.data = _read_bytes(self.path, LoadReport())
            data = self.data
            arr = np.frombuffer(data, np.uint8)
            nl = np.flatnonzero(arr == 10)
            starts = np.concatenate(([0], nl + 1))
            ends = np.concatenate((nl, [len(data)]))
            blank = ends - starts == 0
            first = np.append(arr, 0)[starts]
            # whitespace-only lines are blank too; only lines that start with one are checked
            for i in np.flatnonzero(~blank & np.isin(first, list(b" \t\r\x0b\x0c"))):
                blank[i] = not data[starts[i] : ends[i]].strip()
            keep = np.flatnonzero(~blank)
            self._bounds = (starts[keep], ends[keep], keep + 1)
        return self._bounds

    def line(self, rec: int) -> int:
        if self.numbers is not None:
            return self.numbers[rec]
        return int(self._index()[2][rec])

    def text(self, rec: int) -> str:
        starts, ends, numbers = self._index()
        i = rec if self.numbers is None else int(np.searchsorted(numbers, self.numbers[rec]))
        raw = self.data[starts[i] : ends[i]] if self.data is not None else b""
        return raw.strip().decode("utf-8", "replace")


@dataclass
class LoadedEvents:
    """Events sorted by (user, timestamp, file order) plus the load report."""

    events: pd.DataFrame
    report: LoadReport
    files: list[Path] = field(default_factory=list)

    @property
    def experiments(self) -> list[str]:
        """Experiment names seen in the logs (from the `exp:<NAME>` columns)."""
        return [c[len(EXP_PREFIX) :] for c in self.events.columns if c.startswith(EXP_PREFIX)]


# --------------------------------------------------------------------------- files


def _rotation_key(p: Path) -> tuple[str, int, str]:
    m = _ROTATION.search(p.name)
    return (str(p.parent), int(m.group(1)) if m else -1, p.name)


def find_event_files(paths: PathLike | Sequence[PathLike]) -> list[Path]:
    """Event files under the given directories (recursively) or the files themselves.

    A directory contributes `**/events-*.jsonl` and `**/events-*.jsonl.gz` only
    (rejected-*.jsonl and anything else is not an event); a file given
    explicitly is read whatever its name (e.g. a course `data.json`).
    """
    if isinstance(paths, str | Path):
        paths = [paths]
    out: list[Path] = []
    seen: set[Path] = set()
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            found = [
                f
                for f in p.rglob("events-*.jsonl*")
                if f.is_file() and (f.name.endswith(".jsonl") or f.name.endswith(".jsonl.gz"))
            ]
            found.sort(key=_rotation_key)
        elif p.is_file():
            found = [p]
        else:
            raise FileNotFoundError(f"no such log file or directory: {p}")
        for f in found:
            r = f.resolve()
            if r not in seen:
                seen.add(r)
                out.append(f)
    return out


def _read_bytes(path: Path, report: LoadReport) -> bytes:
    """File content, gunzipped; a gzip cut short yields what could be decompressed."""
    data = path.read_bytes()
    if not path.name.endswith(".gz"):
        return data
    try:
        return gzip.decompress(data)
    except (EOFError, OSError, zlib.error) as exc:
        d = zlib.decompressobj(16 + zlib.MAX_WBITS)
        try:
            part = d.decompress(data)
        except zlib.error:
            part = b""
        report._warn(f"{path}: damaged gzip ({exc}); using the {len(part)} bytes recovered")
        return part


class _Dedup:
    """Exact duplicate-file detection that hashes whole files only when needed.

    A cheap fingerprint (length, hashes of the first and last 64 KiB, taken while
    the file is parsed) finds candidates; only then are both files read again and
    hashed whole (SHA-256), so a normal run pays almost nothing for the check.
    """

    _EDGE = 65536

    def __init__(self, report: LoadReport) -> None:
        self.report = report
        self.by_fp: dict[tuple[int, bytes], list[Path]] = {}
        self.full: dict[Path, bytes] = {}

    @classmethod
    def fingerprint(cls, data: bytes) -> tuple[int, bytes]:
        h = hashlib.sha256(data[: cls._EDGE])
        h.update(data[-cls._EDGE :])
        return (len(data), h.digest())

    def _full(self, path: Path) -> bytes:
        if path not in self.full:
            self.full[path] = hashlib.sha256(_read_bytes(path, LoadReport())).digest()
        return self.full[path]

    def is_duplicate(self, path: Path, fp: tuple[int, bytes]) -> bool:
        for prev in self.by_fp.get(fp, []):
            if self._full(prev) == self._full(path):
                self.report.duplicate_files.append({"file": str(path), "same_as": str(prev)})
                self.report._warn(f"{path}: same content as {prev}; counted once")
                return True
        self.by_fp.setdefault(fp, []).append(path)
        return False


# --------------------------------------------------------------------------- parsing


def _is_int(t: pa.DataType) -> bool:
    return pa.types.is_integer(t) or pa.types.is_null(t)


def _is_num(t: pa.DataType) -> bool:
    return pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_null(t)


def _is_str(t: pa.DataType) -> bool:
    return pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_null(t)


def _fast_table(data: bytes, use_threads: bool = True) -> pa.Table | None:
    """pyarrow parse with the types we accept, or None to ask for the slow path."""
    try:
        t = pj.read_json(
            pa.BufferReader(data),
            # one thread per file: bigger blocks, less per-block overhead (about 8% of CPU)
            read_options=pj.ReadOptions(
                use_threads=use_threads, block_size=(1 << 20) if use_threads else (4 << 20)
            ),
            parse_options=pj.ParseOptions(unexpected_field_behavior="infer"),
        )
    except pa.ArrowException:
        return None
    s = t.schema
    checks = {
        "message": _is_str,
        "user": _is_int,
        "track": _is_int,
        "time": _is_num,
        "latency": _is_num,
        "recommendation": _is_int,
        "recommender": _is_str,
        "fallback": _is_str,
        "seq": _is_int,
        "event_id": _is_str,
    }
    for name, ok in checks.items():
        if name in s.names and not ok(s.field(name).type):
            return None
    if "timestamp" in s.names:
        tt = s.field("timestamp").type
        if not (_is_int(tt) or _is_str(tt) or pa.types.is_timestamp(tt)):
            return None
    if "experiments" in s.names:
        et = s.field("experiments").type
        if pa.types.is_struct(et):
            if not all(_is_str(et.field(i).type) for i in range(et.num_fields)):
                return None
        elif not pa.types.is_null(et):
            return None
    return t


def _col(t: pa.Table, name: str, typ: pa.DataType) -> pa.Array:
    n = t.num_rows
    if name not in t.schema.names:
        return pa.nulls(n, typ)
    a = t.column(name).combine_chunks()
    if a.type != typ:
        a = a.cast(typ)
    return a


def _timestamp_ms(a: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """(ms since epoch int64, mask of values present but unparseable)."""
    n = len(a)
    t = a.type
    if pa.types.is_null(t):
        return np.zeros(n, np.int64), np.zeros(n, bool)
    if pa.types.is_integer(t):
        return a.fill_null(0).to_numpy(zero_copy_only=False).astype(np.int64), np.zeros(n, bool)
    if pa.types.is_timestamp(t):
        ms = pc.cast(a, pa.timestamp("ms", tz=t.tz)).cast(pa.int64())
        return ms.fill_null(0).to_numpy(zero_copy_only=False), np.zeros(n, bool)
    s = pd.Series(a.to_pylist(), dtype=object)
    parsed = pd.to_datetime(s, format="ISO8601", utc=True, errors="coerce")
    nat = parsed.isna().to_numpy()
    bad = nat & s.notna().to_numpy()
    vals = parsed.dt.tz_localize(None).dt.as_unit("ms").to_numpy().view(np.int64).copy()
    vals[nat] = 0
    return vals, bad


def _normalise(
    t: pa.Table, path: Path, report: LoadReport, lines: _Lines | None = None, file_no: int = 0
) -> pa.Table:
    """Fixed-schema, validated table of one file's records; bad records counted and dropped.

    With `lines`, the table also carries `__file` (file_no) and `__rec` (the record's
    number in the file), which the duplicate check uses to point at file:line.
    """
    n = t.num_rows
    message = _col(t, "message", pa.string())
    ts_raw = (
        t.column("timestamp").combine_chunks() if "timestamp" in t.schema.names else pa.nulls(n)
    )
    ts_ms, ts_bad = _timestamp_ms(ts_raw)
    cols: dict[str, pa.Array] = {
        "message": message,
        "timestamp": pa.array(ts_ms, pa.int64()),
        "user": _col(t, "user", pa.int64()),
        "track": _col(t, "track", pa.int64()),
        "time": _col(t, "time", pa.float64()),
        "latency": _col(t, "latency", pa.float64()),
        "recommendation": _col(t, "recommendation", pa.int64()),
        "recommender": _col(t, "recommender", pa.string()),
        "fallback": _col(t, "fallback", pa.string()),
        "seq": _col(t, "seq", pa.int64()),
        "event_id": _col(t, "event_id", pa.string()),
    }
    if "seq" in t.schema.names:
        cols["seq"] = _col(t, "seq", pa.int64())
    if "event_id" in t.schema.names:
        cols["event_id"] = _col(t, "event_id", pa.string())
    if "experiments" in t.schema.names:
        ex = t.column("experiments").combine_chunks()
        if pa.types.is_struct(ex.type):
            validity = ex.is_valid()
            for i in range(ex.type.num_fields):
                name = ex.type.field(i).name
                child = ex.field(i).cast(pa.string())
                if ex.null_count:  # a line without `experiments`: no arm either
                    child = pc.if_else(validity, child, pa.nulls(n, pa.string()))
                cols[EXP_PREFIX + name] = child

    # Vectorised validation; a record gets the first reason that applies.
    missing = np.zeros(n, bool)
    for name in REQUIRED:
        src = ts_raw if name == "timestamp" else cols[name]
        missing |= src.is_null().to_numpy(zero_copy_only=False)
    msg_ok = pc.is_in(message, value_set=pa.array(MESSAGES)).fill_null(False)
    unknown = ~msg_ok.to_numpy(zero_copy_only=False) & ~missing
    bad_ts = ts_bad & ~missing & ~unknown
    time_np = cols["time"].fill_null(0.0).to_numpy(zero_copy_only=False)
    lat_np = cols["latency"].fill_null(0.0).to_numpy(zero_copy_only=False)
    with np.errstate(invalid="ignore"):
        rng = ~((time_np >= 0.0) & (time_np <= 1.0)) | ~(np.isfinite(lat_np) & (lat_np >= 0.0))
    rng &= ~missing & ~unknown & ~bad_ts
    for reason, mask in (
        ("missing_field", missing),
        ("unknown_message", unknown),
        ("bad_timestamp", bad_ts),
        ("out_of_range", rng),
    ):
        k = int(mask.sum())
        if k:
            report._bad(reason, k)
            for i in np.flatnonzero(mask)[:3]:
                if lines is not None:
                    report._example(path, lines.line(int(i)), reason, lines.text(int(i)))
    keep = ~(missing | unknown | bad_ts | rng)
    if lines is not None:
        cols["__file"] = pa.array(np.full(n, file_no, np.int32))
        cols["__rec"] = pa.array(np.arange(n, dtype=np.int32))
    out = pa.table(cols)
    if not keep.all():
        out = out.filter(pa.array(keep))
    # Strings become dictionary codes here, on the pool thread, so that the
    # single-threaded assembly only remaps a few small dictionaries.
    for name in ("message", "recommender", "fallback", *[c for c in cols if c.startswith(EXP_PREFIX)]):
        i = out.schema.get_field_index(name)
        out = out.set_column(i, name, out.column(name).combine_chunks().dictionary_encode())
    return out


def _type_ok(obj: dict[str, Any]) -> bool:
    """Python-side type check mirroring what the fast path accepts."""

    def is_int(v: Any) -> bool:
        return v is None or (
            isinstance(v, int) and not isinstance(v, bool) and -(2**63) <= v < 2**63
        )

    def is_num(v: Any) -> bool:
        return v is None or (isinstance(v, int | float) and not isinstance(v, bool))

    def is_str(v: Any) -> bool:
        return v is None or isinstance(v, str)

    g = obj.get
    if not (is_str(g("message")) and is_int(g("user")) and is_int(g("track"))):
        return False
    if not (is_num(g("time")) and is_num(g("latency")) and is_int(g("recommendation"))):
        return False
    if not (is_str(g("recommender")) and is_str(g("fallback"))):
        return False
    if not (is_int(g("seq")) and is_str(g("event_id"))):
        return False
    ts = g("timestamp")
    if not (is_int(ts) or isinstance(ts, str)):
        return False
    ex = g("experiments")
    if ex is not None and not (
        isinstance(ex, dict) and all(isinstance(v, str) or v is None for v in ex.values())
    ):
        return False
    return True


def _slow_table(data: bytes, path: Path, report: LoadReport) -> tuple[pa.Table, list[int]]:
    """Line-by-line parse for a file pyarrow rejected: find and classify the bad lines.

    Returns the good records and the file line number of each."""
    good: list[dict[str, Any]] = []
    numbers: list[int] = []
    lines = data.split(b"\n")
    last_idx = len(lines) - 1
    for i, line in enumerate(lines):
        if not line.strip():
            if i < last_idx or line:  # the empty piece after a final newline is no line
                report.empty_lines += 1
            continue
        report.lines += 1
        try:
            obj = orjson.loads(line)
        except orjson.JSONDecodeError:
            # A last line with no newline that does not parse was cut mid-write.
            reason = "truncated" if i == last_idx else "invalid_json"
            report._bad(reason)
            report._example(path, i + 1, reason, line.strip().decode("utf-8", "replace"))
            continue
        if not isinstance(obj, dict):
            report._bad("not_object")
            report._example(path, i + 1, "not_object", line.strip().decode("utf-8", "replace"))
            continue
        if not _type_ok(obj):
            report._bad("wrong_type")
            report._example(path, i + 1, "wrong_type", line.strip().decode("utf-8", "replace"))
            continue
        good.append(obj)
        numbers.append(i + 1)
    cols: dict[str, list[Any]] = {
        k: [o.get(k) for o in good]
        for k in (
            "message",
            "user",
            "track",
            "time",
            "latency",
            "recommendation",
            "recommender",
            "fallback",
            "seq",
            "event_id",
        )
    }
    ts = [o.get("timestamp") for o in good]
    ts_arr: pa.Array
    if all(v is None or isinstance(v, int) for v in ts):
        ts_arr = pa.array(ts, pa.int64())
    else:
        # Mixed int/ISO in one file: render ints as ISO so one parser handles both.
        ts_arr = pa.array(
            [
                pd.Timestamp(v, unit="ms", tz="UTC").isoformat() if isinstance(v, int) else v
                for v in ts
            ],
            pa.string(),
        )
    arrays: dict[str, pa.Array] = {
        "message": pa.array(cols["message"], pa.string()),
        "timestamp": ts_arr,
        "user": pa.array(cols["user"], pa.int64()),
        "track": pa.array(cols["track"], pa.int64()),
        "time": pa.array(cols["time"], pa.float64()),
        "latency": pa.array(cols["latency"], pa.float64()),
        "recommendation": pa.array(cols["recommendation"], pa.int64()),
        "recommender": pa.array(cols["recommender"], pa.string()),
        "fallback": pa.array(cols["fallback"], pa.string()),
        "seq": pa.array(cols["seq"], pa.int64()),
        "event_id": pa.array(cols["event_id"], pa.string()),
    }
    if any("seq" in o for o in good):
        arrays["seq"] = pa.array([o.get("seq") for o in good], pa.int64())
    if any("event_id" in o for o in good):
        arrays["event_id"] = pa.array([o.get("event_id") for o in good], pa.string())
    names: list[str] = []
    for o in good:
        ex = o.get("experiments")
        if ex:
            for k in ex:
                if k not in names:
                    names.append(k)
    if names:
        fields = [pa.field(k, pa.string()) for k in names]
        exps = [o.get("experiments") for o in good]
        arrays["experiments"] = pa.array(exps, pa.struct(fields))
    return pa.table(arrays), numbers


# --------------------------------------------------------------------------- assembly


def _np(t: pa.Table, name: str) -> np.ndarray:
    return t.column(name).combine_chunks().to_numpy(zero_copy_only=False)


def _user_time_order(user: np.ndarray, ts: np.ndarray) -> np.ndarray | None:
    """Stable order by (user, timestamp), ties in file order; None if already in order.

    Same result as np.lexsort((ts, user)), at a third of the cost: a stable sort
    by time (fast, each file is nearly time-ordered already) then stable radix
    passes over 16-bit digits of the user id, which numpy sorts in linear time.
    """
    n = len(user)
    if n == 0:
        return None
    u0 = int(user.min())
    span = int(user.max()) - u0
    if span >= 2**32:
        order = np.lexsort((ts, user))
    else:
        order = np.argsort(ts, kind="stable")
        rel = (user - u0).astype(np.uint32)
        for shift in (0, 16) if span >= 2**16 else (0,):
            digit = ((rel[order] >> shift) & 0xFFFF).astype(np.uint16)
            order = order[np.argsort(digit, kind="stable")]
    if np.array_equal(order, np.arange(n)):
        return None
    return order


def _categorical_codes(col: pa.ChunkedArray) -> tuple[np.ndarray, list[Any]]:
    """(int32 codes, categories) of a string or dictionary column, categories in order
    of first appearance; -1 for null. Chunks may each carry their own dictionary."""
    cats: list[Any] = []
    index: dict[Any, int] = {}
    parts: list[np.ndarray] = []
    for ch in col.chunks:
        if pa.types.is_null(ch.type):
            ch = ch.cast(pa.string())
        if not pa.types.is_dictionary(ch.type):
            ch = ch.dictionary_encode()
        d = ch.dictionary.to_pylist()
        pos = np.full(len(d) + 1, -1, dtype=np.int32)  # the trailing -1 is for nulls
        for j, v in enumerate(d):
            if v is None:
                continue
            if v not in index:
                index[v] = len(cats)
                cats.append(v)
            pos[j] = index[v]
        idx = ch.indices.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int32)
        parts.append(pos[idx])
    codes = np.concatenate(parts) if parts else np.zeros(0, np.int32)
    return codes, cats


_UNSET: Any = object()


def _to_pandas(t: pa.Table, exp_cols: list[str], order: np.ndarray | None = _UNSET) -> pd.DataFrame:
    """Sorted pandas frame. Reordering is done on numpy arrays and dictionary codes,
    never on Arrow strings (a string `take` costs more than the whole sort).
    `order`: the (user, time) order when the caller has it already."""
    user = _np(t, "user")
    ts = _np(t, "timestamp")
    if order is _UNSET:
        order = _user_time_order(user, ts)

    def take(a: np.ndarray) -> np.ndarray:
        return a if order is None else a[order]

    def cat(name: str, categories: list[str] | None = None) -> pd.Categorical:
        codes, cats = _categorical_codes(t.column(name))
        if categories is not None:  # remap to a fixed category order
            pos = np.array([categories.index(c) for c in cats] + [-1], dtype=np.int32)
            codes = pos[codes]  # -1 indexes the trailing -1
            cats = categories
        return pd.Categorical.from_codes(take(codes), categories=cats)

    def column(name: str, typ: pa.DataType) -> pa.Array:
        return t.column(name).combine_chunks() if name in t.schema.names else pa.nulls(n, typ)

    n = t.num_rows

    def nullable_int(name: str) -> pd.arrays.IntegerArray:
        a = column(name, pa.int64())
        vals = take(a.fill_null(0).to_numpy(zero_copy_only=False).astype(np.int64))
        return pd.arrays.IntegerArray(vals, take(a.is_null().to_numpy(zero_copy_only=False)))

    eid = column("event_id", pa.string())
    if order is not None and eid.null_count < len(eid):
        eid = eid.take(pa.array(order))
    ts = take(ts)
    df = pd.DataFrame(
        {
            "message": cat("message", list(MESSAGES)),
            "timestamp": pd.DatetimeIndex(ts.view("datetime64[ms]")).tz_localize("UTC"),
            "user": take(user).astype(np.int64, copy=False),
            "track": take(_np(t, "track")).astype(np.int64, copy=False),
            "time": take(_np(t, "time")),
            "latency": take(_np(t, "latency")),
            "recommendation": nullable_int("recommendation"),
            "recommender": cat("recommender"),
            "fallback": cat("fallback"),
            "seq": nullable_int("seq"),
            "event_id": pd.arrays.ArrowExtensionArray(eid),
        }
    )
    names = t.schema.names
    if "seq" in names:
        seq = t.column("seq").combine_chunks()
        df["seq"] = pd.arrays.IntegerArray(
            take(seq.fill_null(0).to_numpy(zero_copy_only=False).astype(np.int64)),
            take(seq.is_null().to_numpy(zero_copy_only=False)),
        )
    if "event_id" in names:
        eid = t.column("event_id")
        if order is not None:
            eid = eid.take(pa.array(order))
        df["event_id"] = pd.array(eid.combine_chunks(), dtype=pd.StringDtype("pyarrow"))
    for c in exp_cols:
        df[c] = cat(c)
    return df


def _empty_frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "message": pd.Categorical([], categories=list(MESSAGES)),
            "timestamp": pd.Series([], dtype="datetime64[ms, UTC]"),
            "user": pd.Series([], dtype=np.int64),
            "track": pd.Series([], dtype=np.int64),
            "time": pd.Series([], dtype=np.float64),
            "latency": pd.Series([], dtype=np.float64),
            "recommendation": pd.Series([], dtype="Int64"),
            "recommender": pd.Categorical([]),
            "fallback": pd.Categorical([]),
            "seq": pd.Series([], dtype="Int64"),
            "event_id": pd.Series([], dtype=pd.ArrowDtype(pa.string())),
        }
    )


@dataclass
class _FileResult:
    """One file's share of the work, done on a pool thread with its own report."""

    path: Path
    report: LoadReport
    lines: _Lines
    fingerprint: tuple[int, bytes] | None = None
    table: pa.Table | None = None
    slow: bool = False
    unreadable: bool = False


def _load_file(path: Path, file_no: int, use_threads: bool) -> _FileResult:
    """Read, parse and validate one file; touches nothing shared (runs on a pool thread)."""
    res = _FileResult(path, LoadReport(), _Lines(path))
    try:
        res.table = _parse_file(res, file_no, use_threads)
    finally:
        res.lines.release()
    return res


def _parse_file(res: _FileResult, file_no: int, use_threads: bool) -> pa.Table | None:
    path = res.path
    try:
        data = _read_bytes(path, res.report)
    except OSError as exc:
        res.report._warn(f"{path}: unreadable ({exc}); skipped")
        res.unreadable = True
        return None
    res.fingerprint = _Dedup.fingerprint(data)
    res.lines.data = data
    n_lines = data.count(b"\n") + (1 if data and not data.endswith(b"\n") else 0)
    if not data or data.isspace():
        res.report.empty_lines += n_lines
        return None
    t = _fast_table(data, use_threads)
    if t is not None:
        sub = LoadReport()
        try:
            table = _normalise(t, path, sub, res.lines, file_no)
        except (pa.ArrowException, ValueError, OverflowError):
            pass  # a cast pyarrow cannot do: let the line parser judge
        else:
            res.report.lines += t.num_rows  # pyarrow skips blank lines, as the slow path does
            res.report.empty_lines += n_lines - t.num_rows
            res.report._merge(sub)
            return table
    res.slow = True
    good, numbers = _slow_table(data, path, res.report)
    res.lines.numbers = numbers
    return _normalise(good, path, res.report, res.lines, file_no)


def _load_all(files: list[Path]) -> list[_FileResult]:
    """Every file's result, in file order. With fewer files than cores pyarrow's own
    threads split each file; otherwise one file per pool thread, each single-threaded,
    which saves pyarrow's chunking and hand-over cost (about a tenth of the CPU)."""
    try:
        cores = len(os.sched_getaffinity(0))  # the cores this process may use, not the machine's
    except AttributeError:  # not on every platform
        cores = os.cpu_count() or 1
    if len(files) <= 1 or cores == 1:
        return [_load_file(f, i, True) for i, f in enumerate(files)]
    per_file_threads = len(files) < cores
    with ThreadPoolExecutor(max_workers=min(cores, len(files))) as pool:
        return list(pool.map(lambda i: _load_file(files[i], i, per_file_threads), range(len(files))))


def _drop_duplicate_events(
    big: pa.Table,
    user: np.ndarray,
    ts: np.ndarray,
    order: np.ndarray | None,
    lines: dict[int, _Lines],
    report: LoadReport,
) -> np.ndarray | None:
    """Mask of rows (in concatenation order) that repeat an earlier event, or None.

    A copy of an event (a shipper that re-sent lines, a file copied with a few more)
    has the event's user and millisecond, so only rows that tie with another on
    (user, timestamp), rare, are compared: by `event_id` when the row has one, else
    (older logs) by the whole line, whitespace around it aside. Hashing a million ids
    would cost a tenth of the whole load; the ties cost almost nothing. The first
    copy in file order is kept; the report says how each was found.
    """
    n = big.num_rows
    dup = np.zeros(n, bool)
    first_of = np.full(n, -1, np.int64)  # for examples: the row each duplicate repeats
    has_id = np.zeros(n, bool)
    if "event_id" in big.schema.names:
        has_id = big.column("event_id").is_valid().to_numpy(zero_copy_only=False)
    o = np.arange(n) if order is None else order
    su, st = user[o], ts[o]
    same = (su[1:] == su[:-1]) & (st[1:] == st[:-1])
    tied = np.zeros(n, bool)
    tied[1:] |= same
    tied[:-1] |= same
    cand = o[tied]  # in (user, time, file order): a group's first copy comes first
    if len(cand):
        f_no = big.column("__file").to_numpy()
        rec = big.column("__rec").to_numpy()
        ids: list[Any] = [None] * len(cand)
        if has_id[cand].any():
            ids = big.column("event_id").take(pa.array(cand)).to_pylist()
        seen: dict[tuple[int, int, str, str], int] = {}
        for r, eid in zip(cand.tolist(), ids, strict=True):
            if eid is not None:
                key = (int(user[r]), int(ts[r]), "id", str(eid))
            else:
                key = (int(user[r]), int(ts[r]), "line", lines[int(f_no[r])].text(int(rec[r])))
            if key in seen:
                dup[r] = True
                first_of[r] = seen[key]
            else:
                seen[key] = r
    k_id = int((dup & has_id).sum())
    k_line = int(dup.sum()) - k_id
    if not dup.any():
        return None
    for how, k in (("event_id", k_id), ("line", k_line)):
        if k:
            report.duplicate_events[how] = k
    f_no = big.column("__file").to_numpy()
    rec = big.column("__rec").to_numpy()
    for r in np.flatnonzero(dup)[:_MAX_EXAMPLES].tolist():
        a, b = lines[int(f_no[r])], lines[int(f_no[first_of[r]])]
        ra, rb = int(rec[r]), int(rec[first_of[r]])
        ex = _located(a.path, a.line(ra), a.text(ra))
        ex["same_as"] = f"{b.path}:{b.line(rb)}"
        ex["by"] = "event_id" if has_id[r] else "line"
        report.duplicate_examples.append(ex)
    how = " and ".join(
        f"{k} by {'the same event_id' if m == 'event_id' else 'the same line (no event_id)'}"
        for m, k in sorted(report.duplicate_events.items())
    )
    report._warn(
        f"dropped {int(dup.sum())} duplicated event(s) (same user and millisecond as an earlier"
        f" event, and {how}); first copies kept"
    )
    return dup


def read_events(paths: PathLike | Sequence[PathLike] | Iterable[PathLike]) -> LoadedEvents:
    """Load, validate and sort every event of a run. Bad data is reported, never raised.

    Raises FileNotFoundError only when a given path does not exist.
    """
    if not isinstance(paths, str | Path):
        paths = list(paths)
    files = find_event_files(paths)
    report = LoadReport(files_found=len(files))
    dedup = _Dedup(report)
    tables: list[pa.Table] = []
    used: list[Path] = []
    lines: dict[int, _Lines] = {}
    for file_no, res in enumerate(_load_all(files)):
        f = res.path
        if res.unreadable or res.fingerprint is None:
            report._merge(res.report)
            continue
        if dedup.is_duplicate(f, res.fingerprint):
            report.warnings.extend(res.report.warnings)  # e.g. a damaged gzip copy
            continue
        used.append(f)
        report.files_read += 1
        report.lines += res.report.lines
        report.files_slow_path += int(res.slow)
        report._merge(res.report)
        if res.table is not None:
            tables.append(res.table)
            lines[file_no] = res.lines
    if report.bad:
        report._warn(f"skipped {report.bad} bad line(s): {dict(sorted(report.bad_lines.items()))}")
    if not tables:
        return LoadedEvents(_empty_frame(), report, used)
    exp_cols = sorted({n for t in tables for n in t.schema.names if n.startswith(EXP_PREFIX)})
    big = pa.concat_tables(tables, promote_options="default")
    user, ts = _np(big, "user"), _np(big, "timestamp")
    order = _user_time_order(user, ts)
    try:
        dup = _drop_duplicate_events(big, user, ts, order, lines, report)
    finally:
        for ln in lines.values():
            ln.release()
    if dup is not None:
        keep = ~dup
        if order is not None:
            new_pos = np.cumsum(keep) - 1
            order = new_pos[order[keep[order]]]
            if np.array_equal(order, np.arange(len(order))):
                order = None
        big = big.filter(pa.array(keep))
    big = big.drop_columns(["__file", "__rec"])
    report.events = big.num_rows
    return LoadedEvents(_to_pandas(big, exp_cols, order), report, used)


def timestamp_ms(ts: pd.Series) -> np.ndarray:
    """int64 milliseconds since the epoch of a datetime Series (tz-aware or naive UTC)."""
    if len(ts) == 0:
        return np.zeros(0, np.int64)
    if not (isinstance(ts.dtype, pd.DatetimeTZDtype) or pd.api.types.is_datetime64_dtype(ts)):
        ts = pd.to_datetime(ts, utc=True)
    return np.asarray(ts.dt.as_unit("ms").array.asi8, dtype=np.int64)


def arm_column(experiment: str) -> str:
    """Column name of an experiment's arm in the events frame."""
    return EXP_PREFIX + experiment


__all__ = [
    "EXP_PREFIX",
    "MESSAGES",
    "OPTIONAL",
    "REASONS",
    "LoadReport",
    "LoadedEvents",
    "arm_column",
    "find_event_files",
    "read_events",
    "timestamp_ms",
]
