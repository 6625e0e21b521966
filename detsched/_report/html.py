"""A run's interleaving as one self-contained HTML page: a column per thread, a row per step, the
preemptions marked, the failing steps highlighted, and arrows for what ordered the threads
(release -> acquire, put -> get, set -> wait, start -> first step, last step -> join) and, for a
deadlock, who waits for whom. Built from the recorded trace of the run (``TraceStep``) and its
``Failure``; no external assets, no network, so the file can be mailed or kept as a CI artefact.

Long runs stay readable: a thread's run of more than ``FOLD_AFTER`` consecutive steps shows its
first and last steps and folds the rest into a row that opens on a click (a checkbox unfolds all).
"""

from __future__ import annotations

import html
import json
import linecache
import os
import sys

from detsched._core.ops import TraceStep
from detsched._report.timeline import plural

#: Consecutive steps of one thread shown before the rest of its run is folded.
FOLD_AFTER = 8
#: Steps kept visible at each end of a folded run.
FOLD_KEEP = 3
#: Operations that hand something to another thread, and those that receive it.
_PUBLISH = frozenset({"release", "put", "set", "notify", "notify_all", "task_done", "submit", "arrive", "shutdown"})
_RECEIVE = frozenset({"acquire", "reacquire", "get", "wait", "join", "wait-for-work"})


def render(trace: tuple[TraceStep, ...], *, title: str, outcome: str, failure=None, replay: str = "") -> str:
    """The page for ``trace``; ``outcome`` is its one-line verdict, ``failure`` the ``Failure`` (or None)."""
    tids = sorted({step.tid for step in trace})
    names = {step.tid: f"T{step.tid} {step.thread}" for step in trace}
    failing = _failing_rows(trace, failure)
    edges = _edges(trace)
    preemptions = sum(1 for step in trace if step.note.startswith("preempts"))
    rows = "\n".join(_rows(trace, tids, failing))
    narrow = " narrow" if len(tids) > 8 else ""
    header = "".join(f'<th title="{_e(names[tid])}">{_e(names[tid])}</th>' for tid in tids)
    details = ""
    if failure is not None:
        details = f'<details class="text"><summary>{_e(failure.kind)} details</summary><pre>{_e(failure.details)}</pre></details>'
        if getattr(failure, "reachable_on", ""):
            details = f'<p class="reach">{_e(failure.reachable_on)}</p>' + details
    replay_line = f'<p class="replay"><code>{_e(replay)}</code></p>' if replay else ""
    summary = (f"{plural(len(tids), 'thread')}, {plural(len(trace), 'step')}, "
               f"{plural(preemptions, 'preemption')}, {plural(len(edges), 'ordering edge')}")
    return _PAGE.format(
        title=_e(title), outcome=_e(outcome), outcome_class="failed" if failure is not None else "passed",
        replay=replay_line, details=details, summary=_e(summary), header=header, rows=rows, narrow=narrow,
        edges=json.dumps(edges), fold_checked="" if len(trace) > 200 else " checked")


def write_page(path: str, trace: tuple[TraceStep, ...], **page) -> None:
    """Write ``render(trace, **page)`` to ``path`` (``OSError`` if it cannot be written)."""
    text = render(trace, **page)
    with open(path, "w", encoding="utf-8") as out:
        out.write(text)


def _e(text: str) -> str:
    return html.escape(str(text), quote=True)


def _failing_rows(trace, failure) -> set[int]:
    """Rows to highlight: what never completed (a deadlock's, a leak's blocked threads), else the
    failing thread's last step."""
    if failure is None:
        return set()
    blocked = {i for i, step in enumerate(trace) if step.note == "blocked"}
    if blocked:
        return blocked
    tid = failure.thread.partition(" ")[0][1:]
    if tid.isdigit():
        last = [i for i, step in enumerate(trace) if step.tid == int(tid)]
        if last:
            return {last[-1]}
    return {len(trace) - 1} if trace else set()


