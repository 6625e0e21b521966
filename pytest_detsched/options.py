"""Settings of the pytest plugin: command-line and ini options, the marker's arguments, and how
they combine into the settings one test is explored with.

Precedence, highest first: the marker's arguments, the command line, the ini file, the defaults
below. A marker states what one test needs; options set the default for every other test.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, replace

import pytest

from detsched import settings
from detsched.errors import DetschedUsageError
from detsched.schedule import Schedule
from detsched.strategies import strategy_factories

#: Runs per explored test unless told otherwise: a few tenths of a second for a small test, cheap
#: enough for every run of a suite. Raise it in CI with ``--detsched-runs``.
DEFAULT_RUNS = 200
DEFAULT_STRATEGY = settings.STRATEGY
DEFAULT_DEPTH = settings.DEPTH
DEFAULT_MAX_STEPS = settings.MAX_STEPS
#: Arguments ``@pytest.mark.detsched(...)`` accepts.
MARKER_ARGUMENTS = ("runs", "strategy", "depth", "seed", "max_steps", "races", "preemption", "preemption_bound",
                    "delay_bound")
MARKER_HELP = (f"detsched(runs={DEFAULT_RUNS}, strategy={DEFAULT_STRATEGY!r}, depth={DEFAULT_DEPTH}, seed=None, "
               f"max_steps={DEFAULT_MAX_STEPS}, races=True, preemption='free-threaded', preemption_bound=None, delay_bound=None): explore the "
               "test's thread interleavings under detsched's controlled scheduler, re-running the body "
               "once per run, and check its memory accesses for data races")


@dataclass(frozen=True)
class Settings:
    """How one test is explored."""

    runs: int = DEFAULT_RUNS
    strategy: str = DEFAULT_STRATEGY
    depth: int = DEFAULT_DEPTH
    seed: int | None = None  # None: derived from the test's node id
    max_steps: int = DEFAULT_MAX_STEPS
    races: bool = True  # check memory accesses for data races
    preemption: str = "free-threaded"  # or "gil": no switches at stores (settings.PREEMPTION_MODELS)
    preemption_bound: int | None = None  # dfs and dpor: only schedules with at most this many preemptions
    delay_bound: int | None = None  # dfs: only schedules with at most this many delays
    coverage: bool = False  # trace every run and count the orders of conflicting operations it saw


@dataclass(frozen=True)
class Options:
    """The session-wide options, parsed and checked once."""

    defaults: Settings
    replay: Schedule | None
    explore_all: bool
    save_dir: str | None
    shards: int
    benign: tuple[str, ...] = ()  # ``module:Class.attribute`` patterns of intentional races
    coverage_json: str | None = None  # where to write every explored test's coverage
    html_dir: str | None = None  # where to write an HTML timeline of each failure


def add_options(parser) -> None:
    group = parser.getgroup("detsched", "detsched: explore thread interleavings of marked tests")
    _add(parser, group, "runs", "N", f"runs per explored test (default {DEFAULT_RUNS}; a marker's runs= wins)")
    _add(parser, group, "strategy", "NAME",
         "how to pick who runs next: pct, random, dfs (every schedule), dpor (one per class of equivalent "
         "interleavings), cover (towards orders of conflicting operations not seen yet), or a plugin's "
         f"strategy (default {DEFAULT_STRATEGY})")
    _add(parser, group, "seed", "S",
         "seed of every exploration (default: a CRC-32 of each test's node id, the same on every machine "
         "and under pytest-xdist)")
    _add(parser, group, "max-steps", "N",
         f"scheduling steps one run may take before it is reported as a livelock (default {DEFAULT_MAX_STEPS})")
    group.addoption("--detsched-no-races", action="store_true", default=None,
                    help="do not check memory accesses for data races (ini: detsched_races = false)")
    parser.addini("detsched_races", "check the memory accesses of explored tests for data races", type="bool",
                  default=True)
    parser.addini("detsched_benign", "intentional data races not to report, one 'module:Class.attribute' "
                  "(or 'module:GLOBAL') pattern a line, * and ? as wildcards", type="linelist", default=[])
    group.addoption("--detsched-replay", metavar="'ds3:...'", default=None,
                    help="replay this schedule (printed under a failure) in the test it was recorded for, "
                         "instead of exploring")
    group.addoption("--detsched-all", action="store_true", default=None,
                    help="also explore unmarked tests that start threads (ini: detsched_all = true)")
    parser.addini("detsched_all", "explore every test that starts threads, marked or not", type="bool",
                  default=False)
    _add(parser, group, "preemption", "MODEL",
         "where threads may switch besides synchronisation: free-threaded (also at stores, the default) or gil")
    _add(parser, group, "preemption-bound", "K",
         "with strategy dfs or dpor: only schedules with at most K preemptions; a test whose every such "
         "schedule ran is 'verified up to K preemptions'")
    _add(parser, group, "delay-bound", "D",
         "with strategy dfs: only schedules with at most D delays (each a step past the thread a round-robin "
         "scheduler would run); a test whose every such schedule ran is 'verified up to D delays'")
    group.addoption("--detsched-coverage", action="store_true", default=None,
                    help="trace every run and report which orders of conflicting operations (two threads on one "
                         "lock, queue, event...) each test's runs saw (ini: detsched_coverage = true)")
    parser.addini("detsched_coverage", "report the concurrency coverage of every explored test", type="bool",
                  default=False)
    _add(parser, group, "coverage-json", "FILE",
         "write each explored test's concurrency coverage to FILE as JSON (implies --detsched-coverage)")
    _add(parser, group, "html", "DIR",
         "write each failure's interleaving to DIR as a self-contained HTML timeline, linked from the failure")
    _add(parser, group, "save-dir", "DIR",
         "also write each failing schedule to DIR as a JSON file, with the pytest command that replays it")
    _add(parser, group, "shards", "N",
         "split each marked test's runs (a dfs search: its tree) into N test items (for pytest-xdist: -n auto); "
         "together they explore exactly the runs one item would; a dpor or cover exploration runs whole in the first "
         "(default 1)")


def _add(parser, group, name: str, metavar: str, help: str) -> None:
    group.addoption(f"--detsched-{name}", metavar=metavar, default=None, help=help)
    parser.addini(f"detsched_{name.replace('-', '_')}", help)


def read_options(config) -> Options:
    """The session's options from the command line and ini file; ``pytest.UsageError`` if bad."""
    try:
        defaults = Settings(
            runs=_setting(config, "runs", settings.parse_runs, DEFAULT_RUNS),
            strategy=_setting(config, "strategy", str, DEFAULT_STRATEGY),
            seed=_setting(config, "seed", settings.parse_integer, None),
            max_steps=_setting(config, "max_steps", settings.parse_positive, DEFAULT_MAX_STEPS),
            races=not config.getoption("detsched_no_races") and bool(config.getini("detsched_races")),
            preemption=_setting(config, "preemption", settings.parse_preemption, "free-threaded"),
            preemption_bound=_setting(config, "preemption_bound", settings.parse_bound, None),
            delay_bound=_setting(config, "delay_bound", settings.parse_non_negative, None),
            coverage=bool(config.getoption("detsched_coverage") or config.getini("detsched_coverage")
                          or _setting(config, "coverage_json", str, None)),
        )
        replay_text = config.getoption("detsched_replay")
        replay = Schedule.loads(replay_text) if replay_text else None
        explore_all = config.getoption("detsched_all")
        if explore_all is None:
            explore_all = config.getini("detsched_all")
        benign = tuple(config.getini("detsched_benign"))
        bad = [pattern for pattern in benign if ":" not in pattern]
        if bad:
            raise DetschedUsageError(f"ini option detsched_benign: {bad[0]!r} is not a 'module:Class.attribute' "
                                     "or 'module:GLOBAL' pattern")
        return Options(defaults, replay, bool(explore_all), _setting(config, "save_dir", str, None),
                       _setting(config, "shards", settings.parse_positive, 1), benign,
                       _setting(config, "coverage_json", str, None), _setting(config, "html", str, None))
    except DetschedUsageError as exc:
        raise pytest.UsageError(f"detsched: {exc}") from None


