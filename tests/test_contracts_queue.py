"""queue keeps its contracts under detsched: Queue, LifoQueue, PriorityQueue and SimpleQueue order,
block, time out, count tasks and shut down inside a run as the stdlib documents them, and queue
subclasses written against the stdlib keep working.

Each test explores a small program written against plain ``queue``, ``threading`` and ``time``
(patched for the run). The behaviours are those CPython's own queue tests check, written anew.
"""

import queue
import sys
import threading
import time

import pytest

from contracts import SINGLE_THREAD_RUNS, passes, raises, virtual

QUEUE_KINDS = ["Queue", "LifoQueue", "PriorityQueue"]


def start(target, *args):
    thread = threading.Thread(target=target, args=args)
    thread.start()
    return thread


class RecordingQueue(queue.Queue):
    """A stdlib queue subclass defined at import time that overrides the storage hooks."""

    def _init(self, maxsize):
        super()._init(maxsize)
        self.log = []

    def _put(self, item):
        self.log.append(("put", item))
        super()._put(item * 10)

    def _get(self):
        item = super()._get()
        self.log.append(("get", item))
        return item


class Unlucky(Exception):
    pass


def failing_queue_class(base):
    """A queue whose storage fails on "bad" puts and "poison" gets; the queue must stay consistent."""

    class FailingQueue(base):
        def _put(self, item):
            if item == "bad":
                raise Unlucky
            super()._put(item)

        def _get(self):
            if self.queue[0] == "poison":
                raise Unlucky
            return super()._get()

    return FailingQueue


STDLIB_FAILING_QUEUE = failing_queue_class(queue.Queue)  # made at import: based on the stdlib's Queue


MODULE_QUEUE = RecordingQueue(maxsize=2)


# ----------------------------------------------------------------------------- ordering


@pytest.mark.parametrize("kind, expected", [("Queue", [3, 1, 2]), ("LifoQueue", [2, 1, 3]), ("PriorityQueue", [1, 2, 3])])
def test_each_queue_kind_hands_items_out_in_its_order(kind, expected):
    def program():
        q = getattr(queue, kind)()
        for item in (3, 1, 2):
            q.put(item)
        assert [q.get() for _ in range(3)] == expected

    passes(program, runs=SINGLE_THREAD_RUNS)


def test_priority_queue_orders_tuples_by_priority_first():
    def program():
        q = queue.PriorityQueue()
        for entry in [(2, "b"), (1, "z"), (2, "a"), (0, "x")]:
            q.put(entry)
        assert [q.get()[1] for _ in range(4)] == ["x", "z", "a", "b"]

    passes(program, runs=SINGLE_THREAD_RUNS)


def test_fifo_order_is_kept_between_a_producer_and_a_consumer():
    def program():
        q = queue.Queue(maxsize=2)
        received = []

        def consumer():
            for _ in range(5):
                received.append(q.get())

        thread = start(consumer)
        for item in range(5):
            q.put(item)
        thread.join()
        assert received == [0, 1, 2, 3, 4]

    passes(program)


# ----------------------------------------------------------------------------- blocking and timeouts


@pytest.mark.parametrize("kind", QUEUE_KINDS)
def test_put_on_a_full_queue_blocks_until_a_get(kind):
    def program():
        q = getattr(queue, kind)(maxsize=1)
        q.put(1)
        events = []

        def putter():
            q.put(2)
            events.append("put returned")

        thread = start(putter)
        time.sleep(5)
        assert events == [] and q.full()
        events.append("get")
        assert q.get() == 1
        thread.join()
        assert events == ["get", "put returned"] and q.get() == 2

    passes(program)


@pytest.mark.parametrize("kind", QUEUE_KINDS)
def test_get_on_an_empty_queue_blocks_until_a_put(kind):
    def program():
        q = getattr(queue, kind)()
        got = []
        thread = start(lambda: got.append(q.get()))
        time.sleep(5)
        assert got == []
        q.put("item")
        thread.join()
        assert got == ["item"]

    passes(program)


