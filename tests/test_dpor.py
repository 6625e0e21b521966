"""Strategy ``dpor``: one schedule per class of equivalent interleavings, and never fewer.

Most tests drive the strategy with hand-made programs (threads as lists of steps, each step the
locations it reads and writes), where the classes of interleavings can be counted by brute force;
the rest run real threads under the scheduler.
"""

import itertools
import math
import random
import threading

import pytest
from hypothesis import example, given, settings, strategies as st

import detsched
from detsched._core.footprints import Footprints
from detsched.strategies import DepthFirst, PartialOrder
from detsched.strategies.dpor import races

# ---------------------------------------------------------------------- hand-made programs

#: One owner object per location name, so that footprints key on it as they key on real objects.
OWNERS = {name: type(name, (), {})() for name in "abcxy"}


def explore_program(strategy, threads, limit=10_000):
    """Run every schedule ``strategy`` asks for on a program of ``threads`` (each a list of steps,
    each step a tuple of (location, writes?) pairs); return the orders of steps the runs took."""
    orders = []
    for run in range(limit):
        strategy.new_execution(run)
        orders.append(run_program(strategy, threads))
        if strategy.exhausted:
            return orders
    raise AssertionError(f"{strategy.name} did not finish within {limit} runs")


def run_program(strategy, threads) -> tuple:
    """One run of the program of ``threads`` under ``strategy``: the order its steps took."""
    footprints = Footprints()
    if getattr(strategy, "needs_footprints", False):
        strategy.watch(footprints)
    done = [0] * len(threads)
    order, current, decisions = [], None, 0
    while True:
        runnable = [tid for tid in range(1, len(threads) + 1) if done[tid - 1] < len(threads[tid - 1])]
        if not runnable:
            return tuple(order)
        if len(runnable) == 1:
            tid, decision = runnable[0], -1
        else:
            tid = strategy.next_task(runnable, current if current in runnable else None, yielding=False)
            decision, decisions = decisions, decisions + 1
        footprints.begin(tid, decision)
        for location, writes in threads[tid - 1][done[tid - 1]]:
            footprints.access(OWNERS[location], 0, location, writes)
        order.append((tid, done[tid - 1]))
        done[tid - 1] += 1
        current = tid


def trace_class(threads, order):
    """What every interleaving equivalent to ``order`` shares: for each pair of dependent steps of
    different threads, which came first (Mazurkiewicz traces)."""
    steps = [(tid, index, dict(threads[tid - 1][index])) for tid, index in order]
    before = set()
    for (t1, n1, a), (t2, n2, b) in itertools.combinations(steps, 2):
        if t1 != t2 and any(key in b and (a[key] or b[key]) for key in a):
            before.add(((t1, n1), (t2, n2)))
    return frozenset(before)


def every_class(threads):
    steps = [(tid, index) for tid, thread in enumerate(threads, 1) for index in range(len(thread))]
    classes = set()
    for order in itertools.permutations(steps):
        if all(order.index((tid, i)) < order.index((tid, i + 1)) for tid, i in order if i + 1 < len(threads[tid - 1])):
            classes.add(trace_class(threads, order))
    return classes


def own(name, k):
    return [((name, True),)] * k


@pytest.mark.parametrize("k", [1, 2, 3, 4])
def test_two_threads_with_k_independent_steps_take_one_schedule_and_dfs_takes_2k_choose_k(k):
    program = [own("a", k), own("b", k)]
    assert len(explore_program(PartialOrder(), program)) == 1
    assert len(explore_program(DepthFirst(), program)) == math.comb(2 * k, k)


@pytest.mark.parametrize("k", [1, 2, 3])
def test_two_threads_writing_one_location_take_every_order(k):
    program = [own("a", k), own("a", k)]
    assert len(explore_program(PartialOrder(), program)) == math.comb(2 * k, k) == len(every_class(program))


def test_readers_of_one_location_do_not_depend_on_each_other():
    program = [[(("a", False),)] * 2, [(("a", False),)] * 2, [(("a", False),)]]
    assert len(explore_program(PartialOrder(), program)) == 1


def test_store_buffering_takes_one_schedule_per_outcome_class():
    program = [[(("x", True),), (("y", False),)], [(("y", True),), (("x", False),)]]
    orders = explore_program(PartialOrder(), program)
    assert {trace_class(program, order) for order in orders} == every_class(program)
    assert len(orders) == len(every_class(program)) == 3


step = st.lists(st.tuples(st.sampled_from("abc"), st.booleans()), min_size=1, max_size=2).map(tuple)
programs = st.lists(st.lists(step, min_size=1, max_size=3), min_size=2, max_size=3).filter(
    lambda threads: sum(map(len, threads)) <= 7)


