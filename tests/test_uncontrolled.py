"""What escaped control: threads running user code outside control while a run is in progress, and
their uses of the run's primitives, listed in every report (pass or fail) and in the plugin's summary."""

import concurrent.futures
import contextlib
import select
import sys
import threading
import time

import pytest

import detsched
from detsched.cli import main
from programs import LOST_UPDATE

PLUGIN = ("-p", "pytest_detsched.plugin")

shared = threading.Lock()  # made at import: every run swaps it for a twin that the poller also sees


def two_workers():
    box = []

    def work(n):
        with shared:
            box.append(n)

    workers = [threading.Thread(target=work, args=(n,)) for n in range(2)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()


@contextlib.contextmanager
def background(target, name="poller"):
    """A real thread running ``target(stop)`` until the block ends; joined before it returns."""
    stop = threading.Event()
    thread = threading.Thread(target=target, args=(stop,), name=name, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(10)
        assert not thread.is_alive()


def idle(stop):
    while not stop.wait(0.001):  # user code, outside control, touching nothing of the run
        pass


def take_the_lock(stop):
    while not stop.wait(0.001):
        with shared:
            pass


requests = []  # Futures for the server below to answer


def answer(stop):
    """A server outside control (a pool's result thread started at import) answering requests."""
    while not stop.wait(0.001):
        while requests:
            requests.pop().set_result("answer")


def ask(timeout=None):
    future = concurrent.futures.Future()
    requests.append(future)
    assert future.result(timeout) == "answer"


def test_a_wait_that_a_thread_outside_control_answers_is_no_deadlock():
    with background(answer):
        report = detsched.explore(ask, runs=3)
    assert report.failure is None, report.failure
    assert any("used" in text for text in report.uncontrolled)


def test_nor_is_a_timed_one_a_timeout():
    with background(answer):
        report = detsched.explore(lambda: ask(timeout=5), runs=3)
    assert report.failure is None, report.failure


def test_a_wait_nothing_answers_is_blocked_once_threads_outside_control_had_their_time():
    def deadlock():
        threading.Event().wait()

    with background(idle):
        failure = detsched.explore(deadlock, runs=1, blocked_after=0.5).failure
    assert failure.kind == "blocked"
    assert failure.message.startswith("T0 waits for Event(")
    assert "threads it does not control, which might, woke nobody within 0.5s" in failure.message
    assert detsched.explore(deadlock, runs=1, blocked_after=0.5).failure.kind == "deadlock"  # with none


def test_a_thread_running_user_code_outside_control_is_named_in_a_verified_report():
    with background(idle):
        report = detsched.explore(two_workers, strategy="dfs", runs=500)
    assert report.exhausted
    (finding,) = report.uncontrolled
    assert finding.startswith("thread 'poller' was running before the run started (at test_uncontrolled.py:")
    assert "in idle); detsched does not schedule it" in finding
    first, heading, listed = str(report).splitlines()
    assert first.endswith("-- no failure; not under control: 1 finding (below)")
    assert heading.startswith("not under control (1 finding; what was checked holds only for what detsched controlled)")
    assert listed == f"  - {finding}"


def test_its_uses_of_the_runs_primitives_are_named_too():
    with background(take_the_lock):
        report = detsched.explore(two_workers, runs=50)
    uses = [text for text in report.uncontrolled if "used" in text]
    assert len(uses) == 1, report.uncontrolled  # every run's uses, once
    assert uses[0].startswith("thread 'poller', which detsched does not control, used Lock(test_uncontrolled.shared) (")
    assert "acquire" in uses[0] and "release" in uses[0]


def test_a_failing_report_lists_them_as_well():
    def lost_update():
        box = [0]

        def work():
            seen = box[0]
            box[0] = seen + 1

        workers = [threading.Thread(target=work) for _ in range(2)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        assert box[0] == 2

    with background(idle):
        report = detsched.explore(lost_update, runs=200, races=False)
    assert report.failure is not None and len(report.uncontrolled) == 1
    assert "\nnot under control (1 finding;" in str(report)


def test_a_thread_that_goes_on_after_its_run_was_stopped_is_named(monkeypatch):
    from detsched._core import controller

    monkeypatch.setattr(controller, "UNWIND_TIMEOUT", 0.2)

    def fails_while_a_worker_waits():
        def stubborn():
            waiting.set()
            try:
                never.wait()
            except BaseException:  # the exception that stops it at the run's end
                select.select([], [], [], 0.6)  # waits in a C call: nothing can stop it there
                raise

        waiting, never = threading.Event(), threading.Event()
        threading.Thread(target=stubborn, name="stubborn").start()
        waiting.wait()
        raise AssertionError("the main thread fails while the worker waits")

    report = detsched.explore(fails_while_a_worker_waits, runs=1)
    deadline = time.monotonic() + 30
    while any(thread.name == "stubborn" for thread in threading.enumerate()) and time.monotonic() < deadline:
        time.sleep(0.05)  # its waits end: the tests after this one must not see it
    assert report.failure is not None and report.failure.kind == "exception"
    (finding,) = report.uncontrolled
    assert finding.startswith("thread 'stubborn' was still running 0.2 s after its run was stopped")


def test_threads_of_test_tools_and_the_standard_library_are_not_findings():
    real = threading.Event()
    tool = threading.Thread(target=real.wait, name="stdlib-only")  # no user frame on its stack
    tool.start()
    try:
        report = detsched.explore(two_workers, runs=20)
    finally:
        real.set()
        tool.join(10)
    assert report.uncontrolled == ()
    assert "not under control" not in str(report)


def test_nothing_outside_control_adds_nothing():
    report = detsched.explore(two_workers, strategy="dfs", runs=500)
    assert report.uncontrolled == ()
    assert str(report).splitlines() == [str(report)]


TEST_FILE = '''
import threading
import pytest

stop = threading.Event()

def poll():
    while not stop.wait(0.001):
        pass

@pytest.fixture(scope="session")
def poller():
    thread = threading.Thread(target=poll, name="poller", daemon=True)
    thread.start()
    yield
    stop.set()
    thread.join()

@pytest.mark.detsched(runs=10)
def test_with_poller(poller):
    box = []
    workers = [threading.Thread(target=box.append, args=(n,)) for n in range(2)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
'''


@pytest.fixture
def pytester(pytester, monkeypatch):
    monkeypatch.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")  # see tests/test_plugin.py
    return pytester


def test_the_plugin_summary_names_a_session_fixtures_thread(pytester):
    pytester.makepyfile(test_bg=TEST_FILE)
    result = pytester.runpytest(*PLUGIN)
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines([
        "test_bg.py::test_with_poller: 10 runs * (strategy pct, seed *); not under control: 2 findings (below)",
        "  not under control: thread 'poller' was running before the run started (at test_bg.py:7 in poll)*",
        "  not under control: thread 'poller', which detsched does not control, used Event(test_bg.stop) (wait) during*",
    ])


#: A module that starts a thread when it is imported (a metrics flusher, a cache janitor): in the
#: process that imports it, every run has a thread running user code outside control.
STARTS_A_THREAD = LOST_UPDATE + '''
def flush(stop):
    while not stop.wait(0.001):
        pass

STOP = threading.Event()  # the flusher keeps the real Event: a run swaps only the module's name
threading.Thread(target=flush, args=(STOP,), name="flusher", daemon=True).start()

def fixed():
''' + """    account, lock = {"balance": 0}, threading.Lock()
    threads = [threading.Thread(target=transfer, args=(account, lock)) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
"""


@pytest.fixture
def starts_a_thread(tmp_path):
    path = tmp_path / "flushing.py"
    path.write_text(STARTS_A_THREAD)
    yield str(path)
    module = sys.modules.pop("flushing", None)
    if module is not None:
        module.STOP.set()
    for thread in threading.enumerate():
        if thread.name == "flusher":
            thread.join(10)


@pytest.mark.parametrize("strategy, function, code", [
    ("pct", "main", 1), ("pct", "fixed", 0), ("random", "fixed", 0), ("dfs", "main", 1), ("dfs", "fixed", 0),
    ("dpor", "main", 1), ("dpor", "fixed", 0)])
def test_jobs_name_what_one_process_names(starts_a_thread, capsys, strategy, function, code):
    outputs = []
    for jobs in ("1", "2"):
        assert main(["run", f"{starts_a_thread}::{function}", "--strategy", strategy, "--runs", "200",
                     "--jobs", jobs]) == code
        outputs.append(capsys.readouterr().out)
    assert outputs[0] == outputs[1]
    assert "\nnot under control (1 finding; " in outputs[0]
    assert "  - thread 'flusher' was running before the run started (at flushing.py:" in outputs[0]


def test_escapes_from_runs_taken_in_any_order_read_as_one_process_in_order_lists_them():
    from types import SimpleNamespace

    from detsched._core.outside import Escape
    from detsched._explore.explorer import Escapes

    def run(*names):
        return SimpleNamespace(escapes=[Escape((name,), f"{name} in run {number}") for name, number in names])

    runs = [run(("a", 0)), run(("b", 1), ("a", 1)), run(("c", 2), ("b", 2)), run(("d", 3))]
    in_order = Escapes()
    for index, result in enumerate(runs):
        in_order.add(result, (index,))
    assert in_order.texts() == ("a in run 0", "b in run 1", "c in run 2", "d in run 3")
    assert in_order.texts(through=(1,)) == ("a in run 0", "b in run 1")

    later, earlier = Escapes(), Escapes()  # two workers, the later runs' first to report
    for index in (3, 2):
        later.add(runs[index], (index - 2,))
    for index in (1, 0):
        earlier.add(runs[index], (index,))
    merged = Escapes()
    merged.merge(later, runs_before=2)
    merged.merge(earlier)
    assert merged.texts() == in_order.texts()
    assert merged.texts(through=(2,)) == in_order.texts(through=(2,))
