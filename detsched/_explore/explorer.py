"""Exploration and replay, in phases: *warm-up* (one run under the default policy), *runs* (under
the strategy, until the first failure), *shrink* (the failing schedule, to the fewest deviations),
*explain* (a traced replay of the shrunk schedule, whose frozen record the report is built from).

Every run goes through ``run_once``: a ``Scheduler`` for it, a ``World`` around it, the controller
to start and watch it, and its frozen ``ExecutionResult`` back."""

from __future__ import annotations

import _thread
import dataclasses
import itertools
import random
import warnings
from typing import Callable

from detsched import settings
from detsched._core import controller
from detsched._core.clock import real_monotonic
from detsched._core.execution import ExecutionResult
from detsched._core.ops import FailureInfo, current
from detsched._core.scheduler import Scheduler
from detsched._detect import tasks as detect_tasks, threads as detect
from detsched._explore.shrink import Outcome, shrink
from detsched._explore.targets import Target, resolve
from detsched._instrument.world import World
from detsched._primitives import futures, threads
from detsched._report.coverage import CoverageCounter
from detsched._report.failure import Failure, Report
from detsched._report.timeline import plural
from detsched.errors import DetschedUsageError, ReplayDivergedWarning, ScheduleError
from detsched.schedule import Points, Schedule, fingerprint
from detsched.settings import Limits
from detsched.strategies import PositionReplay, Replay, make_strategy

_one_run_at_a_time = _thread.allocate_lock()
#: Failures whose replay is not worth shrinking: a livelock (or a test longer than the bound)
#: always runs to the step bound, and a thread blocked outside control costs the watchdog's whole
#: timeout per run.
_NOT_SHRUNK = ("livelock", "step-limit", "blocked")
#: The state of the global ``random`` generator at the start of every run.
RANDOM_SEED = 0


def run_once(target: Target, strategy, run_index: int, limits: Limits, *, tracing: bool = False,
             points: Points = Points(), verify: dict[int, int] | None = None) -> ExecutionResult:
    """One execution of ``target`` with the stdlib patched; everything is restored afterwards."""
    if not _one_run_at_a_time.acquire(blocking=False):
        raise DetschedUsageError(
            "detsched.explore() or replay() called while another run is in progress (from inside a "
            "target, or from another thread); runs patch the standard library and cannot overlap"
        )
    try:
        return _run_once(target, strategy, run_index, limits, tracing, points, verify)
    finally:
        _one_run_at_a_time.release()


def _run_once(target, strategy, run_index, limits, tracing, points, verify) -> ExecutionResult:
    if target.prepare is not None:
        target.prepare()
    strategy.new_execution(run_index)
    sched = Scheduler(strategy, limits, tracing=tracing, verify=verify, report_leaks=target.report_left_behind,
                      let_go=target.let_go)
    # As Hypothesis does for each example: the global random generator starts every run from the
    # same state, so code that draws from it (random sleeps in stress tests) replays exactly.
    random_state = random.getstate()
    random.seed(RANDOM_SEED)
    try:
        with World(sched, points, roots=target.roots()):
            main_thread = threads.make_main_thread()
            result = controller.run(sched, main_thread,
                                    lambda: threads.run_registered(main_thread, lambda: _call(target)))
    finally:
        random.setstate(random_state)
    if result.usage_error is not None:
        raise result.usage_error
    return result


def _call(target: Target) -> None:
    """T0's body: the target, then the checks of what it left behind."""
    me = current()
    world = me.sched.world
    outcome = target.function()
    if hasattr(outcome, "__await__"):  # an async target: run its coroutine in the controlled loop
        from detsched._aio import policy

        policy.run(outcome)
    if world.aio_policy.unawaited and target.report_left_behind:  # dropped where no event loop's check saw them
        me.sched.fail(detect_tasks.unawaited_leak(world.aio_policy.unawaited, me))
    lost = futures.unread_failure(world.failed_futures) if target.report_left_behind else None
    if lost is not None:
        me.sched.fail(detect.unread_future(*lost))


