"""threading keeps its contracts under detsched: Thread, Timer, local, Lock, RLock, Condition,
Semaphore, BoundedSemaphore, Event and Barrier behave inside a run as the stdlib documents them.

Each test explores a small program written against plain ``threading`` and ``time`` (patched for
the run) and asserts that no interleaving breaks the contract. The behaviours are those CPython's
own lock and threading tests check, written anew for detsched.
"""

import os
import sys
import threading
import time
from threading import current_thread

import pytest

import detsched
from contracts import RUNS, SINGLE_THREAD_RUNS, passes, raises, virtual


class Counter(threading.Thread):
    """A Thread subclass defined at import time, overriding run()."""

    def __init__(self, times):
        super().__init__()
        self.times = times
        self.total = 0

    def run(self):
        for _ in range(self.times):
            self.total += 1
            time.sleep(0)


class CountingSemaphore(threading.BoundedSemaphore):
    """Subclasses of the stdlib's primitives defined at import time; they run the stdlib's methods
    on controlled locks and conditions."""

    def acquire(self, *args, **kwargs):
        self.acquired = getattr(self, "acquired", 0) + 1
        return super().acquire(*args, **kwargs)


class PlainSemaphore(threading.Semaphore):
    pass


class NamedEvent(threading.Event):
    def __init__(self, name):
        super().__init__()
        self.name = name


class NamedBarrier(threading.Barrier):
    pass


SHARED_LOCAL = threading.local()


# ----------------------------------------------------------------------------- Thread


def test_start_and_join_runs_the_target_with_its_arguments():
    def program():
        seen = []
        thread = threading.Thread(target=lambda a, b=0: seen.append((a, b)), args=(1,), kwargs={"b": 2})
        thread.start()
        thread.join()
        assert seen == [(1, 2)]

    passes(program)


def test_join_with_timeout_returns_none_while_the_thread_still_runs():
    def program():
        stop = threading.Event()
        thread = threading.Thread(target=stop.wait)
        thread.start()
        before = time.monotonic()
        assert thread.join(timeout=2.5) is None
        assert thread.is_alive()
        assert time.monotonic() - before == virtual(2.5)
        stop.set()
        thread.join(timeout=10)
        assert not thread.is_alive()

    passes(program)


def test_join_with_timeout_returns_early_when_the_thread_ends():
    def program():
        thread = threading.Thread(target=time.sleep, args=(1,))
        thread.start()
        before = time.monotonic()
        thread.join(timeout=60)
        assert not thread.is_alive()
        assert time.monotonic() - before == virtual(1)

    passes(program)


def test_join_before_start_raises():
    def program():
        thread = threading.Thread(target=print)
        raises(thread.join, RuntimeError, "cannot join thread before it is started")

    passes(program, runs=SINGLE_THREAD_RUNS)


def test_join_of_the_current_thread_raises():
    def program():
        def join_self():
            raises(threading.current_thread().join, RuntimeError, "cannot join current thread")

        thread = threading.Thread(target=join_self)
        thread.start()
        thread.join()
        raises(threading.current_thread().join, RuntimeError, "cannot join current thread")

    passes(program)


def test_starting_a_thread_twice_raises():
    def program():
        thread = threading.Thread(target=lambda: None)
        thread.start()
        raises(thread.start, RuntimeError, "threads can only be started once")
        thread.join()
        raises(thread.start, RuntimeError, "threads can only be started once")

    passes(program)


def test_start_without_init_raises():
    class Broken(threading.Thread):
        def __init__(self):
            pass

    def program():
        raises(Broken().start, RuntimeError, "__init__() not called")

    passes(program, runs=SINGLE_THREAD_RUNS)


def test_is_alive_is_false_before_start_and_after_join():
    def program():
        release = threading.Event()
        thread = threading.Thread(target=release.wait)
        assert not thread.is_alive()
        thread.start()
        assert thread.is_alive()
        release.set()
        thread.join()
        assert not thread.is_alive()

    passes(program)


def test_daemon_is_inherited_settable_before_start_and_fixed_after():
    def program():
        assert not threading.Thread(target=print).daemon
        thread = threading.Thread(target=print)
        thread.daemon = True
        assert thread.daemon
        assert threading.Thread(target=print, daemon=True).daemon
        thread.start()
        raises(lambda: setattr(thread, "daemon", False), RuntimeError, "cannot set daemon status of active thread")
        thread.join()
        inherited = []
        child = threading.Thread(target=lambda: inherited.append(threading.Thread(target=print).daemon), daemon=True)
        child.start()
        child.join()
        assert inherited == [True]

    passes(program)


