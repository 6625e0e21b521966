"""The event loop policy during a run, and running an async target in a controlled loop."""

from __future__ import annotations

import asyncio
import inspect
import itertools
import threading

from detsched._aio.loop import ControlledEventLoop
from detsched._core.ops import LogicalThread, current
from detsched._core.scheduler import Scheduler
from detsched._detect import tasks
from detsched.errors import DetschedUsageError


def run(awaitable) -> None:
    """Run an async target's awaitable to completion in a controlled loop, as ``asyncio.run`` does.

    An exception it raises fails the run, reported with its task; once it returns, tasks, coroutines
    and async generators it left behind are reported as leaks."""
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        main = loop.create_task(awaitable if inspect.iscoroutine(awaitable) else _awaited(awaitable))
        try:
            loop.run_until_complete(main)
        except (Exception, asyncio.CancelledError) as error:
            if isinstance(error, DetschedUsageError):
                raise
            loop._sched.fail(tasks.exception(error, tasks.label(main)))
        if loop._asyncgens:  # each of these costs a few steps; most tests need neither
            loop.run_until_complete(loop.shutdown_asyncgens())
        if loop._default_executor is not None:
            loop.run_until_complete(loop.shutdown_default_executor())
    finally:
        asyncio.set_event_loop(None)
        loop.close()


async def _awaited(awaitable):
    return await awaitable


class ControlledPolicy(asyncio.AbstractEventLoopPolicy):
    """The event loop policy during a run: controlled threads get controlled loops; every other
    thread is served by the policy that was installed before the run."""

    def __init__(self, sched: Scheduler):
        self.sched, self.stock = sched, asyncio.get_event_loop_policy()
        self.loops: dict[LogicalThread, asyncio.AbstractEventLoop | None] = {}  # set_event_loop per thread
        self.task_numbers = itertools.count(1)  # Task-N names restart in every run, so reports match
        self.unawaited: list[str] = []  # coroutines dropped without being awaited, as report lines

    def _controlled(self) -> LogicalThread | None:
        me = current()
        return me if me is not None and me.sched is self.sched else None

    def get_event_loop(self):
        me = self._controlled()
        if me is None:
            return self.stock.get_event_loop()
        if me not in self.loops and me is self.sched.main:  # the stock policy makes one for the main thread
            self.loops[me] = self.new_event_loop()
        loop = self.loops.get(me)
        if loop is None:
            raise RuntimeError(f"There is no current event loop in thread {threading.current_thread().name!r}.")
        return loop

    def set_event_loop(self, loop) -> None:
        me = self._controlled()
        if me is None:
            self.stock.set_event_loop(loop)
        else:
            self.loops[me] = loop

    def new_event_loop(self):
        if self._controlled() is None:
            return self.stock.new_event_loop()
        return ControlledEventLoop(self)
