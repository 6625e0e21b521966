"""A counter whose ``incr`` is not atomic: a read, then a write, with a lock around each but not
around both -- two concurrent increments can both return the same value. ``LockedCounter`` is its
fixed twin. Check them with ``detsched lincheck examples/lincheck/counter.py::TestCounter``."""

import threading

from detsched import lincheck


class SeqCounter:
    """The model: sequential and obviously right."""

    def __init__(self):
        self.n = 0

    def incr(self):
        self.n += 1
        return self.n

    def get(self):
        return self.n


class Counter:
    def __init__(self):
        self._n = 0
        self._lock = threading.Lock()

    def incr(self):
        with self._lock:
            seen = self._n
        with self._lock:
            self._n = seen + 1
            return self._n

    def get(self):
        with self._lock:
            return self._n


class LockedCounter(Counter):
    def incr(self):
        with self._lock:
            self._n += 1
            return self._n


@lincheck.check(model=SeqCounter, threads=2, ops_per_thread=2)
class TestCounter:
    def make(self):
        return Counter()

    @lincheck.op
    def incr(self, counter):
        return counter.incr()

    @lincheck.op(read_only=True)
    def get(self, counter):
        return counter.get()


@lincheck.check(model=SeqCounter, threads=2, ops_per_thread=2)
class TestLockedCounter(TestCounter):
    def make(self):
        return LockedCounter()
