"""Single-flight (a cache stampede guard) with a check-then-act gap: the loader can run twice.

``ProfileCache.get`` loads a missing profile once however many requests want it at the same time:
the first request becomes the leader and registers a ``Future`` for the load under a lock; later
requests find that future and wait on it instead of querying the database again. A cached value
is returned at once, without the lock, because that is the hot path.

The gap: the fast path looks at the cache *outside* the lock, and the slow path never looks
again *inside* it. A request that misses the cache just before the leader stores the value, and
takes the lock just after the leader has removed its finished future, finds neither a value nor a
load in flight -- so it becomes a leader and loads the profile a second time. Requests arriving
steadily hit that instant sooner or later; under load, this is the stampede the guard exists to
prevent. ``detsched run examples/single_flight.py::main`` finds the request that slips through.

The fixed twin re-checks the cache under the lock before deciding to load (double-checked
locking); since the leader stores the value before removing its future, every request sees one or
the other.

The lock-free read of the cache is a data race by design: one ``dict.get`` against one item store,
each a single atomic operation on every CPython, where a stale miss only sends the request down
the locked path. ``detsched.benign`` tells the race detector so; the stampede is what is checked.
"""

import threading
import time
from concurrent.futures import Future

import detsched


class ProfileCache:
    def __init__(self, load):
        self._load = load
        self._values = {}
        detsched.benign(self._values)  # read without the lock on the hot path, on purpose
        self._loading = {}  # key -> Future of the load in flight
        self._lock = threading.Lock()

    def get(self, key):
        value = self._values.get(key)
        if value is not None:
            return value
        with self._lock:
            future, leader = self._join_or_lead(key)
        if not leader:
            return future.result()
        try:
            value = self._load(key)
            self._values[key] = value
            future.set_result(value)
            return value
        except BaseException as error:
            future.set_exception(error)
            raise
        finally:
            with self._lock:
                del self._loading[key]

    def _join_or_lead(self, key):
        """The load in flight for ``key`` and False, or a new one and True (call with the lock held)."""
        future = self._loading.get(key)
        if future is not None:
            return future, False
        future = self._loading[key] = Future()
        return future, True


class DoubleCheckedProfileCache(ProfileCache):
    def _join_or_lead(self, key):
        value = self._values.get(key)  # stored by a leader that finished since our first look
        if value is not None:
            future = Future()
            future.set_result(value)
            return future, False
        return super()._join_or_lead(key)


def serve_requests(cache_class, requests=4, every=0.025):
    """Requests for one profile arrive every 25 ms; loading it takes 50 ms. It must load once."""
    loads = []

    def load_profile(user):
        loads.append(user)
        time.sleep(0.05)  # the database query
        return {"user": user, "plan": "pro"}

    cache = cache_class(load_profile)

    def handle_request(arrives_after):
        time.sleep(arrives_after)
        assert cache.get("user:42")["plan"] == "pro"

    clients = [threading.Thread(target=handle_request, args=(n * every,)) for n in range(requests)]
    for client in clients:
        client.start()
    for client in clients:
        client.join()
    assert len(loads) == 1, f"loaded 'user:42' {len(loads)} times, expected once"


def main():
    serve_requests(ProfileCache)


def fixed():
    serve_requests(DoubleCheckedProfileCache)

