"""Concurrency coverage of an exploration: which orders of conflicting operations its runs saw.

Line coverage says a line ran; it cannot say whether a ``put`` ever ran before the ``get`` it races
with. Here a *pair* is two operations of different threads on one primitive (a lock, a queue, an
event, a condition, a thread started or joined), named by the object and the ``file:line`` sites
of both, where one follows the other on that object with no operation of a third thread in
between and at least one of them changes it (``locked()`` and ``is_set()`` only look). A thread's
consecutive operations on one object count once, by the first (a critical section by where it
was entered). An exploration covers a pair in both orders when some run did ``a`` before ``b`` and
some run ``b`` before ``a``; a pair seen in one order only is an interleaving the exploration
never tried -- after many runs, a sign the test cannot reach it, or that the search needs more
runs or another strategy (Bron, Farchi, Magid, Nir and Ur, "Applications of synchronization
coverage", PPoPP 2005, count such pairs).

Runs are also counted by their *happens-before order* -- for every object, which thread's which
operation came after which -- so that runs that differ only in the order of independent steps
count as one interleaving.

Everything is computed from the traces of the runs (``ExecutionResult.trace``); memory accesses
(the race detector's reads and writes) and asyncio callbacks are not paired yet.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from typing import Iterable

from detsched._core.footprints import QUERIES
from detsched._core.ops import TraceStep
from detsched._report.timeline import plural

#: Pairs seen in one order only that a summary line names (the JSON file has them all).
NAMED_IN_SUMMARY = 3
_NUMBERED = re.compile(r"#\d+$")


@dataclass(frozen=True, order=True)
class Pair:
    """Two operations on one object, by site: ``first`` and ``second`` are ``file:line``, ``first``
    the earlier in the file; ``forward`` means a run did ``first`` then ``second``."""

    obj: str  # the object's label, e.g. "Lock(bank.py:12)"; objects made at one site are one
    first: str
    second: str
    forward: bool
    backward: bool

    @property
    def both(self) -> bool:
        return self.first == self.second or (self.forward and self.backward)

    def describe(self) -> str:
        if self.both:
            return f"{self.obj}: {self.first} and {self.second}, both orders"
        before, after = (self.first, self.second) if self.forward else (self.second, self.first)
        return f"{self.obj}: {before} always ran before {after}"


@dataclass(frozen=True)
class Coverage:
    """What the runs of one exploration covered (``Report.coverage``)."""

    runs: int
    pairs: tuple[Pair, ...]  # sorted by object, then sites
    #: A name for each distinct happens-before order the runs had, sorted (so shards merge).
    orders_seen: tuple[str, ...] = ()

    @property
    def interleavings(self) -> int:
        """Distinct interleavings among the runs, equivalent ones counted once."""
        return len(self.orders_seen)

    @property
    def ordered(self) -> int:
        """Orders there are to see: two for a pair of different sites, one for a site with itself."""
        return sum(1 if p.first == p.second else 2 for p in self.pairs)

    @property
    def covered(self) -> int:
        """Orders the runs saw."""
        return sum(1 if p.first == p.second else p.forward + p.backward for p in self.pairs)

    @property
    def one_order(self) -> tuple[Pair, ...]:
        return tuple(p for p in self.pairs if not p.both)

    def summary(self) -> str:
        """One line: ``coverage: 41/52 orders of conflicting operations; 11 pairs seen in one order
        only: ...; 37 distinct interleavings in 500 runs``."""
        runs = f"{plural(self.interleavings, 'distinct interleaving')} in {plural(self.runs, 'run')}"
        if not self.pairs:
            return f"coverage: no two threads worked on one primitive; {runs}"
        text = f"coverage: {self.covered}/{self.ordered} orders of conflicting operations"
        missing = self.one_order
        if missing:
            named = "; ".join(p.describe() for p in missing[:NAMED_IN_SUMMARY])
            more = f"; and {len(missing) - NAMED_IN_SUMMARY} more" if len(missing) > NAMED_IN_SUMMARY else ""
            text += f"; {plural(len(missing), 'pair')} seen in one order only: {named}{more}"
        else:
            text += ", every pair seen in both orders"
        return f"{text}; {runs}"

    def as_json(self, *, with_orders: bool = False) -> dict:
        """A JSON-ready dict: the counts, and every pair with the orders seen (``with_orders``: also
        the names of the interleavings, which ``from_json`` needs to merge coverages exactly)."""
        data = {"runs": self.runs, "interleavings": self.interleavings, "orders": self.ordered,
                "covered": self.covered,
                "pairs": [{"object": p.obj, "sites": [p.first, p.second], "forward": p.forward,
                           "backward": p.backward, "both": p.both} for p in self.pairs]}
        if with_orders:
            data["orders_seen"] = list(self.orders_seen)
        return data

    @classmethod
    def from_json(cls, data: dict) -> Coverage:
        pairs = tuple(Pair(p["object"], *p["sites"], p["forward"], p["backward"]) for p in data["pairs"])
        return cls(data["runs"], pairs, tuple(data.get("orders_seen", ())))

    def merged(self, other: Coverage) -> Coverage:
        """The coverage of both explorations' runs (the shards of one test)."""
        flags = {(p.obj, p.first, p.second): [p.forward, p.backward] for p in self.pairs}
        for p in other.pairs:
            seen = flags.setdefault((p.obj, p.first, p.second), [False, False])
            seen[0] |= p.forward
            seen[1] |= p.backward
        return Coverage(self.runs + other.runs, _pairs(flags), tuple(sorted({*self.orders_seen, *other.orders_seen})))


