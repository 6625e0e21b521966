"""The pytest plugin: marked tests are explored, failures end with lines that replay them, failing
schedules are cached, options and markers are checked. Each test runs pytest in-process with
``pytester`` on a small test file."""

import re
import zlib

import pytest

#: Inner runs load this plugin only. Autoloading every installed plugin would make each in-process
#: run import (and assertion-rewrite) the modules they pull in afresh, since pytester forgets
#: modules imported during a run: seconds per run instead of tenths.
PLUGIN = ("-p", "pytest_detsched.plugin")

COUNTER = """
import threading

import pytest

import detsched


class Counter:
    def __init__(self):
        self.value = 0
        self.lock = threading.Lock()

    def incr(self):
        with self.lock:
            seen = self.value
        with self.lock:
            self.value = seen + 1


class SafeCounter(Counter):
    def incr(self):
        with self.lock:
            self.value += 1


def count_twice(counter):
    threads = [threading.Thread(target=counter.incr) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return counter.value
"""

BUGGY = COUNTER + """

@pytest.mark.detsched(runs=300)
def test_counter():
    assert count_twice(Counter()) == 2
"""

FIXED = COUNTER + """

@pytest.mark.detsched(runs=300)
def test_counter():
    assert count_twice(SafeCounter()) == 2
"""

REPLAY = re.compile(r"--detsched-replay='(ds3:[A-Za-z0-9_-]+)'")


@pytest.fixture
def pytester(pytester, monkeypatch):
    monkeypatch.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")
    return pytester


def run(pytester, *args):
    return pytester.runpytest(*PLUGIN, *args)


def replay_string(result) -> str:
    match = REPLAY.search(result.stdout.str())
    assert match, result.stdout.str()
    return match.group(1)


def test_buggy_marked_test_fails_with_kind_interleaving_and_replay_lines(pytester):
    pytester.makepyfile(test_counter=BUGGY)
    result = run(pytester)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([
        "detsched found a failure in run * (strategy pct, seed *):",
        "exception: AssertionError: assert 1 == 2",
        "*in T0 'MainThread'",
        "*assert count_twice(Counter()) == 2",
        "Interleaving (1 preemption, * steps):",
        "Replay with: pytest 'test_counter.py::test_counter' --detsched-replay='ds3:*'",
        "         or: @detsched.reproduce('ds3:*')",
    ])


def test_fixed_twin_passes_all_its_runs(pytester):
    pytester.makepyfile(test_counter=FIXED)
    result = run(pytester)
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["test_counter.py::test_counter: 300 runs in * (* runs/s) (strategy pct, seed *)"])


def test_pasted_replay_line_reproduces_the_same_failure(pytester):
    pytester.makepyfile(test_counter=BUGGY)
    schedule = replay_string(run(pytester, "-p", "no:cacheprovider"))
    result = run(pytester, "-p", "no:cacheprovider", "test_counter.py::test_counter",
                                f"--detsched-replay={schedule}")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["detsched replayed the schedule from --detsched-replay (recorded in run *):",
                                 "exception: AssertionError: assert 1 == 2",
                                 f"Replay with: *--detsched-replay='{schedule}'"])


def test_replay_after_the_fix_passes_and_says_the_schedule_no_longer_applies(pytester):
    pytester.makepyfile(test_counter=BUGGY)
    schedule = replay_string(run(pytester, "-p", "no:cacheprovider"))
    pytester.makepyfile(test_counter=FIXED)
    result = run(pytester, "-p", "no:cacheprovider", f"--detsched-replay={schedule}")
    result.assert_outcomes(passed=1)  # and the warning (not a count: see test_marker_on_a_test_without_threads_warns)
    result.stdout.fnmatch_lines(["*ReplayDivergedWarning: the run no longer followed the schedule after decision *"])
    assert "Traceback" not in result.stdout.str()


def test_reproduce_decorator_replays_its_schedule(pytester):
    pytester.makepyfile(test_counter=BUGGY)
    schedule = replay_string(run(pytester, "-p", "no:cacheprovider"))
    decorated = BUGGY.replace("@pytest.mark.detsched(runs=300)", f"@detsched.reproduce('{schedule}')")
    pytester.makepyfile(test_counter=decorated)
    result = run(pytester, "-p", "no:cacheprovider")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["detsched replayed the schedule from @detsched.reproduce (recorded in run *):",
                                 "exception: AssertionError: assert 1 == 2"])


