"""Carriers: the OS threads that logical threads run on, parked between runs and reused.

Starting and joining an OS thread costs about as much as all the scheduling of a short run (a raw
start and join takes ~75 us here, a run of 2 threads x 20 lock operations schedules for ~220 us),
so the OS thread of a finished logical thread waits a moment for the next one to carry. A reused
OS thread must look new to the code it runs (``_renew``): an empty ``contextvars`` context, none
of the ``threading.local`` values the logical thread before it set, no trace or profile function.
Where that cannot be made sure -- Python 3.13+ keeps each thread's ``threading.local`` values where
Python code cannot reach them -- every logical thread gets an OS thread of its own, as before.

A carrier is its OS thread and one lock, ``park``: locked while the thread runs or waits, released
to wake it. The logical thread it carries parks on that same lock (``LogicalThread.park``), so a
logical thread's first step is the scheduler's ordinary hand-over: giving a run a thread costs no
switch to the new OS thread and back.
"""

from __future__ import annotations

import _thread
import contextvars
import os
import sys
from typing import Callable

_allocate_lock = _thread.allocate_lock
_start_new_thread = _thread.start_new_thread

#: Seconds an idle carrier waits for a logical thread to carry before its OS thread ends.
IDLE_SECONDS = 1.0
#: Idle carriers kept at most; more end at once.
MAX_IDLE = 64


class Carrier:
    """An OS thread, its lock, and what it is to run next."""

    __slots__ = ("park", "ident", "task", "stack_size")

    def __init__(self, task: Callable[[], None]):
        self.park = _allocate_lock()  # Invariant: locked, except between a release and the acquire it wakes
        self.park.acquire()
        self.task: Callable[[], None] | None = task  # set before ``park`` is first released
        self.stack_size = _thread.stack_size()
        self.ident = _start_new_thread(_serve, (self,))


_guard = _allocate_lock()
# Invariant: carriers parked in ``_rest`` with no task, most recently parked last (guarded by
# ``_guard``). A carrier leaves the list when a task is given to it or when it ends.
_idle: list[Carrier] = []
#: Whether a finished carrier may carry another logical thread (see ``_renew``); turned off for
#: good the first time renewing a thread's state does not work.
_reusable = True


def carry(task: Callable[[], None]) -> Carrier:
    """An OS thread that runs ``task()`` once its carrier's ``park`` lock is released (the first
    step of the logical thread ``task`` runs). ``task`` must not raise."""
    size = _thread.stack_size()
    with _guard:
        # The most recently parked first: its stack is warm in the cache.
        for i in range(len(_idle) - 1, -1, -1):
            carrier = _idle[i]
            if carrier.stack_size == size:  # a thread made for another ``threading.stack_size()`` would differ
                del _idle[i]
                carrier.task = task
                return carrier
    return Carrier(task)


def _serve(carrier: Carrier) -> None:
    carrier.park.acquire()
    while True:
        task, carrier.task = carrier.task, None
        contextvars.Context().run(task)  # a new OS thread starts in an empty context, too
        if not (_reusable and _renew() and _rest(carrier)):
            return


def _rest(carrier: Carrier) -> bool:
    """Park ``carrier`` idle; True once it was given a task and its logical thread's first step
    came, False if none came within ``IDLE_SECONDS`` (its OS thread then ends)."""
    with _guard:
        if len(_idle) >= MAX_IDLE:
            return False
        _idle.append(carrier)
    while not carrier.park.acquire(timeout=IDLE_SECONDS):
        with _guard:
            if carrier in _idle:  # nobody took it
                _idle.remove(carrier)
                return False
        # Taken, but its logical thread has not been scheduled yet: go on waiting.
    return True


def _state_dict_getter() -> Callable[[], dict | None]:
    """A function returning the calling OS thread's state dict (``PyThreadState_GetDict``), where
    Python 3.10-3.12 keep its ``threading.local`` values; it returns None where there is none."""
    try:
        import ctypes
    except ImportError:
        return lambda: None
    get = ctypes.pythonapi.PyThreadState_GetDict
    get.restype, get.argtypes = ctypes.c_void_p, []  # a borrowed reference: not py_object, which would drop it
    as_object = ctypes.py_object

    def state_dict() -> dict | None:
        address = get()
        return ctypes.cast(address, as_object).value if address else None

    return state_dict


_thread_state_dict = _state_dict_getter()
_probe = _thread._local()


def _renew() -> bool:
    """Make the calling carrier look like a new OS thread; False if that did not work, which ends
    reuse for the rest of the process."""
    global _reusable
    if sys.gettrace() is not None:
        sys.settrace(None)
    if sys.getprofile() is not None:
        sys.setprofile(None)
    _probe.seen = True
    state = _thread_state_dict()
    if state is not None:
        # Each ``threading.local`` keeps this thread's values under a key "thread.local.<address>";
        # dropping the key drops them, as the thread's exit would, and the next use starts afresh.
        for key in [key for key in state if type(key) is str and key.startswith("thread.local.")]:
            del state[key]
    if getattr(_probe, "seen", False):
        _reusable = False
        return False
    return True


def _forget_after_fork() -> None:
    """A forked child has none of its parent's other OS threads."""
    global _guard
    _guard = _allocate_lock()
    _idle.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_after_fork)
