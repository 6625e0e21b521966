"""Benchmark: the test suites of real thread-using libraries, run plainly and under detsched.

For each library (fasteners, janus, cachetools, pykka, asgiref, readerwriterlock, apscheduler,
sqlitedict, pebble, at the versions pinned below) the script runs the test suite that ships in its
sdist twice, against the released package installed in a scratch virtualenv: once plainly, once with
``--detsched-all --detsched-runs=N``. It prints one row per library: the tests, pass/fail/skip
counts and wall time of each session, how many tests detsched explored and how many it left alone
(and why), then every test that passes plainly but fails under detsched, with the first lines of its
failure. Target: no such test, and no session that hangs (one that outlives ``--timeout`` is
interrupted and reported as HUNG).

    python benchmarks/real_suites.py [--libraries fasteners,janus] [--runs 20] [--workdir DIR]

The virtualenv (``WORKDIR/venv``, made with the interpreter that runs this script) gets this
checkout of detsched, editable and with its test extras, and the pinned packages; the suites are
extracted into ``WORKDIR/suites`` and each session leaves its output and JUnit XML in
``WORKDIR/results``. Both are kept, so a single test can be rerun by hand, and a second run of
the script reuses them. The first run needs the package registry and takes a few minutes more.
"""

from __future__ import annotations

import argparse
import ast
import os
import re
import signal
import subprocess
import sys
import tarfile
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DEFAULT_WORKDIR = Path("/tmp/detsched-real-suites")


@dataclass(frozen=True)
class Library:
    name: str
    version: str
    test_requirements: tuple[str, ...]  # what its tests import beyond pytest, pinned
    tests: str = "tests"  # the suite's folder inside the sdist


#: The libraries and their test requirements (from each project's test requirements files).
LIBRARIES = {
    "fasteners": Library("fasteners", "0.20", ("diskcache==5.6.3", "eventlet==0.41.3", "more-itertools==11.2.1")),
    "janus": Library("janus", "2.0.0", ("pytest-asyncio==1.5.0", "pytest-codspeed==5.0.4")),
    "cachetools": Library("cachetools", "8.0.2", ()),
    "pykka": Library("pykka", "4.5.0", ("pytest-mock==3.17.0",)),
    "asgiref": Library("asgiref", "3.13.0", ("packaging==26.4", "pytest-asyncio==1.5.0")),
    "readerwriterlock": Library("readerwriterlock", "1.0.10", ("typing_extensions==4.16.0",)),
    "apscheduler": Library("apscheduler", "3.11.3", ("pytz==2026.6", "pytest-timeout==2.4.0", "sqlalchemy==2.1.9",
                                                       "tornado==6.6.1")),
    "sqlitedict": Library("sqlitedict", "2.1.0", ()),
    "pebble": Library("pebble", "5.2.3", (), tests="test"),
}
DEFAULT_RUNS = 20
SESSION_TIMEOUT = 15 * 60  # seconds; a session still running then is interrupted and reported HUNG
INTERRUPT_GRACE = 60  # seconds between the interrupt of a hung session and killing it

#: Keeps the current folder (an extracted sdist, with the library's source) off ``sys.path``, so
#: that the tests import the installed package: ``-P`` from Python 3.11, ``-I`` before it.
SAFE_PATH = "-P" if sys.version_info >= (3, 11) else "-I"

#: detsched's description of a test it explored, in its terminal summary (plugin.summary_lines).
EXPLORED = re.compile(r"\d+ runs? in ")


# ------------------------------------------------------------------------------------- setting up

def run(command: list, **kwargs) -> None:
    print("+", " ".join(str(part) for part in command), flush=True)
    subprocess.run([str(part) for part in command], check=True, **kwargs)


def venv_python(workdir: Path) -> Path:
    return workdir / "venv" / "bin" / "python"


def requirements(libraries: list[Library]) -> list[str]:
    pins = [f"{lib.name}=={lib.version}" for lib in libraries]
    return [f"{REPO}[test]"] + pins + sorted({req for lib in libraries for req in lib.test_requirements})


def set_up_venv(workdir: Path, libraries: list[Library]) -> Path:
    """The virtualenv's python, with detsched (editable) and the pinned packages installed. The
    install is skipped when the requirements are those of the last install."""
    python = venv_python(workdir)
    if not python.exists():
        run([sys.executable, "-m", "venv", workdir / "venv"])
    wanted = requirements(libraries)
    stamp = workdir / "venv" / "installed.txt"
    if stamp.exists() and set(wanted) <= set(stamp.read_text().split("\n")):
        return python
    run([python, "-m", "pip", "install", "--quiet", "-e", wanted[0], *wanted[1:]])
    stamp.write_text("\n".join(wanted))
    return python


