"""docs/recommenders.md stays true: its example is the repository's recommenders/ file, and runs as written."""

from __future__ import annotations

import re
from pathlib import Path

import yaml
from botify.recommenders import REGISTRY, Context
from botify.service.eventlog import flush_all
from botify.service.experiments import parse_experiments
from botify.store.catalog import Catalog
from botify_svc_helpers import read_lines

from botify import store

REPO = Path(__file__).resolve().parents[3]
DOC = REPO / "docs" / "recommenders.md"
FOLDER = REPO / "recommenders"


def _blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", DOC.read_text(), flags=re.S)


def test_the_example_is_the_file_in_the_recommenders_folder() -> None:
    code = _blocks("python")[0]
    assert code == (FOLDER / "sticky_then_top.py").read_text()
    assert len(code.strip().splitlines()) <= 30
    assert (FOLDER / "test_sticky_then_top.py").exists()


def test_every_context_member_in_the_table_exists() -> None:
    """The concept table names only what the API has."""
    from botify.recommenders.base import CatalogView, RequestRng, Track

    text = DOC.read_text()
    for name in re.findall(r"`self\.ctx\.(\w+)", text):
        assert name in Context.__slots__ or callable(getattr(Context, name, None)) or isinstance(getattr(Context, name, None), property), name
    for name in ("artist", "title", "genres", "year", "mood", "extra"):
        assert name in Track.__dataclass_fields__
    for name in ("artist_of", "tracks_of_artist"):
        assert hasattr(CatalogView, name)
    for name in ("randrange", "random", "choice", "weighted_sample", "weighted_order"):
        assert hasattr(RequestRng, name)


def test_homework_example_runs_end_to_end(make_app, settings, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    config = yaml.safe_load(_blocks("yaml")[0])
    settings.experiments_file.write_text(yaml.safe_dump(config))
    c = make_app(recommenders_dir=FOLDER).test_client()  # loads recommenders/ as `botify serve` does
    assert "sticky_then_top" in REGISTRY
    assert str(FOLDER / "sticky_then_top.py") not in c.get("/health").json["recommenders_pending"]
    rd = store.connect(settings.redis_url)
    top = tmp_path / "top.jsonl"
    top.write_text('{"tracks": [11, 12, 13]}\n')
    store.switch_table(rd, "top_pop", store.load_table(rd, "top_pop", top, "t"), "t")
    users = [u for u in range(200) if c.get(f"/experiments/{u}").json["experiments"]["STICKY_THEN_TOP"] == "T1"][:10]
    for u in users:
        assert c.post(f"/next/{u}", json={"track": 1, "time": 0.9}).status_code == 200  # sticks to the artist
        assert c.post(f"/next/{u}", json={"track": 2, "time": 0.1}).status_code == 200  # goes to the top list
    flush_all()
    events = read_lines(settings.log_dir)
    assert {(e["recommender"], e["fallback"]) for e in events} == {("sticky_then_top", None)}
    assert all(e["recommendation"] % 6 == 1 and e["recommendation"] != 1 for e in events[0::2])
    assert all(e["recommendation"] == 11 for e in events[1::2])


def test_two_instance_yaml_parses() -> None:
    cat = Catalog.from_bytes(b'{"track": 0, "artist": "a", "title": "t"}\n{"track": 1, "artist": "a", "title": "u"}\n')
    exps = parse_experiments(yaml.safe_load(_blocks("yaml")[1]), Context(cat))
    assert exps.instances["i2i_cooc"].anchors == 1
    assert exps.table_names() >= {"i2i_als", "i2i_cooc"}
