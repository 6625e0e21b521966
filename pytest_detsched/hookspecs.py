"""Hooks the plugin offers to conftest files and other plugins (``pytest_detsched_*``).

Strategies added here join detsched's own registry (``detsched.plugins``), so they are selectable by
name everywhere a built-in one is: the marker, ``--detsched-strategy``, the ini file.
"""

from __future__ import annotations

from typing import Callable

import pytest


def pytest_detsched_strategies() -> dict[str, Callable]:
    """Return ``{name: factory}`` to add strategies; ``factory(seed=..., depth=...)`` returns a fresh
    object implementing ``detsched.strategies.Strategy`` for one exploration."""


@pytest.hookspec(firstresult=True)
def pytest_detsched_failure_text(item: pytest.Item, failure) -> str | None:
    """Return the text that reports ``failure`` (a ``detsched.Failure``) found in ``item``, or None
    for the default. The replay lines are appended after it in either case."""
