"""docker-compose.yml and the Dockerfiles, checked as text (no Docker engine on these machines).

What is checked is what matters for safety and scaling: Redis never published beyond
the host, `recommender` scalable (no fixed host port, no container_name), nginx on 5001
rendering the same template the topology test runs, non-root images with a healthcheck.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from helpers_nginx import TEMPLATE_VARS, render_template
from helpers_service import REPO

COMPOSE = REPO / "docker-compose.yml"


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def _interpolate(value: str) -> str:
    """Compose's ${VAR:-default} with no VAR set: the default."""
    return re.sub(r"\$\{[A-Z_]+:-([^}]*)\}", r"\1", value)


def _published(port_spec: object) -> tuple[str, str, str]:
    """(host address, host port, container port) of a short-syntax `ports:` entry."""
    if isinstance(port_spec, dict):
        return (str(port_spec.get("host_ip", "0.0.0.0")), str(port_spec.get("published", "")),
                str(port_spec["target"]))
    parts = _interpolate(str(port_spec)).split(":")
    if len(parts) == 3:
        return parts[0], parts[1], parts[2]
    if len(parts) == 2:
        return "0.0.0.0", parts[0], parts[1]
    return "0.0.0.0", "", parts[0]


def test_only_nginx_publishes_a_port_and_only_on_loopback_by_default(compose: dict) -> None:
    services = compose["services"]
    assert {"redis", "recommender", "nginx", "sim"} <= set(services)
    for name, svc in services.items():
        for spec in svc.get("ports", []):
            addr, _, _ = _published(spec)
            assert addr == "127.0.0.1", f"{name} publishes {spec} beyond the host"
        assert not svc.get("privileged"), name
        assert svc.get("network_mode") != "host", name
    assert "ports" not in services["redis"], "Redis must not be published"
    assert [_published(p)[1:] for p in services["nginx"]["ports"]] == [("5001", "5001")]


def test_recommender_is_scalable(compose: dict) -> None:
    rec = compose["services"]["recommender"]
    assert "container_name" not in rec and "ports" not in rec and "hostname" not in rec
    deploy = rec.get("deploy", {})
    assert "replicas" not in deploy or deploy["replicas"] != 1
    assert rec["build"]["context"] == "./botify"
    assert (REPO / "botify" / rec["build"]["dockerfile"]).is_file()
    env = rec["environment"]
    assert env["BOTIFY_REDIS_URL"].startswith("redis://redis:")
    assert env["BOTIFY_HOST"] == "0.0.0.0" and env["BOTIFY_PORT"] == "5001"
    # all replicas write into one named volume (one sub-directory per worker process)
    mounts = {v.split(":")[1]: v.split(":")[0] for v in rec["volumes"]}
    assert mounts[env["BOTIFY_LOG_DIR"]] in compose["volumes"]
    assert rec["depends_on"]["redis"]["condition"] == "service_healthy"


def test_nginx_renders_the_tested_template_and_re_resolves_replicas(compose: dict) -> None:
    ng = compose["services"]["nginx"]
    assert "./deploy/nginx.conf:/etc/nginx/templates/default.conf.template:ro" in ng["volumes"]
    env = ng["environment"]
    assert set(TEMPLATE_VARS) <= set(env)
    assert "127.0.0.11" in env["NGINX_RESOLVER"] and re.search(r"valid=\d+s", env["NGINX_RESOLVER"])
    assert re.fullmatch(r"server recommender:5001 resolve.*;", env["BOTIFY_UPSTREAM_SERVERS"])
    # `resolve` in an upstream needs nginx >= 1.27.3 (open source)
    major, minor = (int(x) for x in re.match(r"nginx:(\d+)\.(\d+)", ng["image"]).groups())
    assert (major, minor) >= (1, 28)
    text = render_template({k: str(v) for k, v in env.items() if k in TEMPLATE_VARS})
    assert "listen 5001" in text and "server recommender:5001 resolve" in text and "zone " in text


def test_sim_profile_targets_nginx(compose: dict) -> None:
    sim = compose["services"]["sim"]
    assert sim["profiles"] == ["sim"]
    cmd = [_interpolate(str(c)) for c in sim["command"]]
    assert cmd[:3] == ["python", "-m", "sim.run"]
    assert cmd[cmd.index("--recommender") + 1] == "remote"
    assert sim["build"]["dockerfile"] == "deploy/sim.Dockerfile"
    cfg_host = next(v for v in sim["volumes"] if v.startswith("./deploy/sim-env.yml:"))
    assert cfg_host.split(":")[1] == cmd[cmd.index("--config") + 1]
    cfg = yaml.safe_load((REPO / "deploy" / "sim-env.yml").read_text())
    assert cfg["service"]["host"] == "nginx" and cfg["service"]["port"] == 5001
    from sim.config import ServiceConfig

    assert set(cfg["service"]) <= set(ServiceConfig.__dataclass_fields__)


@pytest.mark.parametrize("dockerfile", ["botify/Dockerfile", "deploy/sim.Dockerfile"])
def test_images_are_slim_non_root(dockerfile: str) -> None:
    text = (REPO / dockerfile).read_text()
    m = re.search(r"^FROM python:3\.(\d+)-slim", text, re.M)
    assert m and int(m.group(1)) >= 11
    users = re.findall(r"^USER\s+(\S+)", text, re.M)
    assert users and users[-1].split(":")[0] not in ("root", "0")
    last_user = text.rfind("\nUSER ")
    for directive in ("CMD", "ENTRYPOINT"):
        pos = text.rfind(f"\n{directive} ")
        assert pos > last_user, f"{directive} must run as the non-root user"


def test_service_image_installs_only_botify_and_checks_health() -> None:
    text = (REPO / "botify" / "Dockerfile").read_text()
    copies = re.findall(r"^COPY\s+(.+)$", text, re.M)
    assert copies == [". /src/botify"], copies  # build context ./botify: nothing else
    assert re.search(r"pip install /src/botify\b", text)
    hc = re.search(r"^HEALTHCHECK .*(?:\n  .*)*", text, re.M)
    assert hc and "/health" in hc.group(0)
    assert 'ENTRYPOINT ["python", "-m", "botify"]' in text
