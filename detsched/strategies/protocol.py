"""The ``Strategy`` protocol: what the scheduler asks a strategy, and nothing more."""

from __future__ import annotations

from typing import Protocol, Sequence, runtime_checkable


@runtime_checkable
class Strategy(Protocol):
    """Chooses among the runnable logical threads at every decision with more than one choice.

    A strategy lives across the many runs of one exploration: ``calibrate`` once, after the warm-up
    run, then ``new_execution`` before each run. The scheduler reaches strategies only through these
    methods; it never imports a concrete one.
    """

    name: str

    def calibrate(self, decisions: int) -> None:
        """Learn, once per exploration, how many decisions the warm-up run (default policy) made:
        PCT places its change points among that many. Most strategies ignore it."""

    def new_execution(self, run_index: int) -> None:
        """Reset per-run state; run ``run_index`` must depend only on the seed and this index."""

    def next_task(self, runnable: Sequence[int], current: int | None, *, yielding: bool,
                  at: tuple[int, int] = (0, 0)) -> int:
        """Return one of ``runnable`` (never empty, sorted, at least two entries). ``current`` is the
        thread that reached this decision, if it can go on; ``yielding`` says it is spinning and
        should give way (the scheduler already removed it from ``runnable``). ``at`` names the decision
        as (thread that reached it, how many scheduling points that thread has reached)."""

    def next_data(self, bound: int, *, at: tuple[int, int] = (0, 0)) -> int:
        """Return an integer in ``range(bound)`` (bound >= 2) for a non-thread choice, e.g. which
        ready asyncio callback runs next; 0 is the default a schedule need not store."""
