"""The standard library's names that a run replaces: ``threading``, ``queue``, ``time`` and
``concurrent.futures`` point at the controlled twins, ``os.fork``, subprocesses and child processes
are refused, and the real ``Thread`` class gets controlled methods. Calls from threads detsched
does not control (pytest's own, a watchdog) still reach the real functions: every patched function
checks who calls."""

from __future__ import annotations

import _thread
import concurrent.futures
import concurrent.futures.thread
import os
import queue
import sys
import threading
import time

from detsched._core.ops import Op, current
from detsched._primitives import futures, queues, sync, threads
from detsched.errors import DetschedUsageError

#: Stands for an attribute a run set that did not exist before it (restoring deletes it).
MISSING = object()


def _virtual(real, virtual):
    def patched(*args):
        me = current()
        return real(*args) if me is None else virtual(me.sched.clock, *args)

    patched.__name__, patched.__doc__ = real.__name__, real.__doc__
    return patched


def _sleep(clock, seconds):
    if seconds < 0:
        raise ValueError("sleep length must be non-negative")
    me = current()
    if seconds == 0:  # "let others run": a check that never succeeds, so a loop of them spins
        me.sched.poll(me, Op("sleep", None), _never)
    else:
        me.sched.wait(me, Op(f"sleep({seconds:g})", None, _never, clock.deadline(seconds)))


def _never() -> bool:
    return False


def _unsupported(what: str, real):
    def refuse(*args, **kwargs):
        me = current()
        if me is None:
            return real(*args, **kwargs)
        me.sched.refuse(DetschedUsageError(
            f"{what} is not supported under detsched: a child process would run outside its control. "
            "Test the threaded part on its own, or fake the process boundary."
        ))

    return refuse


def _module_patches() -> list[tuple[object, str, object]]:
    """(owner, attribute, controlled value) for every stdlib name detsched replaces."""
    real_time = time
    patches = [
        (threading, "Lock", sync.Lock), (threading, "RLock", sync.RLock),
        (threading, "Condition", sync.Condition), (threading, "Semaphore", sync.Semaphore),
        (threading, "BoundedSemaphore", sync.BoundedSemaphore), (threading, "Event", sync.Event),
        (threading, "Barrier", sync.Barrier),
        # The stdlib's Condition makes its waiter locks with this: subclasses defined at import use it.
        (threading, "_allocate_lock", sync.Lock), (threading, "main_thread", threads.main_thread),
        (threading, "enumerate", threads.enumerate_threads), (threading, "active_count", threads.active_count),
        (queue, "Queue", queues.Queue), (queue, "LifoQueue", queues.LifoQueue),
        (queue, "PriorityQueue", queues.PriorityQueue), (queue, "SimpleQueue", queues.SimpleQueue),
        (concurrent.futures, "ThreadPoolExecutor", futures.ThreadPoolExecutor),
        (concurrent.futures.thread, "ThreadPoolExecutor", futures.ThreadPoolExecutor),
        (concurrent.futures, "wait", futures.wait), (concurrent.futures._base, "wait", futures.wait),
    ]
    clock_functions = {
        "sleep": _sleep,
        "monotonic": lambda c: c.monotonic(),
        "monotonic_ns": lambda c: int(c.monotonic() * 1e9),
        "perf_counter": lambda c: c.monotonic(),
        "perf_counter_ns": lambda c: int(c.monotonic() * 1e9),
        "time": lambda c: c.wall(),
        "time_ns": lambda c: int(c.wall() * 1e9),
    }
    virtual = {name: _virtual(getattr(real_time, name), function) for name, function in clock_functions.items()}
    patches += [(real_time, name, function) for name, function in virtual.items()]
    # The stdlib's own aliases of time.monotonic, bound at import.
    patches += [(threading, "_time", virtual["monotonic"]), (queue, "time", virtual["monotonic"])]
    if hasattr(threading, "activeCount"):
        patches.append((threading, "activeCount", threads.active_count))
    for name in ("fork", "forkpty", "system", "posix_spawn", "posix_spawnp"):
        if hasattr(os, name):
            patches.append((os, name, _unsupported(f"os.{name}()", getattr(os, name))))
    import subprocess

    patches.append((subprocess.Popen, "_execute_child",
                    _unsupported("starting a subprocess", subprocess.Popen._execute_child)))
    try:
        import _posixsubprocess  # used directly by multiprocessing
    except ImportError:  # not on Windows
        pass
    else:
        patches.append((_posixsubprocess, "fork_exec",
                        _unsupported("starting a subprocess", _posixsubprocess.fork_exec)))
    for name, method in threads.THREAD_METHODS.items():
        patches.append((threading.Thread, name, method))
    return patches


def loaded_module_patches() -> list[tuple[object, str, object]]:
    """(owner, attribute, controlled value) for the stdlib modules a run patches only once loaded,
    so that ``import detsched`` does not load them.

    ``multiprocessing``: a process started through a forkserver that was running before the run
    needs no fork or exec in this process, so only ``Process.start`` itself can refuse it (without
    that, its real child runs outside control while controlled threads wait on its pipes)."""
    process = sys.modules.get("multiprocessing.process")
    if process is None:
        return []
    if not _LOADED_PATCHES:
        start = process.BaseProcess.start
        _LOADED_PATCHES.append((process.BaseProcess, "start", _unsupported("starting a child process", start)))
    return _LOADED_PATCHES


# Invariant: empty, or the patches of ``loaded_module_patches`` (made once, when first loaded).
_LOADED_PATCHES: list[tuple[object, str, object]] = []


def _real_values() -> dict[int, object]:
    """Controlled twin by id() of each real stdlib callable a user module may have bound."""
    twins = {}
    for owner, name, value in MODULE_PATCHES:
        real = owner.__dict__.get(name, MISSING) if isinstance(owner, type) else getattr(owner, name, MISSING)
        if real is not MISSING and callable(real) and not isinstance(owner, type) and not name.startswith("_"):
            twins[id(real)] = (real, value)
    twins[id(_thread.allocate_lock)] = (_thread.allocate_lock, sync.Lock)
    return twins


#: (owner, attribute, controlled value) set for the duration of every run.
MODULE_PATCHES = _module_patches()
#: Controlled twin by id() of each real stdlib callable a user module may have bound.
REAL_TWINS = _real_values()