def fetch_suite(workdir: Path, python: Path, lib: Library) -> Path:
    """The folder the library's sdist was extracted into (downloaded on first use)."""
    root = workdir / "suites" / f"{lib.name}-{lib.version}"
    if root.is_dir():
        return root
    sdists = workdir / "sdists"
    run([python, "-m", "pip", "download", "--quiet", "--no-deps", "--no-binary", ":all:",
         f"{lib.name}=={lib.version}", "-d", sdists])
    archive = next(p for p in sdists.iterdir() if p.name.lower().startswith(f"{lib.name}-{lib.version}.tar"))
    with tarfile.open(archive) as tar:
        if hasattr(tarfile, "data_filter"):
            tar.extractall(root.parent, filter="data")
        else:
            tar.extractall(root.parent)
    if not root.is_dir():
        raise SystemExit(f"the sdist {archive.name} did not extract into {root}")
    return root


def check_installed_copy(python: Path, root: Path, lib: Library) -> None:
    """Make sure the tests will import the installed package, not the sdist's own source."""
    found = subprocess.run([python, SAFE_PATH, "-c", f"import {lib.name}; print({lib.name}.__file__)"], cwd=root,
                           capture_output=True, text=True, check=True).stdout.strip()
    if not found.startswith(str(python.parent.parent)):
        raise SystemExit(f"{lib.name} would be imported from {found}, not from the virtualenv")


# ------------------------------------------------------------------------------------- running

@dataclass
class Session:
    """One pytest session over a suite: each test's (outcome, seconds, message, detsched stats)."""

    tests: dict[str, tuple[str, float, str, dict | None]] = field(default_factory=dict)
    elapsed: float = 0.0
    hung: bool = False
    summary: dict[str, str] = field(default_factory=dict)  # test -> description, from detsched's summary
    output: Path | None = None

    def count(self, outcome: str) -> int:
        return sum(1 for test in self.tests.values() if test[0] == outcome)


def pytest_command(python: Path, lib: Library, junit: Path, runs: int | None) -> list:
    command = [python, SAFE_PATH, "-m", "pytest", "-q", "-rA", "-p", "no:cacheprovider", f"--junitxml={junit}",
               lib.tests]
    return command + (["--detsched-all", f"--detsched-runs={runs}"] if runs else [])


def run_session(python: Path, root: Path, lib: Library, results: Path, runs: int | None,
                timeout: float) -> Session:
    """Run the suite (under detsched when ``runs`` is given) in its extracted folder."""
    label = f"{lib.name}-{'detsched' if runs else 'plain'}"
    junit, output = results / f"{label}.xml", results / f"{label}.out"
    junit.unlink(missing_ok=True)
    session = Session(output=output)
    print(f"running {label} ...", flush=True)
    start = time.perf_counter()
    with open(output, "w") as out:
        process = subprocess.Popen([str(part) for part in pytest_command(python, lib, junit, runs)], cwd=root,
                                   stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                   start_new_session=True)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            session.hung = True
            stop(process)
    session.elapsed = time.perf_counter() - start
    if junit.exists():
        session.tests = read_junit(junit, root)
    session.summary = detsched_summary(output.read_text(errors="replace"))
    return session


def stop(process: subprocess.Popen) -> None:
    """Interrupt a hung session (pytest then writes what it has), and kill its process group if
    that does not end it."""
    os.killpg(process.pid, signal.SIGINT)
    try:
        process.wait(timeout=INTERRUPT_GRACE)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


# ------------------------------------------------------------------------------------- reading results

def node_id(case: ET.Element, root: Path) -> str:
    """The pytest node id of a JUnit test case. Its ``classname`` is the node id up to the test's
    name, with the file's path dotted and ``.py`` dropped: the longest prefix naming a file under
    ``root`` is the module, the rest are classes."""
    parts = case.get("classname", "").split(".")
    for cut in range(len(parts), 0, -1):
        path = "/".join(parts[:cut]) + ".py"
        if (root / path).is_file():
            return "::".join([path, *parts[cut:], case.get("name", "")])
    return "::".join([*parts, case.get("name", "")])


#: Outcomes from worst to best: a test reported more than once (subtests, an error in teardown
#: after a failure) keeps the worst.
OUTCOMES = ("error", "failure", "passed", "skipped")


