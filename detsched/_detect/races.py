"""The race detector: happens-before over the memory accesses of user code in one run.

Every controlled thread has a vector clock. Synchronisation orders threads: a thread that releases
a lock, sets an event, puts on a queue, finishes... *publishes* its clock into that object's clock,
and one that acquires, waits, gets, joins... *receives* it (``publish``/``receive``; the primitives
call them). Thread start copies the parent's clock into the child. An access is ordered before a
later one when its thread's clock entry at the time is at most the later thread's entry for it
(Lamport/Mattern vector clocks; FastTrack's observation that one entry per earlier access -- an
epoch -- is all a check needs).

Rewritten user code reports its accesses (``detsched._instrument.rewrite``): reads and writes of
attributes, items and declared globals; method calls on builtin containers as *updates*; iteration,
``len`` and ``in`` as reads of the whole container. Two accesses race when different threads make
them, nothing orders them, and their kinds conflict:

- a write conflicts with every access of the same location (attribute, item, global);
- an update (``append``, ``pop``, ``setdefault``...) is one atomic call on GIL and free-threaded
  CPython alike, so two updates do not conflict; an update conflicts with a read of the whole
  container, and with any item read or written;
- an item write conflicts with a read of the whole container (an iteration, ``len``, ``in``).

Shadow memory keeps nothing alive past the run it belongs to, and lets no later object inherit an
earlier one's history: an owner that supports weak references is tracked through one (its entries
go when it dies), one that does not (a list, a dict) is kept alive until the run ends, so its id
cannot be reused while its history is remembered.
"""

from __future__ import annotations

import fnmatch
import types
import weakref
from dataclasses import dataclass

# Kinds of access.
READ, WRITE, UPDATE, WHOLE_READ, MEMBER_READ, MEMBER_WRITE = range(6)
_NAMES = {READ: "read", WRITE: "write", UPDATE: "update", WHOLE_READ: "read",
          MEMBER_READ: "read", MEMBER_WRITE: "write"}
#: For each kind, the kinds of earlier accesses it conflicts with (same location, other thread).
CONFLICTS = {
    READ: (WRITE,),
    WRITE: (READ, WRITE),
    UPDATE: (WHOLE_READ, MEMBER_READ, MEMBER_WRITE),
    WHOLE_READ: (UPDATE, MEMBER_WRITE),
    MEMBER_READ: (UPDATE,),
    MEMBER_WRITE: (UPDATE, WHOLE_READ),
}
#: Kinds that only read: every other kind changes what a later access sees.
READS = frozenset({READ, WHOLE_READ, MEMBER_READ})
# Location tags: (id(owner), tag, key).
ATTRIBUTE, ITEM, WHOLE = range(3)
_NONE: dict = {}  # no earlier access of a kind (never written to)


@dataclass(frozen=True)
class Access:
    """One access a race report names."""

    thread: str  # "T1 'worker-1'"
    kind: str  # "read", "write", "update"
    site: str  # "stats.py:31 in worker()"


@dataclass(frozen=True)
class Race:
    """Two accesses of one location that no synchronisation orders."""

    location: str  # "Stats.processed", "dict['key']", "list (the whole container)"
    earlier: Access
    later: Access

    @property
    def sites(self) -> tuple[str, str]:
        """What makes two races the same race: the pair of sites, in either order."""
        return tuple(sorted((self.earlier.site, self.later.site)))  # type: ignore[return-value]

    def headline(self) -> str:
        return (f"{self.location}: {self.later.kind} by {self.later.thread} races with "
                f"{self.earlier.kind} by {self.earlier.thread}")


