"""A/B experiments from config/experiments.yml, and the user -> arm assignment.

Assignment is the course's (docs/interfaces.md section 3): with equal shares
`mmh3.hash(str(user) + name) % n_arms` (MurmurHash3 x86 32-bit, seed 0,
signed, Python modulo), arms ordered C, T1, T2, ...; with explicit shares
`mmh3.hash(str(user) + name, signed=False) % 10000 / 10000` mapped onto the
cumulative shares. A pure function of (user, name): stable across
processes, replicas and restarts.

The config also names recommender instances (a registered class plus
parameters such as the table it reads and its fallback chain), so that two
arms can run the same class on two different tables. The classes come from
botify.recommenders, the student folder (`recommenders_dir`, loaded here at
start) and the modules listed under `plugins:`.
"""

from __future__ import annotations

import importlib
import logging
import os
import re
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mmh3
import yaml
from botify.recommenders import REGISTRY, Context, Recommender
from botify.recommenders.discovery import (
    RESTART_MESSAGE,
    RecommenderCodeError,
    load_folder,
    pending,
)

log = logging.getLogger("botify.service.experiments")

_ARM_RE = re.compile(r"^(C|T[1-9][0-9]?)$")
_NAME_RE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


class ExperimentConfigError(ValueError):
    """experiments.yml is invalid; the message says where."""


def _arm_order(arm: str) -> int:
    return 0 if arm == "C" else int(arm[1:])


@dataclass(frozen=True)
class Experiment:
    name: str
    arms: tuple[str, ...]  # ordered C, T1, T2, ...
    recommenders: tuple[str, ...]  # instance name per arm
    shares: tuple[float, ...] | None = None  # cumulative upper bounds, None = equal

    def arm_index(self, user: int) -> int:
        key = str(user) + self.name
        if self.shares is None:
            return mmh3.hash(key) % len(self.arms)
        u = mmh3.hash(key, signed=False) % 10000 / 10000
        for i, bound in enumerate(self.shares):
            if u < bound:
                return i
        return len(self.arms) - 1

    def arm(self, user: int) -> str:
        return self.arms[self.arm_index(user)]


@dataclass
class ExperimentSet:
    """The parsed config: active experiments and the recommender instances they use."""

    experiments: tuple[Experiment, ...]
    instances: dict[str, Recommender]
    default: str

    def assign(self, user: int) -> tuple[dict[str, str], str, str | None, str | None]:
        """(arms of every active experiment, serving instance, serving experiment, its arm)."""
        arms: dict[str, str] = {}
        serving = self.default
        serving_exp: str | None = None
        serving_arm: str | None = None
        for i, exp in enumerate(self.experiments):
            idx = exp.arm_index(user)
            arms[exp.name] = exp.arms[idx]
            if i == 0:
                serving = exp.recommenders[idx]
                serving_exp, serving_arm = exp.name, exp.arms[idx]
        return arms, serving, serving_exp, serving_arm

    def table_names(self) -> set[str]:
        return {t for inst in self.instances.values() for t in inst.table_names}

    def describe(self) -> list[dict[str, Any]]:
        return [
            {
                "name": e.name,
                "arms": dict(zip(e.arms, e.recommenders, strict=True)),
                "shares": None
                if e.shares is None
                else {a: round(b - (e.shares[i - 1] if i else 0.0), 6) for i, (a, b) in enumerate(zip(e.arms, e.shares, strict=True))},
            }
            for e in self.experiments
        ]


