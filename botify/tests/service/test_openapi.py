"""GET /openapi.json stays true: real answers, good and bad, validate against it."""

from __future__ import annotations

import re

import jsonschema
import pytest
from botify.service.openapi import openapi_document

REQUESTS = [
    ("GET", "/", None),
    ("GET", "/track/3", None),
    ("GET", "/track/999", None),
    ("GET", "/track/x", None),
    ("POST", "/next/1", {"track": 3, "time": 0.4}),
    ("POST", "/next/1", {"track": None, "time": 0.4}),
    ("POST", "/next/-5", {"track": 3, "time": 0.4}),
    ("POST", "/next/1", b"{"),
    ("POST", "/next/1", {"track": 3}),
    ("POST", "/next/1", {"track": 3, "time": 2}),
    ("POST", "/next/1", {"track": 999, "time": 0.5}),
    ("POST", "/next/1", b"x" * 5000),
    ("POST", "/last/1", {"track": 3, "time": 0.4}),
    ("POST", "/last/1", [1]),
    ("GET", "/next/1", None),
    ("DELETE", "/last/1", None),
    ("GET", "/health", None),
    ("GET", "/health/live", None),
    ("GET", "/metrics", None),
    ("GET", "/experiments", None),
    ("GET", "/experiments/12", None),
    ("GET", "/experiments/zz", None),
    ("GET", "/openapi.json", None),
    ("POST", "/", None),
]


def _resolve(doc: dict, schema: dict) -> dict:
    """Inline the document's components so jsonschema can validate standalone."""
    return {**schema, "components": doc["components"]} if "$ref" not in schema else {
        "$ref": schema["$ref"], "components": doc["components"]}


def _match_path(doc: dict, path: str) -> str | None:
    for template in doc["paths"]:
        regex = "^" + re.sub(r"\{[^}]+\}", "[^/]+", template) + "$"
        if re.match(regex, path):
            return template
    return None


def test_document_is_openapi_3(client) -> None:  # type: ignore[no-untyped-def]
    doc = client.get("/openapi.json").json
    assert doc == openapi_document() and doc["openapi"].startswith("3.")
    for schema in doc["components"]["schemas"].values():
        jsonschema.Draft202012Validator.check_schema(schema)


def test_every_route_is_documented(app) -> None:  # type: ignore[no-untyped-def]
    doc = openapi_document()
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static":
            continue
        template = re.sub(r"<(?:[^:>]+:)?([^>]+)>", r"{\1}", rule.rule)
        assert template in doc["paths"], template
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            assert method.lower() in doc["paths"][template], (template, method)


@pytest.mark.parametrize(("method", "path", "body"), REQUESTS)
def test_real_answers_validate(client, method: str, path: str, body: object) -> None:  # type: ignore[no-untyped-def]
    doc = openapi_document()
    if isinstance(body, bytes):
        r = client.open(path, method=method, data=body, content_type="application/json")
    elif body is not None:
        r = client.open(path, method=method, json=body)
    else:
        r = client.open(path, method=method)
    assert r.status_code < 500
    template = _match_path(doc, path)
    assert template is not None
    op = doc["paths"][template].get(method.lower())
    if op is None:  # a method the route does not have: must be the documented 405
        assert r.status_code == 405
        op = next(iter(doc["paths"][template].values()))
    responses = op["responses"]
    assert str(r.status_code) in responses, (path, r.status_code)
    content = responses[str(r.status_code)]["content"]
    media = r.mimetype
    assert media in content, (path, media)
    if media == "application/json":
        jsonschema.validate(r.json, _resolve(doc, content[media]["schema"]))
    # the request body, when the operation declares one and we sent a valid one, matches it too
    if r.status_code == 200 and "requestBody" in op and isinstance(body, dict):
        jsonschema.validate(body, _resolve(doc, op["requestBody"]["content"]["application/json"]["schema"]))


def test_a_wrong_answer_would_be_caught() -> None:
    doc = openapi_document()
    schema = _resolve(doc, {"$ref": "#/components/schemas/NextAnswer"})
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"user": 1, "track": "7"}, schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"error": "made_up", "message": "x"}, _resolve(doc, {"$ref": "#/components/schemas/Error"}))