class BenignRaces:
    """Races a user declared intentional (``detsched.benign``): on objects (all their attributes and
    items, or the named attributes) and on ``module:Class.attribute`` patterns."""

    def __init__(self):
        self._objects: dict[int, tuple[object, frozenset | None]] = {}  # id -> (weak ref or object, names)
        self.patterns: list[str] = []

    def mark(self, obj, names: tuple[str, ...]) -> None:
        ident = id(obj)
        held = _held(obj, lambda: self._objects.pop(ident, None))  # a dict or a list: kept while the mark stands
        known = self._objects.get(ident)
        merged = None if not names or (known is not None and known[1] is None) else \
            frozenset(names) | (known[1] if known is not None else frozenset())
        self._objects[ident] = (held, merged)

    def covers(self, owner, tag: int, key) -> bool:
        mark = self._objects.get(id(owner))
        if mark is not None and (mark[1] is None or (tag == ATTRIBUTE and key in mark[1])):
            return True
        if not self.patterns or tag != ATTRIBUTE:
            return False
        if isinstance(owner, dict) and isinstance(owner.get("__name__"), str):  # a module's globals
            name = f"{owner['__name__']}:{key}"
        elif isinstance(owner, types.ModuleType):
            name = f"{owner.__name__}:{key}"
        else:
            kind = type(owner)
            name = f"{kind.__module__}:{kind.__qualname__}.{key}"
        return any(fnmatch.fnmatchcase(name, pattern) for pattern in self.patterns)


#: Marks made outside any run (at import, in a fixture) and the patterns of the pytest plugin's ini
#: option: they hold for every run. Marks made inside a run go to that run's detector.
BENIGN = BenignRaces()


def forget_benign(patterns) -> None:
    """Withdraw ``patterns`` (one of each) from the marks that hold for every run."""
    for pattern in patterns:
        if pattern in BENIGN.patterns:
            BENIGN.patterns.remove(pattern)