def test_reproduce_decorator_refuses_a_corrupt_string_at_import(pytester):
    pytester.makepyfile(test_counter=BUGGY.replace("@pytest.mark.detsched(runs=300)",
                                                   "@detsched.reproduce('ds3:AAAA')"))
    result = run(pytester)
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*corrupt or truncated schedule*"])


def test_failing_schedule_is_replayed_first_on_the_next_run(pytester):
    pytester.makepyfile(test_counter=BUGGY)
    first = run(pytester)
    second = run(pytester)
    second.assert_outcomes(failed=1)
    second.stdout.fnmatch_lines(["detsched replayed the schedule that failed in the last session (kept in "
                                 "pytest's cache), recorded in run *:"])
    assert replay_string(second) == replay_string(first)


def test_cached_schedule_is_forgotten_once_the_test_is_fixed(pytester):
    pytester.makepyfile(test_counter=BUGGY)
    run(pytester)
    pytester.makepyfile(test_counter=FIXED)
    run(pytester).assert_outcomes(passed=1)
    assert run(pytester).stdout.str().count("test_counter.py::test_counter: 300 runs") == 1
    cache_dir = pytester.path / ".pytest_cache" / "v" / "detsched" / "failing"
    assert [path.read_text() for path in cache_dir.iterdir()] == ["null"]


def test_seed_is_the_crc32_of_the_node_id_and_runs_repeat_exactly(pytester):
    pytester.makepyfile(test_counter=BUGGY)
    first = run(pytester, "-p", "no:cacheprovider")
    second = run(pytester, "-p", "no:cacheprovider")
    seed = zlib.crc32(b"test_counter.py::test_counter")
    first.stdout.fnmatch_lines([f"detsched found a failure in run * (strategy pct, seed {seed}):"])
    assert replay_string(first) == replay_string(second)


def test_seed_option_replaces_the_node_id_seed(pytester):
    pytester.makepyfile(test_counter=FIXED)
    result = run(pytester, "--detsched-seed=7")
    result.stdout.fnmatch_lines(["*(strategy pct, seed 7)"])


def test_ini_options_set_the_defaults_and_the_marker_wins(pytester):
    pytester.makeini("[pytest]\ndetsched_runs = 20\ndetsched_strategy = random\n")
    pytester.makepyfile(test_counter=FIXED + """

@pytest.mark.detsched
def test_defaults():
    assert count_twice(SafeCounter()) == 2
""")
    result = run(pytester)
    result.stdout.fnmatch_lines(["test_counter.py::test_counter: 300 runs in * (strategy random, seed *)",
                                 "test_counter.py::test_defaults: 20 runs in * (strategy random, seed *)"])


def test_replay_string_of_another_test_is_a_usage_error_naming_both(pytester):
    pytester.makepyfile(test_counter=BUGGY + """

@pytest.mark.detsched
def test_other():
    assert count_twice(SafeCounter()) == 2
""")
    schedule = replay_string(run(pytester, "test_counter.py::test_counter"))
    result = run(pytester, "test_counter.py::test_other", f"--detsched-replay={schedule}")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: detsched: the schedule given with --detsched-replay was recorded for "
                                 "test_counter.py::test_counter, but this run selected test_counter.py::test_other.*"])


def test_reproduce_decorator_with_another_tests_schedule_is_a_usage_error(pytester):
    pytester.makepyfile(test_counter=BUGGY)
    schedule = replay_string(run(pytester))
    pytester.makepyfile(test_counter=BUGGY.replace("def test_counter", "def test_renamed").replace(
        "@pytest.mark.detsched(runs=300)", f"@detsched.reproduce('{schedule}')"))
    result = run(pytester)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: detsched: test_counter.py::test_renamed: the schedule given with "
                                 "@detsched.reproduce was recorded for test_counter.py::test_counter*"])


def test_unknown_strategy_option_is_a_usage_error(pytester):
    pytester.makepyfile(test_counter=FIXED)
    result = run(pytester, "--detsched-strategy=fastest")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: detsched: test_counter.py::test_counter: unknown strategy 'fastest'; "
                                 "choose one of: cover, dfs, dpor, pct, random"])


