"""Small bug programs for ``compare.py``, each with a fixed twin: ``<name>`` fails in some
interleavings, ``<name>_fixed`` never does. Plain standard-library code, the way users write it;
none is one of the bundled examples."""

import asyncio
import queue
import threading

from cover_bugs import run_all


class _Box:
    def __init__(self):
        self.value = 0
        self.lock = threading.Lock()


def unlocked_counter(locked=False):
    """``+=`` on an attribute from two threads: a lost update."""
    box = _Box()

    def add():
        for _ in range(2):
            if locked:
                with box.lock:
                    box.value += 1
            else:
                box.value += 1

    run_all(add, add)
    assert box.value == 4, box.value


def check_then_act(locked=False):
    """``if key not in cache: cache[key] = load()`` from two threads: the load runs twice."""
    cache, loads, lock = {}, [], threading.Lock()

    def get():
        if locked:
            with lock:
                if "k" not in cache:
                    loads.append(1)
                    cache["k"] = 1
        elif "k" not in cache:
            loads.append(1)
            cache["k"] = 1

    run_all(get, get)
    assert len(loads) == 1, loads


def lazy_lock(locked=False):
    """A lock made on first use: two threads can each make their own, and update without exclusion."""
    guard = threading.Lock()

    class Lazy:
        lock = None
        value = 0

        def incr(self):
            if locked:
                with guard:
                    if self.lock is None:
                        self.lock = threading.Lock()
            elif self.lock is None:
                self.lock = threading.Lock()
            with self.lock:
                seen = self.value
                self.value = seen + 1

    lazy = Lazy()
    run_all(lazy.incr, lazy.incr)
    assert lazy.value == 2, lazy.value


def set_then_clear(fixed=False):
    """A pulse (``set(); clear()``) a waiter that has not started waiting misses: a lost wakeup."""
    ready, done = threading.Event(), []

    def waiter():
        ready.wait()
        done.append(1)

    thread = threading.Thread(target=waiter)
    thread.start()
    ready.set()
    if not fixed:
        ready.clear()
    thread.join()


def if_not_while(fixed=False):
    """``if`` around ``Condition.wait()``: a consumer woken late finds the item taken."""
    cond, items = threading.Condition(), []

    def consume():
        with cond:
            if fixed:
                while not items:
                    cond.wait()
            elif not items:
                cond.wait()
            items.pop()

    def produce():
        for _ in range(2):
            with cond:
                items.append(1)
                cond.notify()

    run_all(consume, consume, produce)


def semaphore_not_released(fixed=False):
    """A slot not given back on the error path: the next user waits for ever."""
    slots, errors = threading.Semaphore(1), []

    def use(fail):
        slots.acquire()
        try:
            if fail:
                raise ValueError("bad request")
        except ValueError as error:
            errors.append(error)
            if not fixed:
                return  # the slot stays taken
        slots.release()

    run_all(lambda: use(True), lambda: use(False))


def missing_join(fixed=False):
    """The result read before the worker is joined."""
    result = []
    worker = threading.Thread(target=lambda: result.append(42))
    worker.start()
    if fixed:
        worker.join()
    assert result == [42], result
    worker.join()


def task_done_skipped(fixed=False):
    """A consumer that skips ``task_done()`` for one item: ``queue.join()`` hangs."""
    jobs = queue.Queue()

    def consume():
        for _ in range(2):
            job = jobs.get()
            if job == "skip" and not fixed:
                continue
            jobs.task_done()

    worker = threading.Thread(target=consume)
    worker.start()
    jobs.put("work")
    jobs.put("skip")
    jobs.join()
    worker.join()


def dict_iteration(locked=False):
    """A report iterates a dict while a worker adds to it: ``RuntimeError: dictionary changed size``."""
    sessions, lock, totals = {"a": 1}, threading.Lock(), []

    def report():
        if locked:
            with lock:
                totals.append(sum(sessions[key] for key in list(sessions)))
        else:
            total = 0
            for key in sessions:
                total += sessions[key]
            totals.append(total)

    def login():
        if locked:
            with lock:
                sessions["b"] = 2
        else:
            sessions["b"] = 2

    run_all(report, login)


def to_thread_counter(fixed=False):
    """Two asyncio tasks bump a shared counter in worker threads (``asyncio.to_thread``)."""
    box = _Box()

    def bump():
        if fixed:
            with box.lock:
                box.value += 1
        else:
            seen = box.value
            box.value = seen + 1

    async def main():
        await asyncio.gather(asyncio.to_thread(bump), asyncio.to_thread(bump))

    asyncio.run(main())
    assert box.value == 2, box.value


BUGS = ("unlocked_counter", "check_then_act", "lazy_lock", "set_then_clear", "if_not_while",
        "semaphore_not_released", "missing_join", "task_done_skipped", "dict_iteration", "to_thread_counter")


def _twin(name):
    function = globals()[name]
    argument = "locked" if "locked" in function.__code__.co_varnames[:function.__code__.co_argcount] else "fixed"
    return lambda: function(**{argument: True})


for _name in BUGS:
    globals()[f"{_name}_fixed"] = _twin(_name)
