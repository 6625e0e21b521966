"""Detectors over asyncio tasks: what each pending task waits for (the wait-for chain a deadlock or
leak report shows), lost wakeups on asyncio primitives, and the stacks of tasks.

Pure reads of task and primitive state: asyncio keeps most of it (a task's coroutine chain, a
future it awaits); the primitives' patches (``detsched._aio.patches``) keep the rest (who holds an
``asyncio.Lock``, when an ``Event`` was set and cleared, a ``notify`` nobody heard).
"""

from __future__ import annotations

import asyncio
import inspect
import os
import traceback

from detsched._core import frames
from detsched._core.ops import FailureInfo, LogicalThread, MissedSignal
from detsched._detect.threads import missed_signal_message

#: asyncio primitives a task can block in; reports name them and what they wait for.
PRIMITIVES = tuple(cls for cls in (asyncio.Lock, asyncio.Event, asyncio.Condition, asyncio.Semaphore,
                                   asyncio.Queue, getattr(asyncio, "Barrier", None)) if cls is not None)


def label(task) -> str:
    """``Task-3 fetch()``, or ``Task 'worker' fetch()`` for a task the program named."""
    name = task.get_name()
    what = getattr(task.get_coro(), "__qualname__", "?").rpartition("<locals>.")[2]
    return f"{name} {what}()" if name.startswith("Task-") else f"Task {name!r} {what}()"


def state(task) -> str | None:
    """The ``inspect.CORO_*`` state of a task's coroutine (None for other awaitables)."""
    coro = task.get_coro()
    return inspect.getcoroutinestate(coro) if inspect.iscoroutine(coro) else None


def chain(task) -> list:
    """Frames of the coroutines ``task`` is suspended in, outermost first."""
    found, awaitable = [], task.get_coro()
    while awaitable is not None:
        frame = (getattr(awaitable, "cr_frame", None) or getattr(awaitable, "gi_frame", None)
                 or getattr(awaitable, "ag_frame", None))
        if frame is None:
            break
        found.append(frame)
        awaitable = (getattr(awaitable, "cr_await", None) or getattr(awaitable, "gi_yieldfrom", None)
                     or getattr(awaitable, "ag_await", None))
    return found


def location(frame) -> str:
    return f"{os.path.basename(frame.f_code.co_filename)}:{frame.f_lineno}" if frame is not None else "?"


def where(awaiting: list) -> str:
    """Where a task stands, as ``file.py:LINE``: the innermost frame of its await chain in the
    program's own code, else in an installed package (anyio), else wherever it is."""
    for wanted in (frames.is_project_file, frames.is_user_file):
        for frame in reversed(awaiting):
            if wanted(frame.f_code.co_filename):
                return location(frame)
    return location(awaiting[-1] if awaiting else None)


def blocker(awaiting: list):
    """(primitive, method) a suspended task is blocked in: the outermost asyncio primitive in its await
    chain (a Barrier rather than its inner Condition), or the Lock a Condition waiter reacquires."""
    found = [(frame.f_locals.get("self"), frame.f_code.co_name) for frame in awaiting]
    found = [(obj, method) for obj, method in found if isinstance(obj, PRIMITIVES)]
    if not found:
        return None, ""
    if isinstance(found[0][0], asyncio.Condition) and isinstance(found[-1][0], asyncio.Lock):
        return found[-1]
    return found[0]


def primitive_label(primitive) -> str:
    return getattr(primitive, "_ds_label", None) or f"asyncio.{type(primitive).__name__}"


def waits_for(task) -> str:
    """One link of the wait-for chain: the task, where it is, and what it waits for."""
    awaiting = chain(task)
    head = f"{label(task)} at {where(awaiting)}"
    primitive, method = blocker(awaiting)
    if primitive is not None:
        return f"{head} {_primitive_wait(primitive, method, task)}"
    waiter = task._fut_waiter
    if isinstance(waiter, asyncio.Task):
        return f"{head} waits for {label(waiter)}"
    children = getattr(waiter, "_children", None)
    if children is not None:
        names = [label(c) if isinstance(c, asyncio.Task) else "a Future" for c in children if not c.done()]
        return f"{head} waits for gather({', '.join(names)})"
    if waiter is not None:
        return f"{head} waits for a Future"
    if state(task) == inspect.CORO_CREATED:
        return f"{label(task)} never started"
    return f"{head} is ready to resume"


def _primitive_wait(primitive, method: str, task) -> str:
    name = primitive_label(primitive)
    if isinstance(primitive, asyncio.Lock):
        owner = getattr(primitive, "_ds_owner", None)
        if owner is None:
            return f"waits for {name}"
        if owner is task:
            return f"waits for {name}, which it holds itself (asyncio.Lock is not reentrant)"
        if owner.done():
            return f"waits for {name}, held by {label(owner)}, which finished without releasing it"
        return f"waits for {name} held by {label(owner)}"
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


