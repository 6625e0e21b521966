"""Controlled synchronisation primitives: the twins of threading's Lock, RLock, Condition,
Semaphore, BoundedSemaphore, Event and Barrier.

Each operation is one scheduling point announced before its effect, with the condition under which
it can proceed, so the scheduler knows who is enabled and who waits for whom. They keep the stdlib
contracts (argument checks, error messages, return values). Used from a thread detsched does not
control (after the run that made them, whose threads may have been let go at its end), they work
for real: acquires, gets and waits block until a release, put or set from another thread.
``Condition.wait`` and ``Barrier.wait`` there raise ``DetschedUsageError``.
"""

from __future__ import annotations

import _thread
import threading
from contextlib import contextmanager

from detsched._core import frames
from detsched._core.ops import LogicalThread, MissedSignal, Op, current
from detsched._core.outside import changed_outside, used_outside, wait_outside
from detsched.errors import DetschedUsageError


_RealSemaphore = threading.Semaphore
_main_thread_ident = threading.main_thread().ident  # runs pytest and the tests' fixtures
_twinning = _thread._local()  # .active while the patcher turns real objects into twins for a run


@contextmanager
def making_twins():
    """Twins made in this block are twins even though no controlled thread makes them."""
    _twinning.active = True
    try:
        yield
    finally:
        _twinning.active = False


def real_outside_control(real):
    """Class decorator for a twin: a thread detsched does not control that calls the patched name
    during a run (a real background thread started before it, waiting on a real queue) gets the real
    object ``real(*args, **kwargs)``, so it goes on working with real primitives."""
    def decorate(twin):
        def __new__(cls, *args, **kwargs):
            if cls is twin and current() is None and not getattr(_twinning, "active", False):
                return real(*args, **kwargs)
            return object.__new__(cls)

        twin.__new__ = __new__
        return twin

    return decorate


def _outside(primitive, what: str) -> DetschedUsageError:
    return DetschedUsageError(
        f"{primitive.label} was made inside a detsched run and would block in {what} in thread "
        f"{threading.current_thread().name!r}, which detsched does not control; create "
        "synchronisation objects inside the test (or at import time), not in one run for later use"
    )


def check_reachable(primitive, what: str) -> None:
    """Refuse ``what`` (called from the process's main thread, outside control) on a primitive that
    a thread of an ended run was waiting in when the run ended: that thread is gone, so a put, set
    or notify would reach nobody, and code waiting for its answer (a worker registry's ``stop()`` at
    a module fixture's teardown) would wait for ever, and the session with it. From a background
    thread (a pool's result thread setting a Future whose waiter is gone) it goes through: the
    error would kill a thread the library still needs, and only that thread could hang."""
    orphaned = getattr(primitive, "_ds_orphaned", None)
    if orphaned is None or _thread.get_ident() != _main_thread_ident:
        return
    raise DetschedUsageError(
        f"{primitive.label} was made during a detsched run that has ended; {orphaned} was waiting in it when "
        f"the run ended and is gone, so this {what} from thread {threading.current_thread().name!r} reaches "
        "nobody. Objects a run makes (workers kept in a module-level registry) must not be used after it: "
        "stop them in the test or in a function-scoped fixture, which every run sets up and tears down")


def _take_outside(primitive, take, blocking: bool, timeout: float | None = None) -> bool:
    """Acquire ``primitive`` from a thread detsched does not control: threads of an ended run let go
    at its end (see ``Scheduler.let_go``) may hold it and release it for real."""
    if take():
        used_outside(primitive, "acquire")
        return True
    return blocking and wait_outside(take, timeout, primitive, "acquire")


class _OutsideOwner:
    """Stands for an uncontrolled OS thread as the owner of an RLock."""

    sched = None


_outside_owners = _thread._local()


def _outside_owner() -> _OutsideOwner:
    owner = getattr(_outside_owners, "owner", None)
    if owner is None:
        owner = _outside_owners.owner = _OutsideOwner()
    return owner


