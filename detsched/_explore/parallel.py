"""One exploration spread over worker processes (``detsched run --jobs N``).

Run ``i`` of a sampling strategy (``pct``, ``random``) depends only on the seed and ``i``, so the runs
are cut into consecutive slices that workers explore in any order. The report is the one a single
process makes: the first failing run *by index* (not by arrival) is explored again in this process,
which shrinks and explains it, so the output is the same for every N. Slices after a failing one
are cancelled; slices before it still run, since an earlier failure wins.

A systematic search (``dfs``, ``dpor``) walks one tree in order and is not split.
"""

from __future__ import annotations

import dataclasses
import multiprocessing
import os
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

from detsched import settings
from detsched._core.clock import real_monotonic
from detsched._explore.explorer import explore, first_failing_run
from detsched._report.failure import Report
from detsched.errors import DetschedUsageError

#: Strategies whose runs are independent of each other, so that slices of them can run anywhere.
SPLITTABLE = ("pct", "random")
#: Slices per worker: enough that a worker which finishes early takes another, few enough that
#: each slice's warm-up run costs little.
SLICES_PER_JOB = 4


def explore_in_parallel(target: str, jobs: int, *, runs: int, strategy: str, **options) -> Report:
    """``explore(target, runs=runs, strategy=strategy, **options)`` with ``jobs`` worker processes."""
    if strategy not in SPLITTABLE:
        raise DetschedUsageError(
            f"--jobs splits the runs of {' and '.join(SPLITTABLE)}, whose runs are independent; a {strategy} "
            "search walks one tree in order: run it without --jobs")
    started = real_monotonic()
    size = max(1, -(-runs // (jobs * SLICES_PER_JOB)))
    slices = [(start, min(size, runs - start)) for start in range(0, runs, size)]
    # fork shares the loaded target at no cost; spawn (where fork is missing) imports it again
    method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
    failing = None
    with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context(method)) as pool:
        pending = {pool.submit(first_failing_run, _portable(target), first_run=start, runs=count,
                               strategy=strategy, **options): start for start, count in slices}
        while pending:
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                del pending[future]
                index = future.result()
                if index is not None and (failing is None or index < failing):
                    failing = index
            if failing is not None:
                for future, start in list(pending.items()):
                    if start > failing and future.cancel():
                        del pending[future]
    if failing is None:
        seed = settings.seed_from_environment(options.get("seed", settings.SEED))
        return Report(None, runs, strategy, seed, real_monotonic() - started)
    report = explore(target, first_run=failing, runs=1, strategy=strategy, **options)
    return dataclasses.replace(report, runs=failing + 1, elapsed=real_monotonic() - started)


def _portable(target: str) -> str:
    """A ``file.py::function`` target with an absolute path, so a spawned worker finds it too."""
    path, separator, rest = target.partition("::")
    return os.path.abspath(path) + separator + rest if separator else target
