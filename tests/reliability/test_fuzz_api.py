"""Issue 6, point 1: fuzz the live API from its own OpenAPI document, and property-test validation.

schemathesis reads GET /openapi.json from a real `python -m botify serve` (granian,
private Redis, a 300-track catalog) and sends generated requests, valid and
invalid, to every documented operation. Every answer must be a non-5xx that the
document describes (status, content type, body schema), and data that violates
the schema must be refused. Example counts are bounded so the whole module
takes well under a minute.

The hypothesis tests then pin the validation rules directly (botify.service.validation
and the Flask test client): any body is either a valid listen or a 4xx JSON error,
never a 500, and a refused request never changes the user's state in Redis.
"""

from __future__ import annotations

import json
import math
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import schemathesis
from botify.service.errors import ApiError
from botify.service.openapi import openapi_document
from botify.service.validation import MAX_BODY_BYTES, MAX_USER_ID, parse_listen, parse_user
from helpers_service import (
    ServiceProcess,
    http_get,
    http_post_json,
    start_service,
    write_experiments,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

CATALOG_SIZE = 300
NAMESPACE = "relfuzz"
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    negative_data_rejection,
]


@pytest.fixture(scope="module")
def live_service(
    small_catalog: Path, redis_process: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServiceProcess]:
    """The real server on a free port, on the private Redis (its own namespace)."""
    tmp = tmp_path_factory.mktemp("fuzz")
    experiments = write_experiments(tmp / "experiments.yml", {"C": "random", "T1": "sticky_artist"}, name="FUZZ")
    svc = start_service(catalog=small_catalog, log_dir=tmp / "logs", redis_url=redis_process.url,
                        experiments=experiments, namespace=NAMESPACE, workers=1, run_dir=tmp / "run")
    try:
        yield svc
    finally:
        code = svc.stop(signal.SIGTERM)
        assert code == 0, svc.output()[-3000:]
        # no request, however hostile, may have produced a server-side traceback
        assert "Traceback" not in svc.output(), svc.output()[-5000:]
        assert "unhandled error" not in svc.output()


# The document is a pure function of the code (botify.service.openapi), so the operations are
# collected from it at import time, one test per operation; the first test checks
# that the live server's GET /openapi.json is byte-for-byte this document. (Loading it
# lazily from a fixture, schemathesis.pytest.from_fixture, fails on pytest 9 in
# schemathesis 4.32: "'Function' object has no attribute '_nodeid'".)
schema = schemathesis.openapi.from_dict(openapi_document())


def test_live_service_serves_the_fuzzed_document(live_service: ServiceProcess) -> None:
    status, body = http_get(f"{live_service.url}/openapi.json")
    assert status == 200 and json.loads(body) == openapi_document()
    assert len(list(schema.get_all_operations())) == sum(len(ops) for ops in openapi_document()["paths"].values())


@schema.parametrize()
@settings(max_examples=25, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
def test_every_operation_survives_generated_requests(case: Any, live_service: ServiceProcess) -> None:
    """No 5xx, every answer is what the document says it is, schema-invalid data is refused."""
    case.call_and_validate(base_url=live_service.url, checks=CHECKS)


def test_service_still_serves_after_the_fuzzing(live_service: ServiceProcess) -> None:
    """Garbage never poisons later requests (the course server stored `null` and then 500ed).

    Runs after the fuzzing (file order): its rejected-request log shows the fuzzer
    really reached the validation with many kinds of bad input.
    """
    rejected = [json.loads(line) for f in live_service.log_dir.glob("*/rejected-*.jsonl")
                for line in f.read_text().splitlines() if line.strip()]
    kinds = {r["error"] for r in rejected}
    assert len(rejected) >= 50 and len(kinds) >= 4, (len(rejected), kinds)
    assert all(400 <= r["status"] < 500 for r in rejected)
    for user in (0, 1, 2, 12345, MAX_USER_ID):
        status, body = http_post_json(f"{live_service.url}/next/{user}", {"track": 7, "time": 0.5})
        assert status == 200, body
        assert json.loads(body)["user"] == user
        status, body = http_post_json(f"{live_service.url}/last/{user}", {"track": 7, "time": 0.5})
        assert status == 200, body


# -- property tests on request validation ---------------------------------------------

JSON_SCALARS = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=20)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)


