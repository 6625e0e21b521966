"""concurrent.futures keeps its contracts under detsched: ThreadPoolExecutor, Future, wait,
as_completed and Executor.map behave inside a run as the stdlib documents them.

Each test explores a small program written against plain ``concurrent.futures``, ``threading`` and
``time`` (patched for the run). The behaviours are those CPython's own concurrent.futures tests
check, written anew.
"""

import threading
import time
from concurrent import futures
from concurrent.futures import ThreadPoolExecutor

from contracts import SINGLE_THREAD_RUNS, passes, raises, virtual


def sleep_then(seconds, value):
    time.sleep(seconds)
    if isinstance(value, BaseException):
        raise value
    return value


class LoggingPool(ThreadPoolExecutor):
    """A pool subclass defined at import time (its base is the stdlib's pool)."""

    def submit(self, fn, /, *args, **kwargs):
        self.submitted = getattr(self, "submitted", 0) + 1
        return super().submit(fn, *args, **kwargs)


# ----------------------------------------------------------------------------- submit and results


def test_submit_returns_a_future_with_the_result():
    def program():
        with futures.ThreadPoolExecutor(max_workers=2) as pool:
            future = pool.submit(pow, 2, exp=10)
            assert future.result() == 1024
            assert future.done() and not future.running() and not future.cancelled()
            assert future.exception() is None
            assert pool.submit(lambda: threading.current_thread().name).result().startswith("ThreadPoolExecutor-")

    passes(program)


def test_an_exception_in_a_task_is_raised_by_result_and_returned_by_exception():
    def program():
        with ThreadPoolExecutor(max_workers=1) as pool:
            future = pool.submit(sleep_then, 1, KeyError("gone"))
            raises(future.result, KeyError, "gone")
            assert isinstance(future.exception(), KeyError)
            assert pool.submit(int, "7").result() == 7  # the worker survived the exception

    passes(program)


def test_result_with_a_timeout_raises_timeout_error_while_the_task_runs():
    def program():
        with ThreadPoolExecutor(max_workers=1) as pool:
            future = pool.submit(sleep_then, 10, "late")
            start = time.monotonic()
            raises(lambda: future.result(timeout=2), futures.TimeoutError)
            raises(lambda: future.exception(timeout=1), futures.TimeoutError)
            assert time.monotonic() - start == virtual(3)
            assert future.result(timeout=60) == "late"

    passes(program)


def test_done_callbacks_run_once_the_future_finishes_and_at_once_when_added_late():
    def program():
        calls = []
        with ThreadPoolExecutor(max_workers=1) as pool:
            future = pool.submit(sleep_then, 1, "v")
            future.add_done_callback(lambda f: calls.append(("early", f.result())))
            future.result()
            future.add_done_callback(lambda f: calls.append(("late", threading.current_thread().name)))
            assert ("late", "MainThread") in calls  # run by add_done_callback itself
        # The worker runs the early callback after waking result()'s caller, so either may be first.
        assert sorted(calls) == [("early", "v"), ("late", "MainThread")]

    passes(program)


def test_workers_get_the_default_and_prefixed_names():
    def program():
        with ThreadPoolExecutor(max_workers=2) as pool:
            default = pool.submit(lambda: threading.current_thread().name).result()
        with ThreadPoolExecutor(max_workers=2, thread_name_prefix="io") as pool:
            named = pool.submit(lambda: threading.current_thread().name).result()
        assert default == "ThreadPoolExecutor-0_0"
        assert named == "io_0"

    passes(program)


def test_no_more_workers_than_max_workers_run_tasks():
    def program():
        running, most = [0], [0]
        counting = threading.Lock()  # the counters are shared by the workers: free threading would tear them

        def task():
            with counting:
                running[0] += 1
                most[0] = max(most[0], running[0])
            time.sleep(1)
            with counting:
                running[0] -= 1

        with ThreadPoolExecutor(max_workers=3) as pool:
            for _ in range(8):
                pool.submit(task)
        assert most[0] <= 3 and running[0] == 0

    passes(program)


def test_a_fresh_pool_starts_a_worker_per_task_up_to_max_workers():
    # The stdlib reuses a worker only once it has finished a task, so two tasks that wait for each
    # other both run in a new pool of two.
    def program():
        ping, pong = threading.Event(), threading.Event()

        def first():
            ping.set()
            return pong.wait()

        def second():
            pong.set()
            return ping.wait()

        with ThreadPoolExecutor(max_workers=2) as pool:
            futures_ = [pool.submit(first), pool.submit(second)]
            assert [f.result() for f in futures_] == [True, True]

    passes(program, strategy="random")  # random finds a worker counted idle too early within a few runs


