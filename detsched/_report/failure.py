"""The public ``Failure`` and ``Report`` values and their text, built from the trace recorded
while replaying the failing schedule."""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field

from detsched._core.ops import TraceStep
from detsched._detect.races import Race
from detsched._report.coverage import Coverage
from detsched._report.timeline import REPORT_ROWS, plural, render_timeline
from detsched.schedule import Schedule

#: The kinds of failure detsched reports (``Failure.kind``).
KINDS = ("exception", "deadlock", "lost-wakeup", "leak", "livelock", "step-limit", "blocked", "data-race")


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
    #: Every distinct data race of the failing run (``Race``: location, earlier and later access),
    #: first first; the first is the failure when ``kind`` is "data-race".
    races: tuple[Race, ...] = field(default=(), repr=False)
    #: Kinds of failure that explain this one (``KINDS``), the nearest first: a leak whose thread
    #: lost its wakeup is ``kind="leak"``, ``causes=("lost-wakeup",)``.
    causes: tuple[str, ...] = ()

    @property
    def replay_command(self) -> str:
        # Schedule strings are URL-safe base64: always safe inside single quotes.
        return f"detsched replay {shlex.quote(self.target)} --schedule '{self.schedule.dumps()}'"

    @property
    def free_threading_switches(self) -> tuple[str, ...]:
        """The stores at which this schedule switches threads where GIL CPython cannot (between two
        statements with no call): empty when GIL CPython can take the same schedule."""
        return tuple(step.preempted_at_store for step in self.trace if step.preempted_at_store)

    @property
    def reachable_on(self) -> str:
        """Which CPython the schedule needs, as one line of the report (traced failures only)."""
        switches = self.free_threading_switches
        if not switches:
            return ("reachable on GIL CPython too: every switch falls where the GIL switches threads "
                    "(a call, a loop's back-edge, a blocking or synchronising operation)")
        store, _, where = switches[0].partition(" @")
        more = f" (and {len(switches) - 1} more)" if len(switches) > 1 else ""
        return (f"needs free-threaded CPython: the switch at {where} ({store}){more} falls between two "
                "statements with no call, where GIL CPython does not switch")

    def timeline(self, limit: int | None = None, *, compact: bool = False) -> str:
        return render_timeline(self.trace, limit, compact=compact)

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
        if len(self.races) > 1:
            lines += ["", f"{len(self.races)} distinct data races in this run:"]
            lines += [f"  {race.headline()}  ({race.earlier.site}; {race.later.site})" for race in self.races]
        if self.notes:
            lines += [""] + [f"note: {note}" for note in self.notes]
        if self.trace:
            lines += ["", self.reachable_on]
            preemptions = self.schedule.preemptions
            lines += ["", f"Interleaving ({plural(preemptions, 'preemption')}, {plural(len(self.trace), 'step')}):",
                      self.timeline(REPORT_ROWS, compact=True)]
        return "\n".join(lines)


@dataclass(frozen=True)
class Report:
    """The outcome of ``explore``."""

    failure: Failure | None
    runs: int  # runs executed; exploration stops at the first failure
    strategy: str
    seed: int
    elapsed: float = field(default=0.0, compare=False)  # wall seconds, for display only
    #: A systematic search (``dfs``, ``dpor``) ran every schedule there is (within ``bound``
    #: preemptions), or, for ``dpor``, one of every class of equivalent interleavings.
    exhausted: bool = False
    bound: int | None = None  # the preemption bound of a systematic search
    stopped: str = ""  # why it stopped before its runs were done, e.g. "the 10 s time budget was spent"
    delays: int | None = None  # the delay bound of a ``dfs`` search
    #: Which orders of conflicting operations the runs saw (``explore(coverage=True)``), else None.
    coverage: Coverage | None = field(default=None, compare=False)
    #: What the runs touched that detsched did not control (threads running outside control, their
    #: uses of the run's primitives), each once, with how that weakens what was checked.
    uncontrolled: tuple[str, ...] = field(default=(), compare=False)

    @property
    def races(self) -> tuple[Race, ...]:
        """Every distinct data race of the failing run (empty when nothing failed)."""
        return self.failure.races if self.failure is not None else ()

    @property
    def runs_per_second(self) -> float:
        return self.runs / self.elapsed if self.elapsed > 0 else 0.0

    def __str__(self) -> str:
        lines = [self._outcome()]
        if self.uncontrolled:
            lines += [f"not under control ({plural(len(self.uncontrolled), 'finding')}; what was checked holds only for "
                      "what detsched controlled):"] + [f"  - {text}" for text in self.uncontrolled]
        if self.coverage is not None:
            lines.append(self.coverage.summary())
        return "\n".join(lines)

    @property
    def caveat(self) -> str:
        """What a passing line adds when something escaped control: "" if nothing did."""
        return f"; not under control: {plural(len(self.uncontrolled), 'finding')} (below)" if self.uncontrolled else ""

    def _outcome(self) -> str:
        if self.failure is None and self.exhausted:
            # A partial-order reduction runs one schedule per class of equivalent interleavings.
            runs = (f"{plural(self.runs, 'schedule')} cover every interleaving up to the order of independent steps"
                    if self.strategy == "dpor" else plural(self.runs, "schedule"))
            stopped = (f"; {self.stopped}" if self.stopped else "") + self.caveat
            bounds = [plural(bound, word) for bound, word in ((self.bound, "preemption"), (self.delays, "delay"))
                      if bound is not None]
            if not bounds:
                every = "" if self.strategy == "dpor" else "all "
                return f"verified: {every}{runs} ({self.strategy}, no bound) -- no failure{stopped}"
            return f"verified up to {' and '.join(bounds)}: {runs} ({self.strategy}) -- no failure{stopped}"
        if self.failure is None:
            stopped = (f"; stopped: {self.stopped}" if self.stopped else "") + self.caveat
            return f"passed: no failure in {plural(self.runs, 'run')} (strategy={self.strategy}, seed={self.seed}){stopped}"
        f = self.failure
        return (f"FAILED ({f.kind}) after {plural(self.runs, 'run')}: {f.message}\n{f.body}\n\n"
                f"replay: {f.replay_command}")
