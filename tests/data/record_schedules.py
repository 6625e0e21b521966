"""Record ``recorded_schedules.json`` again: what exploring each bundled example finds.

Only when the schedule format changes (``detsched.schedule.FORMAT_VERSION`` and ``CHANGES``): the
point of the file is that strings recorded earlier keep replaying, so it is never re-recorded to
make a failing test pass.

    python tests/data/record_schedules.py
"""

import json
from pathlib import Path

import detsched

REPO_DIR = Path(__file__).resolve().parent.parent.parent
#: The explorations recorded besides each example's default one: other strategies and points.
VARIANTS = [("bank", {"strategy": "random", "seed": 7}),
            ("producer_consumer", {"preempt_calls": False, "preempt_writes": False}),
            ("single_flight", {"preempt_writes": False, "depth": 2})]


def record(example: str, options: dict) -> dict:
    target = f"examples/{example}.py::main"
    failure = detsched.explore(str(REPO_DIR / target), runs=1000, **options).failure
    assert failure is not None, f"{target} {options}: no failure"
    entry = {"target": target, "options": options} if options else {"target": target}
    entry.update(schedule=failure.schedule.dumps(), kind=failure.kind, message=failure.message,
                 trace=[[step.tid, step.op, step.note] for step in failure.trace])
    return entry


def main() -> None:
    examples = sorted(path.stem for path in (REPO_DIR / "examples").glob("*.py"))
    entries = [record(name, {}) for name in examples] + [record(name, options) for name, options in VARIANTS]
    (Path(__file__).parent / "recorded_schedules.json").write_text(json.dumps(entries, indent=1) + "\n")


if __name__ == "__main__":
    main()
