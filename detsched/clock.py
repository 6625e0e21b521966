"""Virtual time: the clock every controlled thread sees. It stands still while any thread can run
and jumps to the next deadline when every thread waits on time (like trio's autojump clock), so a
test that sleeps for an hour finishes at once and its timing never depends on the machine."""

from __future__ import annotations

import time as _time

#: Real clocks, captured before any patching, for detsched's own watchdog and progress lines.
real_monotonic = _time.monotonic
real_sleep = _time.sleep

#: Where virtual time starts in every run. Fixed so runs are identical on every machine.
MONOTONIC_START = 1000.0
WALL_START = 1_700_000_000.0  # 2023-11-14T22:13:20Z


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

    def advance_to(self, deadline: float) -> None:
        # Invariant: time never goes backwards.
        self.elapsed = max(self.elapsed, deadline - MONOTONIC_START)
