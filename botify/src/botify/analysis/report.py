"""Outputs of the A/B analysis: a rich terminal table and a self-contained HTML report.

The HTML embeds its plots as base64 PNG (matplotlib Figure objects, Agg renderer), so it is a
single file that can be mailed or attached to a CI run with nothing to fetch.
"""

from __future__ import annotations

import base64
import html
import io
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from botify.analysis.ab import AbResult
from botify.analysis.verdict import direction
from matplotlib.figure import Figure
from rich import box
from rich.console import Console
from rich.panel import Panel
from rich.table import Table

_COLORS = ["#4c72b0", "#dd8452", "#55a868", "#c44e52", "#8172b3", "#937860", "#da8bc3",
           "#8c8c8c", "#ccb974", "#64b5cd"]  # fmt: skip


def _fmt(x: Any, digits: int = 4) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "n/a"
    if isinstance(x, float | np.floating):
        return f"{x:.{digits}g}"
    return str(x)


def _pct(x: float) -> str:
    return "n/a" if not math.isfinite(x) else f"{x:+.2f}%"


def _p(x: float) -> str:
    if not math.isfinite(x):
        return "n/a"
    return f"{x:.2e}" if x < 1e-3 else f"{x:.3f}"


# --------------------------------------------------------------------------- terminal


#: Short names that keep the terminal table within 80 columns.
SHORT = {
    "mean_request_latency": "latency ms",
    "mean_tracks_per_session": "tracks/sess",
    "mean_time_per_session": "time/sess",
    "time_per_session": "time/sess",
    "tracks_per_session": "tracks/sess",
    "request_latency_ms": "latency ms",
}


def _ci(lo: Any, hi: Any) -> str:
    if lo is None or hi is None or not (math.isfinite(lo) and math.isfinite(hi)):
        return "n/a"
    return f"{lo:+.1f}..{hi:+.1f}"


def _row_call(res: AbResult | None, r: dict[str, Any], gate_table: bool) -> str:
    """The verdict column: the gate's decision on the primary metric's row, and on the
    other rows what the gate reads there (better / worse after Holm, or n.s.)."""
    v = res.verdict if res is not None else None
    arm = str(r["treatment"])
    if gate_table and v is not None:
        av = v.arms.get(arm)
        if av is not None and av.decision == "invalid":
            return "[bold red]invalid[/]"
        if r["metric"] == v.gate.primary and av is not None:
            return "[bold green]SHIP[/]" if av.decision == "ship" else "no ship"
    alpha = res.alpha if res is not None else 0.05
    p = r.get("p_holm", math.nan)
    if p is None or not math.isfinite(p) or p > alpha:
        return "[dim]n.s.[/]"
    good = direction(str(r["metric"])) * float(r["effect"]) > 0
    return "[green]better[/]" if good else "[red]worse[/]"


def _effects_table(
    title: str,
    df: pd.DataFrame,
    res: AbResult | None = None,
    gate_table: bool = False,
    extra: dict[str, Callable[[dict[str, Any]], str]] | None = None,
) -> Table:
    """Effects in at most 80 columns: short metric names, intervals as lo..hi (% of control)."""
    t = Table(title=title, title_justify="left", header_style="bold", box=box.SIMPLE_HEAD,
              padding=(0, 1), pad_edge=False)  # fmt: skip
    t.add_column("arm", no_wrap=True)
    t.add_column("metric", no_wrap=True)
    t.add_column("effect", justify="right", no_wrap=True)
    t.add_column("course CI %", justify="right", no_wrap=True)
    has_rel = "rel_lower" in df.columns
    if has_rel:
        t.add_column("delta CI %", justify="right", no_wrap=True)
    t.add_column("p Holm", justify="right", no_wrap=True)
    for name in extra or {}:
        t.add_column(name, justify="right", no_wrap=True)
    t.add_column("verdict", no_wrap=True)
    for r in df.to_dict(orient="records"):
        eff = r["effect"]
        sig = math.isfinite(r.get("p_holm", math.nan) or math.nan) and r["p_holm"] <= (
            res.alpha if res is not None else 0.05
        )
        good = direction(str(r["metric"])) * eff if math.isfinite(eff) else 0.0
        color = "green" if good > 0 else "red" if good < 0 else "white"
        if sig:
            color = "bold " + color
        cells = [str(r["treatment"]), SHORT.get(str(r["metric"]), str(r["metric"])),
                 f"[{color}]{_pct(eff)}[/]", _ci(r["lower"], r["upper"])]  # fmt: skip
        if has_rel:
            cells.append(_ci(r.get("rel_lower"), r.get("rel_upper")))
        cells.append(_p(r.get("p_holm", math.nan)))
        cells += [fn(r) for fn in (extra or {}).values()]
        cells.append(_row_call(res, r, gate_table))
        t.add_row(*cells)
    return t


