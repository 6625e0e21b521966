"""Instrumentation by patching: swap the standard library's threading, queue, time and
concurrent.futures for controlled twins for the duration of one run, and restore everything after.

Unmodified user code binds these names in many ways, and each is covered:
- ``threading.Lock()`` at call time: module attributes are replaced;
- ``from threading import Lock`` / ``from time import sleep`` at import: the bound names in loaded
  user modules are replaced, as freezegun does for ``datetime``;
- ``LOCK = threading.Lock()`` at module level, class attributes, and attributes of module-level
  objects: each real primitive is swapped for a twin in the same state, fresh for every run;
- ``class Worker(threading.Thread)`` defined at import: the real Thread class gets controlled methods.

Calls from threads detsched does not control (pytest's own, a watchdog) still reach the real
functions: every patched function checks who is calling.
"""

from __future__ import annotations

import _thread
import concurrent.futures
import concurrent.futures.thread
import os
import queue
import sys
import threading
import time
import types

from detsched._primitives import futures

from detsched._primitives import queues

from detsched._instrument import rewrite

from detsched._primitives import sync

from detsched._primitives import threads
from detsched._core.frames import INFRASTRUCTURE, is_user_file
from detsched.errors import DetschedUsageError
from detsched._core.scheduler import Op, current

_MISSING = object()


_REAL_LOCK_TYPE = type(_thread.allocate_lock())
_REAL_RLOCK_TYPE = type(threading.RLock())


def _virtual(real, virtual):
    def patched(*args):
        me = current()
        return real(*args) if me is None else virtual(me.sched.clock, *args)

    patched.__name__, patched.__doc__ = real.__name__, real.__doc__
    return patched


def _sleep(clock, seconds):
    if seconds < 0:
        raise ValueError("sleep length must be non-negative")
    me = current()
    if seconds == 0:  # "let others run": a check that never succeeds, so a loop of them spins
        me.sched.poll(me, Op("sleep", None), _never)
    else:
        me.sched.wait(me, Op(f"sleep({seconds:g})", None, _never, clock.deadline(seconds)))


def _never() -> bool:
    return False


def _unsupported(what: str, real):
    def refuse(*args, **kwargs):
        if current() is None:
            return real(*args, **kwargs)
        raise DetschedUsageError(
            f"{what} is not supported under detsched: a child process would run outside its control. "
            "Test the threaded part on its own, or fake the process boundary."
        )

    return refuse


def _module_patches() -> list[tuple[object, str, object]]:
    """(owner, attribute, controlled value) for every stdlib name detsched replaces."""
    real_time = time
    patches = [
        (threading, "Lock", sync.Lock), (threading, "RLock", sync.RLock),
        (threading, "Condition", sync.Condition), (threading, "Semaphore", sync.Semaphore),
        (threading, "BoundedSemaphore", sync.BoundedSemaphore), (threading, "Event", sync.Event),
        (threading, "Barrier", sync.Barrier),
        # The stdlib's Condition makes its waiter locks with this: subclasses defined at import use it.
        (threading, "_allocate_lock", sync.Lock), (threading, "main_thread", threads.main_thread),
        (threading, "enumerate", threads.enumerate_threads), (threading, "active_count", threads.active_count),
        (queue, "Queue", queues.Queue), (queue, "LifoQueue", queues.LifoQueue),
        (queue, "PriorityQueue", queues.PriorityQueue), (queue, "SimpleQueue", queues.SimpleQueue),
        (concurrent.futures, "ThreadPoolExecutor", futures.ThreadPoolExecutor),
        (concurrent.futures.thread, "ThreadPoolExecutor", futures.ThreadPoolExecutor),
        (concurrent.futures, "wait", futures.wait), (concurrent.futures._base, "wait", futures.wait),
    ]
    clock_functions = {
        "sleep": _sleep,
        "monotonic": lambda c: c.monotonic(),
        "monotonic_ns": lambda c: int(c.monotonic() * 1e9),
        "perf_counter": lambda c: c.monotonic(),
        "perf_counter_ns": lambda c: int(c.monotonic() * 1e9),
        "time": lambda c: c.wall(),
        "time_ns": lambda c: int(c.wall() * 1e9),
    }
    virtual = {name: _virtual(getattr(real_time, name), function) for name, function in clock_functions.items()}
    patches += [(real_time, name, function) for name, function in virtual.items()]
    # The stdlib's own aliases of time.monotonic, bound at import.
    patches += [(threading, "_time", virtual["monotonic"]), (queue, "time", virtual["monotonic"])]
    if hasattr(threading, "activeCount"):
        patches.append((threading, "activeCount", threads.active_count))
    for name in ("fork", "forkpty", "system", "posix_spawn", "posix_spawnp"):
        if hasattr(os, name):
            patches.append((os, name, _unsupported(f"os.{name}()", getattr(os, name))))
    import subprocess

    patches.append((subprocess.Popen, "_execute_child",
                    _unsupported("starting a subprocess", subprocess.Popen._execute_child)))
    try:
        import _posixsubprocess  # used directly by multiprocessing
    except ImportError:  # not on Windows
        pass
    else:
        patches.append((_posixsubprocess, "fork_exec",
                        _unsupported("starting a subprocess", _posixsubprocess.fork_exec)))
    for name, method in threads.THREAD_METHODS.items():
        patches.append((threading.Thread, name, method))
    return patches


