"""Benchmark: how a run's cost grows with threads and operations.

The test: the main thread starts N threads that each do K lock operations (K/2 ``with lock:``
blocks around a shared counter, so each block is also a store point), then joins them. For N in
2-16 and K in 20-2,000 it prints the microseconds per run on plain threads and explored with PCT
(all scheduling points on), their ratio, the scheduling steps of a run and the microseconds per
step. Cost should grow linearly in steps: a flat "us/step" column is the target.

    python benchmarks/bench_scaling.py [--threads 2,4,8,16] [--operations 20,200,2000]
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import detsched  # noqa: E402
from detsched._explore.explorer import run_once  # noqa: E402
from detsched._explore.targets import resolve  # noqa: E402
from detsched.settings import Limits  # noqa: E402
from detsched.strategies import PositionReplay  # noqa: E402

#: Seconds of runs measured per cell of the table (at least 3 runs, best of 3 batches).
SECONDS_PER_CELL = 0.3


def contended_counter(threads: int, operations: int):
    def test() -> None:
        lock = threading.Lock()
        counter = [0]

        def work():
            for _ in range(operations // 2):
                with lock:
                    counter[0] += 1

        workers = [threading.Thread(target=work) for _ in range(threads)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        if counter[0] != threads * (operations // 2):
            raise AssertionError(f"counter is {counter[0]}")

    return test


def best_seconds_per_run(action, runs: int) -> float:
    best = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        action(runs)
        best = min(best, (time.perf_counter() - started) / runs)
    return best


def plain(test, runs: int) -> None:
    for _ in range(runs):
        test()


def explored(test, runs: int) -> None:
    report = detsched.explore(test, strategy="pct", runs=runs - 1, seed=1, max_steps=10**7)  # + calibration
    if report.failure is not None:
        raise SystemExit(f"the benchmark test failed under detsched: {report.failure.message}")


def steps_of(test) -> int:
    return run_once(resolve(test), PositionReplay(()), 0, Limits(max_steps=10**7)).steps


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", default="2,4,8,16", help="comma-separated thread counts")
    parser.add_argument("--operations", default="20,200,2000", help="comma-separated lock operations per thread")
    args = parser.parse_args(argv)
    print(f"Python {sys.version.split()[0]}, {os.cpu_count()} CPUs; PCT, all points on; best of 3 batches")
    print(f"{'threads':>7} {'ops/thread':>10} {'plain us':>9} {'detsched us':>11} {'ratio':>6}"
          f" {'steps':>7} {'us/step':>7}")
    for threads in (int(n) for n in args.threads.split(",")):
        for operations in (int(k) for k in args.operations.split(",")):
            test = contended_counter(threads, operations)
            steps = steps_of(test)
            first = best_seconds_per_run(lambda runs: explored(test, runs), 3)
            runs = max(3, int(SECONDS_PER_CELL / first))
            controlled = best_seconds_per_run(lambda runs: explored(test, runs), runs)
            plain_seconds = best_seconds_per_run(lambda runs: plain(test, runs), runs)
            print(f"{threads:7d} {operations:10d} {plain_seconds * 1e6:9.0f} {controlled * 1e6:11.0f}"
                  f" {controlled / plain_seconds:5.1f}x {steps:7d} {controlled / steps * 1e6:7.2f}")


if __name__ == "__main__":
    main()