_VERDICT_STYLE = {"ship": "bold white on green", "don't ship": "bold", "invalid": "bold white on red"}


def verdict_lines(res: AbResult) -> list[str]:
    """The gate's decision as plain lines: headline, reasons, size warnings."""
    v = res.verdict
    if v is None:
        return []
    out = [f"VERDICT: {v.decision.upper()}" + (f" {v.arm}" if v.arm else "")
           + f" (on {v.gate.primary}; Holm across arms x metrics at alpha {v.gate.alpha:g})"]  # fmt: skip
    out += [f"- {r}" for r in v.reasons]
    out += [f"- warning: {w}" for w in v.warnings]
    return out


def print_terminal(res: AbResult, console: Console | None = None) -> None:
    """Rich tables for a terminal; warnings first and loud, the gate's verdict last."""
    con = console or Console()
    for w in res.warnings:
        style = "bold white on red" if "MISMATCH" in w else "bold yellow"
        con.print(Panel(w, style=style))
    _print_body(res, con)
    if res.health is not None and len(res.health):
        parts = []
        for r in res.health.to_dict(orient="records"):
            share = r["fallback_share"]
            txt = f"{r['arm']} {share * 100:.1f}%"
            if r["fallback_answers"]:
                txt += f" ({r['fallback_recommender']}, {r['fallback_reason']})"
            parts.append(txt)
        con.print("answers from a fallback: " + ", ".join(parts))
    lines = verdict_lines(res)
    if lines:
        style = _VERDICT_STYLE.get(res.verdict.decision if res.verdict else "", "bold")
        con.print(Panel("\n".join(lines), style=style))


def _print_body(res: AbResult, con: Console) -> None:
    users = ", ".join(f"{a}: {n}" for a, n in res.users_per_arm.items())
    con.print(
        f"[bold]{res.experiment}[/] control={res.control} users: {users}; "
        f"unfinished sessions dropped: {res.unfinished_sessions}"
    )
    srm = res.srm
    shares = (
        ", ".join(f"{a} {v:.0%}" for a, v in res.configured.shares.items())
        if res.configured is not None
        else "equal"
    )
    con.print(
        f"SRM vs configured shares ({shares}): chi2={_fmt(srm.chi2)} p={_p(srm.p_value)} "
        f"(alarm if p < {res.srm_threshold:g}): "
        + ("[bold red]MISMATCH[/]" if srm.mismatch else "[green]ok[/]")
    )
    con.print(_effects_table("Course metrics (user level, Welch 95% CI)", res.table, res, True))
    if len(res.ratios):
        con.print(_effects_table("Session-level ratios (delta method, Welch t)", res.ratios, res))
    if res.cuped is not None and len(res.cuped):
        con.print(
            _effects_table(
                "CUPED (covariate: same metric on previous logs)",
                res.cuped,
                res,
                extra={"var. red.": lambda r: f"{r['variance_reduction'] * 100:.1f}%"},
            )
        )
        con.print(cuped_note(res))
    if res.power is not None and len(res.power):
        t = Table(title="Power (80%) at the current sample size", title_justify="left")
        for c in ("metric", "control sd", "MDE abs", "MDE %"):
            t.add_column(c, justify="right" if c != "metric" else "left")
        has_target = "users_per_arm_needed" in res.power.columns
        if has_target:
            t.add_column("users/arm for target", justify="right")
        for r in res.power.to_dict(orient="records"):
            row = [SHORT.get(r["metric"], r["metric"]), _fmt(r["control_sd"]), _fmt(r["mde_abs"]),
                   f"{r['mde_pct']:.2f}%"]  # fmt: skip
            if has_target:
                n = r.get("users_per_arm_needed")
                row.append(
                    f"{int(n)} (for {r['target_pct']:.1f}%)" if n is not None and n == n else "n/a"
                )
            t.add_row(*row)
        con.print(t)