def test_default_names_count_up_from_one_in_every_run():
    names = []

    def program():
        def work():
            pass

        threads = [threading.Thread(target=work), threading.Thread(), threading.Thread(target=work, name="mine"),
                   threading.Thread(name=7)]
        names.append([t.name for t in threads])

    passes(program, runs=5)
    assert names[0] == ["Thread-1 (work)", "Thread-2", "mine", "7"]
    assert all(run == names[0] for run in names)


def test_ident_is_none_before_start_and_matches_get_ident_inside():
    def program():
        seen = {}

        def work():
            seen["ident"] = threading.get_ident()
            seen["current"] = threading.current_thread().ident
            seen["native"] = threading.get_native_id()
            seen["current_native"] = threading.current_thread().native_id

        thread = threading.Thread(target=work)
        assert thread.ident is None and thread.native_id is None
        thread.start()
        thread.join()
        assert thread.ident == seen["ident"] == seen["current"]
        assert thread.native_id == seen["native"] == seen["current_native"]
        assert thread.ident != threading.get_ident()

    passes(program)


def test_current_thread_is_the_thread_object_in_each_thread():
    def program():
        seen = {}

        def work(key):
            seen[key] = (threading.current_thread(), current_thread())

        threads = [threading.Thread(target=work, args=(key,)) for key in "ab"]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert seen["a"] == (threads[0], threads[0])
        assert seen["b"] == (threads[1], threads[1])
        assert current_thread() is threading.current_thread()
        assert current_thread().name == "MainThread"

    passes(program)


def test_main_thread_is_the_thread_running_the_test():
    def program():
        main = threading.main_thread()
        assert main is threading.current_thread()
        assert main.is_alive() and main.ident == threading.get_ident()
        assert main.native_id == threading.get_native_id()
        seen = []
        thread = threading.Thread(target=lambda: seen.append(threading.main_thread()))
        thread.start()
        thread.join()
        assert seen == [main]

    passes(program)


def test_enumerate_and_active_count_list_live_threads_only():
    def program():
        release = threading.Event()
        thread = threading.Thread(target=release.wait)
        assert threading.enumerate() == [threading.main_thread()]
        assert threading.active_count() == 1
        thread.start()
        assert thread in threading.enumerate()
        assert threading.active_count() == 2
        release.set()
        thread.join()
        assert thread not in threading.enumerate()
        assert threading.active_count() == 1

    passes(program)


def test_thread_local_values_are_separate_per_thread():
    def program():
        local = threading.local()
        local.value = "main"
        SHARED_LOCAL.value = "main"
        seen = []

        def work(name):
            assert not hasattr(local, "value")
            assert not hasattr(SHARED_LOCAL, "value")
            local.value = name
            SHARED_LOCAL.value = name
            time.sleep(0)
            seen.append((local.value, SHARED_LOCAL.value))

        threads = [threading.Thread(target=work, args=(name,)) for name in ("a", "b")]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert sorted(seen) == [("a", "a"), ("b", "b")]
        assert local.value == SHARED_LOCAL.value == "main"

    passes(program)


def test_a_thread_subclass_defined_at_import_runs_its_own_run():
    def program():
        counters = [Counter(3), Counter(5)]
        for counter in counters:
            counter.start()
        for counter in counters:
            counter.join()
        assert [c.total for c in counters] == [3, 5]
        assert counters[0].name == "Thread-1"

    passes(program)


def test_repr_shows_the_state_of_a_thread():
    def program():
        release = threading.Event()
        thread = threading.Thread(target=release.wait, name="w", daemon=True)
        assert "initial" in repr(thread)
        thread.start()
        assert "started" in repr(thread) and "daemon" in repr(thread) and "w" in repr(thread)
        release.set()
        thread.join()
        assert "stopped" in repr(thread)

    passes(program)


def test_timer_fires_after_its_interval_on_the_virtual_clock():
    def program():
        fired = []
        start = time.monotonic()
        timer = threading.Timer(30, lambda x: fired.append((x, time.monotonic() - start)), args=("x",))
        timer.start()
        timer.join()
        assert fired == [("x", virtual(30))]

    passes(program)


def test_timer_cancelled_before_it_fires_never_runs():
    def program():
        fired = []
        start = time.monotonic()
        timer = threading.Timer(5, fired.append, args=(1,))
        timer.start()
        time.sleep(1)
        timer.cancel()
        timer.join()
        assert fired == []
        assert time.monotonic() - start == virtual(1)  # cancel() ended the timer's wait at once

    passes(program)


