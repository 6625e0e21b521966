"""Benchmark: a run against the same program on plain threads, explorations per second, and where
the time of one run goes.

The tests: the main thread starts two threads that each do 20 lock operations (10 ``with lock:``
blocks around a shared counter), then joins them; and a bank of 4 accounts with a lock each, where
4 threads make 5 transfers each, taking the two locks in account order. Each is run plainly (real
threads, in this process) and explored with PCT, all scheduling points on; the ratio of the two
times per run is printed against the target (3x on Python 3.12+, 4x before). Then the lock test is
explored with PCT and with the random walk; explorations per second count every run, including
PCT's calibration run. Then one run's time is taken apart:

- world install/restore: entering and leaving a run's ``World`` alone, in this process;
- run set-up: a run of a target that does nothing (scheduler, main logical thread, patching),
  minus the patching;
- per thread: (run with two threads that do nothing - run of an empty target) / 2: creating an OS
  thread, its start and join points and its exit; the raw cost of starting and joining an OS
  thread is printed beside it;
- per lock operation: (full run - run with two idle threads) / 40: the scheduling points.

Each line is measured with and without scheduling points at user function entry (``preempt_calls``,
on by default).

Targets: a run at most 3x (Python 3.12+) or 4x (3.10, 3.11) the same program on plain threads;
at least 1,000 explorations per second on one core.

    python benchmarks/bench_explore.py [--runs N]
"""

from __future__ import annotations

import _thread
import argparse
import os
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import detsched  # noqa: E402
import programs  # noqa: E402
from detsched._explore.explorer import run_once  # noqa: E402
from detsched.schedule import Points  # noqa: E402
from detsched._core.scheduler import Scheduler  # noqa: E402
from detsched._instrument.world import World  # noqa: E402
from detsched.settings import Limits  # noqa: E402
from detsched.strategies import PositionReplay  # noqa: E402
from detsched._explore.targets import resolve  # noqa: E402

#: Explorations per second the project aims for on one core.
TARGET_RUNS_PER_SECOND = 1000
#: Lock operations per thread in the explored test (acquire and release each count).
LOCK_OPERATIONS = 20
#: How many times slower than plain threads a controlled run may be (Python 3.12+, and before).
TARGET_PLAIN_RATIO = 3.0 if sys.version_info >= (3, 12) else 4.0


