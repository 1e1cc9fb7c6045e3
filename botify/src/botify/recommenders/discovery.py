"""Loading student recommender files from a folder outside the installed package.

Why a folder and not the package: a student's code is theirs, not botify's; it
lives in `recommenders/` at the repository root (the `recommenders_dir` setting),
next to its test, and survives reinstalling botify. Every `*.py` file there
(except `_*.py` and `test_*.py`) is imported once per process, at start. A file
added or changed later is reported as "new recommender code: restart to load it"
instead of being half-loaded into a running service.
"""

from __future__ import annotations

import importlib.util
import sys
import threading
from pathlib import Path

MODULE_PREFIX = "botify_local_recommenders"
RESTART_MESSAGE = "new recommender code: restart to load it"


class RecommenderCodeError(ValueError):
    """A file in the recommenders folder failed to import; the message names it."""


_lock = threading.Lock()
#: resolved file path -> (mtime_ns, size) when it was imported
_loaded: dict[Path, tuple[int, int]] = {}
#: folders already loaded by this process (a reload of experiments.yml imports nothing new)
_folders: set[Path] = set()


def _files(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.glob("*.py") if not p.name.startswith(("_", "test_")))


def _stamp(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size)


def load_folder(folder: Path | str | None) -> list[Path]:
    """Import every recommender file of `folder`, once per process; the files imported.

    A missing folder is no error (nothing to load). An import error names the file.
    Later calls import nothing: what changed since is reported by `pending`.
    """
    if folder is None:
        return []
    folder = Path(folder)
    with _lock:
        if folder.resolve() in _folders:
            return [p for p in _files(folder) if p.resolve() in _loaded]
        for path in _files(folder):
            key = path.resolve()
            if key in _loaded:
                continue
            stamp = _stamp(path)
            name = f"{MODULE_PREFIX}.{path.stem}"
            spec = importlib.util.spec_from_file_location(name, path)
            if spec is None or spec.loader is None:  # pragma: no cover - a .py file always has a spec
                raise RecommenderCodeError(f"{path}: cannot be imported")
            module = importlib.util.module_from_spec(spec)
            sys.modules[name] = module
            try:
                spec.loader.exec_module(module)
            except Exception as exc:
                sys.modules.pop(name, None)
                raise RecommenderCodeError(f"{path}: {type(exc).__name__}: {exc}") from exc
            _loaded[key] = stamp or (0, 0)
        _folders.add(folder.resolve())
        return [p for p in _files(folder) if p.resolve() in _loaded]


def pending(folder: Path | str | None) -> list[str]:
    """Files of `folder` added or changed since this process imported them (need a restart)."""
    if folder is None:
        return []
    out = []
    for path in _files(Path(folder)):
        old = _loaded.get(path.resolve())
        if old is None or _stamp(path) != old:
            out.append(str(path))
    return out
