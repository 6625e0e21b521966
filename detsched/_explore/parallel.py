"""One exploration spread over worker processes (``detsched run --jobs N``).

Run ``i`` of a sampling strategy (``pct``, ``random``) depends only on the seed and ``i``, so the runs
are cut into consecutive slices that workers explore in any order. The report is the one a single
process makes: the first failing run *by index* (not by arrival) is explored again in this process,
which shrinks and explains it, so the output is the same for every N. Slices after a failing one
are cancelled; slices before it still run, since an earlier failure wins.

A ``dfs`` search is split by its tree: shard ``i`` of ``N`` searches the groups of schedules (by
their first deviation from the default) whose depth-first ordinal is ``i`` modulo ``N``
(``DepthFirst``). The first failure in depth-first order is then the earliest (group, schedule) any
shard found, and it is replayed from its positions, shrunk and explained here: again the same output
for every N -- as long as the search ends within its runs. Under a run budget that ends first, the
shards spend it together, and which schedules ran depends on N.

A ``dpor`` search is not split: what one part of its tree finds adds schedules to other parts. It
stays in this process, and workers search its parts before their turn comes (``_share_a_search``).

This process makes the warm-up run one process would make first, so that what it touched outside
control -- threads already running here, which a worker does not have -- is named; what the
workers' runs touched is added in the order one process would have made those runs (``Escapes``).
"""

from __future__ import annotations

import dataclasses
import itertools
import multiprocessing
import os
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

from detsched import settings
from detsched._core.clock import real_monotonic
from detsched._explore.explorer import Escapes, Runner, SearchPart, explore, report_of_run, scan, search_part
from detsched._report.failure import Report
from detsched.errors import DetschedUsageError
from detsched.strategies import PartialOrder, make_strategy
from detsched.strategies.dpor import Part, Subtree
from detsched.strategies.registry import SEARCH_OPTIONS

#: Strategies whose runs are independent of each other, so that slices of them can run anywhere.
SPLITTABLE = ("pct", "random")
#: Strategies whose search tree is split between the jobs.
TREE_SPLIT = ("dfs", "dpor")
#: Slices per worker: enough that a worker which finishes early takes another, few enough that
#: each slice's warm-up run costs little.
SLICES_PER_JOB = 4
#: Schedules a worker runs of one part of a ``dpor`` search before it reports back: enough that
#: sending the part out costs little, few enough that a search deep in one part soon shares it.
PART_RUNS = 32
#: Searched parts of a ``dpor`` search kept for their turn, per job.
KEPT_PER_JOB = 16


