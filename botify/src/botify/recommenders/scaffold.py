"""`botify new-recommender NAME`: a working recommender file, its test and the config to switch it on.

Why generate rather than document only: the three files are the whole homework
loop (write, test, turn on), and a skeleton that already passes its test shows
every concept of docs/recommenders.md in the place where it is used.
"""

from __future__ import annotations

import keyword
import re
from pathlib import Path

_NAME_RE = re.compile(r"^[a-z][a-z0-9_]{0,40}$")

CODE = '''"""{name}: the artist just played while the user listens to most of it, else the next recommender."""

from botify.recommenders import Recommender, register


@register("{name}")
class {cls}(Recommender):
    """Stay with the artist after a long listen; hand over to the fallback otherwise."""

    fallbacks = ("top_pop", "random")  # who answers when this one hands over (names in experiments.yml)

    def configure(self, threshold: float = 0.5) -> None:  # parameters from experiments.yml
        self.threshold = float(threshold)

    def recommend_next(self, user: int, prev_track: int, prev_track_time: float) -> int:
        ctx = self.ctx  # everything this request may use: docs/recommenders.md
        if prev_track_time >= self.threshold:
            same_artist = ctx.catalog.tracks_of_artist(ctx.catalog[prev_track].artist)
            pick = ctx.first_unplayed(same_artist)  # neither prev_track nor played this session
            if pick is not None:
                return pick
        return self.fallback.recommend_next(user, prev_track, prev_track_time)
'''

TEST = '''"""Tests of {name}, run as the service runs it (same context, same fallback chain), no Redis needed."""

from pathlib import Path

from botify.recommenders.discovery import load_folder
from botify.recommenders.testing import Harness

load_folder(Path(__file__).parent)  # imports the recommender files next to this test, as the service does

TRACKS = [
    {{"track": i, "artist": f"artist {{i % 3}}", "title": f"song {{i}}", "genres": ["pop"], "year": 2000 + i, "mood": "calm"}}
    for i in range(12)
]


def test_{name}_stays_with_the_artist_after_a_long_listen() -> None:
    rec = Harness("{name}", TRACKS)
    for user in range(10):
        answer = rec.answer(user, prev_track=0, prev_track_time=0.9, played=[3])
        assert answer.recommender == "{name}" and answer.fallback is None
        assert answer.track in (6, 9)  # artist 0, neither the track just played nor one played before


def test_{name}_hands_over_after_a_short_listen() -> None:
    rec = Harness("{name}", TRACKS)
    answer = rec.answer(1, prev_track=0, prev_track_time=0.1)
    assert answer.recommender != "{name}" and answer.fallback == "declined"
    assert 0 <= answer.track < len(TRACKS) and answer.track != 0
'''

CONFIG = '''# Switch {name} on: merge this into config/experiments.yml (the service reloads it within a second).
# The first experiment listed serves /next; its T1 users get {name}, C users random.
recommenders:
  {name}:
    class: {name}
    threshold: 0.5              # passed to configure()
    fallback: [top_pop, random]

experiments:
  - name: {experiment}
    arms:
      C: random
      T1: {name}
'''


class ScaffoldError(ValueError):
    """A bad name, or files that already exist."""


def class_name(name: str) -> str:
    """sticky_then_top -> StickyThenTop."""
    return "".join(part.capitalize() for part in name.split("_") if part)


def new_recommender(name: str, folder: Path, force: bool = False) -> list[Path]:
    """Write NAME.py, test_NAME.py and NAME.yml into `folder`; the paths written."""
    if not _NAME_RE.match(name) or keyword.iskeyword(name) or name.startswith("test_"):
        raise ScaffoldError(
            f"{name!r}: a recommender name is lower case letters, digits and _ (a Python name, not test_...)"
        )
    from botify.recommenders import REGISTRY

    if name in REGISTRY:
        raise ScaffoldError(f"{name!r} is already a recommender ({REGISTRY[name].__module__}): choose another name")
    folder = Path(folder)
    files = {
        folder / f"{name}.py": CODE.format(name=name, cls=class_name(name)),
        folder / f"test_{name}.py": TEST.format(name=name),
        folder / f"{name}.yml": CONFIG.format(name=name, experiment=name.upper()),
    }
    existing = [str(p) for p in files if p.exists()]
    if existing and not force:
        raise ScaffoldError(f"already exists: {', '.join(existing)} (--force overwrites)")
    folder.mkdir(parents=True, exist_ok=True)
    for path, text in files.items():
        path.write_text(text, encoding="utf-8")
    return list(files)
