from pathlib import Path

import pytest
from botify.store.settings import ConfigError, Settings


def test_defaults_match_the_documented_ones() -> None:
    s = Settings.load(env={})
    assert s.redis_url is None
    assert s.port == 5001 and s.workers == 2 and s.namespace == "botify"
    assert s.catalog == Path("data/world/catalog.jsonl")
    assert s.metrics_path == Path("run/metrics")


def test_file_then_env_override(tmp_path: Path) -> None:
    cfg = tmp_path / "b.yml"
    cfg.write_text("port: 6000\nworkers: 4\nlog_dir: /tmp/x\nlog_rejected: false\n")
    s = Settings.load(cfg, env={"BOTIFY_WORKERS": "3", "BOTIFY_REDIS_URL": "redis://h:1/0"})
    assert (s.port, s.workers, s.log_dir, s.log_rejected) == (6000, 3, Path("/tmp/x"), False)
    assert s.redis_url == "redis://h:1/0"
    # BOTIFY_CONFIG names the file when no argument is given
    assert Settings.load(env={"BOTIFY_CONFIG": str(cfg)}).port == 6000
    # an empty BOTIFY_REDIS_URL means "embedded"
    assert Settings.load(cfg, env={"BOTIFY_REDIS_URL": ""}).redis_url is None


@pytest.mark.parametrize(
    ("env", "msg"),
    [
        ({"BOTIFY_PORT": "abc"}, "port"),
        ({"BOTIFY_PORT": "70000"}, "port"),
        ({"BOTIFY_WORKERS": "0"}, "workers"),
        ({"BOTIFY_LOG_REJECTED": "maybe"}, "log_rejected"),
        ({"BOTIFY_NAMESPACE": "a:b"}, "namespace"),
    ],
)
def test_bad_values_are_refused_with_the_setting_named(env: dict[str, str], msg: str) -> None:
    with pytest.raises(ConfigError, match=msg):
        Settings.load(env=env)


def test_unknown_key_in_file_is_refused(tmp_path: Path) -> None:
    cfg = tmp_path / "b.yml"
    cfg.write_text("prot: 6000\n")
    with pytest.raises(ConfigError, match="prot"):
        Settings.load(cfg, env={})


def test_every_setting_has_an_env_var_documented() -> None:
    doc = (Path(__file__).resolve().parents[3] / "docs" / "configuration.md").read_text()
    for name, var in Settings.env_names().items():
        assert f"`{name}`" in doc and f"`{var}`" in doc, name
