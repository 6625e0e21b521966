"""The coverage-guided strategy ``cover``: it queues a run at the reverse of every order of
conflicting operations a run showed, aims it at the right decision, replays like any strategy, and
reaches orders the default policy never shows."""

import threading

import pytest

import detsched
from detsched._core.execution import Decision
from detsched._core.ops import TraceStep
from detsched.cli import main
from detsched.strategies import CoverageGuided, make_strategy
from detsched.strategies.cover import SLACK, _aim


def late_and_early():
    """T1 works a while before its critical section; T2 enters at once. Under the default policy
    (keep running the current thread) T1's section always comes first."""
    lock, order = threading.Lock(), []

    def slow():
        for _ in range(6):
            helper()
        with lock:  # slow enters
            order.append("slow")

    def fast():
        with lock:  # fast enters
            order.append("fast")

    workers = [threading.Thread(target=slow), threading.Thread(target=fast)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return order


def helper():
    pass


def test_an_order_and_its_reverse_within_a_few_runs():
    report = detsched.explore(late_and_early, strategy="cover", runs=6, coverage=True)
    (pair,) = report.coverage.pairs
    assert pair.both and pair.forward and pair.backward, report.coverage.summary()


def test_the_same_seed_explores_the_same_runs():
    def lost_update():
        box = [0]

        def work():
            with threading.Lock():
                seen = box[0]
            helper()
            box[0] = seen + 1

        workers = [threading.Thread(target=work) for _ in range(2)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        assert box[0] == 2

    first = detsched.explore(lost_update, strategy="cover", runs=200, races=False)
    second = detsched.explore(lost_update, strategy="cover", runs=200, races=False)
    assert first.failure is not None
    assert (first.runs, first.failure.schedule.dumps()) == (second.runs, second.failure.schedule.dumps())
    assert detsched.replay(lost_update, first.failure.schedule).kind == "exception"


def step(n, tid, op="acquire Lock(a.py:1)", where="a.py:5", obj="Lock(a.py:1)"):
    return TraceStep(n, tid, f"T{tid}", op, where, obj=obj)


def test_an_attempt_replays_the_prefix_and_holds_the_first_thread_back_from_the_last_decision_both_could_run():
    decisions = (Decision((0, 3), (0, 1), 0, 0, 0, step=2),       # T2 not started yet
                 Decision((0, 4), (0, 1, 2), 0, 1, 0, step=3),    # a deviation: T1
                 Decision((1, 2), (1, 2), 1, 1, 0, step=5),       # the last one before T1's acquire at step 7
                 Decision((1, 3), (1, 2), 1, 1, 0, step=7),
                 Decision((2, 2), (2,), 2, 2, 0, step=9))
    first, then = step(7, 1, where="a.py:5"), step(10, 2, where="a.py:9")
    attempt = _aim(decisions, first, then)
    assert (attempt.decision, attempt.held, attempt.prefer, attempt.site) == (2, 1, 2, "a.py:9")
    assert attempt.prefix == {(0, 4): 1}  # the deviations before it, by position
    assert attempt.window == 3 + SLACK  # decisions 2, 3 and 4 came before T2's operation

    strategy = CoverageGuided(seed=0)
    strategy.queue.append(attempt)
    strategy.new_execution(1)
    assert strategy.next_task([0, 1], 0, yielding=False, at=(0, 3)) == 0  # no deviation there: default
    assert strategy.next_task([0, 1, 2], 0, yielding=False, at=(0, 4)) == 1  # the prefix's deviation
    assert strategy.next_task([1, 2], 1, yielding=False, at=(1, 2)) == 2  # T1 held back, T2 preferred
    assert strategy.next_task([0, 1], 1, yielding=False, at=(1, 3)) == 0  # T2 cannot run: anyone but T1


def test_no_decision_where_both_could_run_means_no_attempt():
    decisions = (Decision((0, 3), (0, 1), 0, 0, 0, step=2),)
    assert _aim(decisions, step(4, 1), step(6, 2)) is None


def test_cover_runs_are_not_split():
    with pytest.raises(detsched.DetschedUsageError):
        make_strategy("cover", seed=0, depth=3, preemption_bound=1)
    assert main(["run", "examples/bank.py::fixed", "--strategy", "cover", "--jobs", "2", "--runs", "10"]) == 2


@pytest.mark.parametrize("example", ["bank", "producer_consumer", "single_flight", "deadlock"])
def test_cover_finds_the_examples_bugs(example):
    from bundled_examples import target

    report = detsched.explore(target(example, "main"), strategy="cover", runs=500)
    assert report.failure is not None, f"{example}: no failure in {report.runs} runs"
