"""Detectors over controlled threads: deadlocks (a wait-for cycle, or nothing able to run), lost
wakeups, leaks, livelocks, runs longer than the step bound, and threads blocked outside control
(in it, or waiting for it).

Each is a check over the threads' states -- what each waits for, who holds what, what the
primitives recorded (``MissedSignal``) -- that returns a ``FailureInfo`` or None, and changes
nothing. The scheduler decides when to ask and ends the run with what it gets.
"""

from __future__ import annotations

from typing import Callable, Iterable

from detsched._core import frames
from detsched._core.ops import FailureInfo, LogicalThread, MissedSignal, describe


def wait_cycle(me: LogicalThread, can_run: Callable[[LogicalThread], bool]) -> FailureInfo | None:
    """A deadlock if ``me`` (which cannot go on) closes a cycle of threads each waiting for the
    next to act; timed waits never close one."""
    chain, t = [me], me
    while t.op is not None and t.op.holder is not None and t.op.deadline is None:
        holder = t.op.holder()
        if holder is None or holder.finished or can_run(t):
            return None
        if holder is me:
            return _waiting("deadlock", chain, why="")
        if holder in chain:
            return None
        chain.append(holder)
        t = holder
    return None


def stuck(blocked: list[LogicalThread], *, main_done: bool) -> FailureInfo:
    """Nothing can run and no thread waits on time: a lost wakeup if a blocked thread waits for a
    signal sent before it waited, else a leak (the target returned) or a deadlock."""
    lost = lost_wakeup(blocked)
    if lost is not None and not main_done:
        info = _waiting("lost-wakeup", blocked)
        info.message = lost
        return info
    if not main_done:
        return _waiting("deadlock", blocked)
    info = _waiting("leak", blocked)
    info.message = "; ".join(f"{t.label} is still blocked ({t.op.describe()}) after the test returned and can "
                             "never finish" for t in blocked if not (t.daemon or t.idle))
    if lost is not None:  # the effect is the leak, its cause the wakeup that never came
        info.message += f", caused by a lost wakeup: {lost}"
        info.causes = ("lost-wakeup",)
    return info


def lost_wakeup(blocked: Iterable[LogicalThread]) -> str | None:
    """Why the first blocked thread that waits for a signal sent before it started waiting waits
    forever (a resource that can tell, ``missed_signal``, is a Condition, an Event or an event loop)."""
    for t in blocked:
        missed = getattr(t.op.resource, "missed_signal", None)
        evidence = missed(t) if missed is not None else None
        if evidence is not None:
            return missed_signal_message(evidence)
    return None


def missed_signal_message(missed: MissedSignal) -> str:
    """The one sentence that explains a lost wakeup, for threads and asyncio tasks alike."""
    waiter = missed.waiter
    if missed.woke:
        return (f"{waiter} waits on {missed.primitive} forever; the notify() {missed.by} sent at step {missed.at} "
                f"woke {missed.woke} instead, which went back to waiting (a notify() wakes one waiter, and a "
                "condition shared by two predicates can wake the wrong one: notify_all(), or one condition per "
                "predicate)")
    if missed.cleared_by:
        return (f"{waiter} waits for {missed.primitive} forever; {missed.by} set it at step {missed.at} but "
                f"{missed.cleared_by} cleared it at step {missed.cleared_at}, before {waiter} saw it")
    return (f"{waiter} waits on {missed.primitive} forever; {missed.by} notified it at step {missed.at}, "
            f"before {waiter} started waiting (no {missed.nobody} was waiting then)")


def _waiting(kind: str, chain: list[LogicalThread], why: str = " (nothing can wake them)") -> FailureInfo:
    """``kind`` for threads that wait for each other (``why`` empty: a cycle), or for nothing that
    will come (``why`` says so)."""
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
    message = "; ".join(parts) + why
    return FailureInfo(kind, message, chain[0].label, stacks(chain), blocked=tuple(chain))


def waiting_on_outside(blocked: list[LogicalThread], seconds: float) -> FailureInfo:
    """Nothing controlled can wake ``blocked``, and code outside control, which might have, did
    not in ``seconds``: it cannot be told from a deadlock, nor be waited for longer."""
    return _waiting("blocked", blocked, why=(
        f": nothing detsched controls can wake them, and the threads it does not control, which might, woke "
        f"nobody within {seconds:g}s (a deadlock, or a wait on code outside control)"))


def stacks(threads: list[LogicalThread]) -> str:
    """Each thread's stack, detsched's frames removed, headed by what it waits for."""
    current_frames = frames.thread_stacks()
    out = []
    for t in threads:
        stack = frames.format_stack(current_frames.get(t.os_ident))
        out.append(f"{t.label} ({t.op.describe() if t.op else 'running'}):\n{stack}")
    return "\n".join(out)


def out_of_steps(me: LogicalThread, *, max_steps: int, elapsed: float, spinning: bool, last: str = "",
                 details: str = "") -> FailureInfo:
    """A run that reached ``max_steps``: a livelock if threads were spinning or retrying operations
    that fail, else a test longer than the bound (kind ``step-limit``)."""
    bound = f"the run did not finish within max_steps={max_steps} scheduling steps"
    where = f"; the last one: {last}" if last else ""
    if spinning:
        return FailureInfo(
            "livelock", f"{bound}{where}, and its threads were spinning or retrying operations that keep "
            "failing: a livelock (if the test is just long, raise max_steps)", me.label, details)
    return FailureInfo(
        "step-limit", f"{bound} ({elapsed:.3g} s of virtual time){where}, and its threads kept "
        "making progress: the test is longer than the bound rather than stuck. Raise it: max_steps= in "
        "explore(), @pytest.mark.detsched(max_steps=...) or --detsched-max-steps", me.label, details)


def blocked_outside(t: LogicalThread | None, seconds: float) -> FailureInfo:
    """``t`` ran ``seconds`` without reaching a scheduling point."""
    frame = frames.thread_stacks().get(t.os_ident) if t is not None else None
    who = t.label if t is not None else "a thread"
    return FailureInfo(
        "blocked",
        f"{who} ran for {seconds:g}s without reaching a scheduling point: it is blocked in code detsched does "
        "not control (a lock or queue made before the run, real I/O, a C extension) or loops without "
        f"synchronising ({frames.innermost_user_location(frame)})",
        t.label if t is not None else "", f"{t.label if t is not None else '?'}:\n{frames.format_stack(frame)}")


def uncaught(t: LogicalThread, exc: BaseException) -> FailureInfo:
    """An exception that ended ``t``."""
    return FailureInfo("exception", f"{type(exc).__name__}: {exc}".rstrip(": "), t.label,
                       frames.format_exception(exc), exc)


def unread_future(error: BaseException, worker: str) -> FailureInfo:
    """A pool task's exception that nothing retrieved from its Future."""
    return FailureInfo("exception", f"{type(error).__name__}: {error}".rstrip(": "),
                       f"{worker}; nothing retrieved the exception from its Future (no result() or exception())",
                       frames.format_exception(error), error)