def cuped_note(res: AbResult) -> str:
    """How many users had a pre-period, how much variance CUPED removed, and why so little."""
    c = res.cuped
    if c is None or not len(c):
        return ""
    first = c.iloc[0]
    n_pre = int(first.get("users_pre", 0))
    n_all = int(sum(res.users_per_arm.values()))
    per_metric = c.drop_duplicates("metric")
    red = ", ".join(
        f"{SHORT.get(r['metric'], r['metric'])} {r['variance_reduction'] * 100:.0f}%"
        for r in per_metric.to_dict(orient="records")
    )
    text = (
        f"CUPED: {n_pre} of {n_all} users ({n_pre / max(n_all, 1):.0%}) had a pre-period; "
        f"variance removed: {red}."
    )
    best = float(per_metric["variance_reduction"].max())
    if best < 0.1:
        corr = per_metric.get("corr")
        rho = float(np.nanmax(np.abs(corr))) if corr is not None and len(corr) else math.nan
        text += (
            " Small because CUPED removes about corr(pre, now)^2 of the variance of the users "
            f"with history (here |corr| <= {rho:.2f}) and nothing for the "
            f"{n_all - n_pre} without one."
        )
    return text


# --------------------------------------------------------------------------- plots


def _fig(w: float, h: float) -> tuple[Figure, Any]:
    # Figure without pyplot: no global state, no GUI backend, safe in threads.
    fig = Figure(figsize=(w, h))
    return fig, fig.subplots()


def _png(fig: Figure) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def plot_effects(res: AbResult) -> str:
    """Forest plot: effect and CI in % of control, per arm and metric."""
    rows = [(r, "Welch") for r in res.table.to_dict(orient="records")]
    rows += [(r, "delta") for r in res.ratios.to_dict(orient="records")]
    if res.cuped is not None:
        rows += [(r, "CUPED") for r in res.cuped.to_dict(orient="records")]
    fig, ax = _fig(8, 0.35 * max(len(rows), 3) + 1)
    arms = [a for a in res.arms if a != res.control]
    for i, (r, _kind) in enumerate(rows):
        y = len(rows) - 1 - i
        color = (
            _COLORS[arms.index(r["treatment"]) % len(_COLORS)] if r["treatment"] in arms else "k"
        )
        lo, hi, eff = r["lower"], r["upper"], r["effect"]
        if all(math.isfinite(v) for v in (lo, hi)):
            ax.plot([lo, hi], [y, y], color=color, lw=2)
        if math.isfinite(eff):
            ax.plot([eff], [y], "o", color=color, mfc="white" if not r["significant"] else color)
    ax.axvline(0, color="grey", lw=1, ls="--")
    ax.set_yticks(range(len(rows)))
    ax.set_yticklabels([f"{r['treatment']} {r['metric']} ({k})" for r, k in rows][::-1], fontsize=8)
    ax.set_xlabel(f"effect, % of control ({int((1 - res.alpha) * 100)}% CI); filled = significant")
    ax.grid(axis="x", alpha=0.3)
    return _png(fig)