def test_bad_constructor_arguments_raise():
    def program():
        raises(lambda: ThreadPoolExecutor(max_workers=0), ValueError, "max_workers must be greater than 0")
        raises(lambda: ThreadPoolExecutor(max_workers=-1), ValueError, "max_workers must be greater than 0")
        raises(lambda: ThreadPoolExecutor(initializer=42), TypeError, "initializer must be a callable")

    passes(program, runs=SINGLE_THREAD_RUNS)


def test_a_bare_future_hands_its_result_to_waiting_threads():
    def program():
        future = futures.Future()
        results = []
        waiters = [threading.Thread(target=lambda: results.append(future.result())) for _ in range(2)]
        for waiter in waiters:
            waiter.start()
        assert future.set_running_or_notify_cancel()
        future.set_result("shared")
        for waiter in waiters:
            waiter.join()
        assert results == ["shared", "shared"]
        raises(lambda: future.set_result("again"), futures.InvalidStateError)

    passes(program)


# ----------------------------------------------------------------------------- map


def test_map_yields_results_in_argument_order():
    def program():
        with ThreadPoolExecutor(max_workers=3) as pool:
            assert list(pool.map(sleep_then, [3, 1, 2], "abc")) == ["a", "b", "c"]
            assert list(pool.map(pow, range(5), [2] * 5)) == [0, 1, 4, 9, 16]

    passes(program)


def test_map_submits_every_call_without_being_iterated():
    def program():
        done = []
        with ThreadPoolExecutor(max_workers=2) as pool:
            pool.map(done.append, range(4))
        assert sorted(done) == [0, 1, 2, 3]

    passes(program)


def test_map_reraises_the_first_failure_in_order():
    def program():
        with ThreadPoolExecutor(max_workers=2) as pool:
            results = pool.map(sleep_then, [1, 2, 1], [1, ZeroDivisionError(), 3])
            assert next(results) == 1
            raises(lambda: next(results), ZeroDivisionError)

    passes(program)


def test_map_with_a_timeout_raises_timeout_error():
    def program():
        with ThreadPoolExecutor(max_workers=2) as pool:
            results = pool.map(sleep_then, [1, 20], ["fast", "slow"], timeout=5)
            assert next(results) == "fast"
            start = time.monotonic()
            raises(lambda: next(results), futures.TimeoutError)
            assert time.monotonic() - start == virtual(4)

    passes(program)


# ----------------------------------------------------------------------------- wait and as_completed


def test_wait_first_completed_returns_as_soon_as_one_finishes():
    def program():
        with ThreadPoolExecutor(max_workers=2) as pool:
            start = time.monotonic()
            fast, slow = pool.submit(sleep_then, 1, "fast"), pool.submit(sleep_then, 5, "slow")
            done, not_done = futures.wait([fast, slow], return_when=futures.FIRST_COMPLETED)
            assert done == {fast} and not_done == {slow}
            assert time.monotonic() - start == virtual(1)

    passes(program)


def test_wait_all_completed_returns_every_future_done():
    def program():
        with ThreadPoolExecutor(max_workers=2) as pool:
            fs = [pool.submit(sleep_then, d, d) for d in (3, 1, 2)]
            done, not_done = futures.wait(fs)
            assert done == set(fs) and not_done == set()

    passes(program)


def test_wait_first_exception_returns_at_the_first_failure():
    def program():
        with ThreadPoolExecutor(max_workers=3) as pool:
            ok = pool.submit(sleep_then, 1, "ok")
            bad = pool.submit(sleep_then, 2, ValueError())
            slow = pool.submit(sleep_then, 10, "slow")
            done, not_done = futures.wait([ok, bad, slow], return_when=futures.FIRST_EXCEPTION)
            assert done == {ok, bad} and not_done == {slow}

    passes(program)


def test_wait_first_exception_without_failures_waits_for_all():
    def program():
        with ThreadPoolExecutor(max_workers=2) as pool:
            fs = [pool.submit(sleep_then, d, d) for d in (1, 2)]
            done, not_done = futures.wait(fs, return_when=futures.FIRST_EXCEPTION)
            assert done == set(fs) and not not_done

    passes(program)


def test_wait_with_a_timeout_returns_what_finished_by_then():
    def program():
        with ThreadPoolExecutor(max_workers=2) as pool:
            fast, slow = pool.submit(sleep_then, 1, 1), pool.submit(sleep_then, 50, 2)
            start = time.monotonic()
            done, not_done = futures.wait([fast, slow], timeout=10)
            assert time.monotonic() - start == virtual(10)
            assert done == {fast} and not_done == {slow}

    passes(program)


