"""asyncio under control: an event loop whose next ready callback the strategy picks, on the
scheduler's virtual clock, that reports asyncio deadlocks, lost wakeups, leaks and task exceptions.

During a run, every event loop a controlled thread makes (``asyncio.run``, ``new_event_loop``,
anyio's runner, an ``async def`` target) is a ``ControlledEventLoop``: a real
``asyncio.BaseEventLoop`` whose ``_run_once`` runs one ready callback per step instead of the whole
ready queue. It explores only orders the stock loop produces: callbacks run in the order they were
scheduled (``call_soon``, a future's done callbacks, ``call_soon_threadsafe``, a task's first step
and its resumption after ``await asyncio.sleep(0)`` alike), and the one thing that varies on a real
loop with no real I/O -- how busy the loop is when a timer comes due -- lets a due timer fire late:
after callbacks scheduled later, never before an earlier timer. Everything else that varies comes
from threads (``to_thread``, ``run_in_executor``, ``call_soon_threadsafe``), whose steps interleave
with the loop's. So the candidates at each step are the head of the ready queue and, when the head
is a due timer, the first callback behind the due timers; the default choice -- the one a schedule
need not store -- is asyncio's own FIFO order.

Time is the scheduler's virtual clock: it stands still while anything is ready and jumps to the next
timer when nothing is, so ``asyncio.sleep(3600)`` takes no real time. When nothing is ready, no timer
is pending and no other controlled thread could call into the loop, the run is stuck: a deadlock (or
a lost wakeup), reported with what every task waits for.
"""

from __future__ import annotations

import asyncio
import heapq
import inspect
import itertools
import os
import sys
import threading
import traceback
import warnings
import weakref
from contextlib import contextmanager

from detsched._core import frames

from detsched._instrument import calls as instrument
from detsched.errors import DetschedUsageError, RunAborted
from detsched._instrument.world import Patcher
from detsched._core.scheduler import FailureInfo, LogicalThread, Op, Scheduler, TraceStep, current
from detsched._primitives.sync import make_label

#: Names of the bound methods through which asyncio schedules a task's next step (the C
#: implementation's step wrapper has no name).
_TASK_STEPS = frozenset({"__step", "__wakeup", "task_wakeup"})
#: asyncio primitives a task can block in; reports name them and what they wait for.
_PRIMITIVES = tuple(cls for cls in (asyncio.Lock, asyncio.Event, asyncio.Condition, asyncio.Semaphore,
                                    asyncio.Queue, getattr(asyncio, "Barrier", None)) if cls is not None)

#: detsched's per-thread profile hook that makes user function entry a scheduling point (Python
#: before 3.12; later versions use sys.monitoring, which costs nothing outside user code).
_CALL_POINTS = getattr(instrument, "_on_event", None)

#: Consecutive steps of nothing but polling tasks before the loop counts them as spinning and lets
#: virtual time pass to its next timer (see ``ControlledEventLoop._spinning``).
POLLING_STEPS = 1000

_policy: _ControlledPolicy | None = None  # the policy of the run in progress, if any
_patcher: Patcher | None = None  # what that run patched, until it is restored


# --------------------------------------------------------------------------- running a target

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
            loop._sched.fail(_exception_info(error, task_label(main)))
        if loop._asyncgens:  # each of these costs a few steps; most tests need neither
            loop.run_until_complete(loop.shutdown_asyncgens())
        if loop._default_executor is not None:
            loop.run_until_complete(loop.shutdown_default_executor())
    finally:
        asyncio.set_event_loop(None)
        loop.close()


async def _awaited(awaitable):
    return await awaitable


@contextmanager
def controlled():
    """For the current run: give controlled threads controlled event loops, and instrument asyncio's
    primitives so reports can say who holds and who signalled what. Restores everything on exit."""
    global _policy, _patcher
    if _patcher is not None:  # left by a run whose main thread is still blocked outside control
        _patcher.restore()
    me = current()
    policy = _ControlledPolicy(me.sched, asyncio.get_event_loop_policy())
    patcher = _patcher = Patcher()
    try:
        patcher._set(asyncio.events, "_event_loop_policy", policy)
        for owner, name, value in _PATCHES:
            patcher._set(owner, name, value)
        _policy = policy
        yield
        if policy.unawaited:  # dropped where no event loop's end-of-main check saw them (plain code)
            me.sched.fail(FailureInfo("leak", "; ".join(policy.unawaited), me.label))
    finally:
        patcher.restore()  # a no-op if the next run restored it already
        if _patcher is patcher:
            _policy = _patcher = None