def two_threads_with_locks() -> None:
    lock = threading.Lock()
    counter = [0]

    def work():
        for _ in range(LOCK_OPERATIONS // 2):
            with lock:
                counter[0] += 1

    _start_and_join(work, work)
    if counter[0] != LOCK_OPERATIONS:
        raise AssertionError(f"counter is {counter[0]}, expected {LOCK_OPERATIONS}")


def two_idle_threads() -> None:
    _start_and_join(_idle, _idle)


def empty() -> None:
    pass


def _idle() -> None:
    pass


def _start_and_join(*bodies) -> None:
    threads = [threading.Thread(target=body) for body in bodies]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def explorations_per_second(strategy: str, runs: int, preempt_calls: bool, repeat: int,
                            test=two_threads_with_locks) -> float:
    """Best rate of ``repeat`` explorations of ``runs`` runs each."""
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        report = detsched.explore(test, strategy=strategy, runs=runs, seed=1, preempt_calls=preempt_calls)
        best = min(best, time.perf_counter() - started)
        if report.failure is not None:
            raise SystemExit(f"the benchmark test failed under detsched: {report.failure.message}")
    calibration = 1 if strategy == "pct" else 0
    return (runs + calibration) / best


def best_mean(action, count: int, repeat: int) -> float:
    """Mean seconds per call of ``action`` over ``count`` calls, best of ``repeat`` batches (other
    processes on the machine only ever make a batch slower)."""
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        for _ in range(count):
            action()
        best = min(best, (time.perf_counter() - started) / count)
    return best


def seconds_per_run(function, count: int, repeat: int, preempt_calls: bool) -> tuple[float, int]:
    """Wall time of one run under the default policy, and its scheduling steps."""
    target = resolve(function)

    def run():
        return run_once(target, PositionReplay(()), 0, Limits(), points=Points(calls=preempt_calls))

    return best_mean(run, count, repeat), run().steps


def patch_cycle() -> None:
    with World(Scheduler(PositionReplay(()), Limits())):
        pass


def raw_thread() -> None:
    """Start an OS thread, wait until it runs, and wait for it to finish: the floor under a
    controlled thread's creation."""
    running, done = _thread.allocate_lock(), _thread.allocate_lock()
    running.acquire()
    done.acquire()
    _thread.start_new_thread(_signal_twice, (running, done))
    running.acquire()
    done.acquire()


def _signal_twice(running, done) -> None:
    running.release()
    done.release()


def breakdown(count: int, repeat: int, preempt_calls: bool) -> None:
    full, full_steps = seconds_per_run(two_threads_with_locks, count, repeat, preempt_calls)
    idle, idle_steps = seconds_per_run(two_idle_threads, count, repeat, preempt_calls)
    bare, _ = seconds_per_run(empty, count, repeat, preempt_calls)
    patch = best_mean(patch_cycle, count, repeat)
    raw_thread_seconds = best_mean(raw_thread, count, repeat)
    per_thread = (idle - bare) / 2
    operations = 2 * LOCK_OPERATIONS
    per_operation = (full - idle) / operations
    print(f"  one run: {full * 1e6:7.0f} us  ({full_steps} scheduling steps)")
    print(f"    world install/restore   {patch * 1e6:7.0f} us  {patch / full:4.0%}")
    print(f"    rest of run set-up      {(bare - patch) * 1e6:7.0f} us  {(bare - patch) / full:4.0%}"
          "  (scheduler, main logical thread)")
    print(f"    2 threads               {2 * per_thread * 1e6:7.0f} us  {2 * per_thread / full:4.0%}"
          f"  ({per_thread * 1e6:.0f} us each; a raw OS thread start+join takes {raw_thread_seconds * 1e6:.0f} us;"
          f" {idle_steps} steps with idle threads)")
    print(f"    {operations} lock operations      {operations * per_operation * 1e6:7.0f} us"
          f"  {operations * per_operation / full:4.0%}  ({per_operation * 1e6:.1f} us each)")


def against_plain_threads(runs: int, repeat: int) -> None:
    print(f"against plain threads (PCT, all points on; target <= {TARGET_PLAIN_RATIO:g}x):")
    for name, test in (("2 threads x 20 lock ops", two_threads_with_locks),
                       ("bank, 4 threads x 5 transfers", programs.bank)):
        plain = best_mean(test, runs, repeat)
        controlled = 1 / explorations_per_second("pct", runs, True, repeat, test)
        ratio = controlled / plain
        verdict = "met" if ratio <= TARGET_PLAIN_RATIO else "NOT met"
        print(f"  {name:32s} plain {plain * 1e6:6.0f} us  controlled {controlled * 1e6:6.0f} us"
              f"  {ratio:5.1f}x ({verdict})")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=500, help="runs per timed batch")
    parser.add_argument("--repeat", type=int, default=3, help="timed batches; the best one counts")
    args = parser.parse_args(argv)
    print(f"Python {sys.version.split()[0]}, {os.cpu_count()} CPUs; 2 threads x {LOCK_OPERATIONS} lock operations;"
          f" best of {args.repeat} x {args.runs} runs\n")
    against_plain_threads(args.runs, args.repeat)
    for preempt_calls in (True, False):
        print(f"\npreempt_calls={preempt_calls}")
        for strategy in ("pct", "random"):
            rate = explorations_per_second(strategy, args.runs, preempt_calls, args.repeat)
            verdict = "met" if rate >= TARGET_RUNS_PER_SECOND else "NOT met"
            print(f"  {strategy:6s} {rate:6.0f} explorations/s"
                  f"  ({rate / TARGET_RUNS_PER_SECOND:.2f}x the target of {TARGET_RUNS_PER_SECOND}/s: {verdict})")
        breakdown(args.runs // 2, args.repeat, preempt_calls)


if __name__ == "__main__":
    main()