def missed_signal(task) -> MissedSignal | None:
    """The signal ``task`` waits for, if it was sent before ``task`` started waiting."""
    primitive, _ = blocker(chain(task))
    who = label(task)
    cleared = getattr(primitive, "_ds_cleared_at", None)
    if isinstance(primitive, asyncio.Event) and cleared is not None and not primitive.is_set():
        set_step, setter = primitive._ds_set_at
        return MissedSignal(who, primitive_label(primitive), _actor_label(setter), set_step,
                            _actor_label(cleared[1]), cleared[0], nobody="task")
    unheard = getattr(primitive, "_ds_unheard", None)
    if isinstance(primitive, asyncio.Condition) and unheard is not None:
        return MissedSignal(who, primitive_label(primitive), _actor_label(unheard[1]), unheard[0], nobody="task")
    return None


def stuck(pending: list, runner: LogicalThread) -> FailureInfo:
    """Nothing is ready in the loop ``runner`` runs, no timer is pending and no thread can call in:
    a lost wakeup, a deadlock among the pending tasks, or a loop that nothing stops."""
    missed = next(filter(None, map(missed_signal, pending)), None)
    if missed is not None:
        kind, message = "lost-wakeup", missed_signal_message(missed)
    elif pending:
        blocked_first = sorted(pending, key=lambda task: blocker(chain(task))[0] is None)
        kind, message = "deadlock", "; ".join(map(waits_for, blocked_first)) + " (nothing can wake them)"
    else:
        kind = "deadlock"
        message = "the event loop has nothing to run and nothing can wake it (run_forever() that nothing stops)"
    return FailureInfo(kind, message, label(pending[0]) if pending else runner.label, stacks(pending))


def unretrieved(task) -> FailureInfo:
    """A task whose exception nothing retrieved."""
    return exception(task.exception(),
                     f"{label(task)}; nothing retrieved its exception (no await, result() or exception())")


def leaks(pending: list, dropped: list[str], open_generators: list, runner: LogicalThread) -> FailureInfo | None:
    """What the main coroutine left behind when it returned: pending tasks, coroutines and async
    generators dropped unfinished (``dropped``, already described) and ones still open."""
    found = [f"{waits_for(task)}, still pending when the main coroutine returned" for task in pending]
    found += dropped
    found += [f"async generator {agen.__qualname__}() is still open, suspended at {location(agen.ag_frame)}: "
              "nothing closed it" for agen in open_generators]
    if not found:
        return None
    return FailureInfo("leak", "; ".join(found), label(pending[0]) if pending else runner.label, stacks(pending))


def abandoned_generator(agen, dropped_at: str) -> str:
    return (f"async generator {agen.__qualname__}() was never closed: dropped at {dropped_at} while suspended at "
            f"{location(agen.ag_frame)}, so its cleanup runs whenever the garbage collector gets to it (close it: "
            "contextlib.aclosing, or exhaust it)")


def unawaited(coro, dropped_at: str) -> str:
    return f"coroutine {coro.__qualname__}() was never awaited (dropped at {dropped_at})"


def unawaited_leak(dropped: list[str], thread: LogicalThread) -> FailureInfo:
    """Coroutines dropped without being awaited where no event loop's end-of-main check saw them."""
    return FailureInfo("leak", "; ".join(dropped), thread.label)


def stacks(pending) -> str:
    """Each task's await chain as a stack, detsched's frames removed."""
    out = []
    for task in pending:
        summary = traceback.StackSummary.extract((frame, frame.f_lineno) for frame in chain(task))
        kept = [entry for entry in summary if not frames.is_internal(entry.filename)]
        out.append(f"{label(task)}:\n" + ("".join(traceback.format_list(kept)) or "  (not started)\n"))
    return "\n".join(out)


def exception(error: BaseException, actor: str) -> FailureInfo:
    """An exception raised in a task or callback (``actor``), its traceback starting in user code."""
    traceback_ = error.__traceback__
    while traceback_ is not None and not frames.is_user_file(traceback_.tb_frame.f_code.co_filename):
        traceback_ = traceback_.tb_next  # where the loop re-raised it (run_until_complete) is no news
    error.__traceback__ = traceback_ or error.__traceback__
    return FailureInfo("exception", f"{type(error).__name__}: {error}".rstrip(": "), actor,
                       frames.format_exception(error), error)


def _actor_label(actor) -> str:
    return label(actor) if isinstance(actor, asyncio.Task) else actor.label
