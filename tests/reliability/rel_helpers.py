"""Helpers of the reliability tests: worlds, strict log scans, per-user event accounting.

The accounting is deliberately independent of botify.offline (the code under
test elsewhere): raw bytes, json.loads per line, and the simulator's own
per-session records as the ground truth.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

TESTS = Path(__file__).resolve().parents[1]
if str(TESTS) not in sys.path:
    sys.path.insert(0, str(TESTS))

from helpers_service import REPO, service_env  # noqa: E402


def generate_world(out: Path, *, seed: int, tracks: int, users: int) -> Path:
    """A simulator world (public catalog + hidden user model) through the real CLI."""
    subprocess.run(
        [sys.executable, "-m", "sim.world", "generate", "--seed", str(seed), "--tracks", str(tracks),
         "--users", str(users), "--out", str(out)],
        cwd=REPO, env=service_env(), check=True, capture_output=True, timeout=180,
    )
    return out


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """Strict JSON-lines reader: a bad line raises (the tests want to know)."""
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


@dataclass
class LogScan:
    """Every event file of a log dir, read strictly."""

    events_by_dir: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    files_by_dir: dict[str, list[Path]] = field(default_factory=dict)
    sizes: dict[Path, int] = field(default_factory=dict)
    invalid_lines: list[tuple[Path, int, str]] = field(default_factory=list)
    unterminated: list[Path] = field(default_factory=list)

    @property
    def events(self) -> list[dict[str, Any]]:
        return [e for evs in self.events_by_dir.values() for e in evs]


def scan_event_logs(log_dir: Path) -> LogScan:
    """Read LOGDIR/*/events-*.jsonl in rotation order; record invalid and unterminated lines."""
    scan = LogScan()
    for f in sorted(log_dir.glob("*/events-*.jsonl")):
        data = f.read_bytes()
        scan.sizes[f] = len(data)
        scan.files_by_dir.setdefault(f.parent.name, []).append(f)
        evs = scan.events_by_dir.setdefault(f.parent.name, [])
        if data and not data.endswith(b"\n"):
            scan.unterminated.append(f)
        for n, line in enumerate(data.split(b"\n"), start=1):
            if not line:
                continue
            try:
                obj = json.loads(line)
            except ValueError:
                scan.invalid_lines.append((f, n, line[:120].decode("utf-8", "replace")))
                continue
            if not isinstance(obj, dict):
                scan.invalid_lines.append((f, n, line[:120].decode("utf-8", "replace")))
                continue
            evs.append(obj)
    return scan


def dir_pid(dirname: str) -> int:
    """The worker pid in a log dir name `<hostname>-<pid>-<start ms>`."""
    return int(dirname.rsplit("-", 2)[-2])


def _fits(event: dict[str, Any], expected_track: int | None) -> bool:
    if expected_track is None:  # a session starts: the user's own first track, time 1.0
        return event["message"] == "next" and event["time"] == 1.0
    return event["track"] == expected_track


