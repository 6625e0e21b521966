"""Scheduler core: runs one logical thread at a time and asks the strategy who runs next.

Every controlled thread is a real OS thread parked on a private lock. Only the thread holding the
baton runs. At a *scheduling point* the running thread announces its next operation (an ``Op``:
what it is about to do, and when it could do it) and the scheduler picks, among the threads whose
operations can proceed, who runs next. Handing over costs one lock release and one acquire; there is
no scheduler thread. Code between two scheduling points runs atomically, so a run is a pure function
of the target and the decisions.

The caller's thread is the *controller*: it starts the first logical thread (T0, running the
target), waits for the run to end, and doubles as the watchdog that reports a thread stuck in code
detsched does not control.
"""

from __future__ import annotations

import _thread
import os
import sys
import zlib
from dataclasses import dataclass, field
from functools import partial
from typing import Callable

from detsched._core import frames
from detsched._core.clock import VirtualClock, real_monotonic, real_sleep as _sleep
from detsched.errors import DetschedInternalError, DetschedUsageError, ReplayDiverged, RunAborted
from detsched.schedule import default_task
from detsched.settings import Limits

_allocate_lock = _thread.allocate_lock
_get_ident = _thread.get_ident
_start_new_thread = _thread.start_new_thread

#: Virtual seconds within which timed waits that end close together end in any order (the kernel's
#: timer slack and scheduling latency blur the order of wake-ups that close; asyncio's own timers
#: keep their order).
TIMER_SLACK = 1e-3
#: A run that reaches max_steps is a livelock if some poll failed within this many last steps.
RETRYING_WINDOW = 1000
#: Seconds the controller waits for an aborted thread to unwind before giving up on it.
UNWIND_TIMEOUT = 2.0
#: Run each execution's threads on one CPU (see ``_pin_to_one_cpu``). Not Final: turn it off where
#: threads or thread pools that the code under test starts must keep every CPU.
PIN_TO_ONE_CPU = True

_tls = _thread._local()
_getprofile, _setprofile = sys.getprofile, sys.setprofile


#: ``current()``: the logical thread running the caller, or None when the caller is not under
#: control. Every primitive operation asks first, so it is a C-level callable: half the cost of a
#: function, and invisible to profile hooks (before Python 3.12 the hook that makes user function
#: calls scheduling points runs for every Python function call and return).
current: Callable[[], LogicalThread | None] = partial(getattr, _tls, "logical", None)


class Op:
    """An operation a thread is about to perform, announced at a scheduling point."""

    __slots__ = ("kind", "resource", "ready", "deadline", "holder", "where", "done")

    def __init__(self, kind: str, resource=None, ready: Callable[[], bool] | None = None,
                 deadline: float | None = None, holder: Callable[[], LogicalThread | None] | None = None,
                 *, done: bool = False):
        self.kind = kind  # e.g. "acquire", "wait", "put"
        self.resource = resource  # the primitive it touches, or None
        self.ready = ready  # None: can always proceed; else proceeds once ready() is true
        self.deadline = deadline  # virtual monotonic time at which a timed wait gives up
        self.holder = holder  # who must act before this op can proceed (wait-for graph)
        self.where = ""  # user file:line, filled only when tracing
        self.done = done  # announced after its effect (a release): the point only lets others run

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
                 "os_ident", "spinning", "idle", "ops", "last_poll", "sync_ops", "failed_poll", "detached")

    def __init__(self, sched: Scheduler, tid: int, name: str, thread, daemon: bool):
        self.sched, self.tid, self.name, self.thread, self.daemon = sched, tid, name, thread, daemon
        self.park = _allocate_lock()  # locked while the thread runs or is parked; released to wake it
        self.park.acquire()
        self.exited = _allocate_lock()  # released when the OS thread is about to exit
        self.exited.acquire()
        self.op: Op | None = None  # Invariant: set while parked at a scheduling point
        self.finished = False
        self.os_ident = 0
        self.spinning = False  # its last poll made no progress: give way to others
        self.idle = False  # an idle pool worker: blocked forever at the end is not a leak
        self.ops = 0  # scheduling points reached so far; (tid, ops) names a decision across runs
        self.last_poll: tuple[str, int] | None = None  # (loop, ops) after its last polling point
        self.sync_ops = 0  # operations on a primitive so far: a poll loop repeats with none in between
        # (kind, resource, sync_ops after it) of its latest failed poll, None once a poll succeeds.
        self.failed_poll: tuple[str, object, int] | None = None
        # Left blocked when its run ended and let go on outside control, as a real run leaves such a
        # thread: a later put, set or release (a fixture's teardown stopping it) wakes it for real.
        self.detached = False

    def __repr__(self) -> str:
        return f"T{self.tid}"

    @property
    def label(self) -> str:
        return f"T{self.tid} {self.name!r}"


