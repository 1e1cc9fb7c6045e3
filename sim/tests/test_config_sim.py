"""Strict config loading: every bad value is a one-line ConfigError naming the field."""

from __future__ import annotations

from pathlib import Path

import pytest
from sim.config import ConfigError, load_config, parse_config


def test_defaults_and_relative_world_against_cwd(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = parse_config({})
    assert cfg.world == tmp_path / "data" / "world"
    assert cfg.service.port == 5001 and cfg.service.host == "127.0.0.1"
    assert cfg.model_params().session_budget == 5
    cfg = parse_config({"world": "/abs/w", "service": {"port": 8080, "timeout": 1}})
    assert cfg.world == Path("/abs/w") and cfg.service.timeout == 1.0
    assert cfg.service.client_options().port == 8080


def test_user_model_maps_onto_params():
    cfg = parse_config({"world": "/w", "user_model": {"session_budget": 7, "returning_users": True,
                                                      "artist_discount_gamma": 1}})
    p = cfg.model_params()
    assert p.session_budget == 7 and p.returning_users is True and p.artist_discount_gamma == 1.0


@pytest.mark.parametrize(
    ("data", "needle"),
    [
        ({"wrld": "x"}, "unknown key 'wrld'"),
        ({"world": 3}, "world: expected a string"),
        ({"service": {"port": "80"}}, "service.port: expected an integer"),
        ({"service": {"port": True}}, "service.port: expected an integer"),
        ({"service": {"port": 0}}, "service.port: 0 out of range"),
        ({"service": {"timeout": -1}}, "service.timeout: -1.0 out of range"),
        ({"service": {"retries": 1.5}}, "service.retries: expected an integer"),
        ({"service": {"hots": "x"}}, "service: unknown key 'hots'"),
        ({"service": [1]}, "service: expected a mapping"),
        ({"user_model": {"session_budget": 0}}, "user_model.session_budget must be >= 1"),
        ({"user_model": {"taste_drift": "yes"}}, "user_model.taste_drift: expected true or false"),
        ({"user_model": {"drift_rate": float("nan")}}, "expected a finite number"),
        ([1, 2], "expected a mapping at the top level"),
    ],
)
def test_bad_values(data, needle):
    with pytest.raises(ConfigError) as e:
        parse_config(data, source=Path("env.yml"))
    assert needle in str(e.value) and "\n" not in str(e.value)
    assert str(e.value).startswith("env.yml: ") or "top level" in str(e.value)


def test_load_config_file_errors(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "missing.yml")
    bad = tmp_path / "bad.yml"
    bad.write_text("service:\n  port: [1\n")
    with pytest.raises(ConfigError, match=r"bad.yml: line \d+"):
        load_config(bad)
    empty = tmp_path / "empty.yml"
    empty.write_text("")
    assert load_config(empty).service.port == 5001