@settings(max_examples=150, deadline=None)
@given(programs)
def test_every_class_of_interleavings_is_run_and_no_more_schedules_than_dfs(threads):
    orders = explore_program(PartialOrder(), threads)
    assert {trace_class(threads, order) for order in orders} == every_class(threads)
    assert len(orders) <= len(explore_program(DepthFirst(), threads))


@settings(max_examples=60, deadline=None)
@given(programs, st.integers(0, 2))
def test_a_preemption_bound_runs_every_class_dfs_runs_within_it(threads, bound):
    bounded = {trace_class(threads, order) for order in explore_program(DepthFirst(preemption_bound=bound), threads)}
    reduced = {trace_class(threads, order) for order in explore_program(PartialOrder(preemption_bound=bound), threads)}
    assert bounded <= reduced


class ShardOfDepthFirst(DepthFirst):
    """``DepthFirst`` that remembers which of its runs were its own."""

    def __init__(self, **options):
        super().__init__(**options)
        self.owned = []

    def new_execution(self, run_index: int) -> None:
        super().new_execution(run_index)
        self.owned.append(self.owns_run)


@settings(max_examples=60, deadline=None)
@given(programs, st.integers(2, 4), st.sampled_from([{}, {"preemption_bound": 1}, {"delay_bound": 1}]))
def test_shards_of_a_dfs_search_run_every_schedule_once_between_them(threads, count, bound):
    whole = explore_program(DepthFirst(**bound), threads)
    owned, others = [], set()
    for shard in range(count):
        part = ShardOfDepthFirst(shard=(shard, count), **bound)
        orders = explore_program(part, threads)
        owned += [order for order, own in zip(orders, part.owned) if own]
        others |= {order for order, own in zip(orders, part.owned) if not own}
    assert sorted(owned) == sorted(whole)  # every schedule in exactly one shard
    assert others <= set(whole)  # the rest are other shards' schedules, run to find their groups


def explore_split(threads, *, seed, runs_per_part, bound=None):
    """``explore_program`` for ``PartialOrder`` with its search shared out as ``--jobs`` shares it:
    parts of at most ``runs_per_part`` runs, searched ahead of their turn as the search forecasts
    them (some of them, picked by ``seed``), taken in by the search in its own order; the orders of
    the runs taken in."""
    rng = random.Random(seed)
    search, ahead, orders = PartialOrder(preemption_bound=bound), {}, []
    while not search.finished:
        head = search.next_subtree()
        if head.key in ahead:
            part, its_orders = ahead.pop(head.key)
            search.merge(part)
            orders += its_orders
            continue
        coming = search.forecast(lambda key: ahead[key][0] if key in ahead else None,
                                 lambda key: key not in ahead and rng.random() < 0.7)
        for subtree in itertools.islice(coming, rng.randint(1, 3)):
            ahead[subtree.key] = search_part(subtree, threads, runs_per_part, bound)
    return orders


def search_part(subtree, threads, runs, bound):
    part, orders = PartialOrder.below(subtree, preemption_bound=bound), []
    for run in range(runs):
        part.new_execution(run)
        orders.append(run_program(part, threads))
        if part.exhausted:
            break
    return part.part(), orders


@settings(max_examples=150, deadline=None)
@given(programs, st.integers(0, 2 ** 16), st.integers(1, 4), st.sampled_from([None, 0, 1, 2]))
# A part searched ahead below a decision made when fewer options above it had run: its sleep set is
# smaller, and the part must not be taken for the one the search reaches later.
@example([[(("a", False), ("b", True)), (("a", False),)], [(("a", True),)], [(("b", False),), (("b", False),)]],
         0, 1, None)
def test_a_search_shared_out_in_parts_runs_the_schedules_of_one_search_in_its_order(threads, seed, runs, bound):
    assert explore_split(threads, seed=seed, runs_per_part=runs, bound=bound) == explore_program(
        PartialOrder(preemption_bound=bound), threads)


def test_dfs_estimates_the_schedules_left_and_ends_at_none_left():
    threads = [own("a", 3), own("b", 3)]  # C(6, 3) = 20 schedules
    search, estimates = DepthFirst(), []
    for run in range(20):
        search.new_execution(run)
        run_program(search, threads)
        estimates.append(search.estimated_left())
    assert search.exhausted and estimates[-1] == 0
    assert all(left > 0 for left in estimates[:-1])
    assert all(5 <= ran + left <= 80 for ran, left in enumerate(estimates[4:], 5))  # within 4x of the 20
    assert DepthFirst(shard=(0, 2)).estimated_left() is None


def test_a_shard_must_be_one_of_its_count():
    with pytest.raises(ValueError, match="0 <= index < count"):
        DepthFirst(shard=(2, 2))