class RaceDetector:
    """The vector clocks and shadow memory of one run."""

    def __init__(self, *, footprints=None, report: bool = True):
        #: The run's ``Footprints`` when a partial-order reduction needs every access as a
        #: dependency, or None.
        self.footprints = footprints
        self.report = report  # False: accesses are only footprints, never checked for races
        # Identities: a thread's tid (>= 0), or an asyncio task's (< 0, see ``task_identity``).
        # Invariant: clocks[i][i] >= 1 for every identity i seen; other entries are what it received.
        self.clocks: dict[int, dict[int, int]] = {}
        self.names: dict[int, str] = {}  # identity -> "T1 'worker-1'", "task 'Task-2' (in T0)"
        self._sync: dict[int, tuple[object, dict[int, int]]] = {}  # id(sync object) -> (it, clock)
        self._tasks: dict[int, tuple[object, int]] = {}  # id(task) -> (task, identity); tasks live for the run
        # (id(owner), tag, key) -> {kind: {identity: (clock entry, site)}}
        self._shadow: dict[tuple[int, int, object], dict[int, dict[int, tuple[int, str]]]] = {}
        self._owners: dict[int, object] = {}  # id -> a weak reference to the owner, or the owner
        self._keys_of: dict[int, list[tuple[int, int, object]]] = {}  # id(owner) -> its locations
        #: Every distinct race seen in the run (by the pair of sites), first first.
        self.races: list[Race] = []
        self._seen: set[tuple[str, str]] = set()
        self.benign = BenignRaces()  # marks made during this run
        #: The run's failure for its first race (``FailureInfo``), once there is one.
        self.failure = None

    # ------------------------------------------------------------------ happens-before

    def thread_started(self, parent: int | None, child: int, name: str) -> None:
        """``child`` begins with everything ``parent`` did before starting it."""
        known = self.clocks.get(parent) if parent is not None else None
        clock = dict(known) if known is not None else {}
        clock[child] = clock.get(child, 0) + 1
        self.clocks[child] = clock
        self.names[child] = name
        if known is not None:
            self._tick(parent)

    def task_identity(self, task, runner: str) -> tuple[int, bool]:
        """The identity of an asyncio task, and whether this is its first step: tasks of one loop
        interleave at their awaits as threads do at scheduling points. It begins with no order;
        its first step receives its creator's."""
        known = self._tasks.get(id(task))
        if known is not None:
            return known[1], False
        identity = -1 - len(self._tasks)
        self._tasks[id(task)] = (task, identity)
        self.clocks[identity] = {identity: 1}
        self.names[identity] = f"task {task.get_name()!r} (in {runner})"
        return identity, True

    def publish(self, identity: int, obj) -> None:
        """``identity`` releases ``obj`` (unlock, set, put, notify, finish, schedule a callback):
        what it did so far is ordered before whatever later receives ``obj``."""
        mine = self.clocks.get(identity)
        if mine is None:
            return
        entry = self._sync.get(id(obj))
        if entry is None:
            self._sync[id(obj)] = (obj, dict(mine))
        else:
            _join(entry[1], mine)
        self._tick(identity)

    def receive(self, identity: int, obj, *, once: bool = False) -> None:
        """``identity`` acquires ``obj`` (lock, wait, get, join, run a callback): it is ordered
        after every publish. ``once``: nothing receives ``obj`` again (an event-loop callback
        runs once), so its clock is dropped rather than kept for the rest of the run."""
        mine = self.clocks.get(identity)
        entry = self._sync.pop(id(obj), None) if once else self._sync.get(id(obj))
        if mine is not None and entry is not None:
            _join(mine, entry[1])

    def _tick(self, identity: int) -> None:
        self.clocks[identity][identity] += 1

    # ------------------------------------------------------------------ accesses

    def access(self, identity: int, owner, tag: int, key, kind: int, site: str, describe) -> Race | None:
        """Record an access by ``identity``; return the race it makes with an earlier access, if new.
        ``describe(owner, tag, key)`` names the location (only called for a race)."""
        self.depend(owner, tag, key, kind)
        mine = self.clocks.get(identity) if self.report else None
        if mine is None:
            return None
        location = (self._track(owner), tag, key)
        history = self._shadow.get(location)
        if history is None:
            history = self._shadow[location] = {}
            self._keys_of[location[0]].append(location)
        found = None
        for other_kind in CONFLICTS[kind]:
            for other, (entry, other_site) in history.get(other_kind, _NONE).items():
                if other != identity and entry > mine.get(other, 0):
                    found = found or Race(describe(owner, tag, key),
                                          Access(self.names[other], _NAMES[other_kind], other_site),
                                          Access(self.names[identity], _NAMES[kind], site))
        history.setdefault(kind, {})[identity] = (mine[identity], site)
        if found is None or found.sites in self._seen:
            return None
        if self.benign.covers(owner, tag, key) or BENIGN.covers(owner, tag, key):
            return None
        self._seen.add(found.sites)
        self.races.append(found)
        return found

    def depend(self, owner, tag: int, key, kind: int) -> None:
        """Count an access in the running step's footprint (a dependency, not a race check)."""
        if self.footprints is not None:
            self.footprints.access(owner, tag, key, kind not in READS)

    def _track(self, owner) -> int:
        """id(owner), made safe to key on: see the module docstring."""
        ident = id(owner)
        if ident in self._owners:
            return ident
        self._owners[ident] = _held(owner, lambda: self._forget(ident))
        self._keys_of[ident] = []
        return ident

    def _forget(self, ident: int) -> None:
        self._owners.pop(ident, None)
        for location in self._keys_of.pop(ident, ()):
            self._shadow.pop(location, None)


def _held(obj, forget):
    """A weak reference to ``obj`` that calls ``forget()`` when it dies; ``obj`` itself when it has
    no weak references (a list, a dict, ``__slots__`` without ``__weakref__``)."""
    try:
        return weakref.ref(obj, lambda _: forget())
    except TypeError:
        return obj


def _join(into: dict[int, int], other: dict[int, int]) -> None:
    for identity, value in other.items():
        if value > into.get(identity, 0):
            into[identity] = value
