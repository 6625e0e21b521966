"""An LRU cache whose eviction races: ``put`` decides that the cache is full in one critical section
and evicts in another, so two ``put`` calls of a new key can both decide to evict -- the second
eviction finds the cache already emptied (``KeyError``) or throws out an entry a sequential cache
keeps. ``LockedLRU`` is its fixed twin, which checks and evicts in one critical section."""

import threading
from collections import OrderedDict

from hypothesis import strategies as st

from detsched import lincheck


class SeqLRU:
    """The model: an LRU cache of capacity 1; ``get`` returns None for a missing key."""

    def __init__(self, capacity=1):
        self.data, self.capacity = OrderedDict(), capacity

    def put(self, key, value):
        if key in self.data:
            self.data.move_to_end(key)
        self.data[key] = value
        if len(self.data) > self.capacity:
            self.data.popitem(last=False)

    def get(self, key):
        if key not in self.data:
            return None
        self.data.move_to_end(key)
        return self.data[key]

    def size(self):
        return len(self.data)


class RacyLRU:
    def __init__(self, capacity=1):
        self._data, self._capacity = OrderedDict(), capacity
        self._lock = threading.Lock()

    def put(self, key, value):
        with self._lock:
            full = key not in self._data and len(self._data) >= self._capacity
        if full:
            with self._lock:  # evict in a section of its own: a get may have used that key since
                self._data.popitem(last=False)
        with self._lock:
            if key in self._data:
                self._data.move_to_end(key)
            self._data[key] = value

    def get(self, key):
        with self._lock:
            if key not in self._data:
                return None
            self._data.move_to_end(key)
            return self._data[key]

    def size(self):
        with self._lock:
            return len(self._data)


class LockedLRU(RacyLRU):
    def put(self, key, value):
        with self._lock:
            if key in self._data:
                self._data.move_to_end(key)
            self._data[key] = value
            if len(self._data) > self._capacity:
                self._data.popitem(last=False)


KEYS = st.sampled_from("ab")


@lincheck.check(model=SeqLRU, threads=2, ops_per_thread=2)
class TestRacyLRU:
    def make(self):
        return RacyLRU()

    @lincheck.op(args=(KEYS, st.integers(1, 2)))
    def put(self, cache, key, value):
        return cache.put(key, value)

    @lincheck.op(args=KEYS, read_only=True)
    def get(self, cache, key):
        return cache.get(key)

    @lincheck.op(read_only=True)
    def size(self, cache):
        return cache.size()


@lincheck.check(model=SeqLRU, threads=2, ops_per_thread=2)
class TestLockedLRU(TestRacyLRU):
    def make(self):
        return LockedLRU()
