"""coverage.py still measures the lines that controlled threads run: the same lines are covered
with the plugin exploring a test as without it, both under ``coverage run`` and ``pytest --cov``."""

import re
import sys

import pytest

WORKER = """
import threading


def work(box, lock):
    with lock:
        seen = len(box)
    if seen > 100:
        seen = 0
    with lock:
        box.append(seen)


def never_called():
    return 1
"""

TEST = """
import threading

import pytest

import worker


@pytest.mark.detsched(runs=3)
def test_work():
    box, lock = [], threading.Lock()
    threads = [threading.Thread(target=worker.work, args=(box, lock)) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(box) == [0, 1]
"""

#: The report line of worker.py: statements, missed, percent, missing line numbers.
WORKER_LINE = re.compile(r"^worker\.py\s+(\d+)\s+(\d+)\s+(\d+%)\s*(.*)$", re.M)


@pytest.fixture
def files(pytester, monkeypatch):
    monkeypatch.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")  # see tests/test_plugin.py
    pytester.makepyfile(worker=WORKER, test_work=TEST)
    return pytester


def worker_line(output: str) -> tuple[str, ...]:
    match = WORKER_LINE.search(output)
    assert match, output
    return match.groups()


def test_coverage_run_measures_controlled_threads_as_without_the_plugin(files):
    def measured(*plugin):
        tests = files.run(sys.executable, "-m", "coverage", "run", "--include=worker.py", "-m", "pytest", *plugin,
                          "-p", "no:cacheprovider")
        assert tests.ret == 0, tests.stdout.str()
        return worker_line(files.run(sys.executable, "-m", "coverage", "report", "-m").stdout.str())

    with_plugin = measured("-p", "pytest_detsched.plugin")
    assert with_plugin == measured()
    lines = (files.path / "worker.py").read_text().splitlines()
    never_run = [lines.index("        seen = 0") + 1, lines.index("    return 1") + 1]
    assert with_plugin[3] == f"{never_run[0]}, {never_run[1]}"  # only what no run can reach


def test_pytest_cov_measures_controlled_threads_as_without_the_plugin(files):
    pytest.importorskip("pytest_cov")

    def measured(*plugin):
        result = files.runpytest_subprocess("-p", "pytest_cov", "--cov=worker", "--cov-report=term-missing",
                                            *plugin, "-p", "no:cacheprovider")
        result.assert_outcomes(passed=1)
        return worker_line(result.stdout.str())

    assert measured("-p", "pytest_detsched.plugin") == measured()
