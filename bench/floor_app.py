"""The framework floors: bare Flask endpoints, without and with one Redis round trip.

Served by `python -m botify serve --app bench.floor_app:create_app` on exactly the same
server stack (granian, same workers and threads, same embedded Redis) as the real
service, so that "/next as % of floor" measures what botify's own code costs.

- `GET /floor`: returns a constant (the floor the issue defines).
- `POST /next/<user>`: reads the body (the same requests bench/next.lua sends to botify),
  sends one PING to Redis through the same client as botify (redis-py with hiredis,
  botify.store.connect) and returns a constant. Any service that keeps per-user state in Redis pays at least this
  round trip per request: it is the ceiling for such a service on this machine.
"""

from __future__ import annotations

from typing import Any

from botify.store import connect
from flask import Flask, request


def create_app(settings: Any = None) -> Flask:
    """A Flask app with /floor, /next/<user> (one Redis round trip) and /health."""
    app = Flask("botify_floor")
    client = connect(settings.redis_url) if settings is not None and settings.redis_url else None

    @app.get("/floor")
    def floor() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/next/<int:user>")
    def next_with_redis(user: int) -> dict[str, int]:
        request.get_data()
        if client is None:
            raise RuntimeError("no Redis URL in the settings")
        client.execute_command("PING")
        return {"user": user, "track": 0}

    @app.get("/health")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    return app