def explore(target, *, strategy: str = settings.STRATEGY, runs: int = settings.RUNS, seed: int = settings.SEED,
            depth: int = settings.DEPTH, max_steps: int = settings.MAX_STEPS, first_run: int = 0,
            preempt_calls: bool = True, preempt_writes: bool | None = None, races: bool = False,
            preemption: str | None = None, preemption_bound: int | str | None = None, delay_bound: int | None = None,
            blocked_after: float | None = None, progress: Callable[..., None] | None = None,
            time_budget: float | None = None, shard: tuple[int, int] | None = None, coverage: bool = False) -> Report:
    """Run ``target`` up to ``runs`` times under ``strategy``; stop at the first failure.

    The same (target, strategy, seed) explores the same runs, bit for bit, on any machine. Run ``i``
    depends only on the seed and ``i``, so ``first_run`` lets shards explore disjoint slices
    (runs ``first_run .. first_run + runs - 1``) of one exploration. With ``preempt_calls`` (the
    default), entering a user-defined function is a scheduling point, as it is a switch point for
    CPython's GIL. With ``preempt_writes`` (the default), storing to an attribute, an item or a
    global in user code is one too, as free-threaded CPython can switch anywhere: read-modify-write
    races are explored even with no call in their window. Without both, threads switch only at
    synchronisation operations. ``preemption`` names the model instead: ``"free-threaded"`` (store
    points on, the default) or ``"gil"`` (switches only where GIL CPython makes them: function entry,
    loop back-edges, blocking and synchronising operations). With ``races``, every read and write of user code is checked by
    the race detector, and two accesses of one location that nothing orders, one a write, fail the
    run as ``data-race`` (``docs/races.md``). ``strategy="dfs"`` searches the schedules depth first
    (with at most ``preemption_bound`` preemptions each, if given) and stops when none is left:
    ``Report.exhausted`` is then True, and a passing report says every schedule was run;
    ``strategy="dpor"`` runs one schedule per class of equivalent interleavings.
    ``preemption_bound="iterative"`` searches with bounds 0, 1, 2... in turn (iterative context
    bounding) until the runs are spent: the report says the largest bound covered. ``delay_bound``
    (``dfs`` only) keeps the schedules within that many delays (delay bounding). A thread
    that runs ``blocked_after`` seconds (default
    ``settings.BLOCKED_AFTER``) without reaching a scheduling point fails the run as ``blocked``.
    With ``time_budget`` (wall seconds), no run starts once it is spent: the report then says so
    (``Report.stopped``), and how many runs that was depends on the machine. ``progress(done,
    left=...)`` is called after every run, with the runs done so far and, for a search that can
    guess, a function returning about how many schedules are left (``left=None`` otherwise). ``shard=(i, n)``
    (``dfs`` only) searches part ``i`` of ``n`` disjoint parts of the tree: ``n`` shards together run
    every schedule (``DepthFirst``). With ``coverage``, every run is traced and ``Report.coverage``
    says which orders of conflicting operations the runs saw (``detsched._report.coverage``).
    """
    if time_budget is not None:
        settings.check_time_budget(time_budget)
    resolved, seed, limits, points = _prepare(
        target, runs, seed=seed, depth=depth, max_steps=max_steps, preempt_calls=preempt_calls,
        preempt_writes=preempt_writes, races=races, preemption=preemption, blocked_after=blocked_after)
    iterative = preemption_bound == settings.ITERATIVE
    started = real_monotonic()
    tally = _Tally(coverage)

    def found(result: ExecutionResult, index: int) -> Report:
        report = _found(resolved, result, index, index + 1 - first_run, strategy, seed, limits, points, started)
        return dataclasses.replace(report, **tally.outcome())

    def passed(ran: int, **outcome) -> Report:
        return Report(None, ran, strategy, seed, real_monotonic() - started, delays=delay_bound, **outcome,
                      **tally.outcome())

    ran = 0  # runs so far, over every bound an iterative search tried
    covered = None  # iterative: the largest bound whose every schedule ran
    for bound in itertools.count() if iterative else (preemption_bound,):
        chooser = make_strategy(strategy, seed=seed, depth=depth, preemption_bound=bound, delay_bound=delay_bound,
                                shard=shard)
        counted = None if progress is None else (lambda done, left, before=ran: progress(before + done, left=left))
        for index, result in _runs(resolved, chooser, first_run + ran, runs - ran, limits, points, counted, tally):
            if result.failure is not None:
                return found(result, index)
            so_far = index + 1 - first_run
            if getattr(chooser, "exhausted", False):  # a systematic search that ran every schedule
                # ... of the program as it behaved: one whose decisions changed under a replayed prefix
                # is not deterministic, and its search proves nothing.
                if getattr(chooser, "diverged", False):
                    return passed(so_far, bound=covered)
                if not (iterative and chooser.pruned):  # nothing was left out for the bound
                    return passed(so_far, exhausted=True, bound=None if iterative else bound)
                covered, ran = bound, so_far
                break
            if time_budget is not None and real_monotonic() - started >= time_budget and so_far < runs:
                return passed(so_far, exhausted=covered is not None, bound=covered if iterative else bound,
                              stopped=f"the {time_budget:g} s time budget was spent")
        else:  # the runs ran out
            searching = f"the runs ran out searching {plural(bound, 'preemption')}" if iterative else ""
            return passed(runs, exhausted=covered is not None, bound=covered if iterative else bound, stopped=searching)
        if ran >= runs:
            return passed(runs, exhausted=True, bound=covered)
    raise AssertionError("unreachable: an iterative search returns from its loop")


