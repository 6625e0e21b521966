"""Instrumentation by rewriting user functions: a scheduling point at the entry of every function
and lambda, before every store to an attribute, an item or a global, and at the back-edges of loops
over shared state.

Free-threaded CPython can switch threads anywhere, and even with the GIL a read-modify-write such as
``x = self.balance`` ... ``self.balance = x - amount`` loses updates when a thread switch falls in
between. Scheduling points at stores make every such window explorable: the read happens in one
step, the write in a later one, and other threads can run in between. A statement that reads and
writes in one go (``self.count += 1``, ``self.total = self.total + n``) is split so that the value is
computed first and stored after the point. Loops that walk a shared container, or poll shared
state in their condition, get the switch CPython makes at a loop's back-edge.

Functions keep their file and line numbers (tracebacks, coverage and locations are unchanged); the
rewritten code objects are swapped into the functions of user modules for the duration of a run and
the originals put back afterwards, so modules imported before detsched are covered too. Generated
names start with ``@ds_``, which no user name can collide with.
"""

from __future__ import annotations

import ast
import collections
import builtins
import sys
import types

from detsched._core.frames import may_switch_in
from detsched._core.ops import Op, current
from detsched._instrument import accesses

POINT = "@ds_point"
ITERATE = "@ds_iterate"
SPIN = "@ds_spin"
CALL = "@ds_call"
_TEMP = "@ds_value"


def store_point(description: str) -> None:
    """The scheduling point rewritten code runs before a store (a no-op outside a run)."""
    me = current()
    if me is not None and may_switch_in(sys._getframe(1)):
        me.sched.wait(me, Op(description))


def call_point(description: str) -> None:
    """The scheduling point at the entry of a rewritten function, where CPython's GIL switches
    threads (a no-op outside a run). Not taken when detsched itself or a library called the function
    (``may_switch_in`` of the caller), so primitives stay atomic."""
    me = current()
    if me is not None:
        entered = sys._getframe(1)
        if may_switch_in(entered.f_back, entered):
            me.sched.wait(me, Op(description))


def _shared(target: ast.expr, shared_names: set[str]) -> bool:
    if isinstance(target, (ast.Attribute, ast.Subscript)):
        return True
    if isinstance(target, ast.Name):
        return target.id in shared_names
    if isinstance(target, (ast.Tuple, ast.List)):
        return any(_shared(element, shared_names) for element in target.elts)
    if isinstance(target, ast.Starred):
        return _shared(target.value, shared_names)
    return False


def _call(helper: str, description: str) -> ast.Call:
    """``helper("description")``: the call rewritten code makes to take a point."""
    return ast.Call(ast.Name(helper, ast.Load()), [ast.Constant(description)], [])


def _point(node: ast.stmt, target: ast.expr) -> ast.stmt:
    return ast.copy_location(ast.Expr(_call(POINT, f"store {ast.unparse(target)[:60]}")), node)


