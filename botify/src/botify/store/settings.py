"""Service settings: one YAML file, then environment variables on top.

Why a single dataclass: every knob of the service is visible in one place,
documented in one table (docs/configuration.md), and the same object is
handed to the app factory, the loaders and the serving layer.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import yaml


class ConfigError(ValueError):
    """A setting is missing, misspelled or out of range."""


def _env(name: str) -> dict[str, str]:
    return {"env": name}


@dataclass
class Settings:
    """All settings of the botify service (see docs/configuration.md)."""

    redis_url: str | None = field(default=None, metadata=_env("BOTIFY_REDIS_URL"))
    catalog: Path = field(default=Path("data/world/catalog.jsonl"), metadata=_env("BOTIFY_CATALOG"))
    log_dir: Path = field(default=Path("logs"), metadata=_env("BOTIFY_LOG_DIR"))
    experiments_file: Path = field(
        default=Path("config/experiments.yml"), metadata=_env("BOTIFY_EXPERIMENTS")
    )
    recommenders_dir: Path = field(default=Path("recommenders"), metadata=_env("BOTIFY_RECOMMENDERS_DIR"))
    host: str = field(default="127.0.0.1", metadata=_env("BOTIFY_HOST"))
    port: int = field(default=5001, metadata=_env("BOTIFY_PORT"))
    workers: int = field(default=2, metadata=_env("BOTIFY_WORKERS"))
    namespace: str = field(default="botify", metadata=_env("BOTIFY_NAMESPACE"))
    log_max_bytes: int = field(default=64 * 1024 * 1024, metadata=_env("BOTIFY_LOG_MAX_BYTES"))
    log_rejected: bool = field(default=True, metadata=_env("BOTIFY_LOG_REJECTED"))
    run_dir: Path = field(default=Path("run"), metadata=_env("BOTIFY_RUN_DIR"))
    metrics_dir: Path | None = field(default=None, metadata=_env("BOTIFY_METRICS_DIR"))
    seed: int = field(default=31337, metadata=_env("BOTIFY_SEED"))
    default_recommender: str = field(default="random", metadata=_env("BOTIFY_DEFAULT_RECOMMENDER"))
    recent_listens: int = field(default=50, metadata=_env("BOTIFY_RECENT_LISTENS"))
    recent_ttl: int = field(default=7 * 24 * 3600, metadata=_env("BOTIFY_RECENT_TTL"))
    session_ttl: int = field(default=6 * 3600, metadata=_env("BOTIFY_SESSION_TTL"))
    redis_timeout: float = field(default=0.5, metadata=_env("BOTIFY_REDIS_TIMEOUT"))
    redis_retry_interval: float = field(default=1.0, metadata=_env("BOTIFY_REDIS_RETRY_INTERVAL"))
    reload_interval: float = field(default=1.0, metadata=_env("BOTIFY_RELOAD_INTERVAL"))
    catalog_load_timeout: float = field(default=60.0, metadata=_env("BOTIFY_CATALOG_LOAD_TIMEOUT"))
    table_cache_rows: int = field(default=200_000, metadata=_env("BOTIFY_TABLE_CACHE_ROWS"))
    table_warm: bool = field(default=True, metadata=_env("BOTIFY_TABLE_WARM"))
    table_keep_versions: int = field(default=3, metadata=_env("BOTIFY_TABLE_KEEP_VERSIONS"))
    log_level: str = field(default="INFO", metadata=_env("BOTIFY_LOG_LEVEL"))

    @property
    def metrics_path(self) -> Path:
        """Parent of each server run's prometheus_client multiprocess directory (botify.service.metrics)."""
        return self.metrics_dir if self.metrics_dir is not None else self.run_dir / "metrics"

    @classmethod
    def env_names(cls) -> dict[str, str]:
        """Field name -> environment variable that overrides it."""
        return {f.name: f.metadata["env"] for f in fields(cls)}

    @classmethod
    def load(
        cls, config_file: Path | None = None, env: Mapping[str, str] | None = None
    ) -> Settings:
        """Defaults, then the YAML file (argument, else $BOTIFY_CONFIG), then env vars."""
        env = os.environ if env is None else env
        if config_file is None and env.get("BOTIFY_CONFIG"):
            config_file = Path(env["BOTIFY_CONFIG"])
        values: dict[str, Any] = {}
        if config_file is not None:
            values.update(_read_yaml(Path(config_file)))
        for name, var in cls.env_names().items():
            if var in env:
                values[name] = env[var]
        return cls.from_mapping(values)

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> Settings:
        """Build settings from loosely typed values (YAML scalars or env strings)."""
        known = {f.name: f for f in fields(cls)}
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise ConfigError(f"unknown setting(s): {', '.join(unknown)}")
        kwargs: dict[str, Any] = {}
        for name, raw in values.items():
            kwargs[name] = _coerce(name, known[name].type, raw)
        settings = cls(**kwargs)
        settings.validate()
        return settings

    def with_overrides(self, **changes: Any) -> Settings:
        """A copy with some fields changed (typed values), validated."""
        settings = replace(self, **changes)
        settings.validate()
        return settings

    def validate(self) -> None:
        """Reject values that would only fail later, far from their cause."""
        if not 0 < self.port < 65536:
            raise ConfigError(f"port must be in 1..65535, got {self.port}")
        if self.workers < 1:
            raise ConfigError(f"workers must be >= 1, got {self.workers}")
        if not self.namespace or any(c in self.namespace for c in " :{}*"):
            raise ConfigError(f"namespace must be non-empty without ' :{{}}*', got {self.namespace!r}")
        if self.log_max_bytes < 1024:
            raise ConfigError(f"log_max_bytes must be >= 1024, got {self.log_max_bytes}")
        for name in ("recent_listens", "recent_ttl", "session_ttl", "table_keep_versions"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("redis_timeout", "redis_retry_interval", "catalog_load_timeout"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"{name} must be > 0, got {getattr(self, name)}")
        if self.table_cache_rows < 0:
            raise ConfigError(f"table_cache_rows must be >= 0, got {self.table_cache_rows}")
        if self.reload_interval < 0:
            raise ConfigError(f"reload_interval must be >= 0, got {self.reload_interval}")


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {path} is not valid YAML: {exc}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must be a mapping of setting: value")
    return data


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def _coerce(name: str, type_: Any, raw: Any) -> Any:
    """Turn a YAML scalar or an env string into the field's type."""
    t = str(type_)
    optional = "None" in t
    if raw is None or (optional and isinstance(raw, str) and raw.strip().lower() in ("", "none", "null")):
        if optional:
            return None
        raise ConfigError(f"{name} must not be empty")
    try:
        if t.startswith("Path"):
            return Path(str(raw)).expanduser()
        if t.startswith("bool"):
            if isinstance(raw, bool):
                return raw
            s = str(raw).strip().lower()
            if s in _TRUE:
                return True
            if s in _FALSE:
                return False
            raise ValueError(raw)
        if t.startswith("int"):
            if isinstance(raw, bool) or (isinstance(raw, float) and not raw.is_integer()):
                raise ValueError(raw)
            return int(str(raw).strip()) if isinstance(raw, str) else int(raw)
        if t.startswith("float"):
            if isinstance(raw, bool):
                raise ValueError(raw)
            return float(raw)
        return str(raw)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{name}: cannot read {raw!r} as {t}") from exc