def _real_values() -> dict[int, object]:
    """Controlled twin by id() of each real stdlib callable a user module may have bound."""
    twins = {}
    for owner, name, value in _MODULE_PATCHES:
        real = owner.__dict__.get(name, _MISSING) if isinstance(owner, type) else getattr(owner, name, _MISSING)
        if real is not _MISSING and callable(real) and not isinstance(owner, type) and not name.startswith("_"):
            twins[id(real)] = (real, value)
    twins[id(_thread.allocate_lock)] = (_thread.allocate_lock, sync.Lock)
    return twins


_MODULE_PATCHES = _module_patches()
_REAL_TWINS = _real_values()


def _is_user_module(module) -> bool:
    name = getattr(module, "__name__", "")
    if not isinstance(name, str) or name.partition(".")[0] in INFRASTRUCTURE:
        return False
    path = getattr(module, "__file__", None)
    return isinstance(path, str) and is_user_file(path)


class _Twins:
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

    __slots__ = ("module", "size", "hits", "_rewritten")

    def __init__(self, module):
        self.module = module
        self.size = len(module.__dict__)
        self._rewritten: list[tuple[types.FunctionType, types.CodeType]] | None = None
        self.hits: list[tuple[object, str, object, str]] = []  # (owner, name, real value, label)
        namespace, prefix = module.__dict__, module.__name__
        for name, value in list(namespace.items()):
            self._collect(namespace, name, value, f"{prefix}.{name}")
            if isinstance(value, type) and value.__module__ == prefix:
                for attr, member in list(vars(value).items()):
                    self._collect(value, attr, member, f"{prefix}.{name}.{attr}")
            elif type(value).__module__ == prefix and isinstance(getattr(value, "__dict__", None), dict):
                for attr, member in list(vars(value).items()):
                    self._collect(value.__dict__, attr, member, f"{prefix}.{name}.{attr}")

    def rewritten(self) -> list[tuple[types.FunctionType, types.CodeType]]:
        """(function, code with store points) for every function defined in the module (made once)."""
        if self._rewritten is None:
            self._rewritten = _rewrite_functions(self.module)
        return self._rewritten

    def _collect(self, owner, name: str, value, label: str) -> None:
        if name.startswith("__") and name.endswith("__"):
            return
        bound = _REAL_TWINS.get(id(value))
        if (bound is not None and bound[0] is value) or type(value) in _TWINNED_TYPES:
            self.hits.append((owner, name, value, label))


def _rewrite_functions(module) -> list[tuple[types.FunctionType, types.CodeType]]:
    path = getattr(module, "__file__", None)
    if not isinstance(path, str) or not path.endswith(".py"):
        return []
    try:
        with open(path, encoding="utf-8") as handle:
            source = handle.read()
        loader = getattr(getattr(module, "__spec__", None), "loader", None)
        compiled = rewrite.code_objects(rewrite.rewrite_module(source, path, loader))
    except (OSError, SyntaxError, UnicodeDecodeError, ValueError):
        return []  # source gone or unreadable: the module runs as it is
    pairs, seen = [], set()
    for function in _functions_of(module, path):
        code = function.__code__
        new_code = compiled.get((code.co_name, code.co_firstlineno))
        if id(function) not in seen and new_code is not None and new_code.co_freevars == code.co_freevars:
            seen.add(id(function))
            pairs.append((function, new_code))
    return pairs