class _StoreRewriter(ast.NodeTransformer):
    """Rewrites the statements of function bodies; module and class bodies run at import only."""

    def __init__(self):
        self.shared_names: list[set[str]] = [set()]

    def _function(self, node):
        declared = {name for stmt in ast.walk(node) if isinstance(stmt, (ast.Global, ast.Nonlocal))
                    for name in stmt.names}
        self.shared_names.append(declared)
        node.body = self._statements(node.body)
        self.shared_names.pop()
        if isinstance(node, ast.FunctionDef):  # async loops interleave through the event loop instead
            wrapper = _IterationWrapper(accesses.local_names(node) - declared)
            node.body = [wrapper.visit(stmt) for stmt in node.body]
        return node

    visit_FunctionDef = visit_AsyncFunctionDef = _function

    def visit_ClassDef(self, node):
        self.generic_visit(node)
        return node

    def _statements(self, body: list[ast.stmt]) -> list[ast.stmt]:
        out: list[ast.stmt] = []
        for stmt in body:
            out.extend(self._statement(stmt))
        return out

    def _statement(self, stmt: ast.stmt) -> list[ast.stmt]:
        if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            # A nested scope is rewritten once, by its own visit; rewriting its body here as well
            # would give each of its stores a point per level of nesting.
            return [self.visit(stmt)]
        shared = self.shared_names[-1]
        for field in ("body", "orelse", "finalbody"):
            block = getattr(stmt, field, None)
            if isinstance(block, list) and block and isinstance(block[0], ast.stmt):
                setattr(stmt, field, self._statements(block))
        if isinstance(stmt, ast.Try) or type(stmt).__name__ == "TryStar":
            for handler in stmt.handlers:
                handler.body = self._statements(handler.body)
        if type(stmt).__name__ == "Match":
            for case in stmt.cases:
                case.body = self._statements(case.body)
        if isinstance(stmt, ast.Assign) and any(_shared(t, shared) for t in stmt.targets):
            return self._split(stmt, stmt.value, lambda value: ast.Assign(stmt.targets, value), stmt.targets[0])
        if isinstance(stmt, ast.AnnAssign) and stmt.value is not None and _shared(stmt.target, shared):
            return self._split(stmt, stmt.value, lambda value: ast.Assign([stmt.target], value), stmt.target)
        if isinstance(stmt, ast.AugAssign) and _shared(stmt.target, shared):
            return self._split_augmented(stmt)
        if isinstance(stmt, ast.Delete) and any(_shared(t, shared) for t in stmt.targets):
            return [_point(stmt, stmt.targets[0]), stmt]
        return [stmt]

    def _split(self, stmt, value, make_store, target) -> list[ast.stmt]:
        """``target = value`` becomes: compute value; scheduling point; store."""
        compute = ast.copy_location(ast.Assign([ast.Name(_TEMP, ast.Store())], value), stmt)
        store = ast.copy_location(make_store(ast.Name(_TEMP, ast.Load())), stmt)
        return [compute, _point(stmt, target), store]

    def _split_augmented(self, stmt: ast.AugAssign) -> list[ast.stmt]:
        """``a.b += v`` becomes: o = a; t = o.b; t += v; point; o.b = t (``a`` evaluated once)."""
        target = stmt.target
        before: list[ast.stmt] = []

        def hold(name: str, expr: ast.expr) -> ast.Name:
            before.append(ast.copy_location(ast.Assign([ast.Name(name, ast.Store())], expr), stmt))
            return ast.Name(name, ast.Load())

        if isinstance(target, ast.Attribute):
            owner = hold("@ds_owner", target.value)
            load = ast.Attribute(owner, target.attr, ast.Load())
            store = ast.Attribute(owner, target.attr, ast.Store())
        elif isinstance(target, ast.Subscript):
            owner = hold("@ds_owner", target.value)
            key = hold("@ds_key", target.slice)
            load = ast.Subscript(owner, key, ast.Load())
            store = ast.Subscript(owner, key, ast.Store())
        else:  # a global or nonlocal name
            load, store = ast.Name(target.id, ast.Load()), ast.Name(target.id, ast.Store())
        steps = before + [
            ast.Assign([ast.Name(_TEMP, ast.Store())], load),
            ast.AugAssign(ast.Name(_TEMP, ast.Store()), stmt.op, stmt.value),
            _point(stmt, target),
            ast.Assign([store], ast.Name(_TEMP, ast.Load())),
        ]
        return [ast.copy_location(s, stmt) for s in steps]


_BUILTINS = frozenset(dir(builtins))