@dataclass
class FailureInfo:
    """What went wrong in a run, as the scheduler saw it."""

    kind: str
    message: str
    thread: str = ""
    details: str = ""  # traceback or stacks, detsched frames removed
    exception: BaseException | None = None
    step: int = 0


@dataclass
class TraceStep:
    """One decision of a traced run: which thread went on with which operation."""

    step: int
    tid: int
    thread: str
    op: str
    where: str
    note: str = ""  # e.g. "timed out", "preempted T1"


@dataclass
class RunResult:
    failure: FailureInfo | None
    deviations: list[tuple[int, int]]
    positions: list[tuple[tuple[int, int], int]]  # the same deviations keyed by (tid, ops) of the deciding thread
    choices: list[tuple[tuple[int, int], tuple[int, ...], int]]  # every decision with a choice: (position, options, default)
    checks: list[int]  # path checksum before each deviation
    path: int  # path checksum of the whole run
    choice_points: int
    steps: int
    trace: list[TraceStep] = field(default_factory=list)
    usage_error: DetschedUsageError | None = None


class Scheduler:
    """Runs one execution of a target under a strategy."""

    def __init__(self, strategy, limits: Limits, *, tracing: bool = False,
                 thread_setup: Callable[[], None] = lambda: None, verify: dict[int, int] | None = None,
                 report_leaks: bool = True, let_go: bool = False):
        self.strategy = strategy
        self.report_leaks = report_leaks  # False: threads still blocked after the target returned end the run quietly
        self.let_go = let_go  # threads blocked when the target has returned go on outside control
        self.thread_setup = thread_setup  # runs first in every controlled thread
        self.limits = limits
        self.tracing = tracing
        self.clock = VirtualClock()
        self.threads: list[LogicalThread] = []  # index == tid
        self.live: list[LogicalThread] = []  # started, not finished, in tid order
        self.running: LogicalThread | None = None  # holds the baton
        self.main: LogicalThread | None = None
        self.steps = 0
        self.choice_points = 0
        self.deviations: list[tuple[int, int]] = []
        self.positions: list[tuple[tuple[int, int], int]] = []
        # A checksum of the path so far (every step's thread and kind of operation): replay compares
        # it at each recorded deviation (``verify``: decision index -> expected low 16 bits) and at
        # the end, so a program that changed is caught near where it changed.
        self.path = 0
        self.checks: list[int] = []  # path before each deviation, low 16 bits
        self.verify = verify or {}
        self.choices: list[tuple[tuple[int, int], tuple[int, ...], int]] = []
        self.labels: dict[str, int] = {}  # creation site -> objects labelled there so far
        self.trace: list[TraceStep] = []
        self.failure: FailureInfo | None = None
        self.usage_error: DetschedUsageError | None = None
        self.aborting = False
        self.last_failed_poll: int | None = None  # step of the latest failed poll: retrying threads suggest a livelock
        self.ended = _allocate_lock()  # released once when the run ends
        self.ended.acquire()
        self._end_once = _allocate_lock()

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
        if self.tracing:
            op.where = frames.user_location(3)
            if op.done:  # the timeline shows it when it happened, not when the thread goes on
                self.trace.append(TraceStep(self.steps + 1, me.tid, me.name, op.describe(), op.where))
        # A profile hook (detsched's own call instrumentation before Python 3.12, or a user's
        # profiler) has nothing to see in here and would cost more than the decision itself.
        profiler = _getprofile()
        if profiler is not None:
            _setprofile(None)
        try:
            chosen = self._decide(me)
            if chosen is not me:
                self._hand_over(me, chosen)
        except RunAborted:
            if not me.detached:  # the run ended while ``me`` waited here
                raise
        finally:
            if profiler is not None:
                _setprofile(profiler)
        me.op = None
        if me.detached:
            return self._go_on_outside(op)
        me.spinning = False
        return op.ready is None or op.ready()

    def choose(self, me: LogicalThread, bound: int, what: str = "choice") -> int:
        """A non-thread decision (e.g. which ready asyncio callback runs next): an integer in
        ``range(bound)`` picked by the strategy, recorded in the schedule like a thread switch.
        The default -- what a schedule need not store -- is 0."""
        if bound <= 1:
            return 0
        if self.aborting:
            raise RunAborted
        me.ops += 1
        self._verify_path(me)
        try:
            value = self.strategy.next_data(bound, at=(me.tid, me.ops))
        except ReplayDiverged as exc:
            self._fail_usage(exc)
        self.choices.append(((me.tid, me.ops), tuple(range(bound)), 0))
        if value != 0:
            self.deviations.append((self.choice_points, value))
            self.positions.append(((me.tid, me.ops), value))
            self.checks.append(self.path & 0xFFFF)
        self.choice_points += 1
        self.path = _extend_path(self.path, value, what)
        if self.tracing:
            self.trace.append(TraceStep(self.steps, me.tid, me.name, f"{what} #{value} of {bound}",
                                        frames.user_location(2)))
        return value

    def _verify_path(self, me: LogicalThread) -> None:
        expected = self.verify.get(self.choice_points)
        if expected is not None and expected != self.path & 0xFFFF:
            self._fail_usage(ReplayDiverged(
                self.steps, f"the threads did different operations before decision {self.choice_points} "
                "than when the schedule was recorded"))

    def poll(self, me: LogicalThread, op: Op, progressed: Callable[[], bool]) -> bool:
        """A scheduling point for a non-blocking check (try-acquire, ``is_set``...).

        Spinning is a loop, not a check: a thread is spinning only when the same check failed the
        last time too, with no other operation on a primitive in between. A spinning thread gives
        way to others at its next point, and lets virtual time pass when nobody else can run. One
        failed check (a try-lock before the slow path, the stdlib's ``Condition._is_owned`` probe)
        is not spinning: time must not jump past a timed wait because of it."""
        before = me.sync_ops
        self.wait(me, op)
        if progressed():
            me.failed_poll = None
            return True
        self.last_failed_poll = self.steps
        if op.kind == "try-acquire":
            # CPython can switch threads when a failed try-acquire returns: without this point a
            # thread that backs off (releases what it holds, then retries) could never be
            # overtaken in between, and the classic livelock would be unreachable.
            self.wait(me, Op("gave up", None, done=True))
        spinning = me.failed_poll == (op.kind, op.resource, before)
        me.failed_poll = (op.kind, op.resource, me.sync_ops)
        me.spinning = spinning
        return False

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
        return wait_outside(op.ready, timeout)

    def _can_run(self, t: LogicalThread) -> bool:
        op = t.op
        return (op.ready is None or op.ready()
                or (op.deadline is not None and op.deadline <= self.clock.monotonic()))

    def _decide(self, me: LogicalThread) -> LogicalThread:
        """Pick who performs the next step. ``me`` (the thread at this point) may have finished."""
        if me.op is not None and not self._can_run(me):
            self._check_wait_cycle(me)
        advanced = False
        while True:
            runnable = [t for t in self.live if self._can_run(t)]
            # Time passes when every thread waits -- or only spins on polls, which burns time too:
            # once, up to the next deadline, which may be what the spinners wait for.
            if runnable and (advanced or not all(t.spinning for t in runnable)):
                break
            deadlines = [t.op.deadline for t in self.live if t.op.deadline is not None
                         and t.op.deadline > self.clock.monotonic()]
            if deadlines:
                # Threads whose deadlines fall within TIMER_SLACK of the first wake up together, in
                # an order the strategy picks: a real OS wakes sleepers that close in either order.
                first = min(deadlines)
                self.clock.advance_to(max(d for d in deadlines if d <= first + TIMER_SLACK))
                advanced = True
                continue
            if runnable:
                break
            self._stuck(me)  # raises
        yielding = me.spinning and me in runnable and len(runnable) > 1
        if yielding:
            runnable.remove(me)
        current = me.tid if me in runnable else None
        if len(runnable) == 1:
            chosen = runnable[0]
        else:
            tids = [t.tid for t in runnable]
            self._verify_path(me)
            default = default_task(tids, current)
            self.choices.append(((me.tid, me.ops), tuple(tids), default))
            try:
                tid = self.strategy.next_task(tids, current, yielding=yielding, at=(me.tid, me.ops))
            except ReplayDiverged as exc:
                self._fail_usage(exc)
            if tid != default:
                self.deviations.append((self.choice_points, tid))
                self.positions.append(((me.tid, me.ops), tid))
                self.checks.append(self.path & 0xFFFF)
            self.choice_points += 1
            chosen = self.threads[tid]
        self.steps += 1
        self.clock.tick()
        self.path = _extend_path(self.path, chosen.tid, chosen.op.kind)
        if self.tracing:
            self._record(me, chosen, current)
        if self.steps > self.limits.max_steps:
            retrying = self.last_failed_poll is not None and self.steps - self.last_failed_poll < RETRYING_WINDOW
            spinning = retrying or any(t.spinning for t in self.live)
            self.out_of_steps(me, spinning)
        return chosen

    def out_of_steps(self, me: LogicalThread, spinning: bool, last: str = "", details: str = "") -> None:
        """Fail a run that reached ``max_steps``: a livelock if threads were spinning or retrying
        operations that fail, else a test longer than the bound (kind ``step-limit``)."""
        bound = f"the run did not finish within max_steps={self.limits.max_steps} scheduling steps"
        where = f"; the last one: {last}" if last else ""
        if spinning:
            self.fail(FailureInfo(
                "livelock", f"{bound}{where}, and its threads were spinning or retrying operations that keep "
                "failing: a livelock (if the test is just long, raise max_steps)", me.label, details))
        self.fail(FailureInfo(
            "step-limit", f"{bound} ({self.clock.elapsed:.3g} s of virtual time){where}, and its threads kept "
            "making progress: the test is longer than the bound rather than stuck. Raise it: max_steps= in "
            "explore(), @pytest.mark.detsched(max_steps=...) or --detsched-max-steps", me.label, details))

    def _record(self, me: LogicalThread, chosen: LogicalThread, current: int | None) -> None:
        op = chosen.op
        if op.done and chosen is me:
            return  # recorded when announced
        note = ""
        if op.done:
            self.trace.append(TraceStep(self.steps, chosen.tid, chosen.name, "resumes", op.where,
                                        f"preempts T{current}" if current is not None else ""))
            return
        if op.ready is not None and not op.ready():
            note = "timed out"
        elif current is not None and chosen.tid != current:
            note = f"preempts T{current}"
        self.trace.append(TraceStep(self.steps, chosen.tid, chosen.name, op.describe(), op.where, note))

    # ----------------------------------------------------------------- threads

    def spawn(self, thread, name: str, daemon: bool, body: Callable[[], None]) -> LogicalThread:
        """Start a controlled OS thread that runs ``body`` once scheduled; returns once it exists."""
        lt = LogicalThread(self, len(self.threads), name, thread, daemon)
        self.threads.append(lt)
        lt.op = Op("begin")
        started = _allocate_lock()
        started.acquire()
        _start_new_thread(self._bootstrap, (lt, body, started))
        started.acquire()  # Thread.start() returns only once the new thread exists
        self.live.append(lt)
        return lt

    def _bootstrap(self, lt: LogicalThread, body: Callable[[], None], started) -> None:
        lt.os_ident = _get_ident()
        _tls.logical = lt
        started.release()
        lt.park.acquire()
        try:
            if self.aborting:
                raise RunAborted
            lt.op = None
            _install_trace_hooks()
            self.thread_setup()
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
            elif not self.aborting and (lt is self.main or not isinstance(exc, SystemExit)):
                self.fail(FailureInfo("exception", f"{type(exc).__name__}: {exc}".rstrip(": "),
                                           lt.label, frames.format_exception(exc), exc, self.steps),
                           raise_=False)
        finally:
            try:
                self._exit(lt)
            except RunAborted:
                pass
            except BaseException as exc:  # never leave the run hanging on an internal error
                self.fail(FailureInfo("exception", str(DetschedInternalError(repr(exc))), lt.label,
                                           frames.format_exception(exc), exc), raise_=False)
            _tls.logical = None
            lt.exited.release()
            if lt.detached:
                _let_go(lt)

    def _exit(self, lt: LogicalThread) -> None:
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

    def _check_wait_cycle(self, me: LogicalThread) -> None:
        """Report a deadlock as soon as ``me`` closes a cycle of threads waiting for each other."""
        chain, t = [me], me
        while t.op is not None and t.op.holder is not None and t.op.deadline is None:
            holder = t.op.holder()
            if holder is None or holder.finished or self._can_run(t):
                return
            if holder is me:
                self.fail(self._deadlock_info("deadlock", chain, cycle=True))
            if holder in chain:
                return
            chain.append(holder)
            t = holder

    def _stuck(self, me: LogicalThread) -> None:
        """Nothing can run and no thread waits on time: end the run, or report why it cannot end."""
        blocked = list(self.live)
        main_done = self.main is None or self.main.finished
        if main_done and (not self.report_leaks or all(t.daemon or t.idle for t in blocked)):
            self._end()
            raise RunAborted
        lost = _lost_wakeup(blocked)
        if lost is not None:
            info = self._deadlock_info("lost-wakeup", blocked)
            info.message = lost
            self.fail(info)
        kind = "leak" if main_done else "deadlock"
        info = self._deadlock_info(kind, blocked)
        if main_done:
            stuck = [t for t in blocked if not (t.daemon or t.idle)]
            info.message = "; ".join(f"{t.label} is still blocked ({t.op.describe()}) after the test "
                                     "returned and can never finish" for t in stuck)
        self.fail(info)

    def _deadlock_info(self, kind: str, chain: list[LogicalThread], cycle: bool = False) -> FailureInfo:
        parts = []
        for t in sorted(chain, key=lambda t: (t.op.holder is None, t.tid)):  # lock holders first
            holder = t.op.holder() if t.op.holder is not None else None
            if t.op.kind == "join":
                part = f"T{t.tid} waits to join " + (holder.label if holder is not None else describe(t.op.resource))
            else:
                part = f"T{t.tid} waits for {describe(t.op.resource) or t.op.kind}"
                if holder is not None:
                    part += f" held by T{holder.tid}"
            parts.append(part)
        message = "; ".join(parts) + ("" if cycle else " (nothing can wake them)")
        if self.tracing:  # end the timeline with the operations that never completed
            for t in chain:
                self.trace.append(TraceStep(self.steps, t.tid, t.name, t.op.describe(), t.op.where, "blocked"))
        return FailureInfo(kind, message, chain[0].label, self._stacks(chain), step=self.steps)

    def _stacks(self, threads: list[LogicalThread]) -> str:
        current_frames = sys._current_frames()
        out = []
        for t in threads:
            stack = frames.format_stack(current_frames.get(t.os_ident))
            out.append(f"{t.label} ({t.op.describe() if t.op else 'running'}):\n{stack}")
        return "\n".join(out)

    def fail(self, info: FailureInfo, *, raise_: bool = True) -> None:
        """End the run with ``info`` (the first failure wins); unwind the caller unless ``raise_`` is off."""
        if self.failure is None and self.usage_error is None and not self.aborting:
            info.step = info.step or self.steps
            self.failure = info
            self._end()
        if raise_:
            raise RunAborted

    def _fail_usage(self, error: DetschedUsageError, *, raise_: bool = True) -> None:
        if self.usage_error is None and self.failure is None:
            self.usage_error = error
            self._end()
        if raise_:
            raise RunAborted

    def _end(self) -> None:
        # From here on nothing is scheduled: threads still unwinding (the failing one, through its
        # finally blocks) must not run others, or the trace would go on past the failure.
        if not self.aborting:
            main_done = self.main is not None and self.main.finished
            for t in self.live:
                if t.op is not None and not self._can_run(t) and not (main_done and self.let_go and _detach(t)):
                    _orphan(t)
        self.aborting = True
        if self._end_once.acquire(False):
            self.ended.release()

    # ----------------------------------------------------------------- controller side

    def run(self, main_thread, body: Callable[[], None]) -> RunResult:
        """Run ``body`` as T0 (``main_thread``) under control; return when every controlled thread
        is done, even if the controller is interrupted (Ctrl-C)."""
        cpus = _pin_to_one_cpu()
        try:
            self.main = self.spawn(main_thread, "MainThread", False, body)
            self.running = self.main
            self.main.park.release()
            self._watch()
        finally:
            self._unwind()
            if cpus is not None:
                os.sched_setaffinity(0, cpus)
        return RunResult(self.failure, self.deviations, self.positions, self.choices, self.checks, self.path,
                         self.choice_points, self.steps, self.trace,
                         self.usage_error)

    def _watch(self) -> None:
        """Wait for the run to end; report a thread that stops reaching scheduling points."""
        last_steps, since = -1, real_monotonic()
        while not self.ended.acquire(timeout=0.05):
            if self.steps != last_steps:
                last_steps, since = self.steps, real_monotonic()
            elif real_monotonic() - since > self.limits.blocked_after:
                self._report_blocked()
                return

    def _report_blocked(self) -> None:
        t = self.running
        frame = sys._current_frames().get(t.os_ident) if t is not None else None
        stack = frames.format_stack(frame)
        where = frames.innermost_user_location(frame)
        self.failure = FailureInfo(
            "blocked",
            f"{t.label if t else 'a thread'} ran for {self.limits.blocked_after:g}s without reaching a scheduling "
            f"point: it is blocked in code detsched does not control (a lock or queue made before the "
            f"run, real I/O, a C extension) or loops without synchronising ({where})",
            t.label if t else "", f"{t.label if t else '?'}:\n{stack}", step=self.steps)
        self._end_once.acquire(False)

    def _unwind(self) -> None:
        """Stop every thread still alive, one at a time, so none outlives its run."""
        self.aborting = True
        for t in list(self.threads):
            if not t.exited.locked():
                continue  # already gone
            if t is self.running and self.failure is not None and self.failure.kind == "blocked":
                # Stuck outside our control: stop it if it is running Python code (a loop with no
                # point in it). One blocked in a C call (real I/O, a real lock) is left as it is.
                if _runs_python(t):
                    _interrupt(t)
                    if t.exited.acquire(timeout=UNWIND_TIMEOUT):
                        t.exited.release()
                continue
            if t.park.locked() and not t.finished:
                t.park.release()
            if t.detached:
                continue  # goes on outside control: nothing to wait for
            if t.exited.acquire(timeout=UNWIND_TIMEOUT):
                t.exited.release()


