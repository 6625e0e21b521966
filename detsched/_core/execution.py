"""The record of one run: its steps, the one stream of its decisions, the path checksum, and (when
tracing) its timeline. The scheduler and the controlled event loop write it; when the run ends it
freezes into an ``ExecutionResult``, which is all that schedules, the shrinker, the pytest plugin's
run context and reports read.

A *step* is one scheduling step: a thread chosen to go on (or one event-loop callback run). A
*decision* is a step with a choice -- several runnable threads, or a data choice such as which
ready asyncio callback runs next -- and only decisions are what a schedule stores: the ones whose
value differs from the default policy (``deviations``), keyed by decision index.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import NamedTuple

from detsched._core.ops import FailureInfo, TraceStep
from detsched.errors import DetschedUsageError


class Decision(NamedTuple):
    """One decision with a choice."""

    position: tuple[int, int]  # (thread that reached it, how many scheduling points it had reached)
    options: tuple[int, ...]  # runnable thread ids, or range(bound) for a data choice
    default: int  # what the default policy picks: a schedule stores only values that differ
    value: int  # what the strategy picked
    check: int  # low 16 bits of the path checksum before it (replay compares them)
    step: int = 0  # steps before it: the step it chooses for is ``step + 1``


class Execution:
    """What one run did so far. Only the scheduler and the event loop of this run write it."""

    def __init__(self, *, verify: dict[int, int] | None = None):
        # Invariant: steps >= number of thread decisions (every decision among threads is a step).
        self.steps = 0
        self.decisions: list[Decision] = []
        # A checksum of the path so far (every step's thread and kind of operation, every data
        # choice's value): replay compares it at each recorded deviation (``verify``: decision
        # index -> expected low 16 bits) and at the end, so a program that changed is caught near
        # where it changed.
        self.path = 0
        self.verify = verify or {}
        self.trace: list[TraceStep] = []  # Invariant: empty unless the scheduler traces the run
        self._note = ""  # the note of a step whose row its caller writes (Op.row_by_caller)
        #: What the run touched outside control (``outside.Escape``), each once, first first.
        self.escapes: list = []

    def path_matches(self) -> bool:
        """Whether the path so far is what the schedule being replayed recorded before the next decision."""
        expected = self.verify.get(len(self.decisions))
        return expected is None or expected == self.path & 0xFFFF

    def decided(self, position: tuple[int, int], options: tuple[int, ...], default: int, value: int) -> None:
        self.decisions.append(Decision(position, options, default, value, self.path & 0xFFFF, self.steps))

    def stepped(self, tid: int, kind: str) -> None:
        """Thread ``tid`` goes on with an operation of ``kind``: one step, folded into the path."""
        self.steps += 1
        self.path = _extend_path(self.path, tid, kind)

    def chose_data(self, value: int, kind: str) -> None:
        """A data choice is folded into the path by its value; it is not a step."""
        self.path = _extend_path(self.path, value, kind)

    def loop_step(self) -> None:
        """An event-loop callback that no decision among threads counted: a step for ``max_steps``
        and the watchdog, but not part of the path (schedules have never folded it in)."""
        self.steps += 1

    def row(self, step: TraceStep) -> None:
        self.trace.append(step)

    def hold_note(self, note: str) -> None:
        self._note = note

    def take_note(self) -> str:
        """The note of the latest step whose row its caller writes, once."""
        note, self._note = self._note, ""
        return note

    def freeze(self, failure: FailureInfo | None, usage_error: DetschedUsageError | None,
               races: tuple = ()) -> ExecutionResult:
        return ExecutionResult(failure, tuple(self.decisions), self.path, self.steps, tuple(self.trace), usage_error,
                               races, tuple(self.escapes))


@dataclass(frozen=True)
class ExecutionResult:
    """The frozen record of a run that ended."""

    failure: FailureInfo | None
    decisions: tuple[Decision, ...]
    path: int  # path checksum of the whole run
    steps: int  # scheduling steps
    trace: tuple[TraceStep, ...] = ()
    usage_error: DetschedUsageError | None = None
    races: tuple = ()  # every distinct data race the run made (``detsched._detect.races.Race``), first first
    escapes: tuple = ()  # what it touched outside control (``detsched._core.outside.Escape``), first first

    @property
    def deviations(self) -> tuple[tuple[int, int], ...]:
        """(decision index, value) of every decision that left the default policy."""
        return tuple((index, d.value) for index, d in enumerate(self.decisions) if d.value != d.default)

    @property
    def positions(self) -> tuple[tuple[tuple[int, int], int], ...]:
        """The same deviations keyed by the position of their decision."""
        return tuple((d.position, d.value) for d in self.decisions if d.value != d.default)

    @property
    def checks(self) -> tuple[int, ...]:
        """The path checksum (low 16 bits) before each deviation."""
        return tuple(d.check for d in self.decisions if d.value != d.default)

    @property
    def choices(self) -> tuple[tuple[tuple[int, int], tuple[int, ...], int], ...]:
        """(position, options, default) of every decision."""
        return tuple((d.position, d.options, d.default) for d in self.decisions)


_kind_codes: dict[str, int] = {}


def _extend_path(path: int, tid: int, kind: str) -> int:
    """Fold one step into the path checksum. Only the operation's kind counts ("call", "acquire"),
    not its details, which may differ between Python versions."""
    code = _kind_codes.get(kind)
    if code is None:
        code = _kind_codes[kind] = zlib.crc32(kind.split(" ", 1)[0].split("(", 1)[0].encode())
    return (path * 1_000_003 + tid * 7919 + code) & 0xFFFFFFFF
