"""The verdict gate: ship / don't ship / invalid, and every rule that can make a result invalid."""

from __future__ import annotations

import json
import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from botify.analysis import verdict as vd
from botify.analysis.ab import analyze
from botify.analysis.synth import SynthSpec, events_frame, generate, write_logs
from botify.cli.ab import main as ab_main
from botify.lab import pick_champion
from botify.service.eventlog import EventLog


def _events(n_users: int = 3000, effect: float = 1.0, seed: int = 5, arms=("C", "T1")) -> pd.DataFrame:
    spec = SynthSpec(
        n_users=n_users, experiments={"EXP": arms}, effects={"T1": effect}, seed=seed
    )
    return events_frame(generate(spec))


def test_real_effect_ships_and_aa_does_not() -> None:
    res = analyze(_events(effect=1.3), "EXP")
    assert res.verdict is not None
    assert res.verdict.decision == vd.SHIP and res.verdict.arm == "T1", res.verdict.summary()
    av = res.verdict.arms["T1"]
    assert av.lower > 0 and av.p_holm <= 0.05
    aa = analyze(_events(effect=1.0, seed=6), "EXP")
    assert aa.verdict.decision == vd.DONT_SHIP, aa.verdict.summary()
    assert "not significant after Holm" in aa.verdict.summary()


def _with_fallbacks(ev: pd.DataFrame, arm: str, share: float, seed: int = 0) -> pd.DataFrame:
    """`share` of `arm`'s next answers marked as answered by `random` after an error."""
    ev = ev.copy()
    rng = np.random.default_rng(seed)
    pick = (
        (ev["exp:EXP"].astype(str) == arm).to_numpy()
        & (ev["message"] == "next").to_numpy()
        & (rng.random(len(ev)) < share)
    )
    rec = np.where(ev["message"].to_numpy() == "next", arm.lower() + "_rec", None).astype(object)
    rec[pick] = "random"
    fb = np.full(len(ev), None, object)
    fb[pick] = "error"
    ev["recommender"] = pd.Categorical(rec)
    ev["fallback"] = pd.Categorical(fb)
    return ev


def test_fallback_share_makes_the_arm_invalid_with_a_readable_reason() -> None:
    ev = _with_fallbacks(_events(effect=1.3), "T1", 0.37)
    res = analyze(ev, "EXP")
    h = res.health.set_index("arm")
    assert h.loc["C", "fallback_answers"] == 0
    assert abs(h.loc["T1", "fallback_share"] - 0.37) < 0.02
    assert res.verdict.decision == vd.INVALID
    assert res.verdict.arms["T1"].decision == vd.INVALID
    assert any(
        r.startswith("T1: 3") and "% of answers from fallback `random`, reason error" in r
        for r in res.verdict.reasons
    ), res.verdict.reasons
    # Under the threshold the arm is healthy; the threshold is a gate setting.
    ok = analyze(_with_fallbacks(_events(effect=1.3), "T1", 0.004), "EXP")
    assert ok.verdict.decision == vd.SHIP
    strict = analyze(
        _with_fallbacks(_events(effect=1.3), "T1", 0.004), "EXP", gate=vd.Gate(max_fallback=0.001)
    )
    assert strict.verdict.decision == vd.INVALID


def _drop_users(ev: pd.DataFrame, arm: str, keep: float, seed: int = 1) -> pd.DataFrame:
    users = ev.loc[ev["exp:EXP"].astype(str) == arm, "user"].unique()
    rng = np.random.default_rng(seed)
    gone = users[rng.random(len(users)) >= keep]
    return ev.loc[~ev["user"].isin(gone)].reset_index(drop=True)


def test_srm_against_configured_unequal_shares() -> None:
    ev = _drop_users(_events(n_users=4000), "T1", 1 / 3)  # about 75% C / 25% T1
    unequal = vd.Configured("EXP", {"C": "a", "T1": "b"}, {"C": 0.75, "T1": 0.25})
    res = analyze(ev, "EXP", configured=unequal)
    assert not res.srm.mismatch, res.srm
    assert res.verdict.decision != vd.INVALID, res.verdict.summary()
    # The same logs tested against an equal split: a (true) mismatch, verdict invalid.
    equal = vd.Configured("EXP", {"C": "a", "T1": "b"}, {"C": 0.5, "T1": 0.5})
    bad = analyze(ev, "EXP", configured=equal)
    assert bad.srm.mismatch
    assert bad.verdict.decision == vd.INVALID
    assert any("sample ratio mismatch" in r and "0.001" in r for r in bad.verdict.reasons)


