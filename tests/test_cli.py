"""The command line: exit codes, the replay line it prints, and clear errors for bad input."""

import json
import re
import subprocess
import sys

import pytest

from detsched.cli import main
from programs import LOST_UPDATE

BUGGY = LOST_UPDATE + '''
def passes():
    t = threading.Thread(target=print, args=("hi",))
    t.start()
    t.join()

NOT_A_FUNCTION = 3

def needs_args(x):
    pass
'''


@pytest.fixture
def target(tmp_path):
    path = tmp_path / "buggy.py"
    path.write_text(BUGGY)
    return str(path)


def replay_line(out):
    return re.search(r"replay: detsched replay (\S+) --schedule '(ds3:[^']+)'", out)


def test_run_finds_the_bug_and_prints_the_replay_line(target, capsys):
    assert main(["run", f"{target}::main"]) == 1
    out = capsys.readouterr().out
    assert out.startswith("FAILED (exception) after ")
    assert "AssertionError: balance is 10, expected 20" in out
    assert "Interleaving (1 preemption" in out
    assert replay_line(out).group(1) == f"{target}::main"


def test_pasted_replay_line_reproduces_three_times(target, capsys):
    main(["run", f"{target}::main"])
    schedule = replay_line(capsys.readouterr().out).group(2)
    for _ in range(3):
        assert main(["replay", f"{target}::main", "--schedule", schedule]) == 1
        assert "reproduced (exception): AssertionError: balance is 10, expected 20" in capsys.readouterr().out


def test_save_and_replay_from_file(target, tmp_path, capsys):
    saved = tmp_path / "failure.json"
    assert main(["run", f"{target}::main", "--save", str(saved)]) == 1
    data = json.loads(saved.read_text())
    assert data["kind"] == "exception" and data["target"] == f"{target}::main"
    assert main(["replay", str(saved)]) == 1
    assert "reproduced (exception)" in capsys.readouterr().out


def test_save_into_a_missing_folder_is_refused_before_exploring(target, tmp_path, capsys):
    missing = tmp_path / "no_such_dir" / "failure.json"
    assert main(["run", f"{target}::main", "--save", str(missing)]) == 2
    captured = capsys.readouterr()
    assert f"--save {missing}: the folder '{missing.parent}' does not exist; create it first" in captured.err
    assert captured.out == ""  # refused before exploring


def test_save_to_a_folder_asks_for_a_file_name(target, tmp_path, capsys):
    assert main(["run", f"{target}::main", "--save", str(tmp_path)]) == 2
    assert "is a folder; give a file name" in capsys.readouterr().err


@pytest.mark.parametrize("content, message", [
    ('{"schedule": 12, "target": "x.py::main"}', 'its "schedule" is a number, not a \'ds3:...\' string'),
    ('["ds3:AAAA"]', 'expected a JSON object with a "schedule" string, got a list'),
    ('{"target": "x.py::main"}', 'it has no "schedule" key'),
    ("not json", "not valid JSON (line 1, column 1)"),
    (b"\x89PNG\r\n\x1a\n\xff\xfe", "not a detsched schedule file: it is not text"),
])
def test_malformed_schedule_files_are_usage_errors(tmp_path, capsys, content, message):
    saved = tmp_path / "failure.json"
    saved.write_bytes(content if isinstance(content, bytes) else content.encode())
    assert main(["replay", str(saved)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"detsched: error: {saved}: ") and message in err and "Traceback" not in err


def test_show_prints_a_timeline(target, capsys):
    main(["run", f"{target}::main"])
    schedule = replay_line(capsys.readouterr().out).group(2)
    assert main(["show", f"{target}::main", "--schedule", schedule]) == 1
    out = capsys.readouterr().out
    assert "T1 Thread-1 (transfer)" in out and "acquire Lock(buggy.py:11)" in out


def test_passing_target_exits_zero(target, capsys):
    assert main(["run", f"{target}::passes", "--runs", "20"]) == 0
    assert "passed: no failure in 20 runs" in capsys.readouterr().out


def test_one_run_is_one_run_with_no_rate(target, capsys):
    assert main(["run", f"{target}::passes", "--runs", "1"]) == 0
    captured = capsys.readouterr()
    assert "passed: no failure in 1 run (strategy=pct" in captured.out
    assert captured.err.startswith("explored 1 run in ") and "runs/s" not in captured.err


@pytest.mark.parametrize("runs, elapsed, text", [
    (1, 3.2, "1 run in 3.2 s"),
    (12, 40.3, "12 runs in 40.3 s (3.4 s a run)"),
    (500, 1.25, "500 runs in 1.2 s (400 runs/s)"),
    (2, 0.0, "2 runs in 0.00 s"),
])
def test_pace_never_prints_a_rate_that_rounds_to_nothing(runs, elapsed, text):
    from detsched.integration import pace

    assert pace(runs, elapsed) == text


MANY_THREADS = """
import threading

def main():
    state = {"n": 0}
    def add():
        seen = state["n"]
        state["n"] = seen + 1
    threads = [threading.Thread(target=add, name=f"adder-{i}") for i in range(21)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert state["n"] == 21, f"n is {state['n']}"
"""


def timeline_lines(out):
    """The lines of the interleaving table in ``out``: from its header to the next blank line."""
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("  step  "))
    end = next((i for i in range(start, len(lines)) if not lines[i].strip()), len(lines))
    return lines[start:end]