def test_negative_runs_option_is_a_usage_error(pytester):
    pytester.makepyfile(test_counter=FIXED)
    result = run(pytester, "--detsched-runs=-5")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: detsched: --detsched-runs: must be at least 1, got -5"])


def test_bad_marker_arguments_are_a_usage_error(pytester):
    pytester.makepyfile(test_counter=COUNTER + """

@pytest.mark.detsched(runs=0)
def test_no_runs():
    pass


@pytest.mark.detsched(rnus=10)
def test_typo():
    pass
""")
    result = run(pytester)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([
        "ERROR: detsched: test_counter.py::test_no_runs: @pytest.mark.detsched(runs=...): must be at least 1, got 0",
        "test_counter.py::test_typo: @pytest.mark.detsched got unknown argument rnus; it takes runs, *",
    ])


def test_marker_on_a_test_without_threads_warns(pytester):
    pytester.makepyfile(test_plain="""
import pytest

@pytest.mark.detsched(runs=50)
def test_plain():
    assert sum([1, 1]) == 2
""")
    result = run(pytester)
    # The warning itself, not a count: pytest may add its own about this plugin's module, imported
    # by the outer session before the inner one could rewrite it (seen with pytest 9.0).
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*DetschedWarning: test_plain.py::test_plain starts no threads: nothing to explore*",
                                 "test_plain.py::test_plain: starts no threads, stopped after its first run"])


def test_unmarked_tests_run_once_without_detsched(pytester):
    pytester.makepyfile(test_counter=COUNTER + """

def test_unmarked():
    assert count_twice(Counter()) == 2
""")
    result = run(pytester)
    result.assert_outcomes(passed=1)
    assert "runs/s" not in result.stdout.str()


def test_detsched_all_explores_unmarked_tests_that_start_threads(pytester):
    pytester.makepyfile(test_counter=COUNTER + """

def test_unmarked():
    assert count_twice(Counter()) == 2


def test_without_threads():
    assert True
""")
    result = run(pytester, "--detsched-all")
    result.assert_outcomes(failed=1, passed=1)
    result.stdout.fnmatch_lines(["Replay with: pytest 'test_counter.py::test_unmarked' --detsched-replay=*"])
    assert "test_without_threads:" not in result.stdout.str()


def test_detsched_all_ini_option(pytester):
    pytester.makeini("[pytest]\ndetsched_all = true\n")
    pytester.makepyfile(test_counter=COUNTER + """

def test_unmarked():
    assert count_twice(Counter()) == 2
""")
    run(pytester).assert_outcomes(failed=1)


def test_plugin_is_loaded_through_its_entry_point(pytester, monkeypatch):
    monkeypatch.delenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD")
    pytester.makepyfile(test_counter=BUGGY)
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["Replay with: pytest 'test_counter.py::test_counter' --detsched-replay=*"])


def test_plugin_can_be_disabled(pytester, monkeypatch):
    monkeypatch.delenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD")
    pytester.makepyfile(test_counter=BUGGY)
    result = pytester.runpytest("-p", "no:detsched")
    result.assert_outcomes(passed=1)  # one uncontrolled run: the race does not show
    assert "Replay with" not in result.stdout.str()


def test_exitfirst_stops_at_the_first_failing_explored_test(pytester):
    pytester.makepyfile(test_counter=BUGGY + """

@pytest.mark.detsched
def test_second():
    assert count_twice(Counter()) == 2
""")
    result = run(pytester, "-x")
    result.assert_outcomes(failed=1)


def test_last_failed_reruns_only_the_failing_test_and_replays_it(pytester):
    pytester.makepyfile(test_counter=BUGGY + """

@pytest.mark.detsched
def test_safe():
    assert count_twice(SafeCounter()) == 2
""")
    run(pytester)
    result = run(pytester, "--lf")
    result.assert_outcomes(failed=1, passed=0)
    result.stdout.fnmatch_lines(["detsched replayed the schedule that failed in the last session*"])


def test_fixture_gives_the_run_index_and_the_schedule_so_far(pytester):
    pytester.makepyfile(test_fixture=COUNTER + """

RUNS = []


@pytest.mark.detsched(runs=5)
def test_fixture(detsched):
    RUNS.append(detsched.run_index)
    thread = threading.Thread(target=detsched.yield_point)
    thread.start()
    thread.join()
    schedule = detsched.schedule()
    assert (schedule.run_index, schedule.seed) == (detsched.run_index, detsched.seed)
    assert schedule.dumps().startswith("ds3:")


def test_runs_seen():
    assert RUNS[-5:] == [0, 1, 2, 3, 4]
""")
    run(pytester).assert_outcomes(passed=2)


