"""CLI tests: `python -m sim.run` with dummy, oracle, console and remote (real HTTP server)."""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import subprocess
import sys
from pathlib import Path

import pytest
from sim.agents import run_inprocess
from sim.model import UserModelParams
from sim.report import mean_sem
from sim.run import _Days, ask_continue, main, parse_args
from testserver import TestServer, write_config


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    cap = capsys.readouterr()
    return code, cap.out, cap.err


def table_rows(out: str) -> dict[str, list[str]]:
    rows = {}
    for line in out.splitlines():
        if line.startswith("|") and not line.startswith("|-") and "day" not in line:
            cells = [c.strip() for c in line.strip("|").split("|")]
            rows[cells[0]] = cells
    return rows


@pytest.fixture
def cfg(tmp_path, small_world_dir):
    return write_config(tmp_path / "env.yml", small_world_dir)


# ------------------------------------------------------------------------ dummy, single
def test_dummy_days_table_and_jsonl(capsys, cfg, tmp_path):
    out_file = tmp_path / "eps.jsonl"
    code, out, err = run_cli(capsys, "--episodes", "150", "--config", str(cfg), "single",
                             "--recommender", "dummy", "--seed", "5", "--days", "2",
                             "--out", str(out_file))
    assert code == 0, err
    assert out.startswith("## Experiment results summary")
    rows = table_rows(out)
    assert set(rows) == {"1", "2", "all"}
    assert rows["1"][1] == "150" and rows["all"][1] == "300"
    recs = [json.loads(line) for line in out_file.read_text().splitlines()]
    assert len(recs) == 300
    assert set(recs[0]) == {"day", "episode", "user", "steps", "reward"}
    assert [(r["day"], r["episode"]) for r in recs] == [(d, e) for d in (1, 2) for e in range(150)]
    for day in (1, 2):
        rewards = [r["reward"] for r in recs if r["day"] == day]
        steps = [r["steps"] for r in recs if r["day"] == day]
        m, s = mean_sem(rewards)
        assert rows[str(day)][2] == f"{m:.4f}" and rows[str(day)][3] == f"{s:.4f}"
        assert rows[str(day)][4] == f"{mean_sem(steps)[0]:.4f}"
        assert all(st >= 1 for st in steps) and all(0 <= r["reward"] <= st for r, st in zip(
            [r for r in recs if r["day"] == day], steps, strict=True))


def test_dummy_same_seed_same_output_other_seed_differs(capsys, cfg, tmp_path):
    args = ["--episodes", "100", "--config", str(cfg), "single", "--recommender", "dummy",
            "--days", "1"]
    a = run_cli(capsys, *args, "--seed", "11", "--out", str(tmp_path / "a.csv"))
    b = run_cli(capsys, *args, "--seed", "11", "--out", str(tmp_path / "b.csv"))
    c = run_cli(capsys, *args, "--seed", "12")
    assert a[0] == b[0] == c[0] == 0
    assert a[1] == b[1]
    assert (tmp_path / "a.csv").read_bytes() == (tmp_path / "b.csv").read_bytes()
    assert a[1] != c[1]
    rows = list(csv.DictReader(io.StringIO((tmp_path / "a.csv").read_text())))
    assert len(rows) == 100 and list(rows[0]) == ["day", "episode", "user", "steps", "reward"]


def test_seed_accepted_before_the_subcommand(capsys, cfg):
    a = run_cli(capsys, "--episodes", "40", "--config", str(cfg), "--seed", "3", "--days", "1",
                "single", "--recommender", "dummy")
    b = run_cli(capsys, "--episodes", "40", "--config", str(cfg), "single", "--recommender",
                "dummy", "--seed", "3", "--days", "1")
    assert a[0] == b[0] == 0 and a[1] == b[1]


