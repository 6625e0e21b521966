"""Running one test item under detsched: replay a schedule (given, decorated, or the one that failed
last time) or explore, and turn a failure into the report pytest shows, ending with the lines
that replay it."""

from __future__ import annotations

import contextlib
import inspect
import os
import re
import threading
import time
import unittest
import warnings
import zlib
from dataclasses import dataclass

import pytest

import detsched
import detsched.settings
from detsched import Failure, Report, explore, replay
from detsched.errors import DetschedUsageError, ReplayDiverged, ReplayDivergedWarning, ScheduleError
from detsched.integration import (Target, format_failure, is_project_file, schedule_so_far, started_threads,
                                  write_html_timeline)
from detsched.schedule import Schedule, fingerprint

from .options import Settings

#: Keys in pytest's cache (``config.cache``): the schedule that failed last, per item (by a CRC-32
#: of its node id), and the test each failing schedule's fingerprint belongs to, to name it when
#: the schedule is pasted into another test. One file per key, so xdist workers never collide.
CACHE_PREFIX = "detsched/failing/"
TESTS_PREFIX = "detsched/tests/"


class DetschedWarning(pytest.PytestWarning):
    """Something about a detsched test deserves attention but is not a failure."""


@dataclass(frozen=True)
class Plan:
    """What the plugin does with one test item; made at collection."""

    settings: Settings
    test_id: str  # node id without any shard part: what schedules are fingerprinted with
    seed: int
    first_run: int  # a shard explores runs first_run .. first_run + runs - 1
    runs: int
    replay: Schedule | None = None  # replay this schedule instead of exploring
    replay_origin: str = ""  # where that schedule came from, for messages
    probe: bool = False  # unmarked, under --detsched-all: explore only if a plain call starts threads
    shard: tuple[int, int] | None = None  # dfs: search part shard[0] of shard[1] of the tree (all its runs)


class RunContext:
    """What the ``detsched`` fixture gives a test: the run in progress and its decisions so far."""

    def __init__(self, plan: Plan):
        self.test_id = plan.test_id
        self.strategy = plan.settings.strategy
        self.seed = plan.seed
        #: Index of the exploration run in progress. The runs that shrink and replay a failure come
        #: after the failing run and see the index that follows it.
        self.run_index = plan.first_run

    @staticmethod
    def yield_point() -> None:
        """Let the strategy run another thread here (a scheduling point)."""
        detsched.yield_point()

    def schedule(self) -> Schedule | None:
        """The decisions the current run made so far, as a ``Schedule``; None outside a run."""
        origin = Schedule(fingerprint(self.test_id), self.strategy, self.seed, self.run_index, 0, ())
        return schedule_so_far(origin)


class _NothingToExplore(Exception):
    """The first run passed without starting a thread: every other run would be the same."""


def _test_function(function):
    """The test's own function. An async test wrapped by another plugin to run in that plugin's
    loop (pytest-asyncio uses ``functools.wraps``) is unwrapped, so its coroutine runs in
    detsched's controlled loop instead."""
    inner = inspect.unwrap(function, stop=inspect.iscoroutinefunction)
    return inner if inspect.iscoroutinefunction(inner) else function