@pytest.mark.parametrize("kind", QUEUE_KINDS)
def test_timed_put_and_get_raise_full_and_empty_after_the_timeout(kind):
    def program():
        q = getattr(queue, kind)(maxsize=1)
        start_time = time.monotonic()
        raises(lambda: q.get(timeout=0.5), queue.Empty)
        assert time.monotonic() - start_time == virtual(0.5)
        q.put(1, timeout=0.5)
        raises(lambda: q.put(2, timeout=2), queue.Full)
        assert time.monotonic() - start_time == virtual(2.5)
        raises(lambda: q.put(2, True, 0), queue.Full)
        assert q.get(timeout=1) == 1

    passes(program, runs=SINGLE_THREAD_RUNS)


def test_a_timed_get_returns_an_item_that_arrives_in_time():
    def program():
        q = queue.Queue()
        results = []

        def getter():
            try:
                results.append(q.get(timeout=10))
            except queue.Empty:
                results.append("empty")

        thread = start(getter)
        time.sleep(3)
        q.put("late but in time")
        thread.join()
        assert results == ["late but in time"]

    passes(program)


@pytest.mark.parametrize("kind", QUEUE_KINDS)
def test_nowait_variants_raise_instead_of_blocking(kind):
    def program():
        q = getattr(queue, kind)(maxsize=1)
        raises(q.get_nowait, queue.Empty)
        raises(lambda: q.get(False), queue.Empty)
        q.put_nowait("a")
        raises(lambda: q.put_nowait("b"), queue.Full)
        raises(lambda: q.put("b", block=False), queue.Full)
        assert q.get_nowait() == "a"

    passes(program, runs=SINGLE_THREAD_RUNS)


@pytest.mark.parametrize("maxsize", [0, 1])
def test_negative_timeouts_raise_value_error_where_the_stdlib_checks_them(maxsize):
    def program():
        q = queue.Queue(maxsize)
        raises(lambda: q.get(timeout=-1), ValueError, "'timeout' must be a non-negative number")
        if maxsize:
            raises(lambda: q.put(1, timeout=-1), ValueError, "'timeout' must be a non-negative number")
            q.put(1)
        else:  # an unbounded queue never waits, so the stdlib ignores a put's timeout
            q.put(1, timeout=-1)
        raises(lambda: q.get(timeout=-1), ValueError, "'timeout' must be a non-negative number")
        assert q.get(block=False, timeout=-1) == 1

    passes(program, runs=SINGLE_THREAD_RUNS)


def test_changing_maxsize_at_run_time_takes_effect():
    def program():
        q = queue.Queue(maxsize=2)
        q.put(1)
        q.put(2)
        raises(lambda: q.put_nowait(3), queue.Full)
        q.maxsize = 3
        q.put_nowait(3)
        assert q.full()
        blocked = start(q.put, 4)
        time.sleep(1)
        q.maxsize = 0  # unbounded from now on: the waiting put goes ahead
        blocked.join()
        assert q.qsize() == 4 and not q.full()

    passes(program)


# ----------------------------------------------------------------------------- task tracking


def test_join_waits_until_every_item_is_marked_done():
    def program():
        q = queue.Queue()
        done = []

        def worker():
            while True:
                item = q.get()
                if item is None:
                    q.task_done()
                    return
                time.sleep(1)
                done.append(item)
                q.task_done()

        thread = start(worker)
        for item in range(3):
            q.put(item)
        q.join()
        assert done == [0, 1, 2] and q.unfinished_tasks == 0
        q.put(None)
        thread.join()
        q.join()

    passes(program)


def test_join_returns_at_once_when_nothing_is_unfinished():
    def program():
        q = queue.Queue()
        q.join()
        q.put(1)
        q.get()
        q.task_done()
        q.join()

    passes(program, runs=SINGLE_THREAD_RUNS)


def test_too_many_task_done_calls_raise():
    def program():
        q = queue.Queue()
        raises(q.task_done, ValueError, "task_done() called too many times")
        q.put(1)
        q.get()
        q.task_done()
        raises(q.task_done, ValueError, "task_done() called too many times")
        assert q.unfinished_tasks == 0

    passes(program, runs=SINGLE_THREAD_RUNS)