def test_timeline_of_many_threads_is_one_row_per_step_naming_the_thread(tmp_path, capsys):
    many = tmp_path / "many.py"
    many.write_text(MANY_THREADS)
    # The lost update, not the race under it, so that every thread has started when the run fails.
    assert main(["run", f"{many}::main", "--runs", "50", "--no-races"]) == 1
    out = capsys.readouterr().out
    schedule = replay_line(out).group(2)
    assert main(["show", f"{many}::main", "--schedule", schedule]) == 1
    shown = capsys.readouterr().out
    for table in (timeline_lines(out), timeline_lines(shown)):
        assert table[0].split() == ["step", "thread", "operation"]
        assert max(map(len, table)) <= 120, max(table, key=len)
        assert any(line.split()[1:3] == ["T21", "adder-20"] for line in table[2:])


@pytest.mark.parametrize("spec, message", [
    ("missing.py::main", "target file 'missing.py' not found"),
    ("{target}::nope", "no 'nope' in buggy; functions there: main, needs_args, passes, transfer"),
    ("{target}::NOT_A_FUNCTION", "is an int, not a function"),
    ("{target}::needs_args", "takes arguments (x)"),
    ("{target}", "names no function"),
    ("no_such_module_xyz:main", "module 'no_such_module_xyz' not found"),
])
def test_bad_targets_are_usage_errors(target, capsys, spec, message):
    assert main(["run", spec.format(target=target)]) == 2
    assert message in capsys.readouterr().err


def test_target_calling_sys_exit_is_reported_as_failed(tmp_path, capsys):
    exits = tmp_path / "exits.py"
    exits.write_text("import sys\n\ndef main():\n    sys.exit(3)\n")
    assert main(["run", f"{exits}::main", "--runs", "5"]) == 1
    out = capsys.readouterr().out
    assert out.startswith("FAILED (exception) after 1 run: ") and "SystemExit: 3" in out.splitlines()[0]


def test_module_that_fails_to_import_shows_its_traceback(tmp_path, capsys):
    broken = tmp_path / "broken.py"
    broken.write_text("import threading\nraise RuntimeError('config missing')\n")
    assert main(["run", f"{broken}::main"]) == 2
    err = capsys.readouterr().err
    assert "importing" in err and "RuntimeError: config missing" in err and "line 2" in err


@pytest.mark.parametrize("schedule, message", [
    ("ds3:AAAA", "corrupt or truncated"),
    ("ds9:AAAA", "'ds9' is not supported"),
    ("nonsense", "not a detsched schedule"),
])
def test_bad_schedules_are_usage_errors(target, capsys, schedule, message):
    assert main(["replay", f"{target}::main", "--schedule", schedule]) == 2
    assert message in capsys.readouterr().err


