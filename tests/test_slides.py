"""The slide decks render to self-contained HTML with figures the project made itself.

figures.py runs on a small world (the same code path as `make slides`, smaller sizes)
and render.py turns every deck into HTML; then each page is checked for embedded
images, resolved includes, working links and the navigation script.
"""

from __future__ import annotations

import base64
import importlib.util
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[1]
SLIDES = ROOT / "slides"
DECKS = ("architecture", "user-model", "ab-testing")
PNG = b"\x89PNG\r\n\x1a\n"


def _module(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"slides_{name}", SLIDES / f"{name}.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses look their module up while the class is built
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("slides")
    figs = out / "figures"
    proc = subprocess.run(
        [sys.executable, str(SLIDES / "figures.py"), "--out", str(figs), "--tracks", "2000",
         "--users", "300", "--sessions", "1500", "--rounds", "2"],
        cwd=ROOT, capture_output=True, text=True, timeout=240,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    proc = subprocess.run(
        [sys.executable, str(SLIDES / "render.py"), "--figures", str(figs), "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


@pytest.mark.slow
@pytest.mark.parametrize("deck", DECKS)
def test_deck_is_self_contained(built: Path, deck: str) -> None:
    page = built / f"{deck}.html"
    text = page.read_text(encoding="utf-8")
    source = (SLIDES / f"{deck}.md").read_text(encoding="utf-8")
    render = _module("render")
    assert text.count('<section class="slide"') == len(render.split_slides(source)) >= 5
    srcs = re.findall(r'<img\b[^>]*\bsrc="([^"]+)"', text)
    assert srcs, f"{deck}: no figure"
    assert len(srcs) == len(re.findall(r"!\[[^\]]*\]\(", source))
    for src in srcs:
        assert src.startswith("data:image/png;base64,"), src[:80]
        assert base64.b64decode(src.split(",", 1)[1]).startswith(PNG)
    assert "{{include" not in text
    for href in re.findall(r'<a\b[^>]*\bhref="([^"]+)"', text):
        if not href.startswith(("http:", "https:", "#")):
            assert (built / href.split("#")[0]).exists(), f"{deck}: broken link {href}"
    assert "addEventListener('keydown'" in text and "@media print" in text


@pytest.mark.slow
def test_generated_tables_are_in_the_decks(built: Path) -> None:
    um = (built / "user-model.html").read_text(encoding="utf-8")
    for policy in ("random", "sticky_artist", "i2i", "oracle"):
        assert re.search(rf"<td>{policy}[^<]*</td>\s*<td[^>]*>\d+\.\d+ ± \d+\.\d+</td>", um), policy
    ab = (built / "ab-testing.html").read_text(encoding="utf-8")
    # sticky artist doubles listening time over random: significant even on 300 users
    assert re.search(r"<td>time</td>\s*(<td[^>]*>[^<]*</td>\s*){2}<td[^>]*>\+\d+\.\d%\s*<strong>✓</strong></td>", ab)
    assert "SRM" in ab and "CUPED" in ab and "delta method" in ab


def test_split_ignores_rules_inside_code() -> None:
    split = _module("render").split_slides
    deck = "# A\n\n```\n---\n```\n\n---\n\n## B\n\n---\n\n---\n"
    assert split(deck) == ["# A\n\n```\n---\n```\n", "\n## B\n"]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("# T\n\n![x](figures/missing.png)\n", "image figures/missing.png not found"),
        ("# T\n\n![x](https://example.com/a.png)\n", "is remote"),
        ("# T\n\n[doc](../nowhere.md)\n", "link ../nowhere.md points to a missing file"),
        ("# T\n\n{{include figures/none.md}}\n", "include figures/none.md not found"),
    ],
)
def test_broken_references_fail_clearly(tmp_path: Path, body: str, message: str) -> None:
    deck = tmp_path / "deck.md"
    deck.write_text(body)
    proc = subprocess.run(
        [sys.executable, str(SLIDES / "render.py"), str(deck), "--figures", str(tmp_path / "f"),
         "--out", str(tmp_path / "out")],
        capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 1
    assert message in proc.stderr and "deck.md" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "out" / "deck.html").exists()


def test_make_slides_runs_figures_then_render() -> None:
    proc = subprocess.run(["make", "-n", "slides"], cwd=ROOT, capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    fig = next(i for i, x in enumerate(lines) if "slides/figures.py" in x)
    ren = next(i for i, x in enumerate(lines) if "slides/render.py" in x)
    assert fig < ren
    assert "slides/build" in lines[ren]
