"""Render the Markdown decks in slides/ to self-contained HTML slide shows.

`python slides/render.py [DECK.md ...] [--figures slides/build/figures] [--out slides/build]`

A deck is Markdown whose slides are separated by a line holding only `---` (outside
code fences). Two additions to plain Markdown:

- `{{include figures/NAME.md}}` on a line of its own pastes a generated Markdown file
  (a table written by slides/figures.py) before conversion;
- images and links are checked: every `<img>` is embedded as a base64 data URI, so the
  HTML opens anywhere without a server or network; relative links are rewritten to be
  relative to the output file. A missing file, or a remote image, is an error that names
  the deck and the reference (exit 1) rather than a silently broken slide.

`figures/...` references resolve in --figures; any other relative path resolves against
the deck's own directory. Keys in the browser: arrows, PageUp/PageDown, space, Home/End;
`p` or printing shows every slide, one per page.
"""

from __future__ import annotations

import argparse
import base64
import html
import mimetypes
import os
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import markdown

HERE = Path(__file__).resolve().parent
INCLUDE = re.compile(r"^\{\{include\s+(\S+)\s*\}\}\s*$")
FENCE = re.compile(r"^(```|~~~)")
IMG = re.compile(r'(<img\b[^>]*?\bsrc=")([^"]+)(")')
HREF = re.compile(r'(<a\b[^>]*?\bhref=")([^"]+)(")')
EXTENSIONS = ["tables", "fenced_code", "sane_lists", "attr_list", "md_in_html"]


class RenderError(Exception):
    """A deck cannot be rendered (missing figure, broken link...): one line for the user."""


@dataclass
class Deck:
    source: Path
    title: str
    slides: list[str]  # HTML per slide


def split_slides(text: str) -> list[str]:
    """Split on `---` lines that are outside fenced code blocks."""
    slides, cur, fenced = [], [], False
    for line in text.splitlines():
        if FENCE.match(line.strip()):
            fenced = not fenced
        if not fenced and line.strip() == "---":
            slides.append("\n".join(cur))
            cur = []
        else:
            cur.append(line)
    slides.append("\n".join(cur))
    return [s for s in slides if s.strip()]


def resolve(ref: str, deck: Path, figures: Path) -> Path:
    """A relative reference of a deck, as a file path (figures/... in the figures dir)."""
    ref = ref.split("#", 1)[0].split("?", 1)[0]
    if ref.startswith("figures/"):
        return figures / ref.removeprefix("figures/")
    return (deck.parent / ref).resolve()


def include(text: str, deck: Path, figures: Path) -> str:
    out = []
    for line in text.splitlines():
        m = INCLUDE.match(line.strip())
        if m:
            path = resolve(m.group(1), deck, figures)
            if not path.is_file():
                raise RenderError(f"{deck.name}: include {m.group(1)} not found ({path}); "
                                  "run slides/figures.py first (make slides does)")
            out.append(path.read_text(encoding="utf-8"))
        else:
            out.append(line)
    return "\n".join(out)


def _is_remote(ref: str) -> bool:
    return bool(re.match(r"^[a-z][a-z0-9+.-]*:", ref, re.IGNORECASE))


def embed_images(body: str, deck: Path, figures: Path) -> str:
    def repl(m: re.Match[str]) -> str:
        ref = html.unescape(m.group(2))
        if ref.startswith("data:"):
            return m.group(0)
        if _is_remote(ref):
            raise RenderError(f"{deck.name}: image {ref} is remote; decks must be self-contained")
        path = resolve(ref, deck, figures)
        if not path.is_file():
            raise RenderError(f"{deck.name}: image {ref} not found ({path}); "
                              "run slides/figures.py first (make slides does)")
        mime = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        data = base64.b64encode(path.read_bytes()).decode("ascii")
        return f"{m.group(1)}data:{mime};base64,{data}{m.group(3)}"

    return IMG.sub(repl, body)


def rewrite_links(body: str, deck: Path, figures: Path, out_dir: Path) -> str:
    def repl(m: re.Match[str]) -> str:
        ref = html.unescape(m.group(2))
        if ref.startswith("#") or _is_remote(ref):
            return m.group(0)
        path = resolve(ref, deck, figures)
        if not path.exists():
            raise RenderError(f"{deck.name}: link {ref} points to a missing file ({path})")
        frag = "#" + ref.split("#", 1)[1] if "#" in ref else ""
        rel = os.path.relpath(path, out_dir.resolve())
        return f"{m.group(1)}{html.escape(rel + frag, quote=True)}{m.group(3)}"

    return HREF.sub(repl, body)


def render_deck(source: Path, figures: Path, out_dir: Path) -> Deck:
    text = include(source.read_text(encoding="utf-8"), source, figures)
    parts = split_slides(text)
    if not parts:
        raise RenderError(f"{source.name}: no slides")
    slides = []
    for part in parts:
        body = markdown.markdown(part, extensions=EXTENSIONS, output_format="html")
        body = embed_images(body, source, figures)
        slides.append(rewrite_links(body, source, figures, out_dir))
    m = re.search(r"^#\s+(.+)$", text, re.MULTILINE)
    return Deck(source, m.group(1).strip() if m else source.stem, slides)