def test_system_exit_in_a_thread_ends_it_silently():
    def program():
        after = []

        def work():
            sys.exit(3)
            after.append(1)

        thread = threading.Thread(target=work)
        thread.start()
        thread.join()
        assert after == [] and not thread.is_alive()

    passes(program)


def test_a_daemon_thread_still_blocked_when_the_test_returns_is_not_a_failure():
    def program():
        threading.Thread(target=threading.Event().wait, daemon=True).start()

    passes(program)


def test_a_non_daemon_thread_still_blocked_when_the_test_returns_is_a_leak():
    def program():
        threading.Thread(target=threading.Event().wait).start()

    report = detsched.explore(program, runs=RUNS)
    assert report.failure is not None and report.failure.kind == "leak", str(report)
    assert "still blocked" in report.failure.message


def test_an_uncaught_exception_in_a_thread_is_a_failure():
    def program():
        def work():
            raise KeyError("lost")

        thread = threading.Thread(target=work)
        thread.start()
        thread.join()

    report = detsched.explore(program, runs=RUNS)
    assert report.failure is not None and report.failure.kind == "exception", str(report)
    assert "KeyError" in report.failure.message


# ----------------------------------------------------------------------------- Lock and RLock


@pytest.mark.parametrize("kind", ["Lock", "RLock"])
def test_acquire_release_and_locked(kind):
    def program():
        lock = getattr(threading, kind)()
        assert lock.acquire() is True
        if kind == "Lock":
            assert lock.locked()
        lock.release()
        if kind == "Lock":
            assert not lock.locked()
        assert lock.acquire(blocking=False) is True
        lock.release()

    passes(program, runs=SINGLE_THREAD_RUNS)


@pytest.mark.parametrize("kind", ["Lock", "RLock"])
def test_bad_acquire_arguments_raise_value_error(kind):
    def program():
        lock = getattr(threading, kind)()
        raises(lambda: lock.acquire(False, 1), ValueError, "can't specify a timeout for a non-blocking call")
        raises(lambda: lock.acquire(timeout=-5), ValueError, "timeout value must be")
        raises(lambda: lock.acquire(timeout=threading.TIMEOUT_MAX * 2), OverflowError, "")
        assert lock.acquire(timeout=threading.TIMEOUT_MAX)
        lock.release()

    passes(program, runs=SINGLE_THREAD_RUNS)


@pytest.mark.parametrize("kind", ["Lock", "RLock"])
def test_try_acquire_of_a_lock_held_elsewhere_fails(kind):
    def program():
        lock = getattr(threading, kind)()
        lock.acquire()
        results = []
        thread = threading.Thread(target=lambda: results.append(lock.acquire(False)))
        thread.start()
        thread.join()
        assert results == [False]
        lock.release()

    passes(program)


@pytest.mark.parametrize("kind", ["Lock", "RLock"])
def test_timed_acquire_gives_up_after_the_timeout(kind):
    def program():
        lock = getattr(threading, kind)()
        lock.acquire()
        results = []

        def contender():
            start = time.monotonic()
            results.append(lock.acquire(timeout=0.5))
            results.append(time.monotonic() - start)

        thread = threading.Thread(target=contender)
        thread.start()
        thread.join()
        assert results == [False, virtual(0.5)]

    passes(program)


@pytest.mark.parametrize("kind", ["Lock", "RLock"])
def test_blocked_acquire_proceeds_once_the_holder_releases(kind):
    def program():
        lock = getattr(threading, kind)()
        order = []

        def holder():
            with lock:
                order.append("held")
                time.sleep(1)
                order.append("releasing")

        thread = threading.Thread(target=holder)
        thread.start()
        while not order:
            time.sleep(0.01)
        with lock:
            order.append("main")
        thread.join()
        assert order == ["held", "releasing", "main"]

    passes(program)


@pytest.mark.parametrize("kind", ["Lock", "RLock"])
def test_with_releases_even_when_the_body_raises(kind):
    def program():
        lock = getattr(threading, kind)()
        try:
            with lock:
                raise ZeroDivisionError
        except ZeroDivisionError:
            pass
        assert lock.acquire(blocking=False)
        lock.release()

    passes(program, runs=SINGLE_THREAD_RUNS)


