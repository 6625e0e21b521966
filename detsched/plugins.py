"""Plugin hooks: the pluggy registry through which strategies and failure reporters are added.

detsched's built-in strategies are themselves a plugin of this registry, so a third-party strategy
is found the same way as ``pct``: a plugin implements ``detsched_strategies`` and is registered
with ``register(plugin)`` or through a ``detsched`` entry point in its package metadata. The
pytest plugin forwards its own ``pytest_detsched_*`` hooks (implemented in conftest files) into
this registry, so one mechanism serves both.

pluggy ships with pytest. Without it, only the built-in strategies and the plain report exist.
"""

from __future__ import annotations

from typing import Callable

from detsched.errors import DetschedUsageError

try:
    import pluggy
except ImportError:  # detsched itself depends on nothing; plugins need pluggy
    pluggy = None

#: Project name of the registry: hook names start with ``detsched_``, entry points use this group.
PROJECT = "detsched"

if pluggy is not None:
    hookspec = pluggy.HookspecMarker(PROJECT)
    hookimpl = pluggy.HookimplMarker(PROJECT)
else:
    def _inert_marker(function=None, **options):
        """Stands in for pluggy's markers so this module imports; nothing can be registered."""
        return function if function is not None else (lambda decorated: decorated)

    hookspec = hookimpl = _inert_marker


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


def _builtin_strategies() -> dict[str, Callable]:
    from detsched.strategies import STRATEGIES  # the strategies package asks this registry for names

    return dict(STRATEGIES)


class _Builtins:
    """The strategies and the report detsched ships with."""

    @hookimpl
    def detsched_strategies(self) -> dict[str, Callable]:
        return _builtin_strategies()

    @hookimpl(trylast=True)
    def detsched_format_failure(self, failure) -> str:
        return str(failure)


_manager = None


def plugin_manager():
    """The process-wide registry (built-ins and entry points loaded on first use); None without pluggy."""
    global _manager
    if _manager is None and pluggy is not None:
        manager = pluggy.PluginManager(PROJECT)
        manager.add_hookspecs(HookSpecs)
        manager.register(_Builtins(), name="detsched-builtins")
        manager.load_setuptools_entrypoints(PROJECT)
        _manager = manager
    return _manager


def register(plugin, name: str | None = None) -> None:
    """Add a plugin (any object or module with ``@hookimpl`` functions) to the registry."""
    manager = plugin_manager()
    if manager is None:
        raise DetschedUsageError("detsched plugins need pluggy: pip install pluggy")
    manager.register(plugin, name=name)


def unregister(plugin) -> None:
    manager = plugin_manager()
    if manager is not None and manager.is_registered(plugin):
        manager.unregister(plugin)


def strategy_factories() -> dict[str, Callable]:
    """Every strategy by name. A plugin may not redefine a built-in name; among plugins, the one
    registered last wins, so a test session's own strategies take precedence."""
    builtins = _builtin_strategies()
    manager = plugin_manager()
    if manager is None:
        return builtins
    merged: dict[str, Callable] = {}
    for contributed in reversed(manager.hook.detsched_strategies()):  # pluggy calls the newest first
        for name, factory in contributed.items():
            if name in builtins and factory is not builtins[name]:
                raise DetschedUsageError(f"a plugin redefines the built-in strategy {name!r}; give it another name")
            merged[name] = factory
    return merged


def format_failure(failure) -> str:
    """The report of ``failure``, as the registered reporters write it."""
    manager = plugin_manager()
    return str(failure) if manager is None else manager.hook.detsched_format_failure(failure=failure)
