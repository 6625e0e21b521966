"""What each step of one run touched: the dependency relation a partial-order reduction reduces by.

Recorded only when the strategy asks (``needs_footprints``, the ``dpor`` strategy): a *step* is one
thread going on from a scheduling point to its next one, and its footprint is every object it
touched there -- the primitive its announced operation works on, what it published or received
(a release, a put, a set, a start, a join...), the virtual clock when it waited on time, and, from
the race detector's access reports, every memory location it read or wrote. Two steps of different
threads are *dependent* when they touch one object and one of them writes it. Operations on a
primitive write it, except queries (``locked()``, ``is_set()``, ``empty()``, ``qsize()``,
``is_alive()``) and receiving what another thread published (a join, a set event seen), which read it.

Each touch is kept twice. The *exact* key names the object itself (kept alive until the run ends,
so no later object can inherit its ``id``) and is what races within one run are computed from. The
*stable* key names it in a way another run that replayed the same prefix names it too (a
primitive's label, a thread's number, an attribute by its owner's type and name); sleep sets
compare a step of this run with one of an earlier run through it. A stable key may merge objects
the exact one keeps apart, which only makes more steps dependent: never a missed interleaving.
"""

from __future__ import annotations

#: The stable and exact key of the virtual clock: sleeps and timed waits touch it.
CLOCK = "clock"
#: Operations that only look at their primitive.
QUERIES = frozenset({"locked?", "is_set?", "empty?", "qsize", "is_alive?"})


class Step:
    """The footprint of one step."""

    __slots__ = ("tid", "decision", "exact", "stable", "published", "received")

    def __init__(self, tid: int, decision: int):
        self.tid = tid
        self.decision = decision  # index of the decision that chose it, or -1 (only one thread could go on)
        self.exact: dict[object, bool] = {}  # exact key -> whether the step wrote it
        self.stable: dict[object, bool] = {}  # stable key -> whether the step wrote it
        self.published: set[object] = set()  # exact keys of what it released, put, set, finished...
        self.received: set[object] = set()  # exact keys of what it acquired, got, waited for, joined...

    def touched(self, exact, stable, write: bool) -> None:
        """Count one touch under both keys: a key written once stays written."""
        self.exact[exact] = write or self.exact.get(exact, False)
        self.stable[stable] = write or self.stable.get(stable, False)

    def __repr__(self) -> str:
        return f"Step(T{self.tid}, decision={self.decision}, {sorted(map(str, self.stable))})"


class Footprints:
    """The steps of one run, in order. The scheduler and the race detector of the run write it."""

    def __init__(self):
        # Invariant: steps[0] is T0's start, before the first scheduling step; every later entry
        # is one scheduling step, in the order they ran.
        self.steps: list[Step] = [Step(0, -1)]
        self._alive: dict[int, object] = {}  # id -> every object touched in the run, so no id is reused

    def begin(self, tid: int, decision: int) -> None:
        self.steps.append(Step(tid, decision))

    def touch(self, obj, *, write: bool = True, published: bool = False, received: bool = False) -> None:
        """The running step works on a primitive (or a thread, or a task)."""
        key = id(obj)
        self._alive[key] = obj
        step = self.steps[-1]
        step.touched(key, _stable_name(obj), write)
        if published:
            step.published.add(key)
        if received:
            step.received.add(key)

    def touch_thread(self, tid: int, *, published: bool = False, received: bool = False) -> None:
        """The running step starts thread ``tid`` (published) or is its first step (received)."""
        key = ("thread", tid)
        step = self.steps[-1]
        step.touched(key, key, True)
        if published:
            step.published.add(key)
        if received:
            step.received.add(key)

    def touch_clock(self) -> None:
        self.steps[-1].touched(CLOCK, CLOCK, True)

    def access(self, owner, tag: int, key, write: bool) -> None:
        """A memory access the race detector saw: ``(owner, tag, key)`` is its location."""
        ident = id(owner)
        self._alive[ident] = owner
        stable = (tag, _owner_name(owner), key if isinstance(key, (str, int)) else None)
        self.steps[-1].touched((ident, tag, key), stable, write)


def dependent(a: dict, b: dict) -> bool:
    """Whether two footprints (key -> wrote) touch a key in common, at least one writing it."""
    if len(a) > len(b):
        a, b = b, a
    for key, wrote in a.items():
        other = b.get(key)
        if other is not None and (wrote or other):
            return True
    return False


def _stable_name(obj) -> object:
    label = getattr(obj, "label", None)
    if isinstance(label, str):
        return label  # "Lock(app.py:12)#2": made at that line, the second one there in the run
    return type(obj).__qualname__


def _owner_name(owner) -> str:
    if isinstance(owner, dict) and isinstance(owner.get("__name__"), str):
        return owner["__name__"]  # a module's globals
    name = getattr(owner, "__name__", None) if isinstance(owner, type) else None
    return name if isinstance(name, str) else type(owner).__qualname__
