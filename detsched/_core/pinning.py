"""Which CPU a run's threads share: the allowed CPU the least busy with other processes' work.

Only one controlled thread runs at a time, so a run loses nothing by keeping all of its threads on
one CPU, and handing the baton to a thread parked on the same CPU is several times faster than
waking one on another (see docs/performance.md). The CPU must be a quiet one, though: a choice
made once by pid put a whole exploration on a CPU that another process kept busy, at half speed,
while unpinned runs never were. So the choice looks at how busy each CPU the process may use
(``os.sched_getaffinity``) has been since the last look (``/proc/stat``), less what this process
did itself, and moves when another CPU has been clearly quieter. Processes exploring side by side
start on different CPUs (by pid) and look at different moments, so they do not chase each other.

Where the load cannot be read (no ``/proc/stat``), the pid's CPU is kept.
"""

from __future__ import annotations

import os
import time

from detsched._core.clock import real_monotonic

#: Real seconds between two looks at the CPUs' load (a little more, different for each pid).
LOOK_EVERY = 0.5
#: How much quieter, as a share of one CPU's time, another CPU must have been to move there.
MOVE_MARGIN = 0.25

try:  # the unit of /proc/stat
    _TICKS_PER_SECOND = os.sysconf("SC_CLK_TCK")
except (AttributeError, ValueError, OSError):
    _TICKS_PER_SECOND = 100


class CpuChooser:
    """Chooses, run after run, the CPU to pin a run's threads to."""

    def __init__(self, stat_path: str = "/proc/stat"):
        self._stat_path = stat_path
        self._cpu: int | None = None  # the CPU chosen last
        self._next_look = 0.0  # real time of the next look
        self._last: dict[int, tuple[int, int]] | None = None  # CPU -> (busy, total) ticks at the last look
        self._last_own = 0.0  # this process's CPU seconds at the last look
        pid = os.getpid()
        self._interval = LOOK_EVERY * (1 + (pid % 7) / 7)  # out of step with a neighbour's looks
        self._pid = pid

    def choose(self, allowed: set[int]) -> int:
        """The CPU of ``allowed`` (two or more) to run on next."""
        if self._cpu not in allowed:
            self._cpu = sorted(allowed)[self._pid % len(allowed)]
        now = real_monotonic()
        if now >= self._next_look:
            self._next_look = now + self._interval
            self._cpu = self._look(allowed, self._cpu)
        return self._cpu

    def _look(self, allowed: set[int], current: int) -> int:
        ticks = self._read()
        own = time.process_time()
        last, last_own = self._last, self._last_own
        self._last, self._last_own = ticks, own
        if not ticks or not last:
            return current
        others = {}
        for cpu in allowed:
            if cpu not in ticks or cpu not in last:
                continue
            busy, total = ticks[cpu][0] - last[cpu][0], ticks[cpu][1] - last[cpu][1]
            if total <= 0:
                continue
            if cpu == current:  # this process ran there: count only what others did
                busy -= (own - last_own) * _TICKS_PER_SECOND
            others[cpu] = max(busy, 0) / total
        if current not in others:
            return current
        quietest = min(sorted(others), key=others.__getitem__)
        return quietest if others[current] - others[quietest] > MOVE_MARGIN else current

    def _read(self) -> dict[int, tuple[int, int]]:
        """CPU -> (busy, total) clock ticks since boot; empty where they cannot be read."""
        try:
            with open(self._stat_path, encoding="ascii") as stat:
                lines = stat.readlines()
        except OSError:
            return {}
        ticks = {}
        for line in lines:
            name, _, rest = line.partition(" ")
            if not name.startswith("cpu") or name == "cpu":
                continue
            try:
                cpu = int(name[3:])
                values = [int(value) for value in rest.split()]
            except ValueError:
                continue
            total = sum(values[:8])  # user nice system idle iowait irq softirq steal
            idle = sum(values[3:5])
            ticks[cpu] = (total - idle, total)
        return ticks


_chooser = CpuChooser()


def choose(allowed: set[int]) -> int:
    """The CPU of ``allowed`` (two or more) this process's next run is to be pinned to."""
    return _chooser.choose(allowed)


def _fresh_after_fork() -> None:
    """A forked child is a process of its own: its own pid's CPU, its own moments to look."""
    global _chooser
    _chooser = CpuChooser()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_fresh_after_fork)
