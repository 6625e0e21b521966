"""The orders of conflicting operations in a run's trace: which operation of one thread followed
which of another on one primitive, and a name for the run's happens-before order. Concurrency
coverage counts them (``detsched._report.coverage``) and the ``cover`` strategy steers by them.

A *conflict* is two operations of different threads on one primitive, the second following the
first on that object with no third thread's operation in between, at least one of them changing it
(``QUERIES`` only look). A thread's consecutive operations on one object count once, by the first
(a critical section by where it was entered). Orders that starting and joining threads impose are
no conflicts: no run can reverse them. Objects are named by their label without its ``#n``
(objects made at one site are one), so that runs name them alike.
"""

from __future__ import annotations

import hashlib
import re
from typing import Iterator, NamedTuple, Sequence

from detsched._core.footprints import QUERIES
from detsched._core.ops import TraceStep

_NUMBERED = re.compile(r"#\d+$")


class Conflict(NamedTuple):
    """Rows ``earlier`` and ``later`` of a trace: two threads' operations on ``obj``, in that order."""

    obj: str
    earlier: int
    later: int


def conflicts(trace: Sequence[TraceStep]) -> Iterator[Conflict]:
    """Every conflict of the run, in the order of its later operation."""
    # object -> (row, changed it, the thread's own count there) of its latest entry
    last: dict[str, tuple[int, bool, int]] = {}
    order = _ThreadOrder()
    for row, step in enumerate(trace):
        if step.note == "blocked":
            continue  # never happened: the run ended with it waiting
        count = order.step(step)
        if not step.obj or step.obj.startswith("thread "):
            continue
        obj = _NUMBERED.sub("", step.obj)
        changes = step.op.split(" ", 1)[0] not in QUERIES
        previous = last.get(obj)
        if previous is not None and trace[previous[0]].tid == step.tid:
            if changes and not previous[1]:  # the same thread's entry now changes the object too
                last[obj] = (previous[0], True, previous[2])
            continue
        if previous is not None and (changes or previous[1]) \
                and not order.after(step.tid, trace[previous[0]].tid, previous[2]):
            yield Conflict(obj, previous[0], row)
        last[obj] = (row, changes, count)


def happens_before_name(trace: Sequence[TraceStep]) -> str:
    """A name for the run's happens-before order: for each object (each one, in label order), which
    thread's which operation on primitives touched it in turn. Runs with the same order on every
    object are equivalent, and get the same name."""
    history: dict[str, list[tuple[int, int]]] = {}
    operations: dict[int, int] = {}  # thread -> its operations on primitives so far
    for step in trace:
        if step.note == "blocked" or not step.obj or step.obj.startswith("thread "):
            continue
        operations[step.tid] = operations.get(step.tid, 0) + 1
        history.setdefault(step.obj, []).append((step.tid, operations[step.tid]))
    text = ";".join(f"{obj}={history[obj]}" for obj in sorted(history))
    return hashlib.blake2b(text.encode(), digest_size=8).hexdigest()


def site_order(site: str) -> tuple[str, int]:
    """``file:line`` sites in file order, then line order (``f.py:9`` before ``f.py:10``)."""
    path, _, line = site.rpartition(":")
    return (path, int(line)) if line.isdigit() else (site, -1)


class _ThreadOrder:
    """Vector clocks over a trace with only the orders threads themselves impose: a thread's first
    step comes after the step that started it, and a join after the joined thread's last step. A
    pair so ordered cannot come the other way round in any run, so it is no pair to cover."""

    def __init__(self):
        self.clocks: dict[int, dict[int, int]] = {}
        self.names: dict[str, list[int]] = {}  # thread name -> threads of that name, in start order
        self.starts: dict[str, list[dict[int, int]]] = {}  # name -> starter's clocks of threads not yet begun

    def step(self, step: TraceStep) -> int:
        """Advance ``step``'s thread by one step; return its own count there."""
        clock = self.clocks.get(step.tid)
        if clock is None:
            clock = self.clocks[step.tid] = {}
            self.names.setdefault(step.thread, []).append(step.tid)
            starters = self.starts.get(step.thread)
            if starters:
                _join(clock, starters.pop(0))
        kind, _, what = step.op.partition(" ")
        if what.startswith("thread "):
            name = what[len("thread '"):-1]
            if kind == "start":
                self.starts.setdefault(name, []).append(dict(clock))
            elif kind == "join":
                for tid in self.names.get(name, ()):  # same-named threads: every one (order more, never less)
                    _join(clock, self.clocks[tid])
        clock[step.tid] = clock.get(step.tid, 0) + 1
        return clock[step.tid]

    def after(self, tid: int, earlier: int, count: int) -> bool:
        """Whether ``tid``, now, comes after step ``count`` of thread ``earlier`` by these orders."""
        return self.clocks[tid].get(earlier, 0) >= count


def _join(clock: dict[int, int], other: dict[int, int]) -> None:
    for tid, count in other.items():
        if clock.get(tid, 0) < count:
            clock[tid] = count