def test_module_entry_point_without_tty_runs_one_day(tmp_path, cfg):
    """`python -m sim.run` exactly as COMPAT, stdin not a terminal and no --days: one day."""
    proc = subprocess.run(
        [sys.executable, "-m", "sim.run", "--episodes", "30", "--config", str(cfg), "single",
         "--recommender", "dummy", "--seed", "31337"],
        stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert set(table_rows(proc.stdout)) == {"1"}
    assert "Traceback" not in proc.stderr


def test_interactive_prompt_runs_until_no(monkeypatch):
    stream = io.StringIO()
    assert ask_continue(1, io.StringIO("maybe\ny\n"), stream) is True
    assert "Would you like to start a new day? (y/n)" in stream.getvalue()
    assert ask_continue(2, io.StringIO("n\n"), io.StringIO()) is False
    assert ask_continue(3, io.StringIO(""), io.StringIO()) is False  # end of input stops
    opts = parse_args(["single", "--recommender", "dummy"])
    monkeypatch.setattr(sys, "stdin", io.StringIO("y\nn\n"))
    monkeypatch.setattr(sys.stdin, "isatty", lambda: True)
    days = _Days(opts)
    assert days.more(1) is True and days.more(2) is False


def test_interactive_cli_two_days(capsys, cfg, monkeypatch):
    stdin = io.StringIO("y\nn\n")
    stdin.isatty = lambda: True  # type: ignore[method-assign]
    monkeypatch.setattr(sys, "stdin", stdin)
    code, out, err = run_cli(capsys, "--episodes", "20", "--config", str(cfg), "single",
                             "--recommender", "dummy")
    assert code == 0
    assert set(table_rows(out)) == {"1", "2", "all"}
    assert "End of day 2" in err


# ------------------------------------------------------------------------ multi
def test_multi_dummy_reproducible_and_seeded_per_process(capsys, cfg, tmp_path):
    args = ["--episodes", "60", "--config", str(cfg), "multi", "--processes", "2",
            "--recommender", "dummy", "--seed", "9", "--days", "2"]
    a = run_cli(capsys, *args, "--out", str(tmp_path / "a.jsonl"))
    b = run_cli(capsys, *args, "--out", str(tmp_path / "b.jsonl"))
    assert a[0] == b[0] == 0, a[2]
    assert a[1] == b[1]
    assert (tmp_path / "a.jsonl").read_bytes() == (tmp_path / "b.jsonl").read_bytes()
    recs = [json.loads(x) for x in (tmp_path / "a.jsonl").read_text().splitlines()]
    assert len(recs) == 2 * 2 * 60
    assert [r["episode"] for r in recs if r["day"] == 1] == list(range(120))
    # other process count, other derived seeds: other results
    c = run_cli(capsys, *[x if x != "2" else "3" for x in args])
    assert c[0] == 0 and c[1] != a[1]
    single = run_cli(capsys, "--episodes", "60", "--config", str(cfg), "single",
                     "--recommender", "dummy", "--seed", "9", "--days", "1")
    assert table_rows(single[1])["1"] != table_rows(a[1])["1"]


def test_multi_rejects_console(capsys, cfg):
    with pytest.raises(SystemExit) as e:
        main(["--config", str(cfg), "multi", "--recommender", "console"])
    assert e.value.code == 2


# ------------------------------------------------------------------------ oracle, console
def test_oracle_is_labelled_and_far_above_dummy(capsys, cfg):
    code, out, err = run_cli(capsys, "--episodes", "60", "--config", str(cfg), "single",
                             "--recommender", "oracle", "--days", "1")
    assert code == 0
    assert "oracle upper bound" in out and "upper bound, not a recommender" in out
    _, dummy_out, _ = run_cli(capsys, "--episodes", "60", "--config", str(cfg), "single",
                              "--recommender", "dummy", "--days", "1")
    assert float(table_rows(out)["1"][2]) > 3 * float(table_rows(dummy_out)["1"][2])


def test_console_agent_offline_uses_world_titles(capsys, cfg, small_world, monkeypatch):
    # service port 5001 has nothing in tests' config? use a closed port so titles come from the world
    closed = write_config(cfg.parent / "closed.yml", small_world.directory, port=_closed_port())
    typed = "\n".join(["abc", "99999"] + [str(t) for t in range(100)]) + "\n"
    monkeypatch.setattr(sys, "stdin", io.StringIO(typed))
    code, out, err = run_cli(capsys, "--episodes", "1", "--config", str(closed), "single",
                             "--recommender", "console", "--seed", "4")
    assert code == 0, err
    assert "not a track id: 'abc'" in out and "99999 is outside the catalog" in out
    t0 = 0
    assert f'[{t0}] "{small_world.track_title(t0)}" by {small_world.track_artist_name(t0)}' in out
    assert "session over" in out and "reward" in out
    assert set(table_rows(out)) == {"1"}


def test_console_agent_titles_from_service(capsys, tmp_path, small_world, monkeypatch):
    with TestServer(small_world.n_tracks) as srv:
        srv.state.titles = lambda t: {"artist": "Remote Artist", "title": f"Remote {t}"}
        cfg = write_config(tmp_path / "c.yml", small_world.directory, port=srv.port)
        monkeypatch.setattr(sys, "stdin", io.StringIO("5\n6\n7\nq\n"))
        code, out, err = run_cli(capsys, "--episodes", "3", "--config", str(cfg), "single",
                                 "--recommender", "console")
    assert '[5] "Remote 5" by Remote Artist' in out
    assert any(s.path == "/track/5" for s in srv.state.seen)
    assert "console: quit" in err


def _closed_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# ------------------------------------------------------------------------ remote
def test_remote_single_matches_inprocess_and_speaks_compat(capsys, tmp_path, small_world):
    n = small_world.n_tracks

    def rec(user: int, track: int, time: float) -> int:
        return (track * 7 + 1) % n

    with TestServer(n, rec) as srv:
        cfg = write_config(tmp_path / "r.yml", small_world.directory, port=srv.port)
        code, out, err = run_cli(capsys, "--episodes", "80", "--config", str(cfg), "single",
                                 "--recommender", "remote", "--seed", "21", "--days", "1",
                                 "--concurrency", "8", "--out", str(tmp_path / "r.jsonl"))
        nexts, lasts = srv.posts("next"), srv.posts("last")
        connections = srv.state.connections
    assert code == 0, err
    recs = [json.loads(x) for x in (tmp_path / "r.jsonl").read_text().splitlines()]
    assert len(recs) == 80
    # one /next per step, one /last per session, bodies as COMPAT says
    assert len(nexts) == sum(r["steps"] for r in recs)
    assert len(lasts) == 80
    assert all(set(s.body) == {"track", "time"} for s in nexts + lasts)
    assert all(isinstance(s.body["time"], float) and 0 <= s.body["time"] <= 1 for s in nexts)
    assert sum(1 for s in nexts if s.body["time"] == 1.0) >= 80  # each session's first /next
    # keep-alive: a handful of connections for hundreds of requests
    assert connections <= 8
    # the same recommender in-process gives exactly the same sessions
    local = run_inprocess(rec, small_world, episodes=80, days=1, seed=21)
    assert [(e.day, e.episode, e.user, e.steps, e.reward) for e in local.episodes] == [
        (r["day"], r["episode"], r["user"], r["steps"], r["reward"]) for r in recs
    ]


def test_remote_retries_do_not_double_count(capsys, tmp_path, small_world):
    n = small_world.n_tracks
    outs = []
    for faults in ([], ["500", "drop", "500", "drop", "500"]):
        with TestServer(n) as srv:
            srv.state.faults.extend(faults)
            cfg = write_config(tmp_path / "f.yml", small_world.directory, port=srv.port)
            code, out, err = run_cli(capsys, "--episodes", "30", "--config", str(cfg), "single",
                                     "--recommender", "remote", "--seed", "2", "--days", "1",
                                     "--concurrency", "4", "--out", str(tmp_path / "f.jsonl"))
            assert code == 0, err
            assert not srv.state.faults  # every injected fault was hit
            steps = sum(json.loads(x)["steps"] for x in (tmp_path / "f.jsonl").read_text().splitlines())
            assert len(srv.posts("next")) == steps  # answered /next == steps, retries not counted
            outs.append((out, (tmp_path / "f.jsonl").read_bytes()))
    assert outs[0] == outs[1]


@pytest.mark.parametrize(
    ("fault", "needle"),
    [
        ("garbage", "non-JSON"),
        ("missing", "without an integer 'track'"),
        ("outside", "outside the catalog"),
    ],
)
def test_remote_invalid_answers_one_line_error(capsys, tmp_path, small_world, fault, needle):
    with TestServer(small_world.n_tracks) as srv:
        srv.state.next_faults.extend(["ok"] * 5 + [fault])
        cfg = write_config(tmp_path / "bad.yml", small_world.directory, port=srv.port)
        code, out, err = run_cli(capsys, "--episodes", "20", "--config", str(cfg), "single",
                                 "--recommender", "remote", "--days", "1", "--concurrency", "2")
    assert code == 1
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and needle in errors[0]
    assert "Traceback" not in err


def test_remote_unreachable_subprocess_one_line_error(tmp_path, small_world_dir):
    cfg = write_config(tmp_path / "u.yml", small_world_dir, port=_closed_port())
    proc = subprocess.run(
        [sys.executable, "-m", "sim.run", "--episodes", "10", "--config", str(cfg), "single",
         "--recommender", "remote", "--seed", "31337", "--days", "1"],
        stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr and "Task exception" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1
    assert "unreachable" in errors[0] and "connection refused" in errors[0]


def test_multi_remote_against_server(capsys, tmp_path, small_world):
    with TestServer(small_world.n_tracks) as srv:
        cfg = write_config(tmp_path / "m.yml", small_world.directory, port=srv.port)
        args = ["--episodes", "25", "--config", str(cfg), "multi", "--processes", "2",
                "--seed", "8", "--days", "1", "--concurrency", "4"]
        a = run_cli(capsys, *args)
        b = run_cli(capsys, *args)
        assert len(srv.posts("last")) == 2 * 2 * 25
    assert a[0] == b[0] == 0, a[2]
    assert a[1] == b[1] and table_rows(a[1])["1"][1] == "50"


# ------------------------------------------------------------------------ bad input
@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        ("colour: blue\n", "unknown key 'colour'"),
        ("user_model:\n  session_budget: five\n", "user_model.session_budget: expected an integer"),
        ("user_model:\n  artist_discount_gamma: 1.5\n", "artist_discount_gamma"),
        ("user_model:\n  budget: 3\n", "user_model: unknown key 'budget'"),
    ],
)
def test_bad_config_exit_2_naming_the_field(capsys, tmp_path, small_world_dir, extra, needle):
    cfg = write_config(tmp_path / "bad.yml", small_world_dir, extra=extra)
    code, out, err = run_cli(capsys, "--config", str(cfg), "single", "--recommender", "dummy",
                             "--days", "1")
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("error:") and needle in err
    assert out == ""