class ItemRunner:
    """Runs one planned item, raising pytest's outcome exceptions; ``stats`` says what it did."""

    def __init__(self, item: pytest.Item, plan: Plan, context: RunContext, save_dir: str | None, *,
                 html_dir: str | None = None, function=None, plain_call=None):
        """``function`` is what a run calls with the test's arguments (the test function, by
        default); ``plain_call`` the test's own call as pytest makes it, for --detsched-all's probe;
        failing schedules go to ``save_dir`` and HTML timelines of failures to ``html_dir``, if given."""
        self.item, self.plan, self.context, self.save_dir, self.html_dir = item, plan, context, save_dir, html_dir
        self.function = function or _test_function(item.obj)
        self.plain_call = plain_call or (lambda: item.obj(**self.fixtures.arguments()))
        self.fixtures = FunctionFixtures(item)
        self.blocked_after = _blocked_after(_timeout(item))
        self.target = Target(self._body, plan.test_id, plan.test_id, report_left_behind=not plan.probe, let_go=True,
                             prepare=self.fixtures.prepare, arguments=self._arguments)
        # Tasks of an async test interleave in detsched's event loop even without threads.
        self.saw_threads = inspect.iscoroutinefunction(self.function)
        self.raised = False
        self.stats = {"test": plan.test_id, "runs": 0, "elapsed": 0.0, "strategy": plan.settings.strategy,
                      "seed": plan.seed, "kind": None, "mode": "explore"}

    def _arguments(self) -> tuple:
        """The test function and its parametrized arguments: closures they hold (a factory's
        product passed through ``parametrize``) get scheduling points in every run."""
        callspec = getattr(self.item, "callspec", None)
        return (self.function, *(callspec.params.values() if callspec is not None else ()))

    def run(self) -> None:
        started = []  # the threads the plain call and its fixtures started
        if self.plan.probe:
            # The test's own run, as pytest would make it: it decides whether there is anything
            # to explore, and a test that cannot run under control keeps this outcome.
            with counting_thread_starts() as started:
                self.plain_call()
            started += self.item.stash.get(SETUP_STARTED_THREADS, [])
            if not started:
                self.stats.update(mode="plain", reason="started no thread")
                return
        try:
            self.fixtures.teardown()  # every run sets up and tears down its own
            _let_end(started)
            if self.plan.replay is not None:
                self._replay_given()
            elif not self._replay_cached():
                self._explore()
            return
        except DetschedUsageError as exc:
            if self.plan.probe:
                self.stats.update(mode="plain", reason=f"cannot run under control: {_first_sentence(exc)}")
                return
            problem = f"detsched: {exc}"
        self.stats["mode"] = "error"
        pytest.fail(problem, pytrace=False)  # outside the except block: no "during handling" chain

    # ----------------------------------------------------------------- the test body, once per run

    def _body(self):
        """One run: the test's function-scoped fixtures are set up, used and torn down inside it,
        so every run starts from the fixtures the test would have had, and what a fixture's
        teardown does (stopping the test's workers) happens under control, before leaks are
        judged."""
        try:
            try:
                arguments = self.fixtures.setup()
            except Exception as error:
                raise DetschedUsageError(
                    f"setting up the test's fixtures failed under detsched's control ({type(error).__name__}: "
                    f"{error}); a fixture that needs the real main thread, real processes or real I/O cannot be "
                    "set up inside a run") from error
            try:
                outcome = self.function(**arguments)
            except BaseException:
                try:
                    self.fixtures.teardown()
                except Exception:  # the test's own failure is the one to report
                    pass
                raise
            self.fixtures.teardown()
            return outcome
        except BaseException:
            self.raised = True
            raise
        finally:
            if started_threads():
                self.saw_threads = True

    def _progress(self, done: int, left=None) -> None:
        self.context.run_index = self.plan.first_run + done
        if done == 1 and not self.saw_threads and not self.raised:
            raise _NothingToExplore

    # ----------------------------------------------------------------- the three ways to run

    def _explore(self) -> None:
        settings = self.plan.settings
        if self.plan.runs == 0:  # a shard with nothing left to explore
            self.stats["mode"] = "idle"
            return
        try:
            report = explore(self.target, strategy=settings.strategy, runs=self.plan.runs, seed=self.plan.seed,
                             depth=settings.depth, max_steps=settings.max_steps, races=settings.races,
                             preemption=settings.preemption, preemption_bound=settings.preemption_bound,
                             delay_bound=settings.delay_bound, first_run=self.plan.first_run, shard=self.plan.shard,
                             blocked_after=self.blocked_after, progress=self._progress, coverage=settings.coverage)
        except _NothingToExplore:
            self.stats.update(runs=1, mode="nothing")
            self.item.warn(DetschedWarning(
                f"{self.plan.test_id} starts no threads: nothing to explore, so it stopped after its first "
                "run. Remove @pytest.mark.detsched, or start the threads inside the test body."))
            return
        self.stats.update(runs=report.runs, elapsed=report.elapsed, seed=report.seed, verified=report.exhausted,
                          bound=report.bound, delays=report.delays)
        if report.coverage is not None:
            self.stats["coverage"] = report.coverage.as_json(with_orders=True)
        if report.uncontrolled:
            self.stats["uncontrolled"] = list(report.uncontrolled)
        if report.failure is not None and self.plan.probe:
            reason = _NOT_EXPLORED_WHEN_PROBED.get(report.failure.kind)
            if reason is None and not report.failure.schedule.deviations and report.failure.kind != "data-race":
                reason = _FAILS_IN_THE_DEFAULT_ORDER
            if reason is not None:
                self.stats.update(mode="plain", reason=reason.format(settings))
                return
        if report.failure is not None:
            self._remember(report.failure)
            self._fail(report.failure, self._found_headline(report))

    def _replay_given(self) -> None:
        self.stats["mode"] = "replay"
        try:
            failure = self._replay(self.plan.replay)
        except ReplayDiverged as exc:
            raise DetschedUsageError(
                f"{exc}\nThe schedule from {self.plan.replay_origin} no longer applies. If the code changed to "
                "fix this failure, run the test without it to explore again.") from None
        if failure is not None:
            self._fail(failure, f"detsched replayed the schedule from {self.plan.replay_origin} "
                                f"(recorded in run {failure.run_index}):")

    def _replay_cached(self) -> bool:
        """Replay the schedule that failed last time, if any; True if it failed again."""
        cache = getattr(self.item.config, "cache", None)
        if cache is None:
            return False
        key = _failing_key(self.item)
        entry = cache.get(key, None)
        if not isinstance(entry, dict) or entry.get("test") != self.item.nodeid:
            return False
        try:
            with warnings.catch_warnings():  # the code changed since it failed: nothing to warn about
                warnings.simplefilter("ignore", ReplayDivergedWarning)
                failure = self._replay(Schedule.loads(entry["schedule"]))
        except (ScheduleError, ReplayDiverged, KeyError, TypeError):
            failure = None  # the code changed since: explore afresh
        if failure is None:
            cache.set(key, None)
            return False
        self.stats["mode"] = "cached"
        self._fail(failure, "detsched replayed the schedule that failed in the last session (kept in pytest's "
                            f"cache), recorded in run {failure.run_index}:")
        return True

    def _replay(self, schedule: Schedule) -> Failure | None:
        self.context.run_index = schedule.run_index
        failure = replay(self.target, schedule, max_steps=self.plan.settings.max_steps,
                         blocked_after=self.blocked_after)
        self.stats.update(runs=1, kind=failure.kind if failure else None)
        return failure

    # ----------------------------------------------------------------- reporting

    def _found_headline(self, report: Report) -> str:
        failure = report.failure
        return (f"detsched found a failure in run {failure.run_index} after {report.runs} "
                f"run{'s' * (report.runs != 1)} (strategy {report.strategy}, seed {report.seed}):")

    def _remember(self, failure: Failure) -> None:
        """Keep the failing schedule in pytest's cache (replayed first next time) and in --detsched-save-dir."""
        schedule = failure.schedule.dumps()
        cache = getattr(self.item.config, "cache", None)
        if cache is not None:
            cache.set(_failing_key(self.item), {"test": self.item.nodeid, "schedule": schedule})
            cache.set(f"{TESTS_PREFIX}{failure.schedule.target:08x}", self.plan.test_id)
        if self.save_dir:
            os.makedirs(self.save_dir, exist_ok=True)
            name = _file_name(self.plan.test_id) + ".detsched.json"
            with open(os.path.join(self.save_dir, name), "w") as handle:
                handle.write(failure.schedule.to_json(
                    test=self.plan.test_id, kind=failure.kind, message=failure.message, run_index=failure.run_index,
                    pytest=replay_command(self.item, self.plan.test_id, schedule)))

    def _fail(self, failure: Failure, headline: str) -> None:
        exception = failure.exception
        if isinstance(exception, (pytest.skip.Exception, pytest.xfail.Exception)):
            raise exception  # pytest.skip() or xfail() called by the test body
        self.stats["kind"] = failure.kind
        text = self.item.ihook.pytest_detsched_failure_text(item=self.item, failure=failure) or format_failure(failure)
        lines = [headline, text.rstrip()]
        if failure.notes and failure.run_index > 0:
            lines.append(
                "note: every run sets up the test's function-scoped fixtures afresh, but module globals and "
                "fixtures of a wider scope are shared by all its runs; a failure that appears only after "
                "earlier runs, and not on its own replay, is often state an earlier run left there (a list "
                "appended to, a file written). Keep such state in the test or in a function-scoped fixture.")
        replay = replay_lines(self.item, self.plan.test_id, failure.schedule.dumps())
        if self.html_dir and failure.trace:
            lines.append(f"HTML timeline: {self._write_html(failure, replay[0].removeprefix('Replay with: '))}")
        lines += ["", *replay]
        pytest.fail("\n".join(lines), pytrace=False)

    def _write_html(self, failure: Failure, replay: str) -> str:
        os.makedirs(self.html_dir, exist_ok=True)
        path = os.path.join(self.html_dir, _file_name(self.plan.test_id) + ".html")
        write_html_timeline(path, failure.trace, title=self.plan.test_id, outcome=f"{failure.kind}: {failure.message}",
                            failure=failure, replay=replay)
        return path