def _functions_of(module, path: str):
    """Functions defined in ``path`` reachable from the module: globals, class members (methods,
    static and class methods, properties, nested classes) and what decorators wrapped."""
    pending = list(vars(module).values())
    classes_seen = set()
    while pending:
        value = pending.pop()
        if isinstance(value, (staticmethod, classmethod)):
            pending.append(value.__func__)
        elif isinstance(value, property):
            pending.extend(f for f in (value.fget, value.fset, value.fdel) if f is not None)
        elif isinstance(value, type) and value.__module__ == module.__name__ and id(value) not in classes_seen:
            classes_seen.add(id(value))
            pending.extend(vars(value).values())
        elif isinstance(value, types.FunctionType):
            wrapped = getattr(value, "__wrapped__", None)
            if wrapped is not None:
                pending.append(wrapped)
            if value.__code__.co_filename == path:
                yield value


_TWINNED_TYPES = frozenset({_REAL_LOCK_TYPE, _REAL_RLOCK_TYPE, _RealCondition, _RealSemaphore, _RealBoundedSemaphore,
                            _RealEvent, _RealBarrier, _RealSimpleQueue, _RealThreadPoolExecutor,
                            *_QUEUE_TWINS})
_scans: dict[str, _ModuleScan] = {}
#: (size, newest name) of sys.modules when the user modules were last listed. Modules are added at
#: the end, so a module removed and another imported (pytester's sessions) changes the newest name.
_modules_seen: tuple[int, str | None] = (-1, None)


def _user_module_scans() -> list[_ModuleScan]:
    global _modules_seen
    seen = (len(sys.modules), next(reversed(sys.modules), None))
    if seen != _modules_seen:
        _modules_seen = seen
        for name, module in list(sys.modules.items()):
            scan = _scans.get(name)
            if (scan is None or scan.module is not module) and module is not None and _is_user_module(module):
                _scans[name] = _ModuleScan(module)
        for name in [n for n in _scans if sys.modules.get(n) is not _scans[n].module]:
            del _scans[name]
    for name, scan in list(_scans.items()):
        module = sys.modules.get(name)
        if module is not scan.module:  # replaced under the same name (a target file loaded again)
            if module is None or not _is_user_module(module):
                del _scans[name]
            else:
                _scans[name] = _ModuleScan(module)
        elif len(module.__dict__) != scan.size:
            _scans[name] = _ModuleScan(module)
    return list(_scans.values())


def _current(owner, name: str):
    if isinstance(owner, dict):
        return owner.get(name, _MISSING)
    return owner.__dict__.get(name, _MISSING)


class Patcher:
    """Installs the controlled world for one run; ``restore`` puts every replaced value back."""

    def __init__(self, *, rewrite_stores: bool = True):
        self._saved: list[tuple[object, str, object]] = []
        self._rewrite_stores = rewrite_stores

    def _set(self, owner, name: str, value) -> None:
        if isinstance(owner, dict):
            self._saved.append((owner, name, owner.get(name, _MISSING)))
            owner[name] = value
            return
        current_value = owner.__dict__.get(name, _MISSING) if isinstance(owner, type) else getattr(owner, name, _MISSING)
        self._saved.append((owner, name, current_value))
        setattr(owner, name, value)

    def install(self) -> None:
        try:
            for owner, name, value in _MODULE_PATCHES:
                self._set(owner, name, value)
            self._set(threading, "_counter", threads.fresh_name_counter())
            futures.reset_pool_numbers()
            self._swap_user_modules()
        except BaseException:
            self.restore()
            raise

    def _swap_user_modules(self) -> None:
        with sync.making_twins():
            self._swap_twins()

    def _swap_twins(self) -> None:
        twins = _Twins()
        for scan in _user_module_scans():
            if self._rewrite_stores:
                rewritten = scan.rewritten()
                if rewritten:  # left in place after the run: functions made by rewritten code may outlive it
                    scan.module.__dict__.update(rewrite.HELPERS)
                for function, code in rewritten:
                    self._set(function, "__code__", code)
            for owner, name, real, label in scan.hits:
                if _current(owner, name) is not real:
                    scan.size = -1  # rebound since the scan: look again next run
                    continue
                bound = _REAL_TWINS.get(id(real))
                replacement = bound[1] if bound is not None and bound[0] is real else twins.twin(real, label)
                self._set(owner, name, replacement)

    def restore(self) -> None:
        while self._saved:
            owner, name, value = self._saved.pop()
            if isinstance(owner, dict):
                if value is _MISSING:
                    owner.pop(name, None)
                else:
                    owner[name] = value
            elif value is _MISSING:
                try:
                    delattr(owner, name)
                except AttributeError:
                    pass
            else:
                setattr(owner, name, value)
