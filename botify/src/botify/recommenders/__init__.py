"""Recommenders, registered by name (see docs/recommenders.md).

Importing this package imports every module in it, so a new file here with
an `@register("name")` class is enough to use "name" in experiments.yml.
Modules outside the package can be listed under `plugins:` in that file.
"""

from __future__ import annotations

import importlib
import pkgutil

from botify.recommenders.base import (
    REGISTRY,
    Fallback,
    Recommender,
    RequestRng,
    RequestState,
    Services,
    TableReader,
    register,
)
from botify.recommenders.random import random_track

__all__ = [
    "REGISTRY",
    "Fallback",
    "Recommender",
    "RequestRng",
    "RequestState",
    "Services",
    "TableReader",
    "random_track",
    "register",
]


def _discover() -> None:
    for mod in pkgutil.iter_modules(__path__):
        if not mod.name.startswith("_"):
            importlib.import_module(f"{__name__}.{mod.name}")


_discover()
