"""The notebooks in jupyter/ run headless, end to end, against logs of a real short run.

A session fixture makes those logs the way a newcomer would: `python -m botify.lab`
(world generation, the service on the private test Redis, simulated HTTP traffic, two
A/B days, models trained and deployed). Each notebook is then executed with nbclient
on a kernel that is this interpreter (a kernel spec written to a temporary directory,
so no global Jupyter setup is needed) and any cell error fails the test.
"""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "jupyter"
NAMES = ("ab_analysis", "world_explorer", "train_and_deploy", "classics_and_factorization")
KERNEL = "botify-venv"


@pytest.fixture(scope="session")
def lab_run(tmp_path_factory: pytest.TempPathFactory, redis_process) -> dict[str, Path]:
    """Logs and world of a two-day lab run (a few hundred sessions, a 3,000-track world)."""
    import redis

    client = redis.Redis.from_url(redis_process.url)
    client.flushall()  # the private test Redis: earlier tests may have left tables in it
    client.close()
    base = tmp_path_factory.mktemp("nb-lab")
    cmd = [
        sys.executable, "-m", "botify.lab", "--days", "2", "--sessions", "200",
        "--tracks", "3000", "--users", "400", "--world", str(base / "world"),
        "--models", "i2i,top_pop", "--name", "nb", "--runs-dir", str(base / "runs"),
        "--reports-dir", str(base / "reports"), "--redis-url", redis_process.url,
        "--sim-config", str(ROOT / "config" / "env.yml"),
    ]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    logs = base / "runs" / "nb" / "logs"
    assert any(logs.rglob("events-*.jsonl"))
    return {"logs": logs, "world": base / "world"}


@pytest.fixture(scope="session")
def kernel_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A kernel spec whose argv is this interpreter (the venv's python), nothing global."""
    d = tmp_path_factory.mktemp("kernels")
    spec = d / KERNEL
    spec.mkdir()
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "botify (venv)",
        "language": "python",
    }))
    return d


def execute(path: Path, kernel_dir: Path, timeout: int = 120) -> nbformat.NotebookNode:
    """Run a notebook in its own directory; raises CellExecutionError on any failing cell."""
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import KernelManager

    nb = nbformat.read(path, as_version=4)
    km = KernelManager(
        kernel_name=KERNEL, kernel_spec_manager=KernelSpecManager(kernel_dirs=[str(kernel_dir)])
    )
    client = nbclient.NotebookClient(
        nb, km=km, timeout=timeout, resources={"metadata": {"path": str(path.parent)}}
    )
    client.execute()
    return nb


def outputs_text(nb: nbformat.NotebookNode) -> str:
    parts = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            if out.get("output_type") == "stream":
                parts.append(out["text"])
            elif "data" in out:
                parts.append(out["data"].get("text/plain", ""))
    return "\n".join(parts)


def n_images(nb: nbformat.NotebookNode) -> int:
    return sum(
        "image/png" in out.get("data", {})
        for cell in nb.cells
        for out in cell.get("outputs", [])
    )


@pytest.fixture
def notebook_env(lab_run: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("BOTIFY_LOGS", str(lab_run["logs"]))
    monkeypatch.setenv("BOTIFY_WORLD", str(lab_run["world"]))
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    yield


@pytest.mark.parametrize("name", NAMES)
def test_notebook_is_stored_without_outputs(name: str) -> None:
    nb = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code, "a notebook without code"
    for cell in code:
        assert cell.outputs == [], f"{name}: a cell has stored outputs (clear them)"
        assert cell.execution_count is None, f"{name}: a cell has an execution count"
    # a parameter cell reading the logs/world from the environment comes first
    assert "os.environ.get(\"BOTIFY_" in code[0].source


def test_kernel_is_this_interpreter(kernel_dir: Path, tmp_path: Path) -> None:
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("import sys; print(sys.executable)")])
    path = tmp_path / "probe.ipynb"
    nbformat.write(nb, path)
    out = execute(path, kernel_dir, timeout=60)
    assert outputs_text(out).strip() == sys.executable


