"""Linearizability checking: is this "thread-safe" class really thread-safe?

Describe the operations of the class and give a plain sequential model; detsched draws scenarios
(a few operations per thread, Hypothesis choosing and shrinking them), runs each under its
controlled scheduler in many interleavings, records every call's invocation, response and result,
and checks that some sequential order of the same calls on the model returns the same results
(Wing and Gong's search with Lowe's memoization, ``detsched._lincheck.checker``)::

    from hypothesis import strategies as st
    from detsched import lincheck

    class SeqCounter:                      # the model: sequential, obviously right
        def __init__(self): self.n = 0
        def incr(self): self.n += 1; return self.n
        def get(self): return self.n

    @lincheck.check(model=SeqCounter, threads=2, ops_per_thread=2)
    class TestCounter:
        def make(self): return MyCounter()        # the implementation under test
        @lincheck.op
        def incr(self, c): return c.incr()
        @lincheck.op(read_only=True)
        def get(self, c): return c.get()

Operations may be ``async def`` (all of them): the scenario's threads are then tasks of detsched's
controlled event loop. Under pytest the class is a test (``test_linearizable``); ``lincheck.run(TestCounter)`` does the same
from Python, and ``detsched lincheck tests/test_counter.py::TestCounter`` from the command line. A
failure names the smallest failing scenario, the history with its per-thread timeline, the
interleaving that produced it and a line that replays it. Deadlocks, data races and exceptions in
the threads are reported too, each with its scenario.
"""

from __future__ import annotations

import dataclasses
import inspect
import os
import shlex
from dataclasses import dataclass
from typing import Callable

from detsched._explore.explorer import Scan, replay, report_of_run, scan
from detsched._lincheck.history import render_history
from detsched._lincheck.scenario import (Invocation, NotLinearizable, OpSpec, Scenario, op, run_scenario,
                                         run_scenario_async)
from detsched._report.timeline import REPORT_ROWS, plural, render_timeline
from detsched.errors import DetschedUsageError

__all__ = ["LincheckFailure", "Result", "Scenario", "check", "op", "replay_scenario", "run"]

#: Search states the checker may explore per history before it calls the history undecided.
MAX_STATES = 100_000


@dataclass(frozen=True)
class Settings:
    """How a class is checked (``@lincheck.check``'s arguments)."""

    model: Callable[[], object]
    threads: int = 2
    ops_per_thread: int = 3
    init_ops: int = 1  # at most this many operations before the threads start
    final_ops: int = 1  # at most this many after they are joined
    scenarios: int = 30  # scenarios Hypothesis draws
    runs: int = 100  # interleavings explored per scenario (per strategy, for "auto")
    #: "auto": every interleaving by dpor when it fits in ``runs``, else ``runs`` more by pct; or
    #: any strategy's name, for ``runs`` runs of it.
    strategy: str = "auto"
    #: Also check the implementation's memory accesses for data races; None: for threads, not for
    #: ``async def`` operations (the event loop runs one task step at a time, and the history
    #: check is what says whether their order matters).
    races: bool | None = None
    partition: Callable | None = None  # P-compositionality: Call -> key; calls of one key checked apart
    max_states: int = MAX_STATES


class LincheckFailure(AssertionError):
    """A scenario failed: the text is the whole report."""


@dataclass(frozen=True)
class Result:
    """What ``run`` found."""

    failure: str | None  # the report of the smallest failing scenario, or None
    scenarios: int  # scenarios run
    runs: int  # interleavings run in all
    scenario: Scenario | None = None  # the failing scenario
    schedule: str = ""  # the failing interleaving of it
    verified: int = 0  # scenarios whose every interleaving ran (one per class of equivalent ones)

    def __str__(self) -> str:
        if self.failure is None:
            every = (f" ({self.verified} of them in every interleaving, by dpor)" if self.verified else "")
            return (f"linearizable: {plural(self.scenarios, 'scenario')}{every}, {plural(self.runs, 'run')}, "
                    "no failure")
        return self.failure


def check(model: Callable[[], object], threads: int = 2, ops_per_thread: int = 3, **options):
    """Class decorator: check the class's ``@op`` operations on ``make()``'s object against
    ``model()``; see ``Settings`` for the options. The class gains ``test_linearizable``."""
    settings = Settings(model, threads, ops_per_thread, **options)
    _check_settings(settings)

    def decorate(cls):
        cls.__lincheck__ = settings

        def test_linearizable(self) -> None:
            __tracebackhide__ = True  # pytest shows the report, not this frame
            result = run(type(self))
            if result.failure is not None:
                raise LincheckFailure(result.failure)

        cls.test_linearizable = test_linearizable
        return cls

    return decorate