def _edges(trace) -> list[list]:
    """(from row, to row, kind) of what ordered two threads: a hand-over on one object from the
    thread that last published on it to one that received it, a thread's start to its first step,
    a thread's last step to its join, and a blocked thread to the holder of what it waits for."""
    edges: list[list] = []
    published: dict[str, tuple[int, int]] = {}  # object -> (row, thread) of its latest publish
    holder: dict[str, tuple[int, int]] = {}  # lock -> (row, thread) of the acquire not yet released
    started: dict[str, list[int]] = {}  # thread name -> rows of starts not yet begun
    first_row: dict[int, int] = {}
    last_row: dict[int, int] = {}
    by_name: dict[str, list[int]] = {}
    blocked_row: dict[int, int] = {}
    for i, step in enumerate(trace):
        kind, _, what = step.op.partition(" ")
        if step.tid not in first_row:
            first_row[step.tid] = i
            by_name.setdefault(step.thread, []).append(step.tid)
            starts = started.get(step.thread)
            if starts:
                edges.append([starts.pop(0), i, "start"])
        if step.note == "blocked":
            blocked_row[step.tid] = i
            continue
        last_row[step.tid] = i
        if what.startswith("thread "):
            name = what[len("thread '"):-1]
            if kind == "start":
                started.setdefault(name, []).append(i)
            elif kind == "join":
                for tid in by_name.get(name, ()):
                    if tid in last_row and last_row[tid] < i:
                        edges.append([last_row[tid], i, "join"])
            continue
        if not step.obj:
            continue
        if kind in _RECEIVE:
            source = published.get(step.obj)
            if source is not None and source[1] != step.tid:
                edges.append([source[0], i, "order"])
                published.pop(step.obj)
            if kind in ("acquire", "reacquire"):
                holder[step.obj] = (i, step.tid)
        elif kind in _PUBLISH:
            published[step.obj] = (i, step.tid)
            if kind == "release":
                holder.pop(step.obj, None)
    for tid, row in blocked_row.items():  # a deadlock's (or a leak's) wait-for edges
        obj = trace[row].obj
        held = holder.get(obj)
        if held is not None and held[1] != tid:
            edges.append([row, held[0], "waits-for"])  # to where the holder took it
    return edges


def _loaded_files() -> dict[str, list[str]]:
    """The files of the loaded modules by basename (the ``file.py`` of a step's ``where``)."""
    files: dict[str, set[str]] = {}
    for module in list(sys.modules.values()):
        path = getattr(module, "__file__", None)
        if isinstance(path, str):
            files.setdefault(os.path.basename(path), set()).add(path)
    return {name: sorted(paths) for name, paths in files.items()}


def _source_line(where: str, files: dict[str, list[str]]) -> str:
    """The source line at ``file.py:LINE``, looked up in the loaded modules' files of that name."""
    name, _, line = where.rpartition(":")
    if not line.isdigit():
        return ""
    for path in files.get(name, ()):
        text = linecache.getline(path, int(line)).strip()
        if text:
            return text
    return ""


def _cell(i: int, step: TraceStep, failing: set[int], files: dict[str, list[str]]) -> str:
    kind, _, rest = step.op.partition(" ")
    classes = ["step"]
    if step.note.startswith("preempts"):
        classes.append("preempt")
    if step.note == "blocked":
        classes.append("blocked")
    if i in failing:
        classes.append("failing")
    source = _source_line(step.where, files) if step.where else ""
    tip = f"{step.where}: {source}" if source else step.where
    note = f' <span class="note">{_e(step.note)}</span>' if step.note else ""
    store = f' <span class="note">at {_e(step.preempted_at_store)}</span>' if step.preempted_at_store else ""
    where = f' <span class="where">{_e(step.where)}</span>' if step.where else ""
    return (f'<div id="s{i}" class="{" ".join(classes)}" title="{_e(tip)}"><b>{_e(kind)}</b> {_e(rest)}'
            f'{where}{note}{store}</div>')


def _rows(trace, tids: list[int], failing: set[int]) -> list[str]:
    """Table rows: one per step, a thread's long runs of steps folded in the middle."""
    column = {tid: n for n, tid in enumerate(tids)}
    files = _loaded_files()
    rows: list[str] = []

    def row(first: int, tid: int, body: str, extra: str = "") -> str:
        cells = ["<td></td>"] * len(tids)
        cells[column[tid]] = f"<td>{body}</td>"
        return f'<tr{extra}><th class="n">{trace[first].step}</th>{"".join(cells)}</tr>'

    i = 0
    while i < len(trace):
        end = i
        while end + 1 < len(trace) and trace[end + 1].tid == trace[i].tid:
            end += 1
        run = list(range(i, end + 1))
        hidden = run[FOLD_KEEP:-FOLD_KEEP] if len(run) > FOLD_AFTER else []
        if any(r in failing for r in hidden):
            hidden = []  # never fold away what failed
        for r in run:
            if hidden and r == hidden[0]:
                inner = "".join(_cell(h, trace[h], failing, files) for h in hidden)
                rows.append(row(r, trace[r].tid, f'<details class="fold"><summary>{len(hidden)} more steps of '
                                                 f'T{trace[r].tid}</summary>{inner}</details>', ' class="folded"'))
            elif not hidden or r not in hidden:
                rows.append(row(r, trace[r].tid, _cell(r, trace[r], failing, files)))
        i = end + 1
    return rows


