"""Strategies: who runs next. Each one is small, lives in its own file and is reached only through
the ``Strategy`` protocol, so the scheduler never depends on a concrete strategy."""

from detsched.strategies.cover import CoverageGuided as CoverageGuided
from detsched.strategies.dfs import DepthFirst as DepthFirst
from detsched.strategies.dpor import PartialOrder as PartialOrder
from detsched.strategies.pct import PCT as PCT
from detsched.strategies.protocol import Strategy as Strategy
from detsched.strategies.random_walk import RandomWalk as RandomWalk
from detsched.strategies.registry import (
    BUILTIN as BUILTIN,
    make_strategy as make_strategy,
    strategy_factories as strategy_factories,
)
from detsched.strategies.replay import PositionReplay as PositionReplay, Replay as Replay

__all__ = ["BUILTIN", "CoverageGuided", "DepthFirst", "PCT", "PartialOrder", "PositionReplay", "RandomWalk", "Replay", "Strategy", "make_strategy", "strategy_factories"]
