"""The framework floor: a bare Flask app whose endpoint returns a constant.

Served by `python -m botify serve --app bench.floor_app:create_app` on exactly the same
server stack (granian, same workers and threads) as the real service, so that
"/next as % of floor" measures what botify's own code costs, nothing else.
"""

from __future__ import annotations

from typing import Any

from flask import Flask


def create_app(settings: Any = None) -> Flask:
    """A Flask app with /floor (constant JSON) and /health (for the startup wait)."""
    app = Flask("botify_floor")

    @app.get("/floor")
    def floor() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/health")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    return app
