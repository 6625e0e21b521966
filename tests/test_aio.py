"""asyncio under control: each asyncio failure kind is found in its example and not in its fixed
twin, failures replay identically, time is virtual, and the event loop policy is put back."""

import asyncio
import inspect
import socket
import sys
import threading
import time

import pytest

import detsched
from bundled_examples import EXAMPLES_DIR, found
from bundled_examples import target as example
from contracts import virtual
from detsched import settings
from other_pythons import other_interpreters, replay_elsewhere, run_python

EXPLORE = ("import detsched; r = detsched.explore({target!r}, runs=500, seed=11); "
           "print(r.runs, r.failure.schedule.dumps())")


def failure_of(target, **options) -> detsched.Failure:
    report = detsched.explore(target, **{"runs": 300, **options})
    assert report.failure is not None, f"no failure in {report.runs} runs"
    return report.failure


# ----------------------------------------------------------------------------- the examples

def test_check_then_act_across_an_await_is_found():
    failure = found("aio_cache")
    assert failure.kind == "exception"
    assert "queried the backend 2 times for 'user:42', expected once" in failure.message
    # Both requests handed their query to the pool before its worker thread took a step.
    rows = failure.timeline().splitlines()
    submits = [i for i, row in enumerate(rows) if "submit ThreadPoolExecutor(aio_cache.py:" in row]
    first_worker_step = next(i for i, row in enumerate(rows) if row.split()[1:2] == ["begin"])
    assert len(submits) == 2 and submits[1] < first_worker_step


def test_check_then_act_example_nearly_always_passes_under_stock_asyncio():
    sys.path.insert(0, str(EXAMPLES_DIR))
    try:
        import aio_cache
    finally:
        sys.path.remove(str(EXAMPLES_DIR))

    def passes() -> bool:
        try:
            asyncio.run(aio_cache.main())
        except AssertionError:
            return False
        return True

    # The pool's new thread answers the first query before the second request arrives, nearly
    # every time: interleaving that thread with the loop is what finds the bug.
    assert sum(passes() for _ in range(10)) >= 9


def test_lock_order_deadlock_is_reported_with_its_wait_for_chain():
    failure = found("aio_deadlock")
    assert failure.kind == "deadlock"
    assert "waits for asyncio.Lock(aio_deadlock.py:" in failure.message
    assert "held by Task-3 request()" in failure.message and "held by Task-2 request()" in failure.message
    assert "in transfer" in failure.details  # each blocked task's stack


def test_fire_and_forget_task_is_reported_as_a_leak():
    failure = found("aio_leak")
    assert failure.kind == "leak"
    assert failure.message.startswith("Task-2 Shop.send_confirmation() at aio_leak.py:")
    assert failure.message.endswith(", still pending when the main coroutine returned")
    assert "in send_confirmation" in failure.details  # still awaiting the mail client's thread


@pytest.mark.parametrize("name", ["aio_cache", "aio_deadlock", "aio_leak"])
def test_fixed_twin_passes(name):
    report = detsched.explore(example(name, "fixed"), runs=200)
    assert report.failure is None, report.failure


@pytest.mark.parametrize("name", ["aio_cache", "aio_deadlock", "aio_leak"])
def test_failure_replays_identically_three_times(name):
    failure = found(name)
    for _ in range(3):
        again = detsched.replay(example(name, "main"), failure.schedule.dumps())
        assert (again.kind, again.message, again.timeline()) == (failure.kind, failure.message, failure.timeline())


#: aio_leak's failure needs the strategy to run the mail thread late, so its schedule holds decisions
#: to replay (aio_cache and aio_deadlock fail in the default order, whose schedule holds none).
TARGETS = [example("aio_leak", "main"), f"{__file__}::thread_and_task_race"]


@pytest.mark.parametrize("target", TARGETS)
def test_same_seed_same_runs_in_two_processes(target):
    code = EXPLORE.format(target=target)
    assert run_python(sys.executable, code) == run_python(sys.executable, code)


def standalone_target(name: str, tmp_path) -> str:
    """``name`` as a target another interpreter can load: an example, or this module's function
    (with the helper it calls) written to a file that imports only the standard library."""
    if name == "aio_leak":
        return example("aio_leak", "main")
    source = "\n\n".join(inspect.getsource(f) for f in (count_with_a_thread_and_a_task, thread_and_task_race))
    path = tmp_path / "aio_thread_and_task.py"
    path.write_text(f"import asyncio\nimport threading\n\n\n{source}")
    return f"{path}::{name}"