def test_a_lock_is_not_reentrant():
    def program():
        lock = threading.Lock()
        lock.acquire()
        assert lock.acquire(False) is False
        assert lock.acquire(timeout=1) is False
        lock.acquire()  # blocks for ever, as in the stdlib

    report = detsched.explore(program, runs=SINGLE_THREAD_RUNS)
    assert report.failure is not None and report.failure.kind == "deadlock", str(report)


def test_releasing_an_unlocked_lock_raises():
    def program():
        raises(threading.Lock().release, RuntimeError, "release unlocked lock")

    passes(program, runs=SINGLE_THREAD_RUNS)


def test_a_lock_held_by_the_waiter_itself_can_be_released_by_another_thread():
    def program():
        done = threading.Lock()
        done.acquire()
        result = []

        def worker():
            time.sleep(1)
            result.append(42)
            done.release()

        threading.Thread(target=worker).start()
        done.acquire()  # a handshake: not a deadlock, the worker releases it
        assert result == [42]

    passes(program)


def test_a_lock_may_be_released_by_another_thread():
    def program():
        lock = threading.Lock()
        lock.acquire()
        thread = threading.Thread(target=lock.release)
        thread.start()
        thread.join()
        assert not lock.locked()

    passes(program)


def test_rlock_is_reentrant_and_counts_its_acquisitions():
    def program():
        lock = threading.RLock()
        for _ in range(3):
            assert lock.acquire()
        assert lock.acquire(blocking=False) and lock.acquire(timeout=1)
        for _ in range(5):
            lock.release()
        raises(lock.release, RuntimeError, "cannot release un-acquired lock")

    passes(program, runs=SINGLE_THREAD_RUNS)


def test_rlock_cannot_be_released_by_a_thread_that_does_not_own_it():
    def program():
        lock = threading.RLock()
        lock.acquire()
        errors = []

        def intruder():
            try:
                lock.release()
            except RuntimeError as exc:
                errors.append(str(exc))

        thread = threading.Thread(target=intruder)
        thread.start()
        thread.join()
        assert errors == ["cannot release un-acquired lock"]
        lock.release()

    passes(program)


def test_rlock_ownership_and_recursion_count():
    def program():
        lock = threading.RLock()
        assert not lock._is_owned()
        lock.acquire()
        lock.acquire()
        assert lock._is_owned()
        if sys.version_info >= (3, 11):
            assert lock._recursion_count() == 2
        seen = []
        thread = threading.Thread(target=lambda: seen.append(lock._is_owned()))
        thread.start()
        thread.join()
        assert seen == [False]
        lock.release()
        lock.release()
        assert not lock._is_owned()

    passes(program)


def test_rlock_release_save_and_acquire_restore_keep_the_recursion_level():
    def program():
        lock = threading.RLock()
        raises(lock._release_save, RuntimeError, "cannot release un-acquired lock")
        lock.acquire()
        lock.acquire()
        state = lock._release_save()
        assert not lock._is_owned()
        thread = threading.Thread(target=lambda: (lock.acquire(), lock.release()))
        thread.start()
        thread.join()
        lock._acquire_restore(state)
        assert lock._is_owned()
        lock.release()
        lock.release()
        assert not lock._is_owned()

    passes(program)


def test_lock_and_rlock_reprs_say_whether_they_are_held():
    def program():
        lock, rlock = threading.Lock(), threading.RLock()
        assert "unlocked" in repr(lock) and "unlocked" in repr(rlock)
        with lock, rlock:
            assert "<locked" in repr(lock) and "<locked" in repr(rlock)

    passes(program, runs=SINGLE_THREAD_RUNS)


# ----------------------------------------------------------------------------- Condition


def _start_all(targets):
    threads = [threading.Thread(target=t) for t in targets]
    for thread in threads:
        thread.start()
    return threads


def test_notify_wakes_waiters_in_the_order_they_started_waiting():
    def program():
        cond = threading.Condition()
        waiting, woken = [], []

        def waiter(name):
            with cond:
                waiting.append(name)
                cond.wait()
                woken.append(name)

        threads = _start_all([lambda n=n: waiter(n) for n in range(3)])
        while True:
            with cond:
                if len(waiting) == 3:
                    break
            time.sleep(0.01)
        for expected in range(1, 4):
            with cond:
                cond.notify()
            while len(woken) < expected:
                time.sleep(0.01)
        for thread in threads:
            thread.join()
        assert woken == waiting

    passes(program)