def make_label(kind: str) -> str:
    """Name a new primitive after where user code made it, e.g. ``Lock(bank.py:12)``."""
    site = frames.user_location(1)
    me = current()
    return me.sched.label(kind, site) if me is not None else f"{kind}({site})"


#: Virtual seconds a wait with no time left (timeout <= 0) takes when it times out. Real waits always
#: take some time, and loops that stop only once the time left is negative (as
#: ``concurrent.futures.as_completed`` does) would spin forever on a clock that never moved.
EMPTY_WAIT = 1e-6


def timed_wait(me: LogicalThread, kind: str, resource, ready, timeout: float | None, holder=None) -> bool:
    """A scheduling point that proceeds once ``ready()`` holds (True) or ``timeout`` seconds of
    virtual time have passed (False; None waits for ever)."""
    clock = me.sched.clock
    if me.sched.wait(me, Op(kind, resource, ready, clock.deadline(timeout), holder)):
        return True
    if timeout is not None and timeout <= 0:
        clock.advance_to(clock.monotonic() + EMPTY_WAIT)
    return False


def _after_release(primitive) -> None:
    """The scheduling point of a release comes right after its effect: CPython switches threads
    when a release returns (the end of a C call), so code that reads shared state just after
    leaving a lock is explored, and waiting threads may take the lock before the releaser goes on."""
    me = current()
    if me is None:
        changed_outside(primitive, "release")
    else:
        me.sched.publish(me, primitive)
        me.sched.wait(me, Op("release", primitive, done=True))


def _check_acquire_arguments(blocking: bool, timeout: float) -> None:
    """The argument checks of ``Lock.acquire`` and ``RLock.acquire``, with the stdlib's errors."""
    if not blocking and timeout != -1:
        raise ValueError("can't specify a timeout for a non-blocking call")
    if timeout < 0 and timeout != -1:
        raise ValueError("timeout value must be a non-negative number")
    if timeout > _thread.TIMEOUT_MAX:
        raise OverflowError("timeout value is too large")


@real_outside_control(_thread.allocate_lock)
class Lock:
    """``threading.Lock`` under control."""

    def __init__(self, *, label: str | None = None):
        self._owner: LogicalThread | None = None  # who acquired it (Lock has no owner rule; for reports)
        self._locked = False
        self.label = label or make_label("Lock")

    def _free(self) -> bool:
        return not self._locked

    def _holder(self) -> LogicalThread | None:
        return self._owner

    def _take(self, me: LogicalThread | None) -> bool:
        if self._locked:
            return False
        self._locked, self._owner = True, me
        if me is not None:
            me.sched.receive(me, self)
        return True

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        _check_acquire_arguments(blocking, timeout)
        me = current()
        if me is None:
            return _take_outside(self, lambda: self._take(None), blocking, None if timeout == -1 else timeout)
        if not blocking:
            return me.sched.poll(me, Op("try-acquire", self), lambda: self._take(me))
        # Any thread may release a Lock, so waiting for one's own is a handshake (another thread
        # releases it), not yet a wait-for cycle; it is a deadlock only once nothing else can run.
        def holder() -> LogicalThread | None:
            return None if self._owner is me else self._owner

        if timed_wait(me, "acquire", self, self._free, None if timeout == -1 else timeout, holder):
            return self._take(me)
        return False

    def release(self) -> None:
        if not self._locked:
            raise RuntimeError("release unlocked lock")
        self._locked, self._owner = False, None
        _after_release(self)

    def locked(self) -> bool:
        me = current()
        if me is not None:
            me.sched.poll(me, Op("locked?", self), self._free)
        return self._locked

    __enter__ = acquire

    def __exit__(self, *exc_info) -> None:
        self.release()

    def _at_fork_reinit(self) -> None:
        """As the stdlib's: a child process starts with the lock free (threading's fork hook)."""
        self._locked, self._owner = False, None

    def __repr__(self) -> str:
        return f"<{'locked' if self._locked else 'unlocked'} detsched {self.label}>"