CSS = """
:root { --fg: #1d2330; --muted: #667085; --accent: #3b6fd8; --bg: #ffffff; }
* { box-sizing: border-box; }
html, body { margin: 0; height: 100%; background: #e9edf3; color: var(--fg);
  font: 20px/1.45 -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; }
.slide { display: none; width: min(96vw, 170vh); height: min(54vw, 96vh); margin: 2vh auto;
  padding: 3.2em 4em 2.5em; background: var(--bg); box-shadow: 0 4px 24px rgba(0,0,0,.12);
  border-radius: 6px; overflow: auto; position: relative; }
.slide.active { display: block; }
.slide h1 { font-size: 1.9em; margin: 0 0 .5em; color: var(--accent); }
.slide h2 { font-size: 1.45em; margin: 0 0 .6em; color: var(--accent); }
.slide h3 { font-size: 1.1em; margin: .8em 0 .3em; }
.slide img { max-width: 100%; max-height: 62vh; display: block; margin: .4em auto; }
.slide table { border-collapse: collapse; font-size: .78em; margin: .5em 0; }
.slide th, .slide td { border-bottom: 1px solid #d0d5dd; padding: .25em .7em; text-align: left; }
.slide th { background: #f2f4f7; }
.slide pre { background: #f6f8fa; padding: .7em 1em; border-radius: 4px; font-size: .72em;
  overflow-x: auto; line-height: 1.3; }
.slide code { font-family: "DejaVu Sans Mono", Menlo, Consolas, monospace; font-size: .9em; }
.slide li { margin: .2em 0; }
.slide .formula { text-align: center; font-size: 1.1em; margin: .7em 0; font-family: Georgia, serif; }
.slide .num { position: absolute; right: 1.2em; bottom: .8em; color: var(--muted); font-size: .6em; }
.slide .deck { position: absolute; left: 1.6em; bottom: .8em; color: var(--muted); font-size: .6em; }
.hint { position: fixed; right: 1em; bottom: .4em; color: var(--muted); font-size: .55em; }
@media print {
  @page { size: 13.333in 7.5in; margin: 0; }
  html, body { background: #fff; }
  .slide, .slide.active { display: block; width: 100%; height: 100vh; margin: 0; box-shadow: none;
    border-radius: 0; page-break-after: always; break-after: page; overflow: hidden; }
  .slide img { max-height: 60vh; }
  .hint { display: none; }
}
body.all .slide { display: block; }
"""

JS = """
(function () {
  var slides = document.querySelectorAll('.slide'), i = 0;
  function show(n) {
    i = Math.max(0, Math.min(slides.length - 1, n));
    slides.forEach(function (s, k) { s.classList.toggle('active', k === i); });
    if (location.hash !== '#' + (i + 1)) history.replaceState(null, '', '#' + (i + 1));
  }
  document.addEventListener('keydown', function (e) {
    var k = e.key;
    if (k === 'ArrowRight' || k === 'PageDown' || k === ' ' || k === 'ArrowDown') show(i + 1);
    else if (k === 'ArrowLeft' || k === 'PageUp' || k === 'ArrowUp') show(i - 1);
    else if (k === 'Home') show(0);
    else if (k === 'End') show(slides.length - 1);
    else if (k === 'p') document.body.classList.toggle('all');
    else return;
    e.preventDefault();
  });
  window.addEventListener('hashchange', function () { show(parseInt(location.hash.slice(1), 10) - 1 || 0); });
  show(parseInt(location.hash.slice(1), 10) - 1 || 0);
})();
"""


def to_html(deck: Deck) -> str:
    n = len(deck.slides)
    title = html.escape(deck.title)
    sections = "\n".join(
        f'<section class="slide" id="s{i + 1}">\n{body}\n'
        f'<div class="deck">{title}</div><div class="num">{i + 1} / {n}</div>\n</section>'
        for i, body in enumerate(deck.slides)
    )
    return (
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
        f"<title>{title}</title>\n<style>{CSS}</style>\n</head>\n<body>\n{sections}\n"
        "<div class=\"hint\">&larr; &rarr; to move, p: all slides</div>\n"
        f"<script>{JS}</script>\n</body>\n</html>\n"
    )


def default_decks() -> list[Path]:
    return sorted(p for p in HERE.glob("*.md") if p.name.lower() != "readme.md")


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python slides/render.py",
                                 description="Render Markdown decks to self-contained HTML.")
    ap.add_argument("decks", nargs="*", type=Path, help="decks (default: slides/*.md)")
    ap.add_argument("--figures", type=Path, default=HERE / "build" / "figures",
                    help="where figures/... references resolve (default: slides/build/figures)")
    ap.add_argument("--out", type=Path, default=HERE / "build",
                    help="output directory (default: slides/build)")
    args = ap.parse_args(argv)
    decks = args.decks or default_decks()
    if not decks:
        print("render: no decks found", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    for src in decks:
        if not src.is_file():
            print(f"render: {src}: no such deck", file=sys.stderr)
            return 2
        try:
            deck = render_deck(src.resolve(), args.figures.resolve(), args.out)
        except RenderError as exc:
            print(f"render: {exc}", file=sys.stderr)
            return 1
        target = args.out / (src.stem + ".html")
        target.write_text(to_html(deck), encoding="utf-8")
        print(f"{target}: {len(deck.slides)} slides ({target.stat().st_size // 1024} KiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