def test_schedule_for_another_target_is_refused(target, capsys):
    main(["run", f"{target}::main"])
    schedule = replay_line(capsys.readouterr().out).group(2)
    assert main(["replay", f"{target}::passes", "--schedule", schedule]) == 2
    assert "recorded for another target" in capsys.readouterr().err


def schedule_then_edit(target, capsys, old, new):
    """The schedule ``run`` finds for ``target``'s main, then the file edited (``old`` -> ``new``)."""
    main(["run", f"{target}::main"])
    schedule = replay_line(capsys.readouterr().out).group(2)
    with open(target) as handle:
        source = handle.read()
    assert old in source
    with open(target, "w") as handle:
        handle.write(source.replace(old, new))
    sys.modules.pop("buggy", None)
    return schedule


FIX = ("        balance = account[\"balance\"]\n    with lock:\n",
       "        balance = account[\"balance\"]\n")


def test_old_schedule_of_a_fixed_bug_replays_as_passed(target, capsys):
    schedule = schedule_then_edit(target, capsys, *FIX)
    assert main(["replay", f"{target}::main", "--schedule", schedule]) == 0
    captured = capsys.readouterr()
    lines = captured.out.splitlines()
    assert lines[0] == "replay passed"
    assert re.match(r"note: the run no longer followed the schedule (after|before) decision \d+ \(likely because the "
                    r"code changed\)", lines[1])
    assert "diverged" not in captured.err


def test_divergence_that_still_fails_is_reported_with_a_note_and_a_new_replay_line(target, capsys):
    schedule = schedule_then_edit(target, capsys, "def main():\n", "def main():\n    transfer({'balance': 0}, threading.Lock())\n")
    assert main(["replay", f"{target}::main", "--schedule", schedule]) == 1
    out = capsys.readouterr().out
    assert out.startswith("failed (exception): AssertionError: balance is 10, expected 20")
    assert re.search(r"note: the run no longer followed the schedule (after|before) decision \d+", out)
    new = replay_line(out).group(2)
    assert new != schedule
    assert main(["replay", f"{target}::main", "--schedule", new]) == 1
    out = capsys.readouterr().out
    assert out.startswith("reproduced (exception)") and "no longer followed" not in out


@pytest.mark.parametrize("args", [["--runs", "-3"], ["--runs", "0"], ["--depth", "0"], ["--depth", "1000"],
                                  ["--runs", "many"], ["--max-steps", "0"]])
def test_bad_options_exit_two(target, args):
    with pytest.raises(SystemExit) as exit_info:
        main(["run", f"{target}::main", *args])
    assert exit_info.value.code == 2


def test_python_dash_m_and_help():
    out = subprocess.run([sys.executable, "-m", "detsched", "run", "--help"], capture_output=True, text=True)
    assert out.returncode == 0
    assert "--strategy" in out.stdout and "pct" in out.stdout and "--save" in out.stdout


def test_unknown_strategy_lists_the_known_ones(target, capsys):
    assert main(["run", f"{target}::main", "--strategy", "bfs"]) == 2
    assert "unknown strategy 'bfs'; choose one of: cover, dfs, dpor, pct, random" in capsys.readouterr().err


def test_schedule_file_of_a_pytest_test_points_to_the_pytest_command(tmp_path, capsys):
    from detsched import Schedule

    saved = tmp_path / "test_x.detsched.json"
    command = "pytest 'test_x.py::test_y' --detsched-replay='ds3:...'"
    saved.write_text(Schedule(1, "pct", 0, 0, 1).to_json(test="test_x.py::test_y", pytest=command))
    assert main(["replay", str(saved)]) == 2
    assert command in capsys.readouterr().err



