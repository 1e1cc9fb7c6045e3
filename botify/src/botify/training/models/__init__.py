"""Trainers that turn event logs into COMPAT recommendation artifacts.

Every model module exposes ``KIND`` (default artifact kind), a ``Params`` dataclass
(its fields become CLI flags) and ``fit(data, params, *, k, seed) -> Artifact``
decorated with ``@model("name", serves="recommender")``: the same idea as
``@register`` for online recommenders, discovered the same way (importing this
package imports every module in it). ``sasrec`` (torch) and ``mf`` (implicit)
import their optional dependencies inside ``fit`` only.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import pkgutil
from types import ModuleType
from typing import Any

from botify.training.models.base import REGISTRY, ModelEntry, model


def _discover() -> None:
    for mod in pkgutil.iter_modules(__path__):
        if not mod.name.startswith("_") and mod.name != "base":
            importlib.import_module(f"{__name__}.{mod.name}")


_discover()

#: model name -> module path (derived from the registry)
MODELS: dict[str, str] = {name: entry.module for name, entry in REGISTRY.items()}

#: model name -> the recommender that serves its default artifact (docs/training.md)
SERVED_BY: dict[str, str] = {name: entry.serves for name, entry in REGISTRY.items()}


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


__all__ = ["MODELS", "REGISTRY", "SERVED_BY", "ModelEntry", "fit_model", "get_model", "model"]


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
