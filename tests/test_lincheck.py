"""``detsched.lincheck`` end to end: each example's bug found and shrunk to its smallest scenario,
each fixed twin linearizable (most scenarios in every interleaving), the printed replay line
reproducing the failure, undecided histories reported as such, exceptions as results, deadlocks
with their scenario, the pytest test a decorated class becomes, and clear usage errors."""

import asyncio
import os
import re
import shlex
import sys
import threading

import pytest
from hypothesis import strategies as st

from detsched import DetschedUsageError, lincheck
from detsched.cli import main

EXAMPLES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "examples", "lincheck")
sys.path.insert(0, EXAMPLES)

import bounded_queue  # noqa: E402
import counter  # noqa: E402
import lru_cache  # noqa: E402
import rate_limiter  # noqa: E402

#: Each example's buggy class, and the smallest failing scenario its search shrinks to.
SMALLEST = [
    (counter.TestCounter, ["  thread 1:  incr()", "  thread 2:  incr()"]),
    (rate_limiter.TestOverGranting, ["  thread 1:  acquire()", "  thread 2:  acquire(), acquire()"]),
    (lru_cache.TestRacyLRU, ["  thread 1:  put('a', 1)", "  thread 2:  put('b', 1)", "  final:     size()"]),
    (bounded_queue.TestLossyQueue, ["  thread 1:  put(1)", "  thread 2:  put(1), get()", "  final:     get()"]),
]
TWINS = [counter.TestLockedCounter, rate_limiter.TestTokenBucket, lru_cache.TestLockedLRU, bounded_queue.TestRingQueue]


@pytest.mark.parametrize("cls, scenario", SMALLEST, ids=lambda value: getattr(value, "__name__", ""))
def test_each_bug_is_found_and_shrunk_to_its_smallest_scenario(cls, scenario):
    result = lincheck.run(cls, runs=50)
    assert result.failure is not None
    lines = result.failure.splitlines()
    assert re.fullmatch(r"not linearizable: no sequential order of these \d calls returns these results", lines[0])
    start = lines.index("scenario (the smallest failing one):") + 1
    assert lines[start:lines.index("", start)] == scenario
    assert "history (each call from its invocation to its response):" in lines
    assert any(line.startswith("interleaving (") for line in lines)
    assert lines[-1].startswith("replay: detsched lincheck ")


@pytest.mark.parametrize("cls", TWINS, ids=lambda cls: cls.__name__)
def test_each_fixed_twin_is_linearizable(cls):
    result = lincheck.run(cls, scenarios=10)
    assert result.failure is None, result.failure
    assert result.scenarios == 10 and result.verified >= 3  # some in every interleaving, by dpor
    assert str(result).startswith(f"linearizable: 10 scenarios ({result.verified} of them in every interleaving")


def test_the_same_search_every_time():
    first, second = lincheck.run(counter.TestCounter), lincheck.run(counter.TestCounter)
    assert (first.failure, first.runs, first.schedule) == (second.failure, second.runs, second.schedule)


def test_the_replay_line_reproduces_the_failure(capsys, monkeypatch):
    monkeypatch.chdir(os.path.dirname(EXAMPLES))
    result = lincheck.run(rate_limiter.TestOverGranting)
    command = shlex.split(result.failure.splitlines()[-1].removeprefix("replay: "))
    assert command[:3] == ["detsched", "lincheck", os.path.join("lincheck", "rate_limiter.py") + "::TestOverGranting"]
    assert main(command[1:]) == 1
    replayed = capsys.readouterr().out
    assert replayed.splitlines()[0] == result.failure.splitlines()[0]
    assert "thread 2:  acquire(), acquire()" in replayed


def test_a_history_too_big_for_the_budget_is_undecided_not_passed():
    result = lincheck.run(counter.TestLockedCounter, max_states=1, scenarios=5)
    assert result.failure is not None
    assert result.failure.startswith("undecided: ")
    assert "raise max_states" in result.failure.splitlines()[0]


class SeqStack:
    def __init__(self):
        self.items = []

    def push(self, x):
        self.items.append(x)

    def pop(self):
        return self.items.pop()  # IndexError on an empty stack


class LockedStack(SeqStack):
    def __init__(self):
        super().__init__()
        self.lock = threading.Lock()

    def push(self, x):
        with self.lock:
            self.items.append(x)

    def pop(self):
        with self.lock:
            return self.items.pop()


class ForgivingStack(LockedStack):
    def pop(self):
        with self.lock:
            return self.items.pop() if self.items else None  # the model raises instead


@lincheck.check(model=SeqStack, threads=2, ops_per_thread=2, scenarios=15)
class LockedStackCheck:
    def make(self):
        return LockedStack()

    @lincheck.op(args=st.just(1))
    def push(self, stack, x):
        return stack.push(x)

    @lincheck.op
    def pop(self, stack):
        return stack.pop()