@pytest.mark.parametrize("kind", QUEUE_KINDS)
def test_qsize_empty_and_full_describe_the_queue(kind):
    def program():
        q = getattr(queue, kind)(maxsize=2)
        assert (q.qsize(), q.empty(), q.full()) == (0, True, False)
        q.put(1)
        assert (q.qsize(), q.empty(), q.full()) == (1, False, False)
        q.put(2)
        assert (q.qsize(), q.empty(), q.full()) == (2, False, True)
        unbounded = getattr(queue, kind)()
        for item in range(50):
            unbounded.put(item)
        assert unbounded.qsize() == 50 and not unbounded.full() and unbounded.maxsize == 0
        negative = getattr(queue, kind)(maxsize=-1)  # any maxsize <= 0 means unbounded
        for item in range(5):
            negative.put(item, timeout=0)
        assert negative.qsize() == 5 and not negative.full()

    passes(program, runs=SINGLE_THREAD_RUNS)


# ----------------------------------------------------------------------------- subclasses


def test_a_stdlib_queue_subclass_defined_at_import_keeps_its_hooks():
    def program():
        q = RecordingQueue(maxsize=1)
        got = []
        thread = start(lambda: got.extend([q.get(), q.get(timeout=5)]))
        q.put(1)
        q.put(2)
        thread.join()
        assert got == [10, 20]
        assert q.log == [("put", 1), ("get", 10), ("put", 2), ("get", 20)]
        raises(lambda: q.get(timeout=1), queue.Empty)

    passes(program)


def test_a_module_level_instance_of_a_queue_subclass_is_usable_in_every_run():
    def program():
        q = MODULE_QUEUE
        thread = start(lambda: q.put(1))
        q.put(2)
        thread.join()
        assert q.full()
        raises(lambda: q.put(3, timeout=1), queue.Full)
        assert sorted([q.get(), q.get()]) == [10, 20]

    passes(program)
    assert MODULE_QUEUE.qsize() == 0  # runs never leak into the real object


def test_a_queue_subclass_made_inside_the_run_keeps_its_hooks():
    def program():
        class Doubling(queue.Queue):
            def _put(self, item):
                super()._put(item * 2)

        q = Doubling()
        thread = start(lambda: q.put(21))
        assert q.get() == 42
        thread.join()

    passes(program)


def test_the_clear_idiom_on_the_queue_internals_works():
    def program():
        q = queue.Queue(maxsize=2)
        q.put(1)
        q.put(2)
        joiner = start(q.join)
        putter = start(q.put, 3)
        with q.mutex:  # a common way to empty a queue and release join()
            q.queue.clear()
            q.unfinished_tasks = 0
            q.all_tasks_done.notify_all()
            q.not_full.notify_all()
        putter.join()
        assert q.get() == 3
        q.task_done()
        joiner.join()

    passes(program)


def test_a_subclass_waiting_on_the_queue_conditions_is_woken_by_put_and_get():
    def program():
        class Batching(queue.Queue):
            def get_all(self):
                with self.not_empty:
                    while not self._qsize():
                        self.not_empty.wait()
                    items = list(self.queue)
                    self.queue.clear()
                    self.not_full.notify_all()
                    return items

            def put_when_empty(self, item):
                with self.not_full:
                    while self._qsize():
                        self.not_full.wait()
                    self._put(item)
                    self.unfinished_tasks += 1
                    self.not_empty.notify()

        q = Batching(maxsize=3)
        batches = []
        consumer = start(lambda: batches.append(q.get_all()))
        q.put(1)  # wakes the consumer if it already waits on not_empty
        consumer.join()
        assert batches == [[1]]
        q.put(3)
        producer = start(q.put_when_empty, 4)
        assert q.get() == 3  # wakes the producer if it already waits on not_full
        producer.join()
        assert q.get() == 4
        with q.all_tasks_done:
            assert q.unfinished_tasks == 3

    passes(program)


@pytest.mark.parametrize("made", ["at import", "in the run"])
def test_failing_storage_hooks_leave_the_queue_consistent(made):
    def program():
        cls = STDLIB_FAILING_QUEUE if made == "at import" else failing_queue_class(queue.Queue)
        q = cls(maxsize=2)
        q.put("good")
        raises(lambda: q.put("bad"), Unlucky)
        assert q.qsize() == 1 and q.unfinished_tasks == 1
        getter = start(q.get)
        getter.join()
        q.task_done()
        q.join()
        q.put("poison")
        raises(q.get, Unlucky)
        assert q.qsize() == 1 and q.queue[0] == "poison"

    passes(program)