@real_outside_control(threading.RLock)
class RLock:
    """``threading.RLock`` under control."""

    def __init__(self, *, label: str | None = None):
        self._owner: LogicalThread | None = None
        self._count = 0
        self.label = label or make_label("RLock")

    def _free(self) -> bool:
        return self._count == 0

    def _holder(self) -> LogicalThread | None:
        return self._owner

    def _take(self, me: LogicalThread | None) -> bool:
        if self._count and self._owner is not me:
            return False
        self._owner, self._count = me, self._count + 1
        if me is not None and me.sched is not None:
            me.sched.receive(me, self)
        return True

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        _check_acquire_arguments(blocking, timeout)
        me = current() or _outside_owner()
        if self._count and self._owner is me:  # re-entry cannot block and nobody else can see it
            self._count += 1
            return True
        if me.sched is None:
            return _take_outside(self, lambda: self._take(me), blocking, None if timeout == -1 else timeout)
        if not blocking:
            return me.sched.poll(me, Op("try-acquire", self), lambda: self._take(me))
        if timed_wait(me, "acquire", self, self._free, None if timeout == -1 else timeout, self._holder):
            return self._take(me)
        return False

    def release(self) -> None:
        me = current() or _outside_owner()
        if self._count == 0 or self._owner is not me:
            raise RuntimeError("cannot release un-acquired lock")
        self._count -= 1
        if self._count == 0:
            self._owner = None
            _after_release(self)

    def _is_owned(self) -> bool:
        return self._count > 0 and self._owner is (current() or _outside_owner())

    def _recursion_count(self) -> int:
        return self._count if self._is_owned() else 0

    # What the stdlib's Condition (in a subclass defined at import time) uses to wait on an RLock.
    def _release_save(self) -> tuple[int, LogicalThread]:
        if not self._is_owned():
            raise RuntimeError("cannot release un-acquired lock")
        me = self._owner
        if me.sched is not None:
            me.sched.publish(me, self)
            me.sched.wait(me, Op("release", self))
        state, self._count, self._owner = (self._count, me), 0, None
        return state

    def _acquire_restore(self, state: tuple[int, LogicalThread]) -> None:
        me = current() or _outside_owner()
        if me.sched is None:
            _take_outside(self, lambda: self._take(me), True)
        else:
            timed_wait(me, "acquire", self, self._free, None, self._holder)
            me.sched.receive(me, self)
        self._count, self._owner = state

    __enter__ = acquire

    def __exit__(self, *exc_info) -> None:
        self.release()

    def _at_fork_reinit(self) -> None:
        self._owner, self._count = None, 0

    def __repr__(self) -> str:
        owner = self._owner.name if self._owner is not None else None
        return f"<{'locked' if self._count else 'unlocked'} detsched {self.label} owner={owner!r} count={self._count}>"


class _Waiter:
    __slots__ = ("thread", "notified", "since")

    def __init__(self, thread: LogicalThread, since: int):
        self.thread, self.notified, self.since = thread, False, since


