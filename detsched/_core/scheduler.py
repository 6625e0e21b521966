"""Scheduler core: runs one logical thread at a time and asks the strategy who runs next.

Every controlled thread is a real OS thread parked on a private lock. Only the thread holding the
baton runs. At a *scheduling point* the running thread announces its next operation (an ``Op``:
what it is about to do, and when it could do it) and the scheduler picks, among the threads whose
operations can proceed, who runs next. Handing over costs one lock release and one acquire; there is
no scheduler thread. Code between two scheduling points runs atomically, so a run is a pure function
of the target and the decisions.

What the run does is written to its ``Execution`` (steps, decisions, path, timeline); what goes
wrong is found by the detectors (``detsched._detect``), which the scheduler asks when a thread
cannot go on. The controller (``controller.run``) starts the run and watches it.
"""

from __future__ import annotations

import _thread
import sys
from functools import partial
from typing import Callable

from detsched._core import carriers, frames, outside
from detsched._core.clock import VirtualClock
from detsched._core.execution import Execution
from detsched._core.footprints import QUERIES, Footprints
from detsched._core.ops import FailureInfo, LogicalThread, Op, TraceStep, describe, set_current
from detsched._detect import threads as detect
from detsched.errors import DetschedInternalError, DetschedUsageError, ReplayDiverged, RunAborted
from detsched.schedule import default_task
from detsched.settings import Limits

_allocate_lock = _thread.allocate_lock

#: Virtual seconds within which timed waits that end close together end in any order (the kernel's
#: timer slack and scheduling latency blur the order of wake-ups that close; asyncio's own timers
#: keep their order).
TIMER_SLACK = 1e-3
#: A run that reaches max_steps is a livelock if some poll failed within this many last steps.
RETRYING_WINDOW = 1000
#: Steps the other threads of a run that failed of an uncaught exception go on for, at most, before
#: they are stopped (``Scheduler.wind_down``).
WIND_DOWN_STEPS = 10_000