class CoverageCounter:
    """Adds up the coverage of runs, one trace at a time."""

    def __init__(self):
        self.runs = 0
        # Invariant: every key is (obj, first, second), first not after second in file order; the value is the two
        # flags (first then second seen, second then first seen).
        self._orders: dict[tuple[str, str, str], list[bool]] = {}
        self._interleavings: set[str] = set()

    def add(self, trace: Iterable[TraceStep]) -> None:
        """Count one run from its trace."""
        self.runs += 1
        # object -> (thread, site, changed it, the thread's clock there) of its latest entry
        last: dict[str, tuple[int, str, bool, int]] = {}
        # object (each one, not merged by site) -> (thread, its n-th operation) in order
        history: dict[str, list[tuple[int, int]]] = {}
        order = _ThreadOrder()
        operations: dict[int, int] = {}  # thread -> its operations on primitives so far
        for step in trace:
            if step.note == "blocked":
                continue  # never happened: the run ended with it waiting
            n = order.step(step)
            if not step.obj or step.obj.startswith("thread "):
                continue
            operations[step.tid] = operations.get(step.tid, 0) + 1
            history.setdefault(step.obj, []).append((step.tid, operations[step.tid]))
            obj = _NUMBERED.sub("", step.obj)
            changes = step.op.split(" ", 1)[0] not in QUERIES
            previous = last.get(obj)
            if previous is not None and previous[0] == step.tid:
                if changes and not previous[2]:  # the same thread's entry now changes the object too
                    last[obj] = (previous[0], previous[1], True, previous[3])
                continue
            if previous is not None and (changes or previous[2]) and not order.after(step.tid, previous[0], previous[3]):
                self._saw(obj, previous[1], step.where)
            last[obj] = (step.tid, step.where, changes, n)
        self._interleavings.add(_digest(history))

    def _saw(self, obj: str, before: str, after: str) -> None:
        if _site_order(before) <= _site_order(after):
            self._orders.setdefault((obj, before, after), [False, False])[0] = True
        else:
            self._orders.setdefault((obj, after, before), [False, False])[1] = True

    def freeze(self) -> Coverage:
        return Coverage(self.runs, _pairs(self._orders), tuple(sorted(self._interleavings)))


def _pairs(flags: dict[tuple[str, str, str], list[bool]]) -> tuple[Pair, ...]:
    keys = sorted(flags, key=lambda key: (key[0], _site_order(key[1]), _site_order(key[2])))
    return tuple(Pair(obj, first, second, *flags[obj, first, second]) for obj, first, second in keys)


def _site_order(site: str) -> tuple[str, int]:
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


def _digest(history: dict[str, list[tuple[int, int]]]) -> str:
    """A name for a run's happens-before order: for each object, in label order, which thread's
    which operation touched it in turn. Runs with the same order on every object are equivalent."""
    text = ";".join(f"{obj}={history[obj]}" for obj in sorted(history))
    return hashlib.blake2b(text.encode(), digest_size=8).hexdigest()


def write_json(path: str, coverages: dict[str, Coverage]) -> None:
    """Write the coverage of each target (by name) to ``path``, keys in order."""
    with open(path, "w", encoding="utf-8") as out:
        json.dump({"format": "detsched-coverage", "version": 1,
                   "targets": {name: coverages[name].as_json() for name in sorted(coverages)}},
                  out, indent=2)
        out.write("\n")
