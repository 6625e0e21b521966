"""The HTML timeline: one self-contained page per run, built from its trace -- thread columns, the
failing steps, ordering and wait-for arrows, long runs folded -- written by ``detsched show --html``
and ``pytest --detsched-html``, and checked in a real headless browser when one is installed."""

import json
import re
import shutil
import subprocess
import threading

import pytest

import detsched
from detsched._explore.explorer import _prepare, replay_traced, schedule_of, warm_up
from detsched._report import html
from detsched.cli import main
from detsched.schedule import Schedule, fingerprint

PLUGIN = ("-p", "pytest_detsched.plugin")
BROWSER = next(filter(None, map(shutil.which, ("chromium", "chromium-browser", "google-chrome"))), None)


def deadlock():
    first, second = threading.Lock(), threading.Lock()

    def one():
        with first:
            with second:
                pass

    def two():
        with second:
            with first:
                pass

    workers = [threading.Thread(target=one, name="<one>"), threading.Thread(target=two, name="two")]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()


@pytest.fixture(scope="module")
def deadlock_failure():
    failure = detsched.explore(deadlock, runs=500).failure
    assert failure is not None and failure.kind == "deadlock"
    return failure


def page_of(failure) -> str:
    return html.render(failure.trace, title="deadlock", outcome=f"{failure.kind}: {failure.message}", failure=failure,
                       replay=failure.replay_command)


def edges_of(page: str) -> list:
    return json.loads(re.search(r"const EDGES = (\[.*?\]);", page).group(1))


def test_a_column_per_thread_and_the_blocked_steps_highlighted(deadlock_failure):
    page = page_of(deadlock_failure)
    assert re.findall(r"<th title=\"([^\"]+)\">", page) == ["T0 MainThread", "T1 &lt;one&gt;", "T2 two"]
    assert "<one>" not in page  # every text is escaped
    blocked = [i for i, step in enumerate(deadlock_failure.trace) if step.note == "blocked"]
    assert len(blocked) == 2
    for row in blocked:
        assert re.search(rf'<div id="s{row}" class="step[^"]* blocked failing"', page)
    assert deadlock_failure.replay_command.replace("'", "&#x27;") in page


def test_the_wait_for_cycle_and_the_hand_overs_are_arrows(deadlock_failure):
    trace = deadlock_failure.trace
    edges = edges_of(page_of(deadlock_failure))
    waits = [(trace[a].tid, trace[b].tid, trace[b].op) for a, b, kind in edges if kind == "waits-for"]
    # Each blocked thread points at the step where the other took the lock it waits for: the cycle.
    assert sorted(waits) == [(1, 2, trace[next(i for i, s in enumerate(trace) if s.tid == 2 and s.op.startswith("acquire"))].op),
                             (2, 1, trace[next(i for i, s in enumerate(trace) if s.tid == 1 and s.op.startswith("acquire"))].op)]
    starts = [(trace[a].op, trace[b].tid) for a, b, kind in edges if kind == "start"]
    assert starts == [("start thread '<one>'", 1), ("start thread 'two'", 2)]


def test_the_page_needs_nothing_from_outside(deadlock_failure):
    page = page_of(deadlock_failure)
    assert not re.search(r"<(link|img|iframe)\b|\bsrc=|@import|url\(http", page)
    assert set(re.findall(r"https?://[^\s\"'<>]+", page)) == {"http://www.w3.org/2000/svg"}  # a namespace, not a fetch


def long_runner():
    box = [0]

    def busy():
        for _ in range(30):
            box[0] += 1

    worker = threading.Thread(target=busy)
    worker.start()
    worker.join()


def default_trace(target) -> tuple:
    """The trace of ``target``'s run under the default policy (it passes)."""
    resolved, seed, limits, points = _prepare(target, 1)
    result = warm_up(resolved, limits, points)
    schedule = schedule_of(Schedule(fingerprint(resolved.name), "dfs", seed, 0, 0, (), points), result)
    failure, trace = replay_traced(target, schedule.dumps())
    assert failure is None
    return trace


