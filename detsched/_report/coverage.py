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

import json
from dataclasses import dataclass
from typing import Sequence

from detsched._core import orders
from detsched._core.ops import TraceStep
from detsched._report.timeline import plural

#: Pairs seen in one order only that a summary line names (the JSON file has them all).
NAMED_IN_SUMMARY = 3


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

    def add(self, trace: Sequence[TraceStep]) -> None:
        """Count one run from its trace."""
        self.runs += 1
        for conflict in orders.conflicts(trace):
            self._saw(conflict.obj, trace[conflict.earlier].where, trace[conflict.later].where)
        self._interleavings.add(orders.happens_before_name(trace))

    def _saw(self, obj: str, before: str, after: str) -> None:
        if orders.site_order(before) <= orders.site_order(after):
            self._orders.setdefault((obj, before, after), [False, False])[0] = True
        else:
            self._orders.setdefault((obj, after, before), [False, False])[1] = True

    def freeze(self) -> Coverage:
        return Coverage(self.runs, _pairs(self._orders), tuple(sorted(self._interleavings)))


def _pairs(flags: dict[tuple[str, str, str], list[bool]]) -> tuple[Pair, ...]:
    keys = sorted(flags, key=lambda key: (key[0], orders.site_order(key[1]), orders.site_order(key[2])))
    return tuple(Pair(obj, first, second, *flags[obj, first, second]) for obj, first, second in keys)


def write_json(path: str, coverages: dict[str, Coverage]) -> None:
    """Write the coverage of each target (by name) to ``path``, keys in order."""
    with open(path, "w", encoding="utf-8") as out:
        json.dump({"format": "detsched-coverage", "version": 1,
                   "targets": {name: coverages[name].as_json() for name in sorted(coverages)}},
                  out, indent=2)
        out.write("\n")
