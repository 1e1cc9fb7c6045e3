"""Recommenders, registered by name (see docs/recommenders.md).

Importing this package imports every built-in module in it. Student code lives
outside the package, in the `recommenders/` folder at the repository root (the
`recommenders_dir` setting), loaded by `botify.recommenders.discovery` at start;
modules on the import path can also be listed under `plugins:` in experiments.yml.
"""

from __future__ import annotations

import importlib
import pkgutil

from botify.recommenders.base import (
    REGISTRY,
    CatalogView,
    Context,
    Fallback,
    Recommender,
    RequestRng,
    Table,
    TableReader,
    Track,
    random_track,
    register,
)

__all__ = [
    "REGISTRY",
    "CatalogView",
    "Context",
    "Fallback",
    "Recommender",
    "RequestRng",
    "Table",
    "TableReader",
    "Track",
    "random_track",
    "register",
]


def _discover() -> None:
    for mod in pkgutil.iter_modules(__path__):
        if not mod.name.startswith("_") and mod.name not in ("base", "discovery", "testing"):
            importlib.import_module(f"{__name__}.{mod.name}")


_discover()