def test_notify_all_and_notify_n_wake_that_many_waiters():
    def program():
        cond = threading.Condition(threading.Lock())
        waiting, woken = [], []

        def waiter():
            with cond:
                waiting.append(1)
                assert cond.wait()
                woken.append(1)

        threads = _start_all([waiter] * 4)
        while True:
            with cond:
                if len(waiting) == 4:
                    cond.notify(2)
                    break
            time.sleep(0.01)
        while len(woken) < 2:
            time.sleep(0.01)
        time.sleep(1)
        assert len(woken) == 2
        with cond:
            cond.notify_all()
        for thread in threads:
            thread.join()
        assert len(woken) == 4

    passes(program)


def test_condition_wait_times_out_with_false():
    def program():
        cond = threading.Condition()
        with cond:
            start = time.monotonic()
            assert cond.wait(0.25) is False
            assert time.monotonic() - start == virtual(0.25)
            assert cond._is_owned()
            assert cond.wait(0) is False

    passes(program, runs=SINGLE_THREAD_RUNS)


def test_wait_for_returns_the_predicate_once_it_holds():
    def program():
        cond = threading.Condition()
        state = []

        def producer():
            for item in range(3):
                time.sleep(1)
                with cond:
                    state.append(item)
                    cond.notify()

        thread = threading.Thread(target=producer)
        thread.start()
        with cond:
            assert cond.wait_for(lambda: len(state) == 3 and "full") == "full"
        thread.join()

    passes(program)


def test_wait_for_gives_up_after_its_timeout_returning_the_falsy_predicate():
    def program():
        cond = threading.Condition()
        with cond:
            start = time.monotonic()
            assert cond.wait_for(lambda: 0, timeout=2) == 0
            assert time.monotonic() - start == virtual(2)
            assert cond.wait_for(lambda: "ready", timeout=0) == "ready"

    passes(program, runs=SINGLE_THREAD_RUNS)


def test_wait_and_notify_without_the_lock_raise():
    def program():
        cond = threading.Condition()
        raises(cond.wait, RuntimeError, "cannot wait on un-acquired lock")
        raises(cond.notify, RuntimeError, "cannot notify on un-acquired lock")
        raises(cond.notify_all, RuntimeError, "cannot notify on un-acquired lock")

    passes(program, runs=SINGLE_THREAD_RUNS)


def test_condition_over_an_rlock_restores_the_recursion_level_after_wait():
    def program():
        lock = threading.RLock()
        cond = threading.Condition(lock)
        ready = []

        def notifier():
            with cond:  # only possible if wait released every level of the RLock
                ready.append(1)
                cond.notify()

        lock.acquire()
        lock.acquire()
        thread = threading.Thread(target=notifier)
        thread.start()
        assert cond.wait_for(lambda: ready, timeout=10)
        lock.release()
        assert lock._is_owned()
        lock.release()
        assert not lock._is_owned()
        thread.join()

    passes(program)


def test_condition_shares_acquire_and_release_with_its_lock():
    def program():
        lock = threading.Lock()
        cond = threading.Condition(lock)
        assert cond.acquire()
        assert lock.locked()
        assert cond.acquire(False) is False
        cond.release()
        assert not lock.locked()
        with cond as entered:
            assert entered is True and lock.locked()

    passes(program, runs=SINGLE_THREAD_RUNS)


# ----------------------------------------------------------------------------- Semaphore


@pytest.mark.parametrize("kind", ["Semaphore", "BoundedSemaphore"])
def test_semaphore_counts_down_and_refuses_at_zero(kind):
    def program():
        sem = getattr(threading, kind)(2)
        assert sem.acquire() and sem.acquire(blocking=False)
        assert sem.acquire(blocking=False) is False
        start = time.monotonic()
        assert sem.acquire(timeout=1.5) is False
        assert time.monotonic() - start == virtual(1.5)
        sem.release()
        assert sem.acquire(timeout=0)
        sem.release(2)
        with sem:
            assert sem.acquire(False) and not sem.acquire(False)
            sem.release()

    passes(program, runs=SINGLE_THREAD_RUNS)


@pytest.mark.parametrize("kind", ["Semaphore", "BoundedSemaphore"])
def test_semaphore_argument_errors(kind):
    def program():
        make = getattr(threading, kind)
        raises(lambda: make(-1), ValueError, "initial value must be >= 0")
        sem = make(1)
        raises(lambda: sem.acquire(False, 1), ValueError, "can't specify timeout for non-blocking acquire")
        raises(lambda: sem.release(0), ValueError, "n must be one or more")
        assert make(0).acquire(timeout=0) is False
        assert make().acquire(False) and not make(0).acquire(False)

    passes(program, runs=SINGLE_THREAD_RUNS)


