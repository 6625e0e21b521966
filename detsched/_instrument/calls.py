"""Instrumentation: a scheduling point at the entry of every user-defined Python function a
controlled thread calls.

CPython with the GIL switches threads at function entry (and after C calls and at loop back-edges),
never between two plain statements without a call. A check-then-act such as
``if key not in cache: cache[key] = load(key)`` is therefore racy in real programs because of the
call in its window; making user function entry a scheduling point makes such bugs reachable.

Only user code counts: not detsched, not the standard library, not the test machinery; and not
calls that detsched itself makes (running a thread's target, a queue's ``_put`` hook, a predicate),
so primitives stay atomic. Generators, coroutines and comprehensions are skipped: their entry
events differ between Python versions, and schedules must replay on every version.

On Python 3.12+ this uses ``sys.monitoring`` (PY_START, disabled per code object outside user
code, so it costs nothing there); before 3.12, a per-thread ``sys.setprofile`` hook. Neither touches
``sys.settrace``, so coverage.py keeps working.
"""

from __future__ import annotations

import sys
from inspect import CO_ASYNC_GENERATOR, CO_COROUTINE, CO_GENERATOR

from detsched._core import frames
from detsched._core.frames import is_user_file
from detsched._core.ops import Op, current

_SKIPPED_FLAGS = CO_GENERATOR | CO_COROUTINE | CO_ASYNC_GENERATOR
_SKIPPED_NAMES = frozenset({"<listcomp>", "<dictcomp>", "<setcomp>", "<genexpr>", "<module>"})
_verdicts: dict = {}  # code object -> whether entering it is a scheduling point

#: sys.monitoring tool id used on 3.12+ (ids 0, 1, 2 and 5 are reserved for debuggers, coverage,
#: profilers and optimizers).
TOOL_ID = 4


def _is_point(code) -> bool:
    verdict = _verdicts.get(code)
    if verdict is None:
        verdict = _verdicts[code] = (not code.co_flags & _SKIPPED_FLAGS and code.co_name not in _SKIPPED_NAMES
                                     and is_user_file(code.co_filename))
    return verdict


def _switch(code, caller) -> None:
    me = current()
    if me is None or not frames.may_switch_in(caller):
        return
    me.sched.wait(me, Op(f"call {getattr(code, 'co_qualname', code.co_name)}()"))


if hasattr(sys, "monitoring"):
    _monitoring = sys.monitoring

    def _on_start(code, offset):
        if not _is_point(code):
            return _monitoring.DISABLE
        _switch(code, sys._getframe(1).f_back)
        return None

    def activate() -> None:
        if _monitoring.get_tool(TOOL_ID) is None:
            _monitoring.use_tool_id(TOOL_ID, "detsched")
            _monitoring.register_callback(TOOL_ID, _monitoring.events.PY_START, _on_start)
        _monitoring.set_events(TOOL_ID, _monitoring.events.PY_START)

    def deactivate() -> None:
        if _monitoring.get_tool(TOOL_ID) == "detsched":
            _monitoring.set_events(TOOL_ID, 0)

    def enter_thread() -> None:
        pass

    #: No per-thread profile hook on this version.
    PROFILE_HOOK = None

else:
    def _on_event(frame, event, arg):
        if event == "call" and _is_point(frame.f_code):
            _switch(frame.f_code, frame.f_back)

    def activate() -> None:
        """Nothing process-wide to turn on: each controlled thread installs its own hook."""

    def deactivate() -> None:
        """Nothing process-wide to turn off: the hooks end with their threads."""

    def enter_thread() -> None:
        """Install the per-thread hook in a new controlled thread (chained after a user's profiler)."""
        user_hook = sys.getprofile()
        if user_hook is None:
            sys.setprofile(_on_event)
        else:
            def chained(frame, event, arg):
                user_hook(frame, event, arg)
                _on_event(frame, event, arg)

            sys.setprofile(chained)

    #: The per-thread profile hook of controlled threads.
    PROFILE_HOOK = _on_event
