"""Strategies by name: the built-in ones, and those plugins add through ``detsched_strategies``."""

from __future__ import annotations

from typing import Callable

from detsched import plugins
from detsched.errors import DetschedUsageError
from detsched.strategies.cover import CoverageGuided
from detsched.strategies.dfs import DepthFirst
from detsched.strategies.dpor import PartialOrder
from detsched.strategies.pct import PCT
from detsched.strategies.protocol import Strategy
from detsched.strategies.random_walk import RandomWalk

#: Strategies detsched ships, selectable by name from the CLI, the pytest plugin and
#: ``explore(strategy=...)``.
BUILTIN: dict[str, Callable[..., Strategy]] = {"random": RandomWalk, "pct": PCT, "dfs": DepthFirst,
                                                  "dpor": PartialOrder, "cover": CoverageGuided}


def strategy_factories() -> dict[str, Callable[..., Strategy]]:
    """Every strategy by name. A plugin may not redefine a built-in name; among plugins, the one
    registered last wins, so a test session's own strategies take precedence."""
    merged = dict(BUILTIN)
    for contributed in plugins.contributed_strategies():
        for name, factory in contributed.items():
            if name in BUILTIN and factory is not BUILTIN[name]:
                raise DetschedUsageError(f"a plugin redefines the built-in strategy {name!r}; give it another name")
            merged[name] = factory
    return merged


#: The options of a systematic search, and the strategies that take each.
SEARCH_OPTIONS = {
    "preemption_bound": ("a preemption bound", (DepthFirst, PartialOrder)),
    "delay_bound": ("a delay bound", (DepthFirst,)),
    "shard": ("splitting the search tree", (DepthFirst,)),
}


def make_strategy(name: str, *, seed: int, depth: int, preemption_bound: int | None = None,
                  delay_bound: int | None = None, shard: tuple[int, int] | None = None) -> Strategy:
    """A fresh strategy for one exploration; ``DetschedUsageError`` for an unknown name, a plugin's
    strategy that lacks part of the protocol, or a search option (``SEARCH_OPTIONS``) for a
    strategy without it."""
    factories = strategy_factories()
    try:
        factory = factories[name]
    except KeyError:
        raise DetschedUsageError(
            f"unknown strategy {name!r}; choose one of: {', '.join(sorted(factories))}"
        ) from None
    given = {"preemption_bound": preemption_bound, "delay_bound": delay_bound, "shard": shard}
    search = {option: value for option, value in given.items() if value is not None}
    for option in search:
        what, takers = SEARCH_OPTIONS[option]
        if factory not in takers:
            names = " and ".join(repr(taker.name) for taker in takers)
            raise DetschedUsageError(f"{what} is for {'strategies' if len(takers) > 1 else 'strategy'} {names}, not {name!r}")
    try:
        strategy = factory(seed=seed, depth=depth, **search)
    except ValueError as exc:
        raise DetschedUsageError(str(exc)) from None
    missing = [method for method in ("calibrate", "new_execution", "next_task", "next_data")
               if not callable(getattr(strategy, method, None))]
    if missing:
        lacks = ", ".join(f"{method}()" for method in missing)
        raise DetschedUsageError(f"strategy {name!r} ({type(strategy).__qualname__}) lacks {lacks}; "
                                 "see detsched.strategies.Strategy for the methods a strategy implements")
    return strategy
