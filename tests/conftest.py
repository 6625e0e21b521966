"""Shared test helpers: pytester for plugin tests, and a fixture that writes modules to import."""

import sys
import textwrap

import pytest

pytest_plugins = ["pytester"]


@pytest.fixture
def make_module(tmp_path, monkeypatch):
    """Write ``source`` as an importable module and return it (imported), cleaned up afterwards."""
    monkeypatch.syspath_prepend(str(tmp_path))
    created = []

    def make(name, source):
        (tmp_path / f"{name}.py").write_text(textwrap.dedent(source))
        created.append(name)
        __import__(name)
        return sys.modules[name]

    yield make
    for name in created:
        sys.modules.pop(name, None)
