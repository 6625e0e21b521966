"""Controlled queues: the twins of ``queue.Queue``, ``LifoQueue``, ``PriorityQueue`` and
``SimpleQueue``. A put or a get is one scheduling point that proceeds when the queue has room or an
item. The ``_init/_qsize/_put/_get`` hooks and the ``queue``, ``mutex``, ``maxsize`` and
``unfinished_tasks`` attributes are kept, so subclasses written for the stdlib work unchanged.
"""

from __future__ import annotations

import heapq
import queue as _stdlib_queue
import types
from collections import deque

from detsched._core.ops import Op, current
from detsched._core.outside import changed_outside, wait_outside
from detsched._primitives.sync import Condition, Lock, check_reachable, make_label, real_outside_control, timed_wait

Empty, Full = _stdlib_queue.Empty, _stdlib_queue.Full
ShutDown = getattr(_stdlib_queue, "ShutDown", None)  # Python 3.13+


def _transfer(q, kind: str, block: bool, timeout: float | None, ready, act, failure):
    """Perform ``act`` once ``ready()`` holds, following the stdlib's block/timeout rules."""
    if block and timeout is not None and timeout < 0:
        raise ValueError("'timeout' must be a non-negative number")
    me = current()
    if me is None:  # a thread of an ended run, let go at its end, may still put or get for real
        check_reachable(q, f"{kind}()")
        if not ready() and not (block and wait_outside(ready, timeout)):
            raise failure()
        result = act()
        changed_outside(q, kind)
        return result
    if not block:
        done = []
        if me.sched.poll(me, Op(kind, q), lambda: ready() and (done.append(act()) or True)):
            _ordered(me, kind, q)
            return done[0]
        raise failure()
    if timed_wait(me, kind, q, ready, timeout):
        result = act()
        _ordered(me, kind, q)
        return result
    raise failure()


def _ordered(me, kind: str, q) -> None:
    """A put is ordered before the gets after it (for the race detector: every earlier put, not
    only the one whose item the get takes -- fewer orders would never add a false race)."""
    if kind == "put":
        me.sched.publish(me, q)
    else:
        me.sched.receive(me, q)