def test_races_are_the_latest_unordered_dependent_step_of_another_thread():
    footprints = Footprints()
    for tid, location, writes in [(1, "a", True), (2, "b", True), (2, "a", False), (1, "a", True)]:
        footprints.begin(tid, -1)
        footprints.access(OWNERS[location], 0, location, writes)
    # step 3 (T2 reads a) races with step 1 (T1 wrote a); step 4 (T1 writes a) with step 3
    assert races(footprints.steps, lambda step: (1, 2))[0] == [(1, 3), (3, 4)]


# ---------------------------------------------------------------------- real threads

def run_all(*bodies):
    threads = [threading.Thread(target=body) for body in bodies]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


class Box:
    def __init__(self):
        self.value = 0
        self.log = []


OUTCOMES = set()


def appends():
    box = Box()
    run_all(lambda: box.log.append(1), lambda: box.log.append(2), lambda: box.log.append(3))
    OUTCOMES.add(tuple(box.log))


def store_buffering():
    box, seen = Box(), {}

    def first():
        box.value = 1
        seen["first"] = box.log

    def second():
        box.log = [1]
        seen["second"] = box.value

    run_all(first, second)
    OUTCOMES.add((len(seen["first"]), seen["second"]))


def polls_an_event():
    event, box = threading.Event(), Box()

    def setter():
        box.value = 1
        event.set()

    def poller():
        box.log.append(event.is_set())
        box.log.append(event.is_set())

    run_all(setter, poller)
    OUTCOMES.add(tuple(box.log))


def try_locks():
    lock, box = threading.Lock(), Box()

    def worker(n):
        if lock.acquire(blocking=False):
            box.log.append(n)
            lock.release()

    run_all(lambda: worker(1), lambda: worker(2))
    OUTCOMES.add(tuple(box.log))


def nested_rlock():
    lock, box = threading.RLock(), Box()

    def worker(n):
        with lock:
            with lock:
                box.log.append(n)
        box.log.append(-n)

    run_all(lambda: worker(1), lambda: worker(2))
    OUTCOMES.add(tuple(box.log))


def check_then_set():
    table = {}

    def worker(n):
        if "key" not in table:
            table["key"] = n

    run_all(lambda: worker(1), lambda: worker(2))
    OUTCOMES.add(table["key"])


def barrier_halves():
    barrier, box = threading.Barrier(2), Box()

    def worker(n):
        box.log.append(n)
        barrier.wait()
        box.log.append(-n)

    run_all(lambda: worker(1), lambda: worker(2))
    OUTCOMES.add(tuple(box.log))


def outcomes_of(program, strategy, runs=5000):
    OUTCOMES.clear()
    report = detsched.explore(program, strategy=strategy, runs=runs)
    assert report.failure is None and report.exhausted
    return set(OUTCOMES), report.runs


@pytest.mark.parametrize("program", [appends, store_buffering, polls_an_event, try_locks, nested_rlock,
                                     check_then_set, barrier_halves])
def test_every_outcome_dfs_reaches_dpor_reaches_in_fewer_schedules(program):
    reached_by_dfs, dfs_runs = outcomes_of(program, "dfs")
    reached, runs = outcomes_of(program, "dpor")
    assert reached == reached_by_dfs
    assert runs < dfs_runs


def locked_appends():
    lock, box = threading.Lock(), Box()

    def worker(n):
        with lock:
            box.log.append(n)

    run_all(lambda: worker(1), lambda: worker(2), lambda: worker(3))
    OUTCOMES.add(tuple(box.log))


def semaphore_appends():
    semaphore, box = threading.Semaphore(1), Box()

    def worker(n):
        with semaphore:
            box.log.append(n)
            box.value += n

    run_all(lambda: worker(1), lambda: worker(2), lambda: worker(3))
    OUTCOMES.add(tuple(box.log))


def condition_hand_off():
    condition, box = threading.Condition(), Box()

    def producer(n):
        with condition:
            box.log.append(n)
            condition.notify()

    def consumer():
        got = []
        with condition:
            while len(got) < 2:
                while not box.log:
                    condition.wait()
                got.append(box.log.pop(0))
        box.value = tuple(got)

    run_all(consumer, lambda: producer(1), lambda: producer(2))
    OUTCOMES.add(box.value)


def lifo_gets():
    import queue

    stack, box = queue.LifoQueue(), Box()
    stack.put(0)

    def consumer():
        box.log.append(stack.get())
        box.log.append(stack.get())

    run_all(lambda: stack.put(1), consumer, lambda: stack.put(2))
    OUTCOMES.add(tuple(box.log))


def pool_appends():
    from concurrent.futures import ThreadPoolExecutor

    box = Box()
    with ThreadPoolExecutor(2) as pool:
        for n in range(3):
            pool.submit(box.log.append, n)
    OUTCOMES.add(tuple(box.log))


