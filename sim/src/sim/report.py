"""Per-episode records, their files, and the end-of-run markdown table.

The table keeps the course's shape (per day: mean and standard error of the
reward, i.e. session listen time, and of the steps per session) so existing
habits and notebooks still read it; botify adds the session count and, when
returning users are simulated, the daily active users.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import orjson

RECORD_FIELDS = ("day", "episode", "user", "steps", "reward")


class OutputError(ValueError):
    """The --out file cannot be written or has an unknown format (one line)."""


@dataclass(frozen=True, slots=True)
class Episode:
    """One simulated session."""

    day: int
    episode: int
    user: int
    steps: int
    reward: float
    start: str | None = None  # simulated start time (ISO 8601, UTC) when the clock is on


#: day 1 of a simulated clock (a Monday); day d starts d - 1 days later
SIM_EPOCH = "2026-01-05T00:00:00+00:00"


def sim_time(day: int, seconds: float) -> str:
    """ISO-8601 UTC time of `seconds` after midnight of simulated day `day`."""
    import datetime as dt

    t = dt.datetime.fromisoformat(SIM_EPOCH) + dt.timedelta(days=day - 1, seconds=float(seconds))
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def mean_sem(values: Sequence[float]) -> tuple[float, float]:
    """Mean and standard error of the mean (ddof=1, like scipy.stats.sem); nan when undefined."""
    n = len(values)
    if n == 0:
        return math.nan, math.nan
    m = math.fsum(values) / n
    if n == 1:
        return m, math.nan
    var = math.fsum((v - m) ** 2 for v in values) / (n - 1)
    return m, math.sqrt(var / n)


#: printed under the table: the simulator's reward and the A/B's `time` differ by design
REWARD_VS_TIME = (
    "reward = listen time of the recommended tracks. The service's event log also carries "
    "each session's first track (the user's own pick, logged with time 1.0 in the first "
    "/next), so the A/B analysis sees per session time = reward + 1.0 and "
    "tracks = steps + 1."
)


def _fmt(x: float, digits: int = 4) -> str:
    return "nan" if math.isnan(x) else f"{x:.{digits}f}"


def summary_table(
    episodes: Iterable[Episode],
    dau: dict[int, int] | None = None,
    title: str = "Experiment results summary",
    note: str | None = None,
    footnote: str | None = REWARD_VS_TIME,
) -> str:
    """Markdown table, one row per day plus an ``all`` row when there are several days.

    The footnote says how the reward relates to the A/B's `time`, because users
    compare the two numbers and would otherwise read the 1.0 gap as a bug.
    """
    by_day: dict[int, list[Episode]] = {}
    for e in episodes:
        by_day.setdefault(e.day, []).append(e)
    header = ["day", "sessions", "reward mean", "reward sem", "steps mean", "steps sem"]
    if dau is not None:
        header.append("DAU")
    rows = []

    def row(label: str, eps: list[Episode], dau_value: str | None) -> list[str]:
        rm, rs = mean_sem([e.reward for e in eps])
        sm, ss = mean_sem([float(e.steps) for e in eps])
        cells = [label, str(len(eps)), _fmt(rm), _fmt(rs), _fmt(sm), _fmt(ss)]
        if dau is not None:
            cells.append(dau_value or "")
        return cells

    for day in sorted(by_day):
        rows.append(row(str(day), by_day[day], str(dau.get(day, "")) if dau is not None else None))
    if len(by_day) > 1:
        rows.append(row("all", [e for d in sorted(by_day) for e in by_day[d]], None))
    out = io.StringIO()
    out.write(f"## {title}\n\n")
    if note:
        out.write(f"{note}\n\n")
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(header)]
    out.write("| " + " | ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)) + " |\n")
    out.write("|" + "|".join("-" * (w + 1) + ":" for w in widths) + "|\n")
    for r in rows:
        out.write("| " + " | ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)) + " |\n")
    if footnote:
        out.write(f"\n{footnote}\n")
    return out.getvalue()


class RecordWriter:
    """Writes episodes as JSON lines (``.jsonl``/``.json``) or CSV (``.csv``), by suffix."""

    SUFFIXES = (".jsonl", ".json", ".ndjson", ".csv")

    def __init__(self, path: str | Path, clock: bool = False) -> None:
        self.path = Path(path)
        self.clock = clock  # records carry the simulated start time (`start`)
        suffix = self.path.suffix.lower()
        if suffix not in self.SUFFIXES:
            raise OutputError(
                f"--out {self.path}: unknown format {suffix or '(no suffix)'!r}; "
                "use .jsonl for JSON lines or .csv"
            )
        self.csv = suffix == ".csv"
        self._fh: TextIO | None = None
        self._writer: Any = None

    def open(self) -> RecordWriter:
        try:
            self._fh = self.path.open("w", encoding="utf-8", newline="")
        except OSError as e:
            raise OutputError(f"--out {self.path}: cannot write: {e.strerror or e}") from None
        if self.csv:
            self._writer = csv.writer(self._fh, lineterminator="\n")
            self._writer.writerow(RECORD_FIELDS + (("start",) if self.clock else ()))
        return self

    def write(self, episodes: Iterable[Episode]) -> None:
        """Append episodes and flush, so an interrupted run keeps every finished day."""
        assert self._fh is not None, "RecordWriter.open() first"
        if self.csv:
            self._writer.writerows((e.day, e.episode, e.user, e.steps, repr(e.reward))
                                   + ((e.start or "",) if self.clock else ()) for e in episodes)
        else:
            for e in episodes:
                rec = {"day": e.day, "episode": e.episode, "user": e.user, "steps": e.steps,
                       "reward": e.reward}
                if self.clock:
                    rec["start"] = e.start
                self._fh.write(orjson.dumps(rec).decode() + "\n")
        self._fh.flush()

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None