@lincheck.check(model=SeqStack, threads=2, ops_per_thread=2, scenarios=15)
class ForgivingStackCheck(LockedStackCheck):
    def make(self):
        return ForgivingStack()


def test_exceptions_are_results_compared_by_type():
    assert lincheck.run(LockedStackCheck).failure is None  # IndexError on both sides
    failure = lincheck.run(ForgivingStackCheck).failure
    assert failure is not None and "pop() -> None" in failure


class Transfers:
    def __init__(self):
        self.a, self.b = threading.Lock(), threading.Lock()

    def forward(self):
        with self.a:
            with self.b:
                return True

    def backward(self):
        with self.b:
            with self.a:
                return True


class SeqTransfers:
    def forward(self):
        return True

    def backward(self):
        return True


@lincheck.check(model=SeqTransfers, threads=2, ops_per_thread=1)
class TransfersCheck:
    def make(self):
        return Transfers()

    @lincheck.op
    def forward(self, t):
        return t.forward()

    @lincheck.op
    def backward(self, t):
        return t.backward()


def test_a_deadlock_is_reported_with_its_scenario():
    failure = lincheck.run(TransfersCheck).failure
    assert failure is not None and failure.startswith("deadlock in scenario:")
    assert "  thread 1:  backward()\n  thread 2:  forward()" in failure or \
           "  thread 1:  forward()\n  thread 2:  backward()" in failure


def test_usage_errors_name_the_problem():
    class NotDecorated:
        pass

    with pytest.raises(DetschedUsageError, match="not decorated with @lincheck.check"):
        lincheck.run(NotDecorated)

    @lincheck.check(model=SeqStack)
    class NoOperations:
        def make(self):
            return SeqStack()

    with pytest.raises(DetschedUsageError, match="no operations: mark its methods with @lincheck.op"):
        lincheck.run(NoOperations)
    @lincheck.check(model=SeqStack)
    class WrongArguments(LockedStackCheck):
        @lincheck.op
        def push(self, stack):
            return stack.push(1)

    with pytest.raises(DetschedUsageError, match=r"the model's SeqStack.push\(x\) does not take the 0 arguments"):
        lincheck.run(WrongArguments)
    with pytest.raises(DetschedUsageError, match="threads must be an integer of at least 2"):
        lincheck.check(model=SeqStack, threads=1)
    assert main(["lincheck", "examples/lincheck/counter.py::TestCounter", "--scenario", "{}"]) == 2
    assert main(["lincheck", "examples/lincheck/counter.py::SeqCounter.incr"]) == 2


@pytest.fixture
def pytester(pytester, monkeypatch):
    monkeypatch.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")  # see tests/test_plugin.py
    return pytester


def test_a_decorated_class_is_a_pytest_test(pytester):
    pytester.makepyfile(test_counters=open(os.path.join(EXAMPLES, "counter.py")).read())
    result = pytester.runpytest("-p", "pytest_detsched.plugin", "-q")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*TestCounter.test_linearizable*", "*not linearizable: no sequential order*",
                                 "*replay: detsched lincheck *"])
    assert "def test_linearizable" not in result.stdout.str()  # the report, not lincheck's own frame


class AsyncCounter:
    def __init__(self):
        self.n = 0

    async def incr(self):
        seen = self.n
        await asyncio.sleep(0)  # another task may run between the read and the write
        self.n = seen + 1
        return self.n

    async def get(self):
        return self.n


class LockedAsyncCounter(AsyncCounter):
    def __init__(self):
        super().__init__()
        self.lock = asyncio.Lock()

    async def incr(self):
        async with self.lock:
            return await super().incr()


@lincheck.check(model=counter.SeqCounter, threads=2, ops_per_thread=2, scenarios=10)
class AsyncCounterCheck:
    def make(self):
        return AsyncCounter()

    @lincheck.op
    async def incr(self, c):
        return await c.incr()

    @lincheck.op(read_only=True)
    async def get(self, c):
        return await c.get()


@lincheck.check(model=counter.SeqCounter, threads=2, ops_per_thread=2, scenarios=10)
class LockedAsyncCounterCheck(AsyncCounterCheck):
    def make(self):
        return LockedAsyncCounter()


def test_async_operations_run_as_tasks_of_the_controlled_loop():
    failure = lincheck.run(AsyncCounterCheck).failure
    assert failure is not None and failure.startswith("not linearizable")
    assert "  thread 1:  incr()\n  thread 2:  incr()" in failure
    assert lincheck.run(LockedAsyncCounterCheck).failure is None

    @lincheck.check(model=counter.SeqCounter)
    class Mixed(AsyncCounterCheck):
        @lincheck.op(read_only=True)
        def get(self, c):
            return c.n

    with pytest.raises(DetschedUsageError, match="mixes async def and plain operations"):
        lincheck.run(Mixed)