def read_junit(path: Path, root: Path) -> dict[str, tuple[str, float, str, dict | None]]:
    tests = {}
    for case in ET.parse(path).getroot().iter("testcase"):
        if not case.get("name"):  # written for an interrupted session, names no test
            continue
        outcome, message = "passed", ""
        for tag in ("skipped", "failure", "error"):
            child = case.find(tag)
            if child is not None:
                outcome, message = tag, child.get("message", "") or (child.text or "")
        stats = None
        for prop in case.iter("property"):
            if prop.get("name") == "detsched":
                stats = ast.literal_eval(prop.get("value", "None"))
        test = node_id(case, root)
        seen = tests.get(test)
        if seen is not None:
            if OUTCOMES.index(seen[0]) <= OUTCOMES.index(outcome):
                outcome, message = seen[0], seen[2]
            stats = stats or seen[3]
        tests[test] = (outcome, float(case.get("time", 0)), message, stats)
    return tests


def detsched_summary(output: str) -> dict[str, str]:
    """``test -> description`` from the ``detsched`` section of pytest's terminal summary."""
    lines = output.splitlines()
    start = next((i for i, line in enumerate(lines) if re.fullmatch(r"=+ detsched =+", line.strip())), None)
    if start is None:
        return {}
    summary = {}
    for line in lines[start + 1:]:
        if line.startswith("="):
            break
        test, sep, description = line.partition(": ")
        if sep and "::" in test:
            summary[test] = description
    return summary


def why_not_explored(test: str, under: Session) -> str | None:
    """None if detsched explored the test (or it was skipped, or never ran), else the reason."""
    outcome, _, _, stats = under.tests[test]
    if outcome == "skipped":
        return None
    described = under.summary.get(test)
    if described is not None:
        return None if EXPLORED.match(described) else described
    if stats is not None:  # the plugin says why it let a test run as usual
        return stats.get("reason", "ran as usual") if stats.get("mode") == "plain" else None
    if outcome == "error":
        return "failed before its call (fixture set-up)"
    return "not taken by detsched"


def first_lines(message: str) -> str:
    """The first line of a failure, and the line after a detsched headline (kind and message)."""
    lines = [line.strip() for line in message.splitlines() if line.strip()] or [""]
    if lines[0].startswith("detsched found") or lines[0].startswith("Failed: detsched found"):
        return " / ".join(lines[:2])
    return lines[0]


# ------------------------------------------------------------------------------------- reporting

@dataclass
class Row:
    lib: Library
    plain: Session
    under: Session
    note: str = ""

    def tests(self) -> int:
        return len(set(self.plain.tests) | set(self.under.tests))

    def not_explored(self) -> dict[str, str]:
        reasons = {test: why_not_explored(test, self.under) for test in sorted(self.under.tests)}
        return {test: reason for test, reason in reasons.items() if reason is not None}

    def explored(self) -> int:
        return sum(1 for test, (outcome, *_) in self.under.tests.items()
                   if outcome != "skipped" and why_not_explored(test, self.under) is None)

    def regressions(self) -> dict[str, str]:
        """Tests that pass plainly but fail under detsched -> the first lines of the failure."""
        found = {}
        for test, (outcome, *_) in sorted(self.plain.tests.items()):
            under = self.under.tests.get(test)
            if outcome == "passed" and under is not None and under[0] in ("failure", "error"):
                found[test] = f"{under[0]}: {first_lines(under[2]).removeprefix('Failed: ')}"
        return found

    def missing(self) -> list[str]:
        """Tests that pass plainly and have no result under detsched (its session hung), in the
        order they ran: the first is where that session most likely hung."""
        return [test for test, (outcome, *_) in self.plain.tests.items()
                if outcome == "passed" and test not in self.under.tests]


def counts(session: Session) -> tuple[int, int, int]:
    """Passed, failed (failures and errors), skipped."""
    failed = session.count("failure") + session.count("error")
    return session.count("passed"), failed, session.count("skipped")


COLUMNS = ("library", "tests", "plain p/f/s", "plain time", "detsched p/f/s", "detsched time", "explored",
           "not explored", "regressions")
WIDTHS = (18, 6, 13, 12, 15, 15, 9, 13, 11)


def figures(row: Row) -> list:
    """The row's numbers, in the table's column order after the library's name."""
    return [row.tests(), counts(row.plain), (row.plain.elapsed, row.plain.hung), counts(row.under),
            (row.under.elapsed, row.under.hung), row.explored(), len(row.not_explored()), len(row.regressions())]


def add(a, b):
    if isinstance(a, tuple):
        return tuple(add(x, y) for x, y in zip(a, b))
    return a or b if isinstance(a, bool) else a + b


def cell(value) -> str:
    if isinstance(value, tuple) and len(value) == 2:  # (seconds, hung)
        return f"{value[0]:.1f}s" + (" HUNG" if value[1] else "")
    if isinstance(value, tuple):
        return "/".join(str(v) for v in value)
    return str(value)


def table_line(cells) -> str:
    return "  ".join(f"{c:<{w}}" if i == 0 else f"{c:>{w}}" for i, (c, w) in enumerate(zip(cells, WIDTHS)))


