"""Recommendation artifacts: the only thing offline training hands to the live service.

Format (COMPAT, docs/interfaces.md section 4), JSON lines:

- ``kind="i2i"``: ``{"item_id": 7, "recommendations": [ids]}`` one line per track;
- ``kind="user"``: ``{"user": 1, "tracks": [ids]}`` one line per user;
- ``kind="top"``: a single line ``{"tracks": [ids]}``, best first;

plus a sidecar ``FILE.meta.json`` with ``model``, ``kind``, ``params``, ``data_window``,
``created_at`` and ``metrics``.

The validator is strict on purpose: the service parses every table it loads with
it (botify.store.parse_table), so anything it lets through is served to users.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

#: user ids are signed 64-bit integers everywhere: in requests, events and artifacts
MAX_USER_ID = 2**63 - 1


KINDS = ("i2i", "user", "top")
_KEYS = {"i2i": ("item_id", "recommendations"), "user": ("user", "tracks"), "top": (None, "tracks")}


class ArtifactError(ValueError):
    """The artifact cannot be served; the message says which line and why."""


@dataclass
class Artifact:
    """An in-memory recommendation table.

    ``lists`` maps the key (track id for i2i, user id for user) to its ranked list;
    ``top`` is the single ranked list of a ``top`` artifact (``lists`` is then empty).
    """

    kind: str
    lists: dict[int, list[int]] = field(default_factory=dict)
    top: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ArtifactError(f"unknown artifact kind {self.kind!r} (expected one of {KINDS})")

    def __len__(self) -> int:
        return 1 if self.kind == "top" else len(self.lists)

    def lines(self) -> list[bytes]:
        """Serialised lines in a canonical order (sorted keys) so equal tables give equal bytes."""
        if self.kind == "top":
            return [orjson.dumps({"tracks": [int(t) for t in self.top]})]
        key, rec = _KEYS[self.kind]
        return [
            orjson.dumps({key: int(k), rec: [int(t) for t in self.lists[k]]})
            for k in sorted(self.lists)
        ]


@dataclass(frozen=True)
class ArtifactInfo:
    """What the validator found: enough for a log line or a load-artifact summary."""

    path: str
    kind: str
    rows: int
    max_list_len: int
    distinct_tracks: int


def meta_path(path: str | os.PathLike[str]) -> Path:
    """The sidecar metadata file of an artifact: ``FILE.meta.json``."""
    return Path(f"{os.fspath(path)}.meta.json")


#: artifacts are public data (other users, a container's service user, a notebook read them);
#: mkstemp's private 0600 would hide them, so the renamed file gets the usual 0644
ARTIFACT_MODE = 0o644


def _atomic_write(path: Path, data: bytes) -> None:
    # Write-then-rename: a reader (or the loader) never sees a half-written artifact.
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        os.fchmod(fd, ARTIFACT_MODE)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_artifact(
    path: str | os.PathLike[str],
    artifact: Artifact,
    meta: Mapping[str, Any] | None = None,
) -> Path:
    """Write the artifact (and its meta sidecar if given) atomically; returns the path."""
    if len(artifact) == 0 or (artifact.kind == "top" and not artifact.top):
        raise ArtifactError("refusing to write an empty artifact")
    p = Path(path)
    m: dict[str, Any] | None = None
    if meta is not None:
        m = dict(meta)
        m.setdefault("kind", artifact.kind)
        if m["kind"] != artifact.kind:
            raise ArtifactError(f"meta kind {m['kind']!r} != artifact kind {artifact.kind!r}")
        m.setdefault("created_at", dt.datetime.now(dt.UTC).isoformat(timespec="seconds"))
    _atomic_write(p, b"\n".join(artifact.lines()) + b"\n")
    if m is not None:
        _atomic_write(meta_path(p), json.dumps(m, indent=2, sort_keys=True).encode() + b"\n")
    return p


def read_meta(path: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The artifact's metadata, or None when it has no sidecar."""
    mp = meta_path(path)
    if not mp.exists():
        return None
    return json.loads(mp.read_text())


def _is_id(x: object) -> bool:
    # bool is an int subclass in Python; `true` must not pass as track 1.
    return isinstance(x, int) and not isinstance(x, bool) and x >= 0