def test_as_completed_yields_futures_in_the_order_they_finish():
    def program():
        with ThreadPoolExecutor(max_workers=3) as pool:
            fs = [pool.submit(sleep_then, d, d) for d in (3, 1, 2)]
            assert [f.result() for f in futures.as_completed(fs)] == [1, 2, 3]
            assert sorted(f.result() for f in futures.as_completed(fs * 2)) == [1, 2, 3]  # duplicates once

    passes(program)


def test_as_completed_raises_timeout_error_for_unfinished_futures():
    def program():
        with ThreadPoolExecutor(max_workers=2) as pool:
            fast, slow = pool.submit(sleep_then, 1, 1), pool.submit(sleep_then, 30, 2)
            seen = []
            try:
                for future in futures.as_completed([fast, slow], timeout=5):
                    seen.append(future)
            except futures.TimeoutError as exc:
                assert "1 (of 2) futures unfinished" in str(exc)
            else:
                raise AssertionError("as_completed did not time out")
            assert seen == [fast]

    passes(program)


# ----------------------------------------------------------------------------- cancel and shutdown


def test_a_pending_future_can_be_cancelled_but_a_running_one_cannot():
    def program():
        gate = threading.Event()
        with ThreadPoolExecutor(max_workers=1) as pool:
            running = pool.submit(gate.wait)
            pending = pool.submit(print, "never")
            while not running.running():
                time.sleep(0.01)
            assert pending.cancel() and pending.cancelled() and pending.done()
            assert not running.cancel()
            raises(pending.result, futures.CancelledError)
            gate.set()
        assert running.result() is True

    passes(program)


def test_shutdown_waits_for_submitted_work():
    def program():
        done = []
        pool = ThreadPoolExecutor(max_workers=2)
        for delay in (2, 1, 3):
            pool.submit(lambda d=delay: (time.sleep(d), done.append(d)))
        pool.shutdown(wait=True)
        assert sorted(done) == [1, 2, 3]

    passes(program)


def test_shutdown_without_waiting_still_finishes_pending_work():
    def program():
        pool = ThreadPoolExecutor(max_workers=1)
        fs = [pool.submit(sleep_then, 1, n) for n in range(3)]
        pool.shutdown(wait=False)
        assert [f.result() for f in fs] == [0, 1, 2]

    passes(program)


def test_shutdown_with_cancel_futures_cancels_pending_work():
    def program():
        gate = threading.Event()
        pool = ThreadPoolExecutor(max_workers=1)
        first = pool.submit(gate.wait)
        while not first.running():
            time.sleep(0.01)
        rest = [pool.submit(print, n) for n in range(3)]
        pool.shutdown(wait=False, cancel_futures=True)
        assert all(f.cancelled() for f in rest) and not first.cancelled()
        gate.set()
        pool.shutdown(wait=True)
        assert first.result() is True

    passes(program)


def test_submit_after_shutdown_raises():
    def program():
        pool = ThreadPoolExecutor(max_workers=1)
        pool.submit(print, end="").result()
        pool.shutdown()
        raises(lambda: pool.submit(print), RuntimeError, "cannot schedule new futures after shutdown")
        with ThreadPoolExecutor() as other:
            pass
        raises(lambda: other.submit(print), RuntimeError, "cannot schedule new futures after shutdown")

    passes(program)


def test_a_failing_initializer_breaks_the_pool():
    def program():
        def initializer():
            raise OSError("no resource")

        pool = ThreadPoolExecutor(max_workers=2, initializer=initializer)
        future = pool.submit(print, "never")
        raises(future.result, futures.thread.BrokenThreadPool, "initializer failed")
        raises(lambda: pool.submit(print), futures.thread.BrokenThreadPool, "initializer failed")
        pool.shutdown()

    passes(program)


def test_an_initializer_runs_in_every_worker_before_its_tasks():
    def program():
        local = threading.local()

        def initializer(tag):
            local.tag = tag

        with ThreadPoolExecutor(max_workers=2, initializer=initializer, initargs=("ready",)) as pool:
            assert [f.result() for f in [pool.submit(lambda: local.tag) for _ in range(4)]] == ["ready"] * 4

    passes(program)


def test_idle_workers_left_in_an_open_pool_are_not_a_leak():
    def program():
        pool = ThreadPoolExecutor(max_workers=2)
        assert pool.submit(sum, [1, 2]).result() == 3

    passes(program)


def test_a_pool_subclass_defined_at_import_runs_under_control():
    def program():
        with LoggingPool(max_workers=2) as pool:
            assert list(pool.map(sleep_then, [2, 1], "ab")) == ["a", "b"]
            assert pool.submit(sleep_then, 1, "c").result() == "c"
            assert pool.submitted == 3

    passes(program)
