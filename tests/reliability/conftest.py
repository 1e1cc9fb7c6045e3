"""Shared fixtures of the reliability tests (issue 6): catalogs, worlds, private Redis servers.

The helpers that start real service processes and nginx live one level up
(tests/helpers_service.py, tests/helpers_nginx.py); this package only adds what
its scenarios need on top: a Redis server of its own that a test may stop and
start (the session-wide one from the root conftest stays untouched), and small
data written to temporary directories.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

TESTS = Path(__file__).resolve().parents[1]
if str(TESTS) not in sys.path:
    sys.path.insert(0, str(TESTS))

from helpers_service import write_catalog  # noqa: E402


@pytest.fixture(scope="module")
def small_catalog(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 300-track COMPAT catalog (deterministic)."""
    return write_catalog(tmp_path_factory.mktemp("catalog") / "catalog.jsonl", 300, artists=30)


@pytest.fixture(scope="module")
def own_redis(redis_factory: Any) -> Iterator[Any]:
    """A redis-server of this module only, on a new free port: tests may stop and restart it.

    Same class as the root conftest's session server (so the same binary and
    options); the shared server is never touched.
    """
    with redis_factory(prefix="botify-rel-redis-") as server:
        yield server
