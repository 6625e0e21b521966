"""PCT on its own: change points, priorities and what it picks, without running a program."""

import pytest

from detsched.strategies import PCT, RandomWalk
from detsched.strategies.pct import MIN_STEP_ESTIMATE


def started(depth=3, seed=0, run=0, estimate=None):
    pct = PCT(seed=seed, depth=depth)
    if estimate is not None:
        pct.calibrate(estimate)
    pct.new_execution(run)
    return pct


@pytest.mark.parametrize("depth", [1, 2, 3, 5])
def test_a_run_has_depth_minus_one_change_points_among_the_expected_decisions(depth):
    pct = started(depth, estimate=40)
    points = pct.change_points
    assert len(points) == depth - 1
    assert all(1 <= decision <= 40 for decision in points)
    assert sorted(points.values()) == list(range(1, depth))  # the i-th change point gives priority i


def test_change_points_depend_only_on_seed_and_run_index():
    assert started(seed=4, run=9).change_points == started(seed=4, run=9).change_points
    runs = {tuple(sorted(started(seed=4, run=run).change_points)) for run in range(20)}
    assert len(runs) > 1


def test_calibration_never_estimates_fewer_than_the_minimum():
    assert started(estimate=2).step_estimate == MIN_STEP_ESTIMATE
    assert started(estimate=500).step_estimate == 500


def test_the_highest_priority_runnable_thread_runs_until_a_change_point():
    pct = started(depth=1)  # no change points
    first = pct.next_task([0, 1, 2], 0, yielding=False)
    for _ in range(30):
        assert pct.next_task([0, 1, 2], first, yielding=False) == first
    others = [tid for tid in (0, 1, 2) if tid != first]
    expected = max(others, key=pct.priority.__getitem__)
    assert pct.next_task(others, None, yielding=False) == expected


def test_at_a_change_point_the_running_thread_drops_below_every_other():
    pct = started(depth=2, estimate=16)
    pct.change_points = {3: 1}  # the third decision
    before = pct.next_task([0, 1, 2], 0, yielding=False)
    assert pct.next_task([0, 1, 2], before, yielding=False) == before
    after = pct.next_task([0, 1, 2], before, yielding=False)
    assert after != before
    assert pct.priority[before] == 1 - pct.depth  # below every initial priority
    assert after == max((0, 1, 2), key=pct.priority.__getitem__)


def test_priorities_stay_pairwise_distinct_as_threads_appear():
    pct = started(depth=4, estimate=16)
    for step in range(40):
        pct.next_task(list(range(min(step + 2, 8))), 0, yielding=step % 5 == 0)
    assert len(set(pct.priority.values())) == len(pct.priority)


def test_a_yielding_thread_gives_way_to_every_other():
    pct = started(depth=1)
    favourite = pct.next_task([0, 1, 2], None, yielding=False)
    pct.next_task([t for t in (0, 1, 2) if t != favourite], favourite, yielding=True)
    assert pct.priority[favourite] < min(p for t, p in pct.priority.items() if t != favourite)


def test_depth_below_one_is_refused():
    with pytest.raises(ValueError, match="PCT depth must be at least 1"):
        PCT(seed=0, depth=0)


def test_data_choices_are_in_range_and_reproducible():
    values = [started(seed=3).next_data(4) for _ in range(5)]
    assert len(set(values)) == 1 and 0 <= values[0] < 4
    walk = RandomWalk(seed=1)
    walk.new_execution(7)
    drawn = [walk.next_data(3) for _ in range(10)]
    walk.new_execution(7)
    assert [walk.next_data(3) for _ in range(10)] == drawn
