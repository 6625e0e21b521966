"""Hypothesis integration: ``schedules()`` lets Hypothesis choose where the scheduler deviates.

A drawn schedule is a short list of *deviations*: "at decision ``n`` of the run, do not follow the
default policy (keep running the current thread); run another runnable thread instead". Hypothesis
shrinks lists by dropping elements first and then lowering values, so a failing interleaving
shrinks to fewer preemptions, then earlier ones -- the order in which a person wants to read them.
Decisions are numbered from the start of the run, not from the previous deviation, so dropping one
deviation leaves the others where they were. The example is kept in Hypothesis's database and
replayed first next time. Together with ``@given`` inputs one test searches inputs and
interleavings at once::

    from hypothesis import given, strategies as st
    from detsched.hypothesis import schedules

    @given(schedules(), st.integers(1, 100))
    def test_transfer(schedule, amount):
        schedule.run(lambda: transfer_twice(amount))   # raises on a failing interleaving

Everything is drawn before the run starts, in the thread Hypothesis runs the test in, so no
Hypothesis code ever executes inside a controlled thread.
"""

from __future__ import annotations

from typing import Sequence

from hypothesis import strategies as st
from hypothesis.control import current_build_context
from hypothesis.errors import InvalidArgument

from detsched import settings
from detsched._core.ops import FailureInfo
from detsched._explore.explorer import replay, run_once, schedule_of, warm_up
from detsched._explore.targets import Target, resolve
from detsched._report.failure import KINDS
from detsched.errors import DetschedUsageError
from detsched.plugins import format_failure
from detsched.schedule import Points, Schedule, default_task, fingerprint
from detsched.settings import Limits

#: Most deviations one drawn schedule holds (PCT finds most bugs with depth 2-3).
MAX_DEVIATIONS = 32
#: Decision numbers are drawn on a log scale, up to ``4 ** MAX_DECISION_SCALE``, so that small tests
#: get deviations among their few decisions while long runs can still be reached late.
MAX_DECISION_SCALE = 7
#: Alternatives are counted among the runnable threads other than the default one, modulo their number.
MAX_ALTERNATIVE = 8

#: Targets (by name) that had their warm-up run in this process. As before exploring, one run under
#: the default policy lets once-per-process initialisation happen before the first example, so an
#: example takes the same path whenever Hypothesis runs it again.
_warmed_up: set[str] = set()


class InterleavingFailure(AssertionError):
    """A run under a drawn schedule failed. One subclass per failure kind, so that Hypothesis,
    which tells bugs apart by exception type and origin, never shrinks one kind into another."""

    kind = ""


FAILURE_TYPES = {kind: type(f"{kind.title().replace('-', '')}Found", (InterleavingFailure,),
                            {"kind": kind, "__module__": __name__}) for kind in KINDS}


class PlannedDeviations:
    """A detsched ``Strategy`` that follows the default policy except at planned decisions."""

    name = "hypothesis"

    def __init__(self, deviations: Sequence[tuple[int, int]]):
        self.planned: dict[int, int] = {}  # decision index -> alternative (1 = first non-default)
        for decision, alternative in deviations:
            self.planned.setdefault(decision, alternative)  # the first of two at one decision wins
        self.decisions = 0

    def calibrate(self, decisions: int) -> None:
        pass

    def new_execution(self, run_index: int) -> None:
        self.decisions = 0

    def _planned(self) -> int | None:
        alternative = self.planned.get(self.decisions)
        self.decisions += 1
        return alternative

    def next_task(self, runnable: Sequence[int], current: int | None, *, yielding: bool,
                  at: tuple[int, int] = (0, 0)) -> int:
        default = default_task(runnable, current)
        alternative = self._planned()
        if alternative is None:
            return default
        others = [tid for tid in runnable if tid != default]
        return others[(alternative - 1) % len(others)]

    def next_data(self, bound: int, *, at: tuple[int, int] = (0, 0)) -> int:
        alternative = self._planned()
        return 0 if alternative is None else 1 + (alternative - 1) % (bound - 1)


class DrawnSchedule:
    """One interleaving drawn by Hypothesis: ``run(target)`` executes ``target`` once under it."""

    def __init__(self, deviations: Sequence[tuple[int, int]]):
        self.deviations = tuple(deviations)  # (decision, alternative) pairs, as drawn
        self.schedule: Schedule | None = None  # the decisions the run made, once it ran

    def __repr__(self) -> str:
        ran = "" if self.schedule is None else f", ran as {self.schedule.dumps()!r}"
        return f"DrawnSchedule(deviations={list(self.deviations)!r}{ran})"

    def run(self, target, *, max_steps: int = settings.MAX_STEPS, points: Points = Points()) -> None:
        """Run ``target`` (a callable taking no arguments, or a ``detsched`` target string) once
        under this schedule. Raises an ``InterleavingFailure`` subclass if the run fails."""
        if self.schedule is not None:
            raise DetschedUsageError("a drawn schedule runs one target once; draw another schedules() value "
                                     "for a second run")
        settings.check_count("max_steps", max_steps)
        limits = Limits(max_steps)
        resolved = resolve(target)
        if resolved.name not in _warmed_up:
            warm_up(resolved, limits, points)
            _warmed_up.add(resolved.name)
        result = run_once(resolved, PlannedDeviations(self.deviations), 0, limits, points=points)
        origin = Schedule(fingerprint(resolved.name), PlannedDeviations.name, 0, 0, 0, (), points)
        self.schedule = schedule_of(origin, result)
        if result.failure is not None:
            raise self._failure(resolved, result.failure, max_steps)

    def _failure(self, target: Target, found: FailureInfo, max_steps: int) -> InterleavingFailure:
        text = f"{found.kind}: {found.message}"
        if _is_final_example():  # worth a traced replay only for the example Hypothesis reports
            failure = replay(target, self.schedule, max_steps=max_steps)
            if failure is not None:
                text = format_failure(failure)
            text += ("\n\nHypothesis keeps this example in its database and replays it first next time. "
                     f"Outside Hypothesis:\n    {_replay_call(target, self.schedule.dumps())}")
        error = FAILURE_TYPES[found.kind](text)
        # Hypothesis tells bugs apart by the exception's origin and its __context__: the user's
        # exception (and where it was raised) is part of what makes this failure this failure.
        error.__cause__ = error.__context__ = found.exception
        return error


def _replay_call(target: Target, schedule: str) -> str:
    """A line of Python that replays ``schedule``: by the target's importable name, or -- for a
    function made inside the test (a lambda, a closure) -- on that same function."""
    if "<" not in target.spec:
        return f"detsched.replay({target.spec!r}, '{schedule}')"
    return (f"detsched.replay(target, '{schedule}')  # target: the function given to run(), "
            "made with the same inputs")


def _is_final_example() -> bool:
    try:
        return current_build_context().is_final
    except InvalidArgument:  # run() called outside @given
        return True


def schedules() -> st.SearchStrategy[DrawnSchedule]:
    """A Hypothesis strategy for interleavings: each value runs one target once, deviating from the
    default policy where Hypothesis chose (see the module docstring)."""
    decisions = st.integers(0, MAX_DECISION_SCALE).flatmap(lambda scale: st.integers(0, 4**scale))
    deviations = st.lists(st.tuples(decisions, st.integers(1, MAX_ALTERNATIVE)), max_size=MAX_DEVIATIONS)
    return deviations.map(DrawnSchedule)
