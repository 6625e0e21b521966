"""Helpers shared by the stdlib contract tests: explore a program expecting no failure, and check
that a call raises the stdlib's error."""

import detsched

RUNS = 50
#: A program with one thread has one interleaving: a single run checks it.
SINGLE_THREAD_RUNS = 1


def passes(program, runs=RUNS, **options):
    """Explore ``program``; fail with the full report if any interleaving breaks it."""
    report = detsched.explore(program, runs=runs, **options)
    assert report.failure is None, str(report)


def raises(call, error, phrase=""):
    """``call()`` raises ``error`` with ``phrase`` in its message (usable inside a run)."""
    try:
        call()
    except error as exc:
        assert phrase in str(exc), f"{type(exc).__name__}: {exc}"
    else:
        raise AssertionError(f"expected {error.__name__} {phrase}".rstrip())


def virtual(seconds: float):
    """``seconds`` of virtual time, give or take the little that each scheduling step takes."""
    import pytest

    return pytest.approx(seconds, abs=1e-2)
