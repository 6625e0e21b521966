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

Split: ``shard=(i, n)`` groups the schedules by their first deviation from the default (the
decision and the option; the default schedule alone is group 0) and searches only the groups whose
depth-first ordinal is ``i`` modulo ``n``, so ``n`` processes search disjoint parts of one tree. A cut
at a fixed depth was tried first and left one shard nearly the whole tree: most schedules of a
real test branch off deep down its default path, and the groups by first deviation are of much more
even sizes. Each shard still runs one schedule of every other group (its first), to learn where the
next group starts; that schedule is the same in every shard, so a failure in it is the same failure
wherever it is found.

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
    started: int = 0  # the schedule (counted from 1) the option taken began with
    finished: int = 0  # schedules below the options before the one taken, together


class DepthFirst:
    name = "dfs"

    def __init__(self, *, seed: int = 0, depth: int = 0, preemption_bound: int | None = None,
                 delay_bound: int | None = None, shard: tuple[int, int] = (0, 1)):
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
        self.shard, self.shards = check_shard(shard)
        self.group = 0  # depth-first ordinal of the group of the run in progress (its shard: group % shards)
        self.leaf = 0  # how many schedules of that group ran before the run in progress

    def calibrate(self, decisions: int) -> None:
        pass

    def new_execution(self, run_index: int) -> None:
        if self.schedules:
            self._advance()
        self.schedules += 1
        self.position = self.preemptions = self.delays = 0

    @property
    def exhausted(self) -> bool:
        """Whether every schedule within the bound (of this shard's groups) has run: no decision has
        an option left."""
        return not any(self._next_option(branch) is not None for branch in self._searched_path())

    @property
    def owns_run(self) -> bool:
        """Whether the run in progress is in one of this shard's groups."""
        return self.group % self.shards == self.shard

    def _searched_path(self) -> list[_Branch]:
        """The decisions of the path whose other options this shard searches: past the first
        deviation only in its own groups."""
        return self.path if self.owns_run else self.path[:self._cut()]

    def _cut(self) -> int:
        """How many decisions of the path decide its group: up to its first deviation."""
        return next((index + 1 for index, branch in enumerate(self.path) if branch.taken > 0), len(self.path))

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
            self.path.append(_Branch(options, 0, current, self.preemptions, self.delays, self.schedules))
        branch = self.path[self.position]
        self.position += 1
        self.delays += branch.taken
        return branch.options[branch.taken]

    def estimated_left(self) -> int | None:
        """About how many schedules of the tree are left, or None (a shard's part of it). Each
        option a decision of the path has left is taken to hold as many schedules as the options
        it already searched did on average (or, before any, as the one it is in so far). Taking
        every subtree to be as large as the one the search is in (the textbook estimate) was tried
        and is off by many orders of magnitude under a bound: the later options of a decision
        cost more delays or preemptions, and hold far fewer schedules."""
        if self.shards > 1:
            return None
        left = 0.0
        for branch in self.path:
            later = sum(self._allows(branch, index) for index in range(branch.taken + 1, len(branch.options)))
            if later:
                searched = branch.finished / branch.taken if branch.taken else self.schedules - branch.started + 1
                left += later * searched
        return round(left)

    def _allows(self, branch: _Branch, index: int) -> bool:
        """Whether the bounds allow option ``index`` of ``branch``."""
        return not self._over_delays(branch, index) and within_bound(
            self.preemption_bound, branch.current, branch.preemptions_before, branch.options[index])

    def _over_delays(self, branch: _Branch, index: int) -> bool:
        """Whether option ``index`` of ``branch`` (and so every later one) costs more delays than the bound."""
        return self.delay_bound is not None and branch.delays_before + index > self.delay_bound

    def _next_option(self, branch: _Branch) -> int | None:
        for index in range(branch.taken + 1, len(branch.options)):
            if self._allows(branch, index):
                return index
            self.pruned = True
            if self._over_delays(branch, index):
                return None  # the options after it cost more delays still
        return None

    def _advance(self) -> None:
        """Move the deepest decision with an option left to that option; drop the decisions after."""
        if self.position < self.replaying:
            self.diverged = True  # the last run ended before the decision it was sent down
        del self.path[self.position:]  # decisions the last run never reached
        cut = self._cut()
        if not self.owns_run:
            del self.path[cut:]  # the rest of another shard's group is its own
        while self.path:
            index = self._next_option(self.path[-1])
            if index is not None:
                branch = self.path[-1]
                branch.finished += self.schedules - branch.started + 1
                branch.taken, branch.started = index, self.schedules + 1
                self.replaying = len(self.path)
                if len(self.path) <= cut:  # a new first deviation: the next group
                    self.group, self.leaf = self.group + 1, 0
                else:
                    self.leaf += 1
                return
            self.path.pop()


def check_shard(shard) -> tuple[int, int]:
    """``(i, n)``: shard ``i`` of ``n`` (``0 <= i < n``); ``ValueError`` otherwise."""
    try:
        index, count = shard
    except (TypeError, ValueError):
        raise ValueError(f"a shard is (index, count), got {shard!r}") from None
    if not all(isinstance(value, int) and not isinstance(value, bool) for value in shard) or not 0 <= index < count:
        raise ValueError(f"a shard is (index, count) with 0 <= index < count, got {shard!r}")
    return index, count