def test_fixture_in_an_unexplored_test_is_an_error(pytester):
    pytester.makepyfile(test_fixture="""
def test_fixture(detsched):
    pass
""")
    result = run(pytester)
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["detsched: the detsched fixture needs a test explored by detsched*"])


def test_every_run_gets_fresh_function_scoped_fixtures(pytester):
    pytester.makepyfile(test_state=COUNTER + """

@pytest.fixture
def calls():
    return []


@pytest.mark.detsched(runs=10)
def test_state(calls):
    calls.append(1)
    assert count_twice(SafeCounter()) == 2
    assert calls == [1]
""")
    run(pytester).assert_outcomes(passed=1)


def test_failure_after_earlier_runs_blames_state_shared_by_runs(pytester):
    pytester.makepyfile(test_state=COUNTER + """

CALLS = []


@pytest.mark.detsched(runs=10)
def test_state():
    CALLS.append(1)
    assert count_twice(SafeCounter()) == 2
    assert len(CALLS) != 3
""")
    result = run(pytester)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["note: this failure did not happen again when its schedule was replayed*",
                                 "note: every run sets up the test's function-scoped fixtures afresh, but module*"])


WORKERS = """
import queue
import threading

import pytest

REGISTRY = []


class Worker:
    def __init__(self):
        self.inbox = queue.Queue()
        threading.Thread(target=self._serve).start()
        REGISTRY.append(self)

    def _serve(self):
        while True:
            message, reply = self.inbox.get()
            if message == "stop":
                reply.put("stopped")
                return

    def stop(self):
        reply = queue.Queue()
        self.inbox.put(("stop", reply))
        return reply.get()


@pytest.fixture(scope="SCOPE")
def workers():
    yield
    while REGISTRY:
        assert REGISTRY.pop().stop() == "stopped"


def test_worker(workers):
    Worker()
"""


def test_workers_a_fixture_stops_at_teardown_are_stopped_in_every_run(pytester):
    pytester.makepyfile(test_workers=WORKERS.replace("SCOPE", "function"))
    result = pytester.runpytest_subprocess(*PLUGIN, "--detsched-all", "--detsched-runs=20", timeout=120)
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["test_workers.py::test_worker: 20 runs*"])


def test_threads_a_run_leaves_blocked_still_answer_a_fixture_of_a_wider_scope(pytester):
    # The module's fixture stops every worker made by any run: those of ended runs go on outside
    # control and answer, as in a plain run, so the session ends instead of waiting for ever.
    pytester.makepyfile(test_workers=WORKERS.replace("SCOPE", "module"))
    result = pytester.runpytest_subprocess(*PLUGIN, "--detsched-all", "--detsched-runs=5", timeout=60)
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["test_workers.py::test_worker: 5 runs*"])


ALL_KINDS_OF_TESTS = """
import asyncio
import subprocess
import sys
import threading
import unittest

import pytest
import pytest_asyncio


def test_starts_a_subprocess():
    thread = threading.Thread(target=lambda: None)
    thread.start()
    thread.join()
    subprocess.run([sys.executable, "-c", "pass"], check=True)


@pytest.mark.timeout(3)  # detsched's watchdog waits a third of it
def test_waits_on_a_multiprocessing_event():
    import multiprocessing

    ready, go = threading.Event(), multiprocessing.Event()

    def worker():
        ready.set()
        go.wait(2)  # a real semaphore: under control, the other thread cannot run to set it

    thread = threading.Thread(target=worker)
    thread.start()
    ready.wait()
    go.set()
    thread.join()


def test_longer_than_the_step_bound():
    counter = {"n": 0}

    def count():
        for _ in range(200):
            with lock:
                counter["n"] += 1

    lock = threading.Lock()
    workers = [threading.Thread(target=count) for _ in range(2)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert counter["n"] == 400


@pytest.fixture
def server():
    stop = threading.Event()
    thread = threading.Thread(target=stop.wait)
    thread.start()
    yield stop
    stop.set()
    thread.join()


def test_threads_started_by_a_fixture(server):
    assert not server.is_set()


class TestCase(unittest.IsolatedAsyncioTestCase):
    async def test_method(self):
        pass


@pytest.mark.asyncio
async def test_async_with_a_thread():
    assert await asyncio.to_thread(lambda: 42) == 42


@pytest_asyncio.fixture
async def answer():
    return 42


@pytest.mark.asyncio
async def test_async_with_an_async_fixture(answer):
    assert await asyncio.to_thread(lambda: answer) == 42
"""


