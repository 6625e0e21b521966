"""Evidence benchmark: stress testing against detsched's strategies on 31 buggy programs, each
with a fixed twin.

The programs: every bundled example's ``main`` (17: threads, asyncio and both), the bug programs of
``cover_bugs.py`` (4) and of ``compare_programs.py`` (10) -- deadlocks, races, lost wakeups, leaks,
livelocks and plain wrong results. Each tool gets a CPU budget per program, in a fresh process:

- **stress**: the program run again and again on real threads with ``sys.setswitchinterval(1e-6)``
  (a switch as often as CPython allows), each run watched: an exception in any thread, a thread
  still running 2 s after the run began (a deadlock or a leak: the run is given up), or a thread
  left alive after it returned counts as found;
- **pct**, **random**, **cover**, **dfs**, **dpor**: detsched's strategies, races checked (as
  ``detsched run`` does), runs until the first failure.

It prints, per program and tool, the CPU seconds to the first failure (or "-" when the budget ran
out), the totals, and the false alarms on the fixed twins (each twin run by every tool for a
shorter budget); with ``--plot``, the bugs found against CPU seconds, and with ``--markdown`` the
table as a page (``docs/compare.md`` is made so).

    python benchmarks/compare.py [--budget SECONDS] [--twin-budget SECONDS] [--plot FILE] [--markdown FILE]
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "benchmarks"))

TOOLS = ("stress", "pct", "random", "cover", "dfs", "dpor")
#: Seconds a stress run may take before its threads count as hung (a deadlock or a leak).
HANG_AFTER = 2.0

#: The code each measurement runs in a fresh process: prints {"found": bool, "cpu": s, "runs": n}.
_STRESS = r'''
import asyncio, inspect, json, os, sys, threading, time
sys.setswitchinterval(1e-6)
sys.path.insert(0, os.path.dirname(PATH))
from detsched._explore.targets import locate
function, _ = locate(TARGET)
errors = []
threading.excepthook = lambda args: errors.append(args.exc_value)
start, runs = time.process_time(), 0
def once():
    try:
        outcome = function()
        if inspect.iscoroutine(outcome):
            asyncio.run(outcome)
    except BaseException as exc:
        errors.append(exc)
while time.process_time() - start < BUDGET:
    runs += 1
    before = set(threading.enumerate())
    runner = threading.Thread(target=once, daemon=True)
    runner.start()
    runner.join(HANG)
    if runner.is_alive():
        errors.append("hung")
    else:
        time.sleep(0.001)  # let threads that end just after the run finish
        if [t for t in threading.enumerate() if t not in before and t.is_alive() and not t.daemon]:
            errors.append("left a thread running")
    if errors:
        break
print(json.dumps({"found": bool(errors), "cpu": time.process_time() - start, "runs": runs}), flush=True)
os._exit(0)  # threads of a hung run cannot be stopped: leave them
'''

_DETSCHED = r'''
import json, os, sys, time
sys.path.insert(0, os.path.dirname(PATH))
from detsched._explore.explorer import scan
start = time.process_time()
result = scan(TARGET, runs=10 ** 7, strategy=STRATEGY, races=True, time_budget=BUDGET)
print(json.dumps({"found": result.failing is not None, "cpu": time.process_time() - start, "runs": result.runs}),
      flush=True)
'''


def programs() -> list[tuple[str, str]]:
    """(bug target, fixed target) of every program."""
    import compare_programs
    import cover_bugs

    pairs = [(f"{path}::main", f"{path}::fixed") for path in sorted(glob.glob(os.path.join(ROOT, "examples", "*.py")))]
    for module in (cover_bugs, compare_programs):
        pairs += [(f"{module.__file__}::{name}", f"{module.__file__}::{name}_fixed") for name in module.BUGS]
    return pairs


def measure(tool: str, target: str, budget: float) -> dict:
    path = target.split("::")[0]
    if tool == "stress":
        code = _STRESS.replace("HANG", repr(HANG_AFTER))
    else:
        code = _DETSCHED.replace("STRATEGY", repr(tool))
    code = code.replace("PATH", repr(path)).replace("TARGET", repr(target)).replace("BUDGET", repr(budget))
    env = dict(os.environ, PYTHONPATH=ROOT)
    try:
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=ROOT,
                              timeout=budget * 4 + 60)
        return json.loads(done.stdout.strip().splitlines()[-1])
    except (subprocess.TimeoutExpired, IndexError, json.JSONDecodeError):
        return {"found": False, "cpu": budget, "runs": 0, "broken": True}


def name_of(target: str) -> str:
    path, _, function = target.partition("::")
    stem = os.path.splitext(os.path.basename(path))[0]
    return stem if function in ("main", "fixed") else f"{stem}:{function}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--budget", type=float, default=3.0, help="CPU seconds per program and tool")
    parser.add_argument("--twin-budget", type=float, default=1.0, help="CPU seconds per fixed twin and tool")
    parser.add_argument("--plot", metavar="FILE.png")
    parser.add_argument("--markdown", metavar="FILE.md")
    args = parser.parse_args()
    started = time.perf_counter()
    pairs = programs()
    print(f"{len(pairs)} programs; CPU seconds to the first failure (budget {args.budget:g} s; - = not found)")
    print(f"  {'program':34}" + "".join(f"{tool:>9}" for tool in TOOLS))
    results = {tool: [] for tool in TOOLS}
    rows = []
    for bug, _ in pairs:
        cells = []
        for tool in TOOLS:
            outcome = measure(tool, bug, args.budget)
            results[tool].append(outcome)
            cells.append(f"{outcome['cpu']:.2f}" if outcome["found"] else "-")
        rows.append((name_of(bug), cells))
        print(f"  {name_of(bug)[:34]:34}" + "".join(f"{cell:>9}" for cell in cells), flush=True)
    found = {tool: sum(o["found"] for o in results[tool]) for tool in TOOLS}
    cpu = {tool: sum(o["cpu"] for o in results[tool]) for tool in TOOLS}
    print("  found: " + ", ".join(f"{tool} {found[tool]}/{len(pairs)} ({cpu[tool]:.0f} CPU s)" for tool in TOOLS))

    alarms = {tool: [] for tool in TOOLS}
    for _, twin in pairs:
        for tool in TOOLS:
            if measure(tool, twin, args.twin_budget)["found"]:
                alarms[tool].append(name_of(twin))
    print(f"false alarms on the fixed twins ({args.twin_budget:g} s each): "
          + ", ".join(f"{tool} {len(alarms[tool])}" + (f" ({', '.join(alarms[tool])})" if alarms[tool] else "")
                      for tool in TOOLS))
    if args.plot:
        plot(args.plot, results, len(pairs), args.budget)
    if args.markdown:
        write_markdown(args.markdown, rows, found, cpu, alarms, len(pairs), args)
    print(f"({time.perf_counter() - started:.0f} s)")


def plot(path: str, results: dict, programs: int, budget: float) -> None:
    """Bugs found (of ``programs``) against CPU seconds spent per program, one line per tool."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(8, 4.2))
    for tool, outcomes in results.items():
        times = sorted(o["cpu"] for o in outcomes if o["found"])
        xs = [1e-3] + [max(t, 1e-3) for t in times] + [budget]
        ys = [0] + list(range(1, len(times) + 1)) + [len(times)]
        axes.step(xs, ys, where="post", label=f"{tool} ({len(times)})")
    axes.set_xscale("log")
    axes.set_xlabel("CPU seconds to the first failure, per program")
    axes.set_ylabel(f"bugs found (of {programs})")
    axes.legend(loc="upper left")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    print(f"plot written to {path}")


