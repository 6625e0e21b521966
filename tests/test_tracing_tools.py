"""Debuggers and profilers keep working in controlled threads: a trace function (what pdb sets)
sees the lines a controlled thread runs and takes no scheduling point inside detsched's own calls,
``threading.settrace`` reaches the threads a run starts, and cProfile enabled inside a run
profiles it without disturbing it. (coverage.py has its own
tests in ``test_plugin_coverage.py``.)"""

import cProfile
import os
import pstats
import sys
import threading

import detsched
from detsched._explore.explorer import run_once
from detsched._explore.targets import resolve
from detsched.settings import Limits
from detsched.strategies import PositionReplay


def add_twice(box):
    box.append(1)
    box.append(2)


def lines_traced_in(function) -> list[int]:
    """The lines of ``add_twice`` a trace function saw while ``function`` ran."""
    seen = []

    def tracer(frame, event, arg):
        if frame.f_code is add_twice.__code__ and event == "line":
            seen.append(frame.f_lineno - add_twice.__code__.co_firstlineno)
        return tracer

    return seen, tracer


def test_a_trace_function_set_inside_a_run_sees_the_lines_it_runs():
    seen, tracer = lines_traced_in(add_twice)
    runs = []

    def target():
        runs.append(1)
        sys.settrace(tracer)
        try:
            add_twice([])
        finally:
            sys.settrace(None)

    assert detsched.explore(target, runs=2).failure is None
    assert seen == [1, 2] * len(runs)  # no line event the plain function has not
    assert sys.gettrace() is None


class InternalCallCounter:
    """A trace function with a store in it, called for detsched's own calls as for the user's."""

    def __init__(self):
        self.internal_calls = 0

    def trace(self, frame, event, arg):
        if "detsched" in frame.f_code.co_filename.split(os.sep):
            self.internal_calls += 1
        return None


COUNTER = InternalCallCounter()


def set_the_counter_and_leave_it_set():
    sys.settrace(COUNTER.trace)  # not unset: it stays until the thread ends, in detsched's code


def two_threads_each_setting_the_counter():
    threads = [threading.Thread(target=set_the_counter_and_leave_it_set) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def test_a_trace_function_running_for_detscheds_own_calls_takes_no_scheduling_point():
    result = run_once(resolve(two_threads_each_setting_the_counter), PositionReplay(()), 0, Limits(), tracing=True)
    assert result.failure is None
    assert COUNTER.internal_calls > 0  # it did run inside detsched ...
    # ... and its store there was no step of the thread: only its own code and the threads' are.
    assert not [row for row in result.trace if "internal_calls" in row.op], result.trace


def test_threading_settrace_reaches_the_threads_a_run_starts():
    seen, tracer = lines_traced_in(add_twice)

    def target():
        worker = threading.Thread(target=add_twice, args=([],))
        worker.start()
        worker.join()
        runs.append(1)

    runs = []
    threading.settrace(tracer)
    try:
        assert detsched.explore(target, runs=1).failure is None
    finally:
        threading.settrace(None)
    assert seen == [1, 2] * len(runs)


def test_cprofile_enabled_inside_a_run_profiles_it():
    profiles = []

    def target():
        profiler = cProfile.Profile()
        profiler.enable()
        worker = threading.Thread(target=add_twice, args=([],))
        worker.start()
        worker.join()
        add_twice([])
        profiler.disable()
        profiles.append(profiler)

    report = detsched.explore(target, runs=3)
    assert report.failure is None, report.failure
    called = {function for (_, _, function) in pstats.Stats(profiles[-1]).stats}
    assert "add_twice" in called