def test_detsched_all_says_which_tests_it_did_not_explore_and_why(pytester):
    pytester.makepyfile(test_kinds=ALL_KINDS_OF_TESTS)
    result = run(pytester, "-p", "asyncio", "--detsched-all", "--detsched-runs=5", "--detsched-max-steps=300")
    result.assert_outcomes(passed=7)
    result.stdout.fnmatch_lines_random([
        "not explored (a thread blocked in code detsched does not control): 1 test, ran as usual: "
        "test_kinds.py::test_waits_on_a_multiprocessing_event",
        "test_kinds.py::test_threads_started_by_a_fixture: 5 runs in *",
        "test_kinds.py::test_async_with_a_thread: 5 runs in *",
        "not explored (an async test with async fixtures; mark it @pytest.mark.detsched to explore it): 1 test, "
        "ran as usual: test_kinds.py::test_async_with_an_async_fixture",
        "not explored (a run took more than max_steps=300 steps): 1 test, ran as usual: "
        "test_kinds.py::test_longer_than_the_step_bound",
        "not explored (a unittest.IsolatedAsyncioTestCase method): 1 test, ran as usual: "
        "test_kinds.py::TestCase::test_method",
        "not explored (cannot run under control: starting a subprocess is not supported under detsched: a "
        "child process would run outside its control): 1 test, "
        "ran as usual: test_kinds.py::test_starts_a_subprocess",
    ])


def test_detsched_all_explores_from_fixtures_its_plain_call_did_not_touch(pytester):
    # The plain call that tells --detsched-all whether a test starts threads sets the fixture's
    # Event; the runs explored after it get an Event of their own.
    pytester.makepyfile(test_event="""
import threading

import pytest


@pytest.fixture
def done():
    return threading.Event()


def test_event(done):
    assert not done.is_set()
    worker = threading.Thread(target=done.set)
    worker.start()
    worker.join()
    assert done.is_set()
""")
    result = run(pytester, "--detsched-all", "--detsched-runs=10")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["test_event.py::test_event: 10 runs in *"])


def test_detsched_all_lets_the_threads_of_its_plain_call_end_before_the_runs(pytester):
    # An actor its fixture's teardown only asks to stop is still running, outside control, when
    # the first run starts, unless it gets a moment to end.
    pytester.makepyfile(test_actor="""
import queue
import threading
import time

import pytest


@pytest.fixture
def actor():
    inbox = queue.Queue()

    def serve():
        while inbox.get() != "stop":
            pass
        time.sleep(0.5)  # its last words

    threading.Thread(target=serve).start()
    yield inbox
    inbox.put("stop")


def test_actor(actor):
    actor.put("work")
""")
    result = pytester.runpytest_subprocess(*PLUGIN, "--detsched-all", "--detsched-runs=10", timeout=120)
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["test_actor.py::test_actor: 10 runs in *"])
    assert "not under control" not in result.stdout.str()


def test_a_dropped_pool_exception_fails_only_a_test_that_asked_to_be_explored(pytester):
    pytester.makepyfile(test_dropped="""
from concurrent import futures

import pytest


def blow_up():
    raise RuntimeError("Broken")


def test_unmarked():
    with futures.ThreadPoolExecutor(max_workers=2) as pool:
        pool.submit(blow_up)


@pytest.mark.detsched(runs=5)
def test_marked():
    with futures.ThreadPoolExecutor(max_workers=2) as pool:
        pool.submit(blow_up)
""")
    result = run(pytester, "--detsched-all", "--detsched-runs=5")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["exception: RuntimeError: Broken",
                                 "  in T1 *; nothing retrieved the exception from its Future*"])


