"""--detsched-shards: one exploration split into test items that pytest-xdist spreads over its
workers; together they run exactly the runs one item would, and find the same schedules."""

import re

import pytest

from detsched import Schedule

PLUGIN = ("-p", "pytest_detsched.plugin")

#: Three increments where two must be lost: found only after a few runs, so the shards matter.
RARE = """
import threading

import pytest


class Counter:
    def __init__(self):
        self.value = 0
        self.lock = threading.Lock()

    def incr(self):
        with self.lock:
            seen = self.value
        with self.lock:
            self.value = seen + 1


def count(threads):
    counter = Counter()
    workers = [threading.Thread(target=counter.incr) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return counter.value


@pytest.mark.detsched(runs=20, strategy="random", seed=4)
def test_rare():
    assert count(3) >= 2
"""

FOUND = re.compile(r"detsched found a failure in run (\d+) .*\n(?:.*\n)*?"
                   r"Replay with: .*--detsched-replay='(ds3:[^']+)'")


@pytest.fixture
def pytester(pytester, monkeypatch):
    monkeypatch.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")  # see tests/test_plugin.py
    return pytester


def failures(result) -> list[tuple[int, str]]:
    """(run index, schedule) of every failure in the output, in order. Each is counted once: with
    CI set, pytest's short summary repeats the whole failure message."""
    return list(dict.fromkeys((int(run), schedule) for run, schedule in FOUND.findall(result.stdout.str())))


def test_shards_split_each_marked_test_into_items(pytester):
    pytester.makepyfile(test_rare=RARE + "\n\ndef test_unmarked():\n    pass\n")
    result = pytester.runpytest(*PLUGIN, "--detsched-shards=3", "--collect-only", "-q")
    result.stdout.fnmatch_lines(["test_rare.py::test_rare[[]detsched_shard1of3[]]",
                                 "test_rare.py::test_rare[[]detsched_shard2of3[]]",
                                 "test_rare.py::test_rare[[]detsched_shard3of3[]]",
                                 "test_rare.py::test_unmarked"])


def test_shards_together_run_every_run_once(pytester):
    pytester.makepyfile(test_rare=RARE.replace("count(3) >= 2", "count(3) >= 1"))
    result = pytester.runpytest(*PLUGIN, "--detsched-shards=3")
    result.assert_outcomes(passed=3)
    result.stdout.fnmatch_lines(["test_rare.py::test_rare: 20 runs in * (strategy random, seed 4)"])


def test_the_shard_holding_the_failing_run_finds_the_same_schedule(pytester):
    pytester.makepyfile(test_rare=RARE)
    [(run, schedule)] = failures(pytester.runpytest(*PLUGIN, "-p", "no:cacheprovider"))
    assert run > 0
    sharded = pytester.runpytest(*PLUGIN, "-p", "no:cacheprovider", "--detsched-shards=4")
    shard = run * 4 // 20
    assert failures(sharded)[0] == (run, schedule)
    sharded.stdout.fnmatch_lines([f"FAILED test_rare.py::test_rare[[]detsched_shard{shard + 1}of4[]]*"])
    assert f"test_rare[detsched_shard{shard}of4] - " not in sharded.stdout.str()  # earlier shards pass


def test_replay_line_of_a_shard_names_the_unsharded_test(pytester):
    pytester.makepyfile(test_rare=RARE)
    sharded = pytester.runpytest(*PLUGIN, "-p", "no:cacheprovider", "--detsched-shards=4")
    sharded.stdout.fnmatch_lines(["Replay with: pytest 'test_rare.py::test_rare' --detsched-replay=*"])
    schedule = failures(sharded)[0][1]
    replayed = pytester.runpytest(*PLUGIN, "-p", "no:cacheprovider", "--detsched-shards=4",
                                  "test_rare.py::test_rare", f"--detsched-replay={schedule}")
    replayed.assert_outcomes(failed=1)


def test_xdist_workers_find_the_same_schedules_as_one_process(pytester):
    pytest.importorskip("xdist")
    pytester.makepyfile(test_rare=RARE)
    alone = failures(pytester.runpytest(*PLUGIN, "-p", "no:cacheprovider", "--detsched-shards=4"))
    spread = pytester.runpytest(*PLUGIN, "-p", "no:cacheprovider", "-p", "xdist", "-n", "2", "--detsched-shards=4")
    assert sorted(failures(spread)) == sorted(alone)
    spread.stdout.fnmatch_lines(["test_rare.py::test_rare: * (strategy random, seed 4), FAILED (exception)"])


def test_usage_error_under_xdist_is_reported_by_each_selected_test(pytester):
    pytest.importorskip("xdist")
    pytester.makepyfile(test_rare=RARE + "\n\n@pytest.mark.detsched\ndef test_other():\n    assert count(2) >= 1\n")
    schedule = failures(pytester.runpytest(*PLUGIN, "test_rare.py::test_rare"))[0][1]
    result = pytester.runpytest(*PLUGIN, "-p", "xdist", "-n", "2", "test_rare.py::test_other",
                                f"--detsched-replay={schedule}")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["detsched: the schedule given with --detsched-replay was recorded for "
                                 "test_rare.py::test_rare, but this run selected test_rare.py::test_other.*"])


def test_shards_of_a_dfs_test_split_its_tree_and_are_verified_together(pytester):
    pytester.makepyfile(test_rare=RARE.replace('runs=20, strategy="random", seed=4', 'runs=5000, strategy="dfs"')
                        .replace("count(3) >= 2", "count(2) >= 1"))
    result = pytester.runpytest(*PLUGIN, "--detsched-shards=3")
    result.assert_outcomes(passed=3)
    result.stdout.fnmatch_lines(["test_rare.py::test_rare: verified, every schedule ran: * (strategy dfs)"])


def test_a_dfs_shard_finds_the_schedule_one_item_finds(pytester):
    pytester.makepyfile(test_rare=RARE.replace('runs=20, strategy="random", seed=4', 'runs=5000, strategy="dfs"')
                        .replace("count(3) >= 2", "count(2) == 2"))
    [(_, schedule)] = failures(pytester.runpytest(*PLUGIN, "-p", "no:cacheprovider"))
    sharded = pytester.runpytest(*PLUGIN, "-p", "no:cacheprovider", "--detsched-shards=3")
    # the same interleaving (a shard counts its runs from 0, so the run index in the string differs)
    assert Schedule.loads(schedule).deviations in [Schedule.loads(found).deviations for _, found in failures(sharded)]


def test_a_dpor_test_runs_whole_in_its_first_shard(pytester):
    pytester.makepyfile(test_rare=RARE.replace('runs=20, strategy="random", seed=4', 'runs=5000, strategy="dpor"')
                        .replace("count(3) >= 2", "count(2) >= 1"))
    result = pytester.runpytest(*PLUGIN, "--detsched-shards=3")
    result.assert_outcomes(passed=3)
    result.stdout.fnmatch_lines(["test_rare.py::test_rare: verified, one schedule per class of equivalent "
                                 "interleavings ran: * (strategy dpor)"])
