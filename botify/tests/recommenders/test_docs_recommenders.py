"""docs/recommenders.md stays true: its example class and YAML run as written."""

from __future__ import annotations

import re
from pathlib import Path

import yaml
from botify.recommenders import REGISTRY
from botify.service.eventlog import flush_all
from botify_svc_helpers import read_lines

from botify import store

DOC = Path(__file__).resolve().parents[3] / "docs" / "recommenders.md"


def _blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", DOC.read_text(), flags=re.S)


def test_homework_example_runs_end_to_end(make_app, settings, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    code = _blocks("python")[0]
    assert len(code.strip().splitlines()) <= 30
    REGISTRY.pop("sticky_then_top", None)
    exec(compile(code, str(DOC), "exec"), {"__name__": "docs_example"})
    assert "sticky_then_top" in REGISTRY
    config = yaml.safe_load(_blocks("yaml")[0])
    settings.experiments_file.write_text(yaml.safe_dump(config))
    c = make_app().test_client()
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
    assert {e["recommender"] for e in events} == {"sticky_then_top"}
    sticky = events[0::2]
    assert all(e["recommendation"] % 6 == 1 for e in sticky)
    assert all(e["recommendation"] == 11 for e in events[1::2])
    REGISTRY.pop("sticky_then_top", None)


def test_two_instance_yaml_parses(services_yaml_index: int = 1) -> None:
    from botify.recommenders import Services
    from botify.service.experiments import parse_experiments
    from botify.store.catalog import Catalog

    cat = Catalog.from_bytes(b'{"track": 0, "artist": "a", "title": "t"}\n{"track": 1, "artist": "a", "title": "u"}\n')
    exps = parse_experiments(yaml.safe_load(_blocks("yaml")[services_yaml_index]), Services(cat, None))  # type: ignore[arg-type]
    assert exps.instances["i2i_cooc"].anchors == 1