def test_detsched_all_leaves_alone_a_test_that_fails_only_when_run_again(pytester):
    # sqlitedict's test never closes its database, whose thread keeps a write transaction open:
    # the first run under control finds the file locked. No interleaving explains that.
    pytester.makepyfile(test_once="""
import threading

import pytest

def runs_once(seen):
    assert not seen, "ran twice in one process"
    seen.append(1)
    thread = threading.Thread(target=seen.append, args=(2,))
    thread.start()
    thread.join()


def test_unmarked(seen=[]):
    runs_once(seen)


@pytest.mark.detsched(runs=5)
def test_marked(seen=[]):
    runs_once(seen)
""")
    result = run(pytester, "--detsched-all", "--detsched-runs=5")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines([
        "not explored (it failed under control in the default order, where its plain call passed (state the plain "
        "call left, or code detsched does not control)): 1 test, ran as usual: test_once.py::test_unmarked"])
    result.stdout.fnmatch_lines(["FAILED test_once.py::test_marked*"])


def test_tasks_left_pending_fail_only_a_test_that_asked_to_be_explored(pytester):
    # asgiref's StatelessServer: gather() raises when one child does and leaves the other
    # pending, and asyncio.run() cancels it -- stock asyncio reports nothing.
    pytester.makepyfile(test_pending="""
import asyncio
import threading

import pytest


class Done(Exception):
    pass


async def serve():
    async def check_forever():
        while True:
            await asyncio.sleep(0.1)

    async def handle():
        raise Done

    try:
        await asyncio.gather(check_forever(), handle())
    except Done:
        pass


def run_in_a_thread():
    thread = threading.Thread(target=asyncio.run, args=(serve(),))
    thread.start()
    thread.join()


def test_unmarked():
    run_in_a_thread()


@pytest.mark.detsched(runs=5)
def test_marked():
    run_in_a_thread()
""")
    result = run(pytester, "--detsched-all", "--detsched-runs=5")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*leak: Task-2 *check_forever() * still pending when the main coroutine returned*"])
    result.stdout.fnmatch_lines(["FAILED test_pending.py::test_marked*"])


def test_a_fixture_teardown_error_does_not_hide_why_the_run_failed(pytester):
    pytester.makepyfile(test_teardown="""
import os
import subprocess
import sys
import tempfile
import threading

import pytest


@pytest.fixture
def made_by_the_child():
    path = os.path.join(tempfile.mkdtemp(), "made")
    yield path
    os.remove(path)  # fails when the child never ran


def test_child(made_by_the_child):
    threading.Thread(target=lambda: None).start()
    subprocess.run([sys.executable, "-c", f"open({made_by_the_child!r}, 'w')"], check=True)
""")
    result = run(pytester, "--detsched-all", "--detsched-runs=5")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["not explored (cannot run under control: starting a subprocess is not supported*"])


UNITTEST_CASES = """
import threading
import unittest


class TestCounter(unittest.TestCase):
    def setUp(self):
        self.lock = threading.Lock()
        self.count = 0

    def tearDown(self):
        self.lock = None

    def run_twice(self, bump):
        threads = [threading.Thread(target=bump) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    def test_locked(self):
        def bump():
            with self.lock:
                self.count += 1

        self.run_twice(bump)
        self.assertEqual(self.count, 2)

    def test_racy(self):
        def bump():
            value = self.count
            self.count = value + 1

        self.run_twice(bump)
        self.assertEqual(self.count, 2)

    def test_single_threaded(self):
        self.assertEqual(self.count, 0)
"""


def test_detsched_all_explores_unittest_cases_with_a_fresh_instance_per_run(pytester):
    pytester.makepyfile(test_cases=UNITTEST_CASES)
    result = run(pytester, "--detsched-all", "--detsched-runs=50", "--detsched-no-races")  # the lost update itself
    result.assert_outcomes(passed=2, failed=1)
    result.stdout.fnmatch_lines_random([
        "test_cases.py::TestCounter::test_locked: 50 runs in *",
        "exception: AssertionError: 1 != 2",
        "Replay with: pytest 'test_cases.py::TestCounter::test_racy' --detsched-replay='ds3:*'",
        "not explored (started no thread): 1 test, ran as usual: test_cases.py::TestCounter::test_single_threaded",
    ])
    schedule = replay_string(result)
    replayed = run(pytester, f"--detsched-replay={schedule}", "test_cases.py::TestCounter::test_racy")
    replayed.assert_outcomes(failed=1)
    replayed.stdout.fnmatch_lines(["exception: AssertionError: 1 != 2"])


