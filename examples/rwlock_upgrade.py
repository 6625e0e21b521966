"""A read-write lock whose reader-to-writer upgrade deadlocks.

A settings cache lets many readers in at once and one writer alone. A reader that finds a key
missing *upgrades*: still holding its read lock, it asks for the write lock, which the lock grants
once no *other* reader is inside. One reader upgrading works. Two readers that both find the key
missing both wait for the other to leave -- and neither does. On real threads the second reader
usually arrives after the first has filled the key.

``detsched run examples/rwlock_upgrade.py::main`` reports the deadlock (two threads waiting on the
lock's condition, each for the other to leave). The fixed twin releases the read lock, takes the
write lock, and checks the key again before filling it.
"""

import threading


class ReadWriteLock:
    def __init__(self):
        self._cond = threading.Condition()
        self._readers = set()  # names of the threads holding a read lock
        self._writer = False

    def acquire_read(self, me):
        with self._cond:
            while self._writer:
                self._cond.wait()
            self._readers.add(me)

    def release_read(self, me):
        with self._cond:
            self._readers.discard(me)
            self._cond.notify_all()

    def acquire_write(self, me):
        """Granted once no other reader and no writer is inside (``me`` may hold a read lock)."""
        with self._cond:
            while self._writer or self._readers - {me}:
                self._cond.wait()
            self._writer = True

    def release_write(self):
        with self._cond:
            self._writer = False
            self._cond.notify_all()


class Settings:
    def __init__(self, upgrade: bool):
        self.lock, self.values, self.loads, self.upgrade = ReadWriteLock(), {}, [], upgrade

    def get(self, key, me):
        self.lock.acquire_read(me)
        try:
            if key in self.values:
                return self.values[key]
            if not self.upgrade:
                self.lock.release_read(me)
        except BaseException:
            self.lock.release_read(me)
            raise
        if self.upgrade:
            try:
                return self._fill(key, me)
            finally:
                self.lock.release_read(me)
        return self._fill(key, me)

    def _fill(self, key, me):
        self.lock.acquire_write(me)
        try:
            if key not in self.values:  # another thread may have filled it while we waited
                self.loads.append(key)
                self.values[key] = f"value of {key}"
            return self.values[key]
        finally:
            self.lock.release_write()


def run(upgrade: bool):
    settings = Settings(upgrade)
    readers = [threading.Thread(target=settings.get, args=("timeout", name), name=name) for name in ("r1", "r2")]
    for reader in readers:
        reader.start()
    for reader in readers:
        reader.join()
    assert settings.loads == ["timeout"], settings.loads


def main():
    run(upgrade=True)


def fixed():
    run(upgrade=False)