def run(cls, **overrides) -> Result:
    """Check ``cls`` (decorated with ``@lincheck.check``), its settings changed by ``overrides``."""
    from hypothesis import HealthCheck, Phase, given, settings as hypothesis_settings, strategies as st

    settings = dataclasses.replace(_settings_of(cls), **overrides)
    _check_settings(settings)
    instance, operations = cls(), _operations(cls)
    _check_model(settings.model, operations)
    if settings.races is None:
        settings = dataclasses.replace(settings, races=not _asynchronous(instance, operations))
    invocation = st.sampled_from(sorted(operations.values(), key=lambda spec: spec.name)).flatmap(
        lambda spec: st.tuples(*spec.args).map(lambda args, name=spec.name: Invocation(name, args)))
    scenarios = st.builds(
        Scenario,
        st.lists(invocation, max_size=settings.init_ops).map(tuple),
        st.lists(st.lists(invocation, min_size=1, max_size=settings.ops_per_thread).map(tuple),
                 min_size=2, max_size=settings.threads).map(tuple),
        st.lists(invocation, max_size=settings.final_ops).map(tuple))
    counts = {"scenarios": 0, "runs": 0, "verified": 0}

    # Derandomized: the same scenarios in the same order on every run, as detsched's own runs are.
    # Each scenario is only scanned for a failure; the smallest failing one is explained below.
    @hypothesis_settings(max_examples=settings.scenarios, derandomize=True, database=None, deadline=None,
                         phases=[Phase.explicit, Phase.generate, Phase.shrink],
                         suppress_health_check=list(HealthCheck), print_blob=False)
    @given(scenarios)
    def search(scenario: Scenario) -> None:
        counts["scenarios"] += 1
        strategy, found = _scan(_target(instance, operations, scenario, settings), settings, counts)
        if found.failing is not None:
            raise _Found(scenario, strategy, found)

    try:
        search()
    except _Found as found:
        report = report_of_run(_target(instance, operations, found.scenario, settings), found.scan.positions,
                               run_index=found.scan.failing, strategy=found.strategy, races=settings.races)
        if report is None:  # the scenario failed in the search: it must fail again here
            raise DetschedUsageError(f"scenario {found.scenario.describe()} failed once and then passed when "
                                     "replayed: the class under test is not deterministic") from None
        return Result(_report(cls, found.scenario, report.failure), counts["scenarios"], counts["runs"],
                      found.scenario, report.failure.schedule.dumps())
    return Result(None, counts["scenarios"], counts["runs"], verified=counts["verified"])


def _scan(target, settings: Settings, counts: dict) -> tuple[str, Scan]:
    """(strategy, what it found) of one scenario's exploration: for "auto", every interleaving by
    dpor if they fit in ``runs``, else ``runs`` more by pct."""
    strategy = "dpor" if settings.strategy == "auto" else settings.strategy
    found = scan(target, runs=settings.runs, strategy=strategy, races=settings.races)
    counts["runs"] += found.runs
    counts["verified"] += found.exhausted
    if found.failing is None and not found.exhausted and settings.strategy == "auto":
        strategy = "pct"
        found = scan(target, runs=settings.runs, strategy=strategy, races=settings.races)
        counts["runs"] += found.runs
    return strategy, found


def replay_scenario(cls, scenario: Scenario | str, schedule: str) -> Result:
    """Replay one interleaving of one scenario (the line a failure prints)."""
    settings, instance, operations = _settings_of(cls), cls(), _operations(cls)
    if isinstance(scenario, str):
        scenario = Scenario.loads(scenario)
    failure = replay(_target(instance, operations, scenario, settings), schedule)
    if failure is None:
        return Result(None, 1, 1)
    return Result(_report(cls, scenario, failure), 1, 1, scenario, schedule)


class _Found(Exception):
    """A scenario failed in a run of ``strategy`` (``scan.failing``)."""

    def __init__(self, scenario: Scenario, strategy: str, scan: Scan):
        super().__init__(f"run {scan.failing} of {strategy} failed")
        self.scenario, self.strategy, self.scan = scenario, strategy, scan


def _target(instance, operations: dict, scenario: Scenario, settings: Settings) -> Callable[[], object]:
    methods = {name: getattr(instance, name) for name in operations}
    options = dict(model=settings.model, partition=settings.partition, max_states=settings.max_states)
    if _asynchronous(instance, operations):
        async def lincheck_scenario():  # tasks on the controlled event loop
            await run_scenario_async(instance.make, methods, scenario, **options)
    else:
        def lincheck_scenario():
            run_scenario(instance.make, methods, scenario, **options)

    lincheck_scenario.__qualname__ = f"{type(instance).__qualname__}.lincheck_scenario"
    lincheck_scenario.__module__ = type(instance).__module__
    return lincheck_scenario


