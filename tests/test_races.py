"""The race detector: unordered conflicting accesses are found as ``data-race``, with both sites;
accesses that synchronisation orders, thread-confined ones and single container method calls are
not. Programs are module-level functions here, so they are rewritten as user code."""

import asyncio
import contextvars
import dataclasses
import queue
import re
import threading
import time
import warnings

import pytest

import detsched
from detsched._detect.races import RaceDetector

CONFIG = {"version": 1}


def run_threads(*bodies):
    threads = [threading.Thread(target=body, name=f"worker-{n}") for n, body in enumerate(bodies, 1)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


class Stats:
    def __init__(self):
        self.processed = 0
        self.stop = False
        self._instance = None
        self.items = []


def unlocked_increments():
    stats = Stats()

    def worker():
        stats.processed += 1

    run_threads(worker, worker)  # no assertion anywhere


def polled_flag():
    stats = Stats()

    def poller():
        while not stats.stop:
            time.sleep(0.01)

    def stopper():
        stats.stop = True

    run_threads(poller, stopper)


def global_replaced():
    def reloader():
        global CONFIG
        CONFIG = {"version": 2}

    def reader():
        assert CONFIG["version"] in (1, 2)

    run_threads(reloader, reader)


def check_then_act():
    cache = {}

    def fill():
        if "key" not in cache:
            cache["key"] = object()

    run_threads(fill, fill)


def lazy_initialiser():
    stats = Stats()

    def get():
        if stats._instance is None:
            stats._instance = object()
        return stats._instance

    run_threads(get, get)


def thread_and_task():
    stats = Stats()

    def in_thread():
        stats.processed += 1

    async def main():
        task = asyncio.ensure_future(asyncio.to_thread(in_thread))
        await asyncio.sleep(0)  # the task hands the function to a worker thread
        stats.processed += 1
        await task

    asyncio.run(main())


class Validated:
    """Stores through a ``__setattr__`` of its own that keeps the value in ``__dict__`` (as attrs'
    and pydantic's do): its attributes are memory like any other."""

    def __init__(self):
        self.count = 0

    def __setattr__(self, name, value):
        if not isinstance(value, int):
            raise TypeError(name)
        object.__setattr__(self, name, value)


def unlocked_increments_of_a_validated_attribute():
    counts = Validated()

    def worker():
        counts.count += 1

    run_threads(worker, worker)


@pytest.mark.parametrize("program, location", [
    (unlocked_increments, "Stats.processed"),
    (unlocked_increments_of_a_validated_attribute, "Validated.count"),
    (polled_flag, "Stats.stop"),
    (global_replaced, "CONFIG"),
    (check_then_act, "dict"),
    (lazy_initialiser, "Stats._instance"),
    (thread_and_task, "Stats.processed"),
])
def test_a_race_is_found(program, location):
    failure = detsched.explore(program, runs=50, races=True).failure
    assert failure is not None and failure.kind == "data-race", failure
    assert location in failure.message
    assert "no happens-before order" in failure.details
    assert "test_races.py:" in failure.details  # both sites are named


def test_the_report_names_both_threads_and_sites():
    failure = detsched.explore(unlocked_increments, runs=5, races=True).failure
    assert failure.message.startswith("Stats.processed: ")
    assert "T1 'worker-1'" in failure.details and "T2 'worker-2'" in failure.details
    assert failure.details.count("in unlocked_increments.<locals>.worker()") == 2


def test_a_race_replays_from_its_schedule():
    failure = detsched.explore(unlocked_increments, runs=5, races=True).failure
    again = detsched.replay(unlocked_increments, failure.schedule)
    assert again is not None and again.kind == "data-race"


def test_races_are_not_checked_unless_asked_for():
    assert detsched.explore(unlocked_increments, runs=20).failure is None


def locked_increments():
    stats, lock = Stats(), threading.Lock()

    def worker():
        with lock:
            stats.processed += 1

    run_threads(worker, worker)
    assert stats.processed == 2


def handed_through_a_queue():
    channel = queue.Queue()

    def producer():
        stats = Stats()
        stats.processed = 42
        channel.put(stats)

    def consumer():
        stats = channel.get()
        stats.processed += 1

    run_threads(producer, consumer)


def published_before_start_read_after_join():
    stats = Stats()
    stats.processed = 1

    def worker():
        stats.processed += 1

    run_threads(worker)
    assert stats.processed == 2


def thread_confined():
    def worker():
        mine = Stats()
        for _ in range(3):
            mine.processed += 1
            mine.items.append(len(mine.items))

    run_threads(worker, worker)


LOCAL = threading.local()


def thread_local_state():
    def worker():
        LOCAL.value = threading.current_thread().name
        assert LOCAL.value == threading.current_thread().name

    run_threads(worker, worker)


def concurrent_appends():
    items = []

    def worker():
        for n in range(3):
            items.append(n)

    run_threads(worker, worker)
    assert len(items) == 6


def event_ordered_handoff():
    stats, ready = Stats(), threading.Event()

    def writer():
        stats.processed = 7
        ready.set()

    def reader():
        ready.wait()
        assert stats.processed == 7

    run_threads(writer, reader)


def condition_ordered_handoff():
    stats, changed = Stats(), threading.Condition()

    def writer():
        with changed:
            stats.items.append(1)
            changed.notify()

    def reader():
        with changed:
            changed.wait_for(lambda: stats.items)
        assert stats.items == [1]

    run_threads(writer, reader)


def pool_results():
    from concurrent.futures import ThreadPoolExecutor

    stats = Stats()

    def work(n):
        stats.items.append(n)
        return n

    with ThreadPoolExecutor(2) as pool:
        assert sorted(pool.map(work, range(4))) == [0, 1, 2, 3]
    assert sorted(stats.items) == [0, 1, 2, 3]


def to_thread_result():
    async def main():
        stats = Stats()

        def compute():
            stats.processed = 5
            return stats

        done = await asyncio.to_thread(compute)
        assert done.processed == 5

    asyncio.run(main())


class ContextLocal:
    """Values per context behind ``__getattr__``/``__setattr__``, as asgiref's ``Local`` keeps them:
    ``local.value`` is a call that reaches this context's own dict, not a shared attribute."""

    def __init__(self):
        object.__setattr__(self, "_values", contextvars.ContextVar("values"))

    def _mine(self) -> dict:
        try:
            return self._values.get()
        except LookupError:
            self._values.set({})
            return self._values.get()

    def __getattr__(self, name):
        try:
            return self._mine()[name]
        except KeyError:
            raise AttributeError(name) from None

    def __setattr__(self, name, value):
        self._mine()[name] = value


def context_local_state():
    local = ContextLocal()

    def worker():
        local.value = threading.current_thread().name
        assert local.value == threading.current_thread().name

    run_threads(worker, worker)


@pytest.mark.parametrize("program", [
    context_local_state, locked_increments, handed_through_a_queue, published_before_start_read_after_join, thread_confined,
    thread_local_state, concurrent_appends, event_ordered_handoff, condition_ordered_handoff, pool_results,
    to_thread_result,
])
def test_ordered_or_confined_accesses_are_not_races(program):
    report = detsched.explore(program, runs=100, races=True)
    assert report.failure is None, report.failure


def test_shadow_memory_keeps_no_object_alive():
    import gc
    import weakref

    detector = RaceDetector()
    detector.thread_started(None, 0, "T0 'MainThread'")
    stats = Stats()
    detector.access(0, stats, 0, "processed", 1, "here", lambda *_: "Stats.processed")
    alive = weakref.ref(stats)
    del stats
    gc.collect()
    assert alive() is None
    assert not detector._shadow  # its history went with it: a later object at its address starts afresh


class Counters:
    def __init__(self):
        self.hits = 0
        self.misses = 0


def bump_both(counters):
    def worker():
        counters.hits += 1
        counters.misses += 1

    run_threads(worker, worker)


def test_benign_object_is_not_reported():
    def program():
        counters = Counters()
        detsched.benign(counters)
        bump_both(counters)

    assert detsched.explore(program, runs=20, races=True).failure is None


def test_benign_attributes_cover_only_those_attributes():
    def program():
        counters = Counters()
        detsched.benign(counters, "hits")
        bump_both(counters)

    failure = detsched.explore(program, runs=20, races=True).failure
    assert failure is not None and failure.message.startswith("Counters.misses")


def test_a_benign_pattern_covers_every_instance(monkeypatch):
    from detsched._detect import races

    monkeypatch.setattr(races.BENIGN, "patterns", [])
    detsched.benign("test_races:Counters.*")
    assert detsched.explore(lambda: bump_both(Counters()), runs=20, races=True).failure is None


def test_accesses_inside_unchecked_are_not_checked():
    def program():
        counters = Counters()

        @detsched.unchecked()
        def worker():
            counters.hits += 1

        run_threads(worker, worker)

    assert detsched.explore(program, runs=20, races=True).failure is None


@pytest.mark.parametrize("call, phrase", [
    (lambda: detsched.benign("Counters.hits"), "a pattern names 'module:Class.attribute'"),
    (lambda: detsched.benign("m:C.a", "extra"), "takes no attribute names"),
    (lambda: detsched.benign(Counters(), 3), "attribute names are strings"),
])
def test_bad_benign_arguments_say_what_is_expected(call, phrase):
    with pytest.raises(detsched.DetschedUsageError, match=re.escape(phrase)):
        call()


def test_the_cli_checks_races_unless_told_not_to(capsys):
    from detsched.cli import main

    assert main(["run", "test_races:unlocked_increments", "--runs", "5"]) == 1
    assert "FAILED (data-race)" in capsys.readouterr().out
    assert main(["run", "test_races:unlocked_increments", "--runs", "5", "--no-races"]) == 0


# ----------------------------------------------------------------------------- which CPython

class Box:
    def __init__(self):
        self.n = 0


def note(value):
    return value


def lost_between_statements():
    box = Box()

    def worker():
        seen = box.n
        box.n = seen + 1  # no call between the read and this store: only free threading switches here

    run_threads(worker, worker)
    assert box.n == 2, f"n is {box.n}"


def lost_across_a_call():
    box = Box()

    def worker():
        seen = box.n
        note(seen)  # entering a function: the GIL can switch here
        box.n = seen + 1

    run_threads(worker, worker)
    assert box.n == 2, f"n is {box.n}"


def test_a_failure_that_needs_a_switch_at_a_store_says_it_needs_free_threading():
    failure = detsched.explore(lost_between_statements, runs=200, preempt_calls=False).failure
    assert failure is not None and failure.kind == "exception"
    assert failure.free_threading_switches and "store box.n" in failure.free_threading_switches[0]
    assert "needs free-threaded CPython: the switch at test_races.py:" in str(failure)


def test_a_failure_gil_cpython_can_reach_says_so():
    failure = detsched.explore(lost_across_a_call, runs=200, preempt_writes=False).failure
    assert failure is not None and failure.kind == "exception"
    assert failure.free_threading_switches == ()
    assert "reachable on GIL CPython too" in str(failure)


# ----------------------------------------------------------------------------- asyncio tasks

def tasks_race_across_an_await():
    async def main():
        stats = Stats()

        async def bump():
            seen = stats.processed
            await asyncio.sleep(0)
            stats.processed = seen + 1

        await asyncio.gather(bump(), bump())

    asyncio.run(main())


def test_a_race_between_two_tasks_across_an_await_is_found():
    failure = detsched.explore(tasks_race_across_an_await, runs=50, races=True).failure
    assert failure is not None and failure.kind == "data-race", failure
    assert failure.message.startswith("Stats.processed: ")
    assert "task 'Task-2' (in T0 'MainThread')" in failure.details or "task 'Task-3'" in failure.details


def tasks_with_a_lock():
    async def main():
        stats, lock = Stats(), asyncio.Lock()

        async def bump():
            async with lock:
                seen = stats.processed
                await asyncio.sleep(0)
                stats.processed = seen + 1

        await asyncio.gather(bump(), bump())
        assert stats.processed == 2

    asyncio.run(main())


def tasks_hand_over_through_a_queue_and_an_event():
    async def main():
        channel, ready, stats = asyncio.Queue(), asyncio.Event(), Stats()

        async def producer():
            item = Stats()
            item.processed = 1
            await channel.put(item)
            stats.processed = 2
            ready.set()

        async def consumer():
            item = await channel.get()
            item.processed += 1
            await ready.wait()
            assert stats.processed == 2

        await asyncio.gather(producer(), consumer())

    asyncio.run(main())


def tasks_results_through_await():
    async def main():
        stats = Stats()

        async def work():
            stats.processed = 5
            return stats

        task = asyncio.create_task(work())
        done = await task
        assert done.processed == 5 and stats.processed == 5
        with_semaphore = asyncio.Semaphore(1)
        async with with_semaphore:
            stats.processed += 1

    asyncio.run(main())


def tasks_before_their_first_await():
    async def main():
        stats = Stats()

        async def starter():
            stats.stop = True

        async def checker():
            assert stats.stop  # the loop runs first steps in the order the tasks were made

        await asyncio.gather(starter(), checker())

    asyncio.run(main())


@pytest.mark.parametrize("program", [tasks_with_a_lock, tasks_hand_over_through_a_queue_and_an_event,
                                     tasks_results_through_await, tasks_before_their_first_await])
def test_ordered_task_accesses_are_not_races(program):
    report = detsched.explore(program, runs=100, races=True)
    assert report.failure is None, report.failure


def two_races():
    stats = Stats()

    def worker():
        stats.processed += 1
        stats.items.append(len(stats.items))

    run_threads(worker, worker)


def test_every_distinct_race_of_the_failing_run_is_listed():
    report = detsched.explore(two_races, runs=20, races=True)
    assert report.failure.kind == "data-race"
    locations = [race.location for race in report.races]
    assert locations[0] == "Stats.processed" and "list (the whole container)" in locations
    assert "distinct data races in this run:" in str(report.failure)


def test_a_race_comes_before_the_failure_it_leads_to():
    lost = detsched.explore(lost_between_statements, runs=200, preempt_calls=False).failure
    assert lost.kind == "exception"
    # The same interleaving with races checked (which adds no scheduling point).
    checked = dataclasses.replace(lost.schedule, points=dataclasses.replace(lost.schedule.points, races=True))
    failure = detsched.replay(lost_between_statements, checked)
    assert failure.kind == "data-race" and failure.message.startswith("Box.n: ")
    assert "the run then failed: exception: AssertionError: n is 1" in failure.details


def test_the_gil_model_takes_no_switch_at_a_store():
    assert detsched.explore(lost_between_statements, runs=200, preempt_calls=False,
                            preemption="gil").failure is None
    failure = detsched.explore(lost_across_a_call, runs=200, preemption="gil").failure
    assert failure is not None and failure.free_threading_switches == ()


@pytest.mark.parametrize("options, phrase", [
    ({"preemption": "nogil"}, "preemption must be one of 'free-threaded', 'gil', got 'nogil'"),
    ({"preemption": "gil", "preempt_writes": True}, "disagree"),
])
def test_bad_preemption_options_say_what_is_expected(options, phrase):
    with pytest.raises(detsched.DetschedUsageError, match=re.escape(phrase)):
        detsched.explore(lost_between_statements, runs=1, **options)


def test_code_the_access_rewriting_cannot_handle_keeps_its_points_with_a_warning(make_module, monkeypatch):
    from detsched._instrument import accesses

    def broken(self, node):
        raise RecursionError("too deep")

    monkeypatch.setattr(accesses.AccessRecorder, "visit_Module", broken, raising=False)
    module = make_module("hard_to_rewrite", """
import threading


class Box:
    n = 0


def main():
    box = Box()

    def worker():
        seen = box.n
        box.n = seen + 1

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert box.n == 2, f"n is {box.n}"
""")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        failure = detsched.explore(module.main, runs=200, races=True).failure
    messages = [str(w.message) for w in caught if issubclass(w.category, detsched.errors.InstrumentWarning)]
    assert any(re.search(r"hard_to_rewrite\.py \(RecursionError: too deep\); its accesses are not checked", m)
               for m in messages), messages
    assert failure is not None and failure.kind == "exception"  # its store points are still there


def test_match_patterns_are_left_as_they_are(make_module):
    module = make_module("matching", """
import enum
import threading

WHERE = {"state": None}


class Light(enum.Enum):
    RED = 1
    GREEN = 2


def main():
    def switch(light):
        match light:
            case Light.RED:
                WHERE["state"] = "stop"
            case Light.GREEN if WHERE["state"] is None:
                WHERE["state"] = "go"

    threads = [threading.Thread(target=switch, args=(light,)) for light in Light]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
""")
    with warnings.catch_warnings():
        warnings.simplefilter("error", detsched.errors.InstrumentWarning)
        failure = detsched.explore(module.main, runs=50, races=True).failure
    assert failure is not None and failure.kind == "data-race" and "dict['state']" in failure.message