def _file_name(test_id: str) -> str:
    """A file name for a test's outputs: its node id with what a file system may refuse replaced."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", test_id).strip("_")


def _failing_key(item: pytest.Item) -> str:
    return f"{CACHE_PREFIX}{zlib.crc32(item.nodeid.encode()):08x}"


def replay_lines(item: pytest.Item, test_id: str, schedule: str) -> list[str]:
    """The two lines under a failure that replay it, in the style of Hypothesis's."""
    return [f"Replay with: {replay_command(item, test_id, schedule)}",
            f"         or: @detsched.reproduce('{schedule}')"]


def replay_command(item: pytest.Item, test_id: str, schedule: str) -> str:
    # Schedule strings are URL-safe base64: always safe inside single quotes.
    return f"pytest {_quoted(_invocation_relative(item, test_id))} --detsched-replay='{schedule}'"


def _invocation_relative(item: pytest.Item, test_id: str) -> str:
    """``test_id`` with its path relative to where pytest was started, so the line can be pasted."""
    path, sep, rest = test_id.partition("::")
    if not sep:
        return test_id
    start = item.config.invocation_params.dir
    relative = os.path.relpath(item.config.rootpath / path, start)
    return f"{relative.replace(os.sep, '/')}::{rest}"


def _quoted(text: str) -> str:
    return "'" + text.replace("'", "'\"'\"'") + "'"