PARAMETRIZED_CLOSURE = """
import threading

import pytest

COUNTER = [0]


def make_worker(counter):
    def worker():
        counter[0] += 1
    return worker


@pytest.mark.detsched(runs=300)
@pytest.mark.parametrize("work", [make_worker(COUNTER)])
def test_workers(work):
    COUNTER[0] = 0
    threads = [threading.Thread(target=work) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert COUNTER[0] == 2, f"counter is {COUNTER[0]}"
"""


def test_a_closure_passed_through_parametrize_gets_store_points(pytester):
    # Only the test's parametrized argument reaches the worker: no module global refers to it.
    pytester.makepyfile(test_param=PARAMETRIZED_CLOSURE)
    result = run(pytester, "--detsched-no-races")  # the lost update, not the race under it
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*AssertionError: counter is 1*"])


RACY = """
import threading

import pytest


class Stats:
    processed = 0


def bump_twice(stats):
    def worker():
        stats.processed += 1

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


@pytest.mark.detsched(runs=20)
def test_racy():
    bump_twice(Stats())


@pytest.mark.detsched(runs=20, races=False)
def test_racy_unchecked():
    bump_twice(Stats())
"""


def test_a_data_race_fails_a_marked_test_unless_races_are_off(pytester):
    pytester.makepyfile(test_racy=RACY)
    result = run(pytester)
    result.assert_outcomes(failed=1, passed=1)
    result.stdout.fnmatch_lines([
        "*data-race: Stats.processed: * by T2 * races with * by T1 *",
        "*no happens-before order*",
        "Replay with: pytest 'test_racy.py::test_racy' --detsched-replay='ds3:*'",
    ])


def test_detsched_no_races_turns_the_check_off(pytester):
    pytester.makepyfile(test_racy=RACY)
    run(pytester, "--detsched-no-races").assert_outcomes(passed=2)


def test_ini_benign_patterns_are_not_reported(pytester):
    pytester.makepyfile(test_racy=RACY)
    pytester.makeini("[pytest]\ndetsched_benign =\n    test_racy:Stats.processed\n")
    run(pytester).assert_outcomes(passed=2)


def test_a_benign_pattern_without_a_module_is_a_usage_error(pytester):
    pytester.makepyfile(test_racy=RACY)
    pytester.makeini("[pytest]\ndetsched_benign = Stats.processed\n")
    result = run(pytester)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*detsched_benign: 'Stats.processed' is not a 'module:Class.attribute'*"])


def test_a_test_dfs_ran_every_schedule_of_is_verified_in_the_summary(pytester):
    pytester.makepyfile(test_counter=FIXED.replace("runs=300", "runs=100000, strategy='dfs'"))
    result = run(pytester)
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["test_counter.py::test_counter: verified, every schedule ran: * runs in *"
                                 " (strategy dfs)"])


def test_a_dpor_test_with_a_bound_is_verified_up_to_it_in_the_summary(pytester):
    pytester.makepyfile(test_counter=FIXED.replace("runs=300", "runs=100000, strategy='dpor', preemption_bound=1"))
    result = run(pytester)
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["test_counter.py::test_counter: verified up to 1 preemption, one schedule per "
                                 "class of equivalent interleavings ran: * (strategy dpor)"])


def test_a_dfs_test_with_a_delay_bound_from_the_command_line_is_verified_up_to_it(pytester):
    pytester.makepyfile(test_counter=FIXED.replace("runs=300", "runs=100000, strategy='dfs'"))
    result = run(pytester, "--detsched-delay-bound=1")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["test_counter.py::test_counter: verified up to 1 delay, every schedule ran: *"
                                 " (strategy dfs)"])


def test_a_delay_bound_is_for_dfs_only(pytester):
    pytester.makepyfile(test_counter=FIXED.replace("runs=300", "runs=100, strategy='pct', delay_bound=1"))
    result = run(pytester)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*a delay bound is for strategy 'dfs', not 'pct'*"])


def test_the_preemption_bound_option_is_checked(pytester):
    pytester.makepyfile(test_counter=FIXED)
    result = run(pytester, "--detsched-preemption-bound=-1")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--detsched-preemption-bound: must be at least 0, got -1*"])
    result = run(pytester, "--detsched-delay-bound=iterative")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--detsched-delay-bound: expected an integer, got 'iterative'*"])
