"""Regression tests for false alarms found by running the own test suites of real libraries under
detsched: programs that pass plainly must pass under detsched, and every session must end."""

import queue
import threading

import detsched
from detsched import clock


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