def test_semaphore_release_n_wakes_n_waiters():
    def program():
        sem = threading.Semaphore(0)
        passed = []
        threads = _start_all([lambda: passed.append(sem.acquire())] * 3)
        sem.release(2)
        time.sleep(1)
        assert passed == [True, True]
        sem.release()
        for thread in threads:
            thread.join()
        assert passed == [True] * 3

    passes(program)


def test_semaphore_never_admits_more_than_its_value():
    def program():
        sem = threading.Semaphore(2)
        inside, most = [0], [0]

        def worker():
            with sem:
                inside[0] += 1
                most[0] = max(most[0], inside[0])
                time.sleep(0)
                inside[0] -= 1

        for thread in _start_all([worker] * 5):
            thread.join()
        assert most[0] <= 2

    passes(program)


def test_a_plain_semaphore_may_be_released_above_its_start_value():
    def program():
        sem = threading.Semaphore(1)
        sem.release()
        assert sem.acquire(False) and sem.acquire(False) and not sem.acquire(False)

    passes(program, runs=SINGLE_THREAD_RUNS)


def test_bounded_semaphore_refuses_over_release():
    def program():
        sem = threading.BoundedSemaphore(2)
        raises(sem.release, ValueError, "Semaphore released too many times")
        sem.acquire()
        raises(lambda: sem.release(2), ValueError, "Semaphore released too many times")
        sem.release()
        raises(sem.release, ValueError, "Semaphore released too many times")

    passes(program, runs=SINGLE_THREAD_RUNS)


def test_semaphore_subclasses_defined_at_import_keep_their_contract():
    def program():
        bounded, plain = CountingSemaphore(1), PlainSemaphore(0)
        assert bounded.acquire() and not bounded.acquire(timeout=1)
        raises(lambda: bounded.release(2), ValueError, "Semaphore released too many times")
        releaser = threading.Thread(target=plain.release)
        releaser.start()
        assert plain.acquire(timeout=5)
        releaser.join()
        bounded.release()
        assert bounded.acquired == 2

    passes(program)


# ----------------------------------------------------------------------------- Event


def test_event_set_clear_and_is_set():
    def program():
        event = threading.Event()
        assert event.is_set() is False
        event.set()
        assert event.is_set() is True
        event.set()
        assert event.is_set() is True
        event.clear()
        assert event.is_set() is False

    passes(program, runs=SINGLE_THREAD_RUNS)


def test_event_wait_returns_the_flag():
    def program():
        event = threading.Event()
        start = time.monotonic()
        assert event.wait(0.5) is False
        assert time.monotonic() - start == virtual(0.5)
        assert event.wait(0) is False
        event.set()
        assert event.wait() is True and event.wait(0) is True

    passes(program, runs=SINGLE_THREAD_RUNS)


def test_event_set_wakes_every_waiter():
    def program():
        event = threading.Event()
        results = []
        threads = _start_all([lambda: results.append(event.wait())] + [lambda: results.append(event.wait(100))] * 2)
        time.sleep(1)
        assert results == []
        event.set()
        for thread in threads:
            thread.join()
        assert results == [True, True, True]

    passes(program)


def test_event_set_wakes_threads_already_waiting_even_if_cleared_at_once():
    def program():
        event = threading.Event()
        results = []
        threads = _start_all([lambda: results.append(event.wait())] * 2)
        time.sleep(1)  # virtual time moves only once both threads wait
        event.set()
        event.clear()
        for thread in threads:
            thread.join()
        assert results == [True, True] and not event.is_set()

    passes(program)


def test_event_and_barrier_subclasses_defined_at_import_keep_their_contract():
    def program():
        event, barrier = NamedEvent("go"), NamedBarrier(2)
        seen = []
        thread = threading.Thread(target=lambda: seen.append((event.wait(), barrier.wait())))
        thread.start()
        event.set()
        index = barrier.wait()
        thread.join()
        assert seen[0][0] is True and {index, seen[0][1]} == {0, 1} and event.name == "go"

    passes(program)


# ----------------------------------------------------------------------------- Barrier


def test_barrier_wait_gives_each_party_a_distinct_index():
    def program():
        barrier = threading.Barrier(3)
        assert barrier.parties == 3 and barrier.n_waiting == 0 and not barrier.broken
        indices = []

        def party():
            for _ in range(2):  # the barrier is reusable
                indices.append(barrier.wait())

        for thread in _start_all([party] * 3):
            thread.join()
        assert sorted(indices) == [0, 0, 1, 1, 2, 2]
        assert barrier.n_waiting == 0

    passes(program)