@real_outside_control(threading.Condition)
class Condition:
    """``threading.Condition`` under control. Notified waiters wake in FIFO order, as in CPython."""

    def __init__(self, lock=None, *, label: str | None = None):
        if lock is None:
            lock = RLock()
        elif not isinstance(lock, (Lock, RLock)):
            raise DetschedUsageError(
                f"Condition({lock!r}): the lock was made outside detsched's control (before the run, "
                "in a module detsched does not patch); make it with threading.Lock() inside the test"
            )
        self._lock = lock
        self._waiters: list[_Waiter] = []
        self._unheard: tuple[int, LogicalThread] | None = None  # (step, notifier) of the last notify nobody heard
        # (step, notifier, woken, waiters left sleeping) of the latest notify that woke some of the
        # waiters but not all; None once one wakes every waiter.
        self._passed_over: tuple[int, LogicalThread, LogicalThread, tuple[LogicalThread, ...]] | None = None
        self.label = label or make_label("Condition")
        self.acquire, self.release = lock.acquire, lock.release

    def __enter__(self):
        return self._lock.__enter__()

    def __exit__(self, *exc_info):
        return self._lock.__exit__(*exc_info)

    def _is_owned(self) -> bool:
        lock = self._lock
        return lock._locked if isinstance(lock, Lock) else lock._is_owned()

    def wait(self, timeout: float | None = None) -> bool:
        if not self._is_owned():
            raise RuntimeError("cannot wait on un-acquired lock")
        me = current()
        if me is None:
            raise _outside(self, "wait()")
        waiter = _Waiter(me, me.sched.steps)
        self._waiters.append(waiter)
        me.sched.looked_at(self)
        saved = self._release_fully()
        try:
            notified = timed_wait(me, "wait", self, lambda: waiter.notified, timeout)
        finally:
            if not waiter.notified and waiter in self._waiters:
                self._waiters.remove(waiter)
            self._reacquire(me, saved)
        return notified

    def _release_fully(self) -> int:
        lock = self._lock
        me = current()
        if me is not None:
            me.sched.publish(me, lock)
        if isinstance(lock, RLock):
            count, lock._count, lock._owner = lock._count, 0, None
            return count
        lock._locked, lock._owner = False, None
        return 1

    def _reacquire(self, me: LogicalThread, count: int) -> None:
        lock = self._lock
        me.sched.wait(me, Op("reacquire", lock, lock._free, None, lock._holder))
        if isinstance(lock, RLock):
            lock._owner, lock._count = me, count
        else:
            lock._locked, lock._owner = True, me
        me.sched.receive(me, lock)
        me.sched.receive(me, self)  # what the notifier did before notifying

    def wait_for(self, predicate, timeout: float | None = None):
        me = current()
        clock = me.sched.clock if me is not None else None
        endtime = None
        waittime = timeout
        result = predicate()
        while not result:
            if waittime is not None:
                if endtime is None:
                    endtime = clock.monotonic() + waittime
                else:
                    waittime = endtime - clock.monotonic()
                    if waittime <= 0:
                        break
            self.wait(waittime)
            result = predicate()
        return result

    def notify(self, n: int = 1) -> None:
        if not self._is_owned():
            raise RuntimeError("cannot notify on un-acquired lock")
        me = current()
        if me is None:
            check_reachable(self, "notify()")
        else:
            me.sched.wait(me, Op("notify" if n == 1 else "notify_all", self))
            me.sched.publish(me, self)
            # Only the latest notify counts: if a later one woke somebody, a hang is not the
            # early notify's fault.
            self._unheard = None if self._waiters else (me.sched.steps, me)
            self._passed_over = ((me.sched.steps, me, self._waiters[0].thread, tuple(w.thread for w in self._waiters[n:]))
                                 if 0 < n < len(self._waiters) else None)
        self._wake(n)
        if me is None:
            changed_outside(self, "notify")

    def _wake(self, n: int | None = None) -> None:
        """Wake the first ``n`` waiters (all by default); controlled queues call it within their
        own put/get step."""
        if n is None:
            n = len(self._waiters)
        woken, self._waiters = self._waiters[:n], self._waiters[n:]
        for waiter in woken:
            waiter.notified = True

    def notify_all(self) -> None:
        self.notify(len(self._waiters) or 1)

    notifyAll = notify_all

    def missed_signal(self, t: LogicalThread) -> MissedSignal | None:
        """The notify ``t`` missed: the last one, sent before ``t`` started waiting, when nobody
        waited (a notifier now waiting on the same condition, itself included, did not send a
        wakeup meant for ``t``: everyone fell asleep, a plain deadlock); or the latest notify that
        woke another waiter while ``t`` slept on, when that waiter is waiting again."""
        waiting = next((w for w in self._waiters if w.thread is t), None)
        if waiting is None:
            return None
        if self._unheard is not None and self._unheard[0] <= waiting.since:
            step, by = self._unheard
            if not any(w.thread is by for w in self._waiters):
                return MissedSignal(f"T{t.tid}", self.label, by.label, step)
        if self._passed_over is not None:
            # A notify woke another waiter while ``t`` slept on, and that one is waiting again: the
            # wakeup reached the wrong thread (two predicates on one condition).
            step, by, woken, left = self._passed_over
            again = next((w for w in self._waiters if w.thread is woken), None)
            if t in left and waiting.since <= step and again is not None and again.since > step:
                return MissedSignal(f"T{t.tid}", self.label, by.label, step, woke=woken.label)
        return None

    def _at_fork_reinit(self) -> None:
        """As the stdlib's (threading's fork hook resets the Events of threads it knows)."""
        if hasattr(self._lock, "_at_fork_reinit"):
            self._lock._at_fork_reinit()
        self._waiters.clear()

    def __repr__(self) -> str:
        return f"<detsched {self.label} waiters={len(self._waiters)}>"


