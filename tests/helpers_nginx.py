"""Run the Debian nginx with botify's deploy/nginx.conf template, without root or Docker.

The template is rendered exactly as the official nginx image renders it in compose
(envsubst of the named variables only), then included in a minimal main config whose
pid file, logs and temp paths all live in a private work dir.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from helpers_service import REPO, free_port

TEMPLATE = REPO / "deploy" / "nginx.conf"
TEMPLATE_VARS = ("NGINX_PORT", "NGINX_RESOLVER", "BOTIFY_BACKEND", "BOTIFY_UPSTREAM_SERVERS",
                 "NGINX_RATE_LIMIT", "NGINX_RATE_BURST")
# The tests' fixed replicas go through the template's upstream group; rate limit as in compose.
TEST_DEFAULTS = {"NGINX_RESOLVER": "", "BOTIFY_BACKEND": "botify_recommenders",
                 "NGINX_RATE_LIMIT": "10000r/s", "NGINX_RATE_BURST": "10000"}


def nginx_binary() -> str | None:
    """The nginx executable (Debian puts it in /usr/sbin, often not on a user's PATH)."""
    found = shutil.which("nginx")
    if found:
        return found
    return "/usr/sbin/nginx" if os.access("/usr/sbin/nginx", os.X_OK) else None


def render_template(values: Mapping[str, str], template: Path = TEMPLATE) -> str:
    """envsubst semantics restricted to TEMPLATE_VARS: nginx's own $variables stay."""
    missing = set(TEMPLATE_VARS) - set(values)
    if missing:
        raise ValueError(f"template variables without a value: {sorted(missing)}")
    text = template.read_text(encoding="utf-8")
    for name in TEMPLATE_VARS:
        text = text.replace("${" + name + "}", values[name])
    leftover = re.findall(r"\$\{[A-Z_]+\}", text)
    if leftover:
        raise ValueError(f"unrendered template variables: {sorted(set(leftover))}")
    return text


MAIN_CONF = """\
worker_processes 1;
daemon off;
pid {wd}/nginx.pid;
error_log {wd}/error.log warn;
{user}
events {{ worker_connections 1024; }}
http {{
    access_log {wd}/access.log;
    client_body_temp_path {wd}/tmp/client_body;
    proxy_temp_path {wd}/tmp/proxy;
    fastcgi_temp_path {wd}/tmp/fastcgi;
    uwsgi_temp_path {wd}/tmp/uwsgi;
    scgi_temp_path {wd}/tmp/scgi;
    include {wd}/botify.conf;
}}
"""


@dataclass
class NginxProcess:
    proc: subprocess.Popen[bytes]
    port: int
    workdir: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def error_log(self) -> str:
        p = self.workdir / "error.log"
        return p.read_text(errors="replace") if p.exists() else ""

    def access_log(self) -> str:
        p = self.workdir / "access.log"
        return p.read_text(errors="replace") if p.exists() else ""


@contextmanager
def nginx_proxy(upstreams: Sequence[str], port: int | None = None,
                workdir: Path | None = None, overrides: Mapping[str, str] | None = None,
                ) -> Iterator[NginxProcess]:
    """nginx on a free port balancing across `upstreams` ("127.0.0.1:PORT", ...).

    `overrides`: template values instead of TEST_DEFAULTS (e.g. a low NGINX_RATE_LIMIT).
    """
    binary = nginx_binary()
    if binary is None:
        raise RuntimeError("nginx is not installed")
    port = port or free_port()
    wd = Path(workdir or tempfile.mkdtemp(prefix="botify-nginx-"))
    (wd / "tmp").mkdir(parents=True, exist_ok=True)
    servers = " ".join(f"server {u} max_fails=1 fail_timeout=2s;" for u in upstreams)
    (wd / "botify.conf").write_text(render_template({
        **TEST_DEFAULTS,
        "NGINX_PORT": f"127.0.0.1:{port}",
        "BOTIFY_UPSTREAM_SERVERS": servers,
        **(overrides or {}),
    }))
    # As root, nginx would drop its workers to `nobody`, who cannot read a private tmp dir.
    user = "user root;" if os.geteuid() == 0 else ""
    (wd / "nginx.conf").write_text(MAIN_CONF.format(wd=wd, user=user))
    check = subprocess.run([binary, "-t", "-p", str(wd), "-e", str(wd / "error.log"), "-c", str(wd / "nginx.conf")],
                           capture_output=True, text=True)
    if check.returncode != 0:
        raise RuntimeError(f"nginx -t failed:\n{check.stderr}")
    proc = subprocess.Popen([binary, "-p", str(wd), "-e", str(wd / "error.log"), "-c", str(wd / "nginx.conf")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    ng = NginxProcess(proc, port, wd)
    try:
        deadline = time.monotonic() + 10
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"nginx exited with {proc.returncode}:\n{ng.error_log()}")
            try:
                with urllib.request.urlopen(f"{ng.url}/nginx-health", timeout=1) as resp:
                    if resp.status == 200:
                        break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"nginx did not answer:\n{ng.error_log()}") from None
                time.sleep(0.05)
        yield ng
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGQUIT)  # graceful: finish in-flight requests
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        if workdir is None:
            shutil.rmtree(wd, ignore_errors=True)
