"""The bundled examples: each ``main`` has a bug detsched finds, reports readably and replays
exactly; each ``fixed`` twin passes under both strategies."""

import shlex
import subprocess
import sys

import pytest

import detsched
from bundled_examples import EXAMPLES_DIR, REPO_DIR, found, target


#: example -> (kind detsched reports for ``main``, key phrases of its message)
EXPECTED = {
    "bank": ("exception", ["AssertionError: total is", "expected 200"]),
    "deadlock": ("deadlock", ["waits for Lock(deadlock.py:", "held by T"]),
    "producer_consumer": ("exception", ["IndexError: pop from an empty deque"]),
    "worker_pool": ("exception", ["AssertionError: price of", "expected"]),
    "fan_out": ("exception", ["ValueError: invalid literal for int() with base 10: 'n/a'"]),
    "pipeline": ("deadlock", ["waits to join", "waits for Queue(pipeline.py:"]),
    "single_flight": ("exception", ["AssertionError: loaded 'user:42' 2 times, expected once"]),
    "cancellation": ("exception", ["was charged", "for an order reported as failed"]),
    "backpressure": ("deadlock", ["waits for Lock(backpressure.py:", "held by T1; T1 waits for Queue(backpressure.py:"]),
    "actor_mailbox": ("deadlock", ["waits for Queue(actor_mailbox.py:", "(nothing can wake them)"]),
    "livelock": ("exception", ["RuntimeError: ", "gave up after 5 rounds"]),
    "stop_signal": ("leak", ["T1 'indexer' is still blocked (get Queue(stop_signal.py:", "after the test returned"]),
    "rwlock_upgrade": ("deadlock", ["waits for Condition(rwlock_upgrade.py:", "(nothing can wake them)"]),
    "stale_read": ("data-race", ["Config.version: read by T2 'handler' races with write by T1 'reloader'"]),
}
#: Runs of each fixed twin per strategy. The benchmark (benchmarks/examples_clean.py) runs
#: 10,000 with pct; these keep the file quick.
FIXED_RUNS = {"pct": 300, "random": 100}


def test_every_example_file_is_covered():
    files = {path.stem for path in EXAMPLES_DIR.glob("*.py") if not path.name.startswith("aio_")}
    assert files == set(EXPECTED)


@pytest.mark.parametrize("example", EXPECTED)
def test_bug_is_found_with_its_kind_and_message(example):
    kind, phrases = EXPECTED[example]
    failure = found(example)
    assert failure.kind == kind, failure.message
    for phrase in phrases:
        assert phrase in failure.message


@pytest.mark.parametrize("example", EXPECTED)
def test_bug_replays_three_times_from_its_schedule_string(example):
    failure = found(example)
    schedule = failure.schedule.dumps()
    for _ in range(3):
        again = detsched.replay(target(example, "main"), schedule)
        assert again is not None
        assert (again.kind, again.message) == (failure.kind, failure.message)


#: Every example, threads and asyncio.
EVERY_EXAMPLE = sorted(path.stem for path in EXAMPLES_DIR.glob("*.py"))
#: The fixed twins dpor verifies within a few hundred schedules; the other three (pool workers and
#: consumers waiting for work) have no symmetry reduction and run past 20,000.
DPOR_VERIFIED = ("actor_mailbox", "aio_cache", "aio_deadlock", "aio_leak", "backpressure", "bank", "cancellation",
                 "deadlock", "livelock", "pipeline", "rwlock_upgrade", "single_flight", "stale_read", "stop_signal")


@pytest.mark.parametrize("example", EVERY_EXAMPLE)
def test_fixed_twin_is_verified_within_two_delays(example):
    report = detsched.explore(target(example, "fixed"), strategy="dfs", delay_bound=2, runs=5000)
    assert report.failure is None, str(report.failure)
    assert report.exhausted and str(report).startswith("verified up to 2 delays: "), str(report)


@pytest.mark.parametrize("example", DPOR_VERIFIED)
def test_fixed_twin_is_verified_by_dpor(example):
    report = detsched.explore(target(example, "fixed"), strategy="dpor", runs=5000)
    assert report.failure is None, str(report.failure)
    assert report.exhausted, str(report)


@pytest.mark.parametrize("strategy", FIXED_RUNS)
@pytest.mark.parametrize("example", EXPECTED)
def test_fixed_twin_passes(example, strategy):
    report = detsched.explore(target(example, "fixed"), strategy=strategy, runs=FIXED_RUNS[strategy])
    assert report.failure is None, str(report.failure)
    assert report.runs == FIXED_RUNS[strategy]


def test_bank_message_reads_as_in_the_readme():
    assert found("bank").message == "AssertionError: total is 190, expected 200"


def test_lost_worker_exception_names_the_thread_that_raised_it():
    assert "'west'" in found("fan_out").thread


def test_deadlock_report_shows_both_stacks():
    details = found("deadlock").details
    assert details.count("in transfer") == 2


def detsched_command(*args: str) -> subprocess.CompletedProcess:
    """Run the CLI in a fresh process from the repository root, as the README does."""
    return subprocess.run([sys.executable, "-m", "detsched", *args], cwd=REPO_DIR, capture_output=True,
                          text=True, timeout=120)


def test_readme_replay_line_reproduces_the_bank_failure_in_a_fresh_process():
    found_run = detsched_command("run", "examples/bank.py::main")
    assert found_run.returncode == 1, found_run.stdout + found_run.stderr
    replay_line = next(line for line in found_run.stdout.splitlines() if line.startswith("replay: detsched "))
    replayed = detsched_command(*shlex.split(replay_line.removeprefix("replay: detsched ")))
    assert replayed.returncode == 1, replayed.stdout + replayed.stderr
    assert "AssertionError: total is 190, expected 200" in replayed.stdout


@pytest.mark.parametrize("example", EXPECTED)
def test_fixed_twin_has_no_data_race(example):
    report = detsched.explore(target(example, "fixed"), runs=100, races=True)
    assert report.failure is None, str(report.failure)
