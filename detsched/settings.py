"""Settings: the default of every exploration option and the check of every value, written once and
used by ``detsched.explore``/``replay``, the ``detsched`` CLI and the pytest plugin.

Two kinds of check, because values arrive two ways. Text from a command line or an ini file is
parsed (``parse_runs("200")``) and a bad value raises ``ValueError`` with the reason, which each
front end prefixes with where the value came from. Values passed in Python (``explore(runs=0)``)
must already have the right type, and a bad one raises ``DetschedUsageError`` naming the argument.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from detsched.errors import DetschedUsageError

#: Runs of one exploration from Python and the CLI.
RUNS = 1000
#: Largest ``runs`` accepted; more is almost certainly a typo.
MAX_RUNS = 10**9
STRATEGY = "pct"
#: PCT's bug depth: how many ordering constraints a bug needs (1-5 is typical).
DEPTH = 3
MAX_DEPTH = 100
#: Scheduling steps one run may take before it ends as a livelock or a step-limit failure.
MAX_STEPS = 100_000
SEED = 0
#: Seconds a thread may run without reaching a scheduling point before the watchdog reports it as
#: blocked outside detsched's control. Not Final: tests lower it.
BLOCKED_AFTER = 10.0
#: Preemption models: where a run may switch threads besides synchronisation (``preemption=``).
PREEMPTION_MODELS = ("free-threaded", "gil")


# --------------------------------------------------------------------------- text (CLI, ini, marker)

def parse_preemption(value) -> str:
    """A preemption model's name; ``ValueError`` otherwise."""
    if value not in PREEMPTION_MODELS:
        raise ValueError(f"expected one of {', '.join(PREEMPTION_MODELS)}, got {value!r}")
    return value


def parse_integer(value) -> int:
    """An integer from text (or an int); ``ValueError`` otherwise."""
    if isinstance(value, bool):
        raise ValueError(f"expected an integer, got {value!r}")
    try:
        return int(value)
    except (TypeError, ValueError):
        raise ValueError(f"expected an integer, got {value!r}") from None


def parse_positive(value) -> int:
    number = parse_integer(value)
    if number < 1:
        raise ValueError(f"must be at least 1, got {number}")
    return number


def parse_runs(value) -> int:
    number = parse_positive(value)
    if number > MAX_RUNS:
        raise ValueError(f"at most {MAX_RUNS} runs, got {number}")
    return number


#: A preemption bound that grows: 0, 1, 2... in turn, until the runs are spent.
ITERATIVE = "iterative"


def parse_bound(value) -> int | str:
    """A bound that may be 0 (``--preemption-bound 0``: no preemption at all), or ``iterative``."""
    if value == ITERATIVE:
        return ITERATIVE
    return parse_non_negative(value)


def parse_non_negative(value) -> int:
    """An integer, at least 0 (``--delay-bound 0``: the round-robin schedule alone)."""
    number = parse_integer(value)
    if number < 0:
        raise ValueError(f"must be at least 0, got {number}")
    return number


def parse_time_budget(value) -> float:
    """Wall seconds an exploration may take: a positive number."""
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"expected a number of seconds, got {value!r}") from None
    if not seconds > 0 or seconds == float("inf"):
        raise ValueError(f"must be a positive number of seconds, got {value!r}")
    return seconds


def check_time_budget(value) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise DetschedUsageError(f"time_budget must be a number of seconds, got {value!r}")
    try:
        parse_time_budget(value)
    except ValueError as exc:
        raise DetschedUsageError(f"time_budget {exc}") from None


def parse_depth(value) -> int:
    number = parse_positive(value)
    if number > MAX_DEPTH:
        raise ValueError(f"PCT depth is the number of ordering constraints a bug needs (1-5 is typical), got {number}")
    return number


# --------------------------------------------------------------------------- Python arguments

def check_exploration(*, runs: int, depth: int, max_steps: int) -> None:
    """``DetschedUsageError`` naming the first argument of ``explore`` that is not a count in range."""
    for name, value, most in (("runs", runs, MAX_RUNS), ("depth", depth, MAX_DEPTH), ("max_steps", max_steps, None)):
        check_count(name, value, most)


def check_count(name: str, value, most: int | None = None) -> None:
    # True is an int to Python, but never a count anyone meant
    if isinstance(value, bool) or not isinstance(value, int) or value < 1 or (most and value > most):
        wanted = f"an integer from 1 to {most}" if most else "a positive integer"
        raise DetschedUsageError(f"{name} must be {wanted}, got {value!r}{' (a bool)' * isinstance(value, bool)}")


def check_preemption(preemption: str | None, preempt_writes: bool | None) -> bool:
    """Whether stores are scheduling points, from the preemption model (``"gil"``: no, as GIL
    CPython does not switch between two statements with no call; ``"free-threaded"``: yes) or from
    ``preempt_writes``; the default is free-threaded."""
    if preemption is None:
        return True if preempt_writes is None else preempt_writes
    if preemption not in PREEMPTION_MODELS:
        raise DetschedUsageError(f"preemption must be one of {', '.join(map(repr, PREEMPTION_MODELS))}, "
                                 f"got {preemption!r}")
    writes = preemption == "free-threaded"
    if preempt_writes is not None and preempt_writes != writes:
        raise DetschedUsageError(f"preemption={preemption!r} and preempt_writes={preempt_writes!r} disagree; "
                                 "pass one of them")
    return writes


def seed_from_environment(seed: int) -> int:
    """``DETSCHED_SEED`` overrides the seed, so a CI log's seed can be reused without editing code."""
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise DetschedUsageError(f"seed must be an integer, got {seed!r}{' (a bool)' * isinstance(seed, bool)}")
    text = os.environ.get("DETSCHED_SEED")
    if text is None:
        return seed
    try:
        return int(text)
    except ValueError:
        raise DetschedUsageError(f"invalid DETSCHED_SEED {text!r}: expected an integer") from None


@dataclass(frozen=True)
class Limits:
    """Bounds every run of one exploration or replay keeps to."""

    #: Scheduling steps a run may take (see ``MAX_STEPS``).
    max_steps: int = MAX_STEPS
    #: Seconds without a scheduling point before the watchdog reports a thread (see ``BLOCKED_AFTER``).
    blocked_after: float = BLOCKED_AFTER

    @classmethod
    def of(cls, max_steps: int, blocked_after: float | None) -> Limits:
        """The limits for these arguments; ``blocked_after=None`` means ``BLOCKED_AFTER`` as it is now."""
        return cls(max_steps, BLOCKED_AFTER if blocked_after is None else blocked_after)