def plot_session_lengths(res: AbResult) -> str:
    """Distribution of tracks per finished session, per arm (normalised)."""
    fig, ax = _fig(8, 3.5)
    sl = res.session_lengths
    for i, arm in enumerate(res.arms):
        a = sl.loc[sl["arm"] == arm]
        if a.empty:
            continue
        share = a["sessions"] / a["sessions"].sum()
        ax.step(a["tracks"], share, where="mid", color=_COLORS[i % len(_COLORS)], label=arm)
    ax.set_xlabel("tracks per session")
    ax.set_ylabel("share of sessions")
    ax.set_yscale("log")
    ax.legend()
    ax.grid(alpha=0.3)
    return _png(fig)


def plot_timeline(res: AbResult) -> str:
    """Cumulative time per session per arm against finished sessions so far: does the gap settle?

    Against sessions, not wall time: a simulated day lasts 20-30 s, which on a
    time axis was one point per arm; sessions always give the curve resolution.
    """
    fig, ax = _fig(8, 3.5)
    tl = res.timeline
    drawn = 0
    for i, arm in enumerate(res.arms):
        a = tl.loc[tl["arm"] == arm] if len(tl) else tl
        if a.empty:
            continue
        ax.plot(a["sessions"], a["time_per_session"], "-" if len(a) > 1 else "o",
                color=_COLORS[i % len(_COLORS)], label=arm)  # fmt: skip
        drawn += 1
    ax.set_xlabel("finished sessions so far (per arm)")
    ax.set_ylabel("cumulative time per session")
    if drawn:
        ax.legend()
    else:
        ax.text(0.5, 0.5, "no finished session", ha="center", va="center", transform=ax.transAxes)
    ax.grid(alpha=0.3)
    return _png(fig)