def _check_list(
    lineno: int, name: str, value: object, n_tracks: int | None
) -> list[int]:
    if not isinstance(value, list):
        raise ArtifactError(f"line {lineno}: {name!r} must be a list of track ids")
    if not value:
        raise ArtifactError(f"line {lineno}: {name!r} is empty")
    for t in value:
        if not _is_id(t):
            raise ArtifactError(f"line {lineno}: {name!r} holds {t!r}, not a track id")
        if n_tracks is not None and t >= n_tracks:
            raise ArtifactError(
                f"line {lineno}: unknown track id {t} (catalog has {n_tracks} tracks: 0..{n_tracks - 1})"
            )
    return value


def parse_artifact(lines: Sequence[bytes | str], n_tracks: int | None = None) -> Artifact:
    """Parse and validate artifact lines; raises ArtifactError on the first problem."""
    kind: str | None = None
    art: Artifact | None = None
    for lineno, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        try:
            obj = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise ArtifactError(f"line {lineno}: not valid JSON ({exc})") from None
        if not isinstance(obj, dict):
            raise ArtifactError(f"line {lineno}: expected a JSON object")
        if "item_id" in obj and "recommendations" in obj:
            k = "i2i"
        elif "user" in obj and "tracks" in obj:
            k = "user"
        elif "tracks" in obj:
            k = "top"
        else:
            raise ArtifactError(
                f"line {lineno}: unrecognised line, expected "
                '{"item_id", "recommendations"}, {"user", "tracks"} or {"tracks"}'
            )
        if kind is None:
            kind, art = k, Artifact(k)
        elif k != kind:
            raise ArtifactError(
                f"line {lineno}: a {k!r} line in a {kind!r} artifact (an artifact never mixes kinds)"
            )
        assert art is not None
        key_name, rec_name = _KEYS[k]
        if k == "top" and obj[rec_name] == []:
            raise ArtifactError(f"line {lineno}: 'tracks' is empty (an empty top list)")
        recs = _check_list(lineno, rec_name, obj[rec_name], n_tracks)
        if k == "top":
            if art.top:
                raise ArtifactError(f"line {lineno}: a top artifact has exactly one line")
            art.top = list(recs)
            continue
        key = obj[key_name]
        if k == "user" and not (_is_id(key) and key <= MAX_USER_ID):
            raise ArtifactError(
                f"line {lineno}: 'user' is {key!r}, not a non-negative id (a user id in 0..2^63-1)"
            )
        if not _is_id(key):
            raise ArtifactError(f"line {lineno}: {key_name!r} is {key!r}, not a non-negative id")
        if k == "i2i" and n_tracks is not None and key >= n_tracks:
            raise ArtifactError(
                f"line {lineno}: unknown track id {key} as item_id (catalog has {n_tracks} tracks)"
            )
        if key in art.lists:
            raise ArtifactError(f"line {lineno}: duplicate {key_name} {key}")
        art.lists[key] = list(recs)
    if art is None:
        raise ArtifactError("empty artifact: no lines")
    return art


def load_artifact(path: str | os.PathLike[str], n_tracks: int | None = None) -> Artifact:
    """Read and validate an artifact file (track ids checked against ``n_tracks`` if given)."""
    p = Path(path)
    if not p.is_file():
        raise ArtifactError(f"{p}: no such artifact file")
    with p.open("rb") as fh:
        try:
            return parse_artifact(fh.readlines(), n_tracks)
        except ArtifactError as exc:
            raise ArtifactError(f"{p}: {exc}") from None


def validate_artifact(path: str | os.PathLike[str], n_tracks: int) -> ArtifactInfo:
    """Check an artifact before serving it: format, known track ids, non-empty.

    Raises ArtifactError with a one-line reason; returns a summary otherwise.
    """
    if not _is_id(n_tracks) or n_tracks == 0:
        raise ArtifactError(f"catalog size must be a positive integer, got {n_tracks!r}")
    art = load_artifact(path, n_tracks)
    all_lists = [art.top] if art.kind == "top" else list(art.lists.values())
    distinct = set()
    for lst in all_lists:
        distinct.update(lst)
    return ArtifactInfo(
        path=os.fspath(path),
        kind=art.kind,
        rows=len(art),
        max_list_len=max(len(x) for x in all_lists),
        distinct_tracks=len(distinct),
    )
