"""Flask-RESTful resources: the COMPAT endpoints plus health, metrics, OpenAPI.

Resources return plain data (a dict, or a dict and a status) and the Api's
`application/json` representation serialises it with orjson; only the two
bodies that are not built from a dict (the Prometheus text of /metrics and the
prebuilt OpenAPI document) are `Response` objects. Every error, Flask's own
404/405 included, leaves as {"error": ..., "message": ...} through
`BotifyApi.handle_error`. Each resource gets the process's Service at
construction (`resource_class_kwargs`).
"""

from __future__ import annotations

import logging
import time
from typing import Any

import orjson
from botify.service.core import RedisUnavailable, Service
from botify.service.errors import ApiError, error_response
from botify.service.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from botify.service.validation import MAX_BODY_BYTES, parse_listen, parse_track_id, parse_user
from flask import Flask, Response, request
from flask_restful import Api, Resource
from werkzeug.exceptions import HTTPException, MethodNotAllowed, NotFound, RequestEntityTooLarge

log = logging.getLogger("botify.service.resources")

JSON = "application/json"


def output_json(data: Any, code: int, headers: dict[str, str] | None = None) -> Response:
    """The Api's `application/json` representation: orjson instead of the stdlib json.

    A `Response` with its content type given, rather than flask.make_response: that
    one looks up the app through a proxy and derives the content type and charset
    per answer (measured 2026-12-02: ~10 us of a ~300 us /next, bench/service_overrides.py).
    """
    return Response(orjson.dumps(data), code, headers, content_type=JSON)


class _Resource(Resource):
    """One instance per endpoint, not per request (the resources keep no request state)."""

    init_every_request = False

    def __init__(self, service: Service) -> None:
        self.service = service


class Root(_Resource):
    def get(self) -> dict[str, str]:
        return {"status": "alive", "message": "botify recommender service"}


class Track(_Resource):
    def get(self, track: str) -> dict[str, Any]:
        service = self.service
        track_id = parse_track_id(track)
        if track_id not in service.catalog:
            raise ApiError(404, "track_not_found", f"no track {track_id} in the catalog")
        try:
            raw = service.track_json(track_id)
        except RedisUnavailable:
            raise ApiError(503, "unavailable", "track metadata store (Redis) is unreachable") from None
        if raw is None:
            raise ApiError(503, "unavailable", "catalog not (yet) loaded in Redis")
        return orjson.loads(raw)


T0_KEY = "botify.t0"  # WSGI environ key: perf_counter() when the request reached the app
BODY_KEY = "botify.body"  # WSGI environ key: the body as read by the hot path (for the rejected log)


def _read_body(environ: dict[str, Any]) -> bytes:
    """The request body, read once straight from wsgi.input.

    Why not request.get_data(): on the /next hot path it builds werkzeug's stream
    wrapper and form-parsing state per request. With a Content-Length (what every
    client of the COMPAT API sends) the body is read directly, at most
    MAX_BODY_BYTES + 1 bytes (parse_listen then answers 413 for more); without one
    (chunked) werkzeug's get_data reads it, bounded by MAX_CONTENT_LENGTH.
    """
    length = environ.get("CONTENT_LENGTH")
    if length and length.isdigit():
        n = int(length)
        body = environ["wsgi.input"].read(min(n, MAX_BODY_BYTES + 1)) if n else b""
        if n > MAX_BODY_BYTES:
            environ[BODY_KEY] = body
            raise ApiError(413, "payload_too_large", f"body must be at most {MAX_BODY_BYTES} bytes")
    else:
        body = request.get_data(cache=True)
    environ[BODY_KEY] = body
    return body


class Next(_Resource):
    def post(self, user: str) -> dict[str, int]:
        service = self.service
        environ = request.environ
        uid = parse_user(user)
        track, time_ = parse_listen(_read_body(environ), service.catalog_size)
        rec, _event = service.next(uid, track, time_, environ.get(T0_KEY) or time.perf_counter())
        return {"user": uid, "track": rec}


class Last(_Resource):
    def post(self, user: str) -> dict[str, int]:
        service = self.service
        environ = request.environ
        uid = parse_user(user)
        track, time_ = parse_listen(_read_body(environ), service.catalog_size)
        service.last(uid, track, time_, environ.get(T0_KEY) or time.perf_counter())
        return {"user": uid}


class Health(_Resource):
    def get(self) -> tuple[dict[str, Any], int]:
        ready, body = self.service.health()
        return body, 200 if ready else 503


class Live(_Resource):
    def get(self) -> dict[str, str]:
        return {"status": "alive"}


class Metrics(_Resource):
    def get(self) -> Response:
        return Response(self.service.metrics.render(), status=200, content_type=METRICS_CONTENT_TYPE)


class Experiments(_Resource):
    def get(self) -> dict[str, Any]:
        exps = self.service.experiments.get()
        return {"experiments": exps.describe(), "default": exps.default}


class Assignment(_Resource):
    def get(self, user: str) -> dict[str, Any]:
        uid = parse_user(user)
        arms, serving, _e, _a = self.service.experiments.get().assign(uid)
        return {"user": uid, "experiments": arms, "recommender": serving}


