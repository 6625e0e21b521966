"""Coverage-guided search: steer runs towards orders of conflicting operations no run has shown.

Every run is traced, and its *conflicts* (``detsched._core.orders``: an operation of one thread on a
primitive, followed on it by another thread's) are the orders it showed, named by the two sites.
For each order ``a`` then ``b`` whose reverse no run has shown yet, an *attempt* is queued: replay
the run's decisions up to the last one before ``a`` at which the thread of ``b`` could also run,
and from there hold the thread of ``a`` back -- every other runnable thread goes first, ``b``'s
before the rest -- until ``b`` has run, or for as many decisions as ``b`` took to come after ``a``
plus a little; once ``b`` has run, let ``a``'s thread go first for a few decisions (so that its
operation follows ``b`` directly, and the pair is the one reversed); then keep running the
current thread (the default policy). Runs with no attempt queued are PCT runs
(``detsched.strategies.pct``), which bring in orders to flip. This is feedback-guided search in the
spirit of coverage-guided fuzzing: the feedback is which orders were covered
(``detsched._report.coverage`` counts the same pairs), the mutation a targeted delay of one thread.

Each order's reverse is attempted at most ``MAX_ATTEMPTS`` times, each time from another run that
showed the order (the same delay from another interleaving may succeed where one did not). The
same seed explores the same runs, but a run depends on the runs before it (as in ``dfs``), so the
runs of one exploration cannot be split between processes.
"""

from __future__ import annotations

from collections import deque
from typing import NamedTuple, Sequence

from detsched._core import orders
from detsched.strategies.pct import PCT

#: Decisions an attempt goes on holding a thread back past the point where the order it flips
#: showed up (the other thread may need a step or two more in the new interleaving).
SLACK = 2
#: Attempts queued at most; orders found while it is full are left to later runs to find again.
MAX_QUEUED = 1000
#: Attempts at one order's reverse, each from another run that showed the order (another context).
MAX_ATTEMPTS = 4


class _Attempt(NamedTuple):
    """One run aimed at the reverse of an order a run showed."""

    prefix: dict  # position -> value: the deviations of the decisions before ``decision``
    decision: int  # from this decision on, ``held`` goes last
    window: int  # ... for this many decisions
    held: int  # the thread whose operation came first
    prefer: int  # the thread whose operation should come first instead
    site: str  # where ``prefer``'s operation is: once it has run, ``held`` goes first, to follow it


class CoverageGuided:
    name = "cover"
    needs_trace = True

    def __init__(self, *, seed: int, depth: int = 3):
        self.base = PCT(seed=seed, depth=depth)
        # Invariant: ``seen`` holds every (object, earlier site, later site) some finished run
        # showed; ``tried`` counts the attempts queued at each order (at most ``MAX_ATTEMPTS``).
        self.seen: set[tuple[str, str, str]] = set()
        self.tried: dict[tuple[str, str, str], int] = {}
        self.queue: deque[_Attempt] = deque()
        self.attempt: _Attempt | None = None  # of the run in progress, None for a PCT run
        self.position = 0  # decisions made so far in the run in progress
        self.flipped: int | None = None  # the decision at which ``prefer``'s operation was seen to have run
        self._rows = 0  # rows of the run in progress's trace looked at for it
        self.attempts = 0  # runs that were attempts
        self._execution = None  # the record of the run in progress, learnt from once it ended

    def calibrate(self, decisions: int) -> None:
        self.base.calibrate(decisions)

    def watch_execution(self, execution) -> None:
        """The record (``detsched._core.execution.Execution``) of the run about to start."""
        self._execution = execution

    def new_execution(self, run_index: int) -> None:
        if self._execution is not None:
            self._learn(self._execution.trace, self._execution.decisions)
            self._execution = None
        self.position, self.flipped, self._rows = 0, None, 0
        self.attempt = self.queue.popleft() if self.queue else None
        if self.attempt is None:
            self.base.new_execution(run_index)
        else:
            self.attempts += 1

    def next_task(self, runnable: Sequence[int], current: int | None, *, yielding: bool,
                  at: tuple[int, int] = (0, 0)) -> int:
        index, self.position = self.position, self.position + 1
        attempt = self.attempt
        if attempt is None:
            return self.base.next_task(runnable, current, yielding=yielding, at=at)
        if index < attempt.decision:
            wanted = attempt.prefix.get(at)
            if wanted in runnable:
                return wanted
        elif self._ran_preferred(index):
            if attempt.held in runnable and index < self.flipped + SLACK:
                return attempt.held
        elif index < attempt.decision + attempt.window and attempt.held in runnable:
            if attempt.prefer in runnable:
                return attempt.prefer
            others = [tid for tid in runnable if tid != attempt.held]
            return current if current in others else others[0]
        return current if current in runnable else runnable[0]

    def _ran_preferred(self, index: int) -> bool:
        """Whether the attempt's preferred thread has run its operation, looking at the rows the
        run in progress wrote since the attempt began (only while its window lasts)."""
        attempt = self.attempt
        if self.flipped is not None or self._execution is None or index >= attempt.decision + attempt.window:
            return self.flipped is not None
        trace = self._execution.trace
        if index == attempt.decision:
            self._rows = len(trace)
        if any(step.tid == attempt.prefer and step.where == attempt.site and step.obj for step in trace[self._rows:]):
            self.flipped = index
        self._rows = len(trace)
        return self.flipped is not None

    def next_data(self, bound: int, *, at: tuple[int, int] = (0, 0)) -> int:
        index, self.position = self.position, self.position + 1
        attempt = self.attempt
        if attempt is None:
            return self.base.next_data(bound, at=at)
        wanted = attempt.prefix.get(at, 0) if index < attempt.decision else 0
        return wanted if 0 <= wanted < bound else 0

    def _learn(self, trace, decisions) -> None:
        """Note the orders the finished run showed; queue an attempt at the reverse of each new one."""
        found = list(orders.conflicts(trace))
        for conflict in found:
            self.seen.add((conflict.obj, trace[conflict.earlier].where, trace[conflict.later].where))
        aimed = set()  # one attempt per order from each run
        for conflict in found:
            first, then = trace[conflict.earlier], trace[conflict.later]
            reverse = (conflict.obj, then.where, first.where)
            if reverse in self.seen or reverse in aimed or self.tried.get(reverse, 0) >= MAX_ATTEMPTS \
                    or len(self.queue) >= MAX_QUEUED:
                continue
            attempt = _aim(decisions, first, then)
            if attempt is not None:
                aimed.add(reverse)
                self.tried[reverse] = self.tried.get(reverse, 0) + 1
                self.queue.append(attempt)


def _aim(decisions, first, then) -> _Attempt | None:
    """The attempt to run ``then``'s thread before ``first``'s operation, or None when no decision
    before ``first`` could have run ``then``'s thread."""
    chosen_by = [i for i, d in enumerate(decisions) if d.step < first.step
                 and first.tid in d.options and then.tid in d.options]
    if not chosen_by:
        return None
    decision = chosen_by[-1]
    prefix = {d.position: d.value for d in decisions[:decision] if d.value != d.default}
    window = sum(1 for d in decisions[decision:] if d.step < then.step) + SLACK
    return _Attempt(prefix, decision, window, first.tid, then.tid, then.where)
