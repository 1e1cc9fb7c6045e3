"""Input validation for the course endpoints.

Everything a client sends is checked before it can touch Redis or the log:
the course server stored `{"track": null}` and `"time": NaN` in the user's
history and then failed on every later request of that user.
"""

from __future__ import annotations

import math

import orjson
from botify.service.errors import ApiError
from botify.store.artifacts import MAX_USER_ID

MAX_BODY_BYTES = 4096


def parse_user(raw: str) -> int:
    """A user id from the URL path: a decimal integer in 0..2^63-1."""
    if not raw or len(raw) > 20 or not (raw.isdigit() and raw.isascii()):
        if raw[:1] == "-" and raw[1:].isdigit():
            raise ApiError(400, "invalid_user", f"user id must be >= 0, got {raw}")
        raise ApiError(400, "invalid_user", f"user id must be a non-negative integer, got {raw[:40]!r}")
    user = int(raw)
    if user > MAX_USER_ID:
        raise ApiError(400, "invalid_user", f"user id must be <= 2^63-1, got {raw}")
    return user


def parse_track_id(raw: str) -> int:
    """A track id from the URL path (GET /track/<id>)."""
    if not raw or len(raw) > 20 or not (raw.isdigit() and raw.isascii()):
        raise ApiError(400, "invalid_track_id", f"track id must be a non-negative integer, got {raw[:40]!r}")
    return int(raw)


def parse_listen(body: bytes, catalog_size: int) -> tuple[int, float]:
    """The body of /next and /last: {"track": <catalog id>, "time": <number in [0, 1]>}.

    Extra fields are ignored (clients may send more). A bool is not a number
    here, and a float is not a track id even when it is integral (42.0).
    """
    if len(body) > MAX_BODY_BYTES:
        raise ApiError(413, "payload_too_large", f"body must be at most {MAX_BODY_BYTES} bytes")
    try:
        obj = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise ApiError(400, "malformed_json", f"body is not valid JSON: {exc}") from None
    if type(obj) is not dict:
        raise ApiError(400, "invalid_body", f"body must be a JSON object, got {type(obj).__name__}")
    try:
        track = obj["track"]
    except KeyError:
        raise ApiError(400, "missing_field", "field 'track' is required") from None
    try:
        time_ = obj["time"]
    except KeyError:
        raise ApiError(400, "missing_field", "field 'time' is required") from None
    if type(track) is not int:
        raise ApiError(400, "invalid_field", f"'track' must be an integer, got {_describe(track)}")
    tt = type(time_)
    if tt is float:
        if not (0.0 <= time_ <= 1.0) or math.isnan(time_):
            raise ApiError(400, "invalid_field", f"'time' must be in [0, 1], got {time_!r}")
    elif tt is int:
        if time_ not in (0, 1):
            raise ApiError(400, "invalid_field", f"'time' must be in [0, 1], got {time_!r}")
        time_ = float(time_)
    else:
        raise ApiError(400, "invalid_field", f"'time' must be a number in [0, 1], got {_describe(time_)}")
    if not 0 <= track < catalog_size:
        raise ApiError(400, "unknown_track", f"track {track} is not in the catalog (0..{catalog_size - 1})")
    return track, time_


def _describe(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"boolean {str(value).lower()}"
    if isinstance(value, float):
        return f"float {value!r}"
    if isinstance(value, str):
        return f"string {value[:40]!r}"
    return type(value).__name__
