"""The Flask app factory, in the style of Flask's tutorial: it only wires the parts.

One `Service` per worker process (botify.service.core) is attached to the app as
`app.extensions["botify"]`; the resources (botify.service.resources) are mounted on it.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from botify.service.core import Service
from botify.service.eventlog import install_signal_handlers
from botify.service.resources import register_api
from botify.store.catalog import Catalog
from botify.store.settings import Settings
from flask import Flask
from flask.sessions import SessionInterface

log = logging.getLogger("botify")


class _NoSessions(SessionInterface):
    """botify has no sessions (no cookies, no secret key): skip Flask's per-request
    signing-serializer lookup and the NullSession built for every request."""

    null = None

    def open_session(self, app: Flask, request: Any) -> Any:
        null = self.null
        if null is None:
            null = self.null = self.make_null_session(app)
        return null

    def save_session(self, app: Flask, session: Any, response: Any) -> None:
        return None


class BotifyFlask(Flask):
    """Flask without sessions, whose ensure_sync is memoised: botify's views and hooks are all sync.

    Flask calls ensure_sync (an inspect.iscoroutinefunction check) for the view and
    every hook on every request; the answer never changes for a given function.
    """

    def ensure_sync(self, func: Any) -> Any:
        # keyed by the plain function: Flask-RESTful hands in a new bound method per request
        key = getattr(func, "__func__", func)
        sync: set[Any] = self.__dict__.setdefault("_botify_sync", set())
        if key in sync:
            return func
        wrapped = super().ensure_sync(func)
        if wrapped is func and len(sync) < 1024:
            sync.add(key)
        return wrapped


def create_app(settings: Settings | None = None, *, catalog: Catalog | None = None) -> Flask:
    """Build the WSGI app for one worker process (see module docstring)."""
    settings = settings if settings is not None else Settings.load()
    logging.basicConfig(level=getattr(logging, settings.log_level.upper(), logging.INFO))
    service = Service(settings, catalog=catalog)
    app = BotifyFlask("botify")
    app.session_interface = _NoSessions()
    app.config["MAX_CONTENT_LENGTH"] = 64 * 1024
    app.config["JSON_SORT_KEYS"] = False
    app.extensions["botify"] = service
    register_api(app, service)
    install_signal_handlers()
    log.info(
        "botify app ready: %d tracks, experiments %s, redis %s, logs in %s",
        service.catalog.size,
        [e.name for e in service.experiments.current.experiments],
        settings.redis_url,
        Path(settings.log_dir),
    )
    return app