def test_configured_arm_never_served_is_invalid() -> None:
    ev = _events(n_users=400, effect=1.3)
    three = vd.Configured("EXP", {"C": "a", "T1": "b", "T2": "c"}, {"C": 0.9, "T1": 0.09, "T2": 0.01})
    res = analyze(ev, "EXP", configured=three)
    assert res.verdict.decision == vd.INVALID
    assert any("T2 configured (share 1%) but never served" in r for r in res.verdict.reasons)


def test_too_few_users_gives_no_verdict() -> None:
    res = analyze(_events(n_users=40, effect=1.3), "EXP")
    assert res.verdict.decision == vd.INVALID
    assert any("fewer than the minimum 30" in r for r in res.verdict.reasons)
    small = analyze(_events(n_users=40, effect=1.3), "EXP", gate=vd.Gate(min_users=5))
    assert small.verdict.decision != vd.INVALID
    # above the minimum but below what the power table needs: a warning, not a block
    assert any("power table needs" in w for w in small.verdict.warnings)


def _row(metric: str, effect: float, p: float, p_holm: float) -> dict[str, object]:
    lo, hi = (effect - 1, effect + 1) if p_holm <= 0.05 else (effect - 5, effect + 5)
    return {"treatment": "T1", "metric": metric, "effect": effect, "lower": lo, "upper": hi,
            "p_value": p, "p_holm": p_holm}  # fmt: skip


def _decide(rows: list[dict[str, object]], **kw: object) -> vd.Verdict:
    return vd.decide(
        table=pd.DataFrame(rows), control="C", treatments=["T1"],
        users_per_arm={"C": 1000, "T1": 1000}, srm_mismatch=False, srm_p=0.5,
        srm_threshold=0.001, **kw,
    )  # fmt: skip


def test_holm_and_metric_direction() -> None:
    # significant before correction, not after Holm: no ship
    v = _decide([_row("time", 3.0, 0.02, 0.08)])
    assert v.decision == vd.DONT_SHIP
    # the primary metric better, latency significantly up (bad): no ship
    v = _decide([_row("time", 3.0, 1e-4, 1e-3), _row("mean_request_latency", 10.0, 1e-5, 1e-4)])
    assert v.decision == vd.DONT_SHIP and "worse on mean_request_latency" in v.summary()
    # latency significantly down is good: ship
    v = _decide([_row("time", 3.0, 1e-4, 1e-3), _row("mean_request_latency", -10.0, 1e-5, 1e-4)])
    assert v.decision == vd.SHIP and v.arm == "T1"
    # a lower-is-better primary metric ships on a decrease
    v = _decide([_row("mean_request_latency", -10.0, 1e-5, 1e-4)],
                gate=vd.Gate(primary="mean_request_latency"))  # fmt: skip
    assert v.decision == vd.SHIP
    # significantly worse on the primary metric
    v = _decide([_row("time", -3.0, 1e-4, 1e-3)])
    assert v.decision == vd.DONT_SHIP and "significantly worse" in v.summary()


def test_service_snapshot_beside_the_log_round_trip(tmp_path: Path) -> None:
    log = EventLog(tmp_path / "logs")
    desc = [{"name": "EXP", "arms": {"C": "random", "T1": "top_pop"}, "shares": None},
            {"name": "B", "arms": {"C": "random", "T1": "x"}, "shares": {"C": 0.8, "T1": 0.2}}]  # fmt: skip
    log.config({"timestamp": 1, "experiments": desc})
    log.event({"message": "next", "timestamp": 2, "user": 1, "track": 1, "time": 0.5})
    assert log.flush()
    # a reload appends a second snapshot to the same worker directory
    desc2 = [{"name": "B", "arms": {"C": "random", "T1": "x"}, "shares": {"C": 0.5, "T1": 0.5}}]
    log.config({"timestamp": 3, "experiments": desc2})
    log.close()
    files = list((tmp_path / "logs").rglob(vd.SNAPSHOT_FILE))
    assert len(files) == 1 and files[0].parent == log.directory
    snaps = vd.read_config_snapshots(tmp_path / "logs")
    assert [s["timestamp"] for s in snaps] == [1, 3]
    exp = vd.configured_experiment(snaps, "EXP")
    assert exp is not None and exp.shares == {"C": 0.5, "T1": 0.5} and not exp.changed
    b = vd.configured_experiment(snaps, "B")
    assert b is not None and b.changed and b.shares == {"C": 0.5, "T1": 0.5}
    assert vd.configured_experiment(snaps, "NOPE") is None
    # a shares change during the run makes the split invalid
    v = _decide([_row("time", 3.0, 1e-4, 1e-3)], configured=b)
    assert v.decision == vd.INVALID and "changed" in v.summary()