_kind_codes: dict[str, int] = {}


def _extend_path(path: int, tid: int, kind: str) -> int:
    """Fold one step into the path checksum. Only the operation's kind counts ("call", "acquire"),
    not its details, which may differ between Python versions."""
    code = _kind_codes.get(kind)
    if code is None:
        code = _kind_codes[kind] = zlib.crc32(kind.split(" ", 1)[0].split("(", 1)[0].encode())
    return (path * 1_000_003 + tid * 7919 + code) & 0xFFFFFFFF


def _pin_to_one_cpu() -> set[int] | None:
    """Keep the controller, and so every thread it starts, on one CPU for the run; return the
    CPUs to give back afterwards (None: nothing changed).

    Only one controlled thread runs at a time, so a run loses nothing by it, and handing the baton
    to a thread parked on the same CPU is several times faster than waking one on another CPU.
    Processes exploring side by side pick different CPUs (by pid)."""
    if not PIN_TO_ONE_CPU or not hasattr(os, "sched_setaffinity"):
        return None
    try:
        cpus = os.sched_getaffinity(0)
        if len(cpus) < 2:
            return None
        os.sched_setaffinity(0, {sorted(cpus)[os.getpid() % len(cpus)]})
    except OSError:  # not allowed here (some containers): run unpinned
        return None
    return cpus


