"""The patches of asyncio during a run: its primitives record what the detectors need (where user
code made them, who holds a lock, when an event was set or cleared, a notify nobody heard), and
calls that would take the test's event loop out of control are refused with what to do instead."""

from __future__ import annotations

import asyncio
import inspect
import types
import warnings
from functools import partial

from detsched._aio.loop import ControlledEventLoop
from detsched._aio.policy import ControlledPolicy
from detsched._core import frames
from detsched._core.ops import LogicalThread, current
from detsched._detect import tasks
from detsched._detect.tasks import PRIMITIVES
from detsched._primitives.sync import make_label
from detsched.errors import DetschedUsageError

if isinstance(asyncio.current_task, types.BuiltinFunctionType):
    _current_task = asyncio.current_task
else:  # 3.10, 3.11: Python code around this lookup
    _current_task = asyncio.tasks._current_tasks.get


def _signal(me: LogicalThread) -> tuple:
    """When and by whom a signal is sent: the step, and the running task (else the thread).

    The loop is the one ``me`` runs, not asked of asyncio: ``_get_running_loop()`` makes a
    ``getpid()`` system call on 3.10 and 3.11, and this runs at every set and clear of an Event."""
    loop = me.aio_loop
    return me.sched.execution.steps, (_current_task(loop) if loop is not None else None) or me


def _labelled(init):
    """``__init__`` that also names the primitive after where user code made it."""
    def __init__(self, *args, **kwargs):
        init(self, *args, **kwargs)
        self._ds_label = make_label(f"asyncio.{type(self).__name__}")

    return __init__


_real_lock_acquire, _real_lock_release = asyncio.Lock.acquire, asyncio.Lock.release
_real_event_set, _real_event_clear, _real_event_wait = asyncio.Event.set, asyncio.Event.clear, asyncio.Event.wait
_real_semaphore_acquire, _real_semaphore_release = asyncio.Semaphore.acquire, asyncio.Semaphore.release
_real_put_nowait, _real_get_nowait = asyncio.Queue.put_nowait, asyncio.Queue.get_nowait
_real_notify = asyncio.Condition.notify
_real_warn_unawaited = warnings._warn_unawaited_coroutine  # type: ignore[attr-defined]
_real_set_policy = asyncio.events.set_event_loop_policy
_real_asyncio_run = asyncio.runners.run
_real_set_running_loop = asyncio.events._set_running_loop


def _published(obj) -> None:
    """For the race detector: what the running task did so far comes before what receives ``obj``.
    (A primitive's wakeup of a waiting task orders the two through its callback already; these
    order the fast paths, where nobody waits: an acquire of a free lock, a get of a ready item.)"""
    me = current()
    if me is not None:
        me.sched.publish(me, obj)


def _received(obj) -> None:
    me = current()
    if me is not None:
        me.sched.receive(me, obj)


async def _lock_acquire(self):
    await _real_lock_acquire(self)
    _received(self)
    self._ds_owner = asyncio.current_task()  # a deadlock report names who holds the lock
    return True


def _lock_release(self) -> None:
    _published(self)
    _real_lock_release(self)
    self._ds_owner = None


def _event_set(self) -> None:
    me = current()
    if me is not None and not self._value:
        self._ds_set_at = _signal(me)
    _published(self)
    _real_event_set(self)


async def _event_wait(self):
    result = await _real_event_wait(self)
    _received(self)
    return result


async def _semaphore_acquire(self):
    result = await _real_semaphore_acquire(self)
    _received(self)
    return result


def _semaphore_release(self) -> None:
    _published(self)
    _real_semaphore_release(self)


def _put_nowait(self, item) -> None:
    _real_put_nowait(self, item)
    _published(self)


def _get_nowait(self):
    item = _real_get_nowait(self)
    _received(self)
    return item


def _event_clear(self) -> None:
    me = current()
    if me is not None and self._value and getattr(self, "_ds_set_at", None) is not None:
        self._ds_cleared_at = _signal(me)
    _real_event_clear(self)


def _condition_notify(self, n: int = 1) -> None:
    unheard = all(waiter.done() for waiter in self._waiters)
    _real_notify(self, n)
    me = current()
    if unheard and me is not None:
        self._ds_unheard = _signal(me)


def _warn_unawaited(policy: ControlledPolicy, coro) -> None:
    me = current()
    if me is None or me.sched is not policy.sched:
        _real_warn_unawaited(coro)
    elif not me.sched.aborting:
        policy.unawaited.append(tasks.unawaited(coro, frames.user_location(2)))


def _set_event_loop_policy(policy) -> None:
    if current() is None:
        _real_set_policy(policy)
        return
    raise DetschedUsageError(
        "asyncio.set_event_loop_policy() called inside a detsched run (uvloop.install()?): the test's event loop "
        "must be detsched's to be under control. Install the policy outside the test; during runs detsched "
        "replaces it and puts it back afterwards")


def _asyncio_run(main, *args, **kwargs):
    if current() is not None and asyncio.events._get_running_loop() is not None:
        if inspect.iscoroutine(main):
            main.close()
        raise DetschedUsageError(
            "asyncio.run() called inside a running event loop: detsched already runs the async target in its "
            "controlled loop; await the coroutine instead (or make the target a plain function that calls asyncio.run)")
    return _real_asyncio_run(main, *args, **kwargs)


def _set_running_loop(loop) -> None:
    if loop is not None and not isinstance(loop, ControlledEventLoop) and current() is not None:
        raise DetschedUsageError(
            f"a {type(loop).__name__} made outside detsched's control started in a controlled thread; only loops "
            "made during the run (asyncio.run(), asyncio.new_event_loop(), the event loop policy) are controlled. "
            "A test marked both asyncio and detsched runs in pytest-asyncio's loop: keep only the detsched mark")
    _real_set_running_loop(loop)


#: (owner, attribute, value) set for the duration of every run, besides those of ``for_run``.
_PATCHES = [
    *((cls, "__init__", _labelled(cls.__init__)) for cls in PRIMITIVES),
    (asyncio.Lock, "acquire", _lock_acquire), (asyncio.Lock, "release", _lock_release),
    (asyncio.Event, "set", _event_set), (asyncio.Event, "clear", _event_clear), (asyncio.Event, "wait", _event_wait),
    (asyncio.Semaphore, "acquire", _semaphore_acquire), (asyncio.Semaphore, "release", _semaphore_release),
    (asyncio.Queue, "put_nowait", _put_nowait), (asyncio.Queue, "get_nowait", _get_nowait),
    (asyncio.Condition, "notify", _condition_notify),
    (asyncio, "set_event_loop_policy", _set_event_loop_policy),
    (asyncio.events, "set_event_loop_policy", _set_event_loop_policy),
    (asyncio, "run", _asyncio_run), (asyncio.runners, "run", _asyncio_run),
    (asyncio.events, "_set_running_loop", _set_running_loop),
]


def for_run(policy: ControlledPolicy) -> list[tuple[object, str, object]]:
    """(owner, attribute, value) to set for the run ``policy`` serves."""
    return [(asyncio.events, "_event_loop_policy", policy),
            (warnings, "_warn_unawaited_coroutine", partial(_warn_unawaited, policy)), *_PATCHES]