@pytest.mark.parametrize("strategy", ["pct", "random"])
def test_jobs_report_the_same_failure_as_one_process(target, capsys, strategy):
    outputs = []
    for jobs in ("1", "2"):
        assert main(["run", f"{target}::main", "--strategy", strategy, "--runs", "400", "--jobs", jobs]) == 1
        outputs.append(capsys.readouterr().out)
    first, second = (out.splitlines() for out in outputs)
    assert first[0] == second[0] and first[0].startswith("FAILED (exception) after ")
    assert replay_line(outputs[0]).group(2) == replay_line(outputs[1]).group(2)


def test_jobs_on_a_passing_target_pass(target, capsys):
    assert main(["run", f"{target}::passes", "--runs", "40", "--jobs", "2"]) == 0
    assert "passed: no failure in 40 runs" in capsys.readouterr().out


def test_jobs_split_a_dfs_tree_and_report_what_one_process_reports(target, capsys):
    for name, code in (("main", 1), ("passes", 0)):
        outputs = []
        for jobs in ("1", "2"):
            assert main(["run", f"{target}::{name}", "--strategy", "dfs", "--runs", "5000", "--jobs", jobs]) == code
            outputs.append(capsys.readouterr().out.replace("hi\n", ""))  # a worker's print is not captured
        assert outputs[0] == outputs[1]
    assert outputs[0].startswith("verified: all ")


def test_jobs_split_a_bounded_dfs_search(target, capsys):
    assert main(["run", f"{target}::main", "--strategy", "dfs", "--preemption-bound", "0", "--jobs", "2"]) == 0
    assert "verified up to 0 preemptions: " in capsys.readouterr().out


def test_jobs_spend_the_runs_together_when_a_dfs_tree_is_larger(target, capsys):
    assert main(["run", f"{target}::main", "--strategy", "dfs", "--preemption-bound", "0", "--runs", "1",
                 "--jobs", "2"]) == 0
    assert "passed: no failure in 2 runs (strategy=dfs, seed=0)" in capsys.readouterr().out


@pytest.mark.parametrize("test, runs, code, outcome", [
    ("producer_consumer.py::main", "3000", 1, "FAILED (exception) after 110 runs"),  # in a part taken in after others
    ("pipeline.py::fixed", "3000", 0, "verified: 717 schedules cover every interleaving"),
    ("pipeline.py::fixed", "300", 0, "passed: no failure in 300 runs"),  # the budget ends inside a part
])
def test_jobs_share_a_dpor_search_and_report_what_one_process_reports(capsys, test, runs, code, outcome):
    outputs = []
    for jobs in ("1", "2"):
        assert main(["run", f"examples/{test}", "--strategy", "dpor", "--runs", runs, "--jobs", jobs]) == code
        outputs.append(capsys.readouterr().out)
    assert outputs[0] == outputs[1]
    assert outputs[0].startswith(outcome)


def test_jobs_share_a_bounded_dpor_search(capsys):
    outputs = []
    for jobs in ("1", "2"):
        assert main(["run", "examples/actor_mailbox.py::fixed", "--strategy", "dpor", "--preemption-bound", "1",
                     "--jobs", jobs]) == 0
        outputs.append(capsys.readouterr().out)
    assert outputs[0] == outputs[1]
    assert outputs[0].startswith("verified up to 1 preemption: 229 schedules ")


def test_jobs_refuse_a_bound_the_strategy_does_not_take(target, capsys):
    assert main(["run", f"{target}::main", "--preemption-bound", "iterative", "--jobs", "2"]) == 2
    assert "a preemption bound is for strategies 'dfs' and 'dpor', not 'pct'" in capsys.readouterr().err
    for strategy in ("dfs", "dpor"):
        assert main(["run", f"{target}::main", "--strategy", strategy, "--preemption-bound", "iterative",
                     "--jobs", "2"]) == 2
        assert "--jobs does not split an iterative search" in capsys.readouterr().err


def test_jobs_take_no_time_budget(target, capsys):
    assert main(["run", f"{target}::main", "--jobs", "2", "--time-budget", "5"]) == 2
    assert "it takes no --time-budget" in capsys.readouterr().err