#: Threads let go at the end of their runs that may be alive at once; past it, such threads are
#: stopped with their run (and what they wait in is marked orphaned) so that runs leave no pile.
MAX_DETACHED = 64
#: Seconds a detached thread waits at most before looking at its condition again, in case a change
#: came through a path that does not notify (another run's controlled code).
OUTSIDE_POLL = 0.05
# Raw locks only: a run swaps threading's lock factory, and these serve threads in and out of runs.
_outside_guard = _allocate_lock()
_outside_waiters: list = []  # a raw lock per thread waiting outside control, released to wake it
_detached_alive = 0  # Invariant: == number of detached threads not yet exited (guarded by _outside_guard)


def _detach(t: LogicalThread) -> bool:
    """Let ``t`` go on outside control when its run ends, unless too many such threads live."""
    global _detached_alive
    with _outside_guard:
        if _detached_alive >= MAX_DETACHED:
            return False
        _detached_alive += 1
    t.detached = True
    return True


def _let_go(t: LogicalThread) -> None:
    global _detached_alive
    with _outside_guard:
        _detached_alive -= 1
    changed_outside()  # whoever joins it outside control


def wait_outside(ready: Callable[[], bool], timeout: float | None) -> bool:
    """Wait for real, in a thread detsched does not control (or no longer controls), until
    ``ready()`` holds (True) or ``timeout`` seconds have passed (False)."""
    deadline = None if timeout is None else real_monotonic() + timeout
    while True:
        left = OUTSIDE_POLL if deadline is None else min(OUTSIDE_POLL, deadline - real_monotonic())
        with _outside_guard:
            if ready():
                return True
            if left <= 0:
                return False
            wake = _allocate_lock()
            wake.acquire()
            _outside_waiters.append(wake)
        wake.acquire(timeout=left)
        with _outside_guard:
            if wake in _outside_waiters:
                _outside_waiters.remove(wake)


