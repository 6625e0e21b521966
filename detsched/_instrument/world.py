"""The controlled world of one run: everything a run puts under control, installed when it starts and
restored, every value put back, when it ends. One ``World`` per run, and nothing else patches.

Unmodified user code binds the standard library's names in many ways, and each is covered:
- ``threading.Lock()`` at call time: module attributes are replaced (``patches``);
- ``from threading import Lock`` / ``from time import sleep`` at import: the bound names in loaded
  user modules are replaced, as freezegun does for ``datetime`` (``scan``);
- ``LOCK = threading.Lock()`` at module level, class attributes, and attributes of module-level
  objects: each real primitive is swapped for a twin in the same state, fresh for every run;
- ``class Worker(threading.Thread)`` defined at import: the real Thread class gets controlled methods.

It also turns on the scheduling points in user code (call points, and the functions recompiled with
store points), and gives controlled threads controlled asyncio event loops. The world holds the
state the controlled primitives and loops share during the run (pool numbers, the tasks' failures
nobody read, the event loop policy); primitives reach it as ``current().sched.world``.
"""

from __future__ import annotations

import itertools
import threading

from detsched._core.scheduler import Scheduler
from detsched._detect.races import RaceDetector
from detsched._instrument import accesses, rewrite
from detsched._instrument.patches import MISSING, MODULE_PATCHES, REAL_TWINS, loaded_module_patches
from detsched._instrument.scan import SCANS, Twins, current_value
from detsched._primitives import sync, threads
from detsched.schedule import Points


class World:
    """``with World(sched, points):`` runs a run's code under control; see the module docstring."""

    def __init__(self, sched: Scheduler, points: Points = Points(), roots: tuple = ()):
        self.sched = sched
        self.points = points
        #: Whether user code reports its memory accesses: to check races, or because the strategy
        #: reduces by dependencies and needs every access as one.
        self.accesses = points.races or sched.footprints is not None
        #: What the run's target is and is given: closures they reach get store points too.
        self.roots = roots
        #: ThreadPoolExecutor-N names restart in every run, as thread names do.
        self.pool_numbers = itertools.count()
        #: Futures of this run's pools that a task's exception went into (``futures.unread_failure``).
        self.failed_futures: list = []
        #: The run's asyncio event loop policy (``detsched._aio.policy.ControlledPolicy``).
        self.aio_policy = None
        # Invariant: every replaced value is here, in the order it was replaced, until restored.
        self._saved: list[tuple[object, str, object]] = []

    def __enter__(self) -> World:
        try:
            for owner, name, value in MODULE_PATCHES + loaded_module_patches():
                self._set(owner, name, value)
            self._set(threading, "_counter", threads.fresh_name_counter())
            if self.accesses:
                self.sched.races = RaceDetector(footprints=self.sched.footprints, report=self.points.races)
            with sync.making_twins():
                self._swap_user_modules()
            self._control_asyncio()
        except BaseException:
            self._restore()
            raise
        self.sched.world = self
        return self

    def __exit__(self, *exc_info) -> None:
        self._restore()

    def _swap_user_modules(self) -> None:
        twins = Twins()
        rewriting = self.points.calls or self.points.writes
        helpers = rewrite.helpers(self.points, self.accesses)
        swapped: set[tuple[int, str]] = set()  # (id(owner), name): an object two modules' scans reach is swapped once
        for scan in SCANS.current():
            if rewriting:
                rewritten = scan.rewritten(self.accesses)
                if rewritten:  # left in place after the run: functions made by rewritten code may outlive it
                    scan.module.__dict__.update(helpers)
                for function, code in rewritten:
                    self._set(function, "__code__", code)
            for owner, name, real, label in scan.hits:
                if (id(owner), name) in swapped:
                    continue
                swapped.add((id(owner), name))
                if current_value(owner, name) is not real:
                    scan.size = -1  # rebound since the scan: look again next run
                    continue
                bound = REAL_TWINS.get(id(real))
                replacement = bound[1] if bound is not None and bound[0] is real else twins.twin(real, label)
                self._set(owner, name, replacement)
        if rewriting:
            self._rewrite_reachable(helpers)

    def _rewrite_reachable(self, helpers: dict) -> None:
        """Points in the closures the target reaches that no module refers to (a factory's
        product handed to ``explore``, a callback kept in a list the target closes over)."""
        for function, code in SCANS.rewritten_reachable(self.roots, self.accesses):
            if function.__code__ is not code:  # not swapped already as a module's function
                function.__globals__.update(helpers)
                self._set(function, "__code__", code)

    def _control_asyncio(self) -> None:
        # Imported here, not at the top: thread-only users need not pay for importing asyncio at start-up.
        from detsched._aio import patches, policy

        self.aio_policy = policy.ControlledPolicy(self.sched)
        for owner, name, value in patches.for_run(self.aio_policy):
            self._set(owner, name, value)

    def handed_over(self, fn, site: str) -> None:
        """Primitives call this before calling what user code handed them (``accesses.handed_over``)."""
        if self.accesses:
            accesses.handed_over(fn, site)

    def _set(self, owner, name: str, value) -> None:
        if isinstance(owner, dict):
            self._saved.append((owner, name, owner.get(name, MISSING)))
            owner[name] = value
            return
        previous = owner.__dict__.get(name, MISSING) if isinstance(owner, type) else getattr(owner, name, MISSING)
        self._saved.append((owner, name, previous))
        setattr(owner, name, value)

    def _restore(self) -> None:
        while self._saved:
            owner, name, value = self._saved.pop()
            if isinstance(owner, dict):
                if value is MISSING:
                    owner.pop(name, None)
                else:
                    owner[name] = value
            elif value is MISSING:
                try:
                    delattr(owner, name)
                except AttributeError:
                    pass
            else:
                setattr(owner, name, value)
