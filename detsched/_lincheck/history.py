"""A recorded history of method calls on a shared object: each call with its thread, arguments,
outcome and the logical times of its invocation and response, and its text for people."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

#: Longest repr of the arguments or of a result shown in text; longer ones are cut with "...".
REPR_WIDTH = 30
#: A call whose invocation and response are adjacent events is shown on one row of a timeline if
#: that row is at most this wide, else on two.
ONE_ROW_WIDTH = 40


@dataclass(frozen=True)
class Raised:
    """The outcome of a call that raised instead of returning. Outcomes compare by exception type
    name only: messages differ between a real object and its model, and are for people."""

    type_name: str  # e.g. "KeyError"
    message: str = field(default="", compare=False)  # str(exc), shown to people, never compared


@dataclass(frozen=True)
class Call:
    """One method call of a history. ``result`` is the return value, or a ``Raised``; it means
    nothing while the call is pending (``responded`` is None: the thread never returned)."""

    index: int  # position in the history (0-based), unique
    thread: int  # which thread of the scenario made it (0-based)
    name: str  # method name, e.g. "incr"
    args: tuple  # positional arguments
    result: object  # return value or Raised; meaningless when pending
    invoked: int  # logical event time of the invocation; all event times of a history are distinct
    responded: int | None  # logical event time of the response; None = pending

    @property
    def pending(self) -> bool:
        return self.responded is None

    def describe(self) -> str:
        """``incr() -> 1``, ``add(3) -> None``, ``pop() raised KeyError``, ``get() (no response)``."""
        return f"{self._invocation()} {self._outcome()}"

    def _invocation(self) -> str:
        return f"{self.name}({_cut(', '.join(map(repr, self.args)))})"

    def _outcome(self) -> str:
        if self.pending:
            return "(no response)"
        if isinstance(self.result, Raised):
            return f"raised {self.result.type_name}"
        return f"-> {_cut(repr(self.result))}"


def _cut(text: str, width: int = REPR_WIDTH) -> str:
    return text if len(text) <= width else text[:width - 3] + "..."


def validate(calls: Sequence[Call]) -> None:
    """Raise ValueError if ``calls`` cannot be a recorded history: an index used twice, an event
    time used twice, or a response that does not come after its invocation."""
    indexes = [c.index for c in calls]
    if len(set(indexes)) != len(indexes):
        raise ValueError(f"two calls of the history have the same index: {sorted(indexes)}")
    times = [t for c in calls for t in (c.invoked, c.responded) if t is not None]
    if len(set(times)) != len(times):
        raise ValueError("two events of the history have the same time; event times must be distinct")
    for c in calls:
        if not c.pending and c.responded <= c.invoked:
            raise ValueError(f"call {c.index} ({c.describe()}) responded at {c.responded}, "
                             f"not after its invocation at {c.invoked}")


def render_history(calls: Sequence[Call]) -> str:
    """A timeline for a terminal: one column per thread, one row per event in time order. A call
    shows as ``incr() ...`` where it was invoked and ``... -> 1`` where it returned, or as one row
    ``incr() -> 1`` when no other event came in between; pending calls end in a last row
    ``... (no response)``."""
    if not calls:
        return "  (no calls recorded)"
    threads = sorted({c.thread for c in calls})
    # (time, is response, call); the flag is only a tie-break for invalid histories, never a key
    # of a dict or set, so the output is the same on every run.
    events = sorted([(c.invoked, 0, c) for c in calls] + [(c.responded, 1, c) for c in calls if not c.pending],
                    key=lambda e: (e[0], e[1], e[2].index))
    rows: list[tuple[str, int, str]] = []  # (time label, thread, cell)
    i = 0
    while i < len(events):
        time, is_response, call = events[i]
        if is_response:
            rows.append((str(time), call.thread, f"... {call._outcome()}"))
        elif i + 1 < len(events) and events[i + 1][2] is call and len(call.describe()) <= ONE_ROW_WIDTH:
            rows.append((str(time), call.thread, call.describe()))
            i += 1  # the response is in this row too
        else:
            rows.append((str(time), call.thread, f"{call._invocation()} ..."))
        i += 1
    rows += [("end", c.thread, f"... {c._outcome()}") for c in sorted(calls, key=lambda c: c.thread) if c.pending]

    widths = {t: max([len(f"T{t}")] + [len(cell) for _, th, cell in rows if th == t]) + 2 for t in threads}
    time_width = max(len("time"), *(len(label) for label, _, _ in rows))
    header = "  " + "time".rjust(time_width) + "  " + "".join(f"T{t}".ljust(widths[t]) for t in threads)
    lines = []
    for label, thread, cell in rows:
        cells = "".join((cell if t == thread else "").ljust(widths[t]) for t in threads)
        lines.append(("  " + label.rjust(time_width) + "  " + cells).rstrip())
    rule = "  " + "-" * (max(map(len, lines + [header.rstrip()])) - 2)
    return "\n".join([header.rstrip(), rule] + lines)
