"""One exploration spread over worker processes (``detsched run --jobs N``).

Run ``i`` of a sampling strategy (``pct``, ``random``) depends only on the seed and ``i``, so the runs
are cut into consecutive slices that workers explore in any order. The report is the one a single
process makes: the first failing run *by index* (not by arrival) is explored again in this process,
which shrinks and explains it, so the output is the same for every N. Slices after a failing one
are cancelled; slices before it still run, since an earlier failure wins.

A ``dfs`` search is split by its tree: shard ``i`` of ``N`` searches the groups of schedules (by
their first deviation from the default) whose depth-first ordinal is ``i`` modulo ``N``
(``DepthFirst``). The first failure in depth-first order is then the earliest (group, schedule) any
shard found, and it is replayed from its
positions, shrunk and explained here: again the same output for every N -- as long as the search
ends within its runs. Under a run budget that ends first, the shards spend it together, and which
schedules ran depends on N. A ``dpor`` search is not split: what one part of its tree finds adds
schedules to other parts.
"""

from __future__ import annotations

import dataclasses
import multiprocessing
import os
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

from detsched import settings
from detsched._core.clock import real_monotonic
from detsched._explore.explorer import SearchPart, explore, first_failing_run, report_of_run, search_part
from detsched._report.failure import Report
from detsched.errors import DetschedUsageError
from detsched.strategies import make_strategy
from detsched.strategies.registry import SEARCH_OPTIONS

#: Strategies whose runs are independent of each other, so that slices of them can run anywhere.
SPLITTABLE = ("pct", "random")
#: Strategies whose search tree is split between the jobs.
TREE_SPLIT = ("dfs",)
#: Slices per worker: enough that a worker which finishes early takes another, few enough that
#: each slice's warm-up run costs little.
SLICES_PER_JOB = 4


def explore_in_parallel(target: str, jobs: int, *, runs: int, strategy: str, **options) -> Report:
    """``explore(target, runs=runs, strategy=strategy, **options)`` with ``jobs`` worker processes."""
    # a bound the strategy does not take is refused here, as explore() would (an iterative bound
    # starts at 0)
    make_strategy(strategy, seed=0, depth=options.get("depth", settings.DEPTH),
                  **{name: 0 if options[name] == settings.ITERATIVE else options[name]
                     for name in SEARCH_OPTIONS if options.get(name) is not None})
    if strategy in TREE_SPLIT:
        return _search_in_parallel(target, jobs, runs=runs, **options)
    if strategy not in SPLITTABLE:
        raise DetschedUsageError(
            f"--jobs splits the runs of {' and '.join(SPLITTABLE)} and the search tree of {' and '.join(TREE_SPLIT)}; "
            f"the runs of a {strategy} exploration depend on the runs before them: run it without --jobs")
    started = real_monotonic()
    size = max(1, -(-runs // (jobs * SLICES_PER_JOB)))
    slices = [(start, min(size, runs - start)) for start in range(0, runs, size)]
    failing = None
    with _pool(jobs) as pool:
        pending = {pool.submit(first_failing_run, _portable(target), first_run=start, runs=count,
                               strategy=strategy, **_explored(options)): start for start, count in slices}
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
        return _passed(runs, strategy, options, started)
    report = explore(target, first_run=failing, runs=1, strategy=strategy, **options)
    return dataclasses.replace(report, runs=failing + 1, elapsed=real_monotonic() - started)


def _search_in_parallel(target: str, jobs: int, *, runs: int, **options) -> Report:
    """A ``dfs`` search with its tree split into ``jobs`` shards, one per worker process."""
    started = real_monotonic()
    if options.get("preemption_bound") == settings.ITERATIVE:
        raise DetschedUsageError("--jobs does not split an iterative search (--preemption-bound iterative): give "
                                 "a fixed bound, or run it without --jobs")
    shared_runs = _CONTEXT.Value("q", jobs)  # every shard's first run
    first_failing = _CONTEXT.Value("q", _NONE_YET)
    with _pool(jobs, initializer=_share, initargs=(shared_runs, first_failing, runs)) as pool:
        parts = list(pool.map(_search_shard, [(_portable(target), (shard, jobs), dict(options, runs=runs))
                                              for shard in range(jobs)]))
    ran = sum(part.runs for part in parts)
    failures = [part.failing for part in parts if part.failing is not None]
    sizes = {ordinal: size for part in parts for ordinal, size in part.sizes.items()}
    if not failures:
        if all(part.exhausted for part in parts) and not any(part.diverged for part in parts):
            # every group searched by its shard: the schedules one process would have run
            return _passed(sum(sizes.values()), "dfs", options, started, exhausted=True,
                           bound=options.get("preemption_bound"), delays=options.get("delay_bound"))
        return _passed(ran, "dfs", options, started)
    group, leaf, positions = min(failures)
    # The failure's place in depth-first order, when every group before it was searched to the end.
    earlier = [sizes.get(ordinal) for ordinal in range(group)]
    index = sum(earlier) + leaf if None not in earlier else ran - 1
    report = report_of_run(target, positions, run_index=index, strategy="dfs", **_explored(options))
    if report is None:  # it did not fail again: search for it here, in order, as one process would
        return explore(target, runs=runs, strategy="dfs", **options)
    return dataclasses.replace(report, elapsed=real_monotonic() - started)


#: ``first_failing`` before any shard failed.
_NONE_YET = 2 ** 62
# Set in each worker process by ``_share``: the runs every shard ran so far, the lowest group
# ordinal a shard failed in, and the exploration's runs.
_shared: tuple = ()


def _share(shared_runs, first_failing, runs: int) -> None:
    global _shared
    _shared = (shared_runs, first_failing, runs)


def _search_shard(work) -> SearchPart:
    target, shard, options = work
    part = search_part(target, shard=shard, keep_going=_keep_going, **options)
    if part.failing is not None:
        _, first_failing, _ = _shared
        with first_failing.get_lock():
            first_failing.value = min(first_failing.value, part.failing[0])
    return part


def _keep_going(group: int) -> bool:
    """Whether a shard runs another schedule (and counts it): the runs are not spent, and no shard
    failed in an earlier group (whose failure comes first whatever this shard finds)."""
    shared_runs, first_failing, runs = _shared
    if group > first_failing.value:
        return False
    with shared_runs.get_lock():
        shared_runs.value += 1
        return shared_runs.value <= runs


def _passed(runs: int, strategy: str, options: dict, started: float, **outcome) -> Report:
    seed = settings.seed_from_environment(options.get("seed", settings.SEED))
    return Report(None, runs, strategy, seed, real_monotonic() - started, **outcome)


def _explored(options: dict) -> dict:
    """``options`` without those of a search (for the functions that replay or sample)."""
    return {name: value for name, value in options.items() if name not in SEARCH_OPTIONS}


# fork shares the loaded target at no cost; spawn (where fork is missing) imports it again
_CONTEXT = multiprocessing.get_context("fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn")


def _pool(jobs: int, **kwargs) -> ProcessPoolExecutor:
    return ProcessPoolExecutor(jobs, mp_context=_CONTEXT, **kwargs)


def _portable(target: str) -> str:
    """A ``file.py::function`` target with an absolute path, so a spawned worker finds it too."""
    path, separator, rest = target.partition("::")
    return os.path.abspath(path) + separator + rest if separator else target
