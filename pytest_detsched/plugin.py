"""The pytest plugin (entry point ``detsched``): the marker and options, a plan per test made at
collection, running planned tests under detsched, the ``detsched`` fixture, sharding for
pytest-xdist and the terminal summary."""

from __future__ import annotations

import inspect
import re
import unittest

import pytest

import detsched as detsched_api
from detsched import plugins
from detsched.errors import DetschedUsageError
from detsched.integration import Coverage, forget_benign, pace, plural, write_coverage_json
from detsched.reproduce import reproduced_schedule
from detsched.schedule import Schedule, fingerprint

from . import hookspecs
from .options import MARKER_HELP, Options, add_options, check_strategy, default_seed, marker_settings, read_options
from .runner import (SETUP_STARTED_THREADS, TESTS_PREFIX, ItemRunner, Plan, RunContext, counting_thread_starts,
                     unittest_case)

_PLAN = pytest.StashKey[Plan]()
_CONTEXT = pytest.StashKey[RunContext]()
_PROBLEM = pytest.StashKey[str]()
_NOT_EXPLORED = pytest.StashKey[str]()  # why --detsched-all leaves an item to run as usual
#: The parameter --detsched-shards adds to marked tests; its value is the shard number.
SHARD_PARAMETER = "_detsched_shard"
#: Tests named in a usage error before the list is cut short.
NAMED_TESTS = 3


def pytest_addhooks(pluginmanager) -> None:
    pluginmanager.add_hookspecs(hookspecs)


def pytest_addoption(parser) -> None:
    add_options(parser)


def pytest_configure(config) -> None:
    config.addinivalue_line("markers", MARKER_HELP)
    options = read_options(config)
    config.pluginmanager.register(DetschedSession(config, options), "detsched-session")
    if options.shards > 1 and options.replay is None:
        config.pluginmanager.register(Shards(options.shards), "detsched-shards")


@pytest.fixture
def detsched(request) -> RunContext:
    """The detsched run in progress: ``run_index``, ``yield_point()``, ``schedule()`` (decisions so far)."""
    context = request.node.stash.get(_CONTEXT, None)
    if context is None:
        pytest.fail("detsched: the detsched fixture needs a test explored by detsched: mark it with "
                    "@pytest.mark.detsched", pytrace=False)
    return context


