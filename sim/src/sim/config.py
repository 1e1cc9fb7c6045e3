"""The simulator's YAML config: strict loading with one-line errors.

Why strict: a typo in a config key silently falling back to a default would
make an A/B test measure something other than what its author believes. So an
unknown key, a wrong type or an out-of-range value stops the run with a
message naming the field (``ConfigError``; the CLI turns it into exit code 2).

Relative paths (``world``) are resolved against the current working
directory, like every other path given on the command line; the repository's
``config/env.yml`` says ``data/world`` and is meant to be used from the
repository root (``python -m sim.run --config config/env.yml ...``).
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from sim.client import ClientOptions


class ConfigError(ValueError):
    """A bad config value or a missing data file; the message is one line."""


@dataclass(frozen=True)
class ServiceConfig:
    """Where the service listens and how hard the remote agent tries to reach it."""

    host: str = "127.0.0.1"
    port: int = 5001
    timeout: float = 5.0  # seconds to wait for one answer
    connect_timeout: float = 2.0
    retries: int = 3  # extra attempts after a connection error, timeout or 5xx
    backoff: float = 0.1  # first retry delay (s), doubled per attempt
    backoff_max: float = 2.0
    concurrency: int = 16  # sessions in flight; --concurrency overrides

    def client_options(self) -> ClientOptions:
        return ClientOptions(
            host=self.host,
            port=self.port,
            timeout=self.timeout,
            connect_timeout=self.connect_timeout,
            retries=self.retries,
            backoff=self.backoff,
            backoff_max=self.backoff_max,
        )


_SERVICE_RULES: dict[str, Callable[[Any], bool]] = {
    "host": lambda v: len(v) > 0,
    "port": lambda v: 1 <= v <= 65535,
    "timeout": lambda v: 0 < v <= 3600,
    "connect_timeout": lambda v: 0 < v <= 3600,
    "retries": lambda v: 0 <= v <= 100,
    "backoff": lambda v: 0 <= v <= 60,
    "backoff_max": lambda v: 0 <= v <= 600,
    "concurrency": lambda v: 1 <= v <= 10000,
}
_SERVICE_RANGES = {
    "host": "a non-empty string",
    "port": "1..65535",
    "timeout": "in (0, 3600]",
    "connect_timeout": "in (0, 3600]",
    "retries": "0..100",
    "backoff": "0..60",
    "backoff_max": "0..600",
    "concurrency": "1..10000",
}


@dataclass(frozen=True)
class SimConfig:
    """The whole config file, validated."""

    world: Path
    service: ServiceConfig = field(default_factory=ServiceConfig)
    user_model: dict[str, Any] = field(default_factory=dict)  # checked against UserModelParams
    source: Path | None = None  # the file it came from, for messages

    realism: str | None = None  # the command line's --realism, overriding the file's

    def model_params(self) -> Any:
        """The ``user_model`` section as ``sim.model.UserModelParams``."""
        return build_params(self.user_model, self.source, self.realism)


_TOP_KEYS = ("world", "service", "user_model")


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", str(tp))


def check_value(where: str, value: Any, tp: Any) -> Any:
    """Check ``value`` against a simple annotation (int, float, bool, str, X | None, list[X]).

    Ints are accepted for floats (YAML ``1`` for ``1.0``); bools are never
    accepted as numbers (YAML ``yes`` is a bool, and a bool is not a count).
    """
    if isinstance(tp, str):
        tp = {"int": int, "float": float, "bool": bool, "str": str}.get(tp, Any)
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return check_value(where, value, a)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(errors[0] if errors else f"{where}: bad value {value!r}")
    if origin in (list, tuple):
        (inner, *_) = typing.get_args(tp) or (Any,)
        if not isinstance(value, list):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        return [check_value(f"{where}[{i}]", v, inner) for i, v in enumerate(value)]
    if tp is Any:
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        if not math.isfinite(value):
            raise ConfigError(f"{where}: expected a finite number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return value
    if isinstance(tp, type) and not isinstance(value, tp):
        raise ConfigError(f"{where}: expected {_type_name(tp)}, got {value!r}")
    return value


def _unknown(where: str, key: Any, allowed: typing.Iterable[str]) -> ConfigError:
    return ConfigError(
        f"{where}: unknown key {key!r} (allowed: {', '.join(sorted(allowed))})"
    )


def _section(data: Mapping[str, Any], key: str, prefix: str) -> Mapping[str, Any]:
    value = data.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ConfigError(f"{prefix}{key}: expected a mapping, got {value!r}")
    return value


def parse_config(data: Any, source: Path | None = None, base: Path | None = None) -> SimConfig:
    """Validate a parsed YAML document. ``base`` anchors relative paths (default: cwd)."""
    prefix = f"{source}: " if source else "config: "
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{prefix}expected a mapping at the top level, got {type(data).__name__}")
    for key in data:
        if key not in _TOP_KEYS:
            raise _unknown(f"{prefix.rstrip(': ') or 'config'}", key, _TOP_KEYS)

    world_raw = data.get("world", "data/world")
    world_raw = check_value(f"{prefix}world", world_raw, str)
    if not world_raw:
        raise ConfigError(f"{prefix}world: must name a directory")
    world = Path(world_raw).expanduser()
    if not world.is_absolute():
        world = (base or Path.cwd()) / world

    svc_raw = _section(data, "service", prefix)
    svc_kwargs: dict[str, Any] = {}
    hints = typing.get_type_hints(ServiceConfig)
    for key, value in svc_raw.items():
        if key not in _SERVICE_RULES:
            raise _unknown(f"{prefix}service", key, _SERVICE_RULES)
        v = check_value(f"{prefix}service.{key}", value, hints[key])
        if not _SERVICE_RULES[key](v):
            raise ConfigError(f"{prefix}service.{key}: {v!r} out of range ({_SERVICE_RANGES[key]})")
        svc_kwargs[key] = v
    service = ServiceConfig(**svc_kwargs)

    user_model = dict(_section(data, "user_model", prefix))
    cfg = SimConfig(world=world, service=service, user_model=user_model, source=source)
    build_params(user_model, source)  # fail early on a bad user_model section
    return cfg


def build_params(section: Mapping[str, Any], source: Path | None = None,
                 realism: str | None = None) -> Any:
    """Map the ``user_model`` section onto ``sim.model.UserModelParams`` by field name.

    ``realism`` (the section's, or the command line's when given) picks the
    preset the other keys are applied on top of.
    """
    from sim.model import PRESETS, UserModelParams

    prefix = f"{source}: " if source else "config: "
    known = {f.name: f for f in dataclasses.fields(UserModelParams)}
    hints = typing.get_type_hints(UserModelParams)
    section = dict(section)
    chosen = check_value(f"{prefix}user_model.realism", section.pop("realism", "course"), str)
    if realism is not None:
        chosen = realism
    if chosen not in PRESETS:
        raise ConfigError(f"{prefix}user_model.realism: {chosen!r} is not one of "
                          f"{', '.join(PRESETS)}")
    kwargs = {}
    for key, value in section.items():
        if key not in known:
            raise _unknown(f"{prefix}user_model", key, known)
        kwargs[key] = check_value(f"{prefix}user_model.{key}", value, hints.get(key, Any))
    try:
        params = UserModelParams.preset(chosen, **kwargs)
        validate = getattr(params, "validate", None)
        if callable(validate):
            validate()
    except (ValueError, TypeError) as e:
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        if not msg.startswith("user_model."):
            msg = f"user_model: {msg}"
        raise ConfigError(f"{prefix}{msg}") from None
    return params


def load_config(path: str | Path) -> SimConfig:
    """Read and validate a config file; every failure is a one-line ConfigError."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {p}") from None
    except OSError as e:
        raise ConfigError(f"cannot read config file {p}: {e.strerror or e}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        problem = getattr(e, "problem", None) or "invalid YAML"
        raise ConfigError(f"{p}:{where} {problem}") from None
    return parse_config(data, source=p)