@pytest.mark.slow
@pytest.mark.usefixtures("notebook_env")
def test_ab_analysis_notebook(kernel_dir: Path, tmp_path: Path) -> None:
    nb = execute(NOTEBOOKS / "ab_analysis.ipynb", kernel_dir)
    text = outputs_text(nb)
    assert "analysing: DAY1" in text
    assert re.search(r"by hand and botify\.analysis\.ab agree on all \d+ rows", text)
    assert n_images(nb) >= 3
    # CUPED is not empty on a default (two-day) run: day 2 with day 1 as the history
    m = re.search(r"CUPED on (\w+): covariate = .* in the ([\d,]+) events before it", text)
    assert m and m.group(1) != "DAY1" and int(m.group(2).replace(",", "")) > 0, text[-3000:]
    assert re.search(r"the CUPED interval is narrower by -?\d+%", text), text[-3000:]
    assert "variance_reduction" in text

    # jupyter/clear_outputs.py turns the executed notebook back into the stored one
    executed = tmp_path / "executed.ipynb"
    nbformat.write(nb, executed)
    proc = subprocess.run([sys.executable, str(NOTEBOOKS / "clear_outputs.py"), str(executed)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and "cleared" in proc.stdout, proc.stderr
    cleared = nbformat.read(executed, as_version=4)
    stored = nbformat.read(NOTEBOOKS / "ab_analysis.ipynb", as_version=4)
    assert [c.source for c in cleared.cells] == [c.source for c in stored.cells]
    assert all(c.outputs == [] and c.execution_count is None
               for c in cleared.cells if c.cell_type == "code")


@pytest.mark.slow
@pytest.mark.usefixtures("notebook_env")
def test_world_explorer_notebook(kernel_dir: Path) -> None:
    nb = execute(NOTEBOOKS / "world_explorer.ipynb", kernel_dir)
    text = outputs_text(nb)
    assert "3,000 tracks" in text and "400 users" in text
    assert n_images(nb) >= 6


@pytest.mark.slow
@pytest.mark.usefixtures("notebook_env")
def test_train_and_deploy_notebook(kernel_dir: Path) -> None:
    nb = execute(NOTEBOOKS / "train_and_deploy.ipynb", kernel_dir)
    text = outputs_text(nb)
    m = re.search(r"(\d+) recommendations served by nb_i2i \(the i2i model\) in the live service", text)
    assert m and int(m.group(1)) >= 5, text[-2000:]
    assert "service and Redis stopped" in text
    # deployed with the commands a student types, not with internal functions
    assert re.search(r"\$ python -m botify load-artifact \S+i2i\.jsonl --as nb_i2i --run-dir \S+", text)
    assert re.search(r"table nb_i2i: i2i artifact .* is live as version", text)
    source = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
    assert "store.load_table" not in source and "lab.service" not in source
    # the service it started is gone: its port no longer accepts connections
    port = re.search(r"workers at http://127\.0\.0\.1:(\d+)", text)
    assert port, "the notebook did not report the service address"
    with socket.socket() as s, pytest.raises(OSError):
        s.settimeout(1)
        s.connect(("127.0.0.1", int(port.group(1))))


@pytest.mark.slow
@pytest.mark.usefixtures("notebook_env")
def test_classics_and_factorization_notebook(kernel_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BOTIFY_AB_SESSIONS", "200")
    nb = execute(NOTEBOOKS / "classics_and_factorization.ipynb", kernel_dir, timeout=300)
    text = outputs_text(nb)
    assert "by hand and botify's ease_weights agree: True" in text
    for name in ("ease", "user_knn", "hybrid"):
        assert re.search(rf"{name} +[\d,]+ rows of kind", text), text[-2000:]
    assert "SRM" in text and "service and Redis stopped" in text
    assert re.search(r"verdict: the champion after this day is \w+", text)
