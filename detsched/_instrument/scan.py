"""Scanning user modules: where real stdlib primitives and functions sit in them (module globals,
class attributes, attributes of module-level objects), and the functions they define, which store
rewriting recompiles. Each module's scan is cached across runs and made again when its namespace
changes; a run swaps what the scans found for twins made fresh for it (``Twins``)."""

from __future__ import annotations

import _thread
import ast
import concurrent.futures.thread
import functools
import queue
import sys
import threading
import types
import warnings

from detsched._core.frames import INFRASTRUCTURE, is_project_file, is_user_file
from detsched._instrument import cache, rewrite
from detsched._instrument.patches import MISSING, REAL_TWINS
from detsched._primitives import futures, queues, sync
from detsched.errors import InstrumentWarning

_REAL_LOCK_TYPE = type(_thread.allocate_lock())
_REAL_RLOCK_TYPE = type(threading.RLock())


def _is_user_module(module) -> bool:
    name = getattr(module, "__name__", "")
    if not isinstance(name, str) or name.partition(".")[0] in INFRASTRUCTURE:
        return False
    path = getattr(module, "__file__", None)
    return isinstance(path, str) and is_user_file(path)


def _is_user_class(cls: type) -> bool:
    module = sys.modules.get(getattr(cls, "__module__", None) or "")
    return module is not None and _is_user_module(module)


class Twins:
    """Makes, for one run, a controlled twin of each real primitive found in user modules."""

    def __init__(self):
        self.made: dict[int, object] = {}  # id(real) -> twin; the real objects stay referenced below
        self.keep: list[object] = []

    def twin(self, value, label: str):
        known = self.made.get(id(value))
        if known is not None:
            return known
        made = self._make(value, label)
        if made is not None:
            self.made[id(value)] = made
            self.keep.append(value)
        return made

    def _make(self, value, label: str):
        kind = type(value)
        if kind is _REAL_LOCK_TYPE:
            twin = sync.Lock(label=f"Lock({label})")
            twin._locked = value.locked()
            return twin
        if kind is _REAL_RLOCK_TYPE:
            return sync.RLock(label=f"RLock({label})")
        if kind is _RealCondition:
            return sync.Condition(self.twin(value._lock, label + "._lock") or sync.RLock(label=label),
                                  label=f"Condition({label})")
        if kind in (_RealSemaphore, _RealBoundedSemaphore):
            cls = sync.BoundedSemaphore if kind is _RealBoundedSemaphore else sync.Semaphore
            twin = cls(getattr(value, "_initial_value", value._value), label=f"{cls.__name__}({label})")
            twin._value = value._value
            return twin
        if kind is _RealEvent:
            twin = sync.Event(label=f"Event({label})")
            twin._flag = value.is_set()
            return twin
        if kind is _RealBarrier:
            return sync.Barrier(value.parties, value._action, value._timeout, label=f"Barrier({label})")
        if kind in _QUEUE_TWINS:
            twin = _QUEUE_TWINS[kind](value.maxsize, label=f"{kind.__name__}({label})")
            for item in list(value.queue):
                twin._put(item)
            twin.unfinished_tasks = value.unfinished_tasks
            return twin
        if kind is _RealThreadPoolExecutor:  # its workers would block on a real C SimpleQueue
            twin = futures.ThreadPoolExecutor(value._max_workers, value._thread_name_prefix, value._initializer,
                                              value._initargs)
            twin._shutdown = value._shutdown
            return twin
        if kind is _RealSimpleQueue:
            twin = queues.SimpleQueue(label=f"SimpleQueue({label})")
            drained = []
            while True:
                try:
                    drained.append(value.get_nowait())
                except queue.Empty:
                    break
            for item in drained:
                value.put(item)
            twin._items.extend(drained)
            return twin
        return None


_RealCondition, _RealSemaphore, _RealBoundedSemaphore = threading.Condition, threading.Semaphore, threading.BoundedSemaphore
_RealEvent, _RealBarrier, _RealSimpleQueue = threading.Event, threading.Barrier, queue.SimpleQueue
_RealThreadPoolExecutor = concurrent.futures.thread.ThreadPoolExecutor
_QUEUE_TWINS = {queue.Queue: queues.Queue, queue.LifoQueue: queues.LifoQueue, queue.PriorityQueue: queues.PriorityQueue}