@real_outside_control(threading.Semaphore)
class Semaphore:
    """``threading.Semaphore`` under control."""

    def __init__(self, value: int = 1, *, label: str | None = None):
        if not isinstance(self, Semaphore):
            # ``Semaphore.__init__(self, value)`` from the stdlib's BoundedSemaphore (3.10, 3.11) for
            # a subclass of it defined at import time: that object runs the stdlib's methods.
            _RealSemaphore.__init__(self, value)
            return
        if value < 0:
            raise ValueError("semaphore initial value must be >= 0")
        self._value = value
        self.label = label or make_label(type(self).__name__)

    def _available(self) -> bool:
        return self._value > 0

    def _take(self) -> bool:
        if self._value <= 0:
            return False
        self._value -= 1
        me = current()
        if me is not None:
            me.sched.receive(me, self)
        return True

    def acquire(self, blocking: bool = True, timeout: float | None = None) -> bool:
        if not blocking and timeout is not None:
            raise ValueError("can't specify timeout for non-blocking acquire")
        me = current()
        if me is None:
            return _take_outside(self, self._take, blocking, timeout)
        if not blocking:
            return me.sched.poll(me, Op("try-acquire", self), self._take)
        if timed_wait(me, "acquire", self, self._available, timeout):
            return self._take()
        return False

    __enter__ = acquire

    def release(self, n: int = 1) -> None:
        if n < 1:
            raise ValueError("n must be one or more")
        self._check_release(n)
        self._value += n
        _after_release(self)

    def _check_release(self, n: int) -> None:
        pass

    def __exit__(self, *exc_info) -> None:
        self.release()

    def __repr__(self) -> str:
        return f"<detsched {self.label} value={self._value}>"


@real_outside_control(threading.BoundedSemaphore)
class BoundedSemaphore(Semaphore):
    """``threading.BoundedSemaphore`` under control."""

    def __init__(self, value: int = 1, *, label: str | None = None):
        super().__init__(value, label=label)
        self._initial_value = value

    def _check_release(self, n: int) -> None:
        if self._value + n > self._initial_value:
            raise ValueError("Semaphore released too many times")


