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
import weakref
from detsched._core import frames
from detsched._core.ops import FailureInfo, LogicalThread, Op, TraceStep, current
from detsched._detect import tasks
from detsched.errors import DetschedUsageError, RunAborted

#: Names of the bound methods through which asyncio schedules a task's next step (the C
#: implementation's step wrapper has no name).
_TASK_STEPS = frozenset({"__step", "__wakeup", "task_wakeup"})

#: Consecutive steps of nothing but polling tasks before the loop counts them as spinning and lets
#: virtual time pass to its next timer (see ``ControlledEventLoop._spinning``).
POLLING_STEPS = 1000


class ControlledEventLoop(asyncio.BaseEventLoop):
    """An asyncio event loop inside a detsched run: one ready callback per step, picked by the
    strategy, on virtual time. The controlled policy makes it; it runs only inside its run."""

    def __init__(self, policy):  # the ControlledPolicy that made it
        super().__init__()
        self._policy = policy
        self._sched = policy.sched
        self._runner: LogicalThread | None = None  # the controlled thread running the loop
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
        return "its event loop" + (f" ({'; '.join(map(tasks.waits_for, pending))})" if pending else "")

    def missed_signal(self, thread: LogicalThread):
        """A lost wakeup among this loop's tasks, which leaves ``thread`` (running the loop) blocked."""
        return next(filter(None, map(tasks.missed_signal, self._pending())), None)

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
        # What the race detector orders tasks' first steps through (``_run_as_its_task``).
        self._first_steps = object()
        outer, me.aio_loop = me.aio_loop, self
        try:
            super().run_forever()
        finally:
            me.aio_loop = outer

    def run_until_complete(self, future):
        first = not self._main_checked
        self._main_checked = True
        result = super().run_until_complete(future)
        if self._failure is not None:
            self._sched.fail(self._failure)
        if first:
            self._check_after_main()
        return result

    # For the race detector, what the code that schedules a callback did before is ordered before
    # the callback: task creation, a future's result and every asyncio primitive's wakeup reach
    # the waiting task through one, and so does ``call_soon_threadsafe`` from a thread.
    def _call_soon(self, callback, args, context):
        return self._published(super()._call_soon(callback, args, context))

    def call_at(self, when, callback, *args, context=None):
        return self._published(super().call_at(when, callback, *args, context=context))

    def _published(self, handle):
        if self._sched.races is not None:
            me = current()
            if me is not None and me.sched is self._sched:
                self._sched.publish(me, handle)
        return handle

    def _write_to_self(self) -> None:
        """Nothing to wake: a loop waiting for callbacks waits at a scheduling point whose condition
        is a non-empty ready queue, which ``call_soon_threadsafe`` makes true."""

    def close(self) -> None:
        self._silence_leftovers()
        super().close()

    # ------------------------------------------------------------------ one step

    def _run_once(self) -> None:
        sched = self._sched
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
            sched.execution.loop_step()
            sched.clock.tick()
        if len(ready) == 1 and not sched.tracing:
            handle = ready.popleft()
        else:
            handle = self._pick(note or "")
        if sched.steps > sched.limits.max_steps:
            self._livelock(handle)
        if _resumes_after_yield(handle):
            self._looked[_task_of(handle)] = self._others_progress()
        if sched.races is None:
            handle._run()
        else:
            self._run_as_its_task(handle)

    def _run_as_its_task(self, handle) -> None:
        """Run ``handle`` with the race detector seeing the task whose step it is (or the loop's
        thread, for other callbacks), ordered after whoever scheduled it.

        Tasks' first steps are also ordered after one another, in the order they run: a task's
        first step is never overtaken (the loop's callbacks are FIFO), so two tasks that touch
        one object before their first ``await`` (``gather(a(), b())``) cannot interleave there.
        Steps after an ``await`` get no such order: there, tasks interleave."""
        runner, task = self._runner, _task_of(handle)
        first = False
        if task is not None:
            runner.race_id, first = self._sched.races.task_identity(task, runner.label)
        try:
            self._sched.receive(runner, handle, once=True)
            if first:
                self._sched.receive(runner, self._first_steps)
            handle._run()
            if first:
                self._sched.publish(runner, self._first_steps)
        finally:
            runner.race_id = runner.tid

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
            op = Op("asyncio poll", self, None, self._scheduled[0]._when if self._scheduled else None,
                    row_by_caller=True)
            me.spinning = self._spinning(polling)
        else:
            op = Op("asyncio step", row_by_caller=True)
        sched.wait(me, op)
        if self._scheduled:
            self._release_due_timers()
        return sched.execution.take_note()

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
        chosen = sched.choose(self._runner, len(options), "asyncio", traced=False) if len(options) > 1 else 0
        handle = ready[options[chosen]]
        del ready[options[chosen]]
        if sched.tracing:  # a row naming the task, not choose()'s generic one
            sched.execution.row(self._trace_step(handle, ready[options[0]] if chosen else None, note))
        return handle

    def _trace_step(self, handle, overtaken, note: str) -> TraceStep:
        me = self._runner
        what, where = _describe_handle(handle)
        if overtaken is not None:
            note = ", ".join(filter(None, (note, f"ahead of {_describe_handle(overtaken)[0]}")))
        return TraceStep(self._sched.execution.steps, me.tid, me.name, what, where, note)

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
        self._sched.fail(tasks.stuck(self._pending(), self._runner))

    def _livelock(self, handle) -> None:
        what, where = _describe_handle(handle)
        self._sched.out_of_steps(self._runner, self._polling_steps > 0, what + (f" at {where}" if where else ""),
                                 tasks.stacks(self._pending()))

    def _check_after_main(self) -> None:
        """The main coroutine returned: fail on a task exception nothing retrieved, then on leaks --
        unless what a test leaves behind is not reported (an unmarked test under pytest, which
        asyncio only logs and ``asyncio.run()`` cancels)."""
        for task in self._tasks:
            if task.done() and not task.cancelled() and task._log_traceback:
                if isinstance(task.exception(), DetschedUsageError):
                    raise task.exception()
                if self._sched.report_leaks:
                    self._sched.fail(tasks.unretrieved(task))
        dropped = self._policy.unawaited + self._abandoned
        self._policy.unawaited.clear()
        still_open = [agen for agen in (ref() for ref in self._agens)
                      if agen is not None and agen.ag_frame is not None and not agen.ag_running]
        leaks = tasks.leaks(self._pending(), dropped, still_open, self._runner)
        if leaks is not None and self._sched.report_leaks:
            self._sched.fail(leaks)

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
            actor = tasks.label(source)
        elif "handle" in context:
            actor = f"callback {_callable_name(context['handle']._callback)}"
        else:
            actor = context.get("message", "the event loop")
        if error is None:
            self._failure = FailureInfo("leak", context.get("message", "asyncio reported a problem"), actor)
        else:
            self._failure = tasks.exception(error, actor)

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
            self._abandoned.append(tasks.abandoned_generator(agen, frames.user_location(2)))
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
    return tasks.state(task) == inspect.CORO_SUSPENDED


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
    starts = tasks.state(task) == inspect.CORO_CREATED
    return f"{tasks.label(task)} {'starts' if starts else 'resumes'}", tasks.where(tasks.chain(task))