def test_bad_service_value_and_missing_files(capsys, tmp_path, small_world_dir, world_copy):
    cfg = write_config(tmp_path / "p.yml", small_world_dir, port=70000)
    code, _, err = run_cli(capsys, "--config", str(cfg), "single", "--recommender", "dummy")
    assert code == 2 and "service.port: 70000 out of range" in err
    code, _, err = run_cli(capsys, "--config", str(tmp_path / "nope.yml"), "single")
    assert code == 2 and "config file not found" in err and "nope.yml" in err
    cfg = write_config(tmp_path / "w.yml", tmp_path / "no-world")
    code, _, err = run_cli(capsys, "--config", str(cfg), "single", "--recommender", "dummy")
    assert code == 2 and "world directory not found" in err and "no-world" in err
    (world_copy / "hidden" / "users.jsonl").unlink()
    cfg = write_config(tmp_path / "c.yml", world_copy)
    code, _, err = run_cli(capsys, "--config", str(cfg), "single", "--recommender", "dummy")
    assert code == 2 and "users.jsonl" in err and err.count("\n") == 1
    (tmp_path / "y.yml").write_text("world: [unclosed\n")
    code, _, err = run_cli(capsys, "--config", str(tmp_path / "y.yml"), "single")
    assert code == 2 and "y.yml" in err and err.count("\n") == 1


