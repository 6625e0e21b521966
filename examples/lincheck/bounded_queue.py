"""A bounded queue that loses an item: ``put`` checks for room under the lock, then appends in a
second critical section, so two producers can both see the last free slot and the second append
overwrites the first (a fixed-size ring whose tail index is read, then written). ``RingQueue`` is
its fixed twin, which claims the slot and writes it in one critical section."""

import threading

from hypothesis import strategies as st

from detsched import lincheck


class SeqQueue:
    """The model: a bounded FIFO queue; ``put`` on a full queue returns False, ``get`` on an empty
    one returns None."""

    def __init__(self, capacity=2):
        self.items, self.capacity = [], capacity

    def put(self, item):
        if len(self.items) >= self.capacity:
            return False
        self.items.append(item)
        return True

    def get(self):
        return self.items.pop(0) if self.items else None


class LossyQueue:
    def __init__(self, capacity=2):
        self._slots = [None] * capacity
        self._head = self._count = 0
        self._lock = threading.Lock()

    def put(self, item):
        with self._lock:
            if self._count == len(self._slots):
                return False
            tail = (self._head + self._count) % len(self._slots)
        with self._lock:  # the slot was chosen under another acquisition: another put may take it too
            self._slots[tail] = item
            self._count = min(self._count + 1, len(self._slots))
            return True

    def get(self):
        with self._lock:
            if self._count == 0:
                return None
            item = self._slots[self._head]
            self._head = (self._head + 1) % len(self._slots)
            self._count -= 1
            return item


class RingQueue(LossyQueue):
    def put(self, item):
        with self._lock:
            if self._count == len(self._slots):
                return False
            self._slots[(self._head + self._count) % len(self._slots)] = item
            self._count += 1
            return True


@lincheck.check(model=SeqQueue, threads=2, ops_per_thread=2)
class TestLossyQueue:
    def make(self):
        return LossyQueue()

    @lincheck.op(args=st.integers(1, 3))
    def put(self, queue, item):
        return queue.put(item)

    @lincheck.op
    def get(self, queue):
        return queue.get()


@lincheck.check(model=SeqQueue, threads=2, ops_per_thread=2)
class TestRingQueue(TestLossyQueue):
    def make(self):
        return RingQueue()