def _encode(obj: Any) -> bytes:
    # allow_nan: the course server accepted NaN/Infinity literals; they must be refused here
    return json.dumps(obj, allow_nan=True).encode()


def _valid_listen(obj: Any, size: int) -> bool:
    """The rule, written independently of botify.service.validation."""
    if not isinstance(obj, dict) or "track" not in obj or "time" not in obj:
        return False
    track, time_ = obj["track"], obj["time"]
    if type(track) is not int or not 0 <= track < size:
        return False
    if type(time_) is bool or not isinstance(time_, int | float):
        return False
    return not math.isnan(time_) and 0 <= time_ <= 1


@settings(max_examples=300, deadline=None, derandomize=True)
@given(obj=JSON_VALUES | st.fixed_dictionaries({"track": JSON_VALUES, "time": JSON_VALUES}, optional={"x": JSON_VALUES}))
def test_parse_listen_accepts_exactly_the_valid_listens(obj: Any) -> None:
    body = _encode(obj)
    try:
        track, time_ = parse_listen(body, CATALOG_SIZE)
    except ApiError as exc:
        assert 400 <= exc.status < 500 and exc.error and exc.message
        assert not _valid_listen(obj, CATALOG_SIZE) or len(body) > MAX_BODY_BYTES
        return
    assert _valid_listen(obj, CATALOG_SIZE), obj
    assert (track, time_) == (obj["track"], float(obj["time"]))
    assert type(track) is int and type(time_) is float


@settings(max_examples=200, deadline=None, derandomize=True)
@given(body=st.binary(max_size=64) | st.text(max_size=64).map(str.encode))
def test_parse_listen_never_raises_anything_but_a_4xx_on_arbitrary_bytes(body: bytes) -> None:
    try:
        parse_listen(body, CATALOG_SIZE)
    except ApiError as exc:
        assert 400 <= exc.status < 500


@settings(max_examples=300, deadline=None, derandomize=True)
@given(raw=st.text(max_size=30) | st.integers(min_value=-(2**70), max_value=2**70).map(str))
def test_parse_user_accepts_exactly_decimal_ids_in_range(raw: str) -> None:
    expected_ok = raw.isascii() and raw.isdigit() and int(raw) <= MAX_USER_ID
    try:
        user = parse_user(raw)
    except ApiError as exc:
        assert exc.status == 400 and exc.error == "invalid_user"
        assert not expected_ok, raw
        return
    assert expected_ok and user == int(raw), raw


@pytest.fixture(scope="module")
def flask_client(small_catalog: Path, redis_process: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """The app in-process (Flask test client) on the private Redis, own namespace."""
    from botify.service.app import create_app
    from botify.store.settings import Settings

    tmp = tmp_path_factory.mktemp("prop")
    settings_ = Settings(redis_url=redis_process.url, catalog=small_catalog, log_dir=tmp / "logs",
                         experiments_file=tmp / "none.yml", run_dir=tmp / "run", namespace="relprop",
                         reload_interval=0.0)
    app = create_app(settings_)
    try:
        yield app.test_client()
    finally:
        app.extensions["botify"].eventlog.close()


@settings(max_examples=150, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    endpoint=st.sampled_from(["next", "last"]),
    user=st.integers(min_value=0, max_value=50),
    obj=JSON_VALUES | st.fixed_dictionaries({"track": JSON_VALUES, "time": JSON_VALUES}),
)
def test_refused_requests_never_touch_the_users_state(flask_client: Any, redis_process: Any, endpoint: str,
                                                       user: int, obj: Any) -> None:
    """Through the whole app: a 4xx JSON error leaves Redis exactly as it was; valid is 200."""
    r = redis.Redis.from_url(redis_process.url)

    def snapshot() -> dict[bytes, Any]:
        """Every user's state (recent listens, session) in the app's namespace, byte for byte."""
        return {k: r.dump(k) for k in sorted(r.scan_iter(match="relprop:user:*"))}

    before = snapshot()
    resp = flask_client.post(f"/{endpoint}/{user}", data=_encode(obj), content_type="application/json")
    if _valid_listen(obj, CATALOG_SIZE):
        assert resp.status_code == 200, resp.data
    else:
        assert 400 <= resp.status_code < 500, resp.data
        body = resp.get_json()
        assert set(body) == {"error", "message"}
        assert snapshot() == before
    r.close()
