"""The controller: the caller's thread during a run. It starts the first logical thread (T0, running
the target), waits for the run to end, doubles as the watchdog that reports a thread stuck in code
detsched does not control, and makes sure no thread outlives its run."""

from __future__ import annotations

import os
from typing import Callable

from detsched._core import outside, pinning
from detsched._core.clock import real_monotonic, real_sleep
from detsched._core.execution import ExecutionResult
from detsched._core.ops import LogicalThread
from detsched._core.scheduler import Scheduler
from detsched._detect import threads as detect
from detsched.errors import RunAborted

#: Seconds the controller waits for an aborted thread to unwind before giving up on it.
UNWIND_TIMEOUT = 2.0
#: Run each execution's threads on one CPU (see ``_pin_to_one_cpu``). Not Final: turn it off where
#: threads or thread pools that the code under test starts must keep every CPU.
PIN_TO_ONE_CPU = True
#: Seconds between two looks of the watchdog.
WATCH_INTERVAL = 0.05


def run(sched: Scheduler, main_thread, body: Callable[[], None]) -> ExecutionResult:
    """Run ``body`` as T0 (``main_thread``) under ``sched``; return the frozen record of the run
    once every controlled thread is done, even if the controller is interrupted (Ctrl-C)."""
    cpus = _pin_to_one_cpu()
    outside.watch(sched.execution.escapes)
    try:
        sched.main = sched.spawn(main_thread, "MainThread", False, body)
        sched.running = sched.main
        sched.main.park.release()
        _watch(sched)
    finally:
        _unwind(sched)
        outside.watch(None)
        if cpus is not None:
            os.sched_setaffinity(0, cpus)
    return sched.result()


def _watch(sched: Scheduler) -> None:
    """Wait for the run to end; report a thread that stops reaching scheduling points."""
    last_steps, since = -1, real_monotonic()
    while not sched.ended.acquire(timeout=WATCH_INTERVAL):
        if sched.steps != last_steps or sched.waiting_outside:
            last_steps, since = sched.steps, real_monotonic()
        elif real_monotonic() - since > sched.limits.blocked_after:
            sched.fail_from_watchdog(detect.blocked_outside(sched.running, sched.limits.blocked_after))
            return


def _unwind(sched: Scheduler) -> None:
    """Stop every thread still alive, one at a time, so none outlives its run."""
    sched.aborting = True
    for t in list(sched.threads):
        if not t.exited.locked():
            continue  # already gone
        if t is sched.running:
            if sched.failure is not None and sched.failure.kind == "blocked":
                # Stuck outside our control: stop it if it is running Python code (a loop with no
                # point in it). One blocked in a C call (real I/O, a real lock) is left as it is.
                if _runs_python(t):
                    _interrupt(t)
                    _wait_for_exit(sched, t)
                continue
            # It holds the baton, so it is not parked: it unwinds at its next point by itself.
            # Releasing its lock would wake its OS thread the next time it parks, with nothing to run.
        elif t.park.locked() and not t.finished:
            t.park.release()
        if t.detached:
            continue  # goes on outside control: nothing to wait for
        _wait_for_exit(sched, t)


def _wait_for_exit(sched: Scheduler, thread) -> None:
    """Wait for a stopped thread to end; one that does not is a finding of the run, not a silence."""
    if thread.exited.acquire(timeout=UNWIND_TIMEOUT):
        thread.exited.release()
        return
    sched.execution.escapes.append(outside.Escape(
        ("outlived", thread.name),
        f"thread {thread.name!r} was still running {UNWIND_TIMEOUT:g} s after its run was stopped (it went on "
        "after the run's end, e.g. catching the exception that stops it, or waiting in a C call), so it may "
        "have run beside later runs"))


def _pin_to_one_cpu() -> set[int] | None:
    """Keep the controller, and so every thread it starts, on one CPU for the run (the quietest
    one it may use: ``pinning``); return the CPUs to give back afterwards (None:
    nothing changed)."""
    if not PIN_TO_ONE_CPU or not hasattr(os, "sched_setaffinity"):
        return None
    try:
        cpus = os.sched_getaffinity(0)
        if len(cpus) < 2:
            return None
        os.sched_setaffinity(0, {pinning.choose(cpus)})
    except OSError:  # not allowed here (some containers): run unpinned
        return None
    return cpus


def _runs_python(t: LogicalThread) -> bool:
    """Whether ``t`` keeps a CPU busy (a loop), rather than waiting in a C call (real I/O, a real
    lock) that an exception raised in it could not interrupt anyway."""
    import time

    try:
        cpu_clock = time.pthread_getcpuclockid(t.os_ident)
        before = time.clock_gettime(cpu_clock)
        real_sleep(0.05)
        return time.clock_gettime(cpu_clock) - before > 0.01
    except (AttributeError, OSError):  # no per-thread CPU clocks here
        return False


def _interrupt(t: LogicalThread) -> None:
    """Raise ``RunAborted`` in ``t`` at its next bytecode."""
    import ctypes

    ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(t.os_ident), ctypes.py_object(RunAborted))
