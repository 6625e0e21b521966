"""Running detsched in other interpreters: this one in a fresh process, and every other CPython
that pyenv provides. The other interpreters need nothing installed: they run with ``-S`` (no
site-packages) and import detsched from this checkout, and pluggy (its one dependency, pure Python)
from this interpreter, through ``PYTHONPATH``."""

import glob
import os
import subprocess
import sys
import tempfile

import pluggy
import pytest

import detsched

REPLAY = "import detsched; f = detsched.replay({target!r}, {schedule!r}); print(f.kind, f.message)"

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


def other_interpreters():
    """The newest pyenv CPython of every other minor version from 3.10 to 3.13."""
    found = []
    for minor in ("3.10", "3.11", "3.12", "3.13"):
        candidates = sorted(glob.glob(os.path.expanduser(f"~/.pyenv/versions/{minor}.*/bin/python")))
        if candidates and f"{sys.version_info.major}.{sys.version_info.minor}" != minor:
            found.append(candidates[-1])
    return found
