"""An async cache with a check-then-act across an await: the backend is queried twice.

``Cache.get`` returns a cached value, or fetches it from the backend and stores it. The backend's
client is blocking, so the fetch runs it in a worker thread (``asyncio.to_thread``) and awaits the
answer; the value is stored after it. A second request for the same key that arrives while the
first still waits for its thread finds the cache empty too, and sends a query of its own.

In this test the second request arrives three loop steps after the first, and the stub client
answers at once. Under ``asyncio.run`` the test nearly always passes: the pool starts its worker
thread for the first query, and a thread just started runs its call before the loop goes on, so
the value is stored before the second request looks (none of 1,000 runs failed, on Python 3.10 to
3.13, when this example was written). It fails whenever the thread answers later than that: in a
service that has been running a while, whose pool threads already exist, a woken thread competes
with the loop for the GIL, and the same two requests queried the backend twice in 735 to 945 of
1,000 runs, depending on the Python version. ``detsched run examples/aio_cache.py::main`` interleaves the worker thread with the event
loop's steps; in its first run the thread answers only once the loop has nothing left to do, and it
reports the double query with that interleaving: both requests hand their query to the thread pool
before its worker takes a step.

The fixed twin caches the *task* of a fetch as soon as it starts (single-flight): a later request
awaits the same task instead of starting another.
"""

import asyncio


class Backend:
    def __init__(self):
        self.queries = []

    def query(self, key):  # the blocking client's round trip
        return f"value of {key}"

    async def fetch(self, key):
        self.queries.append(key)
        return await asyncio.to_thread(self.query, key)


class Cache:
    def __init__(self, backend):
        self.backend = backend
        self.values = {}

    async def get(self, key):
        if key not in self.values:
            self.values[key] = await self.backend.fetch(key)
        return self.values[key]


class SingleFlightCache(Cache):
    async def get(self, key):
        if key not in self.values:  # store the fetch in flight before awaiting it
            self.values[key] = asyncio.ensure_future(self.backend.fetch(key))
        return await self.values[key]


async def serve(cache_class):
    backend = Backend()
    cache = cache_class(backend)

    async def request(arrives_after_steps):
        for _ in range(arrives_after_steps):
            await asyncio.sleep(0)
        assert await cache.get("user:42") == "value of user:42"

    await asyncio.gather(request(0), request(3))
    assert len(backend.queries) == 1, f"queried the backend {len(backend.queries)} times for 'user:42', expected once"


async def main():
    await serve(Cache)


async def fixed():
    await serve(SingleFlightCache)
