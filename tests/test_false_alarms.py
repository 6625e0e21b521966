"""Regression tests for false alarms found by running the own test suites of real libraries under
detsched: programs that pass plainly must pass under detsched, and every session must end."""

import asyncio
import queue
import threading
import time

import detsched
from detsched._core import clock as clock


def test_real_thread_started_before_a_run_keeps_real_primitives():
    # The stdlib's Condition.wait makes a waiter lock with threading._allocate_lock, which is
    # swapped during a run: a real thread waiting on a real queue must still get a real lock.
    requests, stop, errors = queue.Queue(), threading.Event(), []

    def listener():
        try:
            while not stop.is_set():
                try:
                    requests.get(timeout=0.002)
                except queue.Empty:
                    pass
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=listener, daemon=True)
    thread.start()

    def target():
        end = clock.real_monotonic() + 0.1  # long enough in real time for the listener to wait again
        while clock.real_monotonic() < end:
            pass

    try:
        assert detsched.explore(target, runs=2).failure is None
    finally:
        stop.set()
        thread.join(5)
    assert errors == []
    assert not thread.is_alive()


def one_failed_try_acquire_then_the_slow_path():
    lock, done = threading.Lock(), threading.Event()

    def worker():
        if not lock.acquire(blocking=False):
            lock.acquire()  # the slow path
        lock.release()
        done.set()

    lock.acquire()
    thread = threading.Thread(target=worker)
    thread.start()
    time.sleep(0.01)  # the worker tries the lock meanwhile
    lock.release()
    assert done.wait(timeout=1), "timed out although the worker was about to set()"
    thread.join()


def test_one_failed_check_is_not_spinning():
    # Virtual time may only jump past the timed wait when no thread can make progress without it.
    assert detsched.explore(one_failed_try_acquire_then_the_slow_path, runs=300).failure is None


def alive(stopped):
    return not stopped.is_set()


def an_actor_checks_it_is_alive_twice_before_answering():
    # pykka's ActorRef.is_alive() is Event.is_set(): an actor asking it when it makes a proxy of
    # itself and again when it sends, with only plain code between, is not a loop polling it.
    stopped, answered = threading.Event(), threading.Event()

    def actor():
        if alive(stopped):
            squares = [n * n for n in range(10)]
            if alive(stopped) and squares:
                answered.set()

    thread = threading.Thread(target=actor)
    thread.start()
    assert answered.wait(timeout=1), "timed out waiting for the answer"
    thread.join()


def test_the_same_check_from_two_places_is_not_spinning():
    for strategy in ("pct", "random"):
        assert detsched.explore(an_actor_checks_it_is_alive_twice_before_answering, strategy=strategy,
                                runs=300).failure is None


def spins_until_set():
    flag, done = threading.Event(), []

    def spinner():
        while alive(flag):
            pass
        done.append(1)

    thread = threading.Thread(target=spinner)
    thread.start()
    assert not flag.wait(timeout=0.5)  # the spinner can never end before the timeout
    flag.set()
    thread.join()
    assert done == [1]


def test_a_loop_polling_through_a_helper_is_spinning():
    # Spinning lets virtual time pass: the timed wait times out instead of the run ending in a livelock.
    assert detsched.explore(spins_until_set, strategy="dfs", preemption_bound=1, runs=300).failure is None


