"""Outside control: threads a run let go when it ended, and waiting for real in threads detsched
does not control.

A thread still blocked when its run's target returned is let go (under pytest): it goes on as a
real thread would, outside control, so that code after the run (a fixture's teardown stopping it)
can still talk to it. Controlled primitives used outside control block for real, through
``wait_outside``, and wake such waiters through ``changed_outside``. A thread unwound with its run
instead leaves the primitive it waited in marked (``orphan``): nothing outside may count on it.

These are process-wide by nature: let-go threads outlive the run that made them.
"""

from __future__ import annotations

import _thread
from typing import Callable

from detsched._core.clock import real_monotonic
from detsched._core.ops import LogicalThread

#: Threads let go at the end of their runs that may be alive at once; past it, such threads are
#: stopped with their run (and what they wait in is marked orphaned) so that runs leave no pile.
MAX_DETACHED = 64
#: Seconds a detached thread waits at most before looking at its condition again, in case a change
#: came through a path that does not notify (another run's controlled code).
OUTSIDE_POLL = 0.05

_allocate_lock = _thread.allocate_lock
# Raw locks only: a run swaps threading's lock factory, and these serve threads in and out of runs.
_outside_guard = _allocate_lock()
_outside_waiters: list = []  # a raw lock per thread waiting outside control, released to wake it
_detached_alive = 0  # Invariant: == number of detached threads not yet exited (guarded by _outside_guard)


def detach(t: LogicalThread) -> bool:
    """Let ``t`` go on outside control when its run ends, unless too many such threads live."""
    global _detached_alive
    with _outside_guard:
        if _detached_alive >= MAX_DETACHED:
            return False
        _detached_alive += 1
    t.detached = True
    return True


def detached_exited(t: LogicalThread) -> None:
    """``t``, let go earlier, has ended."""
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


def orphan(t: LogicalThread) -> None:
    """Mark the primitive ``t`` waits in as orphaned: the run ends and ``t`` is unwound, so nothing
    outside the run may count on it answering (see ``sync.check_reachable``)."""
    resource = t.op.resource if t.op is not None else None
    if resource is not None and getattr(resource, "label", None) is not None:
        try:
            resource._ds_orphaned = t.label
        except AttributeError:  # a primitive with __slots__
            pass
