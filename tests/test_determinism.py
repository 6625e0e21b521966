"""Determinism: the same seed explores the same runs in another process, and a schedule recorded
on this interpreter replays on every other CPython that pyenv provides.

The other interpreters have only the standard library, detsched and pluggy (``other_pythons``), so
their targets must be files that import only the standard library (written to ``tmp_path`` or taken
from ``examples/``), never a test module."""

import sys

import pytest

import detsched
from other_pythons import other_interpreters, replay_elsewhere, run_python

PROGRAM = '''
import threading

class Cache:
    def __init__(self):
        self.data, self.loads = {}, 0
        self.lock = threading.Lock()

    def load(self, key):
        self.loads += 1
        return key * 2

    def get(self, key):
        with self.lock:
            cached = key in self.data
        if not cached:
            value = self.load(key)
            with self.lock:
                self.data[key] = value
        return self.data[key]

def main():
    cache = Cache()
    workers = [threading.Thread(target=cache.get, args=(7,)) for _ in range(3)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert cache.loads == 1, f"loaded {cache.loads} times"
'''

EXPLORE = "import detsched; r = detsched.explore({target!r}, runs=500, seed=11, strategy={strategy!r}); " \
          "print(r.runs, r.failure.schedule.dumps(), r.failure.message)"


@pytest.fixture
def target(tmp_path):
    path = tmp_path / "cache_prog.py"
    path.write_text(PROGRAM)
    return f"{path}::main"


@pytest.mark.parametrize("strategy", ["pct", "random"])
def test_same_seed_same_runs_in_two_processes(target, strategy):
    first = run_python(sys.executable, EXPLORE.format(target=target, strategy=strategy))
    second = run_python(sys.executable, EXPLORE.format(target=target, strategy=strategy))
    assert first == second
    assert first.endswith("AssertionError: loaded 2 times")


@pytest.mark.skipif(not other_interpreters(), reason="no other CPython under ~/.pyenv/versions")
@pytest.mark.parametrize("python", other_interpreters())
def test_schedule_replays_on_other_python_versions(target, python):
    report = detsched.explore(target, runs=500, seed=11)
    schedule = report.failure.schedule.dumps()
    assert replay_elsewhere(python, target, schedule) == f"{report.failure.kind} {report.failure.message}"
