"""What the systematic strategies (``dfs``, ``dpor``) share: the order they try a decision's
options in, and their preemption bound."""

from __future__ import annotations

from typing import Sequence


def check_bound(preemption_bound) -> int | None:
    """``preemption_bound`` if it is None or a non-negative integer; ``ValueError`` otherwise."""
    if preemption_bound is not None and (isinstance(preemption_bound, bool) or not isinstance(preemption_bound, int)
                                         or preemption_bound < 0):
        raise ValueError(f"preemption bound must be a non-negative integer (or 'iterative' for explore), "
                         f"got {preemption_bound!r}")
    return preemption_bound


def options_in_order(runnable: Sequence[int], current: int | None) -> tuple[tuple[int, ...], int | None]:
    """A decision's options, default first (the current thread when it can go on, else the
    lowest-numbered one), then by thread id; and the current thread if it can go on."""
    if current not in runnable:
        current = None
    default = current if current is not None else runnable[0]
    return (default, *(tid for tid in runnable if tid != default)), current


def preempts(current: int | None, option: int) -> bool:
    """Whether running ``option`` is a switch away from a thread that could go on."""
    return current is not None and option != current


def within_bound(bound: int | None, current: int | None, preemptions_before: int, option: int) -> bool:
    """Whether taking ``option`` at a decision reached after ``preemptions_before`` preemptions keeps
    the schedule within ``bound`` (None: no bound)."""
    return not preempts(current, option) or bound is None or preemptions_before < bound