class _IterationWrapper(ast.NodeTransformer):
    """Gives loops the thread switches CPython makes at their back-edges, where another thread may
    change what the loop looks at: ``for`` loops and comprehensions that walk a shared container
    (``self.items``, ``registry``, ``table[key]``; not a local name or a call such as ``range(n)``)
    take a point before each next item, and ``while`` loops whose condition reads shared state take
    one per iteration, as a poll."""

    def __init__(self, local_names: set[str]):
        self.local_names = local_names

    def _reads_shared(self, node: ast.expr) -> bool:
        if isinstance(node, (ast.Attribute, ast.Subscript)):
            return True
        return isinstance(node, ast.Name) and node.id not in self.local_names

    def _wrap(self, node: ast.expr) -> ast.expr:
        if not self._reads_shared(node):
            return node
        return ast.copy_location(ast.Call(ast.Name(ITERATE, ast.Load()), [node], []), node)

    def visit_For(self, node):
        self.generic_visit(node)
        node.iter = self._wrap(node.iter)
        return node

    def visit_While(self, node):
        """A ``while`` loop whose condition reads shared state polls it: each iteration is a point
        at which the thread gives way, so a spin-wait on a plain flag sees the flag change."""
        self.generic_visit(node)
        if any(self._reads_shared(n) for n in ast.walk(node.test)
               if not (isinstance(n, ast.Name) and n.id in _BUILTINS)):
            text = ast.unparse(node.test)[:60]
            poll = ast.Expr(_call(SPIN, f"poll {text}"))
            node.body.insert(0, ast.copy_location(poll, node))
        return node

    def visit_comprehension(self, node):
        self.generic_visit(node)
        node.iter = self._wrap(node.iter)
        return node

    def _leave_alone(self, node):
        return node  # nested scopes get their own pass

    visit_FunctionDef = visit_AsyncFunctionDef = visit_ClassDef = visit_Lambda = _leave_alone


def spin_point(description: str) -> None:
    """The point at the top of a ``while`` loop polling shared state: a spinning thread gives way."""
    me = current()
    if me is None or not may_switch_in(sys._getframe(1)):
        return
    # Only a loop whose last iteration reached no other scheduling point is spinning: it gives way
    # and lets time pass. A loop that waits or works in its body is just taking a step -- unless
    # what it reached was the same failed poll again (``while not event.is_set(): pass``), which
    # spins as much.
    me.spinning = me.spinning or me.last_poll == (description, me.ops)
    me.sched.wait(me, Op(description))
    me.last_poll = (description, me.ops)


def iterate_with_points(iterable):
    """What rewritten loops iterate: outside a run, the plain iterator; inside, the same items with
    a scheduling point before each step to the next one."""
    iterator = iter(iterable)
    me = current()
    if me is None:
        return iterator
    return _stepwise(me, iterator, f"next item of {type(iterable).__name__}")


def _stepwise(me, iterator, description: str):
    for item in iterator:
        yield item
        if may_switch_in(sys._getframe(1)):  # the loop that asked for the next item
            me.sched.wait(me, Op(description))


class _CallPoints(accesses.ScopedTransformer):
    """A call point at the entry of every function and lambda, named by its qualified name as
    ``co_qualname`` has it (``Bank.balance``, ``main.<locals>.worker``). Generators, coroutines and
    comprehensions get none: their entry differs between Python versions and from a call's."""

    def _named(self, name: str) -> str:
        return f"call {self.qualname(name)}()"

    def visit_ClassDef(self, node):
        self.enter(node, [node.name])
        return node

    def visit_FunctionDef(self, node):
        description = self._named(node.name)
        self.enter(node, [node.name, "<locals>"])
        if not _is_generator(node):
            docstring = (isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant)
                         and isinstance(node.body[0].value.value, str))
            at = 1 if docstring else 0
            # On the line of the statement it precedes: a debugger or a line tracer sees no line
            # event that the plain function has not.
            point = ast.copy_location(ast.Expr(_call(CALL, description)), node.body[min(at, len(node.body) - 1)])
            node.body.insert(at, point)
        return node

    def visit_AsyncFunctionDef(self, node):
        self.enter(node, [node.name, "<locals>"])
        return node

    def visit_Lambda(self, node):
        description = self._named("<lambda>")
        self.enter(node, ["<lambda>", "<locals>"])
        # ``lambda: body`` becomes ``lambda: (@ds_call(...), body)[1]``: the same value, a point first.
        pair = ast.Tuple([_call(CALL, description), node.body], ast.Load())
        node.body = ast.copy_location(ast.Subscript(pair, ast.Constant(1), ast.Load()), node.body)
        return node

    def _comprehension(self, node):
        name = {ast.ListComp: "<listcomp>", ast.SetComp: "<setcomp>", ast.DictComp: "<dictcomp>",
                ast.GeneratorExp: "<genexpr>"}[type(node)]
        self.enter(node, [name, "<locals>"])
        return node

    visit_ListComp = visit_SetComp = visit_DictComp = visit_GeneratorExp = _comprehension


