"""The shrinker alone, driven by a fake ``attempt``: no threads, no scheduler.

A candidate is a tuple of deviations ``(position, value)``. The fake decides whether a candidate
still fails and reports the run it would make, so each test states exactly which schedules fail.
"""

import pytest

from detsched._explore import shrink as shrink_module
from detsched._explore.shrink import Outcome, shrink, sort_key

A, B, C, D = ((0, 1), 1), ((0, 2), 2), ((1, 3), 0), ((2, 4), 1)
#: The decisions of the default run the fake reports: (position, options, default).
CHOICES = (((0, 1), (0, 1), 0), ((0, 2), (0, 1, 2), 0), ((1, 3), (0, 1), 1))


def fake(fails, *, decisions=lambda candidate: 10 + len(candidate)):
    """An ``attempt`` under which ``fails(candidate)`` says whether a candidate fails; it records
    every candidate it was given."""
    tried = []

    def attempt(candidate):
        tried.append(candidate)
        return Outcome(fails(candidate), candidate, decisions(candidate), CHOICES)

    attempt.tried = tried
    return attempt


def test_deletes_every_deviation_the_failure_does_not_need():
    attempt = fake(lambda candidate: B in candidate and D in candidate)
    assert shrink((A, B, C, D), 14, attempt) == (B, D)


def test_a_failure_that_needs_every_deviation_keeps_them_all():
    everything = (A, B, C)
    attempt = fake(lambda candidate: candidate == everything)
    assert shrink(everything, 13, attempt) == everything


def test_a_failure_of_the_default_run_shrinks_to_no_deviation():
    assert shrink((A, B, C), 13, fake(lambda candidate: True)) == ()


def test_one_preemption_elsewhere_replaces_several():
    # Only the single deviation ((0, 2), 1) fails on its own, a choice the original run did not
    # make: deleting cannot find it, the one-deviation search over the default run's choices does.
    alone = (((0, 2), 1),)
    attempt = fake(lambda candidate: candidate in ((A, C, D), alone))
    assert shrink((A, C, D), 13, attempt) == alone


def test_the_same_failure_always_shrinks_to_the_same_schedule():
    def fails(candidate):
        return C in candidate

    first, second = fake(fails), fake(fails)
    assert shrink((A, B, C, D), 14, first) == shrink((A, B, C, D), 14, second) == (C,)
    assert first.tried == second.tried


def test_shrinking_stops_at_its_run_budget(monkeypatch):
    monkeypatch.setattr(shrink_module, "MAX_SHRINK_RUNS", 3)
    attempt = fake(lambda candidate: candidate == (A, B, C, D))
    assert shrink((A, B, C, D), 14, attempt) == (A, B, C, D)
    assert len(attempt.tried) == 3


def test_simpler_means_fewer_deviations_then_fewer_decisions_then_smaller():
    assert sort_key((A,), 100) < sort_key((A, B), 2)
    assert sort_key((B,), 5) < sort_key((A,), 6)
    assert sort_key((A,), 5) < sort_key((B,), 5)


@pytest.mark.parametrize("original", [(A,), (A, B), (A, B, C, D)])
def test_the_result_always_fails(original):
    def fails(candidate):
        return bool(candidate) and candidate[-1] == original[-1]

    assert fails(shrink(original, 10, fake(fails)))
