"""A bounded buffer on ``threading.Condition`` that checks its condition with ``if``, not ``while``.

``BoundedBuffer`` is the textbook producer/consumer buffer: one lock, a ``not_empty`` condition
consumers wait on and a ``not_full`` condition producers wait on. ``get`` waits while the buffer
is empty, ``put`` while it is full, and each wakes the other side.

The bug: ``get`` tests "is it empty?" once, with ``if``. Being notified only means the buffer was
not empty when ``notify`` ran; by the time the woken consumer gets the lock back, another consumer
that was not waiting at all may have taken the lock first and emptied the buffer. The woken
consumer then pops from an empty deque: ``IndexError: pop from an empty deque`` in a consumer
thread. With one consumer it never happens, which is how such code passes its tests.

The fixed twin re-checks in a loop (``while not self._items: wait()``), as every wait on a
condition must: a wakeup is a hint to look again, not a guarantee.
"""

import threading
from collections import deque


class BoundedBuffer:
    def __init__(self, capacity):
        self._items = deque()
        self._capacity = capacity
        lock = threading.Lock()
        self._not_empty = threading.Condition(lock)
        self._not_full = threading.Condition(lock)

    def put(self, item):
        with self._not_full:
            while len(self._items) >= self._capacity:
                self._not_full.wait()
            self._items.append(item)
            self._not_empty.notify()

    def get(self):
        with self._not_empty:
            if not self._items:  # a woken consumer may find the buffer empty again
                self._not_empty.wait()
            item = self._items.popleft()
            self._not_full.notify()
            return item


class CheckingBuffer(BoundedBuffer):
    def get(self):
        with self._not_empty:
            while not self._items:
                self._not_empty.wait()
            item = self._items.popleft()
            self._not_full.notify()
            return item


def run_jobs(buffer, jobs=4, consumers=2):
    """One producer hands ``jobs`` jobs to ``consumers`` consumers; every job must be done once."""
    done = []
    done_lock = threading.Lock()

    def produce():
        for job in range(jobs):
            buffer.put(job)

    def consume():
        for _ in range(jobs // consumers):
            job = buffer.get()
            with done_lock:
                done.append(job)

    threads = [threading.Thread(target=produce, name="producer")]
    threads += [threading.Thread(target=consume, name=f"consumer-{n}") for n in range(consumers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(done) == list(range(jobs)), f"jobs done: {sorted(done)}"


def main():
    run_jobs(BoundedBuffer(capacity=1))


def fixed():
    run_jobs(CheckingBuffer(capacity=1))