class _ControlledPolicy(asyncio.AbstractEventLoopPolicy):
    """The event loop policy during a run: controlled threads get controlled loops; every other
    thread is served by the policy that was installed before the run."""

    def __init__(self, sched: Scheduler, stock: asyncio.AbstractEventLoopPolicy):
        self.sched, self.stock = sched, stock
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


# --------------------------------------------------------------------------- the loop

class ControlledEventLoop(asyncio.BaseEventLoop):
    """An asyncio event loop inside a detsched run: one ready callback per step, picked by the
    strategy, on virtual time. The controlled policy makes it; it runs only inside its run."""

    def __init__(self, policy: _ControlledPolicy):
        super().__init__()
        self._policy = policy
        self._sched = policy.sched
        self._runner: LogicalThread | None = None  # the controlled thread running the loop
        self._call_points = None  # detsched's call-point profile hook, while run_forever holds it off
        self._looked: dict[asyncio.Task, int] = {}  # polling task -> other threads' progress when it last ran
        self._tasks: list[asyncio.Task] = []  # every task made here, in creation order
        self._agens: list[weakref.ref] = []  # async generators iterated here, in first-iteration order
        self._abandoned: list[str] = []  # async generators the garbage collector had to close
        self._failure: FailureInfo | None = None  # from the exception handler; fails the run at the next step
        self._main_checked = False  # the first run_until_complete (asyncio.run's main) has been checked
        self._polling_steps = 0  # consecutive steps in which every ready handle was a polling task

    @property
    def label(self) -> str:
        """How a thread waiting for this loop names it in a deadlock report: with what its tasks wait for."""
        pending = self._pending()
        return "its event loop" + (f" ({'; '.join(map(_waits_for, pending))})" if pending else "")

    def explain_lost_wakeup(self, thread: LogicalThread) -> str | None:
        return next(filter(None, map(_lost_wakeup, self._pending())), None)

    def time(self) -> float:
        return self._sched.clock.monotonic()

    def create_task(self, coro, *, name=None, context=None):
        if name is None:
            name = f"Task-{next(self._policy.task_numbers)}"
        if context is None:  # Python 3.10 has no context parameter
            task = super().create_task(coro, name=name)
        else:
            task = super().create_task(coro, name=name, context=context)
        self._tasks.append(task)
        return task

    def run_forever(self) -> None:
        me = current()
        if me is None or me.sched is not self._sched:
            raise DetschedUsageError("an event loop made during a detsched run can run only inside that run")
        self._runner = me
        # Before Python 3.12, scheduling points at user function entry come from a per-thread
        # profile hook, which would see every call the loop itself makes: it is on only while a
        # callback runs (where 3.12's sys.monitoring finds the same user calls), so that runs and
        # schedules are the same on every version.
        self._call_points = _CALL_POINTS if _CALL_POINTS is not None and sys.getprofile() is _CALL_POINTS else None
        if self._call_points is not None:
            sys.setprofile(None)
        try:
            super().run_forever()
        finally:
            if self._call_points is not None:
                sys.setprofile(self._call_points)

    def run_until_complete(self, future):
        first = not self._main_checked
        self._main_checked = True
        result = super().run_until_complete(future)
        if self._failure is not None:
            self._sched.fail(self._failure)
        if first:
            self._check_after_main()
        return result

    def _write_to_self(self) -> None:
        """Nothing to wake: a loop waiting for callbacks waits at a scheduling point whose condition
        is a non-empty ready queue, which ``call_soon_threadsafe`` makes true."""

    def close(self) -> None:
        self._silence_leftovers()
        super().close()

    # ------------------------------------------------------------------ one step

    def _run_once(self) -> None:
        sched, me = self._sched, self._runner
        if sched.aborting:  # a task swallowed the abort (Task catches BaseException): stop here
            raise RunAborted
        if self._failure is not None:
            sched.fail(self._failure)
        if self._scheduled:
            self._release_due_timers()
        polling = self._polling_tasks()
        if len(sched.live) > 1:
            note = self._let_threads_run(polling)
        else:
            note = None
            if polling and self._spinning(polling) and self._scheduled:  # only time can change anything
                sched.clock.advance_to(self._scheduled[0]._when)
                self._release_due_timers()
        ready = self._ready
        while ready and ready[0]._cancelled:
            ready.popleft()
        if not ready:
            if not self._stopping:
                self._idle()
            return
        if note is None:  # each callback is a step (a decision among threads counted it already)
            sched.steps += 1  # the watchdog and max_steps count steps
            sched.clock.tick()
        if len(ready) == 1 and not sched.tracing:
            handle = ready.popleft()
        else:
            handle = self._pick(note or "")
        if sched.steps > sched.limits.max_steps:
            self._livelock(handle)
        if _resumes_after_yield(handle):
            self._looked[_task_of(handle)] = self._others_progress()
        if self._call_points is None:
            handle._run()
            return
        sys.setprofile(self._call_points)
        try:
            handle._run()
        finally:
            sys.setprofile(None)

    def _release_due_timers(self) -> None:
        now = self.time()
        scheduled = self._scheduled
        while scheduled and (scheduled[0]._cancelled or scheduled[0]._when <= now):
            handle = heapq.heappop(scheduled)
            handle._scheduled = False
            if handle._cancelled:
                self._timer_cancelled_count -= 1
            else:
                self._ready.append(handle)

    def _polling_tasks(self) -> list[asyncio.Task]:
        """The tasks of the ready handles if every one resumes a task from a bare yield
        (``await asyncio.sleep(0)``): they are polling. Counts how long the loop has been polling."""
        live = [handle for handle in self._ready if not handle._cancelled]
        if not live or not all(map(_resumes_after_yield, live)):
            self._polling_steps = 0
            return []
        self._polling_steps += 1
        return [_task_of(handle) for handle in live]

    def _spinning(self, polling: list[asyncio.Task]) -> bool:
        """Whether the polling tasks can see nothing new without time passing: no other thread took a
        step since they last looked, and they have polled long enough for tasks that count a few
        yields before acting (``for _ in range(3): await asyncio.sleep(0)``) to have acted."""
        return self._polling_steps >= POLLING_STEPS and not self._news_for(polling)

    def _let_threads_run(self, polling: list[asyncio.Task]) -> str:
        """Other controlled threads live: each step is an operation they may interleave with. Returns
        the timeline note of that decision (e.g. "preempts T1"), which the step's own row carries.

        Polling tasks are ready, so the loop is never blocked: a poll that can see nothing new
        spins, which lets the other threads go first and virtual time pass up to the loop's next
        timer when nobody else can run."""
        sched, me = self._sched, self._runner
        if polling:
            op = Op("asyncio poll", self, None, self._scheduled[0]._when if self._scheduled else None)
            me.spinning = self._spinning(polling)
        else:
            op = Op("asyncio step")
        sched.wait(me, op)
        if self._scheduled:
            self._release_due_timers()
        last = sched.trace[-1] if sched.tracing and sched.trace else None
        if last is not None and last.tid == me.tid and last.op.startswith("asyncio "):
            sched.trace.pop()
            return last.note
        return ""

    def _others_progress(self) -> int:
        """Scheduling points reached so far by the other controlled threads."""
        return sum(thread.ops for thread in self._sched.threads if thread is not self._runner)

    def _news_for(self, polling: list) -> bool:
        """Whether another thread has taken a step since one of the ``polling`` tasks last looked."""
        progress = self._others_progress()
        return any(self._looked.get(task) != progress for task in polling)

    def _pick(self, note: str = ""):
        """Remove and return the next handle to run (the head of the ready queue is not cancelled):
        the strategy picks among those that may run first."""
        ready = self._ready
        options = []
        for index, handle in enumerate(ready):
            if handle._cancelled:
                continue
            if not options or type(handle) is not asyncio.TimerHandle:
                options.append(index)
            if type(handle) is not asyncio.TimerHandle:
                break  # a callback or a task step: nothing after it may overtake it
        sched = self._sched
        mark = len(sched.trace)
        chosen = sched.choose(self._runner, len(options), "asyncio") if len(options) > 1 else 0
        handle = ready[options[chosen]]
        del ready[options[chosen]]
        if sched.tracing:  # replace choose()'s generic row with one naming the task
            del sched.trace[mark:]
            sched.trace.append(self._trace_step(handle, ready[options[0]] if chosen else None, note))
        return handle

    def _trace_step(self, handle, overtaken, note: str) -> TraceStep:
        me = self._runner
        what, where = _describe_handle(handle)
        if overtaken is not None:
            note = ", ".join(filter(None, (note, f"ahead of {_describe_handle(overtaken)[0]}")))
        return TraceStep(self._sched.steps, me.tid, me.name, what, where, note)

    def _has_ready(self) -> bool:
        return bool(self._ready)

    def _idle(self) -> None:
        """Nothing is ready: let other controlled threads run, or virtual time pass, until something is."""
        sched, me = self._sched, self._runner
        deadline = self._scheduled[0]._when if self._scheduled else None
        if deadline is None and not any(t is not me and _may_call_in(t) for t in sched.live):
            self._stuck()
        sched.wait(me, Op("wait for a callback in", self, self._has_ready, deadline))

    # ------------------------------------------------------------------ failures

    def _pending(self) -> list[asyncio.Task]:
        return [t for t in self._tasks if not t.done() and not _closes_async_generator(t)]

    def _stuck(self) -> None:
        """Nothing is ready, no timer is pending and no thread can call in: nothing will ever run."""
        pending = self._pending()
        message = next(filter(None, map(_lost_wakeup, pending)), None)
        kind = "lost-wakeup" if message else "deadlock"
        if message is None and pending:
            blocked_first = sorted(pending, key=lambda task: _blocker(_chain(task))[0] is None)
            message = "; ".join(map(_waits_for, blocked_first)) + " (nothing can wake them)"
        elif message is None:
            message = "the event loop has nothing to run and nothing can wake it (run_forever() that nothing stops)"
        actor = task_label(pending[0]) if pending else self._runner.label
        self._sched.fail(FailureInfo(kind, message, actor, _stacks(pending)))

    def _livelock(self, handle) -> None:
        what, where = _describe_handle(handle)
        self._sched.out_of_steps(self._runner, self._polling_steps > 0, what + (f" at {where}" if where else ""),
                                 _stacks(self._pending()))

    def _check_after_main(self) -> None:
        """The main coroutine returned: fail on a task exception nothing retrieved, then on leaks."""
        for task in self._tasks:
            if task.done() and not task.cancelled() and task._log_traceback:
                error = task.exception()
                if isinstance(error, DetschedUsageError):
                    raise error
                self._sched.fail(_exception_info(
                    error, f"{task_label(task)}; nothing retrieved its exception (no await, result() or exception())"))
        pending = self._pending()
        leaks = [f"{_waits_for(t)}, still pending when the main coroutine returned" for t in pending]
        leaks += self._policy.unawaited + self._abandoned
        self._policy.unawaited.clear()
        for ref in self._agens:
            agen = ref()
            if agen is not None and agen.ag_frame is not None and not agen.ag_running:
                leaks.append(f"async generator {agen.__qualname__}() is still open, suspended at "
                             f"{_location(agen.ag_frame)}: nothing closed it")
        if leaks:
            actor = task_label(pending[0]) if pending else self._runner.label
            self._sched.fail(FailureInfo("leak", "; ".join(leaks), actor, _stacks(pending)))

    def default_exception_handler(self, context) -> None:
        """An error asyncio would only log (an exception in a callback, a future's exception nobody
        retrieved) fails the run, like an uncaught exception in a thread."""
        error = context.get("exception")
        me = current()
        if isinstance(error, RunAborted) or self._sched.aborting:
            return  # a run being stopped unwinds through tasks and callbacks; nothing to report
        if me is None or me.sched is not self._sched:
            super().default_exception_handler(context)
            return
        if self._failure is not None:
            return
        source = context.get("task") or context.get("future")
        if isinstance(source, asyncio.Task):
            actor = task_label(source)
        elif "handle" in context:
            actor = f"callback {_callable_name(context['handle']._callback)}"
        else:
            actor = context.get("message", "the event loop")
        if error is None:
            self._failure = FailureInfo("leak", context.get("message", "asyncio reported a problem"), actor)
        else:
            self._failure = _exception_info(error, actor)

    def _silence_leftovers(self) -> None:
        """After a failed run, tasks are left pending: close their coroutines now, inside the run, so
        that nothing of them runs or logs later from the garbage collector."""
        for task in self._tasks:
            if not task.done():
                task._log_destroy_pending = False
                try:
                    task.get_coro().close()
                except BaseException:  # its finally blocks meet the aborted run; nothing to report
                    pass
            elif not task.cancelled():
                task._log_traceback = False

    # ------------------------------------------------------------------ async generators

    def _asyncgen_firstiter_hook(self, agen) -> None:
        super()._asyncgen_firstiter_hook(agen)
        self._agens.append(weakref.ref(agen))

    def _asyncgen_finalizer_hook(self, agen) -> None:
        me = current()
        if me is not None and me.sched is self._sched and not self._sched.aborting:
            self._abandoned.append(
                f"async generator {agen.__qualname__}() was never closed: dropped at {frames.user_location(2)} "
                f"while suspended at {_location(agen.ag_frame)}, so its cleanup runs whenever the garbage "
                "collector gets to it (close it: contextlib.aclosing, or exhaust it)")
        super()._asyncgen_finalizer_hook(agen)

    # ------------------------------------------------------------------ real I/O

    def _outside_control(self, *args, **kwargs):
        raise DetschedUsageError(
            "real I/O (sockets, pipes, subprocesses, DNS, signals) is outside detsched's control and would make "
            "runs depend on the outside world; fake it in the test (an asyncio.Queue or a stub transport), or "
            "test the concurrent logic apart from it")