@dataclasses.dataclass(frozen=True)
class Scan:
    """What runs of an exploration showed, without shrinking or explaining a failure."""

    failing: int | None  # the index of the first failing run, or None
    runs: int  # runs made
    exhausted: bool  # a systematic search ran every schedule (and none failed)
    positions: tuple  # the failing run's deviations, by position (for ``report_of_run``)
    escapes: Escapes  # of the runs made (the warm-up's too), by run index


def scan(target, *, runs: int, first_run: int = 0, strategy: str = settings.STRATEGY,
         time_budget: float | None = None, **options) -> Scan:
    """Runs ``first_run .. first_run + runs - 1`` of ``explore`` (with the same ``options``) up to
    the first that fails, starting none once ``time_budget`` wall seconds are spent: one slice of a
    parallel exploration, or a quick look before a report (``report_of_run`` then replays, shrinks
    and explains the failing run)."""
    resolved, seed, limits, points = _prepare(target, runs, **options)
    chooser = make_strategy(strategy, seed=seed, depth=options.get("depth", settings.DEPTH))
    tally = _Tally()
    made, started = 0, real_monotonic()
    for index, result in _runs(resolved, chooser, first_run, runs, limits, points, None, tally):
        made += 1
        if result.failure is not None:
            return Scan(index, made, False, tuple(result.positions), tally.escapes)
        if getattr(chooser, "exhausted", False):
            return Scan(None, made, not getattr(chooser, "diverged", False), (), tally.escapes)
        if time_budget is not None and real_monotonic() - started >= time_budget:
            break
    return Scan(None, made, False, (), tally.escapes)


@dataclasses.dataclass(frozen=True)
class SearchPart:
    """What one shard of a split ``dfs`` search (``shard=(i, n)``) found."""

    runs: int  # schedules it ran, the first of every other shard's groups included
    sizes: dict[int, int]  # schedules of each of its own groups it searched to the end, by ordinal
    failing: tuple[int, int, tuple] | None  # (group, schedules of it before, positions) of its first failure
    exhausted: bool  # its groups were searched to the end
    diverged: bool  # a run left its replayed prefix: the program is not deterministic
    escapes: Escapes  # of the runs it made, by (group, schedules of it before)


