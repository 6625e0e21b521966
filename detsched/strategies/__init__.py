"""Strategies: who runs next. Each one is small, lives in its own file and is reached only through
the ``Strategy`` protocol, so the scheduler never depends on a concrete strategy."""

from __future__ import annotations

from typing import Protocol, Sequence

from detsched.errors import DetschedUsageError
from detsched.schedule import default_task
from .pct import PCT
from .random_walk import RandomWalk
from .replay import PositionReplay, Replay


class Strategy(Protocol):
    """Chooses among the runnable logical threads at every decision with more than one choice.

    A strategy lives across the many runs of one exploration; ``new_execution`` starts each run.
    """

    name: str

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


#: Strategies selectable by name from the CLI, the pytest plugin and ``explore(strategy=...)``.
STRATEGIES = {"random": RandomWalk, "pct": PCT}


def make_strategy(name: str, *, seed: int, depth: int) -> Strategy:
    from detsched.plugins import strategy_factories  # built-ins plus those plugins add (DESIGN §4)

    factories = strategy_factories()
    try:
        factory = factories[name]
    except KeyError:
        raise DetschedUsageError(
            f"unknown strategy {name!r}; choose one of: {', '.join(sorted(factories))}"
        ) from None
    return factory(seed=seed, depth=depth)


__all__ = ["PCT", "PositionReplay", "RandomWalk", "Replay", "STRATEGIES", "Strategy", "default_task", "make_strategy"]