# --------------------------------------------------------------------------- HTML

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2em;max-width:1100px;color:#222}
table{border-collapse:collapse;margin:0.5em 0 1.5em 0;font-size:0.9em}
th,td{border:1px solid #ccc;padding:4px 8px;text-align:right}
th{background:#f3f3f3} td.l{text-align:left}
.pos{color:#187a2f}.neg{color:#b3261e}.sig{font-weight:bold;background:#e7f5ea}
.warn{background:#fff3cd;border:1px solid #e0c060;padding:8px;margin:6px 0}
.alarm{background:#b3261e;color:white;font-weight:bold;padding:10px;margin:6px 0}
.ship{background:#e7f5ea;border:2px solid #187a2f;padding:10px;margin:6px 0}
img{max-width:100%}
"""


def _html_effects(df: pd.DataFrame, extra: list[str] | None = None) -> str:
    cols = ["treatment", "metric", "control_mean", "treatment_mean", "effect", "lower", "upper",
            "rel_lower", "rel_upper", "df", "p_value", "p_holm", "significant",
            "significant_holm"] + (extra or [])  # fmt: skip
    cols = [c for c in cols if c in df.columns]
    out = ["<table><tr>" + "".join(f"<th>{html.escape(c)}</th>" for c in cols) + "</tr>"]
    for r in df.to_dict(orient="records"):
        cls = ' class="sig"' if r.get("significant") else ""
        cells = []
        for c in cols:
            v = r[c]
            if c in ("treatment", "metric"):
                cells.append(f'<td class="l">{html.escape(str(v))}</td>')
            elif c in ("effect", "lower", "upper", "rel_lower", "rel_upper"):
                k = "pos" if v > 0 else "neg" if v < 0 else ""
                cells.append(f'<td class="{k}">{_pct(v)}</td>')
            elif c.startswith("p_"):
                cells.append(f"<td>{_p(v)}</td>")
            elif c == "variance_reduction":
                cells.append(f"<td>{v * 100:.1f}%</td>")
            else:
                cells.append(f"<td>{html.escape(_fmt(v))}</td>")
        out.append(f"<tr{cls}>" + "".join(cells) + "</tr>")
    out.append("</table>")
    return "\n".join(out)


def render_html(res: AbResult) -> str:
    """The whole report as one HTML string (plots inlined)."""
    e = html.escape
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>A/B {e(res.experiment)}</title><style>{_CSS}</style></head><body>",
        f"<h1>A/B analysis: {e(res.experiment)}</h1>",
        f"<p>control <b>{e(res.control)}</b>; arms {e(', '.join(res.arms))}; alpha {res.alpha}; "
        f"users: "
        + ", ".join(f"{e(a)}={n}" for a, n in res.users_per_arm.items())
        + f"; unfinished sessions dropped: {res.unfinished_sessions}</p>",
    ]
    for w in res.warnings:
        cls = "alarm" if "MISMATCH" in w else "warn"
        parts.append(f'<div class="{cls}">{e(w)}</div>')
    if res.verdict is not None:
        v = res.verdict
        lines = verdict_lines(res)
        cls = "alarm" if v.decision == "invalid" else "ship" if v.decision == "ship" else "warn"
        parts.append(f'<div class="{cls}" id="verdict"><b>{e(lines[0])}</b><ul>'
                     + "".join(f"<li>{e(x[2:])}</li>" for x in lines[1:]) + "</ul></div>")  # fmt: skip
    if res.health is not None and len(res.health):
        parts.append("<h3>Serving health (answers from a fallback, per arm)</h3>")
        parts.append(res.health.to_html(index=False, float_format=lambda x: f"{x:.4g}"))
    s = res.srm
    parts.append(
        f"<p>Sample-ratio check: users {dict(zip(s.arms, s.observed, strict=True))}, "
        f"chi2={_fmt(s.chi2)}, p={_p(s.p_value)}: "
        + ("<b>MISMATCH</b>" if s.mismatch else "ok")
        + "</p>"
    )
    parts.append("<h2>Effects</h2>")
    parts.append(f'<img alt="effects" src="data:image/png;base64,{plot_effects(res)}">')
    parts.append("<h3>Course metrics (user level, Welch CI, Holm across arms x metrics)</h3>")
    parts.append(_html_effects(res.table))
    if len(res.ratios):
        parts.append("<h3>Session-level ratios (delta method)</h3>")
        parts.append(_html_effects(res.ratios))
    if res.cuped is not None and len(res.cuped):
        parts.append("<h3>CUPED (covariate: the same metric on the previous logs)</h3>")
        parts.append(_html_effects(res.cuped, ["variance_reduction", "coverage"]))
    if res.power is not None and len(res.power):
        parts.append("<h3>Power at the current sample size (80% power)</h3>")
        parts.append(res.power.to_html(index=False, float_format=lambda x: f"{x:.4g}"))
    parts.append("<h2>Session length per arm</h2>")
    parts.append(
        f'<img alt="session lengths" src="data:image/png;base64,{plot_session_lengths(res)}">'
    )
    parts.append("<h2>Metric over time per arm</h2>")
    parts.append(f'<img alt="timeline" src="data:image/png;base64,{plot_timeline(res)}">')
    if res.load_report is not None:
        parts.append("<h2>Logs</h2><p>" + e(res.load_report.summary()) + "</p>")
        if res.load_report.bad_examples:
            parts.append("<ul>")
            for ex in res.load_report.bad_examples[:10]:
                parts.append(f"<li>{e(ex['reason'])}: {e(ex['file'])} {e(ex['where'])}</li>")
            parts.append("</ul>")
    parts.append("</body></html>")
    return "\n".join(parts)


def write_html(res: AbResult, path: str | Path) -> Path:
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(render_html(res), encoding="utf-8")
    return p


__all__ = ["cuped_note", "plot_effects", "plot_session_lengths", "plot_timeline", "print_terminal",
           "render_html", "verdict_lines", "write_html"]  # fmt: skip
