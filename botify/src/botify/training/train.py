"""Train a recommender from event logs and write its COMPAT artifact + meta sidecar.

``python -m botify.train MODEL --logs DIR --out FILE [--catalog CATALOG] [--k 100]
[--seed N] [model flags]``; ``python -m botify.train MODEL --help`` lists the flags.

Only the logs and the *public* catalog are read (the catalog only for its size, so
that no unknown id is ever written); paths under a ``hidden`` directory are refused.

Unless ``--no-eval``, the model is first trained on the temporal train part and
scored on the held-out part (botify.training.evaluate), and those honest numbers go
to ``meta.metrics``; the artifact itself is then trained on all the logs.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson
import pandas as pd
from botify.store.artifacts import Artifact
from botify.training.models import SERVED_BY, TrainError, fit_model, get_model, make_params
from botify.training.models.base import TrainData, params_dict


def catalog_size(path: str | Path) -> int:
    """Number of tracks of a public catalog (JSON lines with ids 0..N-1)."""
    p = Path(path)
    if "hidden" in p.resolve().parts:
        raise TrainError(f"{p}: refusing to read the simulator's hidden files; pass catalog.jsonl")
    if not p.is_file():
        raise TrainError(f"{p}: no such catalog file")
    ids = []
    with p.open("rb") as fh:
        for lineno, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                ids.append(int(orjson.loads(line)["track"]))
            except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
                raise TrainError(f"{p}:{lineno}: not a catalog line with a 'track' id") from None
    if not ids:
        raise TrainError(f"{p}: empty catalog")
    if sorted(ids) != list(range(len(ids))):
        raise TrainError(f"{p}: track ids are not 0..{len(ids) - 1}")
    return len(ids)


def catalog_params(model: str, catalog: str | Path) -> dict[str, Any]:
    """``{"catalog": path}`` for models that read the public catalog (artist_i2i), else {}.

    Callers that train by name with a catalog at hand (CLIs, the lab) pass this as the
    model's params so that such models get the artist names.
    """
    names = {f.name for f in dataclasses.fields(get_model(model).Params)}
    return {"catalog": str(Path(catalog).resolve())} if "catalog" in names else {}


def load_sessionized(logs: Sequence[str | Path], console: Any = None) -> pd.DataFrame:
    """Read every event file under ``logs`` and sessionize (botify.analysis.logs/sessions)."""
    from botify.analysis.logs import read_events
    from botify.analysis.sessions import sessionize

    for d in logs:
        if "hidden" in Path(d).resolve().parts:
            raise TrainError(f"{d}: refusing to read the simulator's hidden files")
    try:
        loaded = read_events(list(logs))
    except FileNotFoundError as exc:
        raise TrainError(str(exc)) from None
    for w in loaded.report.warnings:
        if console is not None:
            console.print(f"[yellow]logs: {w}[/]")
    if len(loaded.events) == 0:
        raise TrainError(f"no events found under {', '.join(map(str, logs))}")
    return sessionize(loaded.events).events


def train_artifact(
    model: str,
    events: pd.DataFrame,
    *,
    n_tracks: int,
    params: dict[str, Any] | None = None,
    k: int = 100,
    seed: int = 0,
    evaluate: bool = True,
    split: str = "auto",
    test_fraction: float = 0.2,
    eval_k: int = 10,
    min_time: float = 0.5,
    progress: bool = False,
) -> tuple[Artifact, dict[str, Any]]:
    """Train ``model`` on sessionized events; return the artifact and its meta dict."""
    from botify.training.evaluate import data_window, evaluate_models, temporal_split

    mod = get_model(model)
    p = make_params(mod, params)
    if k <= 0:
        raise TrainError("--k must be positive")
    metrics: dict[str, Any] | None = None
    if evaluate:
        try:
            tr, te, info = temporal_split(events, split, test_fraction)
            lb = evaluate_models(
                tr, te, info, [model], n_tracks=n_tracks, k=eval_k, min_time=min_time,
                list_len=k, seed=seed, params={model: params_dict(p)}, progress=progress,
            )
            row = lb.table.iloc[0]
            metrics = {c: float(row[c]) for c in ("hit_rate", "ndcg", "mrr", "coverage",
                                                 "pop_pct", "ctx_coverage")}
            metrics.update(k=eval_k, min_time=min_time, n_targets=lb.n_targets,
                           split=dataclasses.asdict(info), protocol="botify.training.evaluate")
        except ValueError as exc:
            metrics = {"skipped": str(exc)}
    data = TrainData.from_events(events, n_tracks)
    t0 = time.perf_counter()
    art = fit_model(model, data, p, k=k, seed=seed,
                    progress=f"{model}, final model on all logs" if progress else False)
    seconds = time.perf_counter() - t0
    if len(art) == 0 or (art.kind == "top" and not art.top):
        raise TrainError(f"{model}: the logs gave nothing to recommend (empty artifact)")
    meta = {
        "model": model,
        "kind": art.kind,
        "served_by": served_by(model, art.kind),
        "params": {**params_dict(p), "k": k, "seed": seed},
        "data_window": data_window(events),
        "n_tracks": n_tracks,
        "rows": len(art),
        "train_seconds": round(seconds, 3),
        "metrics": metrics,
    }
    return art, meta


def served_by(model: str, kind: str) -> str:
    """The service recommender that reads this artifact kind (docs/recommenders.md)."""
    if kind == "user":
        return "indexed"
    if kind == "top":
        return "top_pop"
    return SERVED_BY[model] if SERVED_BY[model] in ("i2i", "contextual") else "i2i"


__all__ = ["TrainError", "catalog_params", "catalog_size", "load_sessionized", "make_params", "served_by", "train_artifact"]
