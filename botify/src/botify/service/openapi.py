"""The OpenAPI 3.1 description of the service, kept true by tests.

botify/tests/test_openapi.py sends real requests (good and bad) and
validates every answer against the schemas here with jsonschema, so this
document cannot drift from what the service actually does.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import orjson
from botify.service.errors import ERROR_CODES

from botify import __version__

ERROR = {
    "type": "object",
    "required": ["error", "message"],
    "properties": {
        "error": {"type": "string", "enum": sorted(ERROR_CODES)},
        "message": {"type": "string"},
    },
}
LISTEN = {
    "type": "object",
    "required": ["track", "time"],
    "properties": {
        "track": {"type": "integer", "minimum": 0, "description": "the track just played (catalog id)"},
        "time": {"type": "number", "minimum": 0, "maximum": 1, "description": "fraction listened"},
    },
    "additionalProperties": True,
}
NEXT_ANSWER = {
    "type": "object",
    "required": ["user", "track"],
    "additionalProperties": False,
    "properties": {"user": {"type": "integer", "minimum": 0}, "track": {"type": "integer", "minimum": 0}},
}
LAST_ANSWER = {
    "type": "object",
    "required": ["user"],
    "additionalProperties": False,
    "properties": {"user": {"type": "integer", "minimum": 0}},
}
ROOT_ANSWER = {
    "type": "object",
    "required": ["status", "message"],
    "properties": {"status": {"const": "alive"}, "message": {"type": "string"}},
}
TRACK = {
    "type": "object",
    "required": ["track", "artist", "title"],
    "properties": {
        "track": {"type": "integer", "minimum": 0},
        "artist": {"type": "string"},
        "title": {"type": "string"},
    },
    "additionalProperties": True,
}
HEALTH = {
    "type": "object",
    "required": ["status", "redis", "catalog", "tables", "experiments", "pid", "uptime"],
    "properties": {
        "status": {"enum": ["ok", "unavailable"]},
        "redis": {"type": "string"},
        "catalog": {
            "type": "object",
            "required": ["tracks", "version", "in_redis"],
            "properties": {
                "tracks": {"type": "integer"},
                "version": {"type": "string"},
                "in_redis": {"type": "boolean"},
            },
        },
        "tables": {"type": "object", "additionalProperties": {"type": ["string", "null"]}},
        "experiments": {"type": "array", "items": {"type": "string"}},
        "experiments_error": {"type": ["string", "null"]},
        "recommenders_pending": {"type": "array", "items": {"type": "string"}},
        "recommenders_message": {"type": ["string", "null"]},
        "pid": {"type": "integer"},
        "uptime": {"type": "number"},
        "error": {"type": "string"},
        "message": {"type": "string"},
    },
}
EXPERIMENTS = {
    "type": "object",
    "required": ["experiments", "default"],
    "properties": {
        "default": {"type": "string"},
        "experiments": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["name", "arms", "shares"],
                "properties": {
                    "name": {"type": "string"},
                    "arms": {"type": "object", "additionalProperties": {"type": "string"}},
                    "shares": {"type": ["object", "null"], "additionalProperties": {"type": "number"}},
                },
            },
        },
    },
}
ASSIGNMENT = {
    "type": "object",
    "required": ["user", "experiments", "recommender"],
    "properties": {
        "user": {"type": "integer"},
        "experiments": {"type": "object", "additionalProperties": {"type": "string", "pattern": "^(C|T[0-9]+)$"}},
        "recommender": {"type": "string"},
    },
}


def _json(schema_ref: str, description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": {"$ref": schema_ref}}}}


def _err(description: str) -> dict[str, Any]:
    return _json("#/components/schemas/Error", description)


USER_PARAM = {
    "name": "user",
    "in": "path",
    "required": True,
    "description": "user id, an integer in 0..2^63-1 (anything else: 400 invalid_user)",
    "schema": {"type": "integer", "minimum": 0, "maximum": 2**63 - 1},
}
COMMON_4XX = {
    "404": _err("no such route (not_found)"),
    "405": _err("method not allowed (method_not_allowed); the Allow header lists the allowed ones"),
}


def _listen_op(summary: str, answer_ref: str, answer_desc: str) -> dict[str, Any]:
    return {
        "summary": summary,
        "parameters": [USER_PARAM],
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Listen"}}},
        },
        "responses": {
            "200": _json(answer_ref, answer_desc),
            "400": _err(
                "malformed_json, invalid_body, missing_field, invalid_field (wrong type, bool, null, "
                "float track, time outside [0, 1]), unknown_track or invalid_user"
            ),
            "413": _err("payload_too_large"),
            **COMMON_4XX,
        },
    }


@lru_cache(maxsize=1)
def openapi_document() -> dict[str, Any]:
    """The document served at GET /openapi.json."""
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "botify",
            "version": __version__,
            "description": (
                "Music recommender service speaking the course protocol. Every error answer "
                "is JSON {error, message}; error codes: "
                + "; ".join(f"{k} ({s}): {m}" for k, (s, m) in sorted(ERROR_CODES.items()))
            ),
        },
        "paths": {
            "/": {"get": {"summary": "liveness banner (course protocol)", "responses": {
                "200": _json("#/components/schemas/Root", "alive"), **COMMON_4XX}}},
            "/track/{track}": {"get": {
                "summary": "track metadata (course protocol)",
                "parameters": [{"name": "track", "in": "path", "required": True,
                                "schema": {"type": "integer", "minimum": 0}}],
                "responses": {
                    "200": _json("#/components/schemas/Track", "the catalog line of the track"),
                    "400": _err("invalid_track_id: not a non-negative integer"),
                    "404": _err("track_not_found (or not_found)"),
                    "405": COMMON_4XX["405"],
                    "503": _err("unavailable: Redis unreachable or catalog not loaded yet"),
                },
            }},
            "/next/{user}": {"post": _listen_op(
                "the next track for the user (course protocol)", "#/components/schemas/NextAnswer",
                "the recommended track; the listen is recorded and the event logged")},
            "/last/{user}": {"post": _listen_op(
                "end of the user's session (course protocol)", "#/components/schemas/LastAnswer",
                "the session is closed; the listen is recorded and the event logged")},
            "/health": {"get": {"summary": "readiness: Redis reachable and the catalog loaded", "responses": {
                "200": _json("#/components/schemas/Health", "ready"),
                "503": _json("#/components/schemas/Health", "not ready (also carries error and message)"),
                **COMMON_4XX}}},
            "/health/live": {"get": {"summary": "liveness: the process answers", "responses": {
                "200": {"description": "alive", "content": {"application/json": {"schema": {
                    "type": "object", "required": ["status"], "properties": {"status": {"const": "alive"}}}}}},
                **COMMON_4XX}}},
            "/metrics": {"get": {"summary": "Prometheus text format, summed over this server's workers",
                                 "responses": {"200": {"description": "metrics",
                                                       "content": {"text/plain": {"schema": {"type": "string"}}}},
                                               **COMMON_4XX}}},
            "/experiments": {"get": {"summary": "the live experiments config", "responses": {
                "200": _json("#/components/schemas/Experiments", "experiments"), **COMMON_4XX}}},
            "/experiments/{user}": {"get": {
                "summary": "a user's arm in every active experiment",
                "parameters": [USER_PARAM],
                "responses": {
                    "200": _json("#/components/schemas/Assignment", "assignment"),
                    "400": _err("invalid_user"),
                    **COMMON_4XX,
                },
            }},
            "/openapi.json": {"get": {"summary": "this document", "responses": {
                "200": {"description": "OpenAPI 3.1", "content": {"application/json": {"schema": {"type": "object"}}}},
                **COMMON_4XX}}},
        },
        "components": {
            "schemas": {
                "Error": ERROR,
                "Listen": LISTEN,
                "NextAnswer": NEXT_ANSWER,
                "LastAnswer": LAST_ANSWER,
                "Root": ROOT_ANSWER,
                "Track": TRACK,
                "Health": HEALTH,
                "Experiments": EXPERIMENTS,
                "Assignment": ASSIGNMENT,
            }
        },
    }


@lru_cache(maxsize=1)
def openapi_bytes() -> bytes:
    return orjson.dumps(openapi_document())