def test_cli_reads_the_snapshot_and_prints_the_verdict(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = SynthSpec(n_users=1500, experiments={"EXP": ("C", "T1", "T2")}, seed=3)
    logs = tmp_path / "logs"
    write_logs(generate(spec), logs)
    # The service configured a T3 that never got traffic: the gate must say so.
    worker = next(p.parent for p in logs.rglob("events-*.jsonl*"))
    arms = {"C": "a", "T1": "b", "T2": "c", "T3": "d"}
    (worker / vd.SNAPSHOT_FILE).write_text(
        json.dumps({"timestamp": 1, "experiments": [{"name": "EXP", "arms": arms, "shares": None}]})
        + "\n"
    )
    out = tmp_path / "r.json"
    code = ab_main(["--logs", str(logs), "--json", str(out), "--fail-on-invalid"])
    text = capsys.readouterr().out
    assert code == 4
    assert "VERDICT: INVALID" in text and "T3 configured" in text
    d = json.loads(out.read_text())
    assert d["verdict"]["decision"] == "invalid"
    assert d["srm"]["threshold"] == 0.001 and d["srm"]["shares"]["T3"] == 0.25


@pytest.mark.parametrize("flag", [["--min-users", "x"], ["--max-fallback", "2"], ["--metric", "nope"]])
def test_cli_bad_gate_flags_exit_2(tmp_path: Path, flag: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        ab_main(["--logs", str(tmp_path), *flag])
    assert exc.value.code == 2
    assert "Traceback" not in capsys.readouterr().err


def test_lab_promotes_only_what_the_gate_ships() -> None:
    arms = {"C": "champ", "T1": "chall"}
    ship = SimpleNamespace(verdict=vd.Verdict(vd.SHIP, "T1", [], [], {}, vd.Gate()))
    assert pick_champion(ship, arms, "champ") == "chall"
    # an interval above zero is not enough when the gate says invalid (e.g. SRM)
    inv = SimpleNamespace(verdict=vd.Verdict(vd.INVALID, None, ["srm"], [], {}, vd.Gate()))
    assert pick_champion(inv, arms, "champ") == "champ"
    assert pick_champion(SimpleNamespace(verdict=None), arms, "champ") == "champ"


def test_health_from_counts_matches_event_level() -> None:
    ev = _with_fallbacks(_events(n_users=500), "T1", 0.2)
    direct = vd.serving_health(ev, "exp:EXP")
    nxt = ev.loc[ev["message"] == "next"]
    counts = (
        pd.DataFrame({"arm": nxt["exp:EXP"].astype(str), "recommender": nxt["recommender"].astype(object),
                      "fallback": nxt["fallback"].astype(object)})  # fmt: skip
        .groupby(["arm", "recommender", "fallback"], dropna=False).size().reset_index(name="n")
    )
    counts = counts.astype(object).where(counts.notna(), None)
    via = vd.health_from_counts(counts)
    pd.testing.assert_frame_equal(direct.reset_index(drop=True), via.reset_index(drop=True))
    assert math.isclose(direct.loc[direct["arm"] == "C", "fallback_share"].iloc[0], 0.0)


def test_damaged_snapshots_are_skipped_not_fatal(tmp_path: Path) -> None:
    d = tmp_path / "w"
    d.mkdir()
    good = {"timestamp": 5, "experiments": [{"name": "E", "arms": {"C": "a", "T1": "b"},
                                             "shares": {"C": 0.8, "T1": 0.2}}]}  # fmt: skip
    lines = [
        "not json",
        json.dumps([1, 2]),
        json.dumps({"timestamp": 1, "experiments": [{"name": "E", "arms": {"C": "a", "T1": "b"},
                                                     "shares": {"C": "x", "T1": True}}]}),  # fmt: skip
        json.dumps({"timestamp": 2, "experiments": [{"name": "E", "arms": "C"}]}),
        json.dumps(good),
        '{"timestamp": 9, "experi',  # cut by a crash
    ]
    (d / vd.SNAPSHOT_FILE).write_text("\n".join(lines))
    got = vd.configured_experiment(vd.read_config_snapshots(tmp_path), "E")
    assert got is not None and got.shares == {"C": 0.8, "T1": 0.2} and not got.changed