for _method in ("add_reader", "add_writer", "sock_recv", "sock_recv_into", "sock_recvfrom", "sock_recvfrom_into",
              "sock_sendall", "sock_sendto", "sock_connect", "sock_accept", "sock_sendfile", "sendfile", "start_tls",
              "create_connection", "create_server", "create_unix_connection", "create_unix_server",
              "create_datagram_endpoint", "connect_accepted_socket", "connect_read_pipe", "connect_write_pipe",
              "subprocess_exec", "subprocess_shell", "getaddrinfo", "getnameinfo", "add_signal_handler"):
    setattr(ControlledEventLoop, _method, ControlledEventLoop._outside_control)
del _method


# --------------------------------------------------------------------------- describing tasks

def task_label(task) -> str:
    """``Task-3 fetch()``, or ``Task 'worker' fetch()`` for a task the program named."""
    name = task.get_name()
    what = getattr(task.get_coro(), "__qualname__", "?").rpartition("<locals>.")[2]
    return f"{name} {what}()" if name.startswith("Task-") else f"Task {name!r} {what}()"


def _task_of(handle) -> asyncio.Task | None:
    """The task whose step ``handle`` runs, if it is one."""
    callback = handle._callback
    task = getattr(callback, "__self__", None)
    if isinstance(task, asyncio.Task) and getattr(callback, "__name__", "__step") in _TASK_STEPS:
        return task
    return None