def test_a_time_budget_stops_the_exploration_and_says_so(target, capsys):
    assert main(["run", f"{target}::passes", "--runs", "100000", "--time-budget", "0.001"]) == 0
    out = capsys.readouterr().out
    assert "passed: no failure in 1 run (strategy=pct, seed=0); stopped: the 0.001 s time budget was spent" in out


@pytest.mark.parametrize("value", ["0", "-1", "soon", "inf"])
def test_a_bad_time_budget_is_a_usage_error(target, capsys, value):
    with pytest.raises(SystemExit) as exit_info:
        main(["run", f"{target}::passes", f"--time-budget={value}"])
    assert exit_info.value.code == 2
    assert "--time-budget" in capsys.readouterr().err


def test_ctrl_c_says_what_was_covered_and_exits_130(tmp_path):
    import signal
    import time

    path = tmp_path / "slow.py"
    path.write_text("import threading\n\ndef main():\n"
                    "    t = threading.Thread(target=lambda: None)\n    t.start()\n    t.join()\n")
    process = subprocess.Popen([sys.executable, "-m", "detsched", "run", f"{path}::main", "--runs", "10000000",
                                "--strategy", "random"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(3)  # past start-up and the first runs (generous: shared machines)
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=60)
    finally:
        process.kill()  # never left running, whatever happened
        process.wait()
    assert process.returncode == 130, err
    assert re.search(r"interrupted after [\d,]+ runs?: no failure in those \(strategy=random, seed=0\); not verified",
                     err), err


# ----------------------------------------------------------------- terminal conventions

def test_colour_only_when_asked_for_or_on_a_terminal(target, capsys, monkeypatch):
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.delenv("FORCE_COLOR", raising=False)
    passing = ["run", f"{target}::passes", "--runs", "5"]
    assert main(passing) == 0
    assert "\033[" not in capsys.readouterr().out  # captured: not a terminal
    monkeypatch.setenv("FORCE_COLOR", "1")
    assert main(passing) == 0
    out = capsys.readouterr().out  # the target prints "hi" in every run, then the outcome line
    assert out.splitlines()[-1].startswith("\033[1;32mpassed: ") and out.count("\033[0m") == 1
    assert main(["run", f"{target}::main"]) == 1
    assert capsys.readouterr().out.startswith("\033[1;31mFAILED (")
    monkeypatch.setenv("NO_COLOR", "1")  # wins over FORCE_COLOR
    assert main(passing) == 0
    assert "\033[" not in capsys.readouterr().out


def test_the_timeline_fits_the_terminal(monkeypatch):
    from detsched._core.ops import TraceStep
    from detsched._report import timeline

    trace = tuple(TraceStep(i + 1, tid, f"worker-{tid}", "acquire Lock(a.py:1)", "a.py:2") for i, tid in enumerate((0, 1, 2)))
    assert "worker-2" in timeline.render_timeline(trace).splitlines()[0]  # one column per thread, 160 wide
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True, raising=False)
    monkeypatch.setenv("COLUMNS", "100")
    header, rule, *rows = timeline.render_timeline(trace).splitlines()
    assert header.split() == ["step", "thread", "operation"]  # three columns of 38 do not fit in 100
    assert rows[2].split()[:3] == ["3", "T2", "worker-2"]


def test_ctrl_c_is_taken_between_runs_and_a_second_one_at_once():
    """A KeyboardInterrupt raised inside a weakref callback is swallowed by CPython, so the first
    Ctrl-C only takes note, and the exploration stops after the run in progress."""
    import signal

    from detsched.cli import _interrupts_between_runs, _Progress

    progress, before = _Progress(10, shown=False), signal.getsignal(signal.SIGINT)
    with _interrupts_between_runs(progress):
        signal.raise_signal(signal.SIGINT)  # taken note of, not raised here
        assert progress.interrupted
        with pytest.raises(KeyboardInterrupt):
            progress(3)  # where the explorer calls it: after a run
        assert progress.done == 3
        with pytest.raises(KeyboardInterrupt):
            signal.raise_signal(signal.SIGINT)  # a second one interrupts at once
    assert signal.getsignal(signal.SIGINT) is before