class _ModuleScan:
    """Where real stdlib objects sit in one user module. Cached across runs; rescanned when the
    module's namespace changes size."""

    __slots__ = ("module", "size", "hits", "project", "_compiled", "_as_loaded", "_rewritten")

    def __init__(self, module):
        self.module = module
        #: The project's own module, not an installed package: only its accesses are checked for
        #: races (a race inside a library is not the user's to fix; its points still count).
        self.project = is_project_file(module.__file__)
        self.size = len(module.__dict__)
        # races checked? -> (name, first line) -> the module's function code objects with scheduling
        # points; and as its loader compiled them (only made when a key has several: two lambdas
        # on one line).
        self._compiled: dict[bool, dict[tuple[str, int], list[types.CodeType]]] = {}
        self._as_loaded: dict[tuple[str, int], list[types.CodeType]] | None = None
        self._rewritten: dict[bool, list[tuple[types.FunctionType, types.CodeType]]] = {}
        self.hits: list[tuple[object, str, object, str]] = []  # (owner, name, real value, label)
        namespace, prefix = module.__dict__, module.__name__
        for name, value in list(namespace.items()):
            self._collect(namespace, name, value, f"{prefix}.{name}")
            if isinstance(value, type) and value.__module__ == prefix:
                for attr, member in list(vars(value).items()):
                    self._collect(value, attr, member, f"{prefix}.{name}.{attr}")
                    # a class attribute made of a user class: asgiref's ``executors = Local()``,
                    # whose lock every thread takes
                    self._collect_attributes(member, f"{prefix}.{name}.{attr}")
            else:
                self._collect_attributes(value, f"{prefix}.{name}")

    def _collect_attributes(self, value, label: str) -> None:
        """The attributes of ``value``, an object of a class defined in user code (a registry, a
        ``Local``, a connection pool made at import)."""
        attributes = getattr(value, "__dict__", None)
        if type(attributes) is dict and not isinstance(value, type) and _is_user_class(type(value)):
            for attr, member in list(attributes.items()):
                self._collect(attributes, attr, member, f"{label}.{attr}")

    def rewritten(self, races: bool) -> list[tuple[types.FunctionType, types.CodeType]]:
        """(function, code with scheduling points, and access reports if ``races``) for every
        function defined in the module that the module reaches (made once; ``reachable_functions``
        lists each function once)."""
        races = races and self.project
        if races not in self._rewritten:
            pairs = [(function, self.rewritten_code(function.__code__, races))
                     for function in _functions_of(self.module, self.module.__file__)]
            self._rewritten[races] = [(function, code) for function, code in pairs if code is not None]
        return self._rewritten[races]

    def rewritten_code(self, code: types.CodeType, races: bool) -> types.CodeType | None:
        """The code with scheduling points (and access reports if ``races``) of the function whose
        code is ``code`` (one of this module's), or None when the module's source cannot be
        compiled to match it."""
        races = races and self.project
        if races not in self._compiled:
            self._compiled[races] = _compile(self.module, points=True, races=races)
        key = (code.co_name, code.co_firstlineno)
        candidates = self._compiled[races].get(key, ())
        if len(candidates) > 1:  # several functions begin on this line: find ``code``'s position
            if self._as_loaded is None:
                self._as_loaded = _compile(self.module, points=False)
            loaded = self._as_loaded.get(key, ())
            position = next((i for i, other in enumerate(loaded) if other == code), None)
            candidates = (candidates[position],) if position is not None and len(loaded) == len(candidates) else ()
        if len(candidates) != 1 or candidates[0].co_freevars != code.co_freevars:
            return None
        return candidates[0]

    def _collect(self, owner, name: str, value, label: str) -> None:
        if name.startswith("__") and name.endswith("__"):
            return
        bound = REAL_TWINS.get(id(value))
        if (bound is not None and bound[0] is value) or type(value) in _TWINNED_TYPES:
            self.hits.append((owner, name, value, label))


def _compile(module, points: bool, races: bool = False) -> dict[tuple[str, int], list[types.CodeType]]:
    """Every function code object of the module's source (``rewrite.code_objects``), compiled with
    scheduling points (and access reports, with ``races``) or, when ``points`` is false, as the
    module's loader compiled it. Source the rewriting cannot handle falls back to less -- without
    access reports, then as it is -- with an ``InstrumentWarning``; it never breaks a run."""
    path = getattr(module, "__file__", None)
    if not isinstance(path, str) or not path.endswith(".py"):
        return {}
    try:
        with open(path, encoding="utf-8") as handle:
            source = handle.read()
    except (OSError, UnicodeDecodeError):
        return {}  # source gone or unreadable: the module runs as it is
    loader = getattr(getattr(module, "__spec__", None), "loader", None)
    entry = cache.Entry(source, path, cache.kind_of(loader, points, races))
    kept = entry.load()
    if kept is not None:
        return rewrite.code_objects(kept)
    try:
        code = rewrite.rewrite_module(source, path, loader, points, races)
    except Exception as exc:  # a construct the rewriter gets wrong must not take the module's run down
        problem = exc
    else:
        entry.store(code)
        return rewrite.code_objects(code)
    if isinstance(problem, SyntaxError) and not _parses(source, path):
        return {}  # the file on disk is not the module's code any more (edited since the import)
    fallback = "its accesses are not checked for races" if races else "its functions get no scheduling points"
    warnings.warn(InstrumentWarning(f"detsched could not instrument {path} ({type(problem).__name__}: {problem}); "
                                    f"{fallback}"), stacklevel=2)
    return _compile(module, points, races=False) if races else {}


def _parses(source: str, path: str) -> bool:
    try:
        ast.parse(source, path)
    except (SyntaxError, ValueError):
        return False
    return True


