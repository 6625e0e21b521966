"""Benchmark: the coverage-guided strategy ``cover`` beside ``pct`` and ``random``.

Two measures, on the bundled examples and on the small bug programs of ``cover_bugs.py``:

- **runs to the first failure** of each buggy target, for seeds 0..S-1 (the median, and how many of
  the seeds found it within the budget);
- **orders covered** in R runs of each fixed twin: orders of conflicting operations seen over those
  there are (``detsched._report.coverage``), and pairs seen in one order only.

    python benchmarks/bench_cover.py [--seeds S] [--budget N] [--runs R] [--plot FILE.png]

``--plot`` also draws the runs to the first failure as a bar chart (needs matplotlib; the docs'
``docs/images/cover.png`` is made this way).
"""

from __future__ import annotations

import argparse
import glob
import os
import statistics
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "benchmarks"))

import detsched  # noqa: E402
from detsched._explore.explorer import scan  # noqa: E402

STRATEGIES = ("pct", "random", "cover")


def examples(name: str) -> list[str]:
    return [f"{path}::{name}" for path in sorted(glob.glob(os.path.join(ROOT, "examples", "*.py")))]


def bug_programs() -> list[str]:
    """The bug programs of ``cover_bugs.py``, by target spec."""
    import cover_bugs

    return [f"{cover_bugs.__file__}::{name}" for name in cover_bugs.BUGS]


def runs_to_failure(target: str, strategy: str, seeds: int, budget: int) -> tuple[float | None, int]:
    found = []
    for seed in range(seeds):
        index = scan(target, runs=budget, strategy=strategy, seed=seed).failing
        if index is not None:
            found.append(index + 1)
    return (statistics.median(found) if found else None), len(found)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--budget", type=int, default=2000)
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--plot", metavar="FILE.png", help="draw the runs to the first failure (needs matplotlib)")
    args = parser.parse_args()
    if args.plot:
        import matplotlib  # before any run: a missing matplotlib fails at once, not after the minutes

        matplotlib.use("Agg")
    os.chdir(ROOT)
    started = time.perf_counter()

    print(f"runs to the first failure (median over {args.seeds} seeds; found/seeds within {args.budget} runs)")
    print(f"  {'target':44}" + "".join(f"{name:>16}" for name in STRATEGIES))
    totals = {name: [] for name in STRATEGIES}
    names = []
    for target in examples("main") + bug_programs():
        names.append(target.rsplit(os.sep, 1)[-1].replace(".py::main", "").replace(".py::", ":"))
        cells = []
        for name in STRATEGIES:
            median, found = runs_to_failure(target, name, args.seeds, args.budget)
            totals[name].append(median if median is not None else args.budget)
            cells.append(f"{'-' if median is None else f'{median:g}'} ({found}/{args.seeds})")
        print(f"  {os.path.relpath(target.split('::')[0], ROOT)[:40] + '::' + target.split('::')[1]:44}"
              + "".join(f"{cell:>16}" for cell in cells))
    print("  sum of medians (a miss counts as the budget): "
          + ", ".join(f"{name} {sum(values):g}" for name, values in totals.items()))

    print(f"\norders of conflicting operations covered in {args.runs} runs of each fixed twin (one-order pairs)")
    print(f"  {'target':44}" + "".join(f"{name:>16}" for name in STRATEGIES))
    covered = {name: [0, 0] for name in STRATEGIES}
    for target in examples("fixed"):
        cells = []
        for name in STRATEGIES:
            coverage = detsched.explore(target, strategy=name, runs=args.runs, coverage=True).coverage
            covered[name][0] += coverage.covered
            covered[name][1] += coverage.ordered
            cells.append(f"{coverage.covered}/{coverage.ordered} ({len(coverage.one_order)})")
        print(f"  {os.path.relpath(target.split('::')[0], ROOT)[:40] + '::fixed':44}" + "".join(f"{c:>16}" for c in cells))
    print("  in all: " + ", ".join(f"{name} {seen}/{total}" for name, (seen, total) in covered.items()))
    if args.plot:
        plot(args.plot, names, totals, args)
    print(f"\n({time.perf_counter() - started:.0f} s)")


def plot(path: str, names: list[str], totals: dict[str, list], args) -> None:
    """Bars of the median runs to the first failure per program and strategy, on a log scale."""
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(10, 4.2))
    width = 0.8 / len(STRATEGIES)
    for n, name in enumerate(STRATEGIES):
        axes.bar([i + n * width for i in range(len(names))], totals[name], width, label=name)
    axes.set_yscale("log")
    axes.set_ylabel(f"median runs to the first failure\n({args.seeds} seeds; a miss = {args.budget})")
    axes.set_xticks([i + width for i in range(len(names))], names, rotation=40, ha="right", fontsize=8)
    axes.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    print(f"plot written to {path}")


if __name__ == "__main__":
    main()
