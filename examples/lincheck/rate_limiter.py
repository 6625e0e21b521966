"""A rate limiter that over-grants: ``acquire`` reads the tokens left, then takes one in a second
critical section, so two callers can both take the last token. ``TokenBucket`` is its fixed twin.
Time does not pass in these scenarios: the bucket only runs out."""

import threading

from detsched import lincheck


class SeqLimiter:
    """The model: two tokens; ``acquire`` returns whether it got one."""

    def __init__(self, tokens=2):
        self.tokens = tokens

    def acquire(self):
        if self.tokens == 0:
            return False
        self.tokens -= 1
        return True

    def left(self):
        return self.tokens


class OverGranting:
    def __init__(self, tokens=2):
        self._tokens = tokens
        self._lock = threading.Lock()

    def acquire(self):
        with self._lock:
            left = self._tokens
        if left == 0:
            return False
        with self._lock:
            self._tokens = max(self._tokens - 1, 0)
        return True

    def left(self):
        with self._lock:
            return self._tokens


class TokenBucket(OverGranting):
    def acquire(self):
        with self._lock:
            if self._tokens == 0:
                return False
            self._tokens -= 1
            return True


@lincheck.check(model=SeqLimiter, threads=3, ops_per_thread=2)
class TestOverGranting:
    def make(self):
        return OverGranting()

    @lincheck.op
    def acquire(self, limiter):
        return limiter.acquire()

    @lincheck.op(read_only=True)
    def left(self, limiter):
        return limiter.left()


@lincheck.check(model=SeqLimiter, threads=3, ops_per_thread=2)
class TestTokenBucket(TestOverGranting):
    def make(self):
        return TokenBucket()