class DetschedSession:
    """The plugin's state for one pytest session."""

    def __init__(self, config, options: Options):
        self.config, self.options = config, options
        self.collected: dict[int, str] = {}  # fingerprint -> test id, of every test collected
        self.results: list[dict] = []  # statistics of every explored item, from its report
        self.strategies = _ConftestStrategies(config)
        plugins.register(self.strategies)
        for pattern in options.benign:
            detsched_api.benign(pattern)

    def pytest_unconfigure(self) -> None:
        plugins.unregister(self.strategies)
        forget_benign(self.options.benign)

    # ----------------------------------------------------------------- collection

    def pytest_itemcollected(self, item) -> None:
        name = unsharded_id(item)
        self.collected[fingerprint(name)] = name

    @pytest.hookimpl(trylast=True)  # after deselection (-k, -m)
    def pytest_collection_modifyitems(self, items) -> None:
        problems = {}  # item (None: every item) -> what is wrong
        for item in items:
            try:
                plan = self._plan(item)
            except DetschedUsageError as exc:
                problems[item] = f"{item.nodeid}: {exc}"
                continue
            if plan is not None:
                item.stash[_PLAN] = plan
                item.stash[_CONTEXT] = RunContext(plan)
        replay = self.options.replay
        if replay is not None and not any(item.stash.get(_PLAN, None) and item.stash[_PLAN].replay is replay
                                          for item in items):
            problems[None] = self._replay_mismatch(replay, "--detsched-replay", [unsharded_id(i) for i in items])
        if not problems:
            return
        if not hasattr(self.config, "workerinput"):
            raise pytest.UsageError("detsched: " + "\n".join(problems.values()))
        # A pytest-xdist worker cannot stop the session with a usage error: the items report it.
        for item in items:
            if item in problems or None in problems:
                item.stash[_PROBLEM] = f"detsched: {problems.get(item) or problems[None]}"

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_setup(self, item):
        problem = item.stash.get(_PROBLEM, None)
        if problem is not None:
            pytest.fail(problem, pytrace=False)
        reason = item.stash.get(_NOT_EXPLORED, None)
        if reason is not None:  # the summary says so (reports carry it from xdist workers too)
            item.user_properties.append(("detsched", {"test": unsharded_id(item), "mode": "plain", "reason": reason}))
        plan = item.stash.get(_PLAN, None)
        if plan is None or not plan.probe:
            result = yield
        else:
            with counting_thread_starts() as started:  # a test's threads may start in its fixtures
                result = yield
            item.stash[SETUP_STARTED_THREADS] = started
        if plan is not None and isinstance(item.cls, type) and issubclass(item.cls, unittest.TestCase):
            self._explore_unittest(item, plan)
        return result

    def _explore_unittest(self, item, plan: Plan) -> None:
        """A ``unittest.TestCase`` method runs through ``item.runtest``, not ``pytest_pyfunc_call``:
        have its runtest explore runs of fresh instances of the case (its plain runtest is the
        probe's call)."""
        plain_runtest = item.runtest

        def explore_runtest() -> None:
            runner = ItemRunner(item, plan, item.stash[_CONTEXT], self.options.save_dir, html_dir=self.options.html_dir,
                                function=unittest_case(item), plain_call=plain_runtest)
            try:
                runner.run()
            finally:
                item.user_properties.append(("detsched", runner.stats))

        item.runtest = explore_runtest

    def _plan(self, item) -> Plan | None:
        if not isinstance(item, pytest.Function):
            return None
        name = unsharded_id(item)
        marker = item.get_closest_marker("detsched")
        replay, origin = self._replay_for(item, name)
        if marker is None and replay is None and not self.options.explore_all:
            return None
        probe = marker is None and replay is None
        if isinstance(item.cls, type) and issubclass(item.cls, unittest.IsolatedAsyncioTestCase):
            if probe:
                return self._not_explored(item, "a unittest.IsolatedAsyncioTestCase method")
            raise DetschedUsageError("unittest.IsolatedAsyncioTestCase methods cannot be explored yet; write the "
                                     "test as an async pytest function marked @pytest.mark.detsched")
        if getattr(item.obj, "is_hypothesis_test", False):
            if probe:
                return self._not_explored(item, "a Hypothesis test")
            raise DetschedUsageError("a Hypothesis test cannot be explored run by run; let Hypothesis draw the "
                                     "interleavings with detsched.hypothesis.schedules() instead")
        if probe and inspect.iscoroutinefunction(item.obj):
            why = _why_async_not_probed(item)
            if why is not None:
                return self._not_explored(item, f"{why}; mark it @pytest.mark.detsched to explore it")
        settings = marker_settings(marker, self.options.defaults) if marker is not None else self.options.defaults
        check_strategy(settings.strategy)
        first_run, runs, part = 0, settings.runs, None
        shard = item.callspec.params.get(SHARD_PARAMETER) if hasattr(item, "callspec") else None
        count = self.options.shards
        if shard is not None and settings.strategy == "dfs":  # shards split its tree
            part = (shard, count)
        elif shard is not None and settings.strategy in RUN_WHOLE:  # not split: the first shard runs it whole
            runs = settings.runs if shard == 0 else 0
        elif shard is not None:  # shards split the runs
            first_run, end = settings.runs * shard // count, settings.runs * (shard + 1) // count
            runs = end - first_run
        seed = settings.seed if settings.seed is not None else default_seed(name)
        return Plan(settings, name, seed, first_run, runs, replay, origin, probe, part)

    @staticmethod
    def _not_explored(item, reason: str) -> None:
        item.stash[_NOT_EXPLORED] = reason

    def _replay_for(self, item, name: str) -> tuple[Schedule | None, str]:
        given = self.options.replay
        if given is not None and given.target == fingerprint(name):
            return given, "--detsched-replay"
        decorated = reproduced_schedule(item.obj)
        if decorated is None:
            return None, ""
        if decorated.target != fingerprint(name):
            raise DetschedUsageError(self._replay_mismatch(decorated, "@detsched.reproduce", [name]))
        return decorated, "@detsched.reproduce"

    def _replay_mismatch(self, schedule: Schedule, origin: str, selected: list[str]) -> str:
        recorded_for = self._recorded_for(schedule.target)
        named = ", ".join(selected[:NAMED_TESTS]) + (f" and {len(selected) - NAMED_TESTS} more"
                                                      if len(selected) > NAMED_TESTS else "")
        where = (f"recorded for {recorded_for}" if recorded_for else
                 f"recorded for another test (fingerprint {schedule.target:08x}, not a test collected here)")
        return (f"the schedule given with {origin} was {where}, but this run selected {named or 'no test'}. "
                "A schedule replays only in the test that recorded it"
                + (f": run pytest '{recorded_for}' --detsched-replay='...'" if recorded_for else "."))

    def _recorded_for(self, target: int) -> str | None:
        """The test a schedule was recorded for: one collected now, or one that failed before."""
        if target in self.collected:
            return self.collected[target]
        cache = getattr(self.config, "cache", None)
        return None if cache is None else cache.get(f"{TESTS_PREFIX}{target:08x}", None)

    # ----------------------------------------------------------------- running

    @pytest.hookimpl(tryfirst=True)
    def pytest_pyfunc_call(self, pyfuncitem):
        plan = pyfuncitem.stash.get(_PLAN, None)
        if plan is None:
            return None
        runner = ItemRunner(pyfuncitem, plan, pyfuncitem.stash[_CONTEXT], self.options.save_dir,
                            html_dir=self.options.html_dir)
        try:
            runner.run()
        finally:
            pyfuncitem.user_properties.append(("detsched", runner.stats))
        return True

    # ----------------------------------------------------------------- summary

    def pytest_runtest_logreport(self, report) -> None:
        if report.when == "call":  # under pytest-xdist, reports arrive from the workers
            self.results += [value for name, value in report.user_properties if name == "detsched"]

    def pytest_terminal_summary(self, terminalreporter) -> None:
        lines = summary_lines(self.results)
        if lines:
            terminalreporter.section("detsched")
            for line in lines:
                terminalreporter.write_line(line)
        path = self.options.coverage_json
        if path:
            try:
                write_coverage_json(path, merged_coverage(self.results))
            except OSError as exc:
                terminalreporter.write_line(f"detsched: cannot write --detsched-coverage-json {path!r}: {exc.strerror}",
                                            red=True)
            else:
                terminalreporter.write_line(f"detsched: concurrency coverage written to {path}")


