"""One error shape for every 4xx/5xx: {"error": <code>, "message": <text>}.

Why: clients and the rejected-request log can switch on a short stable code,
while the message says what was wrong in words. Flask's HTML error pages and
Flask-RESTful's own bodies never reach a client.
"""

from __future__ import annotations

import orjson
from flask import Response


class ApiError(Exception):
    """A request we refuse, with its HTTP status and stable error code."""

    def __init__(self, status: int, error: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.error = error
        self.message = message


# error code -> (status, meaning); the list the OpenAPI document and docs show
ERROR_CODES: dict[str, tuple[int, str]] = {
    "malformed_json": (400, "the body is not a JSON document (NaN and Infinity are not JSON)"),
    "invalid_body": (400, "the body is JSON but not an object"),
    "missing_field": (400, "a required field is absent"),
    "invalid_field": (400, "a field has the wrong type or is out of range"),
    "unknown_track": (400, "the track id is not in the catalog"),
    "invalid_user": (400, "the user id is not an integer in 0..2^63-1"),
    "invalid_track_id": (400, "the track id in the path is not an integer"),
    "track_not_found": (404, "no track with this id in the catalog"),
    "not_found": (404, "no such route"),
    "method_not_allowed": (405, "the route exists, the method does not"),
    "payload_too_large": (413, "the body exceeds the size limit"),
    "bad_request": (400, "the request could not be understood"),
    "unavailable": (503, "a dependency (Redis) is unreachable"),
    "internal_error": (500, "a bug: reported, never expected"),
}


def error_response(status: int, error: str, message: str, headers: dict[str, str] | None = None) -> Response:
    body = orjson.dumps({"error": error, "message": message})
    resp = Response(body, status=status, mimetype="application/json")
    if headers:
        for k, v in headers.items():
            resp.headers[k] = v
    return resp