def backing_off_workers():
    first, second = threading.Lock(), threading.Lock()
    rounds = []

    def worker(mine, other):
        for _ in range(50):
            with mine:
                if other.acquire(blocking=False):
                    other.release()
                    return
            rounds.append(1)
        raise AssertionError("gave up after 50 rounds of backing off")

    threads = [threading.Thread(target=worker, args=pair) for pair in ((first, second), (second, first))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def test_a_switch_after_a_failed_try_acquire_makes_the_back_off_livelock_reachable():
    failure = detsched.explore(backing_off_workers, runs=500).failure
    assert failure is not None and "gave up after 50 rounds" in failure.message


# ----------------------------------------------------------------------------- asyncio


async def a_new_task_runs_before_its_creator_resumes():
    steps = []

    async def child():
        steps.append("child started")
        await asyncio.sleep(0)
        steps.append("child resumed")

    task = asyncio.create_task(child())
    await asyncio.sleep(0)
    assert steps == ["child started"], steps  # as in CPython's own asyncio tests
    await asyncio.sleep(0)
    assert steps == ["child started", "child resumed"], steps
    await task


def test_asyncio_callbacks_and_task_steps_keep_their_fifo_order():
    assert detsched.explore(a_new_task_runs_before_its_creator_resumes, runs=200).failure is None


async def polls_until_a_timer_sets_a_flag():
    state = {"stop": False}

    async def stop_soon():
        await asyncio.sleep(0.01)
        state["stop"] = True

    stopper = asyncio.create_task(stop_soon())
    while not state["stop"]:
        await asyncio.sleep(0)
    await stopper


def test_timers_fire_while_tasks_poll_with_sleep_zero():
    assert detsched.explore(polls_until_a_timer_sets_a_flag, runs=20).failure is None


async def watches_a_worker_thread():
    progress = {"done": 0}

    def work():
        for _ in range(3):
            progress["done"] += 1

    async def watch():
        while True:  # looks, yields, and stops once what it saw before yielding was complete
            seen = progress["done"]
            await asyncio.sleep(0)
            if seen == 3:
                return

    watcher = asyncio.create_task(watch())
    await asyncio.to_thread(work)
    await watcher


def test_a_ready_task_is_never_a_deadlock():
    assert detsched.explore(watches_a_worker_thread, runs=200).failure is None


# ----------------------------------------------------------------------------- after a failure


class Registry:
    """A class-level registry of actors, as actor frameworks keep one: it outlives every run."""

    inboxes: list = []


def a_failing_test_whose_teardown_asks_its_actor_to_stop():
    inbox = queue.Queue()
    Registry.inboxes.append(inbox)

    def actor():
        while True:
            message = inbox.get()
            if message == "stop":
                Registry.inboxes.remove(inbox)
                return

    threading.Thread(target=actor).start()
    inbox.put("work")
    try:
        raise AssertionError("the test fails while its actor works")
    finally:
        inbox.put("stop")  # a teardown that does not wait for the actor to stop


def test_a_failed_runs_other_threads_go_on_so_what_outlives_it_is_left_as_a_real_run_leaves_it():
    # Stopping the actor with the run would leave its inbox registered with nobody serving it:
    # code after the run that asks every registered actor to stop and waits would hang.
    report = detsched.explore(a_failing_test_whose_teardown_asks_its_actor_to_stop, runs=20)
    assert report.failure is not None and "the test fails while its actor works" in report.failure.message
    assert Registry.inboxes == []
    last = report.failure.trace[-1]
    assert last.thread == "MainThread"  # the timeline ends where the run failed
    assert detsched.replay(a_failing_test_whose_teardown_asks_its_actor_to_stop,
                           report.failure.schedule).message == report.failure.message


def a_failing_test_with_a_worker_that_never_ends():
    def worker():
        while True:
            spin()

    threading.Thread(target=worker, daemon=True).start()
    raise AssertionError("the test fails")


def spin():
    pass


def test_the_other_threads_of_a_failed_run_go_on_for_a_bounded_number_of_steps():
    report = detsched.explore(a_failing_test_with_a_worker_that_never_ends, runs=5)
    assert report.failure is not None and report.failure.kind == "exception"


class _Pool:
    """pebble's thread pool, reduced: a manager thread looping on sleep while the pool is open, and
    a join() that polls the manager's liveness between sleeps until the work is done."""

    def __init__(self):
        self.open, self.unfinished = True, 3
        self.loops = (threading.Thread(target=self._manage),)
        self.loops[0].start()

    def _manage(self):
        while self.open:
            time.sleep(0.1)

    @property
    def active(self):
        return all(loop.is_alive() for loop in self.loops)

    def join(self):
        while self.active:
            if not self.unfinished:
                break
            self.unfinished -= 1
            time.sleep(0.1)
        self.open = False


def test_a_join_polling_between_sleeps_is_not_starved_by_a_thread_looping_on_sleep():
    # The join() thread is spinning at its liveness check, so virtual time passes when only it can
    # run; the manager thread, woken by every jump, won every choice after it, and join() never
    # took its next step: a false livelock.
    def main():
        pool = _Pool()
        pool.join()
        pool.loops[0].join()

    assert detsched.explore(main, runs=200, max_steps=5_000).failure is None