def _asynchronous(instance, operations: dict) -> bool:
    """Whether the operations are ``async def`` (all of them must be, or none)."""
    kinds = {inspect.iscoroutinefunction(getattr(instance, name)) for name in operations}
    if len(kinds) > 1:
        raise DetschedUsageError(f"{type(instance).__qualname__} mixes async def and plain operations; make "
                                 "them all one or the other")
    return kinds == {True}


def _report(cls, scenario: Scenario, failure) -> str:
    exception = failure.exception
    where = _where(cls)
    replay_line = (f"detsched lincheck {shlex.quote(where)} --scenario {shlex.quote(scenario.dumps())} "
                   f"--schedule '{failure.schedule.dumps()}'")
    lines = []
    trace = failure.trace
    if isinstance(exception, NotLinearizable):
        headline = "undecided" if exception.undecided else "not linearizable"
        lines += [f"{headline}: {exception}", "", "scenario (the smallest failing one):", scenario.describe(),
                  "", "history (each call from its invocation to its response):", render_history(exception.history)]
        trace = trace[:exception.steps]  # the model's steps while checking are no part of the story
    else:
        lines += [f"{failure.kind} in scenario:", scenario.describe(), "", f"{failure.kind}: {failure.message}"]
        if failure.details:
            lines += ["", failure.details.rstrip()]
    if trace:
        lines += ["", failure.reachable_on, "",
                  f"interleaving ({plural(failure.schedule.preemptions, 'preemption')}, "
                  f"{plural(len(trace), 'step')}):", render_timeline(trace, REPORT_ROWS, compact=True)]
    lines += ["", f"replay: {replay_line}"]
    return "\n".join(lines)


def _where(cls) -> str:
    """How the command line names ``cls``: ``path/to/file.py::Class`` (``module:Class`` if it has no file)."""
    try:
        path = inspect.getsourcefile(cls)
    except TypeError:
        path = None
    return f"{os.path.relpath(path)}::{cls.__qualname__}" if path else f"{cls.__module__}:{cls.__qualname__}"


def _settings_of(cls) -> Settings:
    settings = getattr(cls, "__lincheck__", None)
    if not isinstance(settings, Settings):
        raise DetschedUsageError(f"{getattr(cls, '__qualname__', cls)!r} is not decorated with @lincheck.check(model=...)")
    return settings


def _operations(cls) -> dict[str, OpSpec]:
    found = {}
    for klass in reversed(cls.__mro__):
        for name, member in vars(klass).items():
            spec = getattr(member, "__lincheck_op__", None)
            if isinstance(spec, OpSpec):
                found[name] = spec
    if not found:
        raise DetschedUsageError(f"{cls.__qualname__} has no operations: mark its methods with @lincheck.op")
    if not callable(getattr(cls, "make", None)):
        raise DetschedUsageError(f"{cls.__qualname__} needs a make(self) method returning the object under test")
    return found


def _check_model(model: Callable[[], object], operations: dict[str, OpSpec]) -> None:
    """Every operation must be a method of the model that takes its arguments: a mismatch would
    otherwise show as a history no sequential order explains."""
    sample = model()
    for name, spec in operations.items():
        method = getattr(sample, name, None)
        if not callable(method):
            raise DetschedUsageError(f"the model {type(sample).__qualname__} has no method {name}() for the "
                                     f"operation {name}")
        try:
            inspect.signature(method).bind(*([None] * len(spec.args)))
        except TypeError:
            raise DetschedUsageError(
                f"the model's {type(sample).__qualname__}.{name}{inspect.signature(method)} does not take the "
                f"{plural(len(spec.args), 'argument')} the operation {name} is given (one per strategy in "
                "@lincheck.op(args=...))") from None
        except ValueError:  # no signature to look at (a builtin): trust it
            pass


def _check_settings(settings: Settings) -> None:
    if not callable(settings.model):
        raise DetschedUsageError(f"lincheck model must be a class or a callable returning a fresh model, "
                                 f"got {settings.model!r}")
    for name in ("threads", "ops_per_thread", "scenarios", "runs"):
        value = getattr(settings, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < (2 if name == "threads" else 1):
            raise DetschedUsageError(f"lincheck {name} must be an integer of at least "
                                     f"{2 if name == 'threads' else 1}, got {value!r}")
    for name in ("init_ops", "final_ops"):
        value = getattr(settings, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise DetschedUsageError(f"lincheck {name} must be a non-negative integer, got {value!r}")