def _timeout(item: pytest.Item) -> float | None:
    """The item's pytest-timeout limit, from its ``timeout`` marker or ``--timeout``, if any."""
    marker = item.get_closest_marker("timeout")
    if marker is not None:
        value = marker.kwargs.get("timeout", marker.args[0] if marker.args else None)
    else:
        value = item.config.getoption("timeout", None)
    try:
        return float(value) if value else None
    except (TypeError, ValueError):
        return None  # pytest-timeout reports its own bad input


def _blocked_after(timeout: float | None) -> float | None:
    """How long detsched's watchdog waits before it reports a thread stuck outside its control (a
    ``blocked`` failure, with the thread's stack): before a pytest-timeout limit kills the test. A
    third of the limit leaves room for the warm-up run that precedes a replay, which blocks too."""
    return None if timeout is None else min(detsched.settings.BLOCKED_AFTER, timeout / 3)


class FunctionFixtures:
    """The test's function-scoped fixtures, set up afresh for every run.

    Built on pytest's fixture machinery (``FixtureDef.finish`` and the request's fixture cache): a
    fixture torn down here is set up again with its dependencies, params and finalizers, as pytest
    would for the next test. The project's own fixtures (from its conftest.py files and test
    modules) are set up and torn down inside each run, under control, where interleavings in them
    are explored and a teardown that stops the test's workers runs before leaks are judged. Those
    of pytest and its plugins (tmp_path, monkeypatch, pytest-asyncio's runner, a benchmark
    fixture) are renewed between runs, outside control: some need the real main thread or the
    real event loop policy. Fixtures of a wider scope are shared by all runs, as by all tests."""

    def __init__(self, item: pytest.Item):
        self.item = item
        self.request = item._request
        defs = self.request._fixture_defs
        # In setup order: torn down in reverse, so a fixture goes before those it depends on.
        names = [name for name, fixturedef in defs.items() if fixturedef.scope == "function"]
        self.inside = [name for name in names if _is_project_fixture(defs[name])]
        self.outside = [name for name in names if name not in self.inside]

    def arguments(self) -> dict:
        """The test function's arguments, from the fixtures now set up."""
        return {name: self.item.funcargs[name] for name in self.item._fixtureinfo.argnames}

    def prepare(self) -> None:
        """Before a run, outside control: renew the fixtures of pytest and its plugins."""
        self._finish(self.outside)
        for name in self.outside:
            self.item.funcargs[name] = self.request.getfixturevalue(name)

    def setup(self) -> dict:
        """Inside a run: set up the project's fixtures, and return the test's arguments."""
        self.request._fillfixtures()
        return self.arguments()

    def teardown(self) -> None:
        """Tear down the project's fixtures (at the end of a run, and before the first)."""
        self._finish(self.inside)

    def _finish(self, names: list[str]) -> None:
        errors = []
        defs = self.request._fixture_defs
        for name in reversed(names):
            self.item.funcargs.pop(name, None)
            fixturedef = defs.pop(name, None)
            if fixturedef is None:
                continue
            try:
                fixturedef.finish(self.request)
            except BaseException as error:  # pytest goes on tearing down the others too
                errors.append(error)
        if errors:
            raise errors[0]


