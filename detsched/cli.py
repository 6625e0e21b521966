"""The ``detsched`` command line: ``run`` explores a target, ``replay`` reproduces a failure from
its schedule, ``show`` prints a schedule's interleaving as a timeline.

Exit codes: 0 nothing found (or a replay that passed), 1 a failure found or reproduced, 2 usage
error (bad target, bad option, corrupt or stale schedule).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shlex
import signal
import sys
import threading
import warnings

from detsched import __version__
from detsched import settings
from detsched._core.clock import real_monotonic
from detsched._explore.explorer import explore, replay_traced
from detsched._explore.parallel import explore_in_parallel
from detsched._report import html
from detsched._report.coverage import write_json
from detsched._report.timeline import pace, plural, render_timeline
from detsched.errors import DetschedUsageError, ReplayDivergedWarning, ScheduleError
from detsched.schedule import Schedule

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2
#: As a shell reports a process that SIGINT ended.
EXIT_INTERRUPTED = 130
#: Seconds between progress-line updates on a terminal.
PROGRESS_EVERY = 0.5

_DESCRIPTION = """\
Deterministic concurrency testing for Python threads. detsched runs your function under a
controlled scheduler (one thread at a time, every switch chosen by a strategy), explores many
interleavings, and reports the first failure -- an exception in any thread, a deadlock, a lost
wakeup, a leaked thread, a livelock -- with a schedule string that replays it exactly.

TARGET is 'path/to/file.py::function' or 'package.module:function'; the function takes no
arguments and is called once per run."""

_EPILOG = """\
examples:
  detsched run examples/bank.py::main
  detsched run tests/test_cache.py::test_stampede --runs 5000 --strategy random
  detsched run examples/bank.py::fixed --strategy dfs --preemption-bound 2
  detsched run examples/bank.py::fixed --strategy dpor
  detsched replay examples/bank.py::main --schedule 'ds3:...'
  detsched replay failure.json
  detsched show examples/bank.py::main --schedule 'ds3:...'
  detsched lincheck examples/lincheck/counter.py::TestCounter
