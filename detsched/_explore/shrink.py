"""Shrinking: turn a failing schedule into the shortest story that still fails the same way.

The shrinker sees only deviations -- ``(position, thread)`` pairs, where a position names a decision
as (thread that reached it, its n-th scheduling point) -- and a function that runs a candidate.
"Simpler" is defined by ``sort_key``:
1. fewer deviations from the default policy (each is a preemption or an unusual choice, and each is
   something the reader must follow);
2. then fewer decisions in the run (a shorter timeline);
3. then lexicographically smaller, so the result does not depend on the order passes ran in.

Two passes, both deterministic, so shrinking the same failure always gives the same schedule:
- *delete*: drop chunks of deviations (halves, quarters, ... single ones), keeping what still fails;
- *bound*: a preemption-bounded search (as in CHESS) over every schedule with exactly one deviation
  from the default run; deleting alone cannot find it when the bug needs the preemption somewhere
  the original run did not put one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

#: Upper bound on the runs spent shrinking one failure.
MAX_SHRINK_RUNS = 500


@dataclass(frozen=True)
class Outcome:
    failed: bool  # failed the same way as the original
    positions: tuple  # deviations the run really made
    decisions: int  # decisions in the run
    choices: tuple  # (position, options, default) of every decision with a choice


#: Runs a candidate deviation list.
Attempt = Callable[[tuple], Outcome]


def sort_key(positions: tuple, decisions: int):
    return (len(positions), decisions, positions)


def shrink(positions: tuple, decisions: int, attempt: Attempt) -> tuple:
    """Return the simplest deviation list found that still fails the same way."""
    budget = _Budget(attempt)
    best = (positions, decisions)
    best = _delete_chunks(best, budget)
    if len(best[0]) > 1:
        best = _one_deviation(best, budget)
    return best[0]


class _Budget:
    def __init__(self, attempt: Attempt):
        self.attempt, self.left = attempt, MAX_SHRINK_RUNS

    def run(self, candidate: tuple) -> Optional[Outcome]:
        if self.left <= 0:
            return None
        self.left -= 1
        return self.attempt(candidate)


def _better(outcome: Optional[Outcome], best) -> bool:
    return outcome is not None and outcome.failed and sort_key(outcome.positions, outcome.decisions) < sort_key(*best)


def _delete_chunks(best, budget: _Budget):
    chunk = max(1, len(best[0]) // 2)
    while chunk >= 1 and budget.left > 0:
        improved, start = False, 0
        while start < len(best[0]) and budget.left > 0:
            outcome = budget.run(best[0][:start] + best[0][start + chunk:])
            if _better(outcome, best):
                best, improved = (outcome.positions, outcome.decisions), True
            else:
                start += chunk
        if not improved:
            chunk //= 2
    return best


def _one_deviation(best, budget: _Budget):
    base = budget.run(())
    if base is None:
        return best
    if base.failed:
        return (base.positions, base.decisions)
    for position, options, default in base.choices:
        for value in options:
            if value == default:
                continue
            outcome = budget.run(((position, value),))
            if _better(outcome, best):
                return (outcome.positions, outcome.decisions)
    return best
