"""Depth-first search over every schedule, optionally bounded in preemptions.

Stateless model checking as CHESS does it (Musuvathi, Qadeer et al., "Finding and Reproducing
Heisenbugs in Concurrent Programs", OSDI 2008), with iterative context bounding's preemption bound
(Musuvathi and Qadeer, "Iterative Context Bounding for Systematic Testing of Multithreaded
Programs", PLDI 2007): a preemption is a switch away from a thread that could have gone on, and
most concurrency bugs need very few. Each run replays the previous run's decisions up to the
deepest one with an option left to try, takes that option, and then the default at every new
decision -- so the first run is the default policy, and the runs walk the tree of decisions in
depth-first order. When no decision has an option left, the tree is ``exhausted``: every schedule
(within the bound) has run once.

Options at a decision are ordered default first (the current thread when it can go on, else the
lowest-numbered one), then by thread id; data choices (which ready asyncio callback runs next)
are branches too, 0 first, and never count as preemptions.

Deviations: the search keeps no state between processes and does not reduce equivalent
interleavings (DPOR); a program whose decisions change when the same prefix is replayed is not
deterministic, so "exhausted" means nothing for it -- ``diverged`` says when that happened.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from detsched.strategies.ordering import check_bound, options_in_order, preempts, within_bound


@dataclass
class _Branch:
    """One decision of the current path."""

    options: tuple[int, ...]  # default first
    taken: int  # index into options
    current: int | None  # the thread that could go on (a switch away from it is a preemption)
    preemptions_before: int  # preemptions on the path before this decision
    delays_before: int = 0  # delays on the path before this decision (taking option i costs i)


class DepthFirst:
    name = "dfs"

    def __init__(self, *, seed: int = 0, depth: int = 0, preemption_bound: int | None = None,
                 delay_bound: int | None = None):
        self.preemption_bound = check_bound(preemption_bound)
        #: Delay bounding (Emmi, Qadeer and Rakamaric, "Delay-Bounded Scheduling", POPL 2011): the
        #: deterministic scheduler runs the current thread on, then the next one after it in thread
        #: order; taking the i-th option of a decision in that order (0 is the default) is i delays.
        self.delay_bound = check_bound(delay_bound)
        self.delays = 0  # delays so far in the run in progress
        # Invariant: path[i] is decision i of the run in progress, or of the last run; every branch
        # has taken < len(options), and its preemptions_before fits the bound.
        self.path: list[_Branch] = []
        self.position = 0  # decisions made so far in the run in progress
        self.preemptions = 0  # preemptions so far in the run in progress
        self.schedules = 0  # runs started
        self.replaying = 0  # decisions the run in progress must make as the path says
        self.diverged = False  # a run left its replayed prefix: other options, or fewer decisions
        self.pruned = False  # the bound left out a schedule: a larger one would run more

    def calibrate(self, decisions: int) -> None:
        pass

    def new_execution(self, run_index: int) -> None:
        if self.schedules:
            self._advance()
        self.schedules += 1
        self.position = self.preemptions = self.delays = 0

    @property
    def exhausted(self) -> bool:
        """Whether every schedule within the bound has run: no decision has an option left."""
        return not any(self._next_option(branch) is not None for branch in self.path)

    def next_task(self, runnable: Sequence[int], current: int | None, *, yielding: bool,
                  at: tuple[int, int] = (0, 0)) -> int:
        options, current = options_in_order(runnable, current)
        if self.delay_bound is not None:  # round robin from the default
            later = [tid for tid in options[1:] if tid > options[0]]
            options = (options[0], *later, *(tid for tid in options[1:] if tid < options[0]))
        chosen = self._choose(options, current)
        if preempts(current, chosen):
            self.preemptions += 1
        return chosen

    def next_data(self, bound: int, *, at: tuple[int, int] = (0, 0)) -> int:
        return self._choose(tuple(range(bound)), None)

    def _choose(self, options: tuple[int, ...], current: int | None) -> int:
        if self.position < len(self.path) and self.path[self.position].options != options:
            self.diverged = True  # the program did something else this time: search on from here
            del self.path[self.position:]
        if self.position == len(self.path):
            self.path.append(_Branch(options, 0, current, self.preemptions, self.delays))
        branch = self.path[self.position]
        self.position += 1
        self.delays += branch.taken
        return branch.options[branch.taken]

    def _next_option(self, branch: _Branch) -> int | None:
        for index in range(branch.taken + 1, len(branch.options)):
            if self.delay_bound is not None and branch.delays_before + index > self.delay_bound:
                self.pruned = True
                return None  # the options after it cost more delays still
            if within_bound(self.preemption_bound, branch.current, branch.preemptions_before, branch.options[index]):
                return index
            self.pruned = True
        return None

    def _advance(self) -> None:
        """Move the deepest decision with an option left to that option; drop the decisions after."""
        if self.position < self.replaying:
            self.diverged = True  # the last run ended before the decision it was sent down
        del self.path[self.position:]  # decisions the last run never reached
        while self.path:
            index = self._next_option(self.path[-1])
            if index is not None:
                self.path[-1].taken = index
                self.replaying = len(self.path)
                return
            self.path.pop()