@pytest.mark.skipif(not other_interpreters(), reason="no other CPython under ~/.pyenv/versions")
@pytest.mark.parametrize("python", other_interpreters())
@pytest.mark.parametrize("name", ["aio_leak", "thread_and_task_race"])
def test_schedule_replays_on_other_python_versions(name, python, tmp_path):
    target = standalone_target(name, tmp_path)
    failure = detsched.explore(target, runs=500, seed=11).failure
    assert failure is not None, f"{target}: no failure in 500 runs with seed 11"
    assert replay_elsewhere(python, target, failure.schedule.dumps()) == f"{failure.kind} {failure.message}"


# ----------------------------------------------------------------------------- virtual time

async def sleeps_for_hours():
    loop = asyncio.get_running_loop()
    started = loop.time()
    for _ in range(10):
        await asyncio.sleep(3600)
    assert loop.time() - started == virtual(36_000)


def test_hour_long_sleeps_run_on_virtual_time():
    assert detsched.explore(sleeps_for_hours, runs=20).failure is None


async def times_out():
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(asyncio.sleep(10), timeout=1)
    assert loop.time() - started == virtual(1)


def test_wait_for_times_out_on_the_virtual_clock():
    assert detsched.explore(times_out, runs=20).failure is None


async def completes_before_its_timeout():
    assert await asyncio.wait_for(asyncio.sleep(1, "done"), timeout=1) == "done"


def test_a_timeout_due_with_the_result_is_a_choice():
    failure = failure_of(completes_before_its_timeout)
    assert failure.kind == "exception" and "TimeoutError" in failure.message


async def reads_loop_and_time_module():
    import time

    loop = asyncio.get_running_loop()
    await asyncio.sleep(5)
    assert time.monotonic() == loop.time()


def test_loop_time_is_the_clock_threads_see():
    assert detsched.explore(reads_loop_and_time_module, runs=5).failure is None


# ----------------------------------------------------------------------------- failure kinds

async def loses_a_task_exception():
    async def job():
        raise ValueError("job failed")

    asyncio.create_task(job())
    await asyncio.sleep(1)


def test_exception_nobody_retrieved_is_a_failure():
    failure = failure_of(loses_a_task_exception)
    assert failure.kind == "exception" and failure.message == "ValueError: job failed"
    assert "Task-2 job(); nothing retrieved its exception" in failure.thread
    assert 'raise ValueError("job failed")' in failure.details


async def raises_in_a_callback():
    asyncio.get_running_loop().call_soon(int, "not a number")
    await asyncio.sleep(0)


def test_exception_in_a_callback_is_a_failure():
    failure = failure_of(raises_in_a_callback)
    assert failure.kind == "exception" and "invalid literal for int()" in failure.message
    assert failure.thread == "callback int"


async def pulses_an_event():
    ready = asyncio.Event()

    async def waiter():
        await ready.wait()

    task = asyncio.create_task(waiter())
    ready.set()
    ready.clear()  # before the waiter ever ran
    await task


def test_event_set_and_cleared_before_the_wait_is_a_lost_wakeup():
    failure = failure_of(pulses_an_event)
    assert failure.kind == "lost-wakeup"
    assert "Task-2 waiter() waits for asyncio.Event(test_aio.py:" in failure.message
    assert "set it at step" in failure.message and "cleared it at step" in failure.message


async def notifies_too_early():
    condition = asyncio.Condition()

    async def waiter():
        async with condition:
            await condition.wait()

    async def notifier():
        async with condition:
            condition.notify()

    await asyncio.gather(notifier(), waiter())


def test_notify_before_the_wait_is_a_lost_wakeup():
    failure = failure_of(notifies_too_early)
    assert failure.kind == "lost-wakeup"
    assert "Task-2 notifier() notified it at step" in failure.message
    assert "before Task-3 waiter() started waiting" in failure.message


async def consumes_from_an_empty_queue():
    jobs = asyncio.Queue()

    async def consumer():
        await jobs.get()

    await asyncio.gather(consumer())