def write_markdown(path: str, rows, found, cpu, alarms, programs: int, args) -> None:
    lines = ["# Stress testing and detsched, measured", "",
             f"`python benchmarks/compare.py --budget {args.budget:g} --twin-budget {args.twin_budget:g}` on "
             f"Python {sys.version.split()[0]}, {os.cpu_count()} CPUs: {programs} buggy programs (the bundled examples, "
             "`benchmarks/cover_bugs.py`, `benchmarks/compare_programs.py`), each tool in a fresh process with a CPU "
             "budget per program. Stress testing runs the program on real threads with `sys.setswitchinterval(1e-6)` "
             f"and a {HANG_AFTER:g} s watchdog; detsched's strategies check races, as `detsched run` does. A cell is the "
             "CPU seconds to the first failure, `-` when the budget ran out.", "",
             "![Bugs found against CPU seconds](images/compare.png)", "",
             "| program | " + " | ".join(TOOLS) + " |", "|---|" + "---|" * len(TOOLS)]
    lines += [f"| {name} | " + " | ".join(cells) + " |" for name, cells in rows]
    lines += ["| **found** | " + " | ".join(f"**{found[tool]}/{programs}**" for tool in TOOLS) + " |",
              "| CPU seconds in all | " + " | ".join(f"{cpu[tool]:.0f}" for tool in TOOLS) + " |",
              "| false alarms on the fixed twins | " + " | ".join(str(len(alarms[tool])) for tool in TOOLS) + " |",
              "", "A `dfs` or `dpor` cell with `-` on a program that other tools fail is a search that did not reach "
              "the failing schedule within its budget (depth first, it spends it on the first subtrees). Figures "
              "depend on the machine; the counts are what to compare.", ""]
    with open(path, "w", encoding="utf-8") as out:
        out.write("\n".join(lines))
    print(f"table written to {path}")


if __name__ == "__main__":
    main()
