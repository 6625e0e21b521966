"""The record of a run: the Execution's one stream of decisions, and the decision trace of a
two-thread program, step by step."""

import threading

from detsched._core.execution import Decision, Execution
from detsched._explore.explorer import run_once
from detsched._explore.targets import resolve
from detsched.schedule import Points
from detsched.settings import Limits
from detsched.strategies import PositionReplay

SYNC_ONLY = Points(calls=False, writes=False)


def test_deviations_positions_and_checks_come_from_the_same_decisions():
    execution = Execution()
    execution.decided((0, 1), (0, 1), 0, 0)
    execution.stepped(0, "acquire")
    execution.decided((0, 2), (0, 1), 0, 1)  # a deviation
    execution.stepped(1, "release")
    execution.decided((1, 3), (0, 1, 2), 0, 2)  # a data choice
    execution.chose_data(2, "asyncio")
    result = execution.freeze(None, None)
    assert len(result.decisions) == 3 and result.steps == 2
    assert result.deviations == ((1, 1), (2, 2))
    assert result.positions == (((0, 2), 1), ((1, 3), 2))
    assert result.checks == (result.decisions[1].check, result.decisions[2].check)
    assert result.choices == (((0, 1), (0, 1), 0), ((0, 2), (0, 1), 0), ((1, 3), (0, 1, 2), 0))
    assert isinstance(result.decisions[0], Decision)


def test_each_deviation_checks_the_path_before_it():
    recorded = Execution()
    recorded.stepped(0, "start")
    recorded.decided((0, 1), (0, 1), 0, 1)
    check = recorded.freeze(None, None).checks[0]
    same, other = Execution(verify={0: check}), Execution(verify={0: check})
    same.stepped(0, "start")
    other.stepped(0, "acquire")
    assert same.path_matches() and not other.path_matches()


def test_the_path_folds_only_the_kind_of_each_operation():
    a, b = Execution(), Execution()
    a.stepped(1, "call Bank.balance()")
    b.stepped(1, "call balance()")
    assert a.path == b.path
    b.stepped(1, "acquire")
    assert a.path != b.path


def lock_twice():
    lock = threading.Lock()

    def worker():
        with lock:
            pass

    thread = threading.Thread(target=worker, name="worker")
    thread.start()
    with lock:
        pass
    thread.join()


def traced(positions=()):
    return run_once(resolve(lock_twice), PositionReplay(positions), 0, Limits(), tracing=True, points=SYNC_ONLY)


def test_two_threads_under_the_default_policy_step_by_step():
    result = traced()
    assert [(row.step, row.tid, row.op.split("(")[0], row.note) for row in result.trace] == [
        (1, 0, "start thread 'worker'", ""),
        (2, 0, "acquire Lock", ""),
        (3, 0, "release Lock", ""),  # a done point: announced after its effect
        (4, 1, "begin", ""),  # T0 waits to join: only the worker can go on
        (5, 1, "acquire Lock", ""),
        (6, 1, "release Lock", ""),
        (7, 0, "join thread 'worker'", ""),
    ]
    assert result.failure is None and result.steps == 7
    # Two decisions had both threads runnable (T0 at its acquire, and after its release); the
    # default policy kept T0 at both, so the schedule stores nothing.
    assert [(d.position, d.options, d.default, d.value) for d in result.decisions] == [
        ((0, 2), (0, 1), 0, 0), ((0, 3), (0, 1), 0, 0)]
    assert result.deviations == ()


def test_one_deviation_lets_the_worker_take_the_lock_first():
    result = traced((((0, 2), 1),))
    assert result.deviations == ((0, 1),)
    assert result.positions == (((0, 2), 1),)
    assert [(row.tid, row.op.split("(")[0], row.note) for row in result.trace] == [
        (0, "start thread 'worker'", ""),
        (1, "begin", "preempts T0"),
        (1, "acquire Lock", ""),
        (1, "release Lock", ""),
        (0, "acquire Lock", ""),
        (0, "release Lock", ""),
        (0, "join thread 'worker'", ""),
    ]