@pytest.mark.parametrize("program, expected", [
    (locked_appends, set(itertools.permutations((1, 2, 3)))),
    (semaphore_appends, set(itertools.permutations((1, 2, 3)))),
    (condition_hand_off, {(1, 2), (2, 1)}),
    (lifo_gets, {(0, 1), (0, 2), (1, 0), (1, 2), (2, 0), (2, 1)}),
    # a worker takes the third task only once it has run its first: 2 is never first
    (pool_appends, {(0, 1, 2), (1, 0, 2), (0, 2, 1), (1, 2, 0)}),
])
def test_blocking_primitives_reach_every_outcome(program, expected):
    assert outcomes_of(program, "dpor")[0] == expected


def lost_update():
    box = Box()

    def worker():
        seen = box.value
        box.value = seen + 1

    run_all(worker, worker, worker)
    assert box.value == 3, f"value is {box.value}"


def order_bug():
    """Three threads; it fails only when the reader runs between the two writers."""
    box = Box()

    def first():
        box.log.append("a")

    def reader():
        if len(box.log) == 1:
            box.value = box.log[0]

    def second():
        box.log.append("b")

    run_all(first, second, reader)
    assert box.value != "b", "the reader saw only the second write"


def dining_philosophers():
    forks = [threading.Lock() for _ in range(3)]

    def philosopher(n):
        with forks[n]:
            with forks[(n + 1) % 3]:
                pass

    run_all(*(lambda n=n: philosopher(n) for n in range(3)))


@pytest.mark.parametrize("program, kind", [(lost_update, "exception"), (order_bug, "exception"),
                                           (dining_philosophers, "deadlock")])
def test_dpor_finds_the_bug_in_fewer_schedules_than_dfs(program, kind):
    found = {strategy: detsched.explore(program, strategy=strategy, runs=800) for strategy in ("dfs", "dpor")}
    assert found["dpor"].failure.kind == kind
    # dfs goes deep first: three philosophers take it more than the whole budget
    assert found["dfs"].failure is None or found["dfs"].failure.kind == kind
    assert found["dpor"].runs < found["dfs"].runs


def test_a_schedule_dpor_found_replays_like_any_other():
    failure = detsched.explore(lost_update, strategy="dpor", runs=1000).failure
    again = detsched.replay(lost_update, failure.schedule.dumps())
    assert again is not None and again.message.splitlines()[0] == failure.message.splitlines()[0] == "AssertionError: value is 2"
    assert failure.schedule.strategy == "dpor"


def test_races_are_still_reported_when_checked():
    report = detsched.explore(lost_update, strategy="dpor", runs=1000, races=True)
    assert report.failure.kind == "data-race" and "Box.value" in report.failure.message


def test_the_cli_prints_the_verified_line(capsys):
    from detsched.cli import main

    assert main(["run", "test_dpor:locked_appends", "--strategy", "dpor"]) == 0
    out = capsys.readouterr().out
    assert "verified: " in out and "cover every interleaving up to the order of independent steps (dpor, no bound)" in out


def test_a_bound_makes_it_verified_up_to_the_bound():
    report = detsched.explore(locked_appends, strategy="dpor", runs=1000, preemption_bound=0)
    assert report.exhausted and report.bound == 0
    assert str(report).startswith("verified up to 0 preemptions: ")


# ---------------------------------------------------------------------- reachable holes

def backing_off(rounds=2):
    first, second = threading.Lock(), threading.Lock()

    def worker(mine, other):
        for _ in range(rounds):
            with mine:
                if other.acquire(blocking=False):
                    other.release()
                    return
        raise AssertionError(f"gave up after {rounds} rounds of backing off")

    run_all(lambda: worker(first, second), lambda: worker(second, first))


def missed_pulse_in_a_pool():
    from concurrent.futures import ThreadPoolExecutor

    pulse = threading.Event()
    pool = ThreadPoolExecutor(1)  # never shut down: a fire-and-forget task
    pool.submit(pulse.wait)
    pulser = threading.Thread(target=lambda: (pulse.set(), pulse.clear()))
    pulser.start()
    pulser.join()


@pytest.mark.parametrize("strategy", ["dfs", "dpor"])
def test_a_try_lock_back_off_in_lockstep_is_reachable(strategy):
    failure = detsched.explore(backing_off, strategy=strategy, runs=3000).failure
    assert failure is not None and "gave up after 2 rounds" in failure.message


@pytest.mark.parametrize("strategy", ["dfs", "dpor"])
def test_a_pool_worker_pinned_by_a_missed_pulse_is_reported(strategy):
    failure = detsched.explore(missed_pulse_in_a_pool, strategy=strategy, runs=3000).failure
    assert failure is not None and failure.kind == "leak" and "ThreadPoolExecutor" in failure.thread
    assert failure.causes == ("lost-wakeup",) and ", caused by a lost wakeup: " in failure.message
