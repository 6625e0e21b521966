"""Benchmark: linearizability checking (``detsched.lincheck``).

1. The checker alone: time and search states per history of 3 threads x 5 calls on a FIFO queue
   (median and p99 over H histories). The histories are linearizable by construction -- the calls
   of a random interleaving applied to the model, each call's window widened at random around its
   instant -- so the search must find an order (the slow case: a non-linearizable history is often
   refuted early).
2. End to end: scenarios per second of ``lincheck.run`` on the bundled fixed twins.
3. Verified: a correct counter with a 3-operation API (incr, decr, get), every scenario of 2
   threads with 1-3 operations each (39 x 39 = 1,521; 780 once the two threads' symmetry is used:
   threads (a, b) and (b, a) run the same interleavings), each run by ``dpor`` in every
   interleaving; the count of scenarios verified is printed.

    python benchmarks/bench_lincheck.py [--histories H] [--skip-verified]
"""

from __future__ import annotations

import argparse
import itertools
import os
import random
import statistics
import sys
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "examples", "lincheck"))

from detsched import lincheck  # noqa: E402
from detsched._explore.explorer import scan  # noqa: E402
from detsched._lincheck.checker import check  # noqa: E402
from detsched._lincheck.history import Call  # noqa: E402
from detsched._lincheck.scenario import Invocation, Scenario, run_scenario  # noqa: E402
from detsched.lincheck import MAX_STATES  # noqa: E402


class SeqQueue:
    def __init__(self):
        self.items = []

    def put(self, x):
        self.items.append(x)

    def get(self):
        return self.items.pop(0) if self.items else None


def linearizable_history(rng: random.Random, threads: int = 3, calls: int = 5) -> list[Call]:
    """A history of ``threads`` x ``calls`` queue calls that some order explains: the calls are
    applied to the model in a random interleaving at instants 10, 20, 30...; each call's window
    holds its instant, reaching back up to 25 (overlapping other threads' calls) and forward up to
    9, within its thread's program order."""
    model, history, done = SeqQueue(), [], {t: 0 for t in range(threads)}
    last_response = {t: 0 for t in range(threads)}
    instant, times = 0, set()
    while any(done[t] < calls for t in done):
        t = rng.choice([t for t in done if done[t] < calls])
        done[t] += 1
        instant += 10
        name, args = ("put", (rng.randint(1, 3),)) if rng.random() < 0.5 else ("get", ())
        result = getattr(model, name)(*args)
        invoked = max(last_response[t] + 1, instant - rng.randint(0, 25))
        responded = instant + rng.randint(1, 9)  # before the next instant: a thread's calls never overlap
        while invoked in times:
            invoked += 1
        while responded in times or responded <= invoked:
            responded += 1
        times |= {invoked, responded}
        last_response[t] = responded
        history.append(Call(len(history), t, name, args, result, invoked, responded))
    return history


def checker_figures(histories: int) -> None:
    rng = random.Random(0)
    seconds, states = [], []
    for _ in range(histories):
        history = linearizable_history(rng)
        started = time.perf_counter()
        verdict = check(history, SeqQueue, max_states=MAX_STATES)
        seconds.append(time.perf_counter() - started)
        states.append(verdict.states)
        assert verdict.linearizable, verdict
    seconds.sort()
    p99 = seconds[min(len(seconds) - 1, int(len(seconds) * 0.99))]
    print(f"checker, {histories} histories of 3 threads x 5 queue calls (all linearizable):")
    print(f"  median {statistics.median(seconds) * 1e3:.2f} ms, p99 {p99 * 1e3:.2f} ms; "
          f"search states median {statistics.median(states):g}, max {max(states)}")


def end_to_end() -> None:
    import bounded_queue
    import counter
    import lru_cache
    import rate_limiter

    print("end to end, lincheck.run of the fixed twins (30 scenarios each):")
    for cls in (counter.TestLockedCounter, bounded_queue.TestRingQueue, lru_cache.TestLockedLRU,
                rate_limiter.TestTokenBucket):
        started = time.perf_counter()
        result = lincheck.run(cls)
        elapsed = time.perf_counter() - started
        print(f"  {cls.__name__:20} {result.scenarios / elapsed:6.1f} scenarios/s, {result.runs:5} runs, "
              f"{result.verified}/{result.scenarios} verified, {'ok' if result.failure is None else 'FAILED'}")


class Counter:
    def __init__(self):
        self.n = 0
        self.lock = threading.Lock()

    def incr(self):
        with self.lock:
            self.n += 1
            return self.n

    def decr(self):
        with self.lock:
            self.n -= 1
            return self.n

    def get(self):
        with self.lock:
            return self.n


class SeqCounter:
    def __init__(self):
        self.n = 0

    def incr(self):
        self.n += 1
        return self.n

    def decr(self):
        self.n -= 1
        return self.n

    def get(self):
        return self.n


def verified(budget: int) -> None:
    operations = {name: (lambda obj, name=name: getattr(obj, name)()) for name in ("incr", "decr", "get")}
    threads = [tuple(Invocation(name, ()) for name in names)
               for size in (1, 2, 3) for names in itertools.product(sorted(operations), repeat=size)]
    started = time.perf_counter()
    counts = {"verified": 0, "failed": 0, "runs": 0, "open": 0}
    for first, second in itertools.combinations_with_replacement(threads, 2):
        scenario = Scenario((), (first, second), ())

        def target(scenario=scenario):
            run_scenario(Counter, operations, scenario, model=SeqCounter, max_states=MAX_STATES)

        found = scan(target, runs=budget, strategy="dpor", races=True)
        counts["runs"] += found.runs
        counts["verified" if found.exhausted else "failed" if found.failing is not None else "open"] += 1
    total = len(threads) * (len(threads) + 1) // 2
    print(f"verified, a locked counter (incr, decr, get), every scenario of 2 threads x 1-3 operations "
          f"({len(threads) ** 2} scenarios, {total} up to the threads' order):")
    print(f"  {counts['verified']}/{total} scenarios verified in every interleaving (dpor), {counts['failed']} failed, "
          f"{counts['open']} not finished within {budget} runs; {counts['runs']:,} runs in "
          f"{time.perf_counter() - started:.0f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--histories", type=int, default=200)
    parser.add_argument("--budget", type=int, default=2000, help="dpor runs per scenario in part 3")
    parser.add_argument("--skip-verified", action="store_true", help="leave out part 3 (the longest)")
    args = parser.parse_args()
    print(f"Python {sys.version.split()[0]}")
    checker_figures(args.histories)
    end_to_end()
    if not args.skip_verified:
        verified(args.budget)


if __name__ == "__main__":
    main()