def test_barrier_counts_waiting_parties():
    def program():
        barrier = threading.Barrier(3)
        threads = _start_all([barrier.wait] * 2)
        while barrier.n_waiting < 2:
            time.sleep(0.01)
        assert barrier.wait() == 2
        for thread in threads:
            thread.join()

    passes(program)


def test_barrier_action_runs_once_per_cycle_before_anyone_passes():
    def program():
        actions = []
        barrier = threading.Barrier(3, action=lambda: actions.append(threading.current_thread()))
        after = []

        def party():
            barrier.wait()
            after.append(len(actions))

        threads = _start_all([party] * 3)
        for thread in threads:
            thread.join()
        assert len(actions) == 1 and actions[0] in threads
        assert after == [1, 1, 1]

    passes(program)


def test_barrier_timeout_breaks_it_for_everyone():
    def program():
        barrier = threading.Barrier(3)
        outcomes = []

        def party(timeout):
            try:
                barrier.wait(timeout)
                outcomes.append("passed")
            except threading.BrokenBarrierError:
                outcomes.append("broken")

        threads = _start_all([lambda: party(None), lambda: party(1)])
        for thread in threads:
            thread.join()
        assert outcomes == ["broken", "broken"]
        assert barrier.broken
        raises(barrier.wait, threading.BrokenBarrierError, "")

    passes(program)


def test_barrier_default_timeout_applies():
    def program():
        barrier = threading.Barrier(2, timeout=3)
        start = time.monotonic()
        raises(barrier.wait, threading.BrokenBarrierError, "")
        assert time.monotonic() - start == virtual(3)

    passes(program, runs=SINGLE_THREAD_RUNS)


def test_barrier_abort_raises_broken_barrier_in_every_waiter():
    def program():
        barrier = threading.Barrier(4)
        broken = []

        def party():
            try:
                barrier.wait()
            except threading.BrokenBarrierError:
                broken.append(1)

        threads = _start_all([party] * 3)
        while barrier.n_waiting < 3:
            time.sleep(0.01)
        barrier.abort()
        for thread in threads:
            thread.join()
        assert broken == [1, 1, 1] and barrier.broken

    passes(program)


def test_barrier_reset_frees_waiters_and_makes_it_usable_again():
    def program():
        barrier = threading.Barrier(2)
        outcomes = []

        def early():
            try:
                barrier.wait()
                outcomes.append("passed")
            except threading.BrokenBarrierError:
                outcomes.append("broken")

        thread = threading.Thread(target=early)
        thread.start()
        while barrier.n_waiting < 1:
            time.sleep(0.01)
        barrier.reset()
        thread.join()
        assert outcomes == ["broken"] and not barrier.broken
        thread = threading.Thread(target=barrier.wait)
        thread.start()
        assert barrier.wait() in (0, 1)
        thread.join()

    passes(program)


def test_barrier_action_failure_breaks_the_barrier():
    def program():
        def action():
            raise ZeroDivisionError

        barrier = threading.Barrier(2, action=action)
        outcomes = []

        def party():
            try:
                barrier.wait()
            except ZeroDivisionError:
                outcomes.append("action failed")
            except threading.BrokenBarrierError:
                outcomes.append("broken")

        for thread in _start_all([party] * 2):
            thread.join()
        assert sorted(outcomes) == ["action failed", "broken"] and barrier.broken

    passes(program)


def test_barrier_needs_at_least_one_party():
    def program():
        raises(lambda: threading.Barrier(0), ValueError, "parties must be")
        assert threading.Barrier(1).wait() == 0

    passes(program, runs=SINGLE_THREAD_RUNS)


def _held_lock():
    lock = threading.Lock()
    lock.acquire()
    return lock


def _running_thread():
    thread = threading.Thread(target=threading.Event().wait, daemon=True)
    thread.start()
    return thread


def _wait_on_condition(cond, seconds):
    with cond:
        cond.wait(seconds)


