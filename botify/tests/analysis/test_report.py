"""HTML report and terminal output of the A/B analysis."""

from __future__ import annotations

import base64
import re
from pathlib import Path

from botify.analysis.ab import analyze
from botify.analysis.report import print_terminal, render_html, write_html
from botify.analysis.synth import DAY_MS, START_MS, SynthEvents, SynthSpec, events_frame, generate
from rich.console import Console


def _result(srm_broken: bool = False, cuped: bool = False):
    synth = generate(
        SynthSpec(
            n_users=1500,
            days=2,
            seed=31,
            experiments={"EXP": ("C", "T1", "T2")},
            effects={"T2": 1.25},
        )
    )
    f = synth.frame
    day0 = f["timestamp"] < START_MS + DAY_MS
    prev = events_frame(SynthEvents(f[day0], synth.arms, synth.spec))
    cur = events_frame(SynthEvents(f[~day0], synth.arms, synth.spec))
    if srm_broken:
        t1 = cur.loc[cur["exp:EXP"] == "T1", "user"].unique()
        cur = cur[~cur["user"].isin(t1[: len(t1) // 2])]
    return analyze(cur, "EXP", previous_events=prev if cuped else None, mde_target=0.05)


def test_html_is_self_contained_with_three_plots(tmp_path: Path) -> None:
    res = _result(cuped=True)
    html = render_html(res)
    imgs = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', html)
    assert len(imgs) == 3
    for b in imgs:
        assert base64.b64decode(b)[:8] == b"\x89PNG\r\n\x1a\n"
    # nothing to fetch: no external scripts, styles or images
    assert not re.search(r'(src|href)="(https?:)?//', html)
    for text in ("mean_time_per_session", "time_per_session", "CUPED", "Session length", "T2"):
        assert text in html
    p = write_html(res, tmp_path / "sub" / "r.html")
    assert p.read_text() == html


def test_terminal_output_flags_srm_loudly() -> None:
    con = Console(record=True, width=200)
    print_terminal(_result(srm_broken=True), con)
    text = con.export_text()
    assert "SAMPLE RATIO MISMATCH" in text and "MISMATCH" in text.split("SRM vs configured")[1]
    assert "(alarm if p < 0.001)" in text
    assert "tracks/sess" in text and "T2" in text
    assert "VERDICT: INVALID" in text


def test_terminal_output_clean_run() -> None:
    con = Console(record=True, width=200)
    res = _result()
    print_terminal(res, con)
    text = con.export_text()
    assert "SRM vs configured shares (equal)" in text and "ok" in text
    assert "MISMATCH" not in text
    assert "Power" in text


def test_terminal_fits_80_columns_with_the_gates_verdict_column() -> None:
    res = _result(cuped=True)
    con = Console(record=True, width=80)
    print_terminal(res, con)
    text = con.export_text()
    assert max(len(line) for line in text.splitlines()) <= 80
    assert "\u2026" not in text  # rich's ellipsis: no number cut
    v = res.verdict
    assert v is not None and f"VERDICT: {v.decision.upper()}" in text
    rows = [line.split() for line in text.splitlines() if line.strip().startswith(("T1 ", "T2 "))]
    course = rows[:10]  # the first table: arm x metric of the course
    for arm in ("T1", "T2"):
        row = next(r for r in course if r[0] == arm and r[1] == "time")
        want = {"ship": ["SHIP"], "don't ship": ["no", "ship"], "invalid": ["invalid"]}
        w = want[v.arms[arm].decision]
        assert row[-len(w):] == w, (row, v.arms[arm])
    # CUPED says how many users had a pre-period and how much variance it removed
    assert re.search(r"CUPED: \d+ of \d+ users \(\d+%\) had a pre-period", text)
    assert "variance removed: time" in text


def test_colours_follow_the_metric_direction() -> None:
    import pandas as pd
    from botify.analysis.report import _effects_table

    df = pd.DataFrame([
        {"treatment": "T1", "metric": "mean_request_latency", "effect": 10.0, "lower": 5.0,
         "upper": 15.0, "p_holm": 0.001},
        {"treatment": "T1", "metric": "time", "effect": 10.0, "lower": 5.0, "upper": 15.0,
         "p_holm": 0.001},
    ])  # fmt: skip
    t = _effects_table("x", df)
    effect_cells = list(t.columns[2]._cells)
    verdict_cells = list(t.columns[-1]._cells)
    assert "red" in effect_cells[0] and "green" in effect_cells[1]  # latency up is bad
    assert "worse" in verdict_cells[0] and "better" in verdict_cells[1]


def test_timeline_has_resolution_on_a_short_run() -> None:
    """A simulated day lasts 20-30 s: the curve is drawn against sessions, never one point."""
    synth = generate(SynthSpec(n_users=600, seed=5, effects={"T1": 1.2}))
    f = synth.frame.copy()
    # squeeze the whole run into 25 seconds, keeping the order
    lo, hi = f["timestamp"].min(), f["timestamp"].max()
    f["timestamp"] = lo + ((f["timestamp"] - lo) * 25_000 // max(hi - lo, 1)).astype("int64")
    res = analyze(events_frame(SynthEvents(f, synth.arms, synth.spec)), "EXP")
    tl = res.timeline
    for arm in ("C", "T1"):
        a = tl.loc[tl["arm"] == arm]
        assert len(a) >= 50, len(a)
        assert a["sessions"].is_monotonic_increasing and a["elapsed"].max() <= 25.0
        fin = res.user_level.loc[res.user_level["arm"] == arm, "sessions"].sum()
        assert a["sessions"].iloc[-1] == fin
    from botify.analysis.report import plot_timeline

    assert base64.b64decode(plot_timeline(res))[:4] == b"\x89PNG"