def parse_experiments(
    data: Any, ctx: Context, default: str = "random", source: str = "experiments", code_dir: Path | None = None
) -> ExperimentSet:
    """Validate the config mapping and build the recommender instances it needs.

    `ctx` must hold the real catalog: a recommender may read it in `configure`.
    `code_dir` is the student folder, imported here once per process.
    """
    if ctx is None or ctx.catalog is None:
        raise ExperimentConfigError(f"{source}: recommenders are built with a catalog: pass a Context")
    try:
        load_folder(code_dir)
    except RecommenderCodeError as exc:
        raise ExperimentConfigError(f"{source}: recommender code: {exc}") from exc
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise ExperimentConfigError(f"{source}: top level must be a mapping")
    unknown = set(data) - {"experiments", "recommenders", "plugins", "default"}
    if unknown:
        raise ExperimentConfigError(f"{source}: unknown key(s) {sorted(unknown)}")
    for module in data.get("plugins") or []:
        try:
            importlib.import_module(str(module))
        except ImportError as exc:
            raise ExperimentConfigError(f"{source}: cannot import plugin {module!r}: {exc}") from exc
    specs: dict[str, dict[str, Any]] = {name: {"class": name} for name in REGISTRY}
    for name, spec in (data.get("recommenders") or {}).items():
        if not isinstance(name, str) or not _NAME_RE.match(name):
            raise ExperimentConfigError(f"{source}: bad recommender name {name!r}")
        if not isinstance(spec, Mapping):
            raise ExperimentConfigError(f"{source}: recommenders.{name} must be a mapping")
        specs[name] = dict(spec)
        specs[name].setdefault("class", name)
    default = str(data.get("default", default))
    experiments: list[Experiment] = []
    seen: set[str] = set()
    for i, raw in enumerate(data.get("experiments") or []):
        where = f"{source}: experiments[{i}]"
        if not isinstance(raw, Mapping):
            raise ExperimentConfigError(f"{where} must be a mapping")
        extra = set(raw) - {"name", "arms", "shares", "enabled", "description"}
        if extra:
            raise ExperimentConfigError(f"{where}: unknown key(s) {sorted(extra)}")
        name = raw.get("name")
        if not isinstance(name, str) or not _NAME_RE.match(name):
            raise ExperimentConfigError(f"{where}: 'name' must match {_NAME_RE.pattern}")
        if name in seen:
            raise ExperimentConfigError(f"{where}: duplicate experiment {name}")
        seen.add(name)
        arms_raw = raw.get("arms")
        if not isinstance(arms_raw, Mapping) or not 2 <= len(arms_raw) <= 10:
            raise ExperimentConfigError(f"{where}: 'arms' must map 2 to 10 arms to recommenders")
        for arm in arms_raw:
            if not isinstance(arm, str) or not _ARM_RE.match(arm):
                raise ExperimentConfigError(f"{where}: arm {arm!r} must be C, T1, T2, ...")
        arms = tuple(sorted(arms_raw, key=_arm_order))
        expected = ("C", *(f"T{k}" for k in range(1, len(arms))))
        if arms != expected:
            raise ExperimentConfigError(f"{where}: arms must be exactly {', '.join(expected)}")
        recs = tuple(str(arms_raw[a]) for a in arms)
        for r in recs:
            if r not in specs and pending(code_dir):
                raise ExperimentConfigError(f"{where}: recommender {r!r}: {RESTART_MESSAGE} ({', '.join(pending(code_dir))})")
            if r not in specs:
                raise ExperimentConfigError(f"{where}: unknown recommender {r!r} (known: {sorted(specs)})")
        shares = None
        if raw.get("shares") is not None:
            sh = raw["shares"]
            if not isinstance(sh, Mapping) or set(sh) != set(arms):
                raise ExperimentConfigError(f"{where}: 'shares' must give a share for every arm")
            values = []
            for a in arms:
                v = sh[a]
                if isinstance(v, bool) or not isinstance(v, int | float) or not 0 <= v <= 1:
                    raise ExperimentConfigError(f"{where}: share of {a} must be a number in [0, 1]")
                values.append(float(v))
            if abs(sum(values) - 1.0) > 1e-6:
                raise ExperimentConfigError(f"{where}: shares must sum to 1, got {sum(values)}")
            cum, acc = [], 0.0
            for v in values:
                acc += v
                cum.append(acc)
            cum[-1] = 1.0 + 1e-9
            shares = tuple(cum)
        if raw.get("enabled", True) is False:
            continue
        experiments.append(Experiment(name=name, arms=arms, recommenders=recs, shares=shares))
    if default not in specs:
        raise ExperimentConfigError(f"{source}: unknown default recommender {default!r}")
    # Build only the instances reachable from arms, default and fallback chains.
    instances: dict[str, Recommender] = {}
    todo = [default, *(r for e in experiments for r in e.recommenders), "random"]
    while todo:
        name = todo.pop()
        if name in instances:
            continue
        spec = dict(specs[name]) if name in specs else None
        if spec is None:
            raise ExperimentConfigError(f"{source}: unknown recommender {name!r} in a fallback chain")
        cls_name = spec.pop("class")
        cls = REGISTRY.get(cls_name)
        if cls is None:
            new = pending(code_dir)
            if new:
                raise ExperimentConfigError(
                    f"{source}: recommenders.{name}: class {cls_name!r}: {RESTART_MESSAGE} ({', '.join(new)})"
                )
            raise ExperimentConfigError(f"{source}: recommenders.{name}: unknown class {cls_name!r}")
        try:
            inst = cls(ctx, name=name, **spec)
        except (TypeError, ValueError) as exc:
            raise ExperimentConfigError(f"{source}: recommenders.{name}: {exc}") from exc
        instances[name] = inst
        todo.extend(inst.fallbacks)
    return ExperimentSet(experiments=tuple(experiments), instances=instances, default=default)