"""


def _argument(parse):
    """An argparse type from a ``detsched.settings`` parser: its reason becomes argparse's error."""
    def convert(text: str) -> int:
        try:
            return parse(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    convert.__name__ = parse.__name__.removeprefix("parse_")  # argparse names the type in errors
    return convert


_positive, _runs, _depth, _integer, _bound, _non_negative = map(_argument, (
    settings.parse_positive, settings.parse_runs, settings.parse_depth, settings.parse_integer, settings.parse_bound,
    settings.parse_non_negative))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="detsched", description=_DESCRIPTION, epilog=_EPILOG,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"detsched {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    run = commands.add_parser("run", help="explore interleavings of TARGET and report the first failure",
                              description="Run TARGET many times, each under a different interleaving, "
                                          "and stop at the first failure.")
    run.add_argument("target", metavar="TARGET", help="'file.py::function' or 'package.module:function'")
    run.add_argument("--strategy", default=settings.STRATEGY,
                     help="how to pick who runs next: pct (priority change points; good at rare orders), "
                          "random (uniform at each step), dfs (every schedule, depth first, until none is "
                          "left: 'verified'), dpor (dfs with partial-order reduction: one schedule per class "
                          "of equivalent interleavings), cover (steers runs towards orders of conflicting "
                          "operations not seen yet), or one a plugin adds. Default: pct")
    run.add_argument("--runs", type=_runs, default=settings.RUNS, help=f"how many runs to try (default {settings.RUNS})")
    run.add_argument("--seed", type=_integer, default=settings.SEED,
                     help="the same seed explores the same runs on any machine (default 0; "
                          "DETSCHED_SEED overrides)")
    run.add_argument("--depth", type=_depth, default=settings.DEPTH,
                     help=f"PCT bug depth: how many ordering constraints the bug needs (default {settings.DEPTH})")
    run.add_argument("--max-steps", type=_positive, default=settings.MAX_STEPS,
                     help="scheduling steps one run may take before it is reported as a livelock "
                          f"(default {settings.MAX_STEPS})")
    run.add_argument("--no-preempt-calls", dest="preempt_calls", action="store_false",
                     help="switch threads only at synchronisation operations, not also when user "
                          "code calls a function")
    run.add_argument("--no-preempt-writes", dest="preempt_writes", action="store_false", default=None,
                     help="do not make stores to attributes, items and globals in user code "
                          "scheduling points (races then need a call or a lock in their window, as under the GIL)")
    run.add_argument("--preemption-bound", type=_bound, default=None, metavar="K",
                     help="with --strategy dfs or dpor: only schedules with at most K preemptions (a switch away "
                          "from a thread that could go on); 'iterative': bounds 0, 1, 2... in turn until the runs "
                          "are spent")
    run.add_argument("--delay-bound", type=_non_negative, default=None, metavar="D",
                     help="with --strategy dfs: only schedules with at most D delays (each a step past the "
                          "thread a round-robin scheduler would run; often finds bugs sooner than a preemption bound)")
    run.add_argument("--time-budget", type=_argument(settings.parse_time_budget), default=None, metavar="SECONDS",
                     help="start no run once SECONDS of wall time are spent (the report says it stopped there)")
    run.add_argument("--jobs", type=_positive, default=1, metavar="N",
                     help="explore in N worker processes: pct and random split their runs, dfs its search tree, "
                          "dpor has its parts searched ahead; the report is the same for every N (unless the runs "
                          "end before a dfs search)")
    run.add_argument("--preemption", choices=settings.PREEMPTION_MODELS, default=None,
                     help="where threads may switch besides synchronisation: free-threaded (also between two "
                          "statements, at stores; the default) or gil (only where GIL CPython switches: "
                          "calls, loop back-edges, blocking operations)")
    run.add_argument("--no-races", dest="races", action="store_false",
                     help="do not check memory accesses for data races (unordered accesses of one "
                          "location, one a write); by default every run is checked")
    run.add_argument("--save", metavar="FILE", help="write the failing schedule to FILE as JSON")
    run.add_argument("--coverage", action="store_true",
                     help="trace every run and print which orders of conflicting operations (two threads on one "
                          "lock, queue, event...) the runs saw, and which pairs they saw in one order only")
    run.add_argument("--coverage-json", metavar="FILE",
                     help="write that coverage to FILE as JSON (implies --coverage)")

    lin = commands.add_parser("lincheck", help="check that a class's concurrent use is linearizable",
                              description="Check a @lincheck.check class: draw scenarios of its operations, run "
                                          "each in many interleavings and compare every history with its "
                                          "sequential model (see docs/lincheck.md).")
    lin.add_argument("target", metavar="TARGET", help="'file.py::TestClass' or 'package.module:TestClass'")
    lin.add_argument("--scenarios", type=_positive, default=None, metavar="N", help="scenarios to draw")
    lin.add_argument("--runs", type=_runs, default=None, metavar="N", help="interleavings per scenario")
    lin.add_argument("--strategy", default=None, help="as for run (default: the class's, auto: dpor where every interleaving fits in the runs, "
                          "else pct)")
    lin.add_argument("--scenario", metavar="JSON", help="with --schedule: replay this scenario of a failure")
    lin.add_argument("--schedule", metavar="STR", help="with --scenario: the 'ds3:...' string of the failure")

    for name, summary in (("replay", "reproduce a failure from its schedule"),
                          ("show", "print a schedule's interleaving as a timeline, one column per thread (one row "
                                    "per step, naming its thread, when there are too many threads)")):
        command = commands.add_parser(name, help=summary, description=summary[0].upper() + summary[1:] + ".")
        command.add_argument("source", metavar="FILE|TARGET",
                             help="a JSON file written by 'run --save', or the TARGET (with --schedule)")
        command.add_argument("--schedule", metavar="STR", help="the 'ds3:...' string a failure report printed")
        command.add_argument("--max-steps", type=_positive, default=settings.MAX_STEPS, help="as for run")
        if name == "show":
            command.add_argument("--html", metavar="FILE",
                                 help="also write the timeline to FILE as one self-contained HTML page (a column per "
                                      "thread, preemptions and the failing step marked, arrows for what ordered the "
                                      "threads)")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "run":
            return _run(args)
        if args.command == "lincheck":
            return _lincheck(args)
        target, schedule = _replay_inputs(args)
        return _replay(target, schedule, args, show=args.command == "show")
    except DetschedUsageError as exc:
        print(f"detsched: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("detsched: interrupted", file=sys.stderr)
        return 130


def _run(args) -> int:
    for option, path in (("--save", args.save), ("--coverage-json", args.coverage_json)):
        if path:
            _check_writable(option, path)  # before exploring, which may take minutes
    coverage = args.coverage or args.coverage_json is not None
    if coverage and args.jobs > 1:
        raise DetschedUsageError("--coverage counts the runs of one process: run without --jobs to measure coverage")
    options = dict(strategy=args.strategy, runs=args.runs, seed=args.seed, depth=args.depth, max_steps=args.max_steps,
                   preempt_calls=args.preempt_calls, preempt_writes=args.preempt_writes,
                   preemption=args.preemption, races=args.races)
    progress = _Progress(args.runs, shown=sys.stderr.isatty())
    try:
        if args.jobs > 1:
            if args.time_budget is not None:
                raise DetschedUsageError("--jobs splits a number of runs between processes: it takes no --time-budget; "
                                         "give --runs instead")
            report = explore_in_parallel(args.target, args.jobs, preemption_bound=args.preemption_bound,
                                         delay_bound=args.delay_bound, **options)
        else:
            with _interrupts_between_runs(progress):
                report = explore(args.target, preemption_bound=args.preemption_bound, delay_bound=args.delay_bound,
                                 progress=progress, time_budget=args.time_budget, coverage=coverage, **options)
    except KeyboardInterrupt:
        progress.clear()
        # What a search covered before it was stopped: runs that passed, nothing verified.
        runs = f"after {plural(progress.done, 'run')}: no failure in those" if args.jobs == 1 else "before a failure"
        print(f"interrupted {runs} (strategy={args.strategy}, seed={args.seed}); not verified", file=sys.stderr)
        return EXIT_INTERRUPTED
    progress.clear()
    print(f"explored {pace(report.runs, report.elapsed)}, strategy={report.strategy}, seed={report.seed}",
          file=sys.stderr)
    print(_coloured(str(report), "red" if report.failure is not None else "green"))
    if args.coverage_json:
        try:
            write_json(args.coverage_json, {args.target: report.coverage})
        except OSError as exc:
            raise DetschedUsageError(f"cannot write --coverage-json file {args.coverage_json!r}: {exc.strerror}") from None
    if report.failure is None:
        return EXIT_OK
    if args.save:
        failure = report.failure
        try:
            with open(args.save, "w") as handle:
                handle.write(failure.schedule.to_json(target=failure.target, kind=failure.kind,
                                                      message=failure.message, run_index=failure.run_index,
                                                      strategy=report.strategy, seed=report.seed))
        except OSError as exc:
            raise DetschedUsageError(f"cannot write --save file {args.save!r}: {exc.strerror}; the failure is not "
                                     "saved, but the replay line above reproduces it") from None
        print(f"saved: {args.save} (replay with: detsched replay {shlex.quote(args.save)})")
    return EXIT_FAILURE


_EXAMPLE_NAMES = {"--save": "failure.json", "--coverage-json": "coverage.json", "--html": "timeline.html"}


def _lincheck(args) -> int:
    from detsched import lincheck
    from detsched._explore.targets import locate

    cls, _ = locate(args.target, "class")
    if (args.scenario is None) != (args.schedule is None):
        raise DetschedUsageError("--scenario and --schedule replay a failure together: give both (as the "
                                 "failure's replay line does) or neither")
    if not isinstance(cls, type):
        raise DetschedUsageError(f"{args.target} is not a class decorated with @lincheck.check")
    if args.scenario is not None:
        try:
            result = lincheck.replay_scenario(cls, args.scenario, args.schedule)
        except ValueError as exc:  # json.JSONDecodeError, a scenario of the wrong shape
            raise DetschedUsageError(f"--scenario is not a scenario from a lincheck replay line: {exc}") from None
    else:
        overrides = {name: value for name, value in (("scenarios", args.scenarios), ("runs", args.runs),
                                                      ("strategy", args.strategy)) if value is not None}
        result = lincheck.run(cls, **overrides)
    print(_coloured(str(result), "red" if result.failure is not None else "green"))
    return EXIT_OK if result.failure is None else EXIT_FAILURE


def _check_writable(option: str, path: str) -> None:
    if os.path.isdir(path):
        raise DetschedUsageError(f"{option} {path} is a folder; give a file name, such as "
                                 f"{os.path.join(path, _EXAMPLE_NAMES[option])}")
    folder = os.path.dirname(path) or "."
    if not os.path.isdir(folder):
        raise DetschedUsageError(f"{option} {path}: the folder {folder!r} does not exist; create it first "
                                 f"(mkdir -p {shlex.quote(folder)}) or write the file somewhere else")


def _replay_inputs(args) -> tuple[str, str]:
    if args.schedule is not None:
        return args.source, args.schedule
    if args.source.endswith(".py") or "::" in args.source or ":" in args.source and not os.path.exists(args.source):
        raise DetschedUsageError(f"{args.command} {args.source} needs --schedule 'ds3:...' (or give a JSON file)")
    try:
        with open(args.source, encoding="utf-8") as handle:
            schedule, data = Schedule.from_json(handle.read())
    except OSError as exc:
        raise DetschedUsageError(f"cannot read schedule file {args.source!r}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ScheduleError(f"{args.source}: not a detsched schedule file: it is not text (expected the JSON "
                            "that 'detsched run --save' writes)") from None
    except ScheduleError as exc:
        raise ScheduleError(f"{args.source}: {exc}") from None
    target = data.get("target")
    if not isinstance(target, str):
        if isinstance(data.get("pytest"), str):  # written by the pytest plugin's --detsched-save-dir
            raise ScheduleError(f"{args.source} is the schedule of the pytest test {data.get('test')!r}, "
                                f"which needs its fixtures: replay it with\n  {data['pytest']}")
        raise ScheduleError(f"{args.source} has no \"target\"; pass the target and --schedule instead")
    return target, schedule.dumps()


def _replay(target: str, schedule: str, args, *, show: bool) -> int:
    page = getattr(args, "html", None)
    if page:
        _check_writable("--html", page)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ReplayDivergedWarning)
        failure, trace = replay_traced(target, schedule, max_steps=args.max_steps)
    departed = None
    for warning in caught:  # the target's own warnings are shown as usual
        if isinstance(warning.message, ReplayDivergedWarning):
            departed = warning.message
        else:
            warnings.showwarning(warning.message, warning.category, warning.filename, warning.lineno)
    if show:
        print(render_timeline(trace))
        print()
    if page:
        outcome = ("passed: the schedule ran to completion without a failure" if failure is None
                   else f"{failure.kind}: {failure.message}")
        try:
            html.write_page(page, trace, title=target, outcome=outcome, failure=failure,
                            replay=failure.replay_command if failure is not None else "")
        except OSError as exc:
            raise DetschedUsageError(f"cannot write --html file {page!r}: {exc.strerror}") from None
        print(f"timeline written to {page}")
    if failure is None:
        if departed is None:
            print("replay passed: the schedule ran to completion without a failure")
        else:
            print("replay passed")
            print(f"note: the run no longer followed the schedule {departed.where} (likely because the code "
                  f"changed), so this does not show the bug is fixed; explore again with: detsched run "
                  f"{shlex.quote(target)}")
        return EXIT_OK
    print(_coloured(f"{'failed' if departed else 'reproduced'} ({failure.kind}): {failure.message}", "red"))
    print(f"  in {failure.thread}\n\n{failure.details.rstrip()}" if show else failure.body)
    if departed is not None:  # the failure's schedule is the path this run took, not the one given
        if show:
            print("\n".join(["", *(f"note: {note}" for note in failure.notes)]))
        print(f"\nreplay: {failure.replay_command}")
    return EXIT_FAILURE


_COLOURS = {"red": "31", "green": "32"}


def _colour_enabled() -> bool:
    """Colour only on a terminal, never with ``NO_COLOR`` set (https://no-color.org) or on a dumb
    terminal; ``FORCE_COLOR`` turns it on anywhere."""
    if os.environ.get("NO_COLOR"):
        return False
    if os.environ.get("FORCE_COLOR"):
        return True
    return sys.stdout.isatty() and os.environ.get("TERM") != "dumb"


def _coloured(text: str, colour: str) -> str:
    """``text`` with its first line in ``colour`` (bold), if colour is on."""
    if not _colour_enabled():
        return text
    first, newline, rest = text.partition("\n")
    return f"\033[1;{_COLOURS[colour]}m{first}\033[0m{newline}{rest}"


@contextlib.contextmanager
def _interrupts_between_runs(progress: _Progress):
    """Ctrl-C stops the exploration after the run in progress, where ``progress`` is called.

    CPython raises ``KeyboardInterrupt`` wherever the main thread is, and one raised inside a
    weakref callback (every run drops thread objects that ``threading`` tracks in a ``WeakSet``) is
    printed and swallowed: the exploration would go on. The handler only takes note; a second
    Ctrl-C interrupts at once."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def take_note(signum, frame) -> None:
        if progress.interrupted:
            raise KeyboardInterrupt
        progress.interrupted = True

    previous = signal.signal(signal.SIGINT, take_note)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


class _Progress:
    """Runs done so far, and (on a terminal) a self-overwriting line of them and runs per second;
    called after every run, it also raises the ``KeyboardInterrupt`` that Ctrl-C asked for."""

    def __init__(self, total: int, *, shown: bool):
        self.total, self.started, self.shown, self.visible = total, real_monotonic(), 0.0, shown
        self.done = 0
        self.interrupted = False  # Ctrl-C was pressed during the run that just ended

    def __call__(self, done: int, left=None) -> None:
        self.done = done
        if self.interrupted:
            raise KeyboardInterrupt
        if not self.visible:
            return
        now = real_monotonic()
        if now - self.shown >= PROGRESS_EVERY:
            self.shown = now
            elapsed = max(now - self.started, 1e-9)
            rate = f"{done / elapsed:,.0f} runs/s" if done >= elapsed else f"{elapsed / max(done, 1):.1f} s a run"
            estimate = left() if left is not None else None
            tree = "" if estimate is None else f", about {estimate:,} schedules left in the tree"
            sys.stderr.write(f"\r\033[K  {done:,}/{self.total:,} runs ({rate}{tree})")
            sys.stderr.flush()

    def clear(self) -> None:
        if self.visible:
            sys.stderr.write("\r\033[K")
            sys.stderr.flush()


if __name__ == "__main__":
    sys.exit(main())