@real_outside_control(threading.Event)
class Event:
    """``threading.Event`` under control."""

    def __init__(self, *, label: str | None = None):
        self._flag = False
        self._sets = 0  # set() calls so far: a thread waiting during a set() wakes even if clear() follows
        self._set_at: tuple[int, str] | None = None  # last set(): (step, thread)
        self._cleared_at: tuple[int, str] | None = None  # a clear() that undid a set()
        self.label = label or make_label("Event")

    def _is_flagged(self) -> bool:
        return self._flag

    def is_set(self) -> bool:
        me = current()
        if me is None:
            return self._flag
        flagged = me.sched.poll(me, Op("is_set?", self), self._is_flagged)
        if flagged:
            me.sched.receive(me, self)
        return flagged

    isSet = is_set

    def set(self) -> None:
        me = current()
        if me is None:
            check_reachable(self, "set()")
        else:
            me.sched.wait(me, Op("set", self))
            me.sched.publish(me, self)
            self._set_at = (me.sched.steps, me.label)
        self._flag = True
        self._sets += 1
        if me is None:
            changed_outside(self, "set")

    def clear(self) -> None:
        me = current()
        if me is not None:
            me.sched.wait(me, Op("clear", self))
            if self._flag and self._set_at is not None:
                self._cleared_at = (me.sched.steps, me.label)
        self._flag = False

    def wait(self, timeout: float | None = None) -> bool:
        me = current()
        if me is None:
            return wait_outside(lambda: self._flag, timeout, self, "wait")
        sets = self._sets
        me.sched.looked_at(self)
        woken = timed_wait(me, "wait", self, lambda: self._flag or self._sets != sets, timeout)
        if woken:
            me.sched.receive(me, self)
        return woken

    def missed_signal(self, t: LogicalThread) -> MissedSignal | None:
        """The set ``t`` missed: undone by a clear before ``t`` saw it."""
        if self._flag or self._set_at is None or self._cleared_at is None:
            return None
        return MissedSignal(f"T{t.tid}", self.label, self._set_at[1], self._set_at[0], self._cleared_at[1],
                            self._cleared_at[0])

    def _at_fork_reinit(self) -> None:
        pass  # nothing here is held by a thread: the flag stays as it was, as the stdlib's does

    def __repr__(self) -> str:
        return f"<detsched {self.label}: {'set' if self._flag else 'unset'}>"


class _Generation:
    __slots__ = ("done", "broken")

    def __init__(self):
        self.done = self.broken = False


@real_outside_control(threading.Barrier)
class Barrier:
    """``threading.Barrier`` under control (wait, reset, abort, BrokenBarrierError)."""

    def __init__(self, parties: int, action=None, timeout: float | None = None, *, label: str | None = None):
        if parties < 1:
            raise ValueError("parties must be >= 1")
        self._parties, self._action, self._timeout = parties, action, timeout
        self._generation = _Generation()
        self._count = 0
        self._broken = False
        self.label = label or make_label("Barrier")

    def wait(self, timeout: float | None = None) -> int:
        me = current()
        if me is None:
            raise _outside(self, "wait()")
        if timeout is None:
            timeout = self._timeout
        me.sched.wait(me, Op("arrive", self))
        if self._broken:
            raise threading.BrokenBarrierError
        generation, index = self._generation, self._count
        self._count += 1
        if self._count == self._parties:
            me.sched.receive(me, generation)  # every earlier arrival
            try:
                if self._action is not None:
                    self._action()
            except BaseException:
                self._break()
                raise
            me.sched.publish(me, generation)  # the action comes before anyone passes
            generation.done = True
            self._generation, self._count = _Generation(), 0
            return index
        me.sched.publish(me, generation)
        passed = timed_wait(me, "wait", self, lambda: generation.done or generation.broken, timeout)
        if not passed:
            self._break()
        if not generation.done:
            raise threading.BrokenBarrierError
        me.sched.receive(me, generation)
        return index

    def _break(self) -> None:
        self._broken = True
        self._generation.broken = True
        self._count = 0

    def reset(self) -> None:
        me = current()
        if me is not None:
            me.sched.wait(me, Op("reset", self))
        if self._count:
            self._generation.broken = True
        self._generation, self._count, self._broken = _Generation(), 0, False

    def abort(self) -> None:
        me = current()
        if me is not None:
            me.sched.wait(me, Op("abort", self))
        self._break()

    @property
    def parties(self) -> int:
        return self._parties

    @property
    def n_waiting(self) -> int:
        return self._count

    @property
    def broken(self) -> bool:
        return self._broken

    def __repr__(self) -> str:
        return f"<detsched {self.label} waiters={self._count}/{self._parties}>"
