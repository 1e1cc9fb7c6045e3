"""Property test: no body, user id or path makes the service answer 5xx or store garbage."""

from __future__ import annotations

import json

import orjson
import redis
from hypothesis import HealthCheck, given
from hypothesis import settings as hyp_settings
from hypothesis import strategies as st

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=8),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3),
    max_leaves=6,
)
bodies = st.one_of(
    st.binary(max_size=64),
    json_values.map(lambda v: json.dumps(v).encode()),
    st.fixed_dictionaries({"track": json_values, "time": json_values}).map(lambda v: json.dumps(v).encode()),
    st.builds(lambda t, x: b'{"track": %s, "time": %s}' % (t, x),
              st.sampled_from([b"1", b"-1", b"1.0", b"null", b"true", b'"1"', b"1e3", b"99999999999999999999"]),
              st.sampled_from([b"0.5", b"NaN", b"Infinity", b"-0.0", b"1", b"2", b"1e-400", b"null", b'"x"'])),
)
users = st.one_of(st.integers(min_value=-(2**70), max_value=2**70).map(str), st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="/?#%"), min_size=1, max_size=12))


@hyp_settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=bodies, user=users, endpoint=st.sampled_from(["next", "last"]))
def test_no_input_gives_a_5xx(client, settings, body: bytes, user: str, endpoint: str) -> None:  # type: ignore[no-untyped-def]
    r = client.post(f"/{endpoint}/{user}", data=body, content_type="application/json")
    assert r.status_code in (200, 400, 404, 413), (r.status_code, body, user)
    assert set(r.json) == ({"user", "track"} if endpoint == "next" else {"user"}) if r.status_code == 200 else {"error", "message"}
    # whatever was accepted left only well-formed state behind
    rd = redis.Redis.from_url(settings.redis_url)
    for key in rd.keys("t:user:*:recent"):
        for item in rd.lrange(key, 0, -1):
            t, f = orjson.loads(item)
            assert type(t) is int and type(f) is float and 0 <= t < 60 and 0.0 <= f <= 1.0

