"""Tests of sticky_then_top, run as the service runs it (same context, same fallback chain), no Redis needed."""

from pathlib import Path

from botify.recommenders.discovery import load_folder
from botify.recommenders.testing import Answer, Harness

load_folder(Path(__file__).parent)  # imports the recommender files next to this test, as the service does

TRACKS = [
    {"track": i, "artist": f"artist {i % 3}", "title": f"song {i}", "genres": ["pop"], "year": 2000 + i, "mood": "calm"}
    for i in range(12)
]
TOP = {"top_pop": {"top": [5, 7, 2]}}


def test_long_listen_stays_with_the_artist() -> None:
    rec = Harness("sticky_then_top", TRACKS, TOP)
    answers = {rec.answer(user, prev_track=1, prev_track_time=0.9) for user in range(30)}
    assert {a.track for a in answers} == {4, 7, 10}  # artist 1, never the track just played
    assert {(a.recommender, a.fallback) for a in answers} == {("sticky_then_top", None)}


def test_short_listen_goes_to_the_top_list() -> None:
    rec = Harness("sticky_then_top", TRACKS, TOP)
    assert rec.answer(1, prev_track=1, prev_track_time=0.2) == Answer(5, "sticky_then_top", None)
    assert rec.answer(1, prev_track=1, prev_track_time=0.2, played=[5]) == Answer(7, "sticky_then_top", None)


def test_nothing_left_hands_over_to_random() -> None:
    rec = Harness("sticky_then_top", TRACKS, threshold=0.95)  # no top list loaded
    answer = rec.answer(1, prev_track=1, prev_track_time=0.2)
    assert (answer.recommender, answer.fallback) == ("random", "no_table")