class OpenApi(_Resource):
    def get(self) -> Response:
        from botify.service.openapi import openapi_bytes

        return Response(openapi_bytes(), status=200, mimetype=JSON)


class BotifyApi(Api):
    """Flask-RESTful Api whose errors all take botify's JSON shape."""

    def error_router(self, original_handler: Any, e: Exception) -> Response:
        return self.handle_error(e)

    def handle_error(self, e: Exception) -> Response:
        headers: dict[str, str] = {}
        if isinstance(e, ApiError):
            status, error, message = e.status, e.error, e.message
        elif isinstance(e, NotFound):
            status, error, message = 404, "not_found", f"no route {request.path}"
        elif isinstance(e, MethodNotAllowed):
            allowed = sorted(m for m in (e.valid_methods or []) if m != "OPTIONS")
            status, error = 405, "method_not_allowed"
            message = f"{request.method} not allowed on {request.path}; allowed: {', '.join(allowed)}"
            headers["Allow"] = ", ".join(allowed)
        elif isinstance(e, RequestEntityTooLarge):
            status, error, message = 413, "payload_too_large", "body too large"
        elif isinstance(e, HTTPException) and e.code is not None and e.code < 500:
            status, error, message = e.code, "bad_request", e.description or e.name
        else:
            log.exception("unhandled error on %s %s", request.method, request.path)
            status, error, message = 500, "internal_error", "internal error (logged)"
        if 400 <= status < 500:
            _log_rejected(status, error, message)
        return error_response(status, error, message, headers)


def _log_rejected(status: int, error: str, message: str) -> None:
    from flask import current_app

    service: Service = current_app.extensions["botify"]
    service.metrics.inc("botify_rejected_requests_total", (error,))
    t0 = request.environ.get(T0_KEY)
    body = request.environ.get(BODY_KEY)
    if body is None:
        try:
            body = request.get_data(cache=True)
        except HTTPException:  # e.g. the body is what was too large: not read at all
            body = b""
    body = body[:512]
    service.eventlog.rejected(
        {
            "message": "rejected",
            "timestamp": int(time.time() * 1000),
            "method": request.method,
            "path": request.path[:256],
            "status": status,
            "error": error,
            "detail": message[:512],
            "body": body.decode("utf-8", "replace"),
            "latency": (time.perf_counter() - t0) if t0 is not None else None,
        }
    )


ENDPOINT_LABELS = {
    "root": "/",
    "track": "/track",
    "next": "/next",
    "last": "/last",
    "health": "/health",
    "live": "/health/live",
    "metrics": "/metrics",
    "experiments": "/experiments",
    "assignment": "/experiments/user",
    "openapi": "/openapi.json",
}


_METHODS = frozenset({"GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"})


ROUTES: list[tuple[type[_Resource], str, str]] = [
    (Root, "/", "root"),
    (Track, "/track/<track>", "track"),
    (Next, "/next/<user>", "next"),
    (Last, "/last/<user>", "last"),
    (Health, "/health", "health"),
    (Live, "/health/live", "live"),
    (Metrics, "/metrics", "metrics"),
    (Experiments, "/experiments", "experiments"),
    (Assignment, "/experiments/<user>", "assignment"),
    (OpenApi, "/openapi.json", "openapi"),
]


def register_api(app: Flask) -> BotifyApi:
    """Register botify's Api on `app` (whose Service `init_app` attached), with the timing hooks."""
    service: Service = app.extensions["botify"]
    api = BotifyApi(catch_all_404s=True)
    api.representation(JSON)(output_json)
    for resource, url, endpoint in ROUTES:
        api.add_resource(resource, url, endpoint=endpoint, resource_class_kwargs={"service": service})
    api.init_app(app)

    perf = time.perf_counter
    metrics = service.metrics

    # The start time goes into the WSGI environ from a plain middleware: a Flask
    # before_request hook costs a hook dispatch and a `g` proxy write per request.
    flask_wsgi = app.wsgi_app

    def timed_wsgi(environ: dict[str, Any], start_response: Any) -> Any:
        environ[T0_KEY] = perf()
        return flask_wsgi(environ, start_response)

    app.wsgi_app = timed_wsgi  # type: ignore[method-assign]
    labels = ENDPOINT_LABELS
    http_total = "botify_http_requests_total"
    http_seconds = "botify_http_request_duration_seconds"

    @app.after_request
    def _count(resp: Response) -> Response:
        req = request._get_current_object()  # type: ignore[attr-defined]  # one proxy lookup
        t0 = req.environ.get(T0_KEY)
        endpoint = labels.get(req.endpoint or "", "unmatched")
        method = req.method
        if method not in _METHODS:
            method = "OTHER"  # bounded label values
        metrics.inc(http_total, (endpoint, method, str(resp.status_code)))
        if t0 is not None:
            metrics.observe(http_seconds, (endpoint,), perf() - t0)
        if service.draining:  # shutting down: the client must not reuse this connection
            resp.headers["Connection"] = "close"
        return resp

    return api
