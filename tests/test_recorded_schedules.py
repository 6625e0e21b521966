"""Schedule strings recorded earlier still replay, step for step.

``data/recorded_schedules.json`` holds what exploring the bundled examples found: each schedule
string, the failure's kind and message, and the interleaving (thread, operation, note of every
step). They were recorded before the package was reorganised into layers and recorded again (by
``data/record_schedules.py``) only when the format became ``ds3``. The labels of four conditions
were renumbered by hand (``#3`` became ``#2``...) when ``Thread()`` stopped making a hidden
controlled Condition at the same line for its private start flag; schedules, steps and notes stayed
as recorded. Any change to how runs are
scheduled or recorded that would break users' saved schedules without a new format version fails
here.
"""

import json
import warnings
from pathlib import Path

import pytest

import detsched

REPO_DIR = Path(__file__).resolve().parent.parent
RECORDED = json.loads((Path(__file__).parent / "data" / "recorded_schedules.json").read_text())


def _case_id(case: dict) -> str:
    options = ",".join(f"{key}={value}" for key, value in case.get("options", {}).items())
    return Path(case["target"].partition("::")[0]).stem + (f"[{options}]" if options else "")


def _portable(op: str) -> str:
    """An operation as every Python version names it: 3.10 has no qualified names of code objects,
    so ``call Bank.balance()`` is ``call balance()`` there."""
    if op.startswith("call "):
        return "call " + op[len("call "):].rpartition(".")[2]
    return op


@pytest.mark.parametrize("case", RECORDED, ids=_case_id)
def test_recorded_schedule_replays_the_same_failure_step_for_step(case):
    with warnings.catch_warnings():
        warnings.simplefilter("error", detsched.ReplayDivergedWarning)
        failure = detsched.replay(str(REPO_DIR / case["target"]), case["schedule"])
    assert failure is not None, "the recorded schedule no longer fails"
    assert (failure.kind, failure.message) == (case["kind"], case["message"])
    replayed = [[step.tid, _portable(step.op), step.note] for step in failure.trace]
    assert replayed == [[tid, _portable(op), note] for tid, op, note in case["trace"]]
    assert failure.schedule.dumps() == case["schedule"]
