"""An async cache with a check-then-act across an await: the backend is queried twice.

``Cache.get`` returns a cached value, or fetches it from the backend and stores it. The fetch is
an await (the backend round trip), and the value is stored after it. A second request for the same
key that arrives while the first still waits for the backend finds the cache empty too, and sends
a query of its own.

In this test the second request arrives one step after the first. Under ``asyncio.run`` the first
request's answer always comes back before that, so the test passes every time; in production the
backend's latency varies, and both requests query it. ``detsched run examples/aio_cache.py::main``
explores the orders in which the two tasks resume, finds the one where the first request's answer
is late, and reports the double query with the interleaving that caused it.

The fixed twin caches the *task* of a fetch as soon as it starts (single-flight): a later request
awaits the same task instead of starting another.
"""

import asyncio


class Backend:
    def __init__(self):
        self.queries = []

    async def fetch(self, key):
        self.queries.append(key)
        await asyncio.sleep(0)  # the network round trip
        return f"value of {key}"


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

    await asyncio.gather(request(0), request(1))
    assert len(backend.queries) == 1, f"queried the backend {len(backend.queries)} times for 'user:42', expected once"


async def main():
    await serve(Cache)


async def fixed():
    await serve(SingleFlightCache)
