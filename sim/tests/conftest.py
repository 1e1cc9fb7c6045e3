"""Shared fixtures of the simulator's tests: one small world per test session.

Generation happens once (session scope); tests that need to damage a world
copy it first. Nothing here touches the network beyond loopback test servers.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # for `import testserver`

SMALL_WORLD = {"seed": 7, "n_tracks": 2000, "n_users": 300}


@pytest.fixture(scope="session")
def small_world_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2000-track / 300-user world generated with sim.world.generate (read-only for tests)."""
    from sim.world import generate

    return generate(out=tmp_path_factory.mktemp("sim-world") / "world", **SMALL_WORLD)


@pytest.fixture(scope="session")
def small_world(small_world_dir: Path):
    from sim.world import World

    return World.load(small_world_dir)


@pytest.fixture
def world_copy(small_world_dir: Path, tmp_path: Path) -> Path:
    """A private copy of the small world that a test may break."""
    dst = tmp_path / "world"
    shutil.copytree(small_world_dir, dst)
    return dst

