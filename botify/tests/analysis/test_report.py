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
    assert "SAMPLE RATIO MISMATCH" in text and "MISMATCH" in text.split("SRM check")[1]
    assert "mean_tracks_per_session" in text and "T2" in text


def test_terminal_output_clean_run() -> None:
    con = Console(record=True, width=200)
    res = _result()
    print_terminal(res, con)
    text = con.export_text()
    assert "SRM check" in text and "ok" in text
    assert "MISMATCH" not in text
    assert "Power" in text