def test_bad_out_suffix_and_bad_numbers(capsys, cfg, tmp_path):
    code, _, err = run_cli(capsys, "--config", str(cfg), "single", "--out", str(tmp_path / "x.txt"))
    assert code == 2 and "use .jsonl" in err
    code, _, err = run_cli(capsys, "--episodes", "0", "--config", str(cfg), "single")
    assert code == 2 and "--episodes" in err


def test_repo_default_config_is_valid():
    from sim.config import load_config

    repo = Path(__file__).resolve().parents[2]
    cfg = load_config(repo / "config" / "env.yml")
    assert cfg.service.port == 5001 and cfg.service.host == "127.0.0.1"
    p = cfg.model_params()
    # the repo's default is the production-like setting; the course's is one flag away
    assert p.realism == "production" and p.returning_users and p.session_end == "hazard"
    course = dataclasses.replace(cfg, realism="course").model_params()
    assert course == UserModelParams()
    assert not (course.returning_users or course.daily_hype or course.taste_drift)


def test_returning_users_add_dau_column(capsys, tmp_path, small_world_dir):
    cfg = write_config(tmp_path / "ru.yml", small_world_dir,
                       extra="user_model:\n  returning_users: true\n")
    code, out, err = run_cli(capsys, "--episodes", "200", "--config", str(cfg), "single",
                             "--recommender", "dummy", "--days", "3", "--out",
                             str(tmp_path / "ru.jsonl"))
    assert code == 0, err
    assert "| DAU |" in out.replace("  ", " ") or " DAU " in out
    rows = table_rows(out)
    recs = [json.loads(x) for x in (tmp_path / "ru.jsonl").read_text().splitlines()]
    for day in ("1", "2", "3"):
        assert int(rows[day][-1]) == len({r["user"] for r in recs if str(r["day"]) == day})
        assert int(rows[day][1]) == sum(1 for r in recs if str(r["day"]) == day)


