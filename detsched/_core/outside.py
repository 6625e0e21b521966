"""Outside control: threads a run let go when it ended, and waiting for real in threads detsched
does not control.

A thread still blocked when its run's target returned is let go (under pytest): it goes on as a
real thread would, outside control, so that code after the run (a fixture's teardown stopping it)
can still talk to it. Controlled primitives used outside control block for real, through
``wait_outside``, and wake such waiters through ``changed_outside``. A thread unwound with its run
instead leaves the primitive it waited in marked (``orphan``): nothing outside may count on it.

A thread outside control that works on a primitive of the run *while the run is in progress* (a
background thread started before it, a thread of an earlier run let go) is an escape: its steps are
not scheduled, so the interleavings with it are not explored. ``used_outside`` writes each such use
into the record of the run in progress, which ``watch`` starts with the threads running user code
that detsched does not control when the run starts; ``may_wake`` tells the scheduler whether any
of them may be what its threads wait for.

These are process-wide by nature: let-go threads outlive the run that made them.
"""

from __future__ import annotations

import _thread
import threading
from typing import Callable, NamedTuple

from detsched._core import frames
from detsched._core.clock import real_monotonic
from detsched._core.ops import LogicalThread, describe

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
# Invariant: the OS threads of the detached threads not yet exited (guarded by _outside_guard).
_detached: set[int] = set()


class Escape(NamedTuple):
    """Something a run touched that detsched did not control, and how that weakens what was checked."""

    key: tuple  # what it is about (a thread, a thread's use of a primitive): the same in every run
    text: str  # one line for people


#: The escapes of the run in progress (its ``Execution.escapes``), None between runs.
_escapes: list[Escape] | None = None
_real_threads = threading._active  # the threading module's own table of live threads, never patched


def watch(escapes: list[Escape] | None) -> None:
    """Write what escapes control into ``escapes`` from now on, starting with the threads alive now,
    besides the caller, that run user code outside control (a server thread a fixture started, a
    thread of an earlier run let go), one line each; None: stop, the run ended."""
    global _escapes, _others_alive
    _uses.clear()
    _others_alive = False
    if escapes is not None:
        for ident, thread, user in _running_user_code():
            escapes.append(Escape(("thread", thread.name), f"thread {thread.name!r} was running before the run "
                                  f"started (at {frames.innermost_user_location(user)}); detsched does not "
                                  "schedule it, so the interleavings with it were not explored"))
            _others_alive = _others_alive or ident not in _detached
    _escapes = escapes


# Invariant: whether threads running user code outside control, not let go by an earlier run, were
# alive when the run in progress started (False between runs).
_others_alive = False


# Invariant: what the threads outside control did to the run in progress's primitives, by thread
# name, then primitive label (insertion order): the text of each thread's escape of kind "use".
_uses: dict[str, dict[str, list[str]]] = {}


def used_outside(primitive, what: str) -> None:
    """A thread detsched does not control did ``what`` to ``primitive``: an escape, if during a run."""
    escapes = _escapes
    if escapes is None or primitive is None:
        return
    thread = _real_threads.get(_thread.get_ident())
    name = thread.name if thread is not None else "(unnamed)"
    label = describe(primitive)
    with _outside_guard:
        done = _uses.setdefault(name, {}).setdefault(label, [])
        if what in done:
            return
        done.append(what)
        used = ", ".join(f"{label} ({', '.join(whats)})" for label, whats in _uses[name].items())
        escape = Escape(("use", name), f"thread {name!r}, which detsched does not control, used {used} during the "
                                       "run: its steps are not scheduled, so the interleavings with it were not explored")
        kept = [i for i, e in enumerate(escapes) if e.key == escape.key]
        if kept:
            escapes[kept[0]] = escape
        else:
            escapes.append(escape)


def may_wake() -> bool:
    """Whether code outside control may change the primitives of the run in progress: a thread
    outside control has used one, or threads running user code were alive when it started, not
    counting those let go by earlier runs (they hold those runs' primitives, not this one's)."""
    return _others_alive or bool(_uses)


def _running_user_code() -> list[tuple[int, threading.Thread, object]]:
    """(OS thread, Thread, innermost user frame) of the threads alive now, besides the caller and
    the threads of test tools, that run user code, by name."""
    stacks = frames.thread_stacks()
    me = _thread.get_ident()
    found = []
    for ident, thread in sorted(_real_threads.items(), key=lambda item: item[1].name):
        user = frames.innermost_user_frame(stacks.get(ident)) if ident != me else None
        if user is not None:
            found.append((ident, thread, user))
    return found


def detach(t: LogicalThread) -> bool:
    """Let ``t`` go on outside control when its run ends, unless too many such threads live."""
    with _outside_guard:
        if len(_detached) >= MAX_DETACHED:
            return False
        _detached.add(t.os_ident)
    t.detached = True
    return True


def detached_exited(t: LogicalThread) -> None:
    """``t``, let go earlier, has ended."""
    with _outside_guard:
        _detached.discard(t.os_ident)
    changed_outside()  # whoever joins it outside control


def wait_outside(ready: Callable[[], bool], timeout: float | None, primitive=None, what: str = "") -> bool:
    """Wait for real, in a thread detsched does not control (or no longer controls), until
    ``ready()`` holds (True) or ``timeout`` seconds have passed (False); a wait for ``primitive``
    (``what``) is an escape if a run is in progress."""
    used_outside(primitive, what)
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


def changed_outside(primitive=None, what: str = "") -> None:
    """Code outside control changed ``primitive`` (with ``what``): wake whoever waits outside control."""
    used_outside(primitive, what)
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