def detsched_revision() -> str:
    """The checkout's commit, and whether detsched's files differ from it (they are what runs)."""
    def git(*args: str) -> str:
        done = subprocess.run(["git", "-C", str(REPO), *args], capture_output=True, text=True)
        return done.stdout.strip() if done.returncode == 0 else ""
    commit = git("rev-parse", "--short", "HEAD") or "unknown commit"
    changed = git("status", "--porcelain", "--", "detsched", "pytest_detsched")
    return commit + (" with uncommitted changes to detsched" if changed else "")


def print_report(rows: list[Row], runs: int) -> None:
    print(f"\nreal suites, plainly and under detsched (--detsched-all --detsched-runs={runs}); "
          f"detsched at {detsched_revision()}\n")
    print(table_line(COLUMNS))
    total = None
    for row in rows:
        numbers = figures(row)
        total = numbers if total is None else [add(a, b) for a, b in zip(total, numbers)]
        print(table_line([f"{row.lib.name} {row.lib.version}", *map(cell, numbers)]))
    if len(rows) > 1:
        print(table_line(["total", *map(cell, total)]))
    for row in rows:
        print_details(row)
    hung = [f"{row.lib.name} {kind}" for row in rows for kind, s in (("plain", row.plain), ("detsched", row.under))
            if s.hung]
    print(f"\ntarget: 0 tests that pass plainly and fail under detsched, no hung session; found "
          f"{sum(len(row.regressions()) for row in rows)}, hung: {', '.join(hung) or 'none'}")


def print_details(row: Row) -> None:
    print(f"\n{row.lib.name} {row.lib.version}" + (f" ({row.note})" if row.note else ""))
    for kind, session in (("plain", row.plain), ("detsched", row.under)):
        state = "HUNG, interrupted" if session.hung else "finished"
        print(f"  {kind} session {state}: output in {session.output}")
    reasons: dict[str, int] = {}
    for reason in row.not_explored().values():
        reasons[reason] = reasons.get(reason, 0) + 1
    for reason, count in sorted(reasons.items()):
        print(f"  not explored: {count} {reason}")
    missing = row.missing()
    if missing:
        print(f"  {len(missing)} tests that pass plainly have no detsched result; the first, "
              f"where the session most likely hung: {missing[0]}")
    for test, message in row.regressions().items():
        print(f"  passes plainly, fails under detsched: {test}\n      {message}")


# ------------------------------------------------------------------------------------- main

def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--libraries", default=",".join(LIBRARIES),
                        help=f"comma-separated subset of {', '.join(LIBRARIES)} (default: all)")
    parser.add_argument("--runs", type=int, default=DEFAULT_RUNS, help=f"--detsched-runs (default {DEFAULT_RUNS})")
    parser.add_argument("--workdir", type=Path, default=DEFAULT_WORKDIR,
                        help=f"virtualenv, suites and results (default {DEFAULT_WORKDIR})")
    parser.add_argument("--timeout", type=float, default=SESSION_TIMEOUT,
                        help=f"seconds per pytest session before it counts as HUNG (default {SESSION_TIMEOUT})")
    args = parser.parse_args(argv)
    unknown = [name for name in args.libraries.split(",") if name not in LIBRARIES]
    if unknown:
        parser.error(f"unknown libraries: {', '.join(unknown)}; choose from {', '.join(LIBRARIES)}")
    libraries = [LIBRARIES[name] for name in args.libraries.split(",")]
    workdir = args.workdir.resolve()
    if workdir == REPO or REPO in workdir.parents:
        parser.error("--workdir must be outside the repository")
    results = workdir / "results"
    results.mkdir(parents=True, exist_ok=True)

    python = set_up_venv(workdir, libraries)
    rows = []
    for lib in libraries:
        root = fetch_suite(workdir, python, lib)
        if not (root / lib.tests).is_dir():
            print(f"{lib.name} {lib.version}: its sdist has no {lib.tests}/ folder, so no tests to run")
            rows.append(Row(lib, Session(), Session(), note="the sdist ships no tests"))
            continue
        check_installed_copy(python, root, lib)
        plain = run_session(python, root, lib, results, None, args.timeout)
        under = run_session(python, root, lib, results, args.runs, args.timeout)
        rows.append(Row(lib, plain, under))
    print_report(rows, args.runs)
    print(f"\nvirtualenv: {workdir / 'venv'}; suites: {workdir / 'suites'}; rerun one test from its suite's folder:\n"
          f"  cd {workdir / 'suites'}/NAME-VERSION && {python} {SAFE_PATH} -m pytest -p no:cacheprovider "
          f"--detsched-all --detsched-runs={args.runs} TEST_ID")
    return 0


if __name__ == "__main__":
    sys.exit(main())