# ----------------------------------------------------------------------------- SimpleQueue


def test_simple_queue_is_fifo_and_never_full():
    def program():
        q = queue.SimpleQueue()
        assert q.empty() and q.qsize() == 0
        for item in range(100):
            q.put(item)
        q.put_nowait(100)
        q.put(101, block=False, timeout=5)
        assert q.qsize() == 102 and not q.empty()
        assert [q.get() for _ in range(102)] == list(range(102))

    passes(program, runs=SINGLE_THREAD_RUNS)


def test_simple_queue_get_times_out_with_empty():
    def program():
        q = queue.SimpleQueue()
        start_time = time.monotonic()
        raises(lambda: q.get(timeout=4), queue.Empty)
        assert time.monotonic() - start_time == virtual(4)
        raises(q.get_nowait, queue.Empty)
        raises(lambda: q.get(False), queue.Empty)
        raises(lambda: q.get(timeout=-1), ValueError, "'timeout' must be a non-negative number")

    passes(program, runs=SINGLE_THREAD_RUNS)


def test_simple_queue_get_blocks_until_another_thread_puts():
    def program():
        q = queue.SimpleQueue()
        got = []
        threads = [start(lambda: got.append(q.get())) for _ in range(2)]
        q.put("a")
        q.put("b")
        for thread in threads:
            thread.join()
        assert sorted(got) == ["a", "b"]

    passes(program)


def test_queue_classes_can_be_parameterised_in_annotations():
    def program():
        def consume(q: queue.Queue[int], results: queue.SimpleQueue[str]) -> queue.PriorityQueue[int]:
            results.put(str(q.get()))
            return queue.PriorityQueue()

        q, results = queue.LifoQueue[int](), queue.SimpleQueue()
        q.put(5)
        assert isinstance(consume(q, results), queue.PriorityQueue) and results.get() == "5"

    passes(program, runs=SINGLE_THREAD_RUNS)


# ----------------------------------------------------------------------------- 3.13 shutdown

needs_shutdown = pytest.mark.skipif(not hasattr(queue, "ShutDown"), reason="Queue.shutdown is new in Python 3.13")


@needs_shutdown
def test_shutdown_refuses_puts_but_lets_gets_drain_the_queue():
    def program():
        q = queue.Queue()
        q.put(1)
        q.shutdown()
        assert q.is_shutdown
        raises(lambda: q.put(2), queue.ShutDown)
        raises(lambda: q.put_nowait(2), queue.ShutDown)
        assert q.get() == 1
        raises(q.get, queue.ShutDown)
        raises(q.get_nowait, queue.ShutDown)

    passes(program, runs=SINGLE_THREAD_RUNS)


@needs_shutdown
def test_shutdown_wakes_blocked_getters_and_putters_with_shutdown():
    def program():
        empty, full = queue.Queue(), queue.Queue(maxsize=1)
        full.put(0)
        outcomes = []

        def attempt(call):
            try:
                call()
                outcomes.append("returned")
            except queue.ShutDown:
                outcomes.append("shut down")

        threads = [start(attempt, empty.get), start(attempt, lambda: full.put(1))]
        time.sleep(1)
        empty.shutdown()
        full.shutdown()
        for thread in threads:
            thread.join()
        assert outcomes == ["shut down", "shut down"]

    passes(program)


@needs_shutdown
def test_immediate_shutdown_drops_items_and_releases_join():
    def program():
        q = queue.Queue()
        for item in range(3):
            q.put(item)
        joiner = start(q.join)
        time.sleep(1)
        assert joiner.is_alive()
        q.shutdown(immediate=True)
        joiner.join()
        assert q.qsize() == 0 and q.unfinished_tasks == 0
        raises(q.get, queue.ShutDown)

    passes(program)


def test_shutdown_exists_exactly_where_the_stdlib_has_it():
    seen = []

    def program():
        seen.append(hasattr(queue.Queue(), "shutdown"))

    passes(program, runs=SINGLE_THREAD_RUNS)
    assert seen == [sys.version_info >= (3, 13)] * len(seen)
