"""The scheduler finds each failure kind, reports it readably, and replays it exactly."""

import concurrent.futures
import queue
import random
import re
import sys
import threading
import time

import pytest

import detsched
from detsched import settings


def lost_update():
    lock = threading.Lock()
    account = {"balance": 100}

    def withdraw():
        with lock:
            balance = account["balance"]
        with lock:
            account["balance"] = balance - 10

    workers = [threading.Thread(target=withdraw) for _ in range(2)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert account["balance"] == 80, f"balance is {account['balance']}, expected 80"


def lost_update_fixed():
    lock = threading.Lock()
    account = {"balance": 100}

    def withdraw():
        with lock:
            account["balance"] -= 10

    workers = [threading.Thread(target=withdraw) for _ in range(2)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert account["balance"] == 80


A = threading.Lock()
B = threading.Lock()


def abba_with_bystander():
    """T1 and T2 deadlock; T3 could go on spinning for a long time, yet the cycle is reported."""
    stop = threading.Event()

    def one():
        with A:
            with B:
                pass

    def two():
        with B:
            with A:
                pass

    def bystander():
        while not stop.is_set():
            time.sleep(0.01)

    threads = [threading.Thread(target=f, name=f.__name__) for f in (one, two, bystander)]
    for t in threads:
        t.start()
    threads[0].join()
    threads[1].join()
    stop.set()
    threads[2].join()


def test_lost_update_found_with_message_and_one_preemption():
    report = detsched.explore(lost_update, runs=200)
    failure = report.failure
    assert failure is not None and failure.kind == "exception"
    assert "balance is 90, expected 80" in failure.message
    assert failure.schedule.preemptions == 1
    assert "AssertionError" in failure.details


def test_fixed_twin_passes():
    assert detsched.explore(lost_update_fixed, runs=300).failure is None
    assert detsched.explore(lost_update_fixed, runs=300, strategy="random").failure is None


def test_replay_reproduces_the_same_failure_three_times():
    failure = detsched.explore(lost_update, runs=200).failure
    text = failure.schedule.dumps()
    for _ in range(3):
        again = detsched.replay(lost_update, text)
        assert (again.kind, again.message) == (failure.kind, failure.message)
        assert [(s.tid, s.op) for s in again.trace] == [(s.tid, s.op) for s in failure.trace]


def test_deadlock_cycle_reported_as_it_forms_with_stacks():
    failure = detsched.explore(abba_with_bystander, runs=300).failure
    assert failure is not None and failure.kind == "deadlock"
    assert "waits for Lock(test_scheduler.A) held by" in failure.message
    assert "waits for Lock(test_scheduler.B) held by" in failure.message
    assert "bystander" not in failure.message  # only the cycle, although T3 could still run
    assert "in one" in failure.details and "in two" in failure.details


def test_exception_in_worker_thread_is_a_failure():
    def main():
        def worker():
            raise KeyError("missing")

        t = threading.Thread(target=worker, name="loader")
        t.start()
        t.join()

    failure = detsched.explore(main, runs=5).failure
    assert failure.kind == "exception"
    assert failure.thread == "T1 'loader'"
    assert "KeyError: 'missing'" in failure.message


def test_lost_wakeup_names_the_early_notify():
    def main():
        cond = threading.Condition()

        def waiter():
            with cond:
                cond.wait()

        t = threading.Thread(target=waiter)
        t.start()
        with cond:
            cond.notify()
        t.join()

    failure = detsched.explore(main, runs=50).failure
    assert failure.kind == "lost-wakeup"
    assert "before T1 started waiting" in failure.message
    assert str(failure).startswith("lost-wakeup: T1 waits on Condition(test_scheduler.py:")  # the kind, once


def test_event_set_and_cleared_before_the_wait_is_a_lost_wakeup():
    def main():
        ready = threading.Event()

        def waiter():
            ready.wait()

        t = threading.Thread(target=waiter)
        t.start()
        ready.set()
        ready.clear()
        t.join()

    failure = detsched.explore(main, runs=50).failure
    assert failure.kind == "lost-wakeup"
    assert failure.message.startswith("T1 waits for Event(test_scheduler.py:")
    assert "T0 'MainThread' set it at step" in failure.message
    assert "but T0 'MainThread' cleared it at step" in failure.message
    assert failure.message.endswith(", before T1 saw it")


def test_leaked_thread_blocked_after_test_returns():
    def main():
        jobs = []
        ready = threading.Event()

        def worker():
            ready.wait()
            jobs.append(1)

        threading.Thread(target=worker).start()

    failure = detsched.explore(main, runs=5).failure
    assert failure.kind == "leak"
    assert "after the test returned" in failure.message


def test_daemon_and_idle_pool_threads_are_not_leaks():
    import concurrent.futures
    import queue

    def main():
        q = queue.Queue()
        threading.Thread(target=q.get, daemon=True).start()
        pool = concurrent.futures.ThreadPoolExecutor(2)
        assert pool.submit(lambda: 3).result() == 3

    assert detsched.explore(main, runs=50).failure is None


def test_livelock_reported_at_step_bound():
    def main():
        flag = threading.Event()

        def spinner():
            while not flag.is_set():
                pass

        t = threading.Thread(target=spinner)
        t.start()
        t.join()

    failure = detsched.explore(main, runs=1, max_steps=2_000).failure
    assert failure.kind == "livelock"
    assert "max_steps=2000" in failure.message
    assert "is_set?" in failure.timeline()


def test_correct_spin_waits_are_not_livelocks():
    def main():
        ready = threading.Event()
        lock = threading.Lock()

        def setter():
            time.sleep(1)
            ready.set()

        t = threading.Thread(target=setter)
        t.start()
        while not ready.is_set():  # busy poll
            pass
        while not lock.acquire(blocking=False):  # try-lock spin
            time.sleep(0.001)
        lock.release()
        t.join()

    assert detsched.explore(main, runs=200, max_steps=5_000).failure is None


def test_timed_wait_is_never_part_of_a_deadlock():
    def main():
        a, b = threading.Lock(), threading.Lock()

        def one():
            with a:
                if b.acquire(timeout=1):
                    b.release()

        def two():
            with b:
                if a.acquire(timeout=1):
                    a.release()

        ts = [threading.Thread(target=one), threading.Thread(target=two)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()

    assert detsched.explore(main, runs=300).failure is None


def test_virtual_clock_makes_an_hour_of_sleep_instant():
    def main():
        start = time.monotonic()
        t = threading.Thread(target=time.sleep, args=(3600,))
        t.start()
        t.join()
        assert abs(time.monotonic() - start - 3600) < 1e-3

    assert detsched.explore(main, runs=3).failure is None


def test_blocked_outside_control_is_reported_with_stack(monkeypatch):
    monkeypatch.setattr(settings, "BLOCKED_AFTER", 0.3)
    hidden = [threading.Lock()]  # a real lock detsched cannot reach: not a module-level name

    def main():
        hidden[0].acquire()

        def worker():
            hidden[0].acquire()

        t = threading.Thread(target=worker, name="stuck")
        t.start()
        t.join()

    try:
        failure = detsched.explore(main, runs=1).failure
        assert failure.kind == "blocked"
        assert "T1 'stuck'" in failure.message
        assert "in worker" in failure.details
    finally:
        stranded = threading.active_count() - 1
        hidden[0].release()  # lets the stranded thread finish
        for _ in range(200):
            if threading.active_count() <= stranded:
                break
            time.sleep(0.01)


def test_no_thread_outlives_its_run():
    before = threading.active_count()
    detsched.explore(lost_update, runs=50)
    detsched.explore(abba_with_bystander, runs=50)
    assert threading.active_count() == before


def test_yield_point_is_a_scheduling_point_and_a_noop_outside():
    detsched.yield_point()  # outside a run: nothing happens

    def main():
        box = []

        def worker():
            value = len(box)
            detsched.yield_point()
            box.append(value)

        ts = [threading.Thread(target=worker) for _ in range(2)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        assert sorted(box) == [0, 1]

    assert detsched.explore(main, runs=200, preempt_calls=False).failure.kind == "exception"


def test_function_calls_are_switch_points_unless_disabled():
    class Counter:
        def __init__(self):
            self.value = 0

        def read(self):
            return self.value

        def write(self, value):
            self.value = value

        def incr(self):
            self.write(self.read() + 1)  # a switch can happen on entering write()

    def main():
        c = Counter()
        ts = [threading.Thread(target=c.incr) for _ in range(2)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        assert c.value == 2

    assert detsched.explore(main, runs=200).failure.kind == "exception"
    assert detsched.explore(main, runs=200, preempt_calls=False, preempt_writes=False).failure is None


def test_names_and_labels_are_deterministic_across_runs():
    failure = detsched.explore(lost_update, runs=200).failure
    again = detsched.replay(lost_update, failure.schedule)
    assert failure.timeline() == again.timeline()
    assert "Thread-1 (withdraw)" in failure.timeline()


def test_daemon_heartbeat_does_not_keep_the_run_alive():
    def main():
        beats = []

        def heartbeat():
            while True:
                beats.append(time.monotonic())
                time.sleep(1)

        threading.Thread(target=heartbeat, daemon=True).start()
        time.sleep(2.5)
        assert len(beats) == 3

    assert detsched.explore(main, runs=20, max_steps=1_000).failure is None


def test_nested_exploration_is_a_usage_error():
    def main():
        detsched.explore(lambda: None, runs=1)

    with pytest.raises(detsched.DetschedUsageError, match="another run is in progress"):
        detsched.explore(main, runs=1)


def test_a_notify_that_wakes_the_wrong_kind_of_waiter_is_a_lost_wakeup():
    """Producers and consumers share one Condition and notify() wakes the wrong kind of waiter."""
    def main():
        cond, items = threading.Condition(), []

        def produce():
            for _ in range(2):
                with cond:
                    while len(items) == 1:
                        cond.wait()
                    items.append(1)
                    cond.notify()

        def consume():
            for _ in range(2):
                with cond:
                    while not items:
                        cond.wait()
                    items.pop()
                    cond.notify()

        ts = [threading.Thread(target=f) for f in (produce, produce, consume, consume)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()

    failure = detsched.explore(main, runs=500).failure
    assert failure is not None and failure.kind == "lost-wakeup", failure
    assert re.fullmatch(r"T\d waits on Condition\(test_scheduler.py:\d+\) forever; the notify\(\) T\d '[^']+' sent at "
                        r"step \d+ woke T\d '[^']+' instead, which went back to waiting \(.*notify_all\(\).*\)",
                        failure.message), failure.message


def test_all_asleep_on_one_condition_with_notify_all_is_no_lost_wakeup():
    """Every wakeup reached every waiter, and all of them went back to sleep: nobody was passed
    over and nothing was sent too early, so it is a plain deadlock."""
    def main():
        cond, items, waiting = threading.Condition(), [], [0]

        def consume():
            with cond:
                waiting[0] += 1
                cond.notify_all()  # tell the main thread
                while not items:
                    cond.wait()

        ts = [threading.Thread(target=consume) for _ in range(2)]
        for t in ts:
            t.start()
        with cond:
            while waiting[0] < 2:
                cond.wait()
            cond.notify_all()  # wakes both; neither finds an item and both wait again
        for t in ts:
            t.join()

    failure = detsched.explore(main, runs=200).failure
    assert failure is not None and failure.kind == "deadlock", failure
    assert "nothing can wake them" in failure.message


def test_reading_shared_state_right_after_a_release_is_explored():
    """A reader-writer lock that checks its reader count after leaving the lock (no call, no store
    in between): CPython can switch when the release returns, so the window is real."""
    class ReadWriteLock:
        def __init__(self):
            self.readers = 0
            self.counter_lock = threading.Lock()
            self.write_lock = threading.Lock()

        def acquire_read(self):
            with self.counter_lock:
                self.readers += 1
            if self.readers == 1:
                self.write_lock.acquire()

        def release_read(self):
            with self.counter_lock:
                self.readers -= 1
            if self.readers == 0:
                self.write_lock.release()

    def main():
        rw = ReadWriteLock()

        def reader():
            rw.acquire_read()
            rw.release_read()

        ts = [threading.Thread(target=reader) for _ in range(2)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()

    failure = detsched.explore(main, runs=500).failure
    # Both readers see a count of 1 in turn, so the second waits for the write lock the first holds.
    assert failure is not None and failure.kind == "deadlock", failure
    assert "waits for Lock(test_scheduler.py:" in failure.message and "held by T1" in failure.message


def test_system_exit_in_the_target_is_a_failure():
    def main():
        sys.exit(3)

    failure = detsched.explore(main, runs=1).failure
    assert failure.kind == "exception" and failure.message == "SystemExit: 3"


def test_system_exit_in_a_worker_ends_only_that_thread_as_in_the_stdlib():
    def main():
        worker = threading.Thread(target=sys.exit, args=(1,))
        worker.start()
        worker.join()

    assert detsched.explore(main, runs=20).failure is None


def test_a_thread_looping_without_scheduling_points_is_stopped_after_its_report():
    before = threading.active_count()

    def main():
        def spin():
            while True:
                pass

        worker = threading.Thread(target=spin, name="spinner")
        worker.start()
        worker.join()

    failure = detsched.explore(main, runs=1, blocked_after=0.3).failure
    assert failure.kind == "blocked"
    assert "T1 'spinner' ran for 0.3s without reaching a scheduling point" in failure.message
    assert threading.active_count() == before  # no thread keeps a CPU busy after the report


def test_thread_exit_looks_itself_up_with_get_ident_as_the_stdlib_bootstrap_does(monkeypatch):
    finished, looked_up_after_finishing, real_get_ident = set(), [], threading.get_ident

    def get_ident():
        ident = real_get_ident()
        if ident in finished:
            looked_up_after_finishing.append(ident)
        return ident

    monkeypatch.setattr(threading, "get_ident", get_ident)

    def main():
        worker = threading.Thread(target=lambda: finished.add(real_get_ident()))
        worker.start()
        worker.join()

    assert detsched.explore(main, runs=1).failure is None
    assert finished and finished <= set(looked_up_after_finishing)


def test_a_long_test_that_keeps_making_progress_is_not_called_a_livelock():
    def main():
        items = queue.Queue()

        def produce():
            for item in range(2_000):
                items.put(item)

        producer = threading.Thread(target=produce)
        producer.start()
        for _ in range(2_000):
            items.get()
        producer.join()

    failure = detsched.explore(main, runs=1, max_steps=1_000).failure
    assert failure.kind == "step-limit"
    assert "longer than the bound rather than stuck" in failure.message and "max_steps=1000" in failure.message


def test_a_queue_whose_waiting_thread_was_stopped_with_its_run_refuses_puts_from_outside():
    workers = []

    def main():
        inbox = queue.Queue()
        threading.Thread(target=inbox.get, name="consumer").start()
        workers.append(inbox)

    assert detsched.explore(main, runs=1).failure.kind == "leak"
    with pytest.raises(detsched.DetschedUsageError, match="was made during a detsched run that has ended; "
                                                          "T1 'consumer' was waiting in it"):
        workers[0].put("stop")


def test_a_background_thread_answering_a_waiter_stopped_with_its_run_goes_on():
    # pebble's pool thread sets the Future of a task whose waiter was stopped with its run: an
    # error there killed the thread every later test of the module's pool needed.
    futures = []

    def main():
        future = concurrent.futures.Future()
        threading.Thread(target=future.result, name="waiter").start()
        futures.append(future)

    assert detsched.explore(main, runs=1).failure.kind == "leak"
    answered = []
    answer = threading.Thread(target=lambda: (futures[0].set_result(1), answered.append(True)))
    answer.start()
    answer.join()
    assert answered == [True] and futures[0].result() == 1


def test_an_exception_in_a_pool_task_that_nobody_retrieves_is_a_failure():
    def main():
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            pool.submit(divide, 1, 0)

    failure = detsched.explore(main, runs=5).failure
    assert failure.kind == "exception" and failure.message == "ZeroDivisionError: division by zero"
    assert "nothing retrieved the exception from its Future" in failure.thread
    assert "in divide" in failure.details


def divide(a, b):
    return a / b


def test_a_pool_task_exception_that_is_retrieved_is_not_a_failure():
    def main():
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            future = pool.submit(divide, 1, 0)
        assert isinstance(future.exception(), ZeroDivisionError)

    assert detsched.explore(main, runs=20).failure is None


def test_every_run_starts_the_global_random_generator_from_the_same_state():
    draws = []

    def main():
        draws.append(random.random())

    before = random.getstate()
    detsched.explore(main, runs=3)
    assert len(draws) == 4 and len(set(draws)) == 1  # the warm-up and three runs
    assert random.getstate() == before
