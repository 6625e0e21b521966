"""Replay: follow a recorded schedule's deviations, and the default policy everywhere else."""

from __future__ import annotations

from typing import Sequence

from detsched.errors import ReplayDiverged
from detsched.schedule import Schedule, default_task


class Replay:
    """Replays ``schedule``. ``strict`` raises ``ReplayDiverged`` when a recorded choice is not
    available; otherwise (while shrinking) it falls back to the default policy and goes on."""

    name = "replay"

    def __init__(self, schedule: Schedule, *, strict: bool = True):
        self.deviations = dict(schedule.deviations)
        self.strict = strict
        self.decisions = 0

    def calibrate(self, decisions: int) -> None:
        pass

    def new_execution(self, run_index: int) -> None:
        self.decisions = 0

    def _recorded(self, options: Sequence[int], default: int, what: str) -> int:
        value = self.deviations.get(self.decisions, default)
        self.decisions += 1
        if value in options:
            return value
        if self.strict:
            raise ReplayDiverged(self.decisions - 1, f"the schedule chose {what}{value}, but the choices were "
                                 + ", ".join(f"{what}{o}" for o in options))
        return default

    def next_task(self, runnable: Sequence[int], current: int | None, *, yielding: bool,
                  at: tuple[int, int] = (0, 0)) -> int:
        return self._recorded(runnable, default_task(runnable, current), "T")

    def next_data(self, bound: int, *, at: tuple[int, int] = (0, 0)) -> int:
        return self._recorded(range(bound), 0, "#")


class PositionReplay:
    """Makes the recorded deviations at the same *positions* -- (thread, its n-th scheduling point)
    -- rather than at the same decision index. Dropping one deviation shifts every later decision
    index but few positions, so the shrinker uses this to try candidates; it never diverges."""

    name = "replay"

    def __init__(self, positions):
        self.positions = dict(positions)

    def calibrate(self, decisions: int) -> None:
        pass

    def new_execution(self, run_index: int) -> None:
        pass

    def next_task(self, runnable: Sequence[int], current: int | None, *, yielding: bool,
                  at: tuple[int, int] = (0, 0)) -> int:
        wanted = self.positions.get(at)
        return wanted if wanted in runnable else default_task(runnable, current)

    def next_data(self, bound: int, *, at: tuple[int, int] = (0, 0)) -> int:
        wanted = self.positions.get(at, 0)
        return wanted if 0 <= wanted < bound else 0
