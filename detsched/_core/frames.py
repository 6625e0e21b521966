"""Where user code is: find the first stack frame outside detsched, and format stacks without
detsched's own frames, so every location and stack in a report points at the user's code."""

from __future__ import annotations

import gc
import os
import sys
import sysconfig
import traceback

_PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep  # detsched/
#: The pytest plugin, installed next to detsched, calls the test body in every run: its frames are ours too.
_PLUGIN_DIR = os.path.join(os.path.dirname(_PACKAGE_DIR[:-1]), "pytest_detsched") + os.sep


def is_internal(filename: str) -> bool:
    return filename.startswith((_PACKAGE_DIR, _PLUGIN_DIR))


def user_location(depth: int = 2) -> str:
    """``file.py:LINE`` of the nearest user frame among the callers (else the nearest outside
    detsched); basename only, so it is the same on every machine."""
    frame = sys._getframe(depth)
    first_outside = None
    while frame is not None:
        kind = _kinds.get(frame.f_code)
        if kind is None:
            kind = _kind(frame.f_code)
        if kind == _USER:
            break
        if first_outside is None and kind != _CALLER:
            first_outside = frame
        # Prefer the user's line to the stdlib's (a pool worker's loop, Future.result).
        frame = frame.f_back
    frame = frame or first_outside
    if frame is None:
        return "?"
    return f"{os.path.basename(frame.f_code.co_filename)}:{frame.f_lineno}"


#: Frames ``call_sites`` looks at: enough to tell two calls of one helper from different places
#: apart, through the primitive's own frames.
CALL_SITES = 12


def call_sites(depth: int) -> tuple:
    """(code, line) of the frame ``depth`` up and of the frames above it, ``CALL_SITES`` at most:
    the same each time a loop makes a call, different for two calls made from different lines."""
    frame = sys._getframe(depth)
    sites = []
    while frame is not None and len(sites) < CALL_SITES:
        sites.append((frame.f_code, frame.f_lineno))
        frame = frame.f_back
    return tuple(sites)


def format_stack(frame) -> str:
    """A stack like ``traceback.format_stack`` with detsched's frames removed (a placeholder when
    there is no frame: the thread is gone)."""
    if frame is None:
        return "  (no stack)\n"
    summary = [fs for fs in traceback.extract_stack(frame) if not is_internal(fs.filename)]
    return "".join(traceback.format_list(summary))


def format_exception(exc: BaseException) -> str:
    """The exception's traceback without detsched's frames."""
    summary = traceback.extract_tb(exc.__traceback__)
    kept = traceback.StackSummary.from_list([fs for fs in summary if not is_internal(fs.filename)])
    lines = ["Traceback (most recent call last):\n", *kept.format()]
    lines += traceback.format_exception_only(type(exc), exc)
    return "".join(lines)


def innermost_user_location(frame) -> str:
    """``file.py:LINE in func`` of the innermost frame outside detsched, starting at ``frame``."""
    while frame is not None and is_internal(frame.f_code.co_filename):
        frame = frame.f_back
    if frame is None:
        return "?"
    return f"{os.path.basename(frame.f_code.co_filename)}:{frame.f_lineno} in {frame.f_code.co_name}"


def innermost_user_frame(frame):
    """The innermost frame of user code (``is_user_file``) from ``frame`` outwards, or None."""
    while frame is not None and not is_user_file(frame.f_code.co_filename):
        frame = frame.f_back
    return frame


#: Top-level packages whose modules are never the user's: detsched itself and the test machinery
#: that runs around it.
INFRASTRUCTURE = frozenset({
    "detsched", "pytest_detsched", "pytest", "_pytest", "pluggy", "hypothesis", "_hypothesis_pytestplugin",
    "coverage", "xdist", "execnet", "iniconfig", "packaging", "py", "_distutils_hack", "pkg_resources",
    "setuptools", "pip", "sortedcontainers", "attr", "attrs", "exceptiongroup", "tomli", "pygments",
    "_pytest_timeout", "pytest_timeout", "pytest_cov", "typing_extensions",
})