def _may_call_in(thread: LogicalThread) -> bool:
    """Whether a controlled thread may still schedule a callback: anything but an idle pool worker
    with no work to pick up."""
    return not thread.idle or thread.op is None or thread.op.ready is None or thread.op.ready()


def _resumes_after_yield(handle) -> bool:
    """Whether ``handle`` resumes a task after a bare yield (``await asyncio.sleep(0)``)."""
    task = _task_of(handle)
    if task is None or getattr(handle._callback, "__name__", "__step") != "__step":
        return False  # a callback, or a wakeup by a future
    return _state(task) == inspect.CORO_SUSPENDED


def _state(task) -> str | None:
    """The ``inspect.CORO_*`` state of a task's coroutine (None for other awaitables)."""
    coro = task.get_coro()
    return inspect.getcoroutinestate(coro) if inspect.iscoroutine(coro) else None


def _closes_async_generator(task) -> bool:
    """Tasks the loop makes to close an abandoned async generator (reported as that generator's leak)."""
    return type(task.get_coro()).__name__ == "async_generator_athrow"


def _callable_name(callback) -> str:
    callback = getattr(callback, "func", callback)  # functools.partial
    return getattr(callback, "__qualname__", None) or type(callback).__name__


def _describe_handle(handle) -> tuple[str, str]:
    """What running ``handle`` does, and where (for timelines)."""
    task = _task_of(handle)
    if task is None:
        kind = "timer" if isinstance(handle, asyncio.TimerHandle) else "callback"
        return f"{kind} {_callable_name(handle._callback)}", ""
    starts = _state(task) == inspect.CORO_CREATED
    return f"{task_label(task)} {'starts' if starts else 'resumes'}", _where(_chain(task))


