"""Where user code is: find the first stack frame outside detsched, and format stacks without
detsched's own frames, so every location and stack in a report points at the user's code."""

from __future__ import annotations

import os
import sys
import traceback

_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep
#: The pytest plugin, installed next to detsched, calls the test body in every run: its frames are ours too.
_PLUGIN_DIR = os.path.join(os.path.dirname(_PACKAGE_DIR[:-1]), "pytest_detsched") + os.sep


def is_internal(filename: str) -> bool:
    return filename.startswith((_PACKAGE_DIR, _PLUGIN_DIR))


def user_location(depth: int = 2) -> str:
    """``file.py:LINE`` of the nearest caller outside detsched (basename only: stable across machines)."""
    frame = sys._getframe(depth)
    while frame is not None and is_internal(frame.f_code.co_filename):
        frame = frame.f_back
    if frame is None:
        return "?"
    return f"{os.path.basename(frame.f_code.co_filename)}:{frame.f_lineno}"


def format_stack(frame) -> str:
    """A stack like ``traceback.format_stack`` with detsched's frames removed."""
    summary = [fs for fs in traceback.extract_stack(frame) if not is_internal(fs.filename)]
    return "".join(traceback.format_list(summary))


def format_exception(exc: BaseException) -> str:
    """The exception's traceback without detsched's frames."""
    summary = traceback.extract_tb(exc.__traceback__)
    kept = traceback.StackSummary.from_list([fs for fs in summary if not is_internal(fs.filename)])
    lines = ["Traceback (most recent call last):\n", *kept.format()]
    lines += traceback.format_exception_only(type(exc), exc)
    return "".join(lines)


def innermost_user_location(frame) -> str:
    """``file.py:LINE in func`` of the innermost frame outside detsched, starting at ``frame``."""
    while frame is not None and is_internal(frame.f_code.co_filename):
        frame = frame.f_back
    if frame is None:
        return "?"
    return f"{os.path.basename(frame.f_code.co_filename)}:{frame.f_lineno} in {frame.f_code.co_name}"
