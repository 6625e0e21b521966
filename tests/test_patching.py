"""Patching: code written against the stdlib runs under control however it bound the names, and
the stdlib is exactly as before after every run, even after failures and interruptions."""

import concurrent.futures
import multiprocessing
import multiprocessing.process
import os
import queue
import subprocess
import sys
import threading
import time

import pytest

import detsched
from detsched import DetschedUsageError

MODULES = (threading, queue, time, concurrent.futures, threading.Thread, os, subprocess)


def snapshot():
    return {(m.__name__ if hasattr(m, "__name__") else repr(m), k): v
            for m in MODULES for k, v in list(vars(m).items())}


USER_MODULE = """
import threading, queue
from threading import Lock, Thread, Event, current_thread
from time import sleep, monotonic

LOCK = Lock()
READY = Event()
JOBS = queue.Queue()
JOBS.put("first")

class Worker(Thread):
    def run(self):
        with LOCK:
            self.seen = (JOBS.get(), current_thread() is self)
        sleep(10)
        READY.set()

class Registry:
    guard = threading.RLock()

def main():
    start = monotonic()
    w = Worker(name="worker")
    w.start()
    READY.wait()
    w.join()
    assert w.seen == ("first", True), w.seen
    assert abs(monotonic() - start - 10) < 0.01
    assert "detsched" in repr(Registry.guard)  # a class attribute, swapped for the run
"""


def test_names_bound_at_import_are_controlled(make_module):
    module = make_module("bound_names", USER_MODULE)
    before = snapshot()
    report = detsched.explore(module.main, runs=30)
    assert report.failure is None, report
    assert snapshot() == before
    assert type(module.LOCK) is type(threading.Lock())  # the real lock is back
    assert module.JOBS.get_nowait() == "first"  # module state is the same before every run
    assert not module.READY.is_set()


def test_a_module_under_two_names_is_scanned_once_and_kept(make_module, monkeypatch):
    # as multiprocessing makes __main__ also __mp_main__: the names it binds are swapped once per
    # run, and its scan (and the rewriting of its functions) is not made again every run
    from detsched._instrument.scan import SCANS

    module = make_module("two_names", """
        from threading import Lock

        def main():
            with Lock():
                pass
    """)
    monkeypatch.setitem(sys.modules, "two_names_again", module)
    assert detsched.explore(module.main, runs=2).failure is None
    scans = [scan for scan in SCANS.current() if scan.module is module]
    assert detsched.explore(module.main, runs=5).failure is None
    assert len(scans) == 1 and [scan for scan in SCANS.current() if scan.module is module] == scans
    assert module.Lock is threading.Lock  # the real one is back


def test_locks_of_user_objects_made_at_import_are_controlled(make_module):
    # asgiref keeps ``executors = Local()`` on a class and ``Local`` takes its own RLock; a module
    # of the library's users imports a registry object made in another module.
    make_module("made_elsewhere", """
        import threading

        class Local:
            def __init__(self):
                self._lock = threading.RLock()

        REGISTRY = Local()
    """)
    module = make_module("uses_them", """
        import threading
        import made_elsewhere
        from made_elsewhere import REGISTRY

        class Sync:
            executors = made_elsewhere.Local()

        def main():
            def worker():
                for lock in (Sync.executors._lock, REGISTRY._lock):
                    with lock:
                        threading.Event().wait(0.001)  # a point inside: the other thread may run

            workers = [threading.Thread(target=worker) for _ in range(2)]
            for worker_thread in workers:
                worker_thread.start()
            for worker_thread in workers:
                worker_thread.join()
    """)
    from detsched._instrument.scan import SCANS

    def scans():
        return [scan for scan in SCANS.current() if scan.module.__name__ in ("made_elsewhere", "uses_them")]

    report = detsched.explore(module.main, runs=30, blocked_after=2)
    assert report.failure is None, report  # a real lock held under control: 'blocked'
    before = scans()
    assert detsched.explore(module.main, runs=5).failure is None
    assert len(before) == 2 and scans() == before  # REGISTRY's lock, reached from both, is swapped once
    assert type(module.Sync.executors._lock) is type(threading.RLock())  # the real locks are back
    assert type(module.REGISTRY._lock) is type(threading.RLock())