def _chain(task) -> list:
    """Frames of the coroutines ``task`` is suspended in, outermost first."""
    chain, awaitable = [], task.get_coro()
    while awaitable is not None:
        frame = (getattr(awaitable, "cr_frame", None) or getattr(awaitable, "gi_frame", None)
                 or getattr(awaitable, "ag_frame", None))
        if frame is None:
            break
        chain.append(frame)
        awaitable = (getattr(awaitable, "cr_await", None) or getattr(awaitable, "gi_yieldfrom", None)
                     or getattr(awaitable, "ag_await", None))
    return chain


def _location(frame) -> str:
    return f"{os.path.basename(frame.f_code.co_filename)}:{frame.f_lineno}" if frame is not None else "?"


def _where(chain) -> str:
    """Where a task stands, as ``file.py:LINE``: the innermost frame of its await chain in the
    program's own code, else in an installed package (anyio), else wherever it is."""
    for wanted in (frames.is_project_file, frames.is_user_file):
        for frame in reversed(chain):
            if wanted(frame.f_code.co_filename):
                return _location(frame)
    return _location(chain[-1] if chain else None)


def _blocker(chain):
    """(primitive, method) a suspended task is blocked in: the outermost asyncio primitive in its await
    chain (a Barrier rather than its inner Condition), or the Lock a Condition waiter reacquires."""
    found = [(frame.f_locals.get("self"), frame.f_code.co_name) for frame in chain]
    found = [(obj, method) for obj, method in found if isinstance(obj, _PRIMITIVES)]
    if not found:
        return None, ""
    if isinstance(found[0][0], asyncio.Condition) and isinstance(found[-1][0], asyncio.Lock):
        return found[-1]
    return found[0]


