"""A stale read that only a race report shows.

A configuration holder is reloaded by a background thread: it stores the new settings, then bumps
a version number -- two plain attribute stores, no lock -- while a request handler reads the
version and then the settings. Every value the handler can see is *some* valid configuration, so
no assertion fails; but the handler may see version 2 with the settings of version 1 (or the other
way round), and on free-threaded CPython it may see a half-published state the reloader never
wrote in that order. Tests pass; the code is still wrong.

``detsched run examples/stale_read.py::main`` reports the data race (the handler's read of
``Config.version`` against the reloader's write, with no synchronisation between them). The fixed
twin publishes and reads both under one lock.
"""

import threading


class Config:
    def __init__(self):
        self.version, self.settings = 1, {"timeout": 5}
        self.lock = threading.Lock()

    def reload(self, settings, locked: bool):
        if locked:
            with self.lock:
                self.settings, self.version = settings, self.version + 1
        else:
            self.settings = settings
            self.version = self.version + 1

    def snapshot(self, locked: bool):
        if locked:
            with self.lock:
                return self.version, self.settings
        return self.version, self.settings


def run(locked: bool):
    config, seen = Config(), []
    reloader = threading.Thread(target=config.reload, args=({"timeout": 7}, locked), name="reloader")
    handler = threading.Thread(target=lambda: seen.append(config.snapshot(locked)), name="handler")
    for thread in (reloader, handler):
        thread.start()
    for thread in (reloader, handler):
        thread.join()
    assert seen[0] in ((1, {"timeout": 5}), (2, {"timeout": 7}), (1, {"timeout": 7})), seen


def main():
    run(locked=False)


def fixed():
    run(locked=True)
