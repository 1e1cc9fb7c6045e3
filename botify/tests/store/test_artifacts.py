"""Artifact format, round trip, determinism and the validator the service relies on."""

from __future__ import annotations

import json
import stat

import pytest
from botify.store.artifacts import (
    Artifact,
    ArtifactError,
    load_artifact,
    meta_path,
    parse_artifact,
    read_meta,
    validate_artifact,
    write_artifact,
)


def test_round_trip_each_kind(tmp_path):
    cases = [
        Artifact("i2i", lists={3: [1, 2], 0: [3]}),
        Artifact("user", lists={17: [4, 0, 2]}),
        Artifact("top", top=[5, 1, 0]),
    ]
    for i, art in enumerate(cases):
        p = write_artifact(tmp_path / f"a{i}.jsonl", art, {"model": "m", "params": {}})
        back = load_artifact(p, n_tracks=6)
        assert back == art
        assert read_meta(p)["kind"] == art.kind
        assert "created_at" in read_meta(p)


def test_artifact_and_meta_are_readable_by_others(tmp_path):
    """mkstemp creates 0600 files; a student's notebook or the compose service user must
    still read the artifact and its sidecar, so both end up 0644."""
    p = write_artifact(tmp_path / "a.jsonl", Artifact("top", top=[1, 0]), {"model": "m"})
    for f in (p, meta_path(p)):
        assert stat.S_IMODE(f.stat().st_mode) == 0o644, oct(f.stat().st_mode)


def test_course_format_lines(tmp_path):
    p = write_artifact(tmp_path / "a.jsonl", Artifact("i2i", lists={7: [1, 2], 2: [7]}))
    lines = [json.loads(x) for x in p.read_text().splitlines()]
    assert lines == [{"item_id": 2, "recommendations": [7]}, {"item_id": 7, "recommendations": [1, 2]}]
    p = write_artifact(tmp_path / "u.jsonl", Artifact("user", lists={1: [3]}))
    assert json.loads(p.read_text()) == {"user": 1, "tracks": [3]}
    p = write_artifact(tmp_path / "t.jsonl", Artifact("top", top=[3, 1]))
    assert json.loads(p.read_text()) == {"tracks": [3, 1]}
    assert not meta_path(p).exists()  # no meta given, none written


def test_equal_tables_give_equal_bytes(tmp_path):
    a = Artifact("i2i", lists={2: [1], 1: [2, 0]})
    b = Artifact("i2i", lists={1: [2, 0], 2: [1]})  # other insertion order
    pa = write_artifact(tmp_path / "a.jsonl", a)
    pb = write_artifact(tmp_path / "b.jsonl", b)
    assert pa.read_bytes() == pb.read_bytes()


def test_validate_summary(tmp_path):
    p = write_artifact(tmp_path / "a.jsonl", Artifact("i2i", lists={0: [1, 2], 1: [0]}))
    info = validate_artifact(p, n_tracks=3)
    assert (info.kind, info.rows, info.max_list_len, info.distinct_tracks) == ("i2i", 2, 2, 3)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("", "empty artifact"),
        ("\n  \n", "empty artifact"),
        ("{not json}\n", "line 1: not valid JSON"),
        ("[1, 2]\n", "expected a JSON object"),
        ('{"item_id": 0, "recommendations": [1, 10]}\n', "unknown track id 10"),
        ('{"item_id": 10, "recommendations": [1]}\n', "unknown track id 10 as item_id"),
        ('{"item_id": 0, "recommendations": [-1]}\n', "not a track id"),
        ('{"item_id": 0, "recommendations": [true]}\n', "not a track id"),
        ('{"item_id": 0, "recommendations": [1.5]}\n', "not a track id"),
        ('{"item_id": 0, "recommendations": "1,2"}\n', "must be a list"),
        ('{"item_id": 0, "recommendations": []}\n', "is empty"),
        ('{"item_id": "0", "recommendations": [1]}\n', "not a non-negative id"),
        ('{"item_id": 0, "recommendations": [1]}\n{"item_id": 0, "recommendations": [2]}\n',
         "line 2: duplicate item_id 0"),
        ('{"item_id": 0, "recommendations": [1]}\n{"user": 0, "tracks": [2]}\n',
         "line 2: a 'user' line in a 'i2i' artifact"),
        ('{"tracks": [1]}\n{"tracks": [2]}\n', "exactly one line"),
        ('{"tracks": []}\n', "is empty"),
        ('{"item": 0, "recs": [1]}\n', "unrecognised line"),
    ],
)
def test_validator_rejects_with_clear_message(tmp_path, content, message):
    p = tmp_path / "bad.jsonl"
    p.write_text(content)
    with pytest.raises(ArtifactError, match=message) as exc:
        validate_artifact(p, n_tracks=10)
    assert str(p) in str(exc.value)  # the message names the file


def test_validator_missing_file_and_bad_catalog_size(tmp_path):
    with pytest.raises(ArtifactError, match="no such artifact"):
        validate_artifact(tmp_path / "nope.jsonl", 10)
    p = write_artifact(tmp_path / "a.jsonl", Artifact("top", top=[1]))
    with pytest.raises(ArtifactError, match="catalog size"):
        validate_artifact(p, 0)


def test_extra_fields_are_allowed():
    art = parse_artifact([b'{"item_id": 1, "recommendations": [2], "scores": [0.5]}'], 3)
    assert art.lists == {1: [2]}


def test_refuses_to_write_empty_or_mismatched(tmp_path):
    with pytest.raises(ArtifactError, match="empty"):
        write_artifact(tmp_path / "e.jsonl", Artifact("i2i"))
    with pytest.raises(ArtifactError, match="empty"):
        write_artifact(tmp_path / "e.jsonl", Artifact("top"))
    with pytest.raises(ArtifactError, match="meta kind"):
        write_artifact(tmp_path / "m.jsonl", Artifact("top", top=[1]), {"kind": "i2i"})
    assert not (tmp_path / "e.jsonl").exists()
    assert not (tmp_path / "m.jsonl").exists()
    with pytest.raises(ArtifactError, match="unknown artifact kind"):
        Artifact("pairs")
