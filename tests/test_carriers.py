"""The OS threads that carry logical threads are reused across runs, and a reused one looks new to
the code it runs: no ``threading.local`` values, context variables or trace function of the
logical thread it carried before."""

import contextvars
import os
import select
import signal
import sys
import threading
import time
import warnings

import pytest

import detsched
from detsched._core import carriers

LOCAL = threading.local()  # made before any run, as module-level thread-locals are
REQUEST_ID = contextvars.ContextVar("REQUEST_ID", default=None)


class Connection(threading.local):
    """A thread-local with defaults: every new thread runs ``__init__`` again."""

    def __init__(self):
        self.opened = 0


CONNECTION = Connection()


def _in_two_threads(body):
    threads = [threading.Thread(target=body) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def _fresh_thread_state():
    assert getattr(LOCAL, "seen", None) is None, "a thread-local value of an earlier thread"
    LOCAL.seen = True
    assert CONNECTION.opened == 0, "a thread-local subclass not initialised afresh"
    CONNECTION.opened += 1
    assert REQUEST_ID.get() is None, "a context variable of an earlier thread"
    REQUEST_ID.set("request")
    assert sys.gettrace() is not _set_by_a_thread, "a trace function an earlier thread set"
    sys.settrace(_set_by_a_thread)


def _set_by_a_thread(frame, event, arg):
    return None


def test_a_thread_sees_no_thread_local_context_or_trace_state_of_earlier_runs_threads():
    report = detsched.explore(lambda: _in_two_threads(_fresh_thread_state), runs=30)
    assert report.failure is None, report.failure and report.failure.details
    assert report.runs == 30


def test_os_threads_are_reused_where_thread_locals_can_be_renewed():
    idents = set()

    def record():
        idents.add(threading.get_ident())

    detsched.explore(lambda: _in_two_threads(record), runs=40)
    if carriers._reusable:
        # T0 and two workers in every run: a handful of OS threads, not one per logical thread.
        assert len(idents) <= 6, idents
    else:  # Python 3.13+: a new OS thread for each
        assert sys.version_info >= (3, 13)


def test_idle_carriers_end_after_a_while(monkeypatch):
    monkeypatch.setattr(carriers, "IDLE_SECONDS", 0.05)
    detsched.explore(lambda: _in_two_threads(lambda: None), runs=3)
    deadline = time.monotonic() + 30
    while carriers._idle and time.monotonic() < deadline:
        time.sleep(0.02)
    assert carriers._idle == []


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork here")
def test_a_forked_child_forgets_its_parents_idle_carriers():
    detsched.explore(lambda: _in_two_threads(lambda: None), runs=3)
    assert carriers._idle or not carriers._reusable
    read, write = os.pipe()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # 3.12+: fork() of a process with threads
        pid = os.fork()
    if pid == 0:  # the child: its parent's idle OS threads are not there to wake
        try:
            forgot = not carriers._idle
            report = detsched.explore(lambda: _in_two_threads(lambda: None), runs=3)
            os.write(write, b"ok" if forgot and report.failure is None else b"no")
        finally:
            os._exit(0)
    os.close(write)
    try:
        answered, _, _ = select.select([read], [], [], 120)  # a generous watchdog: a hung child fails, not hangs
        if not answered:
            os.kill(pid, signal.SIGKILL)
        assert answered and os.read(read, 2) == b"ok"
    finally:
        os.waitpid(pid, 0)
        os.close(read)


def test_a_thread_still_unwinding_when_its_run_is_stopped_leaves_its_os_thread_sound(monkeypatch):
    # The run ends where a subprocess is refused, while the thread goes on through a finally block
    # that waits in a C call; stopping the run must not wake its OS thread once more, which would
    # then find nothing to carry (and die of it) the next time it parked.
    import subprocess

    lost = []
    monkeypatch.setattr(sys, "unraisablehook", lambda unraisable: lost.append(unraisable.exc_value))

    def refused_then_waits():
        try:
            subprocess.run(["true"])
        finally:
            select.select([], [], [], 0.02)

    for _ in range(20):
        with pytest.raises(detsched.DetschedUsageError):
            detsched.explore(refused_then_waits, runs=1)
    time.sleep(0.5)  # idle carriers park again
    assert lost == []
