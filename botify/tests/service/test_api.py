"""The HTTP API through Flask's test client on the private Redis: COMPAT endpoints and bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import redis
from botify.service.eventlog import flush_all
from botify_svc_helpers import read_lines, write_yaml

from botify import store


def test_root(client) -> None:  # type: ignore[no-untyped-def]
    r = client.get("/")
    assert r.status_code == 200 and r.json["status"] == "alive" and r.json["message"]


def test_track(client) -> None:  # type: ignore[no-untyped-def]
    r = client.get("/track/42")
    assert r.status_code == 200
    assert r.json["track"] == 42 and r.json["artist"] == "Artist 0" and r.json["title"] == "Track 42"
    assert r.json["year"] == 2002  # extra catalog fields pass through
    for bad, status, code in [("60", 404, "track_not_found"), ("abc", 400, "invalid_track_id"), ("-1", 400, "invalid_track_id")]:
        r = client.get(f"/track/{bad}")
        assert r.status_code == status and r.json["error"] == code and r.json["message"]


def test_next_and_last_compat_shape_and_session(client, settings) -> None:  # type: ignore[no-untyped-def]
    seen = {5}
    prev = 5
    for _ in range(20):
        r = client.post("/next/17", json={"track": prev, "time": 0.7})
        assert r.status_code == 200 and r.content_type == "application/json"
        assert set(r.json) == {"user", "track"} and r.json["user"] == 17
        nxt = r.json["track"]
        assert 0 <= nxt < 60 and nxt not in seen  # never the just-played or an already played track
        seen.add(nxt)
        prev = nxt
    r = client.post("/last/17", json={"track": prev, "time": 0.1})
    assert r.status_code == 200 and r.json == {"user": 17}
    rd = redis.Redis.from_url(settings.redis_url)
    assert not rd.exists("t:user:17:session")  # /last ends the session
    recent = rd.lrange("t:user:17:recent", 0, -1)
    assert recent[0] == f"[{prev},0.1]".encode() and len(recent) == 21  # readable JSON entries
    flush_all()
    events = read_lines(settings.log_dir)
    assert [e["message"] for e in events] == ["next"] * 20 + ["last"]
    for e in events:
        assert set(e) >= {"message", "timestamp", "user", "track", "time", "latency", "recommendation", "experiments", "recommender", "fallback"}
        assert isinstance(e["timestamp"], int) and 0 < e["latency"] < 5
        assert set(e["experiments"]) == {"STICKY_ARTIST", "AA"}
    assert events[-1]["recommendation"] is None


def test_time_bounds_and_ints_accepted(client) -> None:  # type: ignore[no-untyped-def]
    for t in (0, 1, 0.0, 1.0, 1e-300):
        assert client.post("/next/1", json={"track": 3, "time": t}).status_code == 200
    # extra fields are allowed
    assert client.post("/next/1", json={"track": 3, "time": 0.2, "client": "x"}).status_code == 200
    # the largest 64-bit signed user id is fine
    assert client.post(f"/next/{2**63 - 1}", json={"track": 3, "time": 0.2}).json["user"] == 2**63 - 1


BAD_BODIES = [
    (b"{", "malformed_json"),
    (b"", "malformed_json"),
    (b"\xff\xfe", "malformed_json"),
    (b'{"track": 1, "time": NaN}', "malformed_json"),
    (b'{"track": 1, "time": Infinity}', "malformed_json"),
    (b'{"track": 1, "time": -Infinity}', "malformed_json"),
    (b'{"track": 1, "time": 1e999}', "malformed_json"),
    (b"[1, 2]", "invalid_body"),
    (b'"x"', "invalid_body"),
    (b"null", "invalid_body"),
    (b"{}", "missing_field"),
    (b'{"time": 0.5}', "missing_field"),
    (b'{"track": 1}', "missing_field"),
    (b'{"track": null, "time": 0.5}', "invalid_field"),
    (b'{"track": "1", "time": 0.5}', "invalid_field"),
    (b'{"track": true, "time": 0.5}', "invalid_field"),
    (b'{"track": 1.0, "time": 0.5}', "invalid_field"),
    (b'{"track": 1.5, "time": 0.5}', "invalid_field"),
    (b'{"track": [1], "time": 0.5}', "invalid_field"),
    (b'{"track": 1, "time": null}', "invalid_field"),
    (b'{"track": 1, "time": "0.5"}', "invalid_field"),
    (b'{"track": 1, "time": true}', "invalid_field"),
    (b'{"track": 1, "time": 5.0}', "invalid_field"),
    (b'{"track": 1, "time": 5}', "invalid_field"),
    (b'{"track": 1, "time": -0.1}', "invalid_field"),
    (b'{"track": 1, "time": 1.0000001}', "invalid_field"),
    (b'{"track": -1, "time": 0.5}', "unknown_track"),
    (b'{"track": 60, "time": 0.5}', "unknown_track"),
    (b'{"track": 18446744073709551616, "time": 0.5}', "invalid_field"),
    (b'{"track": 9223372036854775808, "time": 0.5}', "unknown_track"),
]


@pytest.mark.parametrize("endpoint", ["next", "last"])
@pytest.mark.parametrize(("body", "error"), BAD_BODIES)
def test_bad_bodies_are_4xx_json_and_never_stored(client, settings, endpoint: str, body: bytes, error: str) -> None:  # type: ignore[no-untyped-def]
    rd = redis.Redis.from_url(settings.redis_url)
    before = sorted(rd.keys("t:user:*"))
    r = client.post(f"/{endpoint}/9", data=body, content_type="application/json")
    assert r.status_code == 400, r.data
    assert r.json["error"] == error and isinstance(r.json["message"], str)
    assert sorted(rd.keys("t:user:*")) == before == []
    # ...and the user is not poisoned: the next valid request works
    assert client.post(f"/{endpoint}/9", json={"track": 1, "time": 0.5}).status_code == 200


@pytest.mark.parametrize(
    ("user", "status"),
    [("-1", 400), ("abc", 400), ("1.5", 400), (str(2**63), 400), ("99999999999999999999999", 400), ("+1", 400), ("%201", 400)],
)
def test_bad_user_ids(client, settings, user: str, status: int) -> None:  # type: ignore[no-untyped-def]
    r = client.post(f"/next/{user}", json={"track": 1, "time": 0.5})
    assert r.status_code == status and r.json["error"] == "invalid_user"
    assert redis.Redis.from_url(settings.redis_url).keys("t:user:*") == []


def test_unknown_routes_and_wrong_methods(client) -> None:  # type: ignore[no-untyped-def]
    for path in ("/nope", "/next", "/next/1/2", "/track/", "/last/"):
        r = client.post(path, json={"track": 1, "time": 0.5})
        assert r.status_code in (404, 405) and r.content_type == "application/json", path
        assert set(r.json) == {"error", "message"}
    r = client.get("/next/1")
    assert r.status_code == 405 and r.json["error"] == "method_not_allowed" and r.headers["Allow"] == "POST"
    r = client.delete("/track/1")
    assert r.status_code == 405 and r.json["error"] == "method_not_allowed"
    r = client.put("/")
    assert r.status_code == 405


def test_oversized_body(client) -> None:  # type: ignore[no-untyped-def]
    body = json.dumps({"track": 1, "time": 0.5, "pad": "x" * 10_000}).encode()
    r = client.post("/next/1", data=body, content_type="application/json")
    assert r.status_code == 413 and r.json["error"] == "payload_too_large"
    r = client.post("/next/1", data=b"x" * 100_000, content_type="application/json")
    assert r.status_code == 413 and r.json["error"] == "payload_too_large"


def test_content_type_is_not_required(client) -> None:  # type: ignore[no-untyped-def]
    r = client.post("/next/1", data=b'{"track": 1, "time": 0.5}', content_type="text/plain")
    assert r.status_code == 200


def test_rejected_requests_are_logged_separately(client, settings) -> None:  # type: ignore[no-untyped-def]
    client.post("/next/1", data=b'{"track": null, "time": 0.5}', content_type="application/json")
    client.get("/nope")
    client.post("/next/1", json={"track": 1, "time": 0.5})
    flush_all()
    events = read_lines(settings.log_dir)
    rejected = read_lines(settings.log_dir, "rejected")
    assert len(events) == 1
    assert [(r["status"], r["error"]) for r in rejected] == [(400, "invalid_field"), (404, "not_found")]
    assert rejected[0]["body"] == '{"track": null, "time": 0.5}' and rejected[0]["path"] == "/next/1"


def test_rejected_log_can_be_switched_off(make_app, settings) -> None:  # type: ignore[no-untyped-def]
    c = make_app(log_rejected=False).test_client()
    c.get("/nope")
    c.post("/next/1", json={"track": 1, "time": 0.5})
    flush_all()
    assert read_lines(settings.log_dir, "rejected") == []
    assert len(read_lines(settings.log_dir)) == 1


def test_health_and_experiments_endpoints(client) -> None:  # type: ignore[no-untyped-def]
    r = client.get("/health")
    assert r.status_code == 200 and r.json["status"] == "ok" and r.json["catalog"]["tracks"] == 60
    assert r.json["catalog"]["in_redis"] is True
    assert client.get("/health/live").json == {"status": "alive"}
    r = client.get("/experiments")
    assert [e["name"] for e in r.json["experiments"]] == ["STICKY_ARTIST", "AA"]
    r = client.get("/experiments/17")
    assert r.json["experiments"] == {"STICKY_ARTIST": "C", "AA": r.json["experiments"]["AA"]}


def test_metrics_count_requests_recommenders_arms_and_rejections(client) -> None:  # type: ignore[no-untyped-def]
    for u in range(10):
        client.post(f"/next/{u}", json={"track": 1, "time": 0.5})
    client.post("/next/1", data=b"{", content_type="application/json")
    text = client.get("/metrics").get_data(as_text=True)
    assert 'botify_http_requests_total{endpoint="/next",method="POST",status="200"} 10.0' in text
    assert 'botify_http_requests_total{endpoint="/next",method="POST",status="400"} 1.0' in text
    assert 'botify_rejected_requests_total{error="malformed_json"} 1.0' in text
    served = [line for line in text.splitlines() if line.startswith("botify_recommendations_total{")]
    assert sum(float(line.rsplit(" ", 1)[1]) for line in served) == 10
    assert any('arm="T1",experiment="STICKY_ARTIST"' in line for line in served)
    assert 'botify_recommendation_duration_seconds_bucket{arm="C",experiment="STICKY_ARTIST",le="+Inf",recommender="random"}' in text
    assert "# TYPE botify_http_request_duration_seconds histogram" in text


def test_tables_are_served_and_switched_live(make_app, settings, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    write_yaml(settings.experiments_file, "experiments:\n  - name: I2I\n    arms: {C: i2i, T1: i2i}\n")
    app = make_app()
    c = app.test_client()
    rd = store.connect(settings.redis_url)
    # no table yet: i2i falls back (top_pop has no table either) to random, and says so
    r = c.post("/next/3", json={"track": 1, "time": 1.0})
    assert r.status_code == 200
    flush_all()
    e = read_lines(settings.log_dir)[-1]
    assert (e["recommender"], e["fallback"]) == ("random", "no_table")
    a = tmp_path / "a.jsonl"
    a.write_text('{"item_id": 1, "recommendations": [2, 3]}\n{"item_id": 2, "recommendations": [4]}\n')
    store.switch_table(rd, "i2i", store.load_table(rd, "i2i", a, "t"), "t")
    r = c.post("/next/4", json={"track": 1, "time": 1.0})
    assert r.json["track"] == 2
    flush_all()
    e = read_lines(settings.log_dir)[-1]
    assert (e["recommender"], e["fallback"], e["recommendation"]) == ("i2i", None, 2)
    b = tmp_path / "b.jsonl"
    b.write_text('{"item_id": 1, "recommendations": [7]}\n')
    store.switch_table(rd, "i2i", store.load_table(rd, "i2i", b, "t"), "t")
    assert c.post("/next/5", json={"track": 1, "time": 1.0}).json["track"] == 7
    store.rollback_table(rd, "i2i", "t")
    assert c.post("/next/6", json={"track": 1, "time": 1.0}).json["track"] == 2
    assert c.get("/health").json["tables"]["i2i"] == store.current_table_version(rd, "i2i", "t")


def test_experiments_reload_without_restart(make_app, settings) -> None:  # type: ignore[no-untyped-def]
    import os
    import time

    c = make_app().test_client()
    c.post("/next/1", json={"track": 1, "time": 0.5})
    write_yaml(settings.experiments_file, "experiments:\n  - name: NEW\n    arms: {C: sticky_artist, T1: sticky_artist}\n")
    later = time.time_ns() + 10**9
    os.utime(settings.experiments_file, ns=(later, later))
    c.post("/next/1", json={"track": 1, "time": 0.5})
    flush_all()
    events = read_lines(settings.log_dir)
    assert set(events[0]["experiments"]) == {"STICKY_ARTIST", "AA"}
    assert events[1]["experiments"] == {"NEW": events[1]["experiments"]["NEW"]}
    assert events[1]["recommender"] == "sticky_artist"
    assert events[1]["recommendation"] % 6 == 1  # same artist as track 1


def test_row_cache_is_warmed_per_version_and_never_stale(make_app, settings, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    import time

    write_yaml(settings.experiments_file, "experiments:\n  - name: I2I\n    arms: {C: i2i, T1: i2i}\n")
    rd = store.connect(settings.redis_url)
    store.load_catalog(rd, settings.catalog, "t")
    a = tmp_path / "a.jsonl"
    a.write_text("".join(json.dumps({"item_id": i, "recommendations": [(i + 1) % 60]}) + "\n" for i in range(60)))
    va = store.load_table(rd, "i2i", a, "t")
    store.switch_table(rd, "i2i", va, "t")
    app = make_app()
    tables = app.extensions["botify"].tables
    deadline = time.monotonic() + 5
    while len(tables.cache) < 60 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert len(tables.cache) == 60 and all(k[1] == va for k in tables.cache)
    c = app.test_client()
    assert c.post("/next/1", json={"track": 10, "time": 1.0}).json["track"] == 11
    b = tmp_path / "b.jsonl"
    b.write_text("".join(json.dumps({"item_id": i, "recommendations": [(i + 2) % 60]}) + "\n" for i in range(60)))
    store.switch_table(rd, "i2i", store.load_table(rd, "i2i", b, "t"), "t")
    assert c.post("/next/2", json={"track": 10, "time": 1.0}).json["track"] == 12  # new version at once


def test_broken_recommenders_cost_a_fallback_not_a_500(make_app, settings) -> None:  # type: ignore[no-untyped-def]
    from botify.recommenders import REGISTRY, Recommender, register

    @register("test_out_of_catalog")
    class OutOfCatalog(Recommender):
        fallbacks = ("test_raises",)

        def recommend_next(self, user: int, prev_track: int, prev_track_time: float) -> int:
            return 10**6

    @register("test_raises")
    class Raises(Recommender):
        def recommend_next(self, user: int, prev_track: int, prev_track_time: float) -> int:
            raise IndexError("bug")

    try:
        write_yaml(settings.experiments_file,
                   "experiments:\n  - name: B\n    arms: {C: test_out_of_catalog, T1: test_out_of_catalog}\n")
        c = make_app().test_client()
        r = c.post("/next/1", json={"track": 4, "time": 0.5})
        assert r.status_code == 200 and 0 <= r.json["track"] < 60
        flush_all()
        e = read_lines(settings.log_dir)[-1]
        assert (e["recommender"], e["fallback"]) == ("random", "invalid_answer")
    finally:
        REGISTRY.pop("test_out_of_catalog", None)
        REGISTRY.pop("test_raises", None)


def test_reload_to_a_table_recommender_sees_its_table_at_once(make_app, settings, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    import os
    import time

    app = make_app(reload_interval=30.0)  # only the reload itself may trigger the table lookup
    holder = app.extensions["botify"].experiments
    holder.interval, holder._next_check = 0.0, 0.0
    c = app.test_client()
    rd = store.connect(settings.redis_url)
    a = tmp_path / "a.jsonl"
    a.write_text('{"item_id": 1, "recommendations": [9]}\n')
    store.switch_table(rd, "contextual", store.load_table(rd, "contextual", a, "t"), "t")
    c.post("/next/1", json={"track": 1, "time": 0.5})
    write_yaml(settings.experiments_file, "experiments:\n  - name: CTX\n    arms: {C: contextual, T1: contextual}\n")
    later = time.time_ns() + 10**9
    os.utime(settings.experiments_file, ns=(later, later))
    assert c.post("/next/2", json={"track": 1, "time": 0.5}).json["track"] == 9