def test_queue_nothing_feeds_is_a_deadlock():
    failure = failure_of(consumes_from_an_empty_queue)
    assert failure.kind == "deadlock"
    assert "Task-2 consumer() at test_aio.py:" in failure.message
    assert "waits to get from asyncio.Queue(test_aio.py:" in failure.message and "which is empty" in failure.message


async def waits_for_a_future_nobody_sets():
    await asyncio.get_running_loop().create_future()


def test_future_nothing_completes_is_a_deadlock():
    failure = failure_of(waits_for_a_future_nobody_sets)
    assert failure.kind == "deadlock" and "waits for a Future" in failure.message


async def forgets_an_await():
    async def save():
        pass

    save()
    await asyncio.sleep(0)


def test_coroutine_never_awaited_is_a_leak():
    failure = failure_of(forgets_an_await)
    assert failure.kind == "leak" and "coroutine forgets_an_await.<locals>.save() was never awaited" in failure.message


def calls_an_async_function_from_plain_code():
    async def save():
        pass

    save()


def test_coroutine_never_awaited_in_plain_code_is_a_leak():
    failure = failure_of(calls_an_async_function_from_plain_code)
    assert failure.kind == "leak" and "save() was never awaited (dropped at test_aio.py:" in failure.message


async def abandons_an_async_generator():
    async def ticks():
        for tick in range(10):
            yield tick

    async for tick in ticks():
        if tick == 2:
            break
    await asyncio.sleep(0)


def test_async_generator_left_to_the_garbage_collector_is_a_leak():
    failure = failure_of(abandons_an_async_generator)
    assert failure.kind == "leak"
    assert "async generator abandons_an_async_generator.<locals>.ticks() was never closed" in failure.message


async def polls_forever():
    done = []
    while not done:
        await asyncio.sleep(0)


def test_polling_for_what_never_happens_is_a_livelock():
    failure = failure_of(polls_forever, max_steps=2000)
    assert failure.kind == "livelock" and "Task-1 polls_forever() resumes" in failure.message


# ----------------------------------------------------------------------------- policy and loops

def test_stock_policy_is_restored_after_every_run():
    before = asyncio.get_event_loop_policy()
    detsched.explore(sleeps_for_hours, runs=3)
    failure_of(pulses_an_event)
    assert asyncio.get_event_loop_policy() is before


def test_run_after_one_blocked_outside_control_restores_the_policy(monkeypatch):
    monkeypatch.setattr(settings, "BLOCKED_AFTER", 0.2)
    receiver, sender = socket.socketpair()

    async def blocks():
        receiver.recv(1)  # real I/O, outside detsched's control: the loop's thread blocks for real

    before = asyncio.get_event_loop_policy()
    try:
        assert detsched.explore(blocks, runs=1).failure.kind == "blocked"
        assert detsched.explore(sleeps_for_hours, runs=1).failure is None
        assert asyncio.get_event_loop_policy() is before
    finally:
        sender.send(b"!")
        receiver.close()
        sender.close()


def runs_asyncio_run_itself():
    async def main():
        await asyncio.sleep(3600)
        return type(asyncio.get_running_loop()).__name__

    assert asyncio.run(main()) == "ControlledEventLoop"


def test_plain_target_calling_asyncio_run_gets_the_controlled_loop():
    assert detsched.explore(runs_asyncio_run_itself, runs=5).failure is None


def test_async_target_named_by_file_and_function():
    report = detsched.explore(f"{__file__}::sleeps_for_hours", runs=3)
    assert report.failure is None


# ----------------------------------------------------------------------------- threads and tasks

async def count_with_a_thread_and_a_task(gap: bool):
    """A pool thread and a task each add one to a counter under a lock; with ``gap``, each reads it
    in one lock region and writes it in another (the task awaits in between)."""
    state = {"count": 0}
    lock = threading.Lock()

    def add_one():
        with lock:
            seen = state["count"]
            if not gap:
                state["count"] = seen + 1
        if gap:
            with lock:
                state["count"] = seen + 1

    async def add_one_in_task():
        add_one()
        await asyncio.sleep(0)
        add_one()  # and a second time, so both sides take part across the await

    await asyncio.gather(asyncio.to_thread(add_one), add_one_in_task())
    assert state["count"] == 3, f"count is {state['count']}, expected 3"


