"""Benchmark: the cost of one controlled context switch, against a raw two-thread ping-pong.

Two threads hand the turn back and forth ROUND_TRIPS times, once with locks (each thread blocks on
a lock the other holds, and releases the one the other waits for) and once with a Condition and a
turn flag. The same code runs in this process on real OS threads with real locks, and under
detsched with the default policy (the running thread goes on until it blocks), so every hand-over
is forced by blocking, as in the raw run. Under detsched it runs with and without scheduling points
at user function entry ("calls on" is the default).
Controlled switches are counted from a traced run of the same schedule; timed runs are not traced.

Target: a controlled switch costs at most 3x a raw one.

    python benchmarks/bench_switch.py [--round-trips N] [--repeat R]
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from detsched._explore.explorer import run_once  # noqa: E402
from detsched.schedule import Points  # noqa: E402
from detsched.settings import Limits  # noqa: E402
from detsched.strategies import PositionReplay  # noqa: E402
from detsched._explore.targets import resolve  # noqa: E402

#: Ratio of a controlled switch to a raw one that the project aims to stay under.
TARGET_RATIO = 3.0


def lock_ping_pong(round_trips: int) -> None:
    """Three locks passed round: a thread takes the next lock (held by the other thread, so it
    blocks), then releases the one it took before, which the other thread is blocked on. Two
    hand-overs per round trip; every lock is released by the thread that holds it."""
    locks = [threading.Lock() for _ in range(3)]
    pong_ready = threading.Event()

    def ping():
        locks[0].acquire()
        pong_ready.wait()
        for step in range(round_trips):
            locks[(step + 1) % 3].acquire()
            locks[step % 3].release()

    def pong():
        locks[1].acquire()
        locks[2].acquire()
        pong_ready.set()
        for step in range(round_trips):
            locks[(step + 1) % 3].release()
            locks[step % 3].acquire()

    _run_pair(ping, pong)


def condition_ping_pong(round_trips: int) -> None:
    """Each thread waits on a Condition until the turn flag is its own, flips it and notifies."""
    condition = threading.Condition(threading.Lock())
    turn = [0]

    def player(me: int):
        for _ in range(round_trips):
            with condition:
                while turn[0] != me:
                    condition.wait()
                turn[0] = 1 - me
                condition.notify()

    _run_pair(lambda: player(0), lambda: player(1))


def _run_pair(first, second) -> None:
    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def time_raw(game, round_trips: int, repeat: int) -> float:
    """Best wall time of the game on real threads (the GIL and the OS schedule the hand-overs)."""
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        game(round_trips)
        best = min(best, time.perf_counter() - started)
    return best


def controlled(game, round_trips: int, *, tracing: bool, preempt_calls: bool):
    target = resolve(lambda: game(round_trips))
    return run_once(target, PositionReplay(()), 0, Limits(100 * round_trips + 1000), tracing=tracing,
                    points=Points(calls=preempt_calls))


def count_switches(game, round_trips: int, preempt_calls: bool) -> int:
    """Hand-overs of the baton in one run: consecutive trace steps by different threads."""
    result = controlled(game, round_trips, tracing=True, preempt_calls=preempt_calls)
    if result.failure is not None:
        raise SystemExit(f"the ping-pong failed under detsched: {result.failure.message}")
    tids = [step.tid for step in result.trace]
    return sum(1 for before, after in zip(tids, tids[1:]) if before != after)


def time_controlled(game, round_trips: int, repeat: int, preempt_calls: bool) -> tuple[float, int]:
    best, steps = float("inf"), 0
    for _ in range(repeat):
        started = time.perf_counter()
        result = controlled(game, round_trips, tracing=False, preempt_calls=preempt_calls)
        best = min(best, time.perf_counter() - started)
        steps = result.steps
    return best, steps


def report(name: str, game, round_trips: int, repeat: int) -> None:
    raw_seconds = time_raw(game, round_trips, repeat)
    raw_switches = 2 * round_trips  # the least a ping-pong can do; the OS may add more
    raw_each = raw_seconds / raw_switches * 1e6
    print(f"{name}: {round_trips} round trips")
    print(f"  raw threads            {raw_seconds * 1e3:8.1f} ms  {raw_switches:7d} switches  {raw_each:6.2f} us/switch")
    for preempt_calls in (True, False):
        switches = count_switches(game, round_trips, preempt_calls)
        seconds, steps = time_controlled(game, round_trips, repeat, preempt_calls)
        each = seconds / switches * 1e6
        ratio = each / raw_each
        verdict = "met" if ratio <= TARGET_RATIO else "NOT met"
        print(f"  detsched, calls {'on ' if preempt_calls else 'off'}   {seconds * 1e3:8.1f} ms  {switches:7d} switches"
              f"  {each:6.2f} us/switch  {ratio:5.2f}x (target <= {TARGET_RATIO:g}x: {verdict});"
              f" {steps} steps, {seconds / steps * 1e6:.2f} us/step")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--round-trips", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=3, help="take the best of this many timings")
    args = parser.parse_args(argv)
    print(f"Python {sys.version.split()[0]}, {os.cpu_count()} CPUs; best of {args.repeat}")
    report("lock ping-pong", lock_ping_pong, args.round_trips, args.repeat)
    report("condition ping-pong", condition_ping_pong, args.round_trips, args.repeat)


if __name__ == "__main__":
    main()
