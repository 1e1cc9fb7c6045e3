"""Experiments config and the course-compatible arm assignment."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import mmh3
import pytest
from botify.recommenders import Context
from botify.service.experiments import (
    ExperimentConfigError,
    ExperimentsHolder,
    load_experiments,
    parse_experiments,
)
from botify.store.catalog import Catalog
from botify_svc_helpers import write_tracks


@pytest.fixture
def services(tmp_path: Path) -> Context:
    return Context(Catalog.from_file(write_tracks(tmp_path / "c.jsonl")))


def cfg(services: Context, experiments: list, **extra: object):  # type: ignore[no-untyped-def]
    return parse_experiments({"experiments": experiments, **extra}, services)


def test_pinned_assignment_matches_the_course_formula(services: Context) -> None:
    exps = cfg(services, [{"name": "STICKY_ARTIST", "arms": {"C": "random", "T1": "sticky_artist"}}])
    e = exps.experiments[0]
    # mmh3.hash("17STICKY_ARTIST") = -1964441354; Python modulo 2 -> 0 -> "C"
    assert mmh3.hash("17STICKY_ARTIST") == -1964441354
    assert e.arm(17) == "C"
    assert [e.arm_index(u) for u in range(10)] == [0, 0, 0, 1, 1, 0, 1, 1, 0, 1]
    for u in range(1000):
        assert e.arm_index(u) == mmh3.hash(str(u) + "STICKY_ARTIST") % 2


def test_assignment_is_stable_across_processes(services: Context) -> None:
    exps = cfg(services, [{"name": "EXP", "arms": {"C": "random", "T1": "random", "T2": "random"}}])
    here = [exps.experiments[0].arm(u) for u in range(200)]
    code = (
        "from botify.service.experiments import Experiment\n"
        "e = Experiment('EXP', ('C','T1','T2'), ('random',)*3)\n"
        "print(','.join(e.arm(u) for u in range(200)))\n"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert out.stdout.strip().split(",") == here


def test_arms_are_ordered_and_shares_applied(services: Context) -> None:
    exps = cfg(services, [{"name": "S", "arms": {"T1": "sticky_artist", "C": "random"}, "shares": {"C": 0.9, "T1": 0.1}}])
    e = exps.experiments[0]
    assert e.arms == ("C", "T1") and e.recommenders == ("random", "sticky_artist")
    arms = [e.arm(u) for u in range(20000)]
    share_t1 = arms.count("T1") / len(arms)
    assert 0.08 < share_t1 < 0.12
    for u in range(200):
        u01 = mmh3.hash(str(u) + "S", signed=False) % 10000 / 10000
        assert e.arm(u) == ("C" if u01 < 0.9 else "T1")


def test_every_active_experiment_is_assigned_and_first_serves(services: Context) -> None:
    exps = cfg(
        services,
        [
            {"name": "A", "arms": {"C": "random", "T1": "sticky_artist"}},
            {"name": "AA", "arms": {"C": "random", "T1": "random"}},
            {"name": "OFF", "arms": {"C": "random", "T1": "random"}, "enabled": False},
        ],
    )
    for u in range(50):
        arms, serving, exp, arm = exps.assign(u)
        assert set(arms) == {"A", "AA"} and exp == "A" and arm == arms["A"]
        assert serving == ("random" if arms["A"] == "C" else "sticky_artist")


def test_no_experiment_serves_the_default(services: Context) -> None:
    exps = parse_experiments({}, services, default="sticky_artist")
    assert exps.assign(5) == ({}, "sticky_artist", None, None)


@pytest.mark.parametrize(
    ("data", "msg"),
    [
        ({"experiments": [{"name": "X", "arms": {"C": "random"}}]}, "2 to 10"),
        ({"experiments": [{"name": "X", "arms": {"C": "random", "T2": "random"}}]}, "exactly C, T1"),
        ({"experiments": [{"name": "X", "arms": {"A": "random", "B": "random"}}]}, "must be C"),
        ({"experiments": [{"name": "X", "arms": {"C": "random", "T1": "nope"}}]}, "unknown recommender"),
        ({"experiments": [{"name": "X", "arms": {"C": "random", "T1": "random"}, "shares": {"C": 0.5, "T1": 0.6}}]}, "sum to 1"),
        ({"experiments": [{"name": "X", "arms": {"C": "random", "T1": "random"}}] * 2}, "duplicate"),
        ({"experiments": [{"name": "X", "arm": {}}]}, "unknown key"),
        ({"recommenders": {"r": {"class": "missing"}}, "experiments": [{"name": "X", "arms": {"C": "r", "T1": "random"}}]}, "unknown class"),
        ({"recommenders": {"r": {"class": "i2i", "fallback": ["zzz"]}}, "experiments": [{"name": "X", "arms": {"C": "r", "T1": "random"}}]}, "zzz"),
        ({"recommenders": {"r": {"class": "i2i", "colour": 1}}, "experiments": [{"name": "X", "arms": {"C": "r", "T1": "random"}}]}, "colour"),
        ({"plugins": ["no_such_module_xyz"]}, "plugin"),
    ],
)
def test_bad_configs_are_refused(services: Context, data: dict, msg: str) -> None:
    with pytest.raises(ExperimentConfigError, match=msg):
        parse_experiments(data, services)


def test_named_instances_and_plugins(services: Context, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "my_plugin_rec.py").write_text(
        "from botify.recommenders import Recommender, register\n"
        "@register('always_zero')\n"
        "class AlwaysZero(Recommender):\n"
        "    def recommend_next(self, user, prev_track, prev_track_time):\n"
        "        return 0\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    exps = parse_experiments(
        {
            "plugins": ["my_plugin_rec"],
            "recommenders": {"i2i_als": {"class": "i2i", "table": "i2i_als", "fallback": ["always_zero"]}},
            "experiments": [{"name": "M", "arms": {"C": "i2i", "T1": "i2i_als"}}],
        },
        services,
    )
    assert exps.instances["i2i_als"].table_names == {"i2i_als"}
    assert "always_zero" in exps.instances
    assert exps.table_names() >= {"i2i", "i2i_als", "top_pop"}


def test_repo_config_is_valid_with_a_real_catalog(tmp_path: Path) -> None:
    """The shipped config builds every recommender it names, with a generated world's catalog.

    Recommenders may read the catalog when they are built (a student's class often
    does): the check runs with the real thing, and with the repository's own
    recommenders folder, as `botify serve` does.
    """
    from sim.world import generate

    repo = Path(__file__).resolve().parents[3]
    generate(seed=3, n_tracks=300, n_users=20, out=tmp_path / "world")
    catalog = Catalog.from_file(tmp_path / "world" / "catalog.jsonl")
    exps = load_experiments(repo / "config" / "experiments.yml", Context(catalog), code_dir=repo / "recommenders")
    assert exps.experiments
    assert {"random"} <= set(exps.instances)
    with pytest.raises(ExperimentConfigError, match="Context"):
        load_experiments(repo / "config" / "experiments.yml", None)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="catalog"):
        Context(None)  # type: ignore[arg-type]


def test_a_recommender_may_read_the_catalog_when_built(services: Context) -> None:
    from botify.recommenders import REGISTRY, Recommender, register

    @register("test_by_year")
    class ByYear(Recommender):
        def configure(self, year: int = 2003) -> None:
            self.tracks = [t for t in range(self.ctx.catalog.size) if self.ctx.catalog[t].year == year]

        def recommend_next(self, user: int, prev_track: int, prev_track_time: float) -> int:
            return self.tracks[0]

    try:
        exps = cfg(services, [{"name": "Y", "arms": {"C": "random", "T1": "test_by_year"}}])
        assert exps.instances["test_by_year"].tracks == [3, 23, 43]
    finally:
        REGISTRY.pop("test_by_year", None)


def test_student_folder_is_loaded_and_a_new_file_asks_for_a_restart(services: Context, tmp_path: Path) -> None:
    from botify.recommenders import REGISTRY

    folder = tmp_path / "recommenders"
    folder.mkdir()
    (folder / "first_track.py").write_text(
        "from botify.recommenders import Recommender, register\n"
        "@register('test_first_track')\n"
        "class FirstTrack(Recommender):\n"
        "    def recommend_next(self, user, prev_track, prev_track_time):\n"
        "        return 0\n"
    )
    (folder / "test_first_track.py").write_text("raise RuntimeError('a test file is not recommender code')\n")
    p = tmp_path / "e.yml"
    p.write_text("experiments:\n  - name: A\n    arms: {C: random, T1: test_first_track}\n")
    try:
        holder = ExperimentsHolder(p, services, "random", interval=0.0, code_dir=folder)
        assert holder.current.experiments[0].recommenders == ("random", "test_first_track")
        (folder / "later.py").write_text("raise RuntimeError('never imported by a running service')\n")
        p.write_text("experiments:\n  - name: B\n    arms: {C: random, T1: test_later}\n")
        os.utime(p, ns=(time.time_ns() + 10**9, time.time_ns() + 10**9))
        assert [e.name for e in holder.get().experiments] == ["A"]
        assert holder.last_error and "new recommender code: restart to load it" in holder.last_error
        assert "later.py" in holder.last_error and "unknown" not in holder.last_error
        p.write_text("recommenders: {x: {class: test_later}}\nexperiments:\n  - name: B\n    arms: {C: random, T1: x}\n")
        os.utime(p, ns=(time.time_ns() + 2 * 10**9, time.time_ns() + 2 * 10**9))
        holder.get()
        assert "restart to load it" in (holder.last_error or "") and "unknown class" not in (holder.last_error or "")
        broken = tmp_path / "broken"
        broken.mkdir()
        (broken / "oops.py").write_text("import no_such_module_xyz\n")
        with pytest.raises(ExperimentConfigError, match="oops.py.*no_such_module_xyz"):
            parse_experiments({}, services, code_dir=broken)
    finally:
        REGISTRY.pop("test_first_track", None)


def test_holder_reloads_on_change_and_keeps_old_on_error(services: Context, tmp_path: Path) -> None:
    p = tmp_path / "e.yml"
    p.write_text("experiments:\n  - name: A\n    arms: {C: random, T1: random}\n")
    events: list[tuple[str, str]] = []
    holder = ExperimentsHolder(p, services, "random", interval=0.0, on_reload=lambda w, o: events.append((w, o)))
    assert [e.name for e in holder.get().experiments] == ["A"]
    p.write_text("experiments:\n  - name: B\n    arms: {C: random, T1: sticky_artist}\n")
    os.utime(p, ns=(time.time_ns() + 10**9, time.time_ns() + 10**9))
    assert [e.name for e in holder.get().experiments] == ["B"]
    p.write_text("experiments: [{name: C, arms: {C: nope, T1: random}}]\n")
    os.utime(p, ns=(time.time_ns() + 2 * 10**9, time.time_ns() + 2 * 10**9))
    assert [e.name for e in holder.get().experiments] == ["B"]
    assert holder.last_error and "nope" in holder.last_error
    assert events == [("experiments", "ok"), ("experiments", "error")]


def test_fallbacks_are_counted_per_arm_and_new_code_shows_in_health(make_app, settings, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """top_pop without its table falls back: the event and /metrics say so, with the serving arm."""
    import json

    from botify.service.eventlog import flush_all
    from botify_svc_helpers import read_lines, write_yaml

    folder = tmp_path / "recs"
    folder.mkdir()
    write_yaml(settings.experiments_file, "experiments:\n  - name: TOP\n    arms: {C: random, T1: top_pop}\n")
    c = make_app(recommenders_dir=folder).test_client()
    arms = {u: c.get(f"/experiments/{u}").json["experiments"]["TOP"] for u in range(40)}
    for u in arms:
        assert c.post(f"/next/{u}", json={"track": 1, "time": 0.5}).status_code == 200
    flush_all()
    events = {e["user"]: e for e in read_lines(settings.log_dir) if e["message"] == "next"}
    treated = [u for u, a in arms.items() if a == "T1"]
    assert treated and all((events[u]["recommender"], events[u]["fallback"]) == ("random", "no_table") for u in treated)
    assert all(events[u]["fallback"] is None for u, a in arms.items() if a == "C")
    text = c.get("/metrics").get_data(as_text=True)
    line = next(ln for ln in text.splitlines() if ln.startswith("botify_fallbacks_total{"))
    for part in ('recommender="top_pop"', 'reason="no_table"', 'experiment="TOP"', 'arm="T1"'):
        assert part in line
    assert float(line.rsplit(" ", 1)[1]) == len(treated)
    body = c.get("/health").json
    assert body["recommenders_pending"] == [] and body["recommenders_message"] is None
    (folder / "mine.py").write_text("raise RuntimeError('not imported by a running service')\n")
    body = c.get("/health").json
    assert body["recommenders_pending"] == [str(folder / "mine.py")]
    assert body["recommenders_message"].startswith("new recommender code: restart to load it")
    assert json.dumps(body)  # plain JSON


def test_serve_preflight_names_a_student_file_that_fails_to_import(settings, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """`botify serve` checks the config with the student folder before starting workers: one clear line."""
    from botify.service.server import StartupError, check_experiments

    folder = tmp_path / "recs"
    folder.mkdir()
    (folder / "typo.py").write_text("from botify.recommenders import Recommender\nclass X(Recommender)\n")
    catalog = Catalog.from_file(settings.catalog)
    with pytest.raises(StartupError, match=r"experiments config .* invalid: .*typo\.py: SyntaxError"):
        check_experiments(settings.with_overrides(recommenders_dir=folder), catalog)
    check_experiments(settings.with_overrides(recommenders_dir=tmp_path / "missing"), catalog)  # no folder: fine


def test_a_table_first_opened_inside_recommend_next_becomes_live(make_app, settings, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from botify.recommenders import REGISTRY, Recommender, register
    from botify.service.eventlog import flush_all
    from botify_svc_helpers import read_lines, write_yaml

    from botify import store

    @register("test_late_table")
    class LateTable(Recommender):
        def recommend_next(self, user: int, prev_track: int, prev_track_time: float) -> int:
            row = self.ctx.table("late").get(b"top")  # not opened in configure
            return int(row[0]) if row is not None else self.fallback.recommend_next(user, prev_track, prev_track_time)

    try:
        write_yaml(settings.experiments_file, "experiments:\n  - name: L\n    arms: {C: test_late_table, T1: test_late_table}\n")
        c = make_app().test_client()  # reload_interval 0: the table versions are read before every request
        rd = store.connect(settings.redis_url)
        top = tmp_path / "top.jsonl"
        top.write_text('{"tracks": [42]}\n')
        store.switch_table(rd, "late", store.load_table(rd, "late", top, "t"), "t")
        c.post("/next/1", json={"track": 1, "time": 0.5})
        assert c.post("/next/1", json={"track": 2, "time": 0.5}).json["track"] == 42
        flush_all()
        last = read_lines(settings.log_dir)[-1]
        assert (last["recommender"], last["fallback"]) == ("test_late_table", None)
    finally:
        REGISTRY.pop("test_late_table", None)
