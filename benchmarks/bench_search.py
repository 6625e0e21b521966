"""Benchmark: systematic search, dfs beside dpor.

For each program -- small tests written the way users write them, and the fixed twins of the bundled
examples -- explore with ``dfs`` and with ``dpor`` up to a budget of schedules, and print: schedules
run, whether the search finished (verified) or ran out of budget, schedules per second, and the
dpor/dfs schedule-count ratio ("<=" when dfs ran out of budget: the real ratio is smaller still).
Then the speed-up of ``--jobs 2`` over one process (target: at least 1.7x on two cores), best of
``--repeat`` batches, for a pct exploration of a passing example and for a whole dpor search, beside
the speed-up two independent explorations side by side get: what the machine itself allows.

    python benchmarks/bench_search.py [--budget N] [--parallel-runs N] [--repeat R]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import detsched  # noqa: E402
from detsched._explore.parallel import explore_in_parallel  # noqa: E402
from cover_bugs import run_all  # noqa: E402  (the sibling module of bug programs)

#: The schedules each search may run.
BUDGET = 5_000
#: Runs of the exploration timed with one process and with two.
PARALLEL_RUNS = 4_000
#: Schedules of the shared dpor search timed (worker_pool fixed has 7,656: the whole search).
DPOR_RUNS = 20_000
#: How much faster two worker processes must explore than one.
TARGET_SPEED_UP = 1.7


class Box:
    def __init__(self):
        self.value = 0
        self.log = []


def independent_counters(k=4):
    boxes = [Box(), Box()]

    def count(box):
        for _ in range(k):
            box.value = box.value + 1

    run_all(*(lambda box=box: count(box) for box in boxes))


def locked_counter(threads=3):
    box, lock = Box(), threading.Lock()

    def count():
        with lock:
            box.value = box.value + 1

    run_all(*([count] * threads))


def queue_hand_off():
    import queue

    jobs, box = queue.Queue(), Box()

    def consume():
        for _ in range(2):
            box.log.append(jobs.get())

    run_all(lambda: jobs.put(1), lambda: jobs.put(2), consume)


def condition_hand_off():
    condition, box = threading.Condition(), Box()

    def produce(n):
        with condition:
            box.log.append(n)
            condition.notify()

    def consume():
        with condition:
            while len(box.log) < 2:
                condition.wait()

    run_all(consume, lambda: produce(1), lambda: produce(2))


PROGRAMS = [("2 threads x 4 independent stores", independent_counters),
            ("3 threads, one lock", locked_counter),
            ("queue: 2 producers, 1 consumer", queue_hand_off),
            ("condition: 2 producers, 1 consumer", condition_hand_off)]
EXAMPLES = ["bank", "deadlock", "single_flight", "pipeline", "cancellation", "aio_cache", "aio_deadlock",
            "aio_leak", "producer_consumer", "fan_out"]


def search(target, strategy: str, budget: int):
    started = time.perf_counter()
    report = detsched.explore(target, strategy=strategy, runs=budget)
    return report, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=int, default=BUDGET)
    parser.add_argument("--parallel-runs", type=int, default=PARALLEL_RUNS)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    targets = PROGRAMS + [(f"examples/{name}.py::fixed", os.path.join(ROOT, "examples", f"{name}.py") + "::fixed")
                          for name in EXAMPLES]
    print(f"budget {args.budget} schedules per search; '+' marks a search that ran out of budget")
    print(f"{'program':40} {'dfs':>8} {'/s':>6} {'dpor':>8} {'/s':>6} {'dpor/dfs':>9}")
    for name, target in targets:
        row = []
        counts = {}
        for strategy in ("dfs", "dpor"):
            report, elapsed = search(target, strategy, args.budget)
            if report.failure is not None:
                raise SystemExit(f"{name}: {strategy} found a failure in a correct program: {report.failure.message}")
            counts[strategy] = report.runs
            mark = "" if report.exhausted else "+"
            row += [f"{report.runs}{mark}", f"{report.runs / elapsed:.0f}"]
        if row[2].endswith("+"):
            ratio = "unknown"  # neither search finished
        else:
            ratio = ("<= " if row[0].endswith("+") else "") + f"{counts['dpor'] / counts['dfs']:.3f}"
        print(f"{name:40} {row[0]:>8} {row[1]:>6} {row[2]:>8} {row[3]:>6} {ratio:>9}")
    parallel_speed_up(args.parallel_runs, args.repeat)


def parallel_speed_up(runs: int, repeat: int) -> None:
    """``--jobs 2`` against one process, for ``pct`` slices and for a shared ``dpor`` search, beside
    what two independent explorations side by side get from the machine (its own ceiling)."""
    bank = os.path.join(ROOT, "examples", "bank.py") + "::fixed"
    pool = os.path.join(ROOT, "examples", "worker_pool.py") + "::fixed"
    timings = {"pct": ([], []), "dpor": ([], []), "side by side": ([], [])}
    for _ in range(repeat):  # alternating, so that load on the machine hits every pair alike
        for name, one, two in (
                ("pct", lambda: detsched.explore(bank, runs=runs),
                 lambda: explore_in_parallel(bank, 2, runs=runs, strategy="pct")),
                ("dpor", lambda: detsched.explore(pool, runs=DPOR_RUNS, strategy="dpor"),
                 lambda: explore_in_parallel(pool, 2, runs=DPOR_RUNS, strategy="dpor")),
                ("side by side", lambda: _explore_in_a_process(bank, runs, 1), lambda: _explore_in_a_process(bank, runs, 2))):
            for timed, run in zip(timings[name], (one, two)):
                started = time.perf_counter()
                run()
                timed.append(time.perf_counter() - started)
    print()
    for name, (one, two) in timings.items():
        one, two = min(one), min(two)
        if name == "side by side":
            print(f"two independent {runs}-run explorations side by side: {2 * one / two:.2f}x the runs/s of one "
                  f"({one:.2f} s alone, {two:.2f} s for both): the most two processes get from this machine")
            continue
        what = f"{runs} pct runs of bank fixed" if name == "pct" else "the dpor search of worker_pool fixed"
        speed_up = one / two
        verdict = "met" if speed_up >= TARGET_SPEED_UP else "NOT met"
        print(f"--jobs 2, {what}: {one:.2f} s in one process, {two:.2f} s in two: {speed_up:.2f}x "
              f"(target {TARGET_SPEED_UP}x: {verdict})")


def _explore_in_a_process(target: str, runs: int, copies: int) -> None:
    """``copies`` explorations of ``target`` at once, each in a process of its own."""
    command = [sys.executable, "-c", f"import detsched; detsched.explore({target!r}, runs={runs})"]
    for process in [subprocess.Popen(command) for _ in range(copies)]:
        if process.wait() != 0:
            raise SystemExit(f"exploring {target} in a process failed")


if __name__ == "__main__":
    main()