@real_outside_control(_stdlib_queue.Queue)
class Queue:
    """``queue.Queue`` under control."""

    def __init__(self, maxsize: int = 0, *, label: str | None = None):
        self.label = label or make_label(type(self).__name__)
        self.maxsize = maxsize
        self._init(maxsize)
        self.mutex = Lock(label=f"{self.label}.mutex")  # held by code that locks the queue itself
        # The stdlib's conditions, for code that waits on or notifies them itself; put, get and
        # task_done wake their waiters as the stdlib's do.
        self.not_empty = Condition(self.mutex, label=f"{self.label}.not_empty")
        self.not_full = Condition(self.mutex, label=f"{self.label}.not_full")
        self.all_tasks_done = Condition(self.mutex, label=f"{self.label}.all_tasks_done")
        self.unfinished_tasks = 0
        self.is_shutdown = False

    # Hooks subclasses override, as in the stdlib.
    def _init(self, maxsize: int) -> None:
        self.queue = deque()

    def _qsize(self) -> int:
        return len(self.queue)

    def _put(self, item) -> None:
        self.queue.append(item)

    def _get(self):
        return self.queue.popleft()

    def _has_room(self) -> bool:
        return not self.mutex._locked and (self.is_shutdown or self.maxsize <= 0 or self._qsize() < self.maxsize)

    def _has_item(self) -> bool:
        return not self.mutex._locked and (self.is_shutdown or self._qsize() > 0)

    def _insert(self, item) -> None:
        if self.is_shutdown:
            raise ShutDown
        self._put(item)
        self.unfinished_tasks += 1
        self.not_empty._wake(1)

    def _remove(self):
        if self.is_shutdown and not self._qsize():
            raise ShutDown
        item = self._get()
        self.not_full._wake(1)
        return item

    def put(self, item, block: bool = True, timeout: float | None = None) -> None:
        if self.maxsize <= 0:  # never waits: the stdlib ignores (and does not check) the timeout
            timeout = None
        _transfer(self, "put", block, timeout, self._has_room, lambda: self._insert(item), Full)

    def get(self, block: bool = True, timeout: float | None = None):
        return _transfer(self, "get", block, timeout, self._has_item, self._remove, Empty)

    def put_nowait(self, item) -> None:
        self.put(item, block=False)

    def get_nowait(self):
        return self.get(block=False)

    def task_done(self) -> None:
        if self.unfinished_tasks <= 0:
            raise ValueError("task_done() called too many times")
        me = current()
        if me is not None:
            me.sched.wait(me, Op("task_done", self))
            me.sched.publish(me, self.all_tasks_done)
        self.unfinished_tasks -= 1
        if not self.unfinished_tasks:
            self.all_tasks_done._wake()

    def join(self) -> None:
        me = current()
        if me is None:
            wait_outside(lambda: self.unfinished_tasks == 0, None, self, "join")
            return
        me.sched.wait(me, Op("join", self, lambda: self.unfinished_tasks == 0))
        me.sched.receive(me, self.all_tasks_done)

    def _observe(self, what: str, progressed) -> bool:
        me = current()
        if me is None:
            return progressed()
        return me.sched.poll(me, Op(what, self), progressed)

    def qsize(self) -> int:
        self._observe("qsize", lambda: True)
        return self._qsize()

    def empty(self) -> bool:
        return not self._observe("empty?", lambda: self._qsize() > 0)

    def full(self) -> bool:
        return not self._observe("full?", lambda: not (0 < self.maxsize <= self._qsize()))

    if ShutDown is not None:

        def shutdown(self, immediate: bool = False) -> None:
            me = current()
            if me is not None:
                me.sched.wait(me, Op("shutdown", self))
            self.is_shutdown = True
            if immediate:
                while self._qsize():
                    self._get()
                    if self.unfinished_tasks > 0:
                        self.unfinished_tasks -= 1
                self.all_tasks_done._wake()
            self.not_empty._wake()
            self.not_full._wake()

    def __repr__(self) -> str:
        return f"<detsched {self.label} size={self._qsize()}>"

    __class_getitem__ = classmethod(types.GenericAlias)  # ``queue.Queue[int]`` in annotations


@real_outside_control(_stdlib_queue.LifoQueue)
class LifoQueue(Queue):
    """``queue.LifoQueue`` under control."""

    def _init(self, maxsize: int) -> None:
        self.queue = []

    def _get(self):
        return self.queue.pop()


@real_outside_control(_stdlib_queue.PriorityQueue)
class PriorityQueue(Queue):
    """``queue.PriorityQueue`` under control."""

    def _init(self, maxsize: int) -> None:
        self.queue = []

    def _put(self, item) -> None:
        heapq.heappush(self.queue, item)

    def _get(self):
        return heapq.heappop(self.queue)


@real_outside_control(_stdlib_queue.SimpleQueue)
class SimpleQueue:
    """``queue.SimpleQueue`` under control: unbounded, no task tracking."""

    def __init__(self, *, label: str | None = None):
        self.label = label or make_label("SimpleQueue")
        self._items: deque = deque()

    def _has_item(self) -> bool:
        return bool(self._items)

    def put(self, item, block: bool = True, timeout: float | None = None) -> None:
        me = current()
        if me is not None:
            me.sched.wait(me, Op("put", self))
            self._items.append(item)
            me.sched.publish(me, self)
            return
        check_reachable(self, "put()")
        self._items.append(item)
        changed_outside(self, "put")

    put_nowait = put

    def get(self, block: bool = True, timeout: float | None = None):
        return _transfer(self, "get", block, timeout, self._has_item, self._items.popleft, Empty)

    def get_nowait(self):
        return self.get(block=False)

    def empty(self) -> bool:
        me = current()
        if me is not None:
            me.sched.poll(me, Op("empty?", self), self._has_item)
        return not self._items

    def qsize(self) -> int:
        me = current()
        if me is not None:
            me.sched.wait(me, Op("qsize", self))
        return len(self._items)

    def __repr__(self) -> str:
        return f"<detsched {self.label} size={len(self._items)}>"

    __class_getitem__ = classmethod(types.GenericAlias)
