"""Determinism: the same seed explores the same runs in another process, and a schedule recorded
on this interpreter replays on every other CPython that pyenv provides.

The other interpreters need nothing installed: they run with ``-S`` (no site-packages) and import
detsched from this checkout, and pluggy (its one dependency, pure Python) from this interpreter,
through ``PYTHONPATH``. So their targets must be files that import only the standard library
(written to ``tmp_path`` or taken from ``examples/``), never a test module."""

import glob
import os
import subprocess
import sys
import tempfile

import pluggy
import pytest

import detsched

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
REPLAY = "import detsched; f = detsched.replay({target!r}, {schedule!r}); print(f.kind, f.message)"


@pytest.fixture
def target(tmp_path):
    path = tmp_path / "cache_prog.py"
    path.write_text(PROGRAM)
    return f"{path}::main"


CHECKOUT = os.path.dirname(os.path.dirname(os.path.abspath(detsched.__file__)))


def _only_pluggy() -> str:
    """A directory holding nothing but this interpreter's pluggy, to put on another one's path."""
    directory = os.path.join(tempfile.gettempdir(), f"detsched-pluggy-{pluggy.__version__}")
    link = os.path.join(directory, "pluggy")
    if not os.path.exists(link):
        os.makedirs(directory, exist_ok=True)
        try:
            os.symlink(os.path.dirname(pluggy.__file__), link)
        except FileExistsError:  # made meanwhile by another worker
            pass
    return directory


def run_python(python, code, *, stdlib_only=False):
    """Run ``code`` in ``python`` with this checkout's detsched first on the path. ``stdlib_only``
    leaves out site-packages (``-S``): only the standard library, detsched and pluggy can be
    imported, as on a fresh interpreter where only detsched was installed."""
    path = CHECKOUT + (os.pathsep + _only_pluggy() if stdlib_only else "")
    env = dict(os.environ, PYTHONPATH=path, PYTHONHASHSEED="random")
    flags = ["-S"] if stdlib_only else []
    out = subprocess.run([python, *flags, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def replay_elsewhere(python, target, schedule) -> str:
    """``kind message`` of replaying ``schedule`` in another interpreter with nothing installed.
    An interpreter that cannot run at all is skipped, saying why; one that runs but cannot import
    detsched with the standard library and pluggy alone is a failure."""
    probe = subprocess.run([python, "-S", "-c", "import sys; assert sys.version_info >= (3, 10)"],
                           capture_output=True, text=True, timeout=60)
    if probe.returncode != 0:
        last = (probe.stderr.strip().splitlines() or ["no output"])[-1]
        pytest.skip(f"{python} does not run as CPython 3.10 or later: {last}")
    return run_python(python, REPLAY.format(target=target, schedule=schedule), stdlib_only=True)


@pytest.mark.parametrize("strategy", ["pct", "random"])
def test_same_seed_same_runs_in_two_processes(target, strategy):
    first = run_python(sys.executable, EXPLORE.format(target=target, strategy=strategy))
    second = run_python(sys.executable, EXPLORE.format(target=target, strategy=strategy))
    assert first == second
    assert "loaded 2 times" in first or "loaded 3 times" in first


def other_interpreters():
    found = []
    for minor in ("3.10", "3.11", "3.12", "3.13"):
        candidates = sorted(glob.glob(os.path.expanduser(f"~/.pyenv/versions/{minor}.*/bin/python")))
        if candidates and f"{sys.version_info.major}.{sys.version_info.minor}" != minor:
            found.append(candidates[-1])
    return found


@pytest.mark.skipif(not other_interpreters(), reason="no other CPython under ~/.pyenv/versions")
@pytest.mark.parametrize("python", other_interpreters())
def test_schedule_replays_on_other_python_versions(target, python):
    report = detsched.explore(target, runs=500, seed=11)
    schedule = report.failure.schedule.dumps()
    assert replay_elsewhere(python, target, schedule) == f"{report.failure.kind} {report.failure.message}"
