"""The Flask app factory, in the style of Flask's tutorial: it only wires the parts.

`create_app(settings)` makes a plain Flask app, keeps the settings in its config,
attaches this process's `Service` with `init_app(app)` (botify.service.core) and
registers the Flask-RESTful `Api` of botify.service.resources. One app, hence one
Service, per worker process.
"""

from __future__ import annotations

import logging
from pathlib import Path

from botify.service.core import init_app
from botify.service.eventlog import install_signal_handlers
from botify.service.resources import register_api
from botify.store.catalog import Catalog
from botify.store.settings import Settings
from flask import Flask

log = logging.getLogger("botify")


def create_app(settings: Settings | None = None, *, catalog: Catalog | None = None) -> Flask:
    """Build the WSGI app for one worker process (see module docstring).

    `catalog`: an already parsed catalog (the server's master passes the one it
    checked, inherited through fork); by default the settings' catalog file is read.
    """
    settings = settings if settings is not None else Settings.load()
    logging.basicConfig(level=getattr(logging, settings.log_level.upper(), logging.INFO))
    app = Flask("botify")
    app.config.from_mapping(
        BOTIFY_SETTINGS=settings,
        MAX_CONTENT_LENGTH=64 * 1024,  # chunked bodies; /next and /last read at most 4 KiB
    )
    service = init_app(app, catalog=catalog)
    register_api(app)
    install_signal_handlers()
    log.info(
        "botify app ready: %d tracks, experiments %s, redis %s, logs in %s",
        service.catalog.size,
        [e.name for e in service.experiments.current.experiments],
        settings.redis_url,
        Path(settings.log_dir),
    )
    return app