def _label(primitive) -> str:
    return getattr(primitive, "_ds_label", None) or f"asyncio.{type(primitive).__name__}"


def _waits_for(task) -> str:
    """One link of the wait-for chain: the task, where it is, and what it waits for."""
    chain = _chain(task)
    head = f"{task_label(task)} at {_where(chain)}"
    primitive, method = _blocker(chain)
    if primitive is not None:
        return f"{head} {_primitive_wait(primitive, method, task)}"
    waiter = task._fut_waiter
    if isinstance(waiter, asyncio.Task):
        return f"{head} waits for {task_label(waiter)}"
    children = getattr(waiter, "_children", None)
    if children is not None:
        names = [task_label(c) if isinstance(c, asyncio.Task) else "a Future" for c in children if not c.done()]
        return f"{head} waits for gather({', '.join(names)})"
    if waiter is not None:
        return f"{head} waits for a Future"
    if _state(task) == inspect.CORO_CREATED:
        return f"{task_label(task)} never started"
    return f"{head} is ready to resume"


def _primitive_wait(primitive, method: str, task) -> str:
    name = _label(primitive)
    if isinstance(primitive, asyncio.Lock):
        owner = getattr(primitive, "_ds_owner", None)
        if owner is None:
            return f"waits for {name}"
        if owner is task:
            return f"waits for {name}, which it holds itself (asyncio.Lock is not reentrant)"
        if owner.done():
            return f"waits for {name}, held by {task_label(owner)}, which finished without releasing it"
        return f"waits for {name} held by {task_label(owner)}"
    if isinstance(primitive, asyncio.Event):
        return f"waits for {name}, which nothing sets"
    if isinstance(primitive, asyncio.Condition):
        return f"waits on {name}, which nothing notifies"
    if isinstance(primitive, asyncio.Queue):
        if method == "put":
            return f"waits to put into {name}, which is full"
        if method == "join":
            unfinished = primitive._unfinished_tasks
            return f"waits to join {name}: {unfinished} item{'s' * (unfinished != 1)} never marked task_done()"
        return f"waits to get from {name}, which is empty"
    if isinstance(primitive, asyncio.Semaphore):
        return f"waits for {name}, which nothing releases"
    return f"waits at {name} ({primitive.n_waiting} of {primitive.parties} parties arrived)"