def test_remote_never_interleaves_sessions_of_one_user(capsys, tmp_path, small_world):
    """With many sessions in flight, each user's requests still form whole sessions in order."""
    n = small_world.n_tracks

    def rec(user: int, track: int, time: float) -> int:
        return (track * 7 + 1) % n

    with TestServer(n, rec) as srv:
        cfg = write_config(tmp_path / "i.yml", small_world.directory, port=srv.port)
        code, _, err = run_cli(capsys, "--episodes", "300", "--config", str(cfg), "single",
                               "--recommender", "remote", "--days", "1", "--concurrency", "48",
                               "--out", str(tmp_path / "i.jsonl"))
        seen = [s for s in srv.state.seen if s.method == "POST"]
    assert code == 0, err
    recs = [json.loads(x) for x in (tmp_path / "i.jsonl").read_text().splitlines()]
    users = [r["user"] for r in recs]
    assert len(set(users)) < len(users)  # some users have several sessions today
    expected: dict[int, int | None] = {}  # user -> track the open session must report next
    sessions_started = 0
    for s in seen:
        user = int(s.path.rsplit("/", 1)[1])
        want = expected.get(user)
        if want is None:  # a new session of this user starts with its first track, time 1.0
            assert s.path.startswith("/next/") and s.body["time"] == 1.0
            sessions_started += 1
        else:
            assert s.body["track"] == want, f"user {user}: sessions interleaved"
        expected[user] = rec(user, s.body["track"], s.body["time"]) if s.path.startswith("/next/") else None
    assert sessions_started == 300
    assert all(v is None for v in expected.values())


