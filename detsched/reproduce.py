"""``@detsched.reproduce('ds3:...')``: make a test replay exactly one recorded schedule.

The pytest plugin prints this decorator under every failure it finds. A decorated test runs once,
under that schedule, instead of exploring: the failure comes back on every run until the code is
fixed, and then the test passes (or says the schedule no longer applies). Remove it once fixed.
"""

from __future__ import annotations

from typing import Callable, TypeVar

from detsched._explore.explorer import load_schedule
from detsched.schedule import Schedule

#: Attribute under which the decorated function carries its ``Schedule``.
ATTRIBUTE = "_detsched_reproduce"

F = TypeVar("F", bound=Callable)


def reproduce(schedule: str | Schedule) -> Callable[[F], F]:
    """Replay ``schedule`` when the pytest plugin runs the decorated test. A corrupt or truncated
    string fails here, at import, where it was pasted."""
    parsed = load_schedule(schedule)

    def decorate(function: F) -> F:
        setattr(function, ATTRIBUTE, parsed)
        return function

    return decorate


def reproduced_schedule(function) -> Schedule | None:
    """The schedule ``@reproduce`` attached to ``function``, if any."""
    return getattr(function, ATTRIBUTE, None)
