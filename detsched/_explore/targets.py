"""Targets: turn ``path/to/file.py::func``, ``package.module:func`` or a callable into the function
to explore and the stable name its schedules are fingerprinted with."""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import os
import sys
import traceback
from dataclasses import dataclass
from typing import Callable

from detsched.errors import DetschedUsageError, a_type


@dataclass(frozen=True)
class Target:
    function: Callable[[], object]
    name: str  # stable across machines: "module:qualname"
    spec: str  # what the user wrote, for replay commands
    #: Whether what ``function`` leaves behind fails the run: a thread still blocked after it
    #: returned (a leak), a pool task's exception nobody read. The pytest plugin turns it off for
    #: tests it was not asked to explore, which pytest would pass: code after the test (a fixture
    #: of a wider scope) may stop such threads, and a test may drop such exceptions on purpose.
    report_left_behind: bool = True
    #: Whether threads still blocked after ``function`` returned go on outside control when the
    #: run ends, as a real run leaves them, so that code after the run can still talk to them.
    let_go: bool = False
    #: Called before every run, outside control (in the caller's thread): the pytest plugin sets up
    #: the fixtures of pytest and its plugins there, afresh for each run.
    prepare: Callable[[], None] | None = None
    #: Objects besides ``function`` that a run's code may call: closures they reach that no module
    #: refers to get scheduling points too. The pytest plugin gives a test's parametrized arguments.
    arguments: Callable[[], tuple] | None = None

    def roots(self) -> tuple:
        """What a run of this target starts from: its function and its arguments."""
        return (self.function, *(self.arguments() if self.arguments is not None else ()))


def resolve(target) -> Target:
    if isinstance(target, Target):
        return target
    if callable(target) or inspect.iscoroutine(target):
        _check_supported(target, repr(target))
        module = getattr(target, "__module__", None) or "?"
        name = getattr(target, "__qualname__", None) or getattr(target, "__name__", None) or type(target).__name__
        return Target(target, f"{module}:{name}", f"{module}:{name}")
    if not isinstance(target, str) or not target.strip():
        raise DetschedUsageError(f"target must be a callable or a string like 'file.py::func', got {target!r}")
    function, name = locate(target)
    _check_supported(function, target)
    return Target(function, name, target)


def locate(target: str, what: str = "function"):
    """The object ``'path/to/file.py::name'`` or ``'package.module:name'`` names (a dotted name
    for a class member), and its ``module:qualname``; ``DetschedUsageError`` if there is none."""
    if "::" in target:
        path, _, qualname = target.partition("::")
        module = _load_file(path)
        module_name = module.__name__
    elif ":" in target:
        module_name, _, qualname = target.partition(":")
        module = _import(module_name)
    else:
        raise DetschedUsageError(
            f"target {target!r} names no {what}; write 'path/to/file.py::name' or 'package.module:name'"
        )
    return _lookup(module, qualname, target), f"{module_name}:{qualname}"


def _load_file(path: str):
    if not path.endswith(".py"):
        raise DetschedUsageError(f"target file {path!r} is not a .py file")
    if not os.path.isfile(path):
        raise DetschedUsageError(f"target file {path!r} not found (relative to {os.getcwd()})")
    directory = os.path.dirname(os.path.abspath(path))
    module_name = os.path.splitext(os.path.basename(path))[0]
    if directory not in sys.path:  # so the file's sibling modules import, as under `python file.py`
        sys.path.insert(0, directory)
    existing = sys.modules.get(module_name)
    if existing is not None and os.path.abspath(getattr(existing, "__file__", "") or "") == os.path.abspath(path):
        return existing
    spec = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException as exc:
        del sys.modules[module_name]
        raise _import_failed(path, exc) from None
    return module


def _import(module_name: str):
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name == module_name or module_name.startswith(f"{exc.name}."):
            raise DetschedUsageError(f"module {module_name!r} not found (searched sys.path from {os.getcwd()})") from None
        raise _import_failed(module_name, exc) from None
    except BaseException as exc:
        raise _import_failed(module_name, exc) from None


def _import_failed(what: str, exc: BaseException) -> DetschedUsageError:
    text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    return DetschedUsageError(f"importing {what} failed:\n{text}")


def _lookup(module, qualname: str, target: str):
    value = module
    for part in qualname.split("."):
        try:
            value = getattr(value, part)
        except AttributeError:
            available = sorted(n for n, v in vars(module).items() if callable(v) and not n.startswith("_")
                               and getattr(v, "__module__", None) == module.__name__)
            raise DetschedUsageError(
                f"{target}: no {qualname!r} in {module.__name__}; functions there: {', '.join(available) or 'none'}"
            ) from None
    if not callable(value):
        raise DetschedUsageError(f"{target} is {a_type(value)}, not a function")
    return value


def _check_supported(function, target: str) -> None:
    if inspect.iscoroutine(function):
        function.close()  # it will never run; closing it avoids a "never awaited" warning
        raise DetschedUsageError(
            f"got the coroutine object {function.__qualname__}(), which can run only once; pass the async "
            f"function itself ({function.__qualname__}, not called) so that every run starts a fresh coroutine"
        )
    try:
        signature = inspect.signature(function)
    except (TypeError, ValueError):
        return
    required = [p for p in signature.parameters.values()
                if p.default is p.empty and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    if required:
        raise DetschedUsageError(
            f"{target} takes arguments ({', '.join(p.name for p in required)}); a target is called with "
            "none: wrap it in a function that builds its inputs"
        )