def test_a_long_run_of_one_thread_is_folded_but_never_its_failing_step():
    trace = default_trace(long_runner)
    page = html.render(trace, title="long", outcome="passed")
    folds = [int(n) for n in re.findall(r"<summary>(\d+) more steps of T1</summary>", page)]
    longest = max(len(run) for run in _runs_of(trace) if run[0].tid == 1)
    assert folds == [longest - 2 * html.FOLD_KEEP]
    # Taking a step in the middle of that run for the failing one keeps the whole run unfolded.
    middle = next(i for i, step in enumerate(trace) if step.tid == 1) + longest // 2
    rows = html._rows(trace, sorted({s.tid for s in trace}), {middle})
    assert not any("<details" in row for row in rows)
    assert any(f'id="s{middle}" class="step failing"' in row for row in rows)


def _runs_of(trace):
    group, groups = [], []
    for step in trace:
        if group and group[-1].tid != step.tid:
            groups.append(group)
            group = []
        group.append(step)
    return groups + [group]


def many_threads():
    lock = threading.Lock()

    def work():
        with lock:
            pass

    workers = [threading.Thread(target=work) for _ in range(29)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()


def test_thirty_threads_get_thirty_narrow_columns():
    page = html.render(default_trace(many_threads), title="many", outcome="passed")
    assert len(re.findall(r"<th title=", page)) == 30
    assert 'class="timeline narrow"' in page


# ----------------------------------------------------------------- command line and plugin

PROGRAM = '''
import threading

def main():
    first, second = threading.Lock(), threading.Lock()
    def one():
        with first:
            with second:
                pass
    def two():
        with second:
            with first:
                pass
    workers = [threading.Thread(target=one), threading.Thread(target=two)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
'''


def found_schedule(target: str, capsys) -> str:
    assert main(["run", target]) == 1
    return re.search(r"--schedule '(ds3:[^']+)'", capsys.readouterr().out).group(1)


def test_show_writes_the_page(tmp_path, capsys):
    program = tmp_path / "prog.py"
    program.write_text(PROGRAM)
    target = f"{program}::main"
    schedule = found_schedule(target, capsys)
    page = tmp_path / "timeline.html"
    assert main(["show", target, "--schedule", schedule, "--html", str(page)]) == 1
    assert f"timeline written to {page}" in capsys.readouterr().out
    text = page.read_text()
    assert "deadlock: T1 waits for" in text and "with second:" in text  # a source line, shown on hover
    assert main(["show", target, "--schedule", schedule, "--html", str(tmp_path / "no" / "t.html")]) == 2
    assert "--html" in capsys.readouterr().err


@pytest.fixture
def pytester(pytester, monkeypatch):
    monkeypatch.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")  # see tests/test_plugin.py
    return pytester


def test_the_plugin_links_a_page_per_failure(pytester):
    pytester.makepyfile(test_dl=PROGRAM.replace("def main():", "import pytest\n\n@pytest.mark.detsched(runs=200)\n"
                                                              "def test_deadlock():"))
    result = pytester.runpytest(*PLUGIN, "--detsched-html=pages")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["HTML timeline: pages*test_dl.py_test_deadlock.html"])
    page = (pytester.path / "pages" / "test_dl.py_test_deadlock.html").read_text()
    assert "Replay with" not in page and "--detsched-replay=" in page


@pytest.mark.skipif(BROWSER is None, reason="no headless browser (chromium) installed")
def test_the_page_renders_in_a_real_browser(deadlock_failure, tmp_path):
    page = tmp_path / "deadlock.html"
    page.write_text(page_of(deadlock_failure))
    browser = [BROWSER, "--headless", "--no-sandbox", "--disable-gpu", "--window-size=1300,800"]
    dom = subprocess.run([*browser, "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120).stdout
    drawable = [edge for edge in edges_of(page.read_text()) if edge[0] != edge[1]]
    assert len(re.findall(r'<line [^>]*class="edge ', dom)) == len(drawable)  # every arrow drawn by the page's script
    assert len(re.findall(r'class="edge waits-for"', dom)) == 2
    assert len(re.findall(r'<th title="T\d', dom)) == 3 and "step blocked failing" in dom
    shot = tmp_path / "deadlock.png"
    subprocess.run([*browser, f"--screenshot={shot}", page.as_uri()], capture_output=True, timeout=120)
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 10_000