class Scheduler:
    """Runs one execution of a target under a strategy."""

    def __init__(self, strategy, limits: Limits, *, tracing: bool = False, verify: dict[int, int] | None = None,
                 report_leaks: bool = True, let_go: bool = False):
        self.strategy = strategy
        self.report_leaks = report_leaks  # False: threads still blocked after the target returned end the run quietly
        self.let_go = let_go  # threads blocked when the target has returned go on outside control
        self.limits = limits
        self.execution = Execution(verify=verify)
        # A strategy that steers by what runs did (``cover``) reads each run's trace when it ends.
        needs_trace = getattr(strategy, "needs_trace", False)
        self.tracing = tracing or needs_trace
        if needs_trace:
            strategy.watch_execution(self.execution)
        self.clock = VirtualClock()
        #: The controlled world of this run (``detsched._instrument.world.World``): the per-run state
        #: of the primitives and the event loop. Set by the world when it is installed.
        self.world = None
        #: The race detector of this run (``detsched._detect.races.RaceDetector``), or None when
        #: accesses are not checked. Set by the world.
        self.races = None
        #: What every step touched, for a strategy that reduces by dependencies (``dpor``), or None.
        self.footprints: Footprints | None = None
        if getattr(strategy, "needs_footprints", False):
            self.footprints = Footprints()
            strategy.watch(self.footprints)
        self.threads: list[LogicalThread] = []  # index == tid
        self.live: list[LogicalThread] = []  # started, not finished, in tid order
        self.running: LogicalThread | None = None  # holds the baton
        self.main: LogicalThread | None = None
        self.labels: dict[str, int] = {}  # creation site -> objects labelled there so far
        self.failure: FailureInfo | None = None
        self.usage_error: DetschedUsageError | None = None
        self.aborting = False
        # Invariant: winding_down implies self.failure is not None.
        self.winding_down = False  # after an uncaught exception: the others go on, unrecorded
        self.wound_down = 0  # steps made while winding down
        self.waiting_outside = False  # for a change by threads detsched does not control
        self._races_found: tuple = ()  # the races of the run up to its failure, kept when winding down
        self.last_failed_poll: int | None = None  # step of the latest failed poll: retrying threads suggest a livelock
        self.ended = _allocate_lock()  # released once when the run ends
        self.ended.acquire()
        self._end_once = _allocate_lock()

    @property
    def steps(self) -> int:
        """Scheduling steps so far (those made winding down too)."""
        return self.execution.steps + self.wound_down

    # ----------------------------------------------------------------- scheduling points

    def wait(self, me: LogicalThread, op: Op) -> bool:
        """Announce ``op`` and return when ``me`` is chosen to perform it: True if it can proceed,
        False if its deadline passed first (a timed wait timing out)."""
        if me.detached:
            return self._go_on_outside(op)
        if self.aborting:
            if op.ready is None:  # let cleanup (releases in finally blocks) happen while unwinding
                return True
            raise RunAborted
        me.op = op
        me.ops += 1
        if op.resource is not None:
            me.sync_ops += 1
        if op.done and op.resource is not None and self.footprints is not None:
            self.footprints.touch(op.resource)  # its effect is part of the step that ends here
        if self.tracing:
            op.where = frames.user_location(3)
            if op.done:  # the timeline shows it when it happened, not when the thread goes on
                self.execution.row(TraceStep(self.execution.steps + 1, me.tid, me.name, op.describe(), op.where,
                                             obj=describe(op.resource)))
        try:
            chosen = self._decide(me)
            if chosen is not me:
                self._hand_over(me, chosen)
        except RunAborted:
            if not me.detached:  # the run ended while ``me`` waited here
                raise
        me.op = None
        if me.detached:
            return self._go_on_outside(op)
        me.spinning = False
        return op.ready is None or op.ready()

    def choose(self, me: LogicalThread, bound: int, what: str = "choice", *, traced: bool = True) -> int:
        """A non-thread decision (e.g. which ready asyncio callback runs next): an integer in
        ``range(bound)`` picked by the strategy, recorded in the schedule like a thread switch.
        The default -- what a schedule need not store -- is 0. ``traced=False``: the caller writes
        the timeline row."""
        if bound <= 1 or self.winding_down:
            return 0
        if self.aborting:
            raise RunAborted
        me.ops += 1
        self._verify_path()
        try:
            value = self.strategy.next_data(bound, at=(me.tid, me.ops))
        except ReplayDiverged as exc:
            self._fail_usage(exc)
        execution = self.execution
        execution.decided((me.tid, me.ops), tuple(range(bound)), 0, value)
        execution.chose_data(value, what)
        if self.tracing and traced:
            execution.row(TraceStep(execution.steps, me.tid, me.name, f"{what} #{value} of {bound}",
                                    frames.user_location(2)))
        return value

    def _verify_path(self) -> None:
        if not self.execution.path_matches():
            decision = len(self.execution.decisions)
            self._fail_usage(ReplayDiverged(
                decision, "the threads did different operations before it than when the schedule was recorded"))

    def poll(self, me: LogicalThread, op: Op, progressed: Callable[[], bool]) -> bool:
        """A scheduling point for a non-blocking check (try-acquire, ``is_set``...).

        Spinning is a loop, not a check: a thread is spinning only when the same check, called
        from the same place (the same chain of calls), failed the last time too, with no other
        operation on a primitive in between. A spinning thread gives way to others at its next
        point, and lets virtual time pass when nobody else can run. One failed check (a try-lock
        before the slow path, the stdlib's ``Condition._is_owned`` probe), or the same check made
        again from elsewhere as the code goes on (an actor asking ``is_alive()`` of itself when it
        makes a proxy and again when it sends), is not spinning: time must not jump past a timed
        wait because of it."""
        before = me.sync_ops
        self.wait(me, op)
        succeeded = progressed()
        # CPython can switch threads when the check returns, whatever it returned: without this
        # point, what the thread does next up to its next point (a back-off that releases what it
        # holds, a critical section entered by a try-acquire) would look atomic to every other
        # check, and the classic try-lock livelock, or a second try-acquire that fails, unreachable.
        self.wait(me, Op("checked", None, done=True))
        if succeeded:
            me.failed_poll = None
            return True
        self.last_failed_poll = self.execution.steps
        sites = frames.call_sites(2)  # the primitive that polls, and its callers
        spinning = me.failed_poll == (op.kind, op.resource, before, sites)
        me.failed_poll = (op.kind, op.resource, me.sync_ops, sites)
        me.spinning = spinning
        return False

    def publish(self, me: LogicalThread, obj) -> None:
        """``me`` releases ``obj`` (see ``RaceDetector.publish``): a no-op unless races are checked."""
        if self.races is not None:
            self.races.publish(me.race_id, obj)
        if self.footprints is not None:
            self.footprints.touch(obj, published=True)

    def receive(self, me: LogicalThread, obj, *, once: bool = False) -> None:
        """``me`` acquires ``obj`` (see ``RaceDetector.receive``)."""
        if self.races is not None:
            self.races.receive(me.race_id, obj, once=once)
        if self.footprints is not None:
            self.footprints.touch(obj, write=False, received=True)

    def looked_at(self, obj) -> None:
        """The running thread read ``obj``'s state before announcing a wait on it (an Event's set
        count, a Condition's waiters): that read belongs to the step that ends at its point."""
        if self.footprints is not None:
            self.footprints.touch(obj)

    def label(self, kind: str, site: str) -> str:
        """``Kind(file.py:LINE)``, numbered ``#2``, ``#3``... for later objects made at the same place."""
        key = f"{kind}({site})"
        count = self.labels[key] = self.labels.get(key, 0) + 1
        return key if count == 1 else f"{key}#{count}"

    def _hand_over(self, me: LogicalThread, chosen: LogicalThread) -> None:
        self.running = chosen
        chosen.park.release()
        me.park.acquire()
        if self.aborting and not me.detached:
            raise RunAborted

    def _go_on_outside(self, op: Op) -> bool:
        """``op`` for a detached thread: wait for real until it can proceed or its time is up."""
        if op.ready is None:
            return True
        timeout = None if op.deadline is None else max(0.0, op.deadline - self.clock.monotonic())
        return outside.wait_outside(op.ready, timeout)

    def can_run(self, t: LogicalThread) -> bool:
        op = t.op
        return (op.ready is None or op.ready()
                or (op.deadline is not None and op.deadline <= self.clock.monotonic()))

    def _decide(self, me: LogicalThread) -> LogicalThread:
        """Pick who performs the next step. ``me`` (the thread at this point) may have finished.

        This runs at every scheduling point, so the common case -- someone can run, not everyone
        spins -- takes one pass over the live threads and no strategy call when one can run."""
        if me.op is not None and not self.winding_down and not self.can_run(me):
            cycle = detect.wait_cycle(me, self.can_run)
            if cycle is not None:
                self.fail(cycle)
        can_run = self.can_run
        runnable = [t for t in self.live if t.op is None or t.op.ready is None or can_run(t)]
        if not runnable or _all_spinning(runnable):
            runnable = self._let_time_pass(runnable)
        yielding = me.spinning and len(runnable) > 1 and me in runnable
        if yielding:
            runnable.remove(me)
        if self.winding_down:
            return self._wind_down_step(me, runnable)
        execution = self.execution
        decision = -1
        if len(runnable) == 1:
            chosen = runnable[0]
            current = me.tid if chosen is me else None
        else:
            decision = len(execution.decisions)
            current = me.tid if me in runnable else None
            tids = [t.tid for t in runnable]
            self._verify_path()
            try:
                tid = self.strategy.next_task(tids, current, yielding=yielding, at=(me.tid, me.ops))
            except ReplayDiverged as exc:
                self._fail_usage(exc)
            execution.decided((me.tid, me.ops), tuple(tids), default_task(tids, current), tid)
            chosen = self.threads[tid]
        execution.stepped(chosen.tid, chosen.op.kind)
        if self.footprints is not None:
            self._step_footprint(chosen, decision)
        self.clock.tick()
        if self.tracing:
            self._record(me, chosen, current)
        if execution.steps > self.limits.max_steps:
            retrying = (self.last_failed_poll is not None
                        and execution.steps - self.last_failed_poll < RETRYING_WINDOW)
            self.out_of_steps(me, retrying or any(t.spinning for t in self.live))
        return chosen

    def wind_down(self) -> None:
        """The run failed of an uncaught exception: its other threads go on, as they would after a
        real test failed -- a test's teardown asks its actors to stop, and they do -- until none of
        them can (then the run ends as a passing one does: blocked threads are let go or stopped),
        or for ``WIND_DOWN_STEPS`` at most. Otherwise objects that outlive the run (an actor left in
        a class-level registry, with no thread serving it) would hang code after it that talks to
        them. These steps are not part of the run: the strategy is not asked, nothing is recorded
        or traced, and races are no longer checked."""
        self.winding_down = True
        if self.races is not None:
            self._races_found = tuple(self.races.races)
            self.races = None
        self.footprints = None
        self.tracing = False

    def _wind_down_step(self, me: LogicalThread, runnable: list[LogicalThread]) -> LogicalThread:
        """Who goes on while winding down: the thread at this point if it can, else the first that can."""
        self.wound_down += 1
        if self.wound_down > WIND_DOWN_STEPS:
            self._end()
            raise RunAborted
        self.clock.tick()
        return me if me in runnable else runnable[0]

    def _step_footprint(self, chosen: LogicalThread, decision: int) -> None:
        footprints, op = self.footprints, chosen.op
        footprints.begin(chosen.tid, decision)
        if op.kind == "begin":
            footprints.touch_thread(chosen.tid, received=True)  # after whatever started it
        elif op.resource is not None and not op.done:
            footprints.touch(op.resource, write=op.kind not in QUERIES)
        if op.deadline is not None:
            footprints.touch_clock()

    def _let_time_pass(self, runnable: list[LogicalThread]) -> list[LogicalThread]:
        """Every thread waits -- or only spins on polls, which burns time too: virtual time passes,
        once, up to the next deadline, which may be what the spinners wait for. Returns who runs
        next: the spinners, else who can run then; ends the run when nobody can and nobody waits
        on time."""
        deadlines = [t.op.deadline for t in self.live if t.op.deadline is not None
                     and t.op.deadline > self.clock.monotonic()]
        if not runnable and not self._ends_when_stuck() and outside.may_wake():
            runnable = self._wait_for_outside(min(deadlines) - self.clock.monotonic() if deadlines else None)
            if runnable:
                return runnable
            if not deadlines:
                self._stuck(waited_outside=True)  # raises
        if deadlines:
            # Threads whose deadlines fall within TIMER_SLACK of the first wake up together, in
            # an order the strategy picks: a real OS wakes sleepers that close in either order.
            first = min(deadlines)
            self.clock.advance_to(max(d for d in deadlines if d <= first + TIMER_SLACK))
            # Spinners, ready before the jump, take the next step first, and give way to the
            # threads it woke only at their next point: otherwise a thread woken by every jump (a
            # pool's manager looping on sleep) wins every choice, and a spinner about to stop
            # spinning (a join() polling between two sleeps) never takes its step.
            runnable = runnable or [t for t in self.live if self.can_run(t)]
        if not runnable:
            self._stuck()  # raises
        return runnable

    def _wait_for_outside(self, gap: float | None) -> list[LogicalThread]:
        """Nobody can run, but threads detsched does not control may be what everyone waits for (a
        pool's result thread, started before the run, setting a Future). Wait for real, as the
        real runtime would, until one of them wakes somebody, for the virtual ``gap`` until the next
        deadline or ``blocked_after`` seconds at most; then who can run (nobody: virtual time
        passes, or the run is stuck, as without such threads)."""
        limit = self.limits.blocked_after if gap is None else min(gap, self.limits.blocked_after)
        self.waiting_outside = True  # the watchdog counts this as progress: the wait is bounded
        try:
            outside.wait_outside(lambda: any(self.can_run(t) for t in self.live), limit)
        finally:
            self.waiting_outside = False
        return [t for t in self.live if self.can_run(t)]

    def out_of_steps(self, me: LogicalThread, spinning: bool, last: str = "", details: str = "") -> None:
        """Fail a run that reached ``max_steps`` (see ``detect.out_of_steps``)."""
        self.fail(detect.out_of_steps(me, max_steps=self.limits.max_steps, elapsed=self.clock.elapsed,
                                      spinning=spinning, last=last, details=details))

    def _record(self, me: LogicalThread, chosen: LogicalThread, current: int | None) -> None:
        op = chosen.op
        if op.done and chosen is me:
            return  # recorded when announced
        steps = self.execution.steps
        if op.done:
            self.execution.row(TraceStep(steps, chosen.tid, chosen.name, "resumes", op.where,
                                         f"preempts T{current}" if current is not None else ""))
            return
        note = at_store = ""
        if op.ready is not None and not op.ready():
            note = "timed out"
        elif current is not None and chosen.tid != current:
            note = f"preempts T{current}"
            if me.op is not None and me.op.kind.startswith("store "):
                at_store = f"{me.op.describe()} @{me.op.where}"
        if op.row_by_caller:
            self.execution.hold_note(note)
            return
        self.execution.row(TraceStep(steps, chosen.tid, chosen.name, op.describe(), op.where, note, at_store,
                                     describe(op.resource)))

    # ----------------------------------------------------------------- threads

    def spawn(self, thread, name: str, daemon: bool, body: Callable[[], None]) -> LogicalThread:
        """Start a logical thread that runs ``body`` on an OS thread of its own (a carrier) once scheduled."""
        lt = LogicalThread(self, len(self.threads), name, thread, daemon)
        self.threads.append(lt)
        if self.races is not None:  # the new thread begins after what its starter did so far
            parent = self.running.race_id if self.running is not None else None
            self.races.thread_started(parent, lt.tid, lt.label)
        if self.footprints is not None and self.running is not None:
            self.footprints.touch_thread(lt.tid, published=True)
        lt.op = Op("begin")
        # Its OS thread waits on ``lt.park`` until the first step of ``lt`` is handed to it, so
        # ``Thread.start()`` need not wait for it: nothing it does before then can be seen.
        carrier = carriers.carry(partial(self._bootstrap, lt, body))
        lt.park, lt.os_ident = carrier.park, carrier.ident
        self.live.append(lt)
        return lt

    def _bootstrap(self, lt: LogicalThread, body: Callable[[], None]) -> None:
        set_current(lt)
        try:
            if self.aborting:
                raise RunAborted
            lt.op = None
            _install_trace_hooks()
            body()
        except RunAborted:
            pass
        except DetschedUsageError as exc:
            self._fail_usage(exc, raise_=False)
        except BaseException as exc:  # an uncaught exception in any thread is a failure
            # ... but SystemExit ends only the thread it is raised in, as threading.excepthook has it;
            # raised by the target itself, it is the test exiting with an error.
            if lt.detached and not isinstance(exc, SystemExit):  # as the stdlib reports a thread's error
                sys.stderr.write(f"Exception in thread {lt.name} (let go when its detsched run ended):\n"
                                 + frames.format_exception(exc))
            elif not self.aborting and not self.winding_down and (lt is self.main or not isinstance(exc, SystemExit)):
                self.fail(detect.uncaught(lt, exc), raise_=False, wind_down=True)
        finally:
            try:
                self._exit(lt)
            except RunAborted:
                pass
            except BaseException as exc:  # never leave the run hanging on an internal error
                self.fail(FailureInfo("exception", str(DetschedInternalError(repr(exc))), lt.label,
                                      frames.format_exception(exc), exc), raise_=False)
            set_current(None)
            lt.exited.release()
            if lt.detached:
                outside.detached_exited(lt)

    def _exit(self, lt: LogicalThread) -> None:
        self.publish(lt, lt)  # a join or a failed is_alive() comes after everything it did
        lt.finished = True
        lt.ops += 1
        lt.op = None
        self.live.remove(lt)
        if self.aborting:
            return
        if not self.live or (self.main.finished and all(t.daemon or t.idle for t in self.live)):
            self._end()  # as at interpreter exit: only daemon threads and idle pool workers remain
            return
        chosen = self._decide(lt)
        self.running = chosen
        chosen.park.release()

    # ----------------------------------------------------------------- failures

    def _stuck(self, waited_outside: bool = False) -> None:
        """Nothing can run and no thread waits on time: end the run, or report why it cannot end
        (``waited_outside``: after threads outside control had their time to wake somebody)."""
        if self._ends_when_stuck():
            self._end()
            raise RunAborted
        blocked = list(self.live)
        if waited_outside:
            self.fail(detect.waiting_on_outside(blocked, self.limits.blocked_after))
        self.fail(detect.stuck(blocked, main_done=self.main is None or self.main.finished))

    def _ends_when_stuck(self) -> bool:
        """Whether a run in which nothing can run just ends, as a passing one does: it is winding
        down, or its target returned and only daemon threads, idle pool workers or unreported
        leaks are left."""
        main_done = self.main is None or self.main.finished
        return self.winding_down or main_done and (not self.report_leaks
                                                   or all(t.daemon or t.idle for t in self.live))

    def fail(self, info: FailureInfo, *, raise_: bool = True, wind_down: bool = False) -> None:
        """End the run with ``info`` (the first failure wins); unwind the caller unless ``raise_`` is
        off. With ``wind_down`` (an uncaught exception ended its thread), the other threads first
        go on (``wind_down``); anything failing while they do ends the run there."""
        if self.winding_down:
            self._end()
        elif self.failure is None and self.usage_error is None and not self.aborting:
            info.step = info.step or self.execution.steps
            self.failure = self._first_race_before(info)
            if self.tracing:  # end the timeline with the operations that never completed
                for t in info.blocked:
                    self.execution.row(TraceStep(self.execution.steps, t.tid, t.name, t.op.describe(), t.op.where,
                                                 "blocked", obj=describe(t.op.resource)))
            if wind_down:
                self.wind_down()
            else:
                self._end()
        if raise_:
            raise RunAborted

    def fail_from_watchdog(self, info: FailureInfo) -> None:
        """The watchdog's verdict, from the controller's thread: the running thread is outside
        control, so nothing is woken here; unwinding the run stops what it can."""
        if not self.winding_down:  # else the run failed already, and only its winding down is stuck
            info.step = self.execution.steps
            self.failure = info
        self._end_once.acquire(False)

    def refuse(self, error: DetschedUsageError) -> None:
        """The running thread did what no run can control (a fork, a subprocess): the run ends with
        ``error`` here, whether or not the code would catch it (a library that logs a failed
        submit and goes on would otherwise go on without its child, and fail for that)."""
        self._fail_usage(error)

    def _fail_usage(self, error: DetschedUsageError, *, raise_: bool = True) -> None:
        if self.usage_error is None and self.failure is None:
            self.usage_error = error
            self._end()
        if raise_:
            raise RunAborted

    def _first_race_before(self, info: FailureInfo) -> FailureInfo:
        """A data race comes before whatever failure it may have led to: the run goes on past a
        race (so that every race it makes is seen), and its first race is what it failed of."""
        race = self.races.failure if self.races is not None else None
        if race is None or info.kind == "data-race":
            return info
        race.details += f"\n\nthe run then failed: {info.kind}: {info.message}"
        return race

    def _end(self) -> None:
        # From here on nothing is scheduled: threads still unwinding (the failing one, through its
        # finally blocks) must not run others, or the trace would go on past the failure.
        if self.failure is None and self.usage_error is None and self.races is not None:
            self.failure = self.races.failure  # a run that only raced
        if not self.aborting:
            self.winding_down = False
            main_done = self.main is not None and self.main.finished
            for t in self.live:
                if t.op is not None and not self.can_run(t) and not (main_done and self.let_go and outside.detach(t)):
                    outside.orphan(t)
        self.aborting = True
        if self._end_once.acquire(False):
            self.ended.release()

    def result(self):
        """The frozen record of the run (once it has ended)."""
        races = tuple(self.races.races) if self.races is not None else self._races_found
        return self.execution.freeze(self.failure, self.usage_error, races)


def _all_spinning(threads: list[LogicalThread]) -> bool:
    for t in threads:
        if not t.spinning:
            return False
    return True


def _install_trace_hooks() -> None:
    """Give controlled threads the trace/profile hooks new threads get (coverage.py relies on it)."""
    import threading

    if threading._trace_hook is not None:  # type: ignore[attr-defined]
        sys.settrace(threading._trace_hook)  # type: ignore[attr-defined]
    if threading._profile_hook is not None:  # type: ignore[attr-defined]
        sys.setprofile(threading._profile_hook)  # type: ignore[attr-defined]
