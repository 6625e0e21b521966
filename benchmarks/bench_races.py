"""Benchmark: what checking data races costs.

1. An attribute-heavy loop: two threads each run a loop of attribute reads and writes on objects of
   their own (``obj.total = obj.total + obj.step``), explored under the default policy with races
   checked and not; the ratio of the two run times (target: at most 3x).
2. Explorations per second of the 2-thread x 20 lock operations test of ``bench_explore.py``,
   races checked beside not.
3. Memory: the peak traced memory (``tracemalloc``) of one run making 1,000,000 accesses to
   10,000 objects, with races checked beside not; and the traced memory after every block of runs
   over ``--runs`` runs of a small racy-free test with races checked (target: flat).

    python benchmarks/bench_races.py [--repeat R] [--runs N]
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import threading
import time
import tracemalloc

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import detsched  # noqa: E402
from bench_explore import two_threads_with_locks  # noqa: E402

#: How many times slower than with races unchecked a run with races checked may be.
TARGET_RATIO = 3.0
#: Loop iterations per thread in the attribute-heavy test (3 accesses and a store each).
ITERATIONS = 2_000
#: Objects and accesses of the memory test.
OBJECTS, ACCESSES = 10_000, 1_000_000


class Cell:
    def __init__(self):
        self.total = 0
        self.step = 1


def attribute_heavy() -> None:
    def work():
        cell = Cell()
        for _ in range(ITERATIONS):
            cell.total = cell.total + cell.step

    workers = [threading.Thread(target=work) for _ in range(2)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()


def many_objects() -> None:
    cells = [Cell() for _ in range(OBJECTS)]
    for round_ in range(ACCESSES // (2 * OBJECTS)):
        for cell in cells:
            cell.total = cell.step


def best_seconds(action, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        action()
        best = min(best, time.perf_counter() - started)
    return best


def explore(test, runs: int, races: bool) -> None:
    report = detsched.explore(test, runs=runs, races=races, seed=1, max_steps=10**7)
    if report.failure is not None:
        raise SystemExit(f"the benchmark test failed under detsched: {report.failure}")


def peak_memory(races: bool) -> int:
    gc.collect()
    tracemalloc.start()
    explore(many_objects, 1, races)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak


def memory_over_runs(runs: int) -> list[int]:
    explore(two_threads_with_locks, 200, True)  # warm caches first
    gc.collect()
    tracemalloc.start()
    sizes = []
    for _ in range(5):
        explore(two_threads_with_locks, runs // 5, True)
        gc.collect()
        sizes.append(tracemalloc.get_traced_memory()[0])
    tracemalloc.stop()
    return sizes


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=3, help="timed batches; the best one counts")
    parser.add_argument("--runs", type=int, default=10_000, help="runs of the memory-over-runs check")
    args = parser.parse_args(argv)
    print(f"Python {sys.version.split()[0]}, {os.cpu_count()} CPUs; best of {args.repeat}")

    off = best_seconds(lambda: explore(attribute_heavy, 3, False), args.repeat) / 4  # + the warm-up run
    on = best_seconds(lambda: explore(attribute_heavy, 3, True), args.repeat) / 4
    verdict = "met" if on / off <= TARGET_RATIO else "NOT met"
    print(f"attribute-heavy loop (2 threads x {ITERATIONS} iterations): races off {off * 1e3:.1f} ms,"
          f" on {on * 1e3:.1f} ms per run: {on / off:.2f}x (target <= {TARGET_RATIO:g}x: {verdict})")

    runs = 500
    rates = {races: (runs + 1) / best_seconds(lambda races=races: explore(two_threads_with_locks, runs, races),
                                              args.repeat) for races in (False, True)}
    print(f"2 threads x 20 lock ops: {rates[False]:.0f} explorations/s races off, {rates[True]:.0f} races on"
          f" ({rates[True] / rates[False]:.2f}x)")

    off_peak, on_peak = peak_memory(False), peak_memory(True)
    print(f"one run, {ACCESSES:,} accesses to {OBJECTS:,} objects: peak {off_peak / 2**20:.1f} MiB races off,"
          f" {on_peak / 2**20:.1f} MiB on")
    sizes = memory_over_runs(args.runs)
    growth = sizes[-1] - sizes[0]
    print(f"{args.runs:,} runs with races on, traced memory after each fifth: "
          f"{', '.join(f'{size / 1024:.0f}' for size in sizes)} KiB (growth {growth / 1024:+.0f} KiB:"
          f" {'flat' if abs(growth) < 64 * 1024 else 'NOT flat'})")


if __name__ == "__main__":
    main()