def changed_outside() -> None:
    """Code outside control changed a primitive: wake whoever waits outside control."""
    if not _outside_waiters:
        return
    with _outside_guard:
        for wake in _outside_waiters:
            wake.release()
        _outside_waiters.clear()


def _orphan(t: LogicalThread) -> None:
    """Mark the primitive ``t`` waits in as orphaned: the run ends and ``t`` is unwound, so nothing
    outside the run may count on it answering (see ``sync.check_reachable``)."""
    resource = t.op.resource if t.op is not None else None
    if resource is not None and getattr(resource, "label", None) is not None:
        try:
            resource._ds_orphaned = t.label
        except AttributeError:  # a primitive with __slots__
            pass


def _runs_python(t: LogicalThread) -> bool:
    """Whether ``t`` keeps a CPU busy (a loop), rather than waiting in a C call (real I/O, a real
    lock) that an exception raised in it could not interrupt anyway."""
    import time

    try:
        cpu_clock = time.pthread_getcpuclockid(t.os_ident)
        before = time.clock_gettime(cpu_clock)
        _sleep(0.05)
        return time.clock_gettime(cpu_clock) - before > 0.01
    except (AttributeError, OSError):  # no per-thread CPU clocks here
        return False


def _interrupt(t: LogicalThread) -> None:
    """Raise ``RunAborted`` in ``t`` at its next bytecode."""
    import ctypes

    ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(t.os_ident), ctypes.py_object(RunAborted))


def _lost_wakeup(blocked: list[LogicalThread]) -> str | None:
    """If a blocked thread waits for a notification that was sent before it started waiting,
    describe that lost wakeup."""
    for t in blocked:
        explain = getattr(t.op.resource, "explain_lost_wakeup", None)
        if explain is not None:
            message = explain(t)
            if message:
                return message
    return None


def _install_trace_hooks() -> None:
    """Give controlled threads the trace/profile hooks new threads get (coverage.py relies on it)."""
    import threading

    if threading._trace_hook is not None:  # type: ignore[attr-defined]
        sys.settrace(threading._trace_hook)  # type: ignore[attr-defined]
    if threading._profile_hook is not None:  # type: ignore[attr-defined]
        sys.setprofile(threading._profile_hook)  # type: ignore[attr-defined]