def _is_project_fixture(fixturedef) -> bool:
    code = getattr(inspect.unwrap(fixturedef.func), "__code__", None)
    return code is not None and is_project_file(code.co_filename)


def _first_sentence(error: BaseException) -> str:
    """The gist of a usage error, for a summary line: its first sentence, up to a colon if long."""
    text = str(error).split(". ", 1)[0]
    return text.split(": ", 1)[0] if len(text) > 100 else text


def unittest_case(item: pytest.Item):
    """What one run of a ``unittest.TestCase`` method does: a fresh instance of its class runs
    setUp, the test and tearDown (and cleanups), as ``unittest`` would; its first error or failure
    is raised, and a skip skips."""
    def run_case() -> None:
        case = type(item.instance)(item.name)
        outcome = _CaseOutcome()
        case.run(outcome)
        if outcome.error is not None:
            raise outcome.error[1].with_traceback(outcome.error[2])
        if outcome.skipped is not None:
            pytest.skip(outcome.skipped)

    return run_case


class _CaseOutcome(unittest.TestResult):
    """Keeps the first error or failure of a test case, with its traceback, and a skip's reason."""

    def __init__(self):
        super().__init__()
        self.error = None  # (type, exception, traceback)
        self.skipped: str | None = None

    def addError(self, test, err) -> None:
        self.error = self.error or err

    addFailure = addError

    def addSubTest(self, test, subtest, err) -> None:
        if err is not None:
            self.addError(test, err)

    def addSkip(self, test, reason: str) -> None:
        self.skipped = reason

    def addUnexpectedSuccess(self, test) -> None:
        error = AssertionError(f"{test} passed but is marked @unittest.expectedFailure")
        self.addError(test, (AssertionError, error, None))


#: Failures that leave an unmarked test (under ``--detsched-all``) with the outcome of its plain
#: call, and the reason the summary gives: its runs are longer than the bound, or one of its threads
#: blocked where detsched cannot see (a ``multiprocessing`` lock, real I/O), which says nothing
#: about the test, whose plain call passed.
_NOT_EXPLORED_WHEN_PROBED = {
    "step-limit": "a run took more than max_steps={0.max_steps} steps",
    "blocked": "a thread blocked in code detsched does not control",
}

#: Why an unmarked test whose run in the default order failed, though its plain call passed, is
#: left with the plain call's outcome: no interleaving explains the failure (that order is the
#: plain one), so it comes from what the runs do differently -- they run the test again in the same
#: process, after state the plain call left (a database it left locked), under a controlled world.
#: A data race needs no particular order, so it is still reported.
_FAILS_IN_THE_DEFAULT_ORDER = ("it failed under control in the default order, where its plain call passed (state "
                               "the plain call left, or code detsched does not control)")

#: Seconds the non-daemon threads that the probe's plain call started get, together, to end once
#: its fixtures are torn down (an actor asked to stop), so that they do not run beside the first
#: runs, outside control, on the objects the runs share with them (the actor registry).
SETTLE_SECONDS = 1.0


def _let_end(threads: list[threading.Thread]) -> None:
    deadline = time.monotonic() + SETTLE_SECONDS
    for thread in threads:
        left = deadline - time.monotonic()
        if left <= 0:
            return
        if not thread.daemon and thread.is_alive():
            thread.join(left)


#: The threads the item's fixtures started during pytest's setup (items --detsched-all probes).
SETUP_STARTED_THREADS = pytest.StashKey[list]()


@contextlib.contextmanager
def counting_thread_starts():
    """Count ``Thread.start()`` calls in the block: yields the list of threads started."""
    real_start = threading.Thread.start
    started = []

    def counting_start(thread, *args, **kwargs):
        started.append(thread)
        return real_start(thread, *args, **kwargs)

    threading.Thread.start = counting_start
    try:
        yield started
    finally:
        threading.Thread.start = real_start
