"""Virtual time: the clock every controlled thread sees. Work takes a little time (``STEP_TIME``
per scheduling step), and the clock jumps to the next deadline when every thread waits on time (like
trio's autojump clock), so a test that sleeps for an hour finishes at once, a test that measures
the time some work took sees it take some, and timing never depends on the machine."""

from __future__ import annotations

import time as _time

#: Real clocks, captured before any patching, for detsched's own watchdog and progress lines.
real_monotonic = _time.monotonic
real_sleep = _time.sleep

#: Where virtual time starts in every run. Fixed so runs are identical on every machine.
MONOTONIC_START = 1000.0
WALL_START = 1_700_000_000.0  # 2023-11-14T22:13:20Z
#: Virtual seconds one scheduling step takes: about what a few lines of Python take. Small enough
#: that a timed wait outlives any realistic amount of work done meanwhile, large enough that
#: ``perf_counter()`` differences are never 0 and that time passes in loops that poll it.
STEP_TIME = 1e-6


class VirtualClock:
    """Seconds since the run started; only the scheduler advances it."""

    def __init__(self) -> None:
        self.elapsed = 0.0

    def monotonic(self) -> float:
        return MONOTONIC_START + self.elapsed

    def wall(self) -> float:
        return WALL_START + self.elapsed

    def deadline(self, timeout: float | None) -> float | None:
        """The monotonic deadline of a wait of ``timeout`` seconds (None: no deadline)."""
        if timeout is None:
            return None
        return self.monotonic() + max(timeout, 0.0)

    def tick(self) -> None:
        """One scheduling step's worth of work."""
        self.elapsed += STEP_TIME

    def advance_to(self, deadline: float) -> None:
        # Invariant: time never goes backwards.
        self.elapsed = max(self.elapsed, deadline - MONOTONIC_START)
