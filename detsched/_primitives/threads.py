"""Controlled threads: the methods that make ``threading.Thread`` (and every subclass, including
ones defined at import time, and ``threading.Timer``) run as logical threads during a run.

Rather than a look-alike class, the real ``threading.Thread`` gets these methods for the duration
of a run, so ``isinstance`` checks, ``class Worker(Thread)`` and ``from threading import Thread``
all keep working. detsched owns the thread's life cycle (start, join, is_alive) instead of the
stock ``_tstate_lock``/handle machinery, which is not safe to drive from a scheduler.
"""

from __future__ import annotations

import _thread
import itertools
import threading

from detsched._core.ops import LogicalThread, Op, current
from detsched._primitives.sync import timed_wait

#: What ``threading.Event()`` is made of, by the names it is looked up by in ``threading``.
_REAL_EVENT_PARTS = {"Event": threading.Event, "Condition": threading.Condition, "Lock": threading.Lock}
_real_init = threading.Thread.__init__
_real_start = threading.Thread.start
_real_join = threading.Thread.join
_real_is_alive = threading.Thread.is_alive
_real_daemon = threading.Thread.daemon
_real_repr = threading.Thread.__repr__


def _logical(thread: threading.Thread) -> LogicalThread | None:
    return thread.__dict__.get("_ds_logical")


def init(self, group=None, target=None, name=None, args=(), kwargs=None, *, daemon=None):
    # The real __init__ keeps the object valid for the stdlib after the run; it must make a real
    # Event, of a real Condition and Lock, for its private ``_started`` flag (controlled ones would
    # belong to the run, and cost labels nobody reads). Only one controlled thread runs at a time,
    # so this brief swap is not observed by other controlled code.
    namespace = threading.__dict__
    patched = {name: namespace[name] for name in _REAL_EVENT_PARTS}
    namespace.update(_REAL_EVENT_PARTS)
    try:
        _real_init(self, group, target, name, args, kwargs, daemon=daemon)
    finally:
        namespace.update(patched)
    self._ds_logical = None


def start(self) -> None:
    me = current()
    if me is None:
        return _real_start(self)
    if not getattr(self, "_initialized", False):
        raise RuntimeError("thread.__init__() not called")
    if "_ds_logical" in self.__dict__ and self._ds_logical is not None:
        raise RuntimeError("threads can only be started once")
    # The point comes before the effect, like every operation's; the new thread can run from the
    # starting thread's next point on.
    me.sched.wait(me, Op("start", self))
    lt = me.sched.spawn(self, self.name, self.daemon, lambda: run_registered(self, self.run))
    _bind(self, lt, lt.os_ident)


def _bind(thread: threading.Thread, lt: LogicalThread, ident: int) -> None:
    """Tie ``thread`` to its logical thread. The stdlib's own state is set to "started and
    finished" at once: during the run only the patched methods read the thread's state, and after
    it (when the stdlib's methods are back) every controlled thread has ended."""
    thread._ds_logical = lt
    thread._ident = ident
    thread._started._flag = True
    if "_handle" in thread.__dict__:  # 3.13+: a thread handle that is already done
        thread._handle = _thread._make_thread_handle(ident)
        thread._handle._set_done()
    else:
        thread._is_stopped, thread._tstate_lock = True, None


def join(self, timeout: float | None = None) -> None:
    lt = _logical(self)
    me = current()
    if me is None or lt is None:
        if lt is None and me is not None and not getattr(self, "_initialized", False):
            raise RuntimeError("Thread.__init__() not called")
        if lt is None:
            return _real_join(self, timeout)
        if not lt.finished:
            raise RuntimeError(f"cannot join {lt.label} from a thread detsched does not control")
        return None
    if lt is me:
        raise RuntimeError("cannot join current thread")
    if timed_wait(me, "join", self, lambda: lt.finished, timeout, lambda: lt):
        me.sched.receive(me, lt)


def is_alive(self) -> bool:
    lt = _logical(self)
    if lt is None:
        return _real_is_alive(self)
    me = current()
    if me is not None:
        me.sched.poll(me, Op("is_alive?", self), lambda: lt.finished)
        if lt.finished:
            me.sched.receive(me, lt)
    return not lt.finished


def _get_daemon(self) -> bool:
    return _real_daemon.fget(self)


def _set_daemon(self, daemonic: bool) -> None:
    lt = _logical(self)
    if lt is not None:
        raise RuntimeError("cannot set daemon status of active thread")
    _real_daemon.fset(self, daemonic)


daemon = property(_get_daemon, _set_daemon)


def thread_repr(self) -> str:
    lt = _logical(self)
    if lt is None:
        return _real_repr(self)
    status = "stopped" if lt.finished else "started"
    if self._daemonic:
        status += " daemon"
    return f"<{type(self).__name__}({self._name}, {status} {lt.os_ident})>"


def run_registered(thread: threading.Thread, body) -> None:
    """Run ``body`` with ``thread`` in threading's registry, so ``current_thread()`` (even bound
    before the run) returns it, as the stdlib's own bootstrap does."""
    ident = _thread.get_ident()
    if _logical(thread) is None:  # T0: its Thread object is made before its logical thread
        _bind(thread, current(), ident)
    if hasattr(thread, "_native_id"):  # only the thread itself can learn its native id
        thread._native_id = _thread.get_native_id()
    with threading._active_limbo_lock:
        threading._active[ident] = thread
    if type(thread).run is threading.Thread.run:  # the target is what runs
        current().sched.world.handed_over(getattr(thread, "_target", None), f"{thread.name}'s target")
    try:
        body()
    finally:
        # As the stdlib's bootstrap ends: ``_delete`` looks the thread up with ``get_ident()``, which
        # libraries that track threads hook to see them exit.
        try:
            thread._delete()
        except KeyError:  # a subclass or library removed it already
            pass


def main_thread() -> threading.Thread:
    me = current()
    return me.sched.main.thread if me is not None else _real_main_thread()


def enumerate_threads() -> list[threading.Thread]:
    me = current()
    if me is None:
        return _real_enumerate()
    return [t.thread for t in me.sched.live]


def active_count() -> int:
    return len(enumerate_threads())


_real_main_thread = threading.main_thread
_real_enumerate = threading.enumerate


def make_main_thread() -> threading.Thread:
    """The Thread object T0 runs as (named MainThread, like the thread a script starts in)."""
    thread = threading.Thread.__new__(threading.Thread)
    init(thread, name="MainThread", daemon=False)
    return thread


def fresh_name_counter():
    """Thread-N names restart at 1 in every run, so names in reports are the same on every run."""
    return itertools.count(1).__next__


#: Methods of ``threading.Thread`` replaced during a run.
THREAD_METHODS = {"__init__": init, "start": start, "join": join, "is_alive": is_alive,
                  "daemon": daemon, "__repr__": thread_repr}
