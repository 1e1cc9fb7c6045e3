"""Trainers that turn event logs into COMPAT recommendation artifacts.

Every model module exposes ``KIND`` (default artifact kind), a ``Params`` dataclass
(its fields become CLI flags) and ``fit(data, params, *, k, seed) -> Artifact``.
Modules are imported on demand so that ``sasrec`` (torch) and ``mf`` (implicit) are
only needed when used.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
from types import ModuleType
from typing import Any

MODELS: dict[str, str] = {
    "top_pop": "botify.training.models.top_pop",
    "i2i": "botify.training.models.i2i",
    "contextual": "botify.training.models.contextual",
    "mf": "botify.training.models.mf",
    "sasrec": "botify.training.models.sasrec",
    "artist_i2i": "botify.training.models.artist_i2i",
}

# Which service recommender serves each model's default artifact (docs/training.md).
SERVED_BY: dict[str, str] = {
    "top_pop": "top_pop",
    "i2i": "i2i",
    "contextual": "contextual",
    "mf": "indexed",
    "sasrec": "i2i",
    "artist_i2i": "i2i",
}


def get_model(name: str) -> ModuleType:
    """The trainer module for ``name``; a clear error for unknown names or missing extras."""
    try:
        path = MODELS[name]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; choose from {', '.join(MODELS)}") from None
    try:
        return importlib.import_module(path)
    except ImportError as exc:  # pragma: no cover - depends on installed extras
        raise ImportError(
            f"model {name!r} needs an optional dependency ({exc.name}); "
            "install it with: make install-train (or pip install -e './botify[train]')"
        ) from exc


def fit_model(name: str, data: Any, params: Any, *, k: int, seed: int,
              progress: bool | str = False) -> Any:
    """Run ``name``'s fit; a missing optional dependency becomes a one-line hint."""
    mod = get_model(name)
    kw: dict[str, Any] = {"k": k, "seed": seed}
    if "progress" in inspect.signature(mod.fit).parameters:
        kw["progress"] = progress
    try:
        return mod.fit(data, params, **kw)
    except ImportError as exc:
        raise ImportError(
            f"model {name!r} needs an optional dependency ({exc.name or exc}); "
            "install it with: make install-train (or pip install -e './botify[train]')"
        ) from exc


__all__ = ["MODELS", "SERVED_BY", "fit_model", "get_model"]


class TrainError(Exception):
    """A user-facing training failure (printed as one line by the CLI)."""


def make_params(module: ModuleType, overrides: dict[str, Any] | None = None) -> Any:
    """The model's Params with ``overrides`` applied; unknown names are an error."""
    cls = module.Params
    names = {f.name for f in dataclasses.fields(cls)}
    bad = sorted(set(overrides or {}) - names)
    if bad:
        raise TrainError(f"unknown parameter(s) {bad} for {module.__name__.rsplit('.', 1)[-1]}")
    p = cls(**(overrides or {}))
    for f in dataclasses.fields(cls):
        choices = f.metadata.get("choices")
        if choices and getattr(p, f.name) not in choices:
            raise TrainError(f"{f.name} must be one of {choices}, got {getattr(p, f.name)!r}")
    return p
