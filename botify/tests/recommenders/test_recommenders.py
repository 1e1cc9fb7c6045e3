"""Unit tests of each built-in recommender, run as the service runs them (botify.recommenders.testing, no Redis)."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path

import pytest
from botify.recommenders import REGISTRY, Context, Fallback, Recommender, RequestRng, register
from botify.recommenders.testing import Answer, Harness
from botify.store.catalog import Catalog
from botify_svc_helpers import write_tracks


@pytest.fixture
def catalog(tmp_path: Path) -> Catalog:
    return Catalog.from_file(write_tracks(tmp_path / "c.jsonl", n=60, artists=6))


def make(name: str, catalog: Catalog, tables: dict | None = None, **params: object) -> Harness:
    return Harness(name, catalog, tables, seed=1, **params)


def test_registry_has_the_course_recommenders() -> None:
    assert {"random", "top_pop", "sticky_artist", "indexed", "contextual", "i2i"} <= set(REGISTRY)


def test_random_avoids_prev_and_played_and_is_deterministic(catalog: Catalog) -> None:
    rec = make("random", catalog)
    played = set(range(0, 58))
    for user in range(50):
        assert rec(user, 58, played=played) == 59
    a = [rec(7, p) for p in range(20)]
    b = [rec(7, p) for p in range(20)]
    assert a == b and len(set(a)) > 5
    assert all(x != p for x, p in zip(a, range(20), strict=True))


def test_random_when_everything_was_played_still_avoids_prev(catalog: Catalog) -> None:
    assert make("random", catalog)(1, 5, played=range(60)) != 5


def test_top_pop_first_unplayed_and_fallbacks(catalog: Catalog) -> None:
    rec = make("top_pop", catalog, {"top_pop": {"top": [3, 4, 5]}})
    assert rec.answer(1, 3) == Answer(4, "top_pop", None)
    assert rec(1, 3, played={4}) == 5
    a = rec.answer(1, 3, played={4, 5})
    assert (a.recommender, a.fallback) == ("random", "exhausted") and a.track not in {3, 4, 5}
    a = make("top_pop", catalog).answer(1, 3)
    assert (a.recommender, a.fallback) == ("random", "no_table")


def test_sticky_artist_stays_with_the_artist(catalog: Catalog) -> None:
    rec = make("sticky_artist", catalog)
    same_artist = set(range(2, 60, 6))
    for user in range(30):
        out = rec(user, 2)
        assert out in same_artist and out != 2
    assert rec(1, 2, played=same_artist - {56}) == 56
    a = rec.answer(1, 2, played=same_artist)
    assert (a.recommender, a.fallback) == ("random", "artist_exhausted")


def test_indexed_per_user_list_then_top_pop(catalog: Catalog) -> None:
    rec = make("indexed", catalog, {"indexed": {7: [10, 11, 12]}, "top_pop": {"top": [30, 31]}})
    assert rec(7, 10) == 11
    assert rec(7, 1, played={10}) == 11
    assert rec.answer(8, 1) == Answer(30, "top_pop", "cold_user")
    assert rec.recommender.fallbacks == ("top_pop", "random")


def test_contextual_per_track_list(catalog: Catalog) -> None:
    rec = make("contextual", catalog, {"contextual": {5: [20, 21, 22, 5]}})
    outs = {rec(u, 5) for u in range(40)}
    assert outs <= {20, 21, 22} and len(outs) > 1
    assert rec(1, 5, played={20, 21}) == 22
    assert rec.answer(1, 6).fallback == "cold_track"


def test_i2i_anchors_weighted_by_listen_time(catalog: Catalog) -> None:
    table = {1: [30, 31], 2: [40, 41], 3: [50]}
    rec = make("i2i", catalog, {"i2i": table}, anchors=1)
    # anchor 2 has all the listen time: its first unplayed neighbour wins every time
    recent = [(3, 0.0), (2, 1.0), (1, 0.0)]
    assert {rec(u, 3, recent=recent) for u in range(30)} == {40}
    # the first neighbour was played: the next one
    assert rec(1, 3, recent=recent, played={40}) == 41


def test_i2i_all_zero_weights_is_safe_and_uniform(catalog: Catalog) -> None:
    rec = make("i2i", catalog, {"i2i": {1: [30], 2: [40], 3: [50]}}, anchors=1)
    recent = [(1, 0.0), (2, 0.0), (3, 0.0)]
    assert {rec(u, 1, recent=recent) for u in range(60)} == {30, 40, 50}


def test_i2i_walks_anchors_and_falls_back(catalog: Catalog) -> None:
    rec = make("i2i", catalog, {"i2i": {1: [2], 2: [1], 3: [9]}}, anchors=3)
    # neighbours of 1 and 2 are played; 3's is not
    assert rec(1, 1, recent=[(1, 1.0), (2, 1.0), (3, 0.1)], played={2}) == 9
    assert rec.answer(1, 1, recent=[(1, 1.0), (2, 1.0)], played={2}).fallback == "exhausted"
    assert rec.answer(1, 10, recent=[(10, 1.0)]).fallback == "cold_user"
    assert make("i2i", catalog).answer(1, 1).fallback == "no_table"


def test_table_parameter_renames_the_table(catalog: Catalog) -> None:
    rec = make("i2i", catalog, {"i2i_als": {1: [7]}}, table="i2i_als")
    assert rec.answer(1, 1) == Answer(7, "i2i", None)
    assert rec.recommender.table_names == {"i2i_als"}


def test_unknown_parameter_is_an_error(catalog: Catalog) -> None:
    with pytest.raises(TypeError, match="unknown parameter"):
        make("random", catalog, colour="red")


def test_catalog_has_every_public_field(catalog: Catalog) -> None:
    ctx = Context(Catalog.from_bytes(
        b'{"track": 0, "artist": "A", "title": "T", "genres": ["rock", "pop"], "year": 1999, "mood": "calm", "bpm": 120}\n'
        b'{"track": 1, "artist": "B", "title": "U"}\n'
    ))
    t = ctx.catalog[0]
    assert (t.track, t.artist, t.title, t.genres, t.year, t.mood, t.extra) == (0, "A", "T", ("rock", "pop"), 1999, "calm", {"bpm": 120})
    assert ctx.catalog[1].genres == () and ctx.catalog[1].year is None and ctx.catalog[1].mood is None
    assert len(ctx.catalog) == ctx.catalog.size == 2 and ctx.catalog.artist_of(1) == "B"
    assert list(ctx.catalog.tracks_of_artist("A")) == [0]
    with pytest.raises(IndexError):
        ctx.catalog[2]


def test_request_data_is_passed_not_shared_between_threads(catalog: Catalog) -> None:
    """Two requests in flight at once each see their own played set (no thread-local state)."""
    seen: dict[int, frozenset[int]] = {}
    gate = threading.Barrier(2)

    class Probe(Recommender):
        def recommend_next(self, user: int, prev_track: int, prev_track_time: float) -> int:
            gate.wait(timeout=5)  # both requests are inside recommend_next now
            seen[user] = frozenset(self.ctx.played)
            return prev_track + 1

    h = Harness(Probe, catalog)
    threads = [threading.Thread(target=h, args=(u, u), kwargs={"played": {40 + u}}) for u in (1, 2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert seen == {1: frozenset({1, 41}), 2: frozenset({2, 42})}
    with pytest.raises(RuntimeError, match="only inside recommend_next"):
        h.recommender.fallback.recommend_next(1, 1, 1.0)


def test_bugs_and_invalid_answers_cost_a_fallback(catalog: Catalog) -> None:
    class Bad(Recommender):
        fallbacks = ("sticky_artist",)

        def recommend_next(self, user: int, prev_track: int, prev_track_time: float) -> int:
            if prev_track == 1:
                raise KeyError("bug")
            if prev_track == 2:
                raise Fallback("my_reason")
            return {3: 10**6, 4: -1}.get(prev_track, "x")  # type: ignore[return-value]

    h = Harness(Bad, catalog)
    assert h.answer(1, 1).fallback == "error" and h.answer(1, 1).recommender == "sticky_artist"
    assert h.answer(1, 2).fallback == "my_reason"
    for prev in (3, 4, 5):
        a = h.answer(1, prev)
        assert (a.recommender, a.fallback) == ("sticky_artist", "invalid_answer")
        assert catalog.artist_of(a.track) == catalog.artist_of(prev)


def test_delegation_reports_the_one_who_answered_and_cycles_end(catalog: Catalog) -> None:
    @register("test_ping")
    class Ping(Recommender):
        fallbacks = ("test_pong",)

        def recommend_next(self, user: int, prev_track: int, prev_track_time: float) -> int:
            return self.fallback.recommend_next(user, prev_track, prev_track_time)

    @register("test_pong")
    class Pong(Recommender):
        fallbacks = ("test_ping",)

        def recommend_next(self, user: int, prev_track: int, prev_track_time: float) -> int:
            if user == 1:
                return 33
            return self.fallback.recommend_next(user, prev_track, prev_track_time, because="pong_declined")

    try:
        h = Harness("test_ping", catalog)
        assert h.answer(1, 5) == Answer(33, "test_pong", "declined")
        a = h.answer(2, 5)  # ping -> pong -> ping again: the chain ends in the in-process random
        assert (a.recommender, a.fallback) == ("random", "declined") and a.track != 5
    finally:
        REGISTRY.pop("test_ping", None)
        REGISTRY.pop("test_pong", None)


def test_old_style_fallback_attribute_is_refused() -> None:
    with pytest.raises(TypeError, match="fallbacks"):
        type("Old", (Recommender,), {"fallback": ("random",)})


def test_rng_is_stable_and_spread() -> None:
    a = RequestRng(31337, 5, 6, 2)
    b = RequestRng(31337, 5, 6, 2)
    xs = [a.randrange(1000) for _ in range(200)]
    assert xs == [b.randrange(1000) for _ in range(200)]
    assert len(set(xs)) > 150
    # pinned: the documented determinism must not change silently
    assert RequestRng(0, 0, 0, 0).randrange(1_000_000) == 195653
    assert sorted(RequestRng(1, 2, 3, 4).weighted_order([0.0, 0.0, 0.0])) == [0, 1, 2]


def _weighted_sample_reference(rng: RequestRng, weights: Sequence[float], k: int) -> list[int]:
    """The plain definition: successive draws, each scanning the positive weights."""
    w = [x if x > 0.0 else 0.0 for x in weights]
    n, k, total, out = len(w), min(k, len(w)), sum(w), []
    while len(out) < k:
        if total <= 1e-12:
            rest = [i for i in range(n) if i not in out]
            out.append(rest[rng.randrange(len(rest))])
            continue
        target, acc, pick = rng.random() * total, 0.0, -1
        for i, x in enumerate(w):
            if x > 0.0:
                acc += x
                pick = i
                if acc > target:
                    break
        out.append(pick)
        total -= w[pick]
        w[pick] = 0.0
    return out


def test_weighted_sample_matches_its_plain_definition() -> None:
    """The bisect version draws exactly what the scan draws (zeros, duplicates, tiny weights)."""
    import random

    gen = random.Random(7)
    for trial in range(5000):
        weights = [gen.choice([0.0, 1.0, 1e-300, -0.5, gen.random()]) for _ in range(gen.randrange(0, 40))]
        k = gen.randrange(1, 6)
        got = RequestRng(3, trial, 1, 2).weighted_sample(weights, k)
        assert got == _weighted_sample_reference(RequestRng(3, trial, 1, 2), weights, k), weights
        assert len(set(got)) == len(got) == min(k, len(weights))


def test_listens_round_trip_exactly_and_garbage_is_rejected() -> None:
    from botify.store import decode_listens, encode_listen

    pairs = [(12, 0.5), (7, 1.0), (12, 0.0), (40000, 0.1234567890123456), (3, 5e-324)]
    raw = [encode_listen(t, f) for t, f in pairs]
    assert raw[0] == b"[12,0.5]"  # readable in redis-cli
    assert decode_listens(raw) == pairs
    assert decode_listens([]) == []
    legacy = [b"12:0.5", b"7:1.0"]  # the earlier layout, still in a Redis that outlived an upgrade
    assert decode_listens(legacy) == [(12, 0.5), (7, 1.0)]
    assert decode_listens([raw[0], legacy[1]]) == [(12, 0.5), (7, 1.0)]
    for bad in ([b"12"], [b"[1,2,3]"], [b"[1"], [b"x:0.5"], [b"12:nope"], [b"1,2"], [b'["a",0.5]', b"x"], [b"[1,null]", b"7:1.0"]):
        with pytest.raises(ValueError):
            decode_listens(bad)


def test_every_trained_model_names_a_recommender_that_serves_it() -> None:
    """Offline and online share one registry idea: @model(name, serves=...) and @register(name)."""
    from botify.training import models

    assert set(models.REGISTRY) >= {"top_pop", "i2i", "contextual", "mf", "sasrec", "artist_i2i"}
    for name, entry in models.REGISTRY.items():
        assert entry.serves in REGISTRY, (name, entry.serves)
        mod = models.get_model(name)
        assert mod.__name__ == entry.module and callable(mod.fit) and hasattr(mod, "Params")
    assert models.SERVED_BY["mf"] == "indexed" and models.MODELS["i2i"] == "botify.training.models.i2i"
    with pytest.raises(ValueError, match="already registered"):
        models.model("i2i", serves="i2i")(lambda: None)