async def thread_and_task_race():
    await count_with_a_thread_and_a_task(gap=True)


async def thread_and_task_fixed():
    await count_with_a_thread_and_a_task(gap=False)


def test_lost_update_between_a_thread_and_a_task_is_found():
    failure = failure_of(thread_and_task_race)
    assert failure.kind == "exception" and "count is 2, expected 3" in failure.message
    threads_in_timeline = {step.tid for step in failure.trace}
    assert len(threads_in_timeline) == 2  # the loop's thread and the pool worker, in one schedule


async def polls_for_a_thread():
    finished = []
    work = asyncio.get_running_loop().run_in_executor(None, finished.append, True)
    while not finished:
        await asyncio.sleep(0)  # "let others run": the pool thread, here
    await work


def test_task_polling_for_a_thread_gives_way_to_it():
    for strategy in ("pct", "random"):
        assert detsched.explore(polls_for_a_thread, runs=50, strategy=strategy).failure is None


async def thread_waits_for_a_coroutine():
    loop = asyncio.get_running_loop()

    async def double(number):
        await asyncio.sleep(1)
        return 2 * number

    def worker():
        return asyncio.run_coroutine_threadsafe(double(21), loop).result(timeout=5)

    assert await asyncio.to_thread(worker) == 42


def test_thread_waiting_on_the_loop_with_a_timeout_gets_its_result_in_time():
    assert detsched.explore(thread_waits_for_a_coroutine, runs=50).failure is None


