"""Controlled ``concurrent.futures.ThreadPoolExecutor``.

The stdlib pool feeds workers through a C ``SimpleQueue`` and a module-level lock made at import,
and its worker count depends on the machine's CPU count; this twin hands work over at scheduling
points and uses a fixed default worker count, so a schedule replays on any machine. Futures are the
stdlib's ``Future``: made during a run, they wait on controlled conditions. ``wait``,
``as_completed`` and ``Executor.map`` are the stdlib's, running on controlled primitives.
"""

from __future__ import annotations

import itertools
import threading
from collections import deque
from concurrent.futures import ALL_COMPLETED, FIRST_EXCEPTION, Executor, Future
from concurrent.futures import wait as _real_wait
from concurrent.futures.thread import BrokenThreadPool
from concurrent.futures.thread import ThreadPoolExecutor as _RealThreadPoolExecutor

from detsched._core.ops import Op, current
from detsched._primitives.sync import make_label, real_outside_control

#: Workers when ``max_workers`` is not given. The stdlib derives it from the CPU count; a fixed
#: number keeps schedules identical across machines.
DEFAULT_MAX_WORKERS = 8

class _TrackedFuture(Future):
    """A pool's ``Future`` that knows whether anybody looked at its outcome: an exception stored in
    one that nobody reads is a failure lost in silence (asyncio logs "exception was never
    retrieved" for its own futures)."""

    _ds_read = False  # result(), exception() or a done callback (asyncio.wrap_future) looked
    _ds_raised_in = ""  # the worker whose task raised, for the report

    def result(self, timeout=None):
        self._ds_read = True
        return super().result(timeout)

    def exception(self, timeout=None):
        self._ds_read = True
        return super().exception(timeout)

    def add_done_callback(self, fn) -> None:
        self._ds_read = True
        super().add_done_callback(fn)


def wait(fs, timeout=None, return_when=ALL_COMPLETED):
    """``concurrent.futures.wait`` during a run: waiting with ``FIRST_EXCEPTION`` is how a program
    looks for its tasks' exceptions, so those futures count as read."""
    fs = set(fs)
    if return_when == FIRST_EXCEPTION:
        for future in fs:
            if isinstance(future, _TrackedFuture):
                future._ds_read = True
    return _real_wait(fs, timeout, return_when)


def unread_failure(failed: list) -> tuple[BaseException, str] | None:
    """The first task exception among ``failed`` (a run's ``World.failed_futures``) that no one
    retrieved from its Future, with the worker it was raised in."""
    for future in failed:
        if not future._ds_read and not future.cancelled():
            return future._exception, future._ds_raised_in
    return None


@real_outside_control(_RealThreadPoolExecutor)
class ThreadPoolExecutor(Executor):
    """``concurrent.futures.ThreadPoolExecutor`` under control."""

    def __init__(self, max_workers: int | None = None, thread_name_prefix: str = "",
                 initializer=None, initargs=()):
        if max_workers is None:
            max_workers = DEFAULT_MAX_WORKERS
        if max_workers <= 0:
            raise ValueError("max_workers must be greater than 0")
        if initializer is not None and not callable(initializer):
            raise TypeError("initializer must be a callable")
        self._max_workers = max_workers
        if not thread_name_prefix:
            me = current()
            numbers = me.sched.world.pool_numbers if me is not None else itertools.count()
            thread_name_prefix = f"ThreadPoolExecutor-{next(numbers)}"
        self._thread_name_prefix = thread_name_prefix
        self._initializer, self._initargs = initializer, initargs
        self._work: deque = deque()
        self._threads: list[threading.Thread] = []
        # As the stdlib's idle semaphore: one token per task a worker has finished. A submit takes a
        # token instead of starting a worker; a worker that has not finished a task yet does not count.
        self._idle_tokens = 0
        self._shutdown = False
        self._broken: str | None = None
        self.label = make_label("ThreadPoolExecutor")

    def submit(self, fn, /, *args, **kwargs) -> Future:
        me = current()
        if me is not None:
            me.sched.wait(me, Op("submit", self))
        if self._broken:
            raise BrokenThreadPool(self._broken)
        if self._shutdown:
            raise RuntimeError("cannot schedule new futures after shutdown")
        future = _TrackedFuture()
        self._work.append((future, fn, args, kwargs))
        if self._idle_tokens:
            self._idle_tokens -= 1
        elif len(self._threads) < self._max_workers:
            worker = threading.Thread(name=f"{self._thread_name_prefix}_{len(self._threads)}",
                                      target=self._worker)
            self._threads.append(worker)
            worker.start()
        return future

    def _has_work(self) -> bool:
        return bool(self._work) or self._shutdown

    def _worker(self) -> None:
        if self._initializer is not None:
            try:
                self._initializer(*self._initargs)
            except BaseException:
                self._broken = "A thread initializer failed, the thread pool is not usable anymore"
                while self._work:
                    future = self._work.popleft()[0]
                    future.set_exception(BrokenThreadPool(self._broken))
                return
        me = current()
        while True:
            me.idle = True  # blocked here at the end of a test is not a leak
            me.sched.wait(me, Op("wait-for-work", self, self._has_work))
            me.idle = False
            if not self._work:
                return  # shut down
            future, fn, args, kwargs = self._work.popleft()
            if future.set_running_or_notify_cancel():
                me.sched.world.handed_over(fn, f"{self.label} task")
                try:
                    result = fn(*args, **kwargs)
                except BaseException as exc:
                    future._ds_raised_in = me.label
                    future.set_exception(exc)
                    me.sched.world.failed_futures.append(future)
                else:
                    future.set_result(result)
            del future, fn, args, kwargs
            self._idle_tokens += 1

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        me = current()
        if me is not None:
            me.sched.wait(me, Op("shutdown", self))
        self._shutdown = True
        if cancel_futures:
            while self._work:
                self._work.popleft()[0].cancel()
        if wait:
            for worker in self._threads:
                worker.join()
