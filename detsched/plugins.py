"""Plugins: the pluggy registry, and the hooks through which third parties add strategies and
failure reporters.

A plugin implements ``detsched_strategies`` or ``detsched_format_failure`` and is registered with
``register(plugin)`` or through a ``detsched`` entry point in its package metadata. The pytest
plugin forwards its own ``pytest_detsched_*`` hooks (implemented in conftest files) into this
registry, so one mechanism serves both. The built-in strategies are not a plugin: the strategy
registry (``detsched.strategies.registry``) starts from them and adds what plugins contribute.
"""

from __future__ import annotations

from typing import Callable

import pluggy

#: Project name of the registry: hook names start with ``detsched_``, entry points use this group.
PROJECT = "detsched"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


class HookSpecs:
    """What a detsched plugin may implement."""

    @hookspec
    def detsched_strategies(self) -> dict[str, Callable]:
        """Return ``{name: factory}``; ``factory(seed=..., depth=...)`` makes a fresh ``Strategy``
        (see ``detsched.strategies.Strategy``) for one exploration."""

    @hookspec(firstresult=True)
    def detsched_format_failure(self, failure) -> str | None:
        """Return the text that reports ``failure`` (a ``detsched.Failure``), or None to leave it to
        the next reporter. The last reporter is ``str(failure)``."""


class _PlainReport:
    """The report detsched writes when no plugin writes one."""

    @hookimpl(trylast=True)
    def detsched_format_failure(self, failure) -> str:
        return str(failure)


_manager: pluggy.PluginManager | None = None


def plugin_manager() -> pluggy.PluginManager:
    """The process-wide registry (entry points loaded on first use)."""
    global _manager
    if _manager is None:
        manager = pluggy.PluginManager(PROJECT)
        manager.add_hookspecs(HookSpecs)
        manager.register(_PlainReport(), name="detsched-plain-report")
        manager.load_setuptools_entrypoints(PROJECT)
        _manager = manager
    return _manager


def register(plugin, name: str | None = None) -> None:
    """Add a plugin (any object or module with ``@hookimpl`` functions) to the registry."""
    plugin_manager().register(plugin, name=name)


def unregister(plugin) -> None:
    manager = plugin_manager()
    if manager.is_registered(plugin):
        manager.unregister(plugin)


def contributed_strategies() -> list[dict[str, Callable]]:
    """What each plugin's ``detsched_strategies`` returned, the plugin registered first first."""
    return list(reversed(plugin_manager().hook.detsched_strategies()))  # pluggy calls the newest first


def format_failure(failure) -> str:
    """The report of ``failure``, as the registered reporters write it."""
    return plugin_manager().hook.detsched_format_failure(failure=failure)
