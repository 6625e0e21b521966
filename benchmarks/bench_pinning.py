"""Benchmark: where a run's threads are pinned, with and without another process keeping a CPU busy.

The test is 2 threads x 20 lock operations (``programs.lock_counter``), explored with PCT in
batches of ``--runs`` runs. Each batch runs one way:

- unpinned: ``controller.PIN_TO_ONE_CPU = False``; the kernel places the threads;
- pid's CPU: pinned to the CPU chosen by pid alone (``sorted(allowed)[pid % n]``), as detsched
  did before it looked at the load;
- chosen: pinned where ``pinning.CpuChooser`` says, a fresh chooser per batch, so each batch pays
  for its first look at the load.

First on an otherwise idle machine, then with a hog: a child process that spins on the pid's CPU,
the one the choice by pid would take. Batches alternate between the ways; the best batch of each
way is printed as runs per second and as a ratio to unpinned.

Targets: with the hog, the chooser at least as fast as unpinned and clearly faster than the pid's
CPU; idle, the chooser at least as fast as unpinned (pinning pays for itself on a quiet machine).

    python benchmarks/bench_pinning.py [--runs N] [--repeat R]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import detsched  # noqa: E402
import programs  # noqa: E402
from detsched._core import controller, pinning  # noqa: E402

_HOG = "import os, sys; os.sched_setaffinity(0, {int(sys.argv[1])})\nwhile True: pass\n"


def batch(way: str, runs: int, pid_cpu: int) -> float:
    """Runs per second of one batch explored ``way``."""
    real_choose = pinning.choose
    controller.PIN_TO_ONE_CPU = way != "unpinned"
    if way == "pid's CPU":
        pinning.choose = lambda allowed: pid_cpu
    elif way == "chosen":
        chooser = pinning.CpuChooser()
        pinning.choose = chooser.choose
    try:
        started = time.perf_counter()
        report = detsched.explore(programs.lock_counter, runs=runs)
        elapsed = time.perf_counter() - started
    finally:
        pinning.choose, controller.PIN_TO_ONE_CPU = real_choose, True
    if report.failure is not None:
        raise SystemExit(f"the lock test failed under detsched: {report.failure.message}")
    return report.runs / elapsed


def compare(title: str, runs: int, repeat: int, pid_cpu: int) -> None:
    ways = ("unpinned", "pid's CPU", "chosen")
    best = dict.fromkeys(ways, 0.0)
    for _ in range(repeat):
        for way in ways:
            best[way] = max(best[way], batch(way, runs, pid_cpu))
    print(title)
    for way in ways:
        print(f"  {way:10s} {best[way]:7.0f} runs/s   {best[way] / best['unpinned']:4.2f}x unpinned")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=1500)
    parser.add_argument("--repeat", type=int, default=3, help="take the best of this many batches")
    args = parser.parse_args(argv)
    if not hasattr(os, "sched_getaffinity") or len(os.sched_getaffinity(0)) < 2:
        raise SystemExit("needs Linux and at least two CPUs this process may use")
    allowed = sorted(os.sched_getaffinity(0))
    pid_cpu = allowed[os.getpid() % len(allowed)]
    print(f"Python {sys.version.split()[0]}, CPUs {allowed}; best of {args.repeat} batches of {args.runs} runs")
    detsched.explore(programs.lock_counter, runs=200)  # warm-up: the one-time rewriting
    compare("idle machine", args.runs, args.repeat, pid_cpu)
    hog = subprocess.Popen([sys.executable, "-c", _HOG, str(pid_cpu)])
    try:
        time.sleep(0.5)
        compare(f"another process spinning on CPU {pid_cpu} (the pid's CPU)", args.runs, args.repeat, pid_cpu)
    finally:
        hog.kill()
        hog.wait()


if __name__ == "__main__":
    main()