def test_stdlib_restored_after_a_failure(make_module):
    before = snapshot()
    report = detsched.explore(lambda: 1 / 0, runs=3)
    assert report.failure.kind == "exception"
    assert snapshot() == before


def test_stdlib_restored_and_threads_stopped_after_interrupt():
    before, alive = snapshot(), threading.active_count()

    def main():
        def worker():
            threading.Event().wait()

        threading.Thread(target=worker).start()
        raise KeyboardInterrupt

    detsched.explore(main, runs=1)  # KeyboardInterrupt in a controlled thread ends that run
    assert snapshot() == before
    assert threading.active_count() == alive


def test_fork_is_refused_with_a_usage_error():
    def main():
        os.fork()

    with pytest.raises(DetschedUsageError, match=r"os.fork\(\) is not supported"):
        detsched.explore(main, runs=1)


def test_subprocess_is_refused_with_a_usage_error():
    def main():
        subprocess.run(["true"])

    with pytest.raises(DetschedUsageError, match="starting a subprocess is not supported"):
        detsched.explore(main, runs=1)


def test_a_refused_subprocess_ends_the_run_even_if_the_code_catches_the_error():
    # apscheduler logs a job its process pool failed to submit and goes on; its test then waited
    # for the child's answer and failed for that, instead of saying why it cannot run.
    def main():
        try:
            subprocess.run(["true"])
        except Exception:
            pass
        raise AssertionError("went on without its child")

    with pytest.raises(DetschedUsageError, match="starting a subprocess is not supported"):
        detsched.explore(main, runs=1)



@pytest.mark.skipif("forkserver" not in multiprocessing.get_all_start_methods(), reason="no forkserver here")
def test_a_child_process_is_refused_even_from_a_running_forkserver():
    # A forkserver started before the run makes children with neither a fork nor an exec here:
    # pebble's tests then ran under control beside real children and waited on their pipes.
    context = multiprocessing.get_context("forkserver")
    warm_up = context.Process(target=int)
    warm_up.start()
    warm_up.join()

    def main():
        child = context.Process(target=int)
        child.start()
        child.join()

    with pytest.raises(DetschedUsageError, match="starting a child process is not supported"):
        detsched.explore(main, runs=1)
    assert multiprocessing.process.BaseProcess.start.__module__ == "multiprocessing.process"  # restored

def test_real_functions_outside_controlled_threads():
    results = []

    def main():
        results.append(time.time())

    detsched.explore(main, runs=1)
    assert len(results) == 2 and all(1_700_000_000.0 <= t < 1_700_000_000.001 for t in results)
    assert time.time() > 1_700_000_000.0 + 10**7  # outside the run: the real clock


SUBCLASSES_AT_IMPORT = """
import threading
from concurrent.futures import ThreadPoolExecutor

POOL = ThreadPoolExecutor(max_workers=2)

class Signal(threading.Condition):
    def fire(self):
        with self:
            self.notify_all()

def main():
    signal = Signal()
    fired = []

    def waiter():
        with signal:
            signal.wait_for(lambda: fired)

    futures = [POOL.submit(waiter) for _ in range(2)]
    fired.append(True)
    signal.fire()
    for f in futures:
        f.result()
"""


def test_condition_subclass_and_module_level_pool_are_controlled(make_module):
    module = make_module("subclasses_at_import", SUBCLASSES_AT_IMPORT)
    report = detsched.explore(module.main, runs=50)
    assert report.failure is None, report
    assert type(module.POOL) is concurrent.futures.ThreadPoolExecutor  # the real pool is back