_STDLIB_DIRS = tuple({os.path.realpath(sysconfig.get_paths()[k]) + os.sep for k in ("stdlib", "platstdlib")})
_SITE_DIRS = tuple({os.path.realpath(sysconfig.get_paths()[k]) + os.sep for k in ("purelib", "platlib")})


def is_user_file(path: str) -> bool:
    """Whether code in ``path`` is the user's: not detsched, not the standard library, not a test
    tool. Installed third-party packages count as user code (their locks are the user's locks)."""
    if path.startswith("<"):
        return not path.startswith("<frozen ")  # frozen stdlib modules
    path = _realpath(path)
    for site in _SITE_DIRS:
        if path.startswith(site):
            return path[len(site):].partition(os.sep)[0].partition(".")[0] not in INFRASTRUCTURE
    return not path.startswith(_STDLIB_DIRS) and not is_internal(path)


def is_project_file(path: str) -> bool:
    """Whether ``path`` is the project's own code: user code that is not an installed package."""
    return is_user_file(path) and not _realpath(path).startswith(_SITE_DIRS)


_realpaths: dict[str, str] = {}


def _realpath(path: str) -> str:
    real = _realpaths.get(path)
    if real is None:
        real = _realpaths[path] = os.path.realpath(path)
    return real


#: Standard-library modules whose frames may sit between user code and detsched without making the
#: user code a callback: a thread's ``run``, the event loop running a task, a pool's future.
_RUNNERS = tuple(os.path.join(directory, name) for directory in _STDLIB_DIRS
                 for name in ("threading.py", "asyncio" + os.sep, "concurrent" + os.sep))
_CALLER, _USER, _RUNNER, _LIBRARY = range(4)
_kinds: dict = {}  # code object -> which of the four kinds of frame it is


def _kind(code) -> int:
    kind = _kinds.get(code)
    if kind is None:
        filename = code.co_filename
        if is_internal(filename):
            kind = _CALLER
        elif is_user_file(filename):
            kind = _USER
        elif _realpath(filename).startswith(_RUNNERS):
            kind = _RUNNER
        else:
            kind = _LIBRARY
        _kinds[code] = kind
    return kind


def thread_stacks() -> dict:
    """``sys._current_frames()``, with the garbage collector off while it runs: on CPython before
    3.11.9 and 3.12.3 a collection inside it can deadlock with a thread that is ending (gh-106883),
    and carriers end while runs go on."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        return sys._current_frames()
    finally:
        if enabled:
            gc.enable()


def may_switch_in(frame, called=None) -> bool:
    """Whether user code running in ``frame`` (having just called ``called``) may be switched away from.

    Not when detsched itself called it (a thread's target, a predicate, a queue hook: primitives stay
    atomic), nor when a library called it back (a logging formatter, module code run by an import):
    the library may hold a real lock, which another thread would then block on outside detsched's
    control. Frames of threading, asyncio and concurrent.futures running user code do not count.
    """
    seen_user = False
    # A trace or profile function the user set runs for detsched's own calls too, inside a
    # primitive: like a library's callback, it is never switched away from.
    hooks = _hook_codes()
    if hooks and called is not None and called.f_code in hooks:
        return False
    while frame is not None:
        code = frame.f_code
        kind = _kinds.get(code)
        if kind is None:
            kind = _kind(code)
        if kind == _CALLER:
            return seen_user
        if kind == _LIBRARY or (hooks and code in hooks):
            return False
        seen_user = seen_user or kind == _USER
        frame = frame.f_back
    return False  # no detsched frame below: not a controlled thread's stack


def _hook_codes() -> tuple:
    """The code of this thread's trace and profile functions, where they are Python functions."""
    trace, profile = sys.gettrace(), sys.getprofile()
    if trace is None and profile is None:
        return ()
    return tuple(getattr(getattr(hook, "__func__", hook), "__code__", None) for hook in (trace, profile))