def search_part(target, *, shard: tuple[int, int], runs: int, keep_going: Callable[[int], bool],
                preemption_bound: int | None = None, delay_bound: int | None = None, **options) -> SearchPart:
    """One shard of a ``dfs`` search: its groups of schedules in depth-first order, up to its first
    failure, for at most ``runs`` schedules and while ``keep_going(group)`` holds before each."""
    resolved, seed, limits, points = _prepare(target, runs, **options)
    chooser = make_strategy("dfs", seed=seed, depth=options.get("depth", settings.DEPTH),
                            preemption_bound=preemption_bound, delay_bound=delay_bound, shard=shard)
    sizes: dict[int, int] = {}
    ran, failing, escapes = 0, None, Escapes()
    for _, result in _runs(resolved, chooser, 0, runs, limits, points, None):
        ran += 1
        escapes.add(result, (chooser.group, chooser.leaf))
        if chooser.owns_run:
            sizes[chooser.group] = chooser.leaf + 1
        if result.failure is not None:
            failing = (chooser.group, chooser.leaf, tuple(result.positions))
            break
        if chooser.exhausted or not keep_going(chooser.group):
            break
    exhausted = failing is None and chooser.exhausted
    if not exhausted and chooser.owns_run:
        sizes.pop(chooser.group, None)  # left before its end
    return SearchPart(ran, sizes, failing, exhausted, chooser.diverged, escapes)


class Runner:
    """Runs of one target in one process, under any chooser, after one warm-up: the worker's side
    of a search shared between processes, which runs a part of it at a time, and the replay of one
    run found elsewhere."""

    def __init__(self, target, **options):
        self.target, self.seed, self.limits, self.points = _prepare(target, 1, **options)
        self.warm_up = warm_up(self.target, self.limits, self.points)

    def run(self, chooser, run_index: int) -> ExecutionResult:
        return run_once(self.target, chooser, run_index, self.limits, points=self.points)


def report_of_run(target, positions: tuple, *, run_index: int, strategy: str, **options) -> Report | None:
    """The report ``explore`` makes of a failing run, from the run's ``positions`` (its deviations
    from the default policy): replayed, shrunk and explained. None if the replay passes."""
    started = real_monotonic()
    runner = Runner(target, **options)
    result = runner.run(PositionReplay(positions), run_index)
    if result.failure is None:
        return None
    return _found(runner.target, result, run_index, run_index + 1, strategy, runner.seed, runner.limits, runner.points,
                  started)


def _found(target: Target, result: ExecutionResult, index: int, runs: int, strategy: str, seed: int, limits: Limits,
           points: Points, started: float) -> Report:
    """The report of ``result``, run ``index`` of an exploration that ran ``runs`` runs to find it."""
    origin = Schedule(fingerprint(target.name), strategy, seed, index, 0, (), points)
    failure = _explain(target, schedule_of(origin, result), tuple(result.positions), result.failure, limits)
    return Report(failure, runs, strategy, seed, real_monotonic() - started)


def _prepare(target, runs, *, seed: int = settings.SEED, depth: int = settings.DEPTH,
             max_steps: int = settings.MAX_STEPS, preempt_calls: bool = True, preempt_writes: bool | None = None,
             races: bool = False, preemption: str | None = None, blocked_after: float | None = None):
    """The resolved target, seed, limits and points of an exploration, every argument checked."""
    settings.check_exploration(runs=runs, depth=depth, max_steps=max_steps)
    resolved = resolve(target)
    seed = settings.seed_from_environment(seed)
    limits = Limits.of(max_steps, blocked_after)
    points = Points(preempt_calls, settings.check_preemption(preemption, preempt_writes), races)
    return resolved, seed, limits, points


class Escapes:
    """What runs touched outside control, listed as one process exploring them in order lists it:
    each escape once, with the text of the first run (by the exploration's order of runs) that
    touched it. Runs may be added in any order, from several processes (``merge``)."""

    def __init__(self):
        # Invariant: key -> (order of the first run added that touched it, its place among that
        # run's escapes, its text); no run added before that one touched it.
        self.first: dict[tuple, tuple[tuple, int, str]] = {}

    def add(self, result: ExecutionResult, order: tuple = ()) -> None:
        """The escapes of ``result``, a run at ``order`` (a tuple; the warm-up's is ``()``, first)."""
        for place, escape in enumerate(result.escapes):
            self._keep(escape.key, (order, place, escape.text))

    def merge(self, other: Escapes, runs_before: int = 0) -> None:
        """Take in the runs of ``other``. With ``runs_before``, its runs are ordered by index alone
        (``(i,)``) and come after that many runs of this exploration: run ``i`` there is run
        ``runs_before + i`` here."""
        for key, (order, place, text) in other.first.items():
            self._keep(key, ((order[0] + runs_before,) if runs_before else order, place, text))

    def _keep(self, key: tuple, found: tuple) -> None:
        known = self.first.get(key)
        if known is None or found[:2] < known[:2]:
            self.first[key] = found

    def texts(self, through: tuple | None = None) -> tuple[str, ...]:
        """``Report.uncontrolled``: the texts in the order their first runs came, of runs up to
        ``through`` (an order, itself included; None: every run)."""
        kept = sorted(found for found in self.first.values() if through is None or found[0] <= through)
        return tuple(text for _, _, text in kept)


