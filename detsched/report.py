"""Reporting: the public ``Failure`` and ``Report`` values and their text, built from the trace
recorded while replaying the failing schedule."""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field

from .schedule import Schedule
from .scheduler import TraceStep

#: The kinds of failure detsched reports (``Failure.kind``).
KINDS = ("exception", "deadlock", "lost-wakeup", "leak", "data-race", "livelock", "blocked")
#: Steps of the interleaving shown inside a failure report; ``detsched show`` prints them all.
REPORT_STEPS = 40
#: Width of one thread's column in a timeline.
COLUMN_WIDTH = 38


@dataclass(frozen=True)
class Failure:
    """A failure found by exploration or replay, with the schedule that reproduces it."""

    kind: str
    message: str  # one line a person understands
    schedule: Schedule
    run_index: int  # 0-based run in which it was found
    thread: str = ""  # the thread that failed, e.g. "T1 'worker'"
    details: str = ""  # traceback, or the stacks of the threads involved
    target: str = ""  # the target as the user named it, for the replay command
    trace: tuple[TraceStep, ...] = field(default=(), repr=False)
    exception: BaseException | None = field(default=None, repr=False, compare=False)
    notes: tuple[str, ...] = ()

    @property
    def replay_command(self) -> str:
        # Schedule strings are URL-safe base64: always safe inside single quotes.
        return f"detsched replay {shlex.quote(self.target)} --schedule '{self.schedule.dumps()}'"

    def timeline(self, limit: int | None = None) -> str:
        return render_timeline(self.trace, limit)

    def __str__(self) -> str:
        return f"{self.kind}: {self.message}\n{self.body}"

    @property
    def body(self) -> str:
        """Everything after the one-line summary: thread, traceback or stacks, notes, interleaving."""
        lines = []
        if self.thread:
            lines.append(f"  in {self.thread}")
        if self.details:
            lines += ["", self.details.rstrip()]
        if self.notes:
            lines += [""] + [f"note: {note}" for note in self.notes]
        if self.trace:
            preemptions = self.schedule.preemptions
            lines += ["", f"Interleaving ({preemptions} preemption{'s' * (preemptions != 1)}, "
                          f"{len(self.trace)} steps):", self.timeline(REPORT_STEPS)]
        return "\n".join(lines)


@dataclass(frozen=True)
class Report:
    """The outcome of ``explore``."""

    failure: Failure | None
    runs: int  # runs executed; exploration stops at the first failure
    strategy: str
    seed: int
    elapsed: float = field(default=0.0, compare=False)  # wall seconds, for display only

    @property
    def runs_per_second(self) -> float:
        return self.runs / self.elapsed if self.elapsed > 0 else 0.0

    def __str__(self) -> str:
        if self.failure is None:
            return f"passed: no failure in {self.runs} runs (strategy={self.strategy}, seed={self.seed})"
        f = self.failure
        return (f"FAILED ({f.kind}) after {self.runs} run{'s' * (self.runs != 1)}: {f.message}\n{f.body}\n\n"
                f"replay: {f.replay_command}")


def render_timeline(trace, limit: int | None = None) -> str:
    """One column per thread; each row is a step with its operation and ``file:line``."""
    if not trace:
        return "  (no steps recorded)"
    tids = sorted({s.tid for s in trace})
    names = {s.tid: s.thread for s in trace}
    column = {tid: i for i, tid in enumerate(tids)}
    header = "  step  " + "".join(f"T{tid} {names[tid]}"[:COLUMN_WIDTH - 1].ljust(COLUMN_WIDTH) for tid in tids)
    rows = [header.rstrip(), "  " + "-" * (len(header) - 2)]
    shown = trace if limit is None or len(trace) <= limit else trace[-limit:]
    if len(shown) < len(trace):
        rows.append(f"  ...   ({len(trace) - len(shown)} earlier steps; `detsched show` prints them all)")
    for step in shown:
        cell = step.op + (f" @{step.where}" if step.where else "") + (f" [{step.note}]" if step.note else "")
        pad = " " * (COLUMN_WIDTH * column[step.tid])
        rows.append(f"  {step.step:>4}  {pad}{cell}")
    return "\n".join(rows)