def _functions_of(module, path: str) -> list[types.FunctionType]:
    """Functions defined in ``path`` that the module reaches: globals, class members (methods,
    static and class methods, properties, nested classes), what decorators wrapped, closures, and
    callbacks kept in module-level lists, tuples, sets and dicts."""
    return [function for function in reachable_functions(vars(module).values())
            if function.__code__.co_filename == path]


_TWINNED_TYPES = frozenset({_REAL_LOCK_TYPE, _REAL_RLOCK_TYPE, _RealCondition, _RealSemaphore, _RealBoundedSemaphore,
                            _RealEvent, _RealBarrier, _RealSimpleQueue, _RealThreadPoolExecutor,
                            *_QUEUE_TWINS})
class ModuleScans:
    """The scans of the user modules loaded now: a cache kept across runs (a module is scanned again
    only when it is new, replaced, or its namespace changed size), not state of any one run."""

    def __init__(self):
        self._scans: dict[str, _ModuleScan] = {}
        # (size, newest name) of sys.modules when the user modules were last listed. Modules are
        # added at the end, so a module removed and another imported (pytester's sessions) changes
        # the newest name.
        self._modules_seen: tuple[int, str | None] = (-1, None)

    def current(self) -> list[_ModuleScan]:
        scans = self._scans
        seen = (len(sys.modules), next(reversed(sys.modules), None))
        if seen != self._modules_seen:
            self._modules_seen = seen
            # A module under two names (``__main__`` is also ``__mp_main__`` once multiprocessing is
            # imported) is scanned once, under its first: two scans would swap the same names twice,
            # the second would find its real value gone and have the module scanned again every run.
            scanned = {id(scan.module) for scan in scans.values()}
            for name, module in list(sys.modules.items()):
                scan = scans.get(name)
                if (scan is None or scan.module is not module) and module is not None and id(module) not in scanned \
                        and _is_user_module(module):
                    scans[name] = _ModuleScan(module)
                    scanned.add(id(module))
            for name in [n for n in scans if sys.modules.get(n) is not scans[n].module]:
                del scans[name]
        for name, scan in list(scans.items()):
            module = sys.modules.get(name)
            if module is not scan.module:  # replaced under the same name (a target file loaded again)
                if module is None or not _is_user_module(module):
                    del scans[name]
                else:
                    scans[name] = _ModuleScan(module)
            elif len(module.__dict__) != scan.size:
                scans[name] = _ModuleScan(module)
        return list(scans.values())

    def rewritten_reachable(self, roots, races: bool) -> list[tuple[types.FunctionType, types.CodeType]]:
        """(function, code with scheduling points) for the user functions ``roots`` reach (see
        ``reachable_functions``), whichever module defined them; call after ``current()``."""
        by_file = {getattr(scan.module, "__file__", None): scan for scan in self._scans.values()}
        pairs = []
        for function in reachable_functions(roots):
            scan = by_file.get(function.__code__.co_filename)
            code = scan.rewritten_code(function.__code__, races) if scan is not None else None
            if code is not None:
                pairs.append((function, code))
        return pairs


#: The process's scans of user modules.
SCANS = ModuleScans()


#: Objects looked at, at most, when following what a run's target reaches.
MAX_REACHABLE = 10_000


def reachable_functions(roots) -> list[types.FunctionType]:
    """The Python functions reachable from ``roots`` (a run's target, the arguments it is given):
    through functions' closures, defaults and ``__wrapped__``, bound methods, ``functools.partial``,
    the members of classes, and the lists, tuples, sets and dicts those hold. This finds closures
    made before the run that no module global refers to (a factory's product handed to
    ``explore``, a callback kept in a list, a parametrized test's argument)."""
    found, seen, pending = [], set(), list(roots)
    while pending and len(seen) < MAX_REACHABLE:
        value = pending.pop()
        if id(value) in seen:
            continue
        seen.add(id(value))
        if isinstance(value, types.FunctionType):
            found.append(value)
            pending.extend(cell.cell_contents for cell in value.__closure__ or () if _filled(cell))
            pending.extend(value.__defaults__ or ())
            pending.extend((value.__kwdefaults__ or {}).values())
            wrapped = getattr(value, "__wrapped__", None)
            if wrapped is not None:
                pending.append(wrapped)
        elif isinstance(value, types.MethodType):
            pending.append(value.__func__)
        elif isinstance(value, functools.partial):
            pending.extend((value.func, *value.args, *value.keywords.values()))
        elif isinstance(value, (staticmethod, classmethod)):
            pending.append(value.__func__)
        elif isinstance(value, property):
            pending.extend(f for f in (value.fget, value.fset, value.fdel) if f is not None)
        elif isinstance(value, type) and is_user_file(getattr(sys.modules.get(value.__module__), "__file__", "") or ""):
            pending.extend(vars(value).values())
        elif isinstance(value, dict):
            pending.extend(value.values())
        elif isinstance(value, (list, tuple, set, frozenset)):
            pending.extend(value)
    return found


def _filled(cell) -> bool:
    try:
        cell.cell_contents
    except ValueError:  # a cell not assigned yet
        return False
    return True


def current_value(owner, name: str):
    if isinstance(owner, dict):
        return owner.get(name, MISSING)
    return owner.__dict__.get(name, MISSING)
