"""Benchmark: the controlled event loop against the stock one, and asyncio explorations per second.

1. One loop step. Two tasks play ping-pong through a pair of ``asyncio.Event``s ROUND_TRIPS times
   (each wakes the other and waits for its turn). The same coroutine runs on the stock loop
   (``asyncio.run`` in this thread) and on detsched's controlled loop under the default policy
   (inside a run, with and without scheduling points at user function entry), timed from inside
   the coroutine with the real clock. Every ready callback the loop runs is one step; the
   controlled loop counts them (``Scheduler.steps``) and the stock loop runs the same callbacks,
   so the ratio of the two times is the ratio of their steps. Stock and controlled batches
   alternate, and the best of each is compared.
2. Explorations per second of two tasks with 20 awaits each (``await asyncio.sleep(0)``, so every
   await is a step where the strategy picks which task resumes), with PCT and the random walk,
   beside the explorations per second of an empty target (what every run costs before the loop).

Targets: a controlled step costs at most 1.5x a stock one; at least 2,000 explorations per second.

    python benchmarks/bench_asyncio.py [--round-trips N] [--runs N] [--repeat R]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import detsched  # noqa: E402
from detsched._core import clock as clock  # noqa: E402  (clock.real_monotonic: the real clock, even inside a run)
from detsched._explore.explorer import run_once  # noqa: E402
from detsched.schedule import Points  # noqa: E402
from detsched.settings import Limits  # noqa: E402
from detsched.strategies import PositionReplay  # noqa: E402
from detsched._explore.targets import resolve  # noqa: E402

#: Ratio of a controlled loop step to a stock one that the project aims to stay under.
TARGET_RATIO = 1.5
#: Explorations per second of the two-task test that the project aims for.
TARGET_RUNS_PER_SECOND = 2000
#: Awaits per task in the explored test.
AWAITS = 20


async def ping_pong(round_trips: int, timing: list) -> None:
    """Two tasks hand the turn back and forth; ``timing`` receives the real seconds it took."""
    turns = [asyncio.Event(), asyncio.Event()]

    async def player(me: int) -> None:
        for _ in range(round_trips):
            await turns[me].wait()
            turns[me].clear()
            turns[1 - me].set()

    started = clock.real_monotonic()
    turns[0].set()
    await asyncio.gather(player(0), player(1))
    timing.append(clock.real_monotonic() - started)


async def two_tasks() -> None:
    """The explored test: two tasks of AWAITS awaits each."""
    async def worker() -> None:
        for _ in range(AWAITS):
            await asyncio.sleep(0)

    await asyncio.gather(worker(), worker())


def nothing() -> None:
    pass


def time_stock(round_trips: int) -> float:
    timing: list = []
    asyncio.run(ping_pong(round_trips, timing))
    return timing[0]


def time_controlled(round_trips: int, preempt_calls: bool) -> tuple[float, int]:
    """Seconds and steps of one ping-pong on the controlled loop."""
    timing: list = []
    target = resolve(lambda: ping_pong(round_trips, timing))
    result = run_once(target, PositionReplay(()), 0, Limits(100 * round_trips + 1000),
                      points=Points(calls=preempt_calls))
    if result.failure is not None:
        raise SystemExit(f"the ping-pong failed under detsched: {result.failure.message}")
    return timing[0], result.steps


def report_steps(round_trips: int, repeat: int) -> None:
    # Batches alternate (stock, calls on, calls off, stock, ...) so that a slow moment of a shared
    # machine hits every column alike; the best of each column is compared.
    stock, controlled, steps = float("inf"), {True: float("inf"), False: float("inf")}, {}
    for _ in range(repeat):
        stock = min(stock, time_stock(round_trips))
        for preempt_calls in (True, False):
            seconds, steps[preempt_calls] = time_controlled(round_trips, preempt_calls)
            controlled[preempt_calls] = min(controlled[preempt_calls], seconds)
    print(f"task ping-pong: {round_trips} round trips, batches alternating")
    print(f"  stock loop             {stock * 1e3:8.1f} ms")
    for preempt_calls in (True, False):
        seconds, count = controlled[preempt_calls], steps[preempt_calls]
        ratio = seconds / stock
        verdict = "met" if ratio <= TARGET_RATIO else "NOT met"
        print(f"  detsched, calls {'on ' if preempt_calls else 'off'}   {seconds * 1e3:8.1f} ms  {count:7d} steps"
              f"  {seconds / count * 1e6:6.2f} us/step (stock {stock / count * 1e6:.2f})  {ratio:5.2f}x"
              f" (target <= {TARGET_RATIO:g}x: {verdict})")


def best_runs_per_second(target, runs: int, repeat: int, **options) -> float:
    best = 0.0
    for _ in range(repeat):
        report = detsched.explore(target, runs=runs, **options)
        if report.failure is not None:
            raise SystemExit(f"{target.__name__} failed under detsched: {report.failure.message}")
        best = max(best, report.runs_per_second)
    return best


def report_explorations(runs: int, repeat: int) -> None:
    print(f"explorations: two tasks x {AWAITS} awaits, {runs} runs, best of {repeat}")
    for target, name in ((nothing, "empty target (per-run floor)"), (two_tasks, "two tasks")):
        for strategy in ("pct", "random"):
            for preempt_calls in (True, False):
                per_second = best_runs_per_second(target, runs, repeat, strategy=strategy, preempt_calls=preempt_calls)
                line = (f"  {name:30s} {strategy:6s} calls {'on ' if preempt_calls else 'off'}"
                        f" {per_second:8.0f} runs/s")
                if target is two_tasks:
                    verdict = "met" if per_second >= TARGET_RUNS_PER_SECOND else "NOT met"
                    line += f" (target >= {TARGET_RUNS_PER_SECOND}: {verdict})"
                print(line)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--round-trips", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=3, help="take the best of this many timings")
    args = parser.parse_args(argv)
    print(f"Python {sys.version.split()[0]}, {os.cpu_count()} CPUs; best of {args.repeat}")
    report_steps(args.round_trips, args.repeat)
    report_explorations(args.runs, args.repeat)


if __name__ == "__main__":
    main()
