"""Read botify event logs with Spark, with the same validation as `botify.analysis.logs`.

Paths may be local directories/files or any Hadoop URI (hdfs://, s3a://, ...):
files are listed through Hadoop's FileSystem on the driver, with the same
selection (`**/events-*.jsonl`, `**/events-*.jsonl.gz`) and the same order
(directory, rotation number, name) as the embedded reader, because that order
breaks ties between events of one user in the same millisecond.

Each line is parsed with `from_json` against an explicit schema in PERMISSIVE
mode: a line that does not fit lands in the corrupt-record column and is
counted, never a failed job. Only those few lines are looked at again
(`try_parse_json`) to tell invalid JSON from a non-object or a wrong type.
Duplicate files (e.g. a rotated file and its gzipped copy) are detected from
per-file fingerprints (line count and two order-independent line hashes) and
counted once, like the embedded reader's content hash.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from botify.analysis.logs import MESSAGES, LoadReport

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

PathLike = str | Path

_ROTATION = re.compile(r"events-(\d+)\.jsonl(\.gz)?$")
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
_MAX_EXAMPLES = 20
#: The columns of the events frame, in order. `file_rank`, `block`, `rid` give
#: each line's position in the run (file order, then line order) for tie-breaks.
ORDER = ("timestamp", "file_rank", "block", "rid")


@dataclass
class SparkLoaded:
    """Validated events as a (cached) Spark DataFrame plus the same LoadReport as embedded."""

    events: DataFrame
    report: LoadReport
    files: list[str] = field(default_factory=list)
    experiments: list[str] = field(default_factory=list)

    def unpersist(self) -> None:
        """Release the cached parse (call when done with a large run)."""
        self.events.unpersist()


def _schema() -> Any:
    from pyspark.sql import types as st

    return st.StructType(
        [
            st.StructField("message", st.StringType()),
            # String so that both epoch-ms numbers (raw digits) and ISO strings arrive.
            st.StructField("timestamp", st.StringType()),
            st.StructField("user", st.LongType()),
            st.StructField("track", st.LongType()),
            st.StructField("time", st.DoubleType()),
            st.StructField("latency", st.DoubleType()),
            st.StructField("recommendation", st.LongType()),
            st.StructField("recommender", st.StringType()),
            st.StructField("fallback", st.StringType()),
            st.StructField("seq", st.LongType()),
            st.StructField("event_id", st.StringType()),
            st.StructField("experiments", st.MapType(st.StringType(), st.StringType())),
            st.StructField("_corrupt", st.StringType()),
        ]
    )


#: from_json options: as strict as orjson (no NaN tokens, no single quotes).
JSON_OPTIONS = {
    "mode": "PERMISSIVE",
    "columnNameOfCorruptRecord": "_corrupt",
    "allowNonNumericNumbers": "false",
    "allowSingleQuotes": "false",
    "allowUnquotedControlChars": "false",
}


def _rotation_key(uri: str) -> tuple[str, int, str]:
    parent, _, name = uri.rpartition("/")
    m = _ROTATION.search(name)
    return (parent, int(m.group(1)) if m else -1, name)


def _is_event_name(name: str) -> bool:
    return name.startswith("events-") and (name.endswith(".jsonl") or name.endswith(".jsonl.gz"))


def _qualify(raw: PathLike) -> str:
    s = str(raw)
    if _SCHEME.match(s) or s.startswith("file:"):
        return s
    return Path(s).resolve().as_uri()


def find_event_files(spark: SparkSession, paths: PathLike | Iterable[PathLike]) -> list[str]:
    """Event file URIs under the given directories (recursively) or the files themselves.

    Same rules as `botify.analysis.logs.find_event_files`; works for any Hadoop
    file system. Raises FileNotFoundError for a path that does not exist.
    """
    if isinstance(paths, str | Path):
        paths = [paths]
    jvm = spark.sparkContext._jvm
    conf = spark.sparkContext._jsc.hadoopConfiguration()
    out: list[str] = []
    seen: set[str] = set()
    for raw in paths:
        p = jvm.org.apache.hadoop.fs.Path(_qualify(raw))
        fs = p.getFileSystem(conf)
        if not fs.exists(p):
            raise FileNotFoundError(f"no such log file or directory: {raw}")
        st = fs.getFileStatus(p)
        found: list[str] = []
        if st.isDirectory():
            it = fs.listFiles(p, True)
            while it.hasNext():
                f = it.next()
                fp = f.getPath()
                if f.isFile() and _is_event_name(fp.getName()):
                    found.append(fs.makeQualified(fp).toString())
            found.sort(key=_rotation_key)
        else:
            found = [fs.makeQualified(p).toString()]
        for f in found:
            if f not in seen:
                seen.add(f)
                out.append(f)
    return out


def _norm_uri(spark: SparkSession, uri: str) -> str:
    """One spelling per file (Spark reports `file:///x`, Hadoop qualifies to `file:/x`)."""
    jvm = spark.sparkContext._jvm
    return jvm.org.apache.hadoop.fs.Path(jvm.java.net.URI(uri)).toString()


def _parse(spark: SparkSession, files: list[str], norm: list[str]) -> DataFrame:
    """One row per non-blank line: parsed fields, position, and a status (ok or a reason)."""
    from pyspark.sql import functions as sf

    # Spark reports file paths in its own spelling (file:///x): rank them through
    # the normalised listing (file:/x).
    rank = sf.create_map(*[x for i, f in enumerate(norm) for x in (sf.lit(f), sf.lit(i))])
    file_norm = sf.regexp_replace("file", r"^file:///", "file:/")
    raw = (
        spark.read.option("ignoreCorruptFiles", "true")
        .text(files)
        .select(
            "value",
            sf.col("_metadata.file_path").alias("file"),
            sf.col("_metadata.file_block_start").alias("block"),
            sf.monotonically_increasing_id().alias("rid"),
        )
    )
    # Blank lines are not records (pyarrow and the slow path both skip them).
    raw = raw.filter(~sf.col("value").rlike(r"^\s*$"))
    j = sf.from_json("value", _schema(), JSON_OPTIONS)
    df = raw.select("value", "file", "block", "rid", j.alias("j"))
    df = df.select("value", "file", "block", "rid", "j.*")

    ts_raw = sf.col("timestamp")
    is_int = ts_raw.rlike(r"^-?[0-9]+$")
    iso_ms = sf.floor(sf.unix_micros(sf.expr("try_cast(timestamp AS TIMESTAMP)")) / sf.lit(1000))
    ts = sf.when(is_int, ts_raw.try_cast("bigint")).otherwise(iso_ms.cast("bigint"))

    corrupt = sf.col("_corrupt").isNotNull()
    # A corrupt line is parsed again, as a variant, only to name the reason.
    v = sf.try_parse_json("value")
    corrupt_reason = (
        sf.when(v.isNull(), sf.lit("invalid_json"))
        .when(~sf.schema_of_variant(v).startswith("OBJECT"), sf.lit("not_object"))
        .otherwise(sf.lit("wrong_type"))
    )
    missing = (
        sf.col("message").isNull()
        | ts_raw.isNull()
        | sf.col("user").isNull()
        | sf.col("track").isNull()
        | sf.col("time").isNull()
    )
    lat = sf.col("latency")
    in_range = (
        (sf.col("time") >= 0.0)
        & (sf.col("time") <= 1.0)
        & ~sf.isnan("time")
        & (lat.isNull() | ((lat >= 0.0) & ~sf.isnan(lat) & (lat != sf.lit(float("inf")))))
    )
    status = (
        sf.when(corrupt, corrupt_reason)
        .when(missing, sf.lit("missing_field"))
        .when(~sf.col("message").isin(*MESSAGES), sf.lit("unknown_message"))
        .when(ts.isNull(), sf.lit("bad_timestamp"))
        .when(~in_range, sf.lit("out_of_range"))
        .otherwise(sf.lit("ok"))
    )
    df = df.select(
        "value",
        "file",
        rank[file_norm].cast("int").alias("file_rank"),
        "block",
        "rid",
        status.alias("status"),
        "message",
        ts.alias("timestamp"),
        "user",
        "track",
        "time",
        "latency",
        "recommendation",
        "recommender",
        "fallback",
        "seq",
        "event_id",
        "experiments",
    )
    # The raw line is kept only for bad lines (report examples); good lines keep
    # just their two fingerprint hashes, so the cache holds parsed columns only.
    return df.select(
        sf.when(sf.col("status") != "ok", sf.substring("value", 1, 160)).alias("bad_text"),
        sf.xxhash64("value").alias("h1"),
        sf.hash("value").alias("h2"),
        *[c for c in df.columns if c not in ("value", "file")],
    )


def read_events(
    spark: SparkSession, paths: PathLike | Sequence[PathLike] | Iterable[PathLike]
) -> SparkLoaded:
    """Load and validate every event of a run; bad data is counted and reported, never raised.

    The returned events are cached (MEMORY_AND_DISK) because sessionization,
    the A/B table and training all read them again.
    """
    from pyspark import StorageLevel
    from pyspark.sql import functions as sf

    if not isinstance(paths, str | Path):
        paths = list(paths)
    files = find_event_files(spark, paths)
    report = LoadReport(files_found=len(files))
    empty = _empty_events(spark)
    if not files:
        return SparkLoaded(empty, report, [])
    norm = [_norm_uri(spark, f) for f in files]
    parsed = _parse(spark, files, norm).persist(StorageLevel.MEMORY_AND_DISK)

    per_file = (
        parsed.groupBy("file_rank", "status")
        .agg(
            sf.count(sf.lit(1)).alias("n"),
            sf.sum("h1").alias("h1"),
            sf.bit_xor("h2").alias("h2"),
            sf.max(sf.struct("block", "rid")).alias("last"),
            sf.array_distinct(sf.flatten(sf.collect_set(sf.map_keys("experiments")))).alias("exps"),
        )
        .collect()
    )
    unknown = [r for r in per_file if r["file_rank"] is None]
    if unknown:
        raise RuntimeError("internal: Spark reported a file path not in the listing")
    # Fingerprint per file: (lines, sum of xxhash64, xor of murmur3) over all its lines.
    fps: dict[int, list[Any]] = {}
    for r in per_file:
        fp = fps.setdefault(r["file_rank"], [0, 0, 0])
        fp[0] += r["n"]
        fp[1] = (fp[1] + (r["h1"] or 0)) & 0xFFFFFFFFFFFFFFFF
        fp[2] ^= r["h2"] or 0
    first_by_fp: dict[tuple[int, int, int], int] = {}
    dups: set[int] = set()
    for i in sorted(fps):
        key = tuple(fps[i])
        if key in first_by_fp:
            dups.add(i)
            report.duplicate_files.append({"file": files[i], "same_as": files[first_by_fp[key]]})
            report._warn(f"{files[i]}: same content as {files[first_by_fp[key]]}; counted once")
        else:
            first_by_fp[key] = i
    # Empty files have no lines and so no fingerprint: they are read, not duplicates.
    report.files_read = len(files) - len(dups)

    # The last line of a file that does not parse is a write cut short.
    last_line: dict[int, Any] = {}
    for r in per_file:
        if r["file_rank"] not in dups:
            cur = last_line.get(r["file_rank"])
            if cur is None or tuple(r["last"]) > tuple(cur[0]):
                last_line[r["file_rank"]] = (r["last"], r["status"])
    exps: set[str] = set()
    for r in per_file:
        if r["file_rank"] in dups:
            continue
        report.lines += r["n"]
        if r["status"] == "ok":
            report.events += r["n"]
            exps.update(r["exps"] or [])
        else:
            report._bad(r["status"], r["n"])
    for _, status in last_line.values():
        if status == "invalid_json":
            report.bad_lines["invalid_json"] -= 1
            if not report.bad_lines["invalid_json"]:
                del report.bad_lines["invalid_json"]
            report._bad("truncated")
    if report.bad:
        keep = ~sf.col("file_rank").isin(*sorted(dups)) if dups else sf.lit(True)
        for r in (
            parsed.filter(keep & (sf.col("status") != "ok"))
            .orderBy("file_rank", "block", "rid")
            .select("file_rank", "status", sf.col("bad_text").alias("text"))
            .limit(_MAX_EXAMPLES)
            .collect()
        ):
            report._example(Path(files[r["file_rank"]]), "line", r["status"], r["text"])
        report._warn(f"skipped {report.bad} bad line(s): {dict(sorted(report.bad_lines.items()))}")
    ok = sf.col("status") == "ok"
    if dups:
        ok = ok & ~sf.col("file_rank").isin(*sorted(dups))
    events = parsed.filter(ok).select(
        "message",
        "timestamp",
        "user",
        "track",
        "time",
        "latency",
        "recommendation",
        "recommender",
        "fallback",
        "seq",
        "event_id",
        "experiments",
        "file_rank",
        "block",
        "rid",
    )
    used = [f for i, f in enumerate(files) if i not in dups]
    return SparkLoaded(events, report, used, sorted(exps))


def _empty_events(spark: SparkSession) -> DataFrame:
    return spark.createDataFrame(
        [],
        "message string, timestamp bigint, user bigint, track bigint, time double, "
        "latency double, recommendation bigint, recommender string, fallback string, "
        "seq bigint, event_id string, "
        "experiments map<string,string>, file_rank int, block bigint, rid bigint",
    )


def arm(experiment: str) -> Any:
    """Column expression: the event's arm in `experiment` (null when it does not carry it)."""
    from pyspark.sql import functions as sf

    return sf.col("experiments").getItem(experiment)


def to_pandas_events(events: DataFrame) -> Any:
    """Collect (small) Spark events in the embedded frame's layout, for tests and debugging."""
    import numpy as np
    import pandas as pd

    from botify.analysis.logs import EXP_PREFIX

    pdf = events.orderBy("user", *ORDER).toPandas()
    out = pd.DataFrame(
        {
            "message": pd.Categorical(pdf["message"], categories=list(MESSAGES)),
            "timestamp": pd.to_datetime(pdf["timestamp"].astype(np.int64), unit="ms", utc=True),
            "user": pdf["user"].astype(np.int64),
            "track": pdf["track"].astype(np.int64),
            "time": pdf["time"].astype(np.float64),
            "latency": pdf["latency"].astype(np.float64),
        }
    )
    names = sorted({k for m in pdf["experiments"] if m for k in dict(m)})
    for n in names:
        out[EXP_PREFIX + n] = [dict(m).get(n) if m else None for m in pdf["experiments"]]
    return out


__all__ = [
    "JSON_OPTIONS",
    "ORDER",
    "SparkLoaded",
    "arm",
    "find_event_files",
    "read_events",
    "to_pandas_events",
]
