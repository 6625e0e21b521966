"""The bundled examples (``examples/``) as targets, and the failure exploring each one's ``main``
finds, explored once per session and shared by the tests that need it."""

import functools
from pathlib import Path

import detsched

REPO_DIR = Path(__file__).resolve().parent.parent
EXAMPLES_DIR = REPO_DIR / "examples"


def target(example: str, function: str) -> str:
    return f"{EXAMPLES_DIR / example}.py::{function}"


#: Examples whose bug only the race detector shows (their ``main`` passes every assertion).
RACES = ("stale_read",)


@functools.cache
def found(example: str) -> detsched.Failure:
    """The failure exploring ``main`` of ``example`` finds."""
    report = detsched.explore(target(example, "main"), runs=1000, races=example in RACES)
    assert report.failure is not None, f"{example}: no failure in {report.runs} runs"
    return report.failure