def test_first_day_numbers_the_days_and_matches_a_longer_run(capsys, cfg, tmp_path):
    """Day 2 run alone (--first-day 2 --days 1) is day 2 of a 2-day run, record for record."""
    base = ["--episodes", "60", "--config", str(cfg), "single", "--recommender", "dummy",
            "--seed", "9"]
    full, alone = tmp_path / "full.jsonl", tmp_path / "alone.jsonl"
    assert run_cli(capsys, *base, "--days", "2", "--out", str(full))[0] == 0
    code, out, _ = run_cli(capsys, *base, "--first-day", "2", "--days", "1", "--out", str(alone))
    assert code == 0
    assert set(table_rows(out)) == {"2"}
    day2 = [json.loads(x) for x in full.read_text().splitlines() if json.loads(x)["day"] == 2]
    assert [json.loads(x) for x in alone.read_text().splitlines()] == day2
    code, _, err = run_cli(capsys, *base, "--first-day", "0")
    assert code == 2 and "--first-day" in err


# ------------------------------------------------------------- service address on the CLI
def test_url_or_host_port_replace_the_config_address(capsys, tmp_path, small_world):
    with TestServer(small_world.n_tracks) as srv:
        # the config points at a closed port: only the command line can reach the server
        cfg = write_config(tmp_path / "a.yml", small_world.directory, port=_closed_port())
        for where in (["--url", f"http://127.0.0.1:{srv.port}"],
                      ["--host", "127.0.0.1", "--port", str(srv.port)]):
            code, out, err = run_cli(capsys, "--episodes", "5", "--config", str(cfg), *where,
                                     "single", "--recommender", "remote", "--days", "1")
            assert code == 0, err
            assert f"127.0.0.1:{srv.port}" in err
        # after the subcommand too, and for multi (workers re-read the config file)
        code, out, err = run_cli(capsys, "--episodes", "4", "--config", str(cfg), "multi",
                                 "--processes", "2", "--days", "1",
                                 "--url", f"http://127.0.0.1:{srv.port}/")
        assert code == 0, err
        assert len(srv.posts("last")) == 5 + 5 + 8


@pytest.mark.parametrize(("args", "needle"), [
    (["--url", "https://127.0.0.1:5001"], "scheme must be http"),
    (["--url", "http://127.0.0.1:5001/api"], "drop the path"),
    (["--url", "http://127.0.0.1:99999"], "--url"),
    (["--url", "http://127.0.0.1:1", "--port", "2"], "either --url or --host/--port"),
    (["--port", "0"], "--port must be in 1..65535"),
])
def test_bad_service_address_exit_2(capsys, cfg, args, needle):
    code, out, err = run_cli(capsys, "--config", str(cfg), *args, "single", "--days", "1")
    assert code == 2 and err.startswith("error:") and needle in err and out == ""


def test_summary_says_how_reward_relates_to_ab_time(capsys, cfg):
    code, out, _ = run_cli(capsys, "--episodes", "5", "--config", str(cfg), "single",
                           "--recommender", "dummy", "--days", "1")
    assert code == 0
    assert "time = reward + 1.0" in out and "first track" in out


def test_world_help_mentions_course_import(capsys):
    from sim.world import main as world_main

    with pytest.raises(SystemExit):
        world_main(["--help"])
    out = capsys.readouterr().out
    assert "python -m sim.course_io import" in out and "--normalise" in out