class _Tally:
    """What an exploration adds up over its runs besides their failures: their coverage (traced
    runs, if asked for) and what they touched outside control."""

    def __init__(self, coverage: bool = False):
        self.coverage = CoverageCounter() if coverage else None
        self.escapes = Escapes()

    def add(self, result: ExecutionResult, index: int) -> None:
        if self.coverage is not None:
            self.coverage.add(result.trace)
        self.escapes.add(result, (index,))

    def outcome(self) -> dict:
        """The ``Report`` fields of what was added up."""
        return {"coverage": None if self.coverage is None else self.coverage.freeze(),
                "uncontrolled": self.escapes.texts()}


def _runs(target: Target, chooser, first_run: int, runs: int, limits: Limits, points: Points, progress,
          tally: _Tally | None = None):
    """(index, result) of the warm-up run if it fails (a real run, reported like any other), else
    of every run of the exploration in order; ``tally`` adds up each (the warm-up's escapes too)."""
    tally = tally or _Tally()
    first = warm_up(target, limits, points)
    tally.escapes.add(first)  # not traced, so not counted for coverage
    if first.failure is not None:
        yield first_run, first
        return
    chooser.calibrate(len(first.decisions))
    for index in range(first_run, first_run + runs):
        result = run_once(target, chooser, index, limits, points=points, tracing=tally.coverage is not None)
        tally.add(result, index)
        if progress is not None:
            progress(index + 1 - first_run, left=getattr(chooser, "estimated_left", None))
        yield index, result


def warm_up(target: Target, limits: Limits, points: Points) -> ExecutionResult:
    """One run under the default policy before exploring or replaying. Code that initialises
    something once per process (a lazily made lock, a cache, an import inside a function) does so
    here, so every explored run and every replay -- even in a fresh process -- starts from the same
    state and takes the same path. Its length is also PCT's estimate of k."""
    return run_once(target, PositionReplay(()), 0, limits, points=points)


def schedule_so_far(origin: Schedule) -> Schedule | None:
    """The decisions the run in progress made so far, on ``origin``'s target, strategy, seed and run
    index (None outside a run). Its ``path`` and checks are left out: it is not a whole run."""
    me = current()
    if me is None:
        return None
    return dataclasses.replace(origin, decisions=len(me.sched.execution.decisions),
                               deviations=me.sched.result().deviations)


def started_threads() -> bool:
    """Whether the run in progress has started a thread besides its main one."""
    me = current()
    return me is not None and len(me.sched.threads) > 1


def schedule_of(origin: Schedule, result: ExecutionResult) -> Schedule:
    """The schedule of ``result``, with ``origin``'s target, strategy, seed and run index."""
    return dataclasses.replace(origin, decisions=len(result.decisions), deviations=tuple(result.deviations),
                               checks=tuple(result.checks), path=result.path)


def _same_failure(a: FailureInfo, b: FailureInfo) -> bool:
    return a.kind == b.kind and a.causes == b.causes and type(a.exception) is type(b.exception)