def load_experiments_file(
    path: Path, ctx: Context, default: str = "random", code_dir: Path | None = None
) -> ExperimentSet:
    """Parse experiments.yml; a missing file means no experiments (serve `default`)."""
    path = Path(path)
    if not path.exists():
        log.warning("no experiments file at %s: every request is served by %r", path, default)
        return parse_experiments({}, ctx, default, str(path), code_dir)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ExperimentConfigError(f"{path}: cannot read: {exc}") from exc
    return parse_experiments(data, ctx, default, str(path), code_dir)


def load_experiments(path: Path, ctx: Context, default: str = "random", code_dir: Path | None = None) -> ExperimentSet:
    """Parse and validate experiments.yml (preflight checks, tests): the file must exist."""
    if not Path(path).exists():
        raise ExperimentConfigError(f"{path}: no such file")
    return load_experiments_file(path, ctx, default, code_dir)


class ExperimentsHolder:
    """The live ExperimentSet, reloaded when the file's mtime changes.

    The check is one os.stat at most every `interval` seconds; a broken new
    file is refused (logged) and the previous config stays live.
    """

    def __init__(
        self,
        path: Path,
        ctx: Context,
        default: str,
        interval: float = 1.0,
        on_reload: Any = None,
        code_dir: Path | None = None,
    ) -> None:
        self.path = Path(path)
        self.ctx = ctx
        self.code_dir = code_dir
        self.default = default
        self.interval = interval
        self.on_reload = on_reload
        self._stamp = self._stat()
        self.current = load_experiments_file(self.path, ctx, default, code_dir)
        self._next_check = time.monotonic() + interval
        self._lock = threading.Lock()
        self.last_error: str | None = None

    def _stat(self) -> tuple[int, int] | None:
        try:
            st = os.stat(self.path)
            return (st.st_mtime_ns, st.st_size)
        except OSError:
            return None

    def get(self) -> ExperimentSet:
        now = time.monotonic()
        if now >= self._next_check and self._lock.acquire(blocking=False):
            try:
                self._next_check = now + self.interval
                stamp = self._stat()
                if stamp != self._stamp:
                    self._stamp = stamp
                    self.reload()
            finally:
                self._lock.release()
        return self.current

    def reload(self) -> bool:
        try:
            new = load_experiments_file(self.path, self.ctx, self.default, self.code_dir)
        except ExperimentConfigError as exc:
            self.last_error = str(exc)
            log.error("experiments reload refused, keeping the previous config: %s", exc)
            if self.on_reload:
                self.on_reload("experiments", "error")
            return False
        self.current = new
        self.last_error = None
        log.info("experiments reloaded from %s: %s", self.path, [e.name for e in new.experiments])
        if self.on_reload:
            self.on_reload("experiments", "ok")
        return True