# ------------------------------------------------------------------- realism on the CLI
def test_realism_flag_state_file_and_clock(capsys, tmp_path, small_world_dir):
    cfg = write_config(tmp_path / "p.yml", small_world_dir, extra="user_model:\n  realism: production\n")
    state = tmp_path / "state.json"
    out1 = tmp_path / "d1.jsonl"
    code, out, err = run_cli(capsys, "--episodes", "300", "--config", str(cfg), "single",
                             "--recommender", "dummy", "--days", "2", "--seed", "4",
                             "--out", str(out1))
    assert code == 0, err
    recs = [json.loads(x) for x in out1.read_text().splitlines()]
    # the clock: every record has a simulated start, in order within a day, on its day
    starts = [r["start"] for r in recs if r["day"] == 2]
    assert starts == sorted(starts) and starts[0].startswith("2026-01-06T")
    hours = [int(r["start"][11:13]) for r in recs]
    assert sum(17 <= h <= 23 for h in hours) > sum(1 <= h <= 6 for h in hours) * 3
    assert "DAU" in out
    # one day per call with --state gives the same day 2 as one run of two days
    for day in (1, 2):
        code, _, err = run_cli(capsys, "--episodes", "300", "--config", str(cfg), "single",
                               "--recommender", "dummy", "--days", "1", "--first-day", str(day),
                               "--seed", "4", "--state", str(state),
                               "--out", str(tmp_path / f"s{day}.jsonl"))
        assert code == 0, err
    split = [json.loads(x) for x in (tmp_path / "s2.jsonl").read_text().splitlines()]
    assert split == [r for r in recs if r["day"] == 2]
    # --realism course: the course's users (uniform, no clock, no DAU column)
    code, out, err = run_cli(capsys, "--episodes", "50", "--config", str(cfg), "--realism",
                             "course", "single", "--recommender", "dummy", "--days", "1",
                             "--out", str(tmp_path / "c.jsonl"))
    assert code == 0, err
    assert "DAU" not in out
    assert "start" not in json.loads((tmp_path / "c.jsonl").read_text().splitlines()[0])


def test_bad_realism_and_state_name_the_key_or_file(capsys, tmp_path, small_world_dir):
    cfg = write_config(tmp_path / "b.yml", small_world_dir, extra="user_model:\n  realism: prod\n")
    code, _, err = run_cli(capsys, "--config", str(cfg), "single", "--recommender", "dummy")
    assert code == 2 and "user_model.realism: 'prod' is not one of course, production" in err
    cfg = write_config(tmp_path / "o.yml", small_world_dir,
                       extra="user_model:\n  realism: production\n  own_pick_prob: 1.5\n")
    code, _, err = run_cli(capsys, "--config", str(cfg), "single", "--recommender", "dummy")
    assert code == 2 and "user_model.own_pick_prob must be in [0, 1]" in err
    cfg = write_config(tmp_path / "g.yml", small_world_dir, extra="user_model:\n  realism: production\n")
    bad = tmp_path / "bad-state.json"
    bad.write_text('{"day": 1, "satisfaction": [1.0], "churned": []}')
    code, _, err = run_cli(capsys, "--config", str(cfg), "single", "--recommender", "dummy",
                           "--days", "1", "--state", str(bad))
    assert code == 2 and "bad-state.json" in err and "another number of users" in err


def test_production_multi_is_reproducible(capsys, tmp_path, small_world_dir):
    cfg = write_config(tmp_path / "pm.yml", small_world_dir, extra="user_model:\n  realism: production\n")
    outs = []
    for k in range(2):
        out_file = tmp_path / f"pm{k}.jsonl"
        code, out, err = run_cli(capsys, "--episodes", "120", "--config", str(cfg), "multi",
                                 "--recommender", "dummy", "--processes", "2", "--days", "2",
                                 "--seed", "3", "--out", str(out_file))
        assert code == 0, err
        outs.append((out, out_file.read_bytes()))
    assert outs[0] == outs[1]
    recs = [json.loads(x) for x in outs[0][1].decode().splitlines()]
    assert all(r["start"].startswith(("2026-01-05", "2026-01-06")) for r in recs)
