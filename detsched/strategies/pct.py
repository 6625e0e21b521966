"""PCT: probabilistic concurrency testing with priority change points.

Burckhardt, Kothari, Musuvathi, Nagarakatte, "A Randomized Scheduler with Probabilistic Guarantees of
Finding Bugs", ASPLOS 2010. Each run gives every thread a random distinct priority and picks
``depth - 1`` change points among the decisions; the highest-priority runnable thread always runs,
and at the i-th change point the running thread drops to priority ``i`` (below every initial one).
A bug of depth d among n threads and k decisions is found in one run with probability at least
1 / (n * k^(d-1)).

Deviations from the paper, as in other practical implementations:
- threads are created during the run, so a new thread's priority is drawn when it first appears;
- k is not known in advance: it is estimated once per exploration from a run under the default
  policy (``calibrate``; at least ``MIN_STEP_ESTIMATE``), never from earlier runs, so that run i
  depends only on (seed, i) and shards of an exploration can run anywhere;
- a thread that yields (spins on a poll) drops below every other thread, so spin-waits make progress.
"""

from __future__ import annotations

import random
from typing import Sequence

#: Lower bound on the estimate of decisions per run used to place change points in early runs.
MIN_STEP_ESTIMATE = 16


class PCT:
    name = "pct"

    def __init__(self, *, seed: int, depth: int = 3):
        if depth < 1:
            raise ValueError(f"PCT depth must be at least 1, got {depth}")
        self.seed, self.depth = seed, depth
        self.rng = random.Random()
        self.step_estimate = MIN_STEP_ESTIMATE
        # Invariant: priorities are pairwise distinct (floats drawn in (depth, depth + 1), or the
        # integers 1..depth-1 given at change points, or values below every other when yielding).
        self.priority: dict[int, float] = {}
        self.change_points: dict[int, int] = {}  # decision index -> new priority
        self.decisions = 0

    def calibrate(self, decisions: int) -> None:
        """Set k, the expected number of decisions in a run."""
        self.step_estimate = max(MIN_STEP_ESTIMATE, decisions)

    def new_execution(self, run_index: int) -> None:
        self.rng.seed(f"pct/{self.seed}/{run_index}")
        self.priority = {}
        self.decisions = 0
        points = self.rng.sample(range(1, self.step_estimate + 1), min(self.depth - 1, self.step_estimate))
        self.change_points = {step: rank for rank, step in enumerate(sorted(points), start=1)}

    def next_task(self, runnable: Sequence[int], current: int | None, *, yielding: bool,
                  at: tuple[int, int] = (0, 0)) -> int:
        self.decisions += 1
        priority = self.priority
        changed = False
        for tid in runnable:
            if tid not in priority:
                priority[tid] = self.depth + self.rng.random()
                changed = True
        if yielding and current is not None:
            priority[current] = min(priority.values()) - 1
            changed = True
        chosen = max(runnable, key=priority.__getitem__)
        rank = self.change_points.get(self.decisions)
        if rank is not None:
            priority[chosen] = rank - self.depth  # below every initial priority
            chosen = max(runnable, key=priority.__getitem__)
            changed = True
        # Checked where priorities change, not at every decision: most decisions change none.
        assert not changed or len(set(priority.values())) == len(priority), "PCT priority invariant"
        return chosen

    def next_data(self, bound: int, *, at: tuple[int, int] = (0, 0)) -> int:
        return self.rng.randrange(bound)
