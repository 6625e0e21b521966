"""Text for people: timelines of a run (one column per thread, or one row per step naming its
thread when there are too many), and the wording of counts and rates in summary lines."""

from __future__ import annotations

import shutil
import sys

from detsched._core.ops import TraceStep

#: Rows of the interleaving shown inside a failure report; ``detsched show`` prints every step.
REPORT_ROWS = 40
#: Width of one thread's column in a timeline.
COLUMN_WIDTH = 38
#: Widest a timeline with one column per thread may be (the step numbers and every column but the
#: last); with more threads than fit, each row names its thread instead (``narrow`` layout).
MAX_TABLE_WIDTH = 160
#: Narrowest terminal a timeline is fitted to.
MIN_TERMINAL_WIDTH = 80


def table_width() -> int:
    """How wide a timeline may be: the terminal's width when the output is one (``COLUMNS`` wins,
    as for every tool that asks ``shutil``), else ``MAX_TABLE_WIDTH``, the same on every machine."""
    if not sys.stdout.isatty():
        return MAX_TABLE_WIDTH
    return max(MIN_TERMINAL_WIDTH, shutil.get_terminal_size((MAX_TABLE_WIDTH, 24)).columns)


#: Width of the thread column of the narrow layout (longer thread names are cut).
THREAD_WIDTH = 28


def plural(count: int, word: str) -> str:
    """``1 run``, ``2 runs``, ``0 runs``."""
    return f"{count} {word}{'s' * (count != 1)}"


def pace(runs: int, elapsed: float) -> str:
    """How many runs took how long, for summary lines: ``500 runs in 1.2 s (410 runs/s)``. One run,
    or runs slower than one a second, give no rate that would round to nothing: ``1 run in 3.2 s``,
    ``12 runs in 40.3 s (3.4 s a run)``."""
    text = f"{plural(runs, 'run')} in {_seconds(elapsed)}"
    if runs < 2 or elapsed <= 0:
        return text
    rate = runs / elapsed
    return f"{text} ({rate:,.0f} runs/s)" if rate >= 1 else f"{text} ({_seconds(elapsed / runs)} a run)"


def _seconds(seconds: float) -> str:
    return f"{seconds:.2f} s" if seconds < 1 else f"{seconds:,.1f} s"


def render_timeline(trace, limit: int | None = None, *, compact: bool = False) -> str:
    """One column per thread; each row is a step with its operation and ``file:line``. With more
    threads than fit in ``table_width()``, one row per step naming its thread instead.

    ``compact`` folds what a reader takes in at a glance into one row: a function entry into the
    operation that follows it in the same thread (``Bank.balance(): acquire...``), and an acquire
    directly followed by the same thread's release (``acquire+release Lock(...)``). ``limit`` keeps
    the last rows.
    """
    if not trace:
        return "  (no steps recorded)"
    tids = sorted({s.tid for s in trace})
    names = {s.tid: f"T{s.tid} {s.thread}" for s in trace}
    narrow = 8 + COLUMN_WIDTH * len(tids) > table_width()
    if narrow:
        width = min(max(map(len, names.values())), THREAD_WIDTH)
        header = "  step  " + "thread".ljust(width + 2) + "operation"
        rule = "  " + "-" * (len(header) - 2 + 40)
    else:
        header = "  step  " + "".join(names[tid][:COLUMN_WIDTH - 1].ljust(COLUMN_WIDTH) for tid in tids)
        rule = "  " + "-" * (len(header) - 2)
    rows = _compact_rows(trace) if compact else [(s, s.op, s.where) for s in trace]
    shown = rows if limit is None or len(rows) <= limit else rows[-limit:]
    lines = [header.rstrip(), rule]
    if len(shown) < len(rows):
        lines.append(f"  ...   ({plural(shown[0][0].step - trace[0].step, 'earlier step')}; "
                     "`detsched show` prints them all)")
    column = {tid: i for i, tid in enumerate(tids)}
    for first, text, where in shown:
        cell = text + (f" @{where}" if where else "") + (f" [{first.note}]" if first.note else "")
        if narrow:
            lines.append(f"  {first.step:>4}  {names[first.tid][:width].ljust(width)}  {cell}")
        else:
            lines.append(f"  {first.step:>4}  {' ' * (COLUMN_WIDTH * column[first.tid])}{cell}")
    return "\n".join(lines)


def _compact_rows(trace) -> list[tuple[TraceStep, str, str]]:
    """(first step, text, where) rows with function entries and acquire/release pairs folded."""
    rows, i = [], 0
    while i < len(trace):
        first, prefix = trace[i], ""
        if first.op.startswith("call ") and _continues(trace, i) and not trace[i + 1].op.startswith("call "):
            prefix = first.op[len("call "):] + ": "
            i += 1
        step = trace[i]
        text, where = step.op, step.where
        if step.op.startswith("acquire ") and _continues(trace, i) \
                and trace[i + 1].op == "release " + step.op[len("acquire "):]:
            text = "acquire+release " + step.op[len("acquire "):]
            i += 1
        rows.append((first, prefix + text, where))
        i += 1
    return rows


def _continues(trace, i: int) -> bool:
    """Whether step i + 1 is the same thread going straight on (no switch, nothing to flag)."""
    return i + 1 < len(trace) and trace[i + 1].tid == trace[i].tid and not trace[i + 1].note