def an_event_loop_per_thread():
    finished = []

    def worker(seconds):
        async def main():
            await asyncio.sleep(seconds)

        asyncio.run(main())
        finished.append(seconds)

    threads = [threading.Thread(target=worker, args=(seconds,)) for seconds in (2, 1)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert finished == [1, 2], f"finished in order {finished}"


def test_loops_in_several_threads_share_one_virtual_clock():
    assert detsched.explore(an_event_loop_per_thread, runs=50).failure is None


async def polls_while_a_thread_sleeps():
    loop = asyncio.get_running_loop()
    started = loop.time()
    done = []

    async def finish_after_a_second():
        await asyncio.sleep(1)
        done.append(loop.time() - started)

    def sleep_five_seconds():
        time.sleep(5)

    sleeper = asyncio.ensure_future(asyncio.to_thread(sleep_five_seconds))
    finisher = asyncio.create_task(finish_after_a_second())
    while not done:
        await asyncio.sleep(0)
    assert done == [virtual(1)], f"the one-second timer fired after {done[0]} s"
    await asyncio.gather(sleeper, finisher)


def test_polling_lets_time_run_to_the_loops_next_timer_not_past_it():
    assert detsched.explore(polls_while_a_thread_sleeps, runs=50).failure is None


def test_thread_and_task_twin_without_the_gap_passes():
    assert detsched.explore(thread_and_task_fixed, runs=300).failure is None


async def uses_run_in_executor():
    loop = asyncio.get_running_loop()
    results = await asyncio.gather(*(loop.run_in_executor(None, pow, 2, n) for n in range(4)))
    assert results == [1, 2, 4, 8]


def test_run_in_executor_results_reach_the_tasks():
    assert detsched.explore(uses_run_in_executor, runs=50).failure is None


# ----------------------------------------------------------------------------- bad input

async def finishes():
    await asyncio.sleep(0)


def test_coroutine_object_is_refused_with_what_to_pass_instead():
    with pytest.raises(detsched.DetschedUsageError, match=r"coroutine object finishes\(\), which can run only once"):
        detsched.explore(finishes())


async def nests_asyncio_run():
    asyncio.run(finishes())


def test_asyncio_run_inside_an_async_target_is_a_usage_error():
    with pytest.raises(detsched.DetschedUsageError, match="already runs the async target"):
        detsched.explore(nests_asyncio_run, runs=1)


async def opens_a_socket():
    await asyncio.open_connection("127.0.0.1", 9)


def test_real_socket_is_refused_instead_of_hanging():
    with pytest.raises(detsched.DetschedUsageError, match="real I/O .* is outside detsched's control"):
        detsched.explore(opens_a_socket, runs=1)


async def starts_a_process():
    await asyncio.create_subprocess_exec(sys.executable, "-c", "pass")


def test_subprocess_is_refused_instead_of_hanging():
    with pytest.raises(detsched.DetschedUsageError, match="real I/O .* is outside detsched's control"):
        detsched.explore(starts_a_process, runs=1)


def test_loop_made_before_the_run_is_a_usage_error():
    loop = asyncio.new_event_loop()
    try:
        with pytest.raises(detsched.DetschedUsageError, match="made outside detsched's control started in a"):
            detsched.explore(loop.run_forever, runs=1)
    finally:
        loop.close()


def test_uvloop_policy_is_set_aside_during_runs_and_put_back():
    uvloop = pytest.importorskip("uvloop")
    before = asyncio.get_event_loop_policy()
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    try:
        installed = asyncio.get_event_loop_policy()
        assert detsched.explore(runs_asyncio_run_itself, runs=3).failure is None
        assert asyncio.get_event_loop_policy() is installed
    finally:
        asyncio.set_event_loop_policy(before)


def installs_uvloop():
    import uvloop

    uvloop.install()


def test_installing_uvloop_inside_a_run_is_a_usage_error():
    pytest.importorskip("uvloop")
    with pytest.raises(detsched.DetschedUsageError, match=r"uvloop.install\(\)\?"):
        detsched.explore(installs_uvloop, runs=1)


# ----------------------------------------------------------------------------- anyio, pytest-asyncio

async def anyio_check_then_act():
    import anyio

    loads = []
    values = {}

    async def get(key):
        if key not in values:
            loads.append(key)
            values[key] = await anyio.to_thread.run_sync(str.upper, key)  # a blocking load

    async def late_get(key):
        await anyio.sleep(0)
        await get(key)

    async with anyio.create_task_group() as group:
        group.start_soon(get, "k")
        group.start_soon(late_get, "k")
    assert len(loads) == 1, f"loaded {len(loads)} times"


def test_anyio_task_group_race_is_found():
    pytest.importorskip("anyio")
    failure = failure_of(anyio_check_then_act)
    assert failure.kind == "exception" and "loaded 2 times" in failure.message


def anyio_run_with_long_timeouts():
    import anyio

    async def main():
        started = anyio.current_time()
        with anyio.move_on_after(60):
            await anyio.sleep(3600)
        assert anyio.current_time() - started == virtual(60)

    anyio.run(main, backend="asyncio")


def test_anyio_run_uses_the_controlled_loop_and_virtual_time():
    pytest.importorskip("anyio")
    assert detsched.explore(anyio_run_with_long_timeouts, runs=5).failure is None


def test_explore_inside_a_pytest_asyncio_test(pytester):
    pytest.importorskip("pytest_asyncio")
    pytester.makeini("[pytest]\nasyncio_default_fixture_loop_scope = function\n")
    pytester.makepyfile(
        """
        import asyncio
        import pytest
        import detsched

        async def race():
            hits = []
            async def bump():
                seen = len(hits)
                await asyncio.sleep(0)
                hits[seen:] = [True]
            await asyncio.gather(bump(), bump())
            assert len(hits) == 2

        @pytest.mark.asyncio
        async def test_race():
            policy = asyncio.get_event_loop_policy()
            report = detsched.explore(race, runs=50)
            assert report.failure is not None and report.failure.kind == "exception"
            assert asyncio.get_event_loop_policy() is policy
            await asyncio.sleep(0)  # pytest-asyncio's own loop still works
        """
    )
    result = pytester.runpytest_inprocess("-p", "asyncio", "-q")
    result.assert_outcomes(passed=1)


def test_detsched_marker_on_a_pytest_asyncio_test_explores_its_tasks(pytester):
    pytest.importorskip("pytest_asyncio")
    pytester.makeini("[pytest]\nasyncio_default_fixture_loop_scope = function\n")
    pytester.makepyfile(
        """
        import asyncio
        import pytest

        @pytest.mark.asyncio
        @pytest.mark.detsched(runs=50)
        async def test_race():
            hits = []
            async def bump():
                seen = len(hits)
                await asyncio.sleep(0)
                hits[seen:] = [True]
            await asyncio.gather(bump(), bump())
            assert len(hits) == 2
        """
    )
    result = pytester.runpytest_inprocess("-p", "asyncio", "-q")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*detsched found a failure*", "*--detsched-replay=*"])