#: Strategies whose runs depend on the runs before them: a test's first shard runs them all.
RUN_WHOLE = ("dpor", "cover")


def _why_async_not_probed(item) -> str | None:
    """Why an unmarked async test cannot be called plainly to see whether it starts threads, or
    None: pytest-asyncio runs it (its call is then synchronous), and no async fixture's value is
    bound to pytest-asyncio's loop, which detsched's runs would not share."""
    if item.get_closest_marker("asyncio") is None:
        return "an async test run by a plugin other than pytest-asyncio"
    for fixturedefs in item._fixtureinfo.name2fixturedefs.values():
        function = inspect.unwrap(fixturedefs[-1].func)
        if inspect.iscoroutinefunction(function) or inspect.isasyncgenfunction(function):
            return "an async test with async fixtures"
    return None


class Shards:
    """Splits each marked test into ``count`` items (``--detsched-shards``), each exploring a
    disjoint slice of the runs (of a ``dfs`` search: of its tree; a ``RUN_WHOLE`` strategy's runs
    are all made by the first); pytest-xdist then spreads them over its workers."""

    def __init__(self, count: int):
        self.count = count

    def pytest_generate_tests(self, metafunc) -> None:
        marked = metafunc.definition.get_closest_marker("detsched") is not None
        if marked and reproduced_schedule(metafunc.function) is None:
            metafunc.parametrize(SHARD_PARAMETER, range(self.count),
                                 ids=[shard_id(i, self.count) for i in range(self.count)])

    @pytest.fixture(autouse=True)
    def _detsched_shard(self):
        """Present in every test so that marked ones can be parametrized by shard."""


def shard_id(shard: int, count: int) -> str:
    return f"detsched_shard{shard + 1}of{count}"


_SHARD_ID = re.compile(r"detsched_shard\d+of\d+")


def unsharded_id(item) -> str:
    """The item's node id without its shard: what seeds and schedules are derived from, so that
    every shard explores part of one and the same exploration."""
    callspec = getattr(item, "callspec", None)
    if callspec is None or SHARD_PARAMETER not in callspec.params:
        return item.nodeid
    head, _, ids = item.nodeid[:-1].partition("[")
    kept = "-".join(part for part in ids.split("-") if not _SHARD_ID.fullmatch(part))
    return f"{head}[{kept}]" if kept else head