def order_user_events(events: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """One user's events in request order.

    A user's requests are strictly sequential (the simulator waits for each answer),
    so timestamps never go backwards; only equal milliseconds are ambiguous, and
    those are ordered by the session chain (each track is the previous answer).
    """
    evs = sorted(events, key=lambda e: e["timestamp"])
    out: list[dict[str, Any]] = []
    expected: int | None = None
    i = 0
    while i < len(evs):
        j = i
        while j < len(evs) and evs[j]["timestamp"] == evs[i]["timestamp"]:
            j += 1
        group = evs[i:j]
        while group:
            pick = next((e for e in group if _fits(e, expected)), group[0])
            group.remove(pick)
            out.append(pick)
            expected = None if pick["message"] == "last" else pick["recommendation"]
        i = j
    return out


def split_sessions(ordered: Sequence[dict[str, Any]]) -> tuple[list[list[dict[str, Any]]], list[dict[str, Any]]]:
    """(sessions ending with `last`, trailing events of an unfinished session)."""
    sessions: list[list[dict[str, Any]]] = []
    cur: list[dict[str, Any]] = []
    for e in ordered:
        cur.append(e)
        if e["message"] == "last":
            sessions.append(cur)
            cur = []
    return sessions, cur


def session_problem(session: Sequence[dict[str, Any]]) -> str | None:
    """Why a logged session is not one the simulator could have played, or None."""
    nexts, last = session[:-1], session[-1]
    if not nexts:
        return "a `last` without any `next`"
    if any(e["message"] != "next" for e in nexts):
        return "a `last` inside the session"
    if nexts[0]["time"] != 1.0:
        return f"first /next has time {nexts[0]['time']} (the simulator sends 1.0)"
    for a, b in zip(nexts, nexts[1:], strict=False):
        if b["track"] != a["recommendation"]:
            return f"/next track {b['track']} is not the previous answer {a['recommendation']}"
    if last["track"] != nexts[-1]["recommendation"]:
        return f"/last track {last['track']} is not the last answer {nexts[-1]['recommendation']}"
    return None


@dataclass
class Accounting:
    """Simulator records vs event logs, per user and per session."""

    sim_sessions: int
    sim_steps: int
    logged_next: int
    logged_last: int
    users_mismatched: list[tuple[int, list[int], list[int]]]  # user, sim steps, logged steps
    broken_sessions: list[tuple[int, str]]
    unfinished: list[int]  # users whose log ends mid-session

    @property
    def exact(self) -> bool:
        return (
            self.sim_steps == self.logged_next
            and self.sim_sessions == self.logged_last
            and not self.users_mismatched
            and not self.broken_sessions
            and not self.unfinished
        )

    def describe(self) -> str:
        return (
            f"sim: {self.sim_sessions} sessions, {self.sim_steps} steps; logs: {self.logged_last} last, "
            f"{self.logged_next} next; users mismatched: {self.users_mismatched[:5]} "
            f"({len(self.users_mismatched)}); broken sessions: {self.broken_sessions[:5]} "
            f"({len(self.broken_sessions)}); unfinished: {self.unfinished[:10]}"
        )


def account(records_in_run_order: Sequence[Sequence[dict[str, Any]]], events: Sequence[dict[str, Any]]) -> Accounting:
    """Match the simulator's per-episode records (runs in the order they ran) to the events.

    Per user, the simulator plays sessions one at a time in episode order (and runs
    one after another), so the logged sessions of a user, in time order, must have
    exactly the simulator's step counts in that order: a lost, duplicated or
    misattributed event changes a count or breaks a track chain.
    """
    expected: dict[int, list[int]] = defaultdict(list)
    n_sessions = n_steps = 0
    for records in records_in_run_order:
        for r in sorted(records, key=lambda r: (r["day"], r["episode"])):
            expected[int(r["user"])].append(int(r["steps"]))
            n_sessions += 1
            n_steps += int(r["steps"])
    by_user: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for e in events:
        by_user[int(e["user"])].append(e)
    mismatched: list[tuple[int, list[int], list[int]]] = []
    broken: list[tuple[int, str]] = []
    unfinished: list[int] = []
    for user in sorted(set(expected) | set(by_user)):
        sessions, tail = split_sessions(order_user_events(by_user.get(user, [])))
        if tail:
            unfinished.append(user)
        logged = [len(s) - 1 for s in sessions]
        if logged != expected.get(user, []):
            mismatched.append((user, expected.get(user, []), logged))
        for s in sessions:
            problem = session_problem(s)
            if problem:
                broken.append((user, problem))
    return Accounting(
        sim_sessions=n_sessions,
        sim_steps=n_steps,
        logged_next=sum(1 for e in events if e["message"] == "next"),
        logged_last=sum(1 for e in events if e["message"] == "last"),
        users_mismatched=mismatched,
        broken_sessions=broken,
        unfinished=unfinished,
    )
