"""detsched.plugins: the pluggy registry through which plugins add strategies and reporters."""

import threading

import pytest

import detsched
from detsched import plugins
from detsched.strategies import RandomWalk, strategy_factories


class FirstRunnable(RandomWalk):
    """Always the lowest-numbered runnable thread: a strategy small enough to check by hand."""

    name = "first-runnable"

    def next_task(self, runnable, current, *, yielding, at=(0, 0)):
        return runnable[0]


def two_threads():
    threads = [threading.Thread(target=lambda: None) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


@pytest.fixture
def registered():
    """Register plugin objects for one test, and take them out again."""
    added = []

    def register(plugin):
        plugins.register(plugin)
        added.append(plugin)

    yield register
    for plugin in added:
        plugins.unregister(plugin)


class StrategyPlugin:
    @plugins.hookimpl
    def detsched_strategies(self):
        return {"first-runnable": FirstRunnable}


def test_a_plugins_strategy_is_explored_by_name(registered):
    registered(StrategyPlugin())
    report = detsched.explore(two_threads, strategy="first-runnable", runs=3)
    assert (report.failure, report.runs, report.strategy) == (None, 3, "first-runnable")


def test_unknown_strategy_lists_the_plugins_strategies_too(registered):
    registered(StrategyPlugin())
    with pytest.raises(detsched.DetschedUsageError, match="choose one of: cover, dfs, dpor, first-runnable, pct, random"):
        detsched.explore(two_threads, strategy="nope")


def test_unregistered_strategy_is_gone():
    plugin = StrategyPlugin()
    plugins.register(plugin)
    plugins.unregister(plugin)
    assert "first-runnable" not in strategy_factories()


def test_a_plugin_may_not_redefine_a_builtin_strategy(registered):
    class Impostor:
        @plugins.hookimpl
        def detsched_strategies(self):
            return {"pct": FirstRunnable}

    registered(Impostor())
    with pytest.raises(detsched.DetschedUsageError, match="redefines the built-in strategy 'pct'"):
        strategy_factories()


def test_a_reporter_plugin_writes_the_failure_text(registered):
    class Terse:
        @plugins.hookimpl
        def detsched_format_failure(self, failure):
            return f"{failure.kind}!"

    registered(Terse())

    def failing():
        two_threads()
        raise ValueError("boom")

    failure = detsched.explore(failing, runs=1).failure
    assert plugins.format_failure(failure) == "exception!"


def test_without_reporters_the_text_is_the_failures_own():
    failure = detsched.explore(lambda: 1 / 0, runs=1).failure
    assert plugins.format_failure(failure) == str(failure)


class Incomplete:
    """A strategy without ``calibrate`` or ``next_data``."""

    name = "incomplete"

    def __init__(self, *, seed, depth):
        pass

    def new_execution(self, run_index):
        pass

    def next_task(self, runnable, current, *, yielding, at=(0, 0)):
        return runnable[0]


def test_a_plugins_strategy_that_lacks_part_of_the_protocol_is_refused_by_name(registered):
    class IncompletePlugin:
        @plugins.hookimpl
        def detsched_strategies(self):
            return {"incomplete": Incomplete}

    registered(IncompletePlugin())
    with pytest.raises(detsched.DetschedUsageError,
                       match=r"strategy 'incomplete' \(Incomplete\) lacks calibrate\(\), next_data\(\)"):
        detsched.explore(two_threads, strategy="incomplete")