def _setting(config, name: str, parse, default):
    value = config.getoption(f"detsched_{name}")
    where = f"--detsched-{name.replace('_', '-')}"
    if value is None:
        value = config.getini(f"detsched_{name}") or None
        where = f"ini option detsched_{name}"
    if value is None:
        return default
    try:
        return parse(value)
    except ValueError as exc:
        raise DetschedUsageError(f"{where}: {exc}") from None


_PARSERS = {"runs": settings.parse_runs, "depth": settings.parse_depth, "seed": settings.parse_integer,
            "max_steps": settings.parse_positive, "preemption": settings.parse_preemption,
            "preemption_bound": settings.parse_bound, "delay_bound": settings.parse_non_negative}


def marker_settings(marker, defaults: Settings) -> Settings:
    """``defaults`` overridden by the marker's arguments; ``DetschedUsageError`` if they are bad."""
    if marker.args:
        raise DetschedUsageError(f"@pytest.mark.detsched takes keyword arguments only ({', '.join(MARKER_ARGUMENTS)}), "
                                 f"got {marker.args!r}")
    unknown = sorted(set(marker.kwargs) - set(MARKER_ARGUMENTS))
    if unknown:
        raise DetschedUsageError(f"@pytest.mark.detsched got unknown argument{'s' * (len(unknown) > 1)} "
                                 f"{', '.join(unknown)}; it takes {', '.join(MARKER_ARGUMENTS)}")
    changes = {}
    for name, value in marker.kwargs.items():
        if name == "strategy":
            changes[name] = value
            continue
        if name in ("seed", "preemption_bound", "delay_bound") and value is None:
            changes[name] = None
            continue
        if name == "races":
            if not isinstance(value, bool):
                raise DetschedUsageError(f"@pytest.mark.detsched(races=...): expected True or False, got {value!r}")
            changes[name] = value
            continue
        try:
            changes[name] = _PARSERS[name](value)
        except ValueError as exc:
            raise DetschedUsageError(f"@pytest.mark.detsched({name}=...): {exc}") from None
    return replace(defaults, **changes)


def check_strategy(name) -> None:
    """Strategies are checked once conftest files (which may add some) are loaded."""
    known = strategy_factories()
    if name not in known:
        raise DetschedUsageError(f"unknown strategy {name!r}; choose one of: {', '.join(sorted(known))}")


def default_seed(test_id: str) -> int:
    """A seed per test, the same on every machine and process (never ``hash()``, which is salted)."""
    return zlib.crc32(test_id.encode())