def _lost_wakeup(task) -> str | None:
    """If ``task`` waits for a signal that was sent before it started waiting, say so."""
    primitive, _ = _blocker(_chain(task))
    who = task_label(task)
    cleared = getattr(primitive, "_ds_cleared_at", None)
    if isinstance(primitive, asyncio.Event) and cleared is not None and not primitive.is_set():
        set_step, setter = primitive._ds_set_at
        return (f"lost wakeup: {who} waits for {_label(primitive)} forever; {_actor_label(setter)} set it at step "
                f"{set_step} but {_actor_label(cleared[1])} cleared it at step {cleared[0]}, before {who} saw it")
    unheard = getattr(primitive, "_ds_unheard", None)
    if isinstance(primitive, asyncio.Condition) and unheard is not None:
        return (f"lost wakeup: {who} waits on {_label(primitive)} forever; {_actor_label(unheard[1])} notified "
                f"it at step {unheard[0]}, before {who} started waiting (no task was waiting then)")
    return None


def _stacks(tasks) -> str:
    """Each task's await chain as a stack, detsched's frames removed."""
    out = []
    for task in tasks:
        summary = traceback.StackSummary.extract((frame, frame.f_lineno) for frame in _chain(task))
        kept = [entry for entry in summary if not frames.is_internal(entry.filename)]
        out.append(f"{task_label(task)}:\n" + ("".join(traceback.format_list(kept)) or "  (not started)\n"))
    return "\n".join(out)


def _exception_info(error: BaseException, actor: str) -> FailureInfo:
    traceback_ = error.__traceback__
    while traceback_ is not None and not frames.is_user_file(traceback_.tb_frame.f_code.co_filename):
        traceback_ = traceback_.tb_next  # where the loop re-raised it (run_until_complete) is no news
    error.__traceback__ = traceback_ or error.__traceback__
    return FailureInfo("exception", f"{type(error).__name__}: {error}".rstrip(": "), actor,
                       frames.format_exception(error), error)


def _signal(me: LogicalThread) -> tuple:
    """When and by whom a signal is sent: the step, and the running task (else the thread)."""
    loop = asyncio.events._get_running_loop()
    return me.sched.steps, (asyncio.current_task(loop) if loop is not None else None) or me


def _actor_label(actor) -> str:
    return task_label(actor) if isinstance(actor, asyncio.Task) else actor.label


# --------------------------------------------------------------------------- instrumentation

def _labelled(init):
    """``__init__`` that also names the primitive after where user code made it."""
    def __init__(self, *args, **kwargs):
        init(self, *args, **kwargs)
        self._ds_label = make_label(f"asyncio.{type(self).__name__}")

    return __init__


_real_lock_acquire, _real_lock_release = asyncio.Lock.acquire, asyncio.Lock.release
_real_event_set, _real_event_clear = asyncio.Event.set, asyncio.Event.clear
_real_notify = asyncio.Condition.notify
_real_warn_unawaited = warnings._warn_unawaited_coroutine  # type: ignore[attr-defined]
_real_set_policy = asyncio.events.set_event_loop_policy
_real_asyncio_run = asyncio.runners.run
_real_set_running_loop = asyncio.events._set_running_loop


async def _lock_acquire(self):
    await _real_lock_acquire(self)
    self._ds_owner = asyncio.current_task()  # a deadlock report names who holds the lock
    return True


def _lock_release(self) -> None:
    _real_lock_release(self)
    self._ds_owner = None


def _event_set(self) -> None:
    me = current()
    if me is not None and not self._value:
        self._ds_set_at = _signal(me)
    _real_event_set(self)


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


def _warn_unawaited(coro) -> None:
    policy, me = _policy, current()
    if policy is None or me is None or me.sched is not policy.sched:
        _real_warn_unawaited(coro)
    elif not me.sched.aborting:
        policy.unawaited.append(
            f"coroutine {coro.__qualname__}() was never awaited (dropped at {frames.user_location(2)})")


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


#: (owner, attribute, value) set for the duration of every run.
_PATCHES = [
    *((cls, "__init__", _labelled(cls.__init__)) for cls in _PRIMITIVES),
    (asyncio.Lock, "acquire", _lock_acquire), (asyncio.Lock, "release", _lock_release),
    (asyncio.Event, "set", _event_set), (asyncio.Event, "clear", _event_clear),
    (asyncio.Condition, "notify", _condition_notify),
    (warnings, "_warn_unawaited_coroutine", _warn_unawaited),
    (asyncio, "set_event_loop_policy", _set_event_loop_policy),
    (asyncio.events, "set_event_loop_policy", _set_event_loop_policy),
    (asyncio, "run", _asyncio_run), (asyncio.runners, "run", _asyncio_run),
    (asyncio.events, "_set_running_loop", _set_running_loop),
]
