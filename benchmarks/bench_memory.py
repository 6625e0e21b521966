"""Benchmark: memory and OS threads stay flat over many runs.

A small test (the main thread starts a worker, takes a lock and joins the worker) is explored
for RUNS runs with tracemalloc on. After a warm-up (caches that fill once per process:
module scans, code verdicts), the traced memory, the process's resident memory and its OS threads
are printed at checkpoints; the growth from the warm-up to the end is the figure. A leak of one
small object per run would show as several MB here.

Target: flat -- the traced growth stays within a few kB however many runs, and no OS thread
outlives its run: the OS threads of finished logical threads wait idle to carry the next run's
(``detsched._core.carriers``), as many as a run used, and end a second after the last run.

    python benchmarks/bench_memory.py [--runs N]
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

import detsched  # noqa: E402
from detsched._core import carriers  # noqa: E402

#: Runs before the baseline is taken: long enough for every once-per-process cache to fill.
WARM_UP = 1000
#: How many of the largest allocation sites that grew are listed at the end.
TOP_GROWTH = 5


def small_test() -> None:
    """One worker thread, a lock, a join: every kind of per-run object, at the least cost."""
    lock = threading.Lock()
    box = []
    worker = threading.Thread(target=box.append, args=(1,))
    worker.start()
    with lock:
        box.append(0)
    worker.join()


def os_threads() -> int:
    """Threads of this process as the kernel counts them (``threading`` only knows its own)."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("Threads:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return -1


def resident_kib() -> int:
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return -1


class Checkpoints:
    """The ``progress`` callback of ``explore``: records memory and threads at chosen run counts."""

    def __init__(self, runs: int):
        self.at = sorted({WARM_UP, *(runs * k // 4 for k in range(1, 5))})
        self.baseline_traced = self.last_traced = 0
        self.baseline_snapshot = None
        self.started = time.perf_counter()

    def __call__(self, runs_done: int, left=None) -> None:
        if runs_done not in self.at:
            return
        gc.collect()  # a run's objects form cycles; count only what survives a collection
        traced, _ = tracemalloc.get_traced_memory()
        self.last_traced = traced
        if runs_done == WARM_UP:
            self.baseline_traced = traced
            self.baseline_snapshot = tracemalloc.take_snapshot()
        elapsed = time.perf_counter() - self.started
        print(f"{runs_done:9d} runs  {elapsed:6.1f} s  traced {traced / 1024:9.1f} KiB"
              f"  ({(traced - self.baseline_traced) / 1024:+8.1f} KiB since run {WARM_UP})"
              f"  RSS {resident_kib() / 1024:7.1f} MiB  OS threads {os_threads()}"
              f"  threading.active_count() {threading.active_count()}", flush=True)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=100_000)
    args = parser.parse_args(argv)
    if args.runs <= WARM_UP:
        parser.error(f"--runs must be more than the {WARM_UP} warm-up runs")
    print(f"Python {sys.version.split()[0]}; {args.runs} runs of a 2-thread test, tracemalloc on")
    threads_before, active_before = os_threads(), threading.active_count()
    print(f"{'before':>9s}       OS threads {threads_before}  threading.active_count() {active_before}")
    tracemalloc.start()
    checkpoints = Checkpoints(args.runs)
    report = detsched.explore(small_test, strategy="random", runs=args.runs, progress=checkpoints)
    if report.failure is not None:
        raise SystemExit(f"the small test failed under detsched: {report.failure.message}")
    growth = checkpoints.last_traced - checkpoints.baseline_traced
    grown = [stat for stat in tracemalloc.take_snapshot().compare_to(checkpoints.baseline_snapshot, "lineno")
             if stat.size_diff > 0]
    tracemalloc.stop()
    measured = args.runs - WARM_UP
    print(f"traced growth over the last {measured} runs: {growth / 1024:+.1f} KiB ({growth / measured:+.3f} bytes/run)")
    print(f"OS threads right after: {os_threads()} (before: {threads_before});"
          f" threading.active_count(): {threading.active_count()} (before: {active_before})")
    # Idle carriers (the OS threads of finished logical threads, waiting for the next run's) end
    # IDLE_SECONDS after the last run: past that, every OS thread a run used must be gone.
    time.sleep(carriers.IDLE_SECONDS + 1.0)
    print(f"OS threads {carriers.IDLE_SECONDS + 1.0:g} s later: {os_threads()} (target: {threads_before})")
    print("allocation sites that grew most since the warm-up:")
    for stat in grown[:TOP_GROWTH]:
        print(f"  {stat.size_diff / 1024:+8.1f} KiB  {stat.count_diff:+6d} blocks  {stat.traceback}")


if __name__ == "__main__":
    main()