class _ConftestStrategies:
    """Forwards ``pytest_detsched_strategies`` (conftest files, plugins) into detsched's registry."""

    def __init__(self, config):
        self.config = config

    @plugins.hookimpl
    def detsched_strategies(self) -> dict:
        merged = {}
        for contributed in reversed(self.config.hook.pytest_detsched_strategies()):
            merged.update(contributed)
        return merged


def summary_lines(results: list[dict]) -> list[str]:
    """One line per explored test (its shards added up), the totals and failures by kind, then
    the tests not explored, by reason."""
    merged: dict[str, dict] = {}
    skipped: dict[str, list[str]] = {}  # reason -> tests not explored for it
    for result in results:
        if result["mode"] == "plain":
            skipped.setdefault(result["reason"], []).append(result["test"])
            continue
        if result["mode"] == "idle":  # a shard with no runs (a dpor test's other shards): adds nothing
            continue
        entry = merged.setdefault(result["test"], {**result, "runs": 0, "elapsed": 0.0, "kind": None,
                                                   "verified": True})
        entry["verified"] = entry["verified"] and result.get("verified", False)  # every shard's part
        entry["runs"] += result["runs"]
        entry["elapsed"] += result["elapsed"]
        entry["kind"] = entry["kind"] or result["kind"]
        entry["uncontrolled"] = list(dict.fromkeys([*entry.get("uncontrolled", ()), *result.get("uncontrolled", ())]))
    coverages = merged_coverage(results)
    lines, kinds = [], {}
    for name in sorted(merged):
        entry = merged[name]
        if entry["kind"]:
            kinds[entry["kind"]] = kinds.get(entry["kind"], 0) + 1
        outside = entry["uncontrolled"]
        caveat = f"; not under control: {plural(len(outside), 'finding')} (below)" if outside else ""
        lines.append(f"{name}: {_describe(entry)}{caveat}")
        lines += [f"  not under control: {text}" for text in outside]
        if name in coverages:
            lines.append(f"  {coverages[name].summary()}")
    if lines:
        runs = sum(entry["runs"] for entry in merged.values())
        elapsed = sum(entry["elapsed"] for entry in merged.values())
        total = f"{plural(len(merged), 'test')}, {pace(runs, elapsed)}"
        if kinds:
            total += "; failures: " + ", ".join(f"{count} {kind}" for kind, count in sorted(kinds.items()))
        lines.append(total)
    for reason in sorted(skipped):
        tests = sorted(set(skipped[reason]))
        shown = ", ".join(tests[:NAMED_TESTS]) + (f" and {len(tests) - NAMED_TESTS} more" if len(tests) > NAMED_TESTS else "")
        lines.append(f"not explored ({reason}): {plural(len(tests), 'test')}, ran as usual: {shown}")
    return lines


def merged_coverage(results: list[dict]) -> dict[str, Coverage]:
    """The concurrency coverage of each test explored with it, its shards merged."""
    coverages: dict[str, Coverage] = {}
    for result in results:
        if "coverage" in result:
            part = Coverage.from_json(result["coverage"])
            known = coverages.get(result["test"])
            coverages[result["test"]] = part if known is None else known.merged(part)
    return coverages


def _describe(entry: dict) -> str:
    failed = f", FAILED ({entry['kind']})" if entry["kind"] else ""
    if entry["mode"] == "nothing":
        return "starts no threads, stopped after its first run"
    if entry["mode"] == "error":
        return "usage error (see its failure above)"
    if entry["mode"] in ("replay", "cached"):
        source = "a given" if entry["mode"] == "replay" else "the cached failing"
        return f"replayed {source} schedule" + (failed or ", passed")
    if entry.get("verified"):  # a systematic search ran every schedule there is
        bounds = [plural(bound, word) for bound, word in ((entry.get("bound"), "preemption"),
                                                          (entry.get("delays"), "delay")) if bound is not None]
        within = f" up to {' and '.join(bounds)}" if bounds else ""
        every = ("one schedule per class of equivalent interleavings" if entry["strategy"] == "dpor"
                 else "every schedule")
        return f"verified{within}, {every} ran: {pace(entry['runs'], entry['elapsed'])} (strategy {entry['strategy']})"
    return f"{pace(entry['runs'], entry['elapsed'])} (strategy {entry['strategy']}, seed {entry['seed']}){failed}"