def _explain(target: Target, schedule: Schedule, positions, found: FailureInfo, limits: Limits) -> Failure:
    """Shrink the failing schedule, then replay it with tracing to build the report."""
    if found.kind not in _NOT_SHRUNK:
        def attempt(candidate):
            result = run_once(target, PositionReplay(candidate), 0, limits, points=schedule.points)
            failed = result.failure is not None and _same_failure(result.failure, found)
            return Outcome(failed, tuple(result.positions), len(result.decisions), tuple(result.choices))

        positions = shrink(positions, schedule.decisions, attempt)
        shrunk = run_once(target, PositionReplay(positions), 0, limits, points=schedule.points)
        schedule = schedule_of(schedule, shrunk)
    # Replaying would block again for the whole watchdog timeout, or run to max_steps again for a
    # timeline too long to read.
    if found.kind in ("blocked", "step-limit"):
        return _failure(found, schedule, target, None, ())
    traced = _replay_run(target, schedule, limits)
    if traced.failure is None or not _same_failure(traced.failure, found):
        note = ("this failure did not happen again when its schedule was replayed: the test depends on "
                "something besides thread scheduling (wall time, randomness, I/O, state left by earlier runs)")
        return _failure(found, schedule, target, traced, (note,))
    return _failure(traced.failure, schedule, target, traced, ())


def _failure(info: FailureInfo, schedule: Schedule, target: Target, run: ExecutionResult | None, notes) -> Failure:
    """The public failure: ``info`` with the trace and races of ``run`` (the traced replay), if any."""
    trace, races = (tuple(run.trace), run.races) if run is not None else ((), ())
    return Failure(info.kind, info.message, schedule, schedule.run_index, info.thread, info.details,
                   target.spec, trace, info.exception, notes, races, info.causes)


def load_schedule(schedule) -> Schedule:
    """A ``Schedule`` as given, or read from its string (``Schedule.loads`` names what is wrong)."""
    if isinstance(schedule, Schedule):
        return schedule
    return Schedule.loads(schedule)


def replay(target, schedule, *, max_steps: int = settings.MAX_STEPS,
           blocked_after: float | None = None) -> Failure | None:
    """Replay ``schedule`` against ``target``: the failure the run ends in, or None if it passes.

    The run follows the schedule's deviations, and the default policy everywhere else, to its end,
    even when the program no longer takes the recorded path (after a fix, typically). Then it
    warns ``ReplayDivergedWarning``, saying after which decision the run left the schedule: None
    means the schedule no longer fails, not that the bug is gone. A failure after leaving the
    schedule is still a real failure (every run is a legal interleaving); it carries a note saying
    so, and its ``schedule`` is the path the run took, which replays exactly. ``ReplayDiverged`` is
    never raised here. Raises ``ScheduleError`` when the schedule is corrupt or was recorded for
    another target.
    """
    return replay_traced(target, schedule, max_steps=max_steps, blocked_after=blocked_after)[0]


def replay_traced(target, schedule, *, max_steps: int = settings.MAX_STEPS,
                  blocked_after: float | None = None) -> tuple[Failure | None, list]:
    """``replay``, also returning the recorded trace (for ``detsched show``, pass or fail)."""
    settings.check_count("max_steps", max_steps)
    limits = Limits.of(max_steps, blocked_after)
    resolved = resolve(target)
    recorded = load_schedule(schedule)
    expected = fingerprint(resolved.name)
    if recorded.target != expected:
        raise ScheduleError(
            f"this schedule was recorded for another target (fingerprint {recorded.target:08x}); "
            f"{resolved.spec} has fingerprint {expected:08x}. Replay it against the target that produced it."
        )
    warm_up(resolved, limits, recorded.points)
    result = run_once(resolved, Replay(recorded, strict=False), 0, limits, tracing=True, points=recorded.points)
    taken = schedule_of(recorded, result)
    # A livelock ends wherever max_steps does, and a blocked run wherever the watchdog fires.
    where = None if result.failure is not None and result.failure.kind in _NOT_SHRUNK else recorded.departure(taken)
    if where is not None:
        warnings.warn(ReplayDivergedWarning(where, passed=result.failure is None), stacklevel=3)
    if result.failure is None:
        return None, result.trace
    if where is None:
        return _failure(result.failure, recorded, resolved, result, ()), result.trace
    note = (f"the run no longer followed the schedule {where} (likely because the code changed); this is how "
            "it fails now, and the replay line below replays this run")
    return _failure(result.failure, taken, resolved, result, (note,)), result.trace


def _replay_run(target: Target, schedule: Schedule, limits: Limits) -> ExecutionResult:
    return run_once(target, Replay(schedule), 0, limits, tracing=True, points=schedule.points,
                    verify=schedule.verify)
