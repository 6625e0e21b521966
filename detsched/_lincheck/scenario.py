"""What a linearizability test is made of: its operations (methods marked ``@op``), the scenarios
drawn from them, and one scenario run under detsched's scheduler as a history of calls.

A *scenario* is an initial sequential part (run by the main thread), a parallel part (one list
of operations per thread, the threads started together) and an optional final part (the main
thread again, once the threads are joined). Hypothesis draws and shrinks scenarios, so a failing
one shrinks to fewer threads, fewer operations and simpler arguments. ``async def`` operations run
the same way with tasks of the controlled event loop in place of threads.

A run of a scenario makes the object under test, runs the parts, and records each call's
invocation and response on one logical clock. The recording is detsched's own code: no thread
switches inside it, so an invocation is recorded no later than the call starts and a response no
earlier than it returns -- a call's recorded window holds its real one, which can only make a
history *more* linearizable, never less: no false alarm.
"""

from __future__ import annotations

import asyncio
import json
import threading
from dataclasses import dataclass
from typing import Callable, NamedTuple

from detsched._core.ops import current
from detsched._lincheck.checker import check
from detsched._lincheck.history import Call, Raised


class OpSpec(NamedTuple):
    """An operation of a test class: a method taking the object under test and its arguments."""

    name: str
    args: tuple  # one Hypothesis strategy per argument
    read_only: bool


def op(function=None, *, args=(), read_only: bool = False):
    """Mark a method of a ``@lincheck.check`` class as an operation: ``@op``, or ``@op(args=...)``
    with one Hypothesis strategy (or a tuple of them, one per argument); ``read_only=True`` for
    operations that change nothing (they may be left out of a scenario's final part)."""
    strategies = tuple(args) if isinstance(args, (tuple, list)) else (args,)

    def mark(method):
        method.__lincheck_op__ = OpSpec(method.__name__, strategies, read_only)
        return method

    return mark(function) if function is not None else mark


class Invocation(NamedTuple):
    """One operation of a scenario, with its arguments."""

    name: str
    args: tuple

    def describe(self) -> str:
        return f"{self.name}({', '.join(map(repr, self.args))})"


@dataclass(frozen=True)
class Scenario:
    init: tuple[Invocation, ...]
    parallel: tuple[tuple[Invocation, ...], ...]  # one tuple per thread
    final: tuple[Invocation, ...] = ()

    def describe(self) -> str:
        """The scenario as a person reads it, one line per part and thread."""
        lines = [f"  init:      {', '.join(i.describe() for i in self.init)}"] if self.init else []
        lines += [f"  thread {n}:  {', '.join(i.describe() for i in ops)}" for n, ops in enumerate(self.parallel, 1)]
        if self.final:
            lines.append(f"  final:     {', '.join(i.describe() for i in self.final)}")
        return "\n".join(lines)

    def dumps(self) -> str:
        """The scenario as JSON, for the replay line (arguments must be JSON values)."""
        def part(ops):
            return [[i.name, list(i.args)] for i in ops]

        return json.dumps({"init": part(self.init), "parallel": [part(ops) for ops in self.parallel],
                           "final": part(self.final)}, separators=(",", ":"))

    @classmethod
    def loads(cls, text: str) -> Scenario:
        data = json.loads(text)

        def part(ops):
            return tuple(Invocation(name, tuple(args)) for name, args in ops)

        return cls(part(data.get("init", ())), tuple(part(ops) for ops in data["parallel"]), part(data.get("final", ())))


class NotLinearizable(AssertionError):
    """The history of a run has no sequential explanation (or the checker could not decide).
    ``steps`` is how many rows of the run's trace the scenario wrote, before the check's own."""

    def __init__(self, text: str, history: tuple[Call, ...], undecided: bool, steps: int):
        super().__init__(text)
        self.history, self.undecided, self.steps = history, undecided, steps


