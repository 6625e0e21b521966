"""What the scheduler works with: the operations threads announce (``Op``), the logical threads
that announce them, the record of what went wrong (``FailureInfo``) and one row of a run's
timeline (``TraceStep``); and ``current()``, which every controlled operation asks first."""

from __future__ import annotations

import _thread
from dataclasses import dataclass
from functools import partial
from typing import Callable

_allocate_lock = _thread.allocate_lock
_tls = _thread._local()

#: ``current()``: the logical thread running the caller, or None when the caller is not under
#: control. Every primitive operation asks first, so it is a C-level callable: half the cost of a
#: function, and invisible to a user's profile hook (which runs for every Python function call).
current: Callable[[], LogicalThread | None] = partial(getattr, _tls, "logical", None)


def set_current(thread: LogicalThread | None) -> None:
    """Make ``thread`` what ``current()`` returns in the calling OS thread."""
    _tls.logical = thread


class Op:
    """An operation a thread is about to perform, announced at a scheduling point."""

    __slots__ = ("kind", "resource", "ready", "deadline", "holder", "where", "done", "row_by_caller")

    def __init__(self, kind: str, resource=None, ready: Callable[[], bool] | None = None,
                 deadline: float | None = None, holder: Callable[[], LogicalThread | None] | None = None,
                 *, done: bool = False, row_by_caller: bool = False):
        self.kind = kind  # e.g. "acquire", "wait", "put"
        self.resource = resource  # the primitive it touches, or None
        self.ready = ready  # None: can always proceed; else proceeds once ready() is true
        self.deadline = deadline  # virtual monotonic time at which a timed wait gives up
        self.holder = holder  # who must act before this op can proceed (wait-for graph)
        self.where = ""  # user file:line, filled only when tracing
        self.done = done  # announced after its effect (a release): the point only lets others run
        # The caller writes this step's timeline row itself (the event loop names the callback it
        # runs); the scheduler keeps only its note (``Execution.take_note``).
        self.row_by_caller = row_by_caller

    def describe(self) -> str:
        return f"{self.kind} {describe(self.resource)}".strip()


def describe(resource) -> str:
    """How a primitive or thread is named in reports: its label, or a thread's name."""
    if resource is None:
        return ""
    label = getattr(resource, "label", None)
    if label is None:
        name = getattr(resource, "name", None)
        label = f"thread {name!r}" if name is not None else type(resource).__name__
    return label


class LogicalThread:
    """One controlled thread: its id in schedules, its OS thread and what it waits for."""

    __slots__ = ("sched", "tid", "name", "thread", "daemon", "park", "exited", "op", "finished",
                 "os_ident", "spinning", "idle", "ops", "last_poll", "sync_ops", "failed_poll", "detached",
                 "unchecked", "race_id", "aio_loop")

    def __init__(self, sched, tid: int, name: str, thread, daemon: bool):
        # sched: the Scheduler of its run (ops.py is below the scheduler and does not import it)
        self.sched, self.tid, self.name, self.thread, self.daemon = sched, tid, name, thread, daemon
        self.park = None  # its carrier's lock (``carriers.Carrier.park``): released to wake it
        self.exited = _allocate_lock()  # released when it has ended and its OS thread is free
        self.exited.acquire()
        self.op: Op | None = None  # Invariant: set while parked at a scheduling point
        self.finished = False
        self.os_ident = 0  # its carrier's OS thread
        self.spinning = False  # its last poll made no progress: give way to others
        self.idle = False  # an idle pool worker: blocked forever at the end is not a leak
        self.ops = 0  # scheduling points reached so far; (tid, ops) names a decision across runs
        self.last_poll: tuple[str, int] | None = None  # (loop, ops) after its last polling point
        self.sync_ops = 0  # operations on a primitive so far: a poll loop repeats with none in between
        # (kind, resource, sync_ops after it, where it was called from: ``frames.call_sites``) of its
        # latest failed poll, None once a poll succeeds.
        self.failed_poll: tuple[str, object, int, tuple] | None = None
        # Left blocked when its run ended and let go on outside control, as a real run leaves such a
        # thread: a later put, set or release (a fixture's teardown stopping it) wakes it for real.
        self.detached = False
        self.unchecked = 0  # inside this many ``detsched.unchecked()`` blocks: accesses are not checked
        #: Whose accesses and synchronisation the race detector sees: its tid, or the asyncio task
        #: whose step its event loop is running.
        self.race_id = tid
        #: The controlled event loop it is running (``ControlledEventLoop.run_forever``), else None.
        self.aio_loop = None

    def __repr__(self) -> str:
        return f"T{self.tid}"

    @property
    def label(self) -> str:
        return f"T{self.tid} {self.name!r}"


@dataclass
class FailureInfo:
    """What went wrong in a run, as a detector (or the thread that raised) saw it."""

    kind: str
    message: str
    thread: str = ""
    details: str = ""  # traceback or stacks, detsched frames removed
    exception: BaseException | None = None
    step: int = 0
    #: Threads that can never go on (a deadlock's cycle, a leak): the timeline ends with what they wait in.
    blocked: tuple[LogicalThread, ...] = ()
    #: Kinds of failure that explain this one: a leak whose thread lost its wakeup has ("lost-wakeup",).
    causes: tuple[str, ...] = ()


@dataclass(frozen=True)
class TraceStep:
    """One row of a traced run's timeline: which thread went on with which operation."""

    step: int
    tid: int
    thread: str
    op: str
    where: str
    note: str = ""  # e.g. "timed out", "preempted T1"
    #: The store the preempted thread was about to make, "store x.y @f.py:12", when this step
    #: preempts one there: a switch only free-threaded CPython makes (no call between statements).
    preempted_at_store: str = ""
    #: The label of the primitive or thread the operation works on ("" for none): what concurrency
    #: coverage pairs operations by.
    obj: str = ""


@dataclass(frozen=True)
class MissedSignal:
    """Evidence a primitive keeps of a lost wakeup: a signal sent before its waiter started waiting
    (a notify nobody heard), or a set undone by a clear before the waiter saw it."""

    waiter: str  # "T1", "Task-2 waiter()"
    primitive: str  # its label
    by: str  # who sent the signal
    at: int  # the step it was sent at
    cleared_by: str = ""  # who cleared an Event before the waiter saw it ("" for a notify)
    cleared_at: int = 0
    nobody: str = "thread"  # what was not waiting when it was sent: "thread" or "task"
    #: The waiter a ``notify()`` woke instead of ``waiter`` -- and that went back to waiting -- when
    #: the lost signal is a wakeup that reached the wrong thread ("" otherwise).
    woke: str = ""