def explore_in_parallel(target: str, jobs: int, *, runs: int, strategy: str, **options) -> Report:
    """``explore(target, runs=runs, strategy=strategy, **options)`` with ``jobs`` worker processes."""
    # a bound the strategy does not take is refused here, as explore() would (an iterative bound
    # starts at 0)
    make_strategy(strategy, seed=0, depth=options.get("depth", settings.DEPTH),
                  **{name: 0 if options[name] == settings.ITERATIVE else options[name]
                     for name in SEARCH_OPTIONS if options.get(name) is not None})
    if strategy in TREE_SPLIT and options.get("preemption_bound") == settings.ITERATIVE:
        raise DetschedUsageError("--jobs does not split an iterative search (--preemption-bound iterative): give "
                                 "a fixed bound, or run it without --jobs")
    if strategy == "dfs":
        return _search_in_parallel(target, jobs, runs=runs, **options)
    if strategy == "dpor":
        return _share_a_search(target, jobs, runs=runs, **options)
    if strategy not in SPLITTABLE:
        raise DetschedUsageError(
            f"--jobs splits the runs of {' and '.join(SPLITTABLE)} and the search tree of {' and '.join(TREE_SPLIT)}; "
            f"the runs of a {strategy} exploration depend on the runs before them: run it without --jobs")
    started = real_monotonic()
    escapes = _warm_up(target, options)
    if escapes is None:
        return explore(target, runs=runs, strategy=strategy, **options)
    size = max(1, -(-runs // (jobs * SLICES_PER_JOB)))
    slices = [(start, min(size, runs - start)) for start in range(0, runs, size)]
    failing = None
    with _pool(jobs) as pool:
        pending = {pool.submit(scan, _portable(target), first_run=start, runs=count, strategy=strategy,
                               **_explored(options)): start for start, count in slices}
        while pending:
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                del pending[future]
                found = future.result()
                escapes.merge(found.escapes)
                if found.failing is not None and (failing is None or found.failing < failing):
                    failing = found.failing
            if failing is not None:
                for future, start in list(pending.items()):
                    if start > failing and future.cancel():
                        del pending[future]
    if failing is None:
        return _passed(runs, strategy, options, started, uncontrolled=escapes.texts())
    report = explore(target, first_run=failing, runs=1, strategy=strategy, **options)
    return dataclasses.replace(report, runs=failing + 1, elapsed=real_monotonic() - started,
                               uncontrolled=escapes.texts(through=(failing,)))


def _search_in_parallel(target: str, jobs: int, *, runs: int, **options) -> Report:
    """A ``dfs`` search with its tree split into ``jobs`` shards, one per worker process."""
    started = real_monotonic()
    escapes = _warm_up(target, options)
    if escapes is None:
        return explore(target, runs=runs, strategy="dfs", **options)
    shared_runs = _CONTEXT.Value("q", jobs)  # every shard's first run
    first_failing = _CONTEXT.Value("q", _NONE_YET)
    with _pool(jobs, initializer=_share, initargs=(shared_runs, first_failing, runs)) as pool:
        parts = list(pool.map(_search_shard, [(_portable(target), (shard, jobs), dict(options, runs=runs))
                                              for shard in range(jobs)]))
    ran = sum(part.runs for part in parts)
    failures = [part.failing for part in parts if part.failing is not None]
    sizes = {ordinal: size for part in parts for ordinal, size in part.sizes.items()}
    for part in parts:
        escapes.merge(part.escapes)
    if not failures:
        if all(part.exhausted for part in parts) and not any(part.diverged for part in parts):
            # every group searched by its shard: the schedules one process would have run
            return _passed(sum(sizes.values()), "dfs", options, started, exhausted=True,
                           bound=options.get("preemption_bound"), delays=options.get("delay_bound"),
                           uncontrolled=escapes.texts())
        return _passed(ran, "dfs", options, started, uncontrolled=escapes.texts())
    group, leaf, positions = min(failures)
    # The failure's place in depth-first order, when every group before it was searched to the end.
    earlier = [sizes.get(ordinal) for ordinal in range(group)]
    index = sum(earlier) + leaf if None not in earlier else ran - 1
    report = report_of_run(target, positions, run_index=index, strategy="dfs", **_explored(options))
    if report is None:  # it did not fail again: search for it here, in order, as one process would
        return explore(target, runs=runs, strategy="dfs", **options)
    return dataclasses.replace(report, elapsed=real_monotonic() - started,
                               uncontrolled=escapes.texts(through=(group, leaf)))


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


def _share_a_search(target: str, jobs: int, *, runs: int, preemption_bound: int | None = None,
                    **options) -> Report:
    """A ``dpor`` search run in this process, with its parts searched by ``jobs`` worker processes."""
    started = real_monotonic()
    escapes = _warm_up(target, options)
    if escapes is None:
        return explore(target, runs=runs, strategy="dpor", preemption_bound=preemption_bound, **options)
    search = PartialOrder(preemption_bound=preemption_bound)
    stop = _CONTEXT.Value("b", 0)
    searched: dict[tuple, _Searched] = {}  # Subtree.key -> what a worker found there
    sent: dict = {}  # future -> the Subtree.key it searches
    ran, failing, in_one_process = 0, None, False
    with _pool(jobs, initializer=_start_part_worker,
               initargs=(_portable(target), _explored(options), preemption_bound, stop)) as pool:
        try:
            while not search.finished and ran < runs and failing is None and not in_one_process:
                head = searched.pop(search.next_subtree().key, None)
                if head is None:
                    _send_ahead(search, searched, sent, pool, jobs, runs - ran)
                    finished, _ = wait(sent, return_when=FIRST_COMPLETED)
                    searched.update((sent.pop(future), future.result()) for future in finished)
                    continue
                if head.warm_up_failed or head.part.diverged:
                    # One process's search reports these (the warm-up's failure, or a program whose
                    # decisions changed under a replayed prefix) as it always does.
                    in_one_process = True
                    continue
                escapes.merge(head.escapes, runs_before=ran)
                left = runs - ran
                if head.failing is not None and head.failing[0] < left:
                    failing = (ran + head.failing[0], head.failing[1])
                elif head.part.schedules > left:
                    ran = runs  # the budget ends inside this part
                else:
                    search.merge(head.part)
                    ran += head.part.schedules
        finally:  # workers still searching stop after the run they are in
            stop.value = 1
            for future in sent:
                future.cancel()
    options = dict(options, preemption_bound=preemption_bound)
    if in_one_process:
        return explore(target, runs=runs, strategy="dpor", **options)
    if failing is None:
        exhausted = search.finished
        return _passed(ran if exhausted else runs, "dpor", options, started, exhausted=exhausted,
                       bound=preemption_bound, uncontrolled=escapes.texts(through=(runs - 1,)))
    index, positions = failing
    report = report_of_run(target, positions, run_index=index, strategy="dpor", **_explored(options))
    if report is None:  # it did not fail again: search for it here, in order, as one process would
        return explore(target, runs=runs, strategy="dpor", **options)
    return dataclasses.replace(report, elapsed=real_monotonic() - started,
                               uncontrolled=escapes.texts(through=(index,)))


def _send_ahead(search: PartialOrder, searched: dict, sent: dict, pool: ProcessPoolExecutor, jobs: int,
                runs: int) -> None:
    """Give every idle worker the first part of ``search`` to come that no worker searched or is
    searching."""
    def wanted(key: tuple) -> bool:
        return key not in searched and key not in sent.values()

    coming = search.forecast(lambda key: _usable(searched.get(key)), wanted)
    for subtree in itertools.islice(coming, jobs - len(sent)):
        sent[pool.submit(_search_part, subtree, min(PART_RUNS, runs))] = subtree.key
    while len(searched) > KEPT_PER_JOB * jobs:  # the oldest are likely for parts that no longer come
        del searched[next(iter(searched))]


def _usable(found: _Searched | None) -> Part | None:
    """What a part found, to forecast from: nothing if it ends the search or ran none."""
    if found is None or found.part is None or found.failing is not None or found.part.diverged:
        return None
    return found.part


@dataclasses.dataclass(frozen=True)
class _Searched:
    """What a worker found searching one part of a ``dpor`` search."""

    part: Part | None
    failing: tuple[int, tuple] | None = None  # (its runs before the first failing one, that one's positions)
    escapes: Escapes = dataclasses.field(default_factory=Escapes)  # of its runs, by index in the part
    warm_up_failed: bool = False


# Set in each worker process by ``_start_part_worker``: (target, options, preemption bound, stop
# flag), and its Runner once it made one.
_part_worker: tuple = ()
_runner: Runner | None = None


def _start_part_worker(target: str, options: dict, preemption_bound: int | None, stop) -> None:
    global _part_worker, _runner
    _part_worker, _runner = (target, options, preemption_bound, stop), None


def _search_part(subtree: Subtree, runs: int) -> _Searched:
    """At most ``runs`` schedules of ``subtree``, up to the first failing one (``PartialOrder.below``)."""
    global _runner
    target, options, preemption_bound, stop = _part_worker
    if _runner is None:
        _runner = Runner(target, **options)
    if _runner.warm_up.failure is not None:
        return _Searched(None, warm_up_failed=True)
    search = PartialOrder.below(subtree, preemption_bound=preemption_bound)
    failing, escapes = None, Escapes()
    for run in range(runs):
        if stop.value:
            break
        result = _runner.run(search, run)
        escapes.add(result, (run,))
        if result.failure is not None:
            failing = (run, tuple(result.positions))
            break
        if search.diverged or search.exhausted:
            break
    return _Searched(search.part(), failing, escapes)


def _warm_up(target: str, options: dict) -> Escapes | None:
    """The warm-up run one process makes before exploring, made here: what it touched outside
    control (threads already running in this process, which a worker does not have), or None if
    it failed (one process's exploration then reports it as it does)."""
    warm_up = Runner(target, **_explored(options)).warm_up
    if warm_up.failure is not None:
        return None
    escapes = Escapes()
    escapes.add(warm_up)
    return escapes


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
