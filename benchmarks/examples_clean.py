"""Benchmark: every example's fixed twin explored 10,000 times with PCT, which must find nothing.

Prints one row per example: the runs done, the result (``passed`` or ``FAILED``, followed by what
was found and its replay command) and the explorations per second. Exits with status 1 if any
twin failed.

    python benchmarks/examples_clean.py [--runs N] [--seed S]
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import detsched  # noqa: E402

EXAMPLES_DIR = Path(__file__).resolve().parent.parent / "examples"


def example_names() -> list[str]:
    """The thread examples (the asyncio ones, ``aio_*``, have their own twins and benchmark)."""
    return sorted(path.stem for path in EXAMPLES_DIR.glob("*.py") if not path.name.startswith("aio_"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10_000, help="runs per fixed twin (default 10000)")
    parser.add_argument("--seed", type=int, default=0, help="exploration seed (default 0)")
    args = parser.parse_args()

    print(f"{'example':<20}{'runs':>8}  {'result':<10}{'runs/s':>8}")
    clean = True
    for name in example_names():
        report = detsched.explore(f"{EXAMPLES_DIR / name}.py::fixed", strategy="pct", runs=args.runs,
                                  seed=args.seed)
        failure = report.failure
        result = "passed" if failure is None else "FAILED"
        print(f"{name:<20}{report.runs:>8}  {result:<10}{report.runs_per_second:>8.0f}", flush=True)
        if failure is not None:
            clean = False
            print(f"    {failure.kind}: {failure.message}\n    replay: {failure.replay_command}")
    return 0 if clean else 1


if __name__ == "__main__":
    sys.exit(main())
