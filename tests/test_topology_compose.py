"""docker-compose.yml and the Dockerfiles, checked as text; `make compose-test` runs them.

The engine run (deploy/compose_test.py, in CI through .ci/run) is what proves the stack
works; these fast checks pin what matters for safety and scaling between runs: Redis
never published beyond the host and behind a password from the environment,
`recommender` scalable (no fixed host port, no container_name), nginx on 5001 rendering
the same template the topology test runs and accepted by the nginx Debian ships,
non-root images with a healthcheck and offline installs, and the README's compose
commands exactly the ones the driver runs.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from helpers_nginx import MAIN_CONF, TEMPLATE_VARS, nginx_binary, render_template
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
    assert re.fullmatch(r"redis://:\$\{BOTIFY_REDIS_PASSWORD:\?[^}]+\}@redis:6379/0", env["BOTIFY_REDIS_URL"])
    assert env["BOTIFY_HOST"] == "0.0.0.0" and env["BOTIFY_PORT"] == "5001"
    # all replicas write into one named volume (one sub-directory per worker process)
    mounts = {(v["target"] if isinstance(v, dict) else v.split(":")[1]):
              (v["source"] if isinstance(v, dict) else v.split(":")[0]) for v in rec["volumes"]}
    assert mounts[env["BOTIFY_LOG_DIR"]] in compose["volumes"]
    # the world volume: read-only, and never filled from the image (the world job owns it)
    data = next(v for v in rec["volumes"] if isinstance(v, dict) and v["target"] == "/data")
    assert data["read_only"] is True and data["volume"] == {"nocopy": True}
    assert rec["depends_on"]["redis"]["condition"] == "service_healthy"
    assert rec["depends_on"]["world"]["condition"] == "service_completed_successfully"


def _compose_nginx_conf(compose: dict) -> str:
    env = compose["services"]["nginx"]["environment"]
    return render_template({k: _interpolate(str(v)) for k, v in env.items() if k in TEMPLATE_VARS})


def test_nginx_renders_the_tested_template_and_re_resolves_replicas(compose: dict) -> None:
    ng = compose["services"]["nginx"]
    assert "./deploy/nginx.conf:/etc/nginx/templates/default.conf.template:ro" in ng["volumes"]
    env = ng["environment"]
    assert set(TEMPLATE_VARS) <= set(env)
    # Docker's DNS, a short cache, and the service name as a per-request target: replicas
    # added by --scale get traffic without an nginx restart, on any nginx >= 1.22.
    assert "127.0.0.11" in env["NGINX_RESOLVER"] and re.search(r"valid=[1-5]s", env["NGINX_RESOLVER"])
    assert env["BOTIFY_BACKEND"] == "recommender:5001"
    text = _compose_nginx_conf(compose)
    assert "listen 5001" in text and "proxy_pass http://$botify_backend;" in text
    assert 'set $botify_backend "recommender:5001";' in text
    directives = "\n".join(ln.split("#")[0] for ln in text.splitlines())
    assert not re.search(r"\bserver \S+ resolve\b", directives)  # needs nginx >= 1.27.3
    assert ng["stop_signal"] == "SIGQUIT" and ng["read_only"] is True


def test_nginx_limits_body_time_and_rate(compose: dict) -> None:
    text = _compose_nginx_conf(compose)
    assert re.search(r"client_max_body_size 16k;", text)
    for directive in ("client_header_timeout", "client_body_timeout", "send_timeout",
                      "proxy_connect_timeout", "proxy_read_timeout"):
        assert re.search(rf"^\s*{directive} \d+s;", text, re.M), directive
    # per-client rate limit: on, configurable, generous by default (the simulator is one client)
    m = re.search(r"limit_req_zone \$binary_remote_addr zone=(\w+):\w+ rate=(\d+)r/s;", text)
    assert m and int(m.group(2)) >= 1000
    b = re.search(rf"limit_req zone={re.escape(m.group(1))} burst=(\d+) nodelay;", text)
    assert b and int(b.group(1)) >= 1000
    env = compose["services"]["nginx"]["environment"]
    assert env["NGINX_RATE_LIMIT"].startswith("${BOTIFY_RATE_LIMIT:-")
    assert env["NGINX_RATE_BURST"].startswith("${BOTIFY_RATE_BURST:-")


@pytest.mark.skipif(nginx_binary() is None, reason="nginx is not installed")
def test_compose_nginx_config_is_accepted_by_debian_nginx(compose: dict, tmp_path: Path) -> None:
    """The config compose renders, checked by `nginx -t` of the nginx Debian ships (1.22
    on bookworm: the local stand-in's), not only by a newer one."""
    (tmp_path / "tmp").mkdir()
    (tmp_path / "botify.conf").write_text(_compose_nginx_conf(compose))
    user = "user root;" if os.geteuid() == 0 else ""
    (tmp_path / "nginx.conf").write_text(MAIN_CONF.format(wd=tmp_path, user=user))
    res = subprocess.run([nginx_binary(), "-t", "-p", str(tmp_path), "-e", str(tmp_path / "error.log"),
                          "-c", str(tmp_path / "nginx.conf")], capture_output=True, text=True, timeout=30)
    assert res.returncode == 0, res.stderr


def test_redis_asks_for_a_password_from_the_environment(compose: dict) -> None:
    redis = compose["services"]["redis"]
    assert re.fullmatch(r"\$\{BOTIFY_REDIS_PASSWORD:\?[^}]+\}", redis["environment"]["REDISCLI_AUTH"])
    cmd = " ".join(map(str, redis["command"]))
    # the password reaches redis-server on stdin (a here-document), never its command line
    assert re.search(r"exec redis-server - .*<<EOF\nrequirepass \$\$REDISCLI_AUTH\nEOF", cmd)
    assert "--requirepass" not in cmd
    assert redis["healthcheck"]["test"] == ["CMD", "redis-cli", "ping"]  # REDISCLI_AUTH


def test_sim_profile_targets_nginx(compose: dict) -> None:
    sim = compose["services"]["sim"]
    assert sim["profiles"] == ["sim"]
    cmd = [_interpolate(str(c)) for c in sim["command"]]
    assert cmd[:3] == ["python", "-m", "sim.run"]
    assert cmd[cmd.index("--recommender") + 1] == "remote"
    assert cmd[cmd.index("--out") + 1].startswith("/out/") and "botify-sim:/out" in sim["volumes"]
    assert sim["build"]["dockerfile"] == "deploy/sim.Dockerfile"
    cfg_host = next(v for v in sim["volumes"] if isinstance(v, str) and v.startswith("./deploy/sim-env.yml:"))
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
    # build context ./botify: nothing else; the final stage takes only the venv
    assert copies == [". /src/botify", "--from=build /opt/botify /opt/botify"], copies
    assert re.search(r"pip install .*/src/botify\b", text)
    hc = re.search(r"^HEALTHCHECK .*(?:\n  .*)*", text, re.M)
    assert hc and "/health" in hc.group(0)
    assert 'ENTRYPOINT ["python", "-m", "botify"]' in text


@pytest.mark.parametrize(("dockerfile", "context"), [("botify/Dockerfile", "botify"),
                                                     ("deploy/sim.Dockerfile", "sim")])
def test_images_install_offline_from_a_wheelhouse_and_own_data(dockerfile: str, context: str) -> None:
    text = (REPO / dockerfile).read_text()
    assert f"--no-index --find-links /src/{context}/.wheels" in text
    # an empty named volume mounted on /data takes the image directory's owner
    assert re.search(r"chown botify:botify [^\n]*/data\b", text)
    ignore = REPO / ("botify/.dockerignore" if context == "botify" else ".dockerignore")
    assert ".wheels" not in [ln.strip() for ln in ignore.read_text().splitlines()]
    assert ".wheels/" in (REPO / ".gitignore").read_text().splitlines()


def _readme_compose_blocks() -> list[list[str]]:
    text = (REPO / "README.md").read_text()
    section = text.split("\n## Docker compose\n", 1)[1].split("\n## ", 1)[0]
    return [[ln for ln in block.strip("\n").splitlines() if ln.strip()]
            for block in re.findall(r"^```\n(.*?)^```", section, re.M | re.S)]


def test_readme_docker_section_lists_exactly_what_compose_test_runs() -> None:
    sys.path.insert(0, str(REPO / "deploy"))
    import compose_test

    blocks = _readme_compose_blocks()
    assert blocks == [compose_test.README_OFFLINE, compose_test.README_STACK, compose_test.README_FAULTS]
    for script in compose_test.README_OFFLINE:
        assert os.access(REPO / script, os.X_OK), script
    assert "compose-test:" in (REPO / "Makefile").read_text()
    assert "make compose-test" in (REPO / ".ci" / "run").read_text()
