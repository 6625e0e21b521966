"""Benchmark: explorations per second against the Python peers, on the same programs.

Peers are never part of this repository: install them in a scratch virtualenv outside it and pass
its interpreter, for instance

    python -m venv /tmp/peers && /tmp/peers/bin/pip install frontrun detangle
    python benchmarks/bench_peers.py --peer-python /tmp/peers/bin/python

The programs (``programs.py``): two threads x 20 lock operations (10 ``with lock:`` blocks around a shared counter);
a bank of 4 accounts with a lock each and 4 threads making 5 transfers each; two asyncio tasks x 20
``await asyncio.sleep(0)``. Every program passes, so each tool runs all the runs it is asked for.
detsched explores with PCT, all scheduling points on. frontrun runs its random strategy (one
execution per attempt) and its default DPOR with ``stop_on_first`` (it stops early when its
preemption bound is exhausted: its executions are counted, not asked for); detangle runs asyncio
only. frontrun's strategies run under its own launcher (``frontrun python ...``), as it requires. Each tool runs in its own process pinned to the same CPU, batches alternate between tools
(paired), and the best of ``--repeat`` batches counts. Target: detsched >= 3x the fastest peer on
threads, >= 1.5x on asyncio.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import textwrap

HERE = os.path.dirname(os.path.abspath(__file__))
REPOSITORY = os.path.dirname(HERE)

#: How many times the fastest peer's explorations/s detsched aims for, threads and asyncio.
TARGET_THREADS, TARGET_ASYNCIO = 3.0, 1.5


#: One batch of one tool on one program, run as ``python -c`` in a pinned process; prints
#: {"runs": executions done, "seconds": wall time}.
BATCH = textwrap.dedent('''
    import json, os, sys, time
    sys.path[:0] = [{repository!r}, {folder!r}]
    cpus = sorted(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {{cpus[-1]}})
    from programs import *  # benchmarks/programs.py: a file, so that every tool treats it as user code
    tool, program, runs = {tool!r}, {program!r}, {runs!r}
    started = time.perf_counter()
    done = runs
    if tool == "detsched":
        import detsched, detsched._core.controller as controller
        controller.PIN_TO_ONE_CPU = False  # pinned above, like the peers
        target = {{"lock counter": lock_counter, "bank": bank, "asyncio": two_tasks}}[program]
        assert detsched.explore(target, runs=runs - 1, seed=1).failure is None  # + PCT's calibration run
    elif tool.startswith("frontrun"):
        import frontrun
        strategy = tool.split()[1]
        setup, workers = {{"lock counter": (lock_counter_setup, [lock_counter_work] * 2),
                          "bank": (bank_setup, TELLERS),
                          "asyncio": (lambda: {{"done": 0}}, [sleeper, sleeper])}}[program]
        invariant = {{"lock counter": lambda s: s["n"][0] == 20, "bank": lambda s: sum(s["balances"]) == 400,
                     "asyncio": lambda s: s["done"] == 2}}[program]
        options = dict(max_attempts=runs, seed=1) if strategy == "random" else dict(max_executions=runs)
        result = frontrun.explore(setup=setup, workers=workers, invariant=invariant, strategy=strategy, **options)
        if asyncio.iscoroutine(result):  # async workers: explore() returns a coroutine to run
            result = asyncio.run(result)
        done = result.num_explored
    elif tool == "detangle":
        import detangle
        stats = detangle.explore(two_tasks, runs=runs, seed=1, shrink=False, database=False)
        done = getattr(stats, "runs", runs)
    print(json.dumps({{"runs": done, "seconds": time.perf_counter() - started}}))
''')


def batch(python: str, tool: str, program: str, runs: int) -> float:
    """Explorations per second of one batch (wall time, in a fresh pinned process)."""
    code = BATCH.format(repository=REPOSITORY, folder=HERE, tool=tool, program=program, runs=runs)
    command = [python, "-c", code]
    if tool.startswith("frontrun"):  # its strategies run only inside its own launcher
        command.insert(0, os.path.join(os.path.dirname(python), "frontrun"))
    completed = subprocess.run(command, capture_output=True, text=True, timeout=600)
    lines = completed.stdout.strip().splitlines()
    if completed.returncode != 0 or not lines:
        raise RuntimeError(f"{tool} on {program} failed:\n{completed.stderr[-2000:]}")
    figures = json.loads(lines[-1])
    return figures["runs"] / figures["seconds"]


def peer_tools(python: str) -> list[str]:
    probe = "import importlib.util as u; print(*[n for n in ('frontrun', 'detangle') if u.find_spec(n)])"
    found = subprocess.run([python, "-c", probe], capture_output=True, text=True).stdout.split()
    tools = []
    if "frontrun" in found:
        tools += ["frontrun random", "frontrun dpor"]
    if "detangle" in found:
        tools.append("detangle")
    return tools


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--peer-python", required=True, help="interpreter of a scratch venv with the peers installed")
    parser.add_argument("--runs", type=int, default=200, help="runs per batch")
    parser.add_argument("--repeat", type=int, default=3, help="paired batches per tool; the best counts")
    args = parser.parse_args(argv)
    peers = peer_tools(args.peer_python)
    if not peers:
        raise SystemExit(f"error: neither frontrun nor detangle is installed for {args.peer_python}")
    print(f"Python {sys.version.split()[0]} (detsched), peers: {', '.join(peers)}; {args.runs} runs per batch,"
          f" best of {args.repeat} paired batches, each process pinned to one CPU")
    for program in ("lock counter", "bank", "asyncio"):
        tools = ["detsched"] + [peer for peer in peers if program == "asyncio" or peer != "detangle"]
        best = dict.fromkeys(tools, 0.0)
        for _ in range(args.repeat):
            for tool in tools:
                python = sys.executable if tool == "detsched" else args.peer_python
                try:
                    best[tool] = max(best[tool], batch(python, tool, program, args.runs))
                except (RuntimeError, subprocess.TimeoutExpired) as exc:
                    print(f"  {tool} on {program}: {str(exc).splitlines()[0]}")
                    best[tool] = best[tool] or float("nan")
        ran = {tool: rate for tool, rate in best.items() if tool != "detsched" and rate == rate and rate > 0}
        print(f"\n{program}:")
        for tool, rate in best.items():
            print(f"  {tool:16s} {rate:8.0f} explorations/s")
        if ran:
            fastest = max(ran, key=ran.get)
            target = TARGET_ASYNCIO if program == "asyncio" else TARGET_THREADS
            ratio = best["detsched"] / ran[fastest]
            print(f"  detsched / {fastest}: {ratio:.1f}x (target >= {target:g}x: {'met' if ratio >= target else 'NOT met'})")


if __name__ == "__main__":
    main()
