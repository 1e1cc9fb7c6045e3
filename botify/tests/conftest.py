"""Fixtures for the service tests: a small catalog, settings and an app on the private Redis."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from botify.store.settings import Settings
from botify_svc_helpers import write_tracks, write_yaml


@pytest.fixture
def tracks_file(tmp_path: Path) -> Path:
    return write_tracks(tmp_path / "catalog.jsonl")


@pytest.fixture
def experiments_file(tmp_path: Path) -> Path:
    return write_yaml(
        tmp_path / "experiments.yml",
        "experiments:\n"
        "  - name: STICKY_ARTIST\n"
        "    arms: {C: random, T1: sticky_artist}\n"
        "  - name: AA\n"
        "    arms: {C: random, T1: random}\n",
    )


@pytest.fixture
def settings(tmp_path: Path, redis_url: str, tracks_file: Path, experiments_file: Path) -> Settings:
    return Settings(
        redis_url=redis_url,
        catalog=tracks_file,
        log_dir=tmp_path / "logs",
        experiments_file=experiments_file,
        run_dir=tmp_path / "run",
        namespace="t",
        reload_interval=0.0,
    )


@pytest.fixture
def make_app(settings: Settings) -> Iterator[Callable[..., object]]:
    """Build apps (closing their event logs afterwards) with optional setting overrides."""
    from botify.service.app import create_app

    apps = []

    def make(**overrides: object):  # type: ignore[no-untyped-def]
        app = create_app(settings.with_overrides(**overrides) if overrides else settings)
        apps.append(app)
        return app

    yield make
    for app in apps:
        app.extensions["botify"].eventlog.close()


@pytest.fixture
def app(make_app):  # type: ignore[no-untyped-def]
    return make_app()


@pytest.fixture
def client(app):  # type: ignore[no-untyped-def]
    return app.test_client()
