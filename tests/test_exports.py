"""The public surface: what ``detsched`` and its public modules export, and that the pytest plugin
uses nothing else. Everything else lives in underscore packages and may change without notice."""

import ast
import importlib
from pathlib import Path

import pytest

import detsched

#: Modules a user or an integration may import; the rest is private (``detsched._*``).
PUBLIC_MODULES = ["detsched", "detsched.errors", "detsched.hypothesis", "detsched.integration", "detsched.lincheck",
                  "detsched.plugins",
                  "detsched.reproduce", "detsched.schedule", "detsched.settings", "detsched.strategies"]

EXPECTED_ALL = {
    "detsched": {"Access", "DetschedError", "DetschedInternalError", "DetschedUsageError", "Failure", "ReplayDiverged",
                 "ReplayDivergedWarning", "Race", "Report", "Schedule", "ScheduleError", "benign", "explore", "replay",
                 "reproduce", "unchecked", "yield_point"},
    "detsched.strategies": {"BUILTIN", "CoverageGuided", "DepthFirst", "PCT", "PartialOrder", "PositionReplay", "RandomWalk", "Replay", "Strategy", "make_strategy",
                            "strategy_factories"},
    "detsched.lincheck": {"LincheckFailure", "Result", "Scenario", "check", "op", "replay_scenario", "run"},
    "detsched.integration": {"Coverage", "Target", "forget_benign", "format_failure", "is_project_file", "pace", "plural",
                             "schedule_so_far", "started_threads", "write_coverage_json", "write_html_timeline"},
}
PLUGIN_DIR = Path(__file__).resolve().parent.parent / "pytest_detsched"


@pytest.mark.parametrize("module", sorted(EXPECTED_ALL))
def test_all_lists_exactly_the_public_names(module):
    namespace = importlib.import_module(module)
    assert set(namespace.__all__) == EXPECTED_ALL[module]
    for name in namespace.__all__:
        assert getattr(namespace, name) is not None


def test_the_package_exposes_no_other_public_name():
    submodules = {name.rpartition(".")[2] for name in PUBLIC_MODULES} | {"cli"}
    private_packages = {"_aio", "_core", "_detect", "_explore", "_instrument", "_lincheck", "_primitives", "_report"}
    public = {name for name in vars(detsched) if name.isidentifier() and not name.startswith("_")}
    assert public - EXPECTED_ALL["detsched"] - submodules == set()
    private_modules = {name for name, value in vars(detsched).items()
                       if name.startswith("_") and not name.startswith("__") and isinstance(value, type(detsched))}
    assert private_modules <= private_packages


@pytest.mark.parametrize("module", PUBLIC_MODULES)
def test_public_modules_import_on_their_own(module):
    assert importlib.import_module(module).__doc__


def test_the_pytest_plugin_uses_only_public_modules():
    private = []
    for path in sorted(PLUGIN_DIR.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [node.module or ""] if isinstance(node, ast.ImportFrom) else (
                [alias.name for alias in node.names] if isinstance(node, ast.Import) else [])
            private += [f"{path.name}: {name}" for name in names
                        if name.startswith("detsched") and name not in PUBLIC_MODULES]
    assert private == []
