"""Concurrency coverage: which orders of conflicting operations an exploration's runs saw, counted
against hand-worked answers, merged over shards, and reported by the CLI and the pytest plugin."""

import inspect
import json
import threading

import pytest

import detsched
from detsched.cli import main
from detsched.integration import Coverage

PLUGIN = ("-p", "pytest_detsched.plugin")


@pytest.fixture
def pytester(pytester, monkeypatch):
    monkeypatch.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")  # see tests/test_plugin.py
    return pytester


def site(function, text: str) -> str:
    """``test_coverage.py:LINE`` of the line of ``function`` that contains ``text``."""
    lines, first = inspect.getsourcelines(function)
    return f"test_coverage.py:{first + next(i for i, line in enumerate(lines) if text in line)}"


def two_workers():
    lock = threading.Lock()

    def left():
        with lock:  # left enters
            pass

    def right():
        with lock:  # right enters
            pass

    workers = [threading.Thread(target=left), threading.Thread(target=right)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()


def test_two_critical_sections_are_seen_in_both_orders_by_a_search():
    report = detsched.explore(two_workers, strategy="dfs", runs=1000, coverage=True)
    coverage = report.coverage
    assert report.exhausted
    left, right = site(two_workers, "left enters"), site(two_workers, "right enters")
    assert [(p.first, p.second, p.forward, p.backward) for p in coverage.pairs] == [(left, right, True, True)]
    assert (coverage.covered, coverage.ordered, coverage.one_order) == (2, 2, ())
    assert coverage.runs == report.runs
    assert coverage.summary().startswith("coverage: 2/2 orders of conflicting operations, every pair seen in both orders")


def test_an_order_never_run_is_named():
    report = detsched.explore(two_workers, strategy="dfs", runs=1, coverage=True)
    (pair,) = report.coverage.one_order
    left, right = site(two_workers, "left enters"), site(two_workers, "right enters")
    assert pair.describe() == f"Lock({site(two_workers, 'lock = threading.Lock()')}): {left} always ran before {right}"
    assert "1/2 orders" in report.coverage.summary() and "1 pair seen in one order only" in report.coverage.summary()
    assert str(report).splitlines()[-1] == report.coverage.summary()


def main_around_a_worker():
    lock = threading.Lock()
    with lock:  # before the start
        pass

    def work():
        with lock:  # the worker
            pass

    worker = threading.Thread(target=work)
    worker.start()
    worker.join()
    with lock:  # after the join
        pass


def test_orders_that_starting_and_joining_impose_are_no_pairs():
    # The main thread's sections come before the start and after the join: no run can reorder them.
    report = detsched.explore(main_around_a_worker, strategy="dfs", runs=1000, coverage=True)
    assert report.exhausted
    assert report.coverage.pairs == ()
    assert report.coverage.summary().startswith("coverage: no two threads worked on one primitive")


def only_look():
    lock = threading.Lock()
    workers = [threading.Thread(target=lock.locked) for _ in range(2)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()


def test_operations_that_only_look_make_no_pair():
    assert detsched.explore(only_look, strategy="dfs", runs=1000, coverage=True).coverage.pairs == ()


def independent(shared: bool):
    locks = [threading.Lock(), threading.Lock()]

    def work(n):
        for _ in range(2):
            with locks[0 if shared else n]:
                pass

    workers = [threading.Thread(target=work, args=(n,)) for n in range(2)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()


@pytest.mark.parametrize("shared, interleavings", [(False, 1), (True, 6)])
def test_equivalent_runs_count_as_one_interleaving(shared, interleavings):
    # Two workers, each taking a lock twice: with a lock each, every schedule is the same interleaving;
    # with one lock between them, the four critical sections can be ordered in C(4, 2) = 6 ways.
    report = detsched.explore(lambda: independent(shared), strategy="dfs", runs=5000, preempt_calls=False,
                              preempt_writes=False, coverage=True)
    assert report.exhausted and report.runs > interleavings
    assert report.coverage.interleavings == interleavings


def test_shards_merge_into_the_coverage_of_the_whole_search():
    options = dict(strategy="dfs", runs=5000, coverage=True, preempt_calls=False, preempt_writes=False)
    whole = detsched.explore(lambda: independent(True), **options).coverage
    parts = [detsched.explore(lambda: independent(True), shard=(i, 3), **options).coverage for i in range(3)]
    merged = parts[0].merged(parts[1]).merged(parts[2])
    assert merged.runs >= whole.runs  # each shard also runs the first schedule of the others' groups
    assert (merged.pairs, merged.orders_seen) == (whole.pairs, whole.orders_seen)
    assert Coverage.from_json(json.loads(json.dumps(merged.as_json(with_orders=True)))) == merged


def test_without_coverage_the_report_has_none():
    report = detsched.explore(two_workers, runs=5)
    assert report.coverage is None and "coverage" not in str(report)


# ----------------------------------------------------------------- command line

PROGRAM = '''
import threading

def main():
    lock = threading.Lock()
    def work():
        with lock:
            pass
    workers = [threading.Thread(target=work) for _ in range(2)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
'''


def test_cli_prints_and_writes_coverage(tmp_path, capsys):
    program = tmp_path / "prog.py"
    program.write_text(PROGRAM)
    out_file = tmp_path / "coverage.json"
    target = f"{program}::main"
    assert main(["run", target, "--runs", "20", "--coverage-json", str(out_file)]) == 0
    assert "coverage: 1/1 orders of conflicting operations" in capsys.readouterr().out
    data = json.loads(out_file.read_text())
    assert data["format"] == "detsched-coverage"
    entry = data["targets"][target]
    assert (entry["runs"], entry["covered"], entry["orders"]) == (20, 1, 1)
    assert entry["pairs"] == [{"object": "Lock(prog.py:5)", "sites": ["prog.py:7", "prog.py:7"], "forward": True,
                               "backward": False, "both": True}]


def test_cli_refuses_coverage_with_jobs_and_a_missing_folder(tmp_path, capsys):
    program = tmp_path / "prog.py"
    program.write_text(PROGRAM)
    assert main(["run", f"{program}::main", "--coverage", "--jobs", "2"]) == 2
    assert "run without --jobs" in capsys.readouterr().err
    assert main(["run", f"{program}::main", "--coverage-json", str(tmp_path / "nowhere" / "c.json")]) == 2
    assert "does not exist" in capsys.readouterr().err


# ----------------------------------------------------------------- pytest plugin

TEST_FILE = '''
import threading
import pytest

@pytest.mark.detsched(runs=30)
def test_two_workers():
    lock = threading.Lock()
    def left():
        with lock:
            pass
    def right():
        with lock:
            pass
    workers = [threading.Thread(target=left), threading.Thread(target=right)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
'''


def test_plugin_reports_coverage_per_test_and_writes_json(pytester):
    pytester.makepyfile(test_cov=TEST_FILE)
    result = pytester.runpytest(*PLUGIN, "--detsched-coverage-json=cov.json", "--detsched-shards=2")
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["test_cov.py::test_two_workers: 30 runs*",
                                 "  coverage: 2/2 orders of conflicting operations, every pair seen in both orders; "
                                 "* distinct interleavings in 30 runs",
                                 "detsched: concurrency coverage written to cov.json"])
    data = json.loads((pytester.path / "cov.json").read_text())
    assert data["targets"]["test_cov.py::test_two_workers"]["runs"] == 30


def test_plugin_says_nothing_of_coverage_unless_asked(pytester):
    pytester.makepyfile(test_cov=TEST_FILE)
    result = pytester.runpytest(*PLUGIN)
    result.assert_outcomes(passed=1)
    assert "coverage:" not in result.stdout.str() and "coverage written" not in result.stdout.str()
