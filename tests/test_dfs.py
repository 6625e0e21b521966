"""Depth-first search (``strategy="dfs"``): every schedule once, default first, within an optional
preemption bound; the report says "verified" only when no schedule is left."""

import threading

import pytest

import detsched
from detsched.strategies import DepthFirst


def run_twice(worker):
    threads = [threading.Thread(target=worker) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def two_unlocked_increments():
    box = [0]

    def worker():
        seen = box[0]
        box[0] = seen + 1

    run_twice(worker)
    assert box[0] == 2, f"box is {box[0]}"


def two_locked_increments():
    box, lock = [0], threading.Lock()

    def worker():
        with lock:
            box[0] += 1

    run_twice(worker)
    assert box[0] == 2


def test_dfs_finds_the_lost_update():
    report = detsched.explore(two_unlocked_increments, strategy="dfs", runs=1000)
    assert report.failure is not None and "box is 1" in report.failure.message
    assert not report.exhausted


def test_a_correct_program_is_verified_and_every_schedule_runs_once():
    report = detsched.explore(two_locked_increments, strategy="dfs", runs=100_000)
    assert report.failure is None and report.exhausted
    assert str(report).startswith(f"verified: all {report.runs} schedules (dfs, no bound) -- no failure")
    bounded = detsched.explore(two_locked_increments, strategy="dfs", runs=100_000, preemption_bound=1)
    assert bounded.exhausted and 1 < bounded.runs < report.runs
    assert str(bounded).startswith(f"verified up to 1 preemption: {bounded.runs} schedules (dfs)")


def test_a_bound_of_zero_runs_only_the_schedules_without_preemptions():
    report = detsched.explore(two_unlocked_increments, strategy="dfs", runs=1000, preemption_bound=0)
    assert report.failure is None and report.exhausted  # the lost update needs a preemption


def test_a_budget_smaller_than_the_tree_is_not_verified():
    report = detsched.explore(two_locked_increments, strategy="dfs", runs=2)
    assert report.failure is None and not report.exhausted
    assert str(report).startswith("passed: no failure in 2 runs")


def walk(search: DepthFirst, tree: dict) -> list[tuple[int, ...]]:
    """The paths ``search`` takes through ``tree`` (choice -> subtree; {} is a leaf, thread 0 the
    current one at every decision) until it is exhausted."""
    paths = []
    while True:
        search.new_execution(0)
        node, path = tree, []
        while node:
            choice = search.next_task(sorted(node), 0 if 0 in node else None, yielding=False)
            path.append(choice)
            node = node[choice]
        paths.append(tuple(path))
        if search.exhausted:
            return paths


def test_the_search_visits_every_leaf_once_default_first():
    tree = {0: {0: {}, 1: {}}, 1: {0: {}, 2: {}}, 2: {}}
    assert walk(DepthFirst(), tree) == [(0, 0), (0, 1), (1, 0), (1, 2), (2,)]


def test_the_bound_prunes_branches_with_too_many_preemptions():
    tree = {0: {0: {}, 1: {}}, 1: {0: {}, 2: {}}}
    # Choosing 1 over the current thread 0 is a preemption; (1, 2) is a second one.
    assert walk(DepthFirst(preemption_bound=1), tree) == [(0, 0), (0, 1), (1, 0)]
    assert walk(DepthFirst(preemption_bound=0), tree) == [(0, 0)]


@pytest.mark.parametrize("options, phrase", [
    ({"strategy": "pct", "preemption_bound": 2}, "a preemption bound is for strategies 'dfs' and 'dpor', not 'pct'"),
    ({"strategy": "dfs", "preemption_bound": -1}, "preemption bound must be a non-negative integer"),
])
def test_bad_bounds_say_what_is_expected(options, phrase):
    with pytest.raises(detsched.DetschedUsageError, match=phrase):
        detsched.explore(two_locked_increments, runs=1, **options)


def test_the_cli_prints_the_verified_line(capsys):
    from detsched.cli import main

    assert main(["run", "test_dfs:two_locked_increments", "--strategy", "dfs", "--preemption-bound", "1"]) == 0
    assert "verified up to 1 preemption: " in capsys.readouterr().out


CALLS = []


def decides_differently_each_time():
    CALLS.append(1)  # the warm-up run and the first schedule start threads; later runs none
    threads = [threading.Thread(target=lambda: None) for _ in range(2 if len(CALLS) <= 2 else 0)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def test_a_program_that_is_not_deterministic_is_never_verified():
    CALLS.clear()
    report = detsched.explore(decides_differently_each_time, strategy="dfs", runs=1000)
    assert report.failure is None and not report.exhausted
    assert str(report).startswith("passed: ")


def test_an_iterative_bound_says_the_largest_bound_it_covered():
    report = detsched.explore(two_locked_increments, strategy="dfs", runs=30, preemption_bound="iterative")
    assert report.exhausted and report.bound is not None and report.runs == 30
    assert str(report).startswith(f"verified up to {report.bound} preemption")
    assert str(report).endswith(f"the runs ran out searching {report.bound + 1} preemptions")


def test_an_iterative_bound_ends_verified_without_a_bound_when_nothing_was_left_out():
    report = detsched.explore(two_locked_increments, strategy="dfs", runs=100_000, preemption_bound="iterative")
    assert report.exhausted and report.bound is None
    assert report.runs > detsched.explore(two_locked_increments, strategy="dfs", runs=100_000).runs


def test_an_iterative_bound_finds_the_lost_update_at_the_smallest_bound():
    report = detsched.explore(two_unlocked_increments, strategy="dfs", runs=1000, preemption_bound="iterative")
    assert report.failure is not None and report.failure.schedule.preemptions == 1


def test_a_delay_bound_of_zero_runs_the_one_round_robin_schedule():
    report = detsched.explore(two_locked_increments, strategy="dfs", runs=1000, delay_bound=0)
    assert report.exhausted and report.runs == 1
    assert str(report) == "verified up to 0 delays: 1 schedule (dfs) -- no failure"


def test_each_delay_more_runs_more_schedules_and_finds_the_lost_update_with_one():
    counts = [detsched.explore(two_locked_increments, strategy="dfs", runs=100_000, delay_bound=bound).runs
              for bound in range(4)]
    assert counts == sorted(set(counts))
    failure = detsched.explore(two_unlocked_increments, strategy="dfs", runs=1000, delay_bound=1).failure
    assert failure is not None and "box is 1" in failure.message


def test_a_delay_bound_finds_the_philosophers_deadlock_that_plain_dfs_does_not_reach_in_budget():
    from test_dpor import dining_philosophers

    assert detsched.explore(dining_philosophers, strategy="dfs", runs=300).failure is None
    failure = detsched.explore(dining_philosophers, strategy="dfs", runs=300, delay_bound=2).failure
    assert failure is not None and failure.kind == "deadlock"


def test_a_delay_bound_is_for_dfs_only():
    with pytest.raises(detsched.DetschedUsageError, match="a delay bound is for strategy 'dfs', not 'dpor'"):
        detsched.explore(two_locked_increments, strategy="dpor", runs=10, delay_bound=1)


def test_the_cli_takes_a_delay_bound(capsys):
    from detsched.cli import main

    assert main(["run", "test_dfs:two_locked_increments", "--strategy", "dfs", "--delay-bound", "1"]) == 0
    assert "verified up to 1 delay: " in capsys.readouterr().out