def _is_generator(function: ast.FunctionDef) -> bool:
    """Whether ``function`` itself (not a function nested in it) yields."""
    pending = list(function.body)
    while pending:
        node = pending.pop()
        if isinstance(node, (ast.Yield, ast.YieldFrom)):
            return True
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda)):
            pending.extend(ast.iter_child_nodes(node))
    return False


def rewrites_asserts(loader) -> bool:
    """Whether ``loader`` is pytest's, which rewrites a test module's asserts as it loads it."""
    return type(loader).__module__ == "_pytest.assertion.rewrite"


def rewrite_module(source: str, filename: str, loader=None, points: bool = True,
                   accesses_checked: bool = False) -> types.CodeType:
    """Compile ``source`` with store points and call points in every function (without them when
    ``points`` is false: the module as its loader compiled it), and with ``accesses_checked`` the
    reports of its memory accesses for the race detector. A module pytest loaded with its
    assertion rewriting gets that rewriting too, so failed asserts keep their explanations."""
    tree = ast.parse(source, filename)
    asserts_rewritten = rewrites_asserts(loader)
    if asserts_rewritten:
        from _pytest.assertion.rewrite import rewrite_asserts

        rewrite_asserts(tree, source.encode(), filename, getattr(loader, "config", None))
    if not points:
        return compile(tree, filename, "exec", dont_inherit=True)
    tree = _StoreRewriter().visit(tree)
    if accesses_checked:
        tree = accesses.AccessRecorder(filename, tree).visit(tree)
    tree = _CallPoints().visit(tree)
    ast.fix_missing_locations(tree)
    if asserts_rewritten:
        for node in ast.walk(tree):  # nodes pytest made can end before they start once ours are added
            if getattr(node, "end_lineno", None) is not None and node.end_lineno < node.lineno:
                node.end_lineno, node.end_col_offset = node.lineno, node.col_offset
    return compile(tree, filename, "exec", dont_inherit=True)


def code_objects(code: types.CodeType) -> dict[tuple[str, int], list[types.CodeType]]:
    """Every function code object inside ``code``, keyed by (name, first line), each key's code
    objects in source order. Rewriting adds no function, so the n-th code object of a key in the
    rewritten module is the n-th in the module as its loader compiled it: two lambdas on one line
    are told apart by position."""
    found: dict[tuple[str, int], list[types.CodeType]] = {}
    pending = collections.deque([code])
    while pending:
        current_code = pending.popleft()
        for const in current_code.co_consts:
            if isinstance(const, types.CodeType):
                found.setdefault((const.co_name, const.co_firstlineno), []).append(const)
                pending.append(const)
    return found


def _no_point(description: str) -> None:
    """A point that a run's options turned off."""


def helpers(points, report_accesses: bool = False) -> dict[str, object]:
    """The names rewritten code calls, to be put in the globals of every rewritten module for a run
    with ``points`` (``schedule.Points``): the points it turned off do nothing, and access reports
    pass on unless ``report_accesses``."""
    writes = points.writes
    return {POINT: store_point if writes else _no_point, ITERATE: iterate_with_points if writes else iter,
            SPIN: spin_point if writes else _no_point, CALL: call_point if points.calls else _no_point,
            **accesses.helpers(report_accesses)}