class _Recorder:
    """The calls of one run, on one logical clock. Only detsched's own code runs here, so no thread
    switches inside it: each tick and each append happen at once.

    Each tick also counts as a write of the clock for a partial-order reduction (``dpor``): the
    real-time order of calls is part of what is checked, so two interleavings that differ only in
    which call was invoked or returned first are not equivalent, and both are run."""

    def __init__(self):
        self.calls: list[Call] = []
        self.clock = 0

    def _tick(self) -> int:
        me = current()
        if me is not None and me.sched.footprints is not None:
            me.sched.footprints.touch(self)
        self.clock += 1
        return self.clock

    async def call_async(self, task: int, operation: Callable, obj, invocation: Invocation) -> None:
        """``call`` for an ``async def`` operation, awaited in a task of the controlled event loop."""
        invoked = self._tick()
        try:
            result = await operation(obj, *invocation.args)
        except Exception as exc:
            result = Raised(type(exc).__name__, str(exc))
        self.calls.append(Call(len(self.calls), task, invocation.name, invocation.args, result, invoked, self._tick()))

    def call(self, thread: int, operation: Callable, obj, invocation: Invocation) -> None:
        invoked = self._tick()
        try:
            result = operation(obj, *invocation.args)
        except Exception as exc:  # an exception is a result, compared by type with the model's
            result = Raised(type(exc).__name__, str(exc))
        self.calls.append(Call(len(self.calls), thread, invocation.name, invocation.args, result, invoked, self._tick()))


def run_scenario(make: Callable[[], object], operations: dict[str, Callable], scenario: Scenario, *,
                 model: Callable[[], object], partition=None, max_states: int) -> tuple[Call, ...]:
    """Run ``scenario`` once on a fresh ``make()`` and check its history against ``model``:
    ``NotLinearizable`` if it has no sequential explanation. Meant to be a detsched target's body
    (thread 0 runs the sequential parts, threads 1..N the parallel one)."""
    obj = make()
    recorder = _Recorder()
    for invocation in scenario.init:
        recorder.call(0, operations[invocation.name], obj, invocation)

    def worker(n: int, ops: tuple[Invocation, ...]) -> None:
        for invocation in ops:
            recorder.call(n, operations[invocation.name], obj, invocation)

    threads = [threading.Thread(target=worker, args=(n, ops), name=f"lincheck-{n}")
               for n, ops in enumerate(scenario.parallel, 1)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for invocation in scenario.final:
        recorder.call(0, operations[invocation.name], obj, invocation)
    return _checked(recorder, model, partition, max_states)


async def run_scenario_async(make: Callable[[], object], operations: dict[str, Callable], scenario: Scenario, *,
                             model: Callable[[], object], partition=None, max_states: int) -> tuple[Call, ...]:
    """``run_scenario`` for ``async def`` operations: the parallel part's "threads" are tasks of
    the controlled event loop (task n runs its operations one after the other), awaited together."""
    obj = make()
    recorder = _Recorder()
    for invocation in scenario.init:
        await recorder.call_async(0, operations[invocation.name], obj, invocation)

    async def worker(n: int, ops: tuple[Invocation, ...]) -> None:
        for invocation in ops:
            await recorder.call_async(n, operations[invocation.name], obj, invocation)

    await asyncio.gather(*(worker(n, ops) for n, ops in enumerate(scenario.parallel, 1)))
    for invocation in scenario.final:
        await recorder.call_async(0, operations[invocation.name], obj, invocation)
    return _checked(recorder, model, partition, max_states)


def _checked(recorder: _Recorder, model, partition, max_states: int) -> tuple[Call, ...]:
    history = tuple(recorder.calls)
    me = current()
    steps = len(me.sched.execution.trace) if me is not None else 0  # the model's steps come after
    verdict = check(history, model, partition=partition, max_states=max_states)
    if not verdict.linearizable:
        raise NotLinearizable(verdict.explanation, history, verdict.linearizable is None, steps)
    return history