_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>detsched: {title}</title>
<style>
body {{ font: 14px/1.35 system-ui, sans-serif; margin: 1.2em; color: #1b1b1b; }}
h1 {{ font-size: 1.25em; margin: 0 0 .3em; }}
.outcome.failed {{ color: #a40e26; font-weight: 600; }} .outcome.passed {{ color: #1a7f37; font-weight: 600; }}
.replay code, pre {{ background: #f4f4f4; padding: .2em .4em; }} pre {{ overflow: auto; max-height: 24em; }}
.controls {{ margin: .6em 0; color: #555; }}
.scroll {{ position: relative; overflow: auto; max-height: 80vh; border: 1px solid #ddd; }}
table {{ border-collapse: collapse; position: relative; }}
thead th {{ position: sticky; top: 0; background: #fafafa; z-index: 2; border-bottom: 1px solid #ccc;
  padding: .3em .5em; text-align: left; white-space: nowrap; }}
th.n {{ position: sticky; left: 0; background: #fafafa; color: #777; font-weight: normal; text-align: right;
  padding: 0 .5em; z-index: 1; }}
td {{ padding: 1px 6px; vertical-align: top; min-width: 12em; border-left: 1px solid #eee; }}
details.fold .step {{ display: block; }}
.narrow td {{ min-width: 8em; max-width: 14em; }}
.narrow .step {{ display: block; overflow: hidden; text-overflow: ellipsis; }}
.step {{ display: inline-block; white-space: nowrap; padding: 1px 4px; border-radius: 3px; }}
.step .where {{ color: #666; font-size: .9em; }} .step .note {{ color: #8250df; font-size: .9em; }}
.step.preempt {{ border-left: 4px solid #bf8700; }}
.step.blocked {{ background: #fff1e5; }}
.step.failing {{ background: #ffebe9; outline: 2px solid #cf222e; }}
details.fold summary {{ color: #0969da; cursor: pointer; }}
svg.edges {{ position: absolute; left: 0; top: 0; pointer-events: none; z-index: 1; }}
.legend span {{ margin-right: 1.2em; }}
</style></head>
<body>
<h1>{title}</h1>
<p class="outcome {outcome_class}">{outcome}</p>
{replay}
{details}
<p class="controls">{summary}. <label><input type="checkbox" id="fold"{fold_checked}> show every step</label>
<span class="legend"><span style="color:#bf8700">&#9646; preemption</span><span style="color:#0969da">&rarr; ordered by a
hand-over</span><span style="color:#cf222e">&rarr; waits for</span></span></p>
<div class="scroll" id="scroll"><table id="timeline" class="timeline{narrow}">
<thead><tr><th class="n">step</th>{header}</tr></thead>
<tbody>
{rows}
</tbody></table></div>
<script>
const EDGES = {edges};
const COLOURS = {{order: "#0969da", start: "#57606a", join: "#57606a", "waits-for": "#cf222e"}};
function anchor(row) {{
  let el = document.getElementById("s" + row);
  if (!el) return null;
  if (el.offsetParent === null) {{ const fold = el.closest("details"); el = fold ? fold.querySelector("summary") : el; }}
  return el;
}}
function draw() {{
  const box = document.getElementById("scroll"), table = document.getElementById("timeline");
  let svg = document.getElementById("edges");
  if (svg) svg.remove();
  svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
  svg.id = "edges"; svg.setAttribute("class", "edges");
  svg.setAttribute("width", table.scrollWidth); svg.setAttribute("height", table.scrollHeight);
  let defs = "";
  for (const [kind, colour] of Object.entries(COLOURS))
    defs += `<marker id="head-${{kind}}" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse"><path d="M0,0L10,5L0,10z" fill="${{colour}}"/></marker>`;
  svg.innerHTML = `<defs>${{defs}}</defs>`;
  const origin = table.getBoundingClientRect();
  for (const [from, to, kind] of EDGES) {{
    const a = anchor(from), b = anchor(to);
    if (!a || !b || a === b) continue;
    const ra = a.getBoundingClientRect(), rb = b.getBoundingClientRect();
    const x1 = (ra.left < rb.left ? ra.right : ra.left) - origin.left, y1 = ra.top + ra.height / 2 - origin.top;
    const x2 = (ra.left < rb.left ? rb.left : rb.right) - origin.left, y2 = rb.top + rb.height / 2 - origin.top;
    const line = document.createElementNS("http://www.w3.org/2000/svg", "line");
    line.setAttribute("x1", x1); line.setAttribute("y1", y1); line.setAttribute("x2", x2); line.setAttribute("y2", y2);
    line.setAttribute("stroke", COLOURS[kind]); line.setAttribute("stroke-width", kind === "waits-for" ? 2.5 : 1.4);
    if (kind === "start" || kind === "join") line.setAttribute("stroke-dasharray", "4 3");
    line.setAttribute("marker-end", `url(#head-${{kind}})`);
    line.setAttribute("class", "edge " + kind);
    svg.appendChild(line);
  }}
  table.parentNode.insertBefore(svg, table);
  box.style.position = "relative";
}}
function unfold(all) {{ for (const d of document.querySelectorAll("details.fold")) d.open = all; draw(); }}
document.getElementById("fold").addEventListener("change", e => unfold(e.target.checked));
for (const d of document.querySelectorAll("details.fold")) d.addEventListener("toggle", draw);
window.addEventListener("resize", draw);
unfold(document.getElementById("fold").checked);
const failing = document.querySelector(".step.failing"), box = document.getElementById("scroll");
if (failing) box.scrollTop = failing.getBoundingClientRect().top - box.getBoundingClientRect().top - box.clientHeight / 2;
</script>
</body></html>
"""