# Primitives are made inside the run (names looked up at call time), never in the parameter list.
@pytest.mark.parametrize("make, wait", [
    (lambda: threading.Event(), lambda event, seconds: event.wait(seconds)),
    (_held_lock, lambda lock, seconds: lock.acquire(timeout=seconds)),
    (lambda: threading.Condition(), _wait_on_condition),
    (lambda: threading.Semaphore(0), lambda sem, seconds: sem.acquire(timeout=seconds)),
    (_running_thread, lambda thread, seconds: thread.join(seconds)),
], ids=["Event", "Lock", "Condition", "Semaphore", "Thread"])
def test_a_wait_loop_that_stops_once_no_time_is_left_ends(make, wait):
    # concurrent.futures.as_completed loops this way: a wait that times out with no time left must
    # move the clock on, or the time left would stay exactly zero for ever.
    def program():
        primitive = make()
        start = time.monotonic()
        end = start + 2
        while end - time.monotonic() >= 0:
            wait(primitive, end - time.monotonic())
        assert 2 < time.monotonic() - start < 2.001

    passes(program, runs=SINGLE_THREAD_RUNS)


# ----------------------------------------------------------------------------- time


def test_an_hour_long_sleep_ends_at_once_on_the_virtual_clock():
    def program():
        clocks = (time.monotonic, time.time, time.perf_counter)
        before = [clock() for clock in clocks]
        ns_before = time.monotonic_ns()
        time.sleep(3600)
        after = [clock() for clock in clocks]
        assert [b - a for a, b in zip(before, after)] == [virtual(3600)] * 3
        assert (time.monotonic_ns() - ns_before) / 1e9 == virtual(3600)

    passes(program, runs=SINGLE_THREAD_RUNS)


def test_work_takes_a_little_virtual_time():
    def program():
        start, start_counter = time.monotonic(), time.perf_counter()
        thread = threading.Thread(target=lambda: [threading.Lock() for _ in range(10)])
        thread.start()
        thread.join()
        assert 0 < time.monotonic() - start < 0.001
        assert time.perf_counter() - start_counter > 0  # a test asserting elapsed > 0 passes

    passes(program)


def test_sleepers_wake_in_order_of_their_deadlines():
    def program():
        woke = []
        threads = _start_all([lambda d=d: (time.sleep(d), woke.append(d)) for d in (3, 1, 2)])
        for thread in threads:
            thread.join()
        assert woke == [1, 2, 3]

    passes(program)


def test_negative_sleep_raises():
    def program():
        raises(lambda: time.sleep(-1), ValueError, "sleep length must be non-negative")

    passes(program, runs=SINGLE_THREAD_RUNS)


# ----------------------------------------------------------------------------- after the run


def _patched_state():
    """Every attribute of the modules and classes a run patches."""
    import concurrent.futures
    import concurrent.futures.thread
    import multiprocessing.process
    import queue
    import subprocess

    owners = (threading, queue, time, os, concurrent.futures, concurrent.futures.thread,
              threading.Thread, threading.Timer, subprocess.Popen, multiprocessing.process.BaseProcess)
    return [dict(vars(owner)) for owner in owners]


def _os_thread_count():
    return len(os.listdir("/proc/self/task"))


def _settled_os_thread_count(expected):
    # A finished run's OS threads are past every detsched code path but may still be exiting.
    for _ in range(200):
        count = _os_thread_count()
        if count <= expected:
            return count
        time.sleep(0.01)
    return _os_thread_count()


def _deadlocking_program():
    lock = threading.Lock()
    threads = _start_all([lambda: lock.acquire()] * 3 + [lambda: time.sleep(5)])
    for thread in threads:
        thread.join()


def _failing_program():
    _start_all([threading.Event().wait] * 2 + [lambda: 1 / 0])
    time.sleep(1)


def _unsupported_program():
    threading.Thread(target=threading.Event().wait, daemon=True).start()
    os.fork()


@pytest.mark.parametrize("program", [lambda: None, _deadlocking_program, _failing_program, _unsupported_program],
                         ids=["passing", "deadlock", "exception", "usage-error"])
def test_a_run_leaves_the_stdlib_and_thread_list_as_it_found_them(program):
    before_state = _patched_state()
    before_threads = threading.enumerate()
    before_count = threading.active_count()
    os_threads = _os_thread_count()
    try:
        detsched.explore(program, runs=5)
    except detsched.DetschedUsageError as exc:
        assert "not supported" in str(exc)
    assert _patched_state() == before_state
    assert threading.enumerate() == before_threads
    assert threading.active_count() == before_count
    assert _settled_os_thread_count(os_threads) <= os_threads


def test_threads_of_a_finished_run_are_not_alive_afterwards():
    made = []

    def program():
        thread = threading.Thread(target=time.sleep, args=(1,))
        thread.start()
        made.append(thread)
        thread.join()

    passes(program, runs=3)
    for thread in made:
        assert not thread.is_alive()
        thread.join()  # a finished thread can be joined at any time
