"""Random walk: at every decision, pick a runnable thread uniformly at random."""

from __future__ import annotations

import random
from typing import Sequence


class RandomWalk:
    name = "random"

    def __init__(self, *, seed: int, depth: int = 0):
        self.seed = seed
        self.rng = random.Random()

    def calibrate(self, decisions: int) -> None:
        pass

    def new_execution(self, run_index: int) -> None:
        # Seeding from a string hashes it with SHA-512: the same on every machine and process,
        # unaffected by PYTHONHASHSEED.
        self.rng.seed(f"random/{self.seed}/{run_index}")

    def next_task(self, runnable: Sequence[int], current: int | None, *, yielding: bool,
                  at: tuple[int, int] = (0, 0)) -> int:
        return runnable[self.rng.randrange(len(runnable))]

    def next_data(self, bound: int, *, at: tuple[int, int] = (0, 0)) -> int:
        return self.rng.randrange(bound)
