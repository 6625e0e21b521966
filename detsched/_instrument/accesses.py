"""Access recording for the race detector: the rewriting pass that makes user functions report
their reads and writes, and the helpers the rewritten code calls.

Which accesses are reported (``docs/races.md`` says the same for users):

- ``obj.attr`` loads, and stores and ``del`` of a single attribute target: read/write of
  (obj, attr). A method looked up on a builtin container (``items.append``, ``table.get``) is
  instead an *update* of the container (a mutating method) or a read of it (the others);
- ``c[key]`` loads, stores and ``del`` where ``key`` is a plain name, constant or attribute chain
  (so evaluating it twice changes nothing): read/write of (c, key), and of c as a member access;
- loads and stores of module globals that some function of the module declares ``global``;
- ``for x in c``, ``len(c)`` and ``x in c`` over anything that is not a local name: a read of the
  whole container;
- augmented assignment: the read and the write (the store rewriter has split it already).

Every helper returns what the plain code needs (the owner, so ``@ds_attr(obj, ...).attr`` still
does the load itself: tracebacks keep their frames), and does nothing outside a run or when the
run does not check races. Only code that a run checks is compiled with these calls, so runs
without race checking pay nothing for them.
"""

from __future__ import annotations

import _thread
import _threading_local
import ast
import builtins
import collections
import contextlib
import copy
import os
import sys
import types

from detsched._core.ops import FailureInfo, current
from detsched._detect import races as race_kinds
from detsched.errors import DetschedUsageError

READ_ATTRIBUTE = "@ds_attr"
WRITE_ATTRIBUTE = "@ds_set_attr"
READ_ITEM = "@ds_item"
WRITE_ITEM = "@ds_set_item"
READ_WHOLE = "@ds_whole"
READ_GLOBAL = "@ds_global"
WRITE_GLOBAL = "@ds_set_global"

#: Builtin containers whose methods run as one C call (atomic on GIL and free-threaded CPython).
_CONTAINERS = frozenset({list, dict, set, bytearray, collections.deque, collections.OrderedDict,
                         collections.defaultdict})
_MUTATORS = frozenset({
    "append", "appendleft", "extend", "extendleft", "insert", "pop", "popleft", "popitem", "remove",
    "clear", "sort", "reverse", "rotate", "update", "setdefault", "add", "discard", "difference_update",
    "intersection_update", "symmetric_difference_update", "move_to_end", "__setitem__", "__delitem__",
    "__iadd__", "__ior__",
})
_READERS = frozenset({
    "get", "keys", "values", "items", "copy", "index", "count", "issubset", "issuperset", "isdisjoint",
    "union", "intersection", "difference", "symmetric_difference", "__contains__", "__len__", "__iter__",
    "__getitem__",
})


# ---------------------------------------------------------------------- the rewriting pass

class ScopedTransformer(ast.NodeTransformer):
    """Knows the qualified name (as ``co_qualname`` has it) of the scope it is visiting."""

    def __init__(self):
        self.scopes: list[str] = []

    def qualname(self, name: str) -> str:
        return ".".join([*self.scopes, name])

    def enter(self, node, scope: list[str]):
        self.scopes.extend(scope)
        self.generic_visit(node)
        del self.scopes[len(self.scopes) - len(scope):]


class AccessRecorder(ScopedTransformer):
    """Adds the access reports listed in the module docstring to every function of a module."""

    def __init__(self, filename: str, tree: ast.Module):
        super().__init__()
        self.filename = os.path.basename(filename)
        #: Module globals some function rebinds: reads and writes of them are reported.
        self.shared_globals = {name for node in ast.walk(tree) if isinstance(node, ast.Global) for name in node.names}
        self.locals: list[set[str]] = []  # per enclosing function: its local names
        self.line = 0  # the line of the latest node that has one (nodes the store rewriter made have none)

    def visit(self, node):
        self.line = getattr(node, "lineno", None) or self.line
        return super().visit(node)

    # -- scopes

    def visit_ClassDef(self, node):
        self.enter(node, [node.name])
        return node

    def _function(self, node):
        declared = {name for stmt in ast.walk(node) if isinstance(stmt, (ast.Global, ast.Nonlocal))
                    for name in stmt.names}
        self.locals.append(local_names(node) - declared)
        self.enter(node, [node.name, "<locals>"])
        self.locals.pop()
        return node

    visit_FunctionDef = visit_AsyncFunctionDef = _function

    def visit_Lambda(self, node):
        arguments = node.args
        self.locals.append({a.arg for a in arguments.posonlyargs + arguments.args + arguments.kwonlyargs}
                           | {a.arg for a in (arguments.vararg, arguments.kwarg) if a is not None})
        self.enter(node, ["<lambda>", "<locals>"])
        self.locals.pop()
        return node

    def _site(self, node) -> ast.Constant:
        function = ".".join(self.scopes[:-1]) if self.scopes else "<module>"
        return ast.Constant(f"{self.filename}:{getattr(node, 'lineno', None) or self.line} in {function}()")

    def _in_function(self) -> bool:
        return bool(self.locals)

    # -- loads

    def visit_Attribute(self, node):
        self.generic_visit(node)
        if self._in_function() and isinstance(node.ctx, ast.Load):
            node.value = _helper(READ_ATTRIBUTE, node.value, ast.Constant(node.attr), self._site(node))
        return node

    def visit_Subscript(self, node):
        self.generic_visit(node)
        if self._in_function() and isinstance(node.ctx, ast.Load) and _pure(node.slice):
            node.value = _helper(READ_ITEM, node.value, copy.deepcopy(node.slice), self._site(node))
        return node

    def visit_Name(self, node):
        if (self._in_function() and isinstance(node.ctx, ast.Load) and node.id in self.shared_globals
                and node.id not in self.locals[-1]):
            # ``(@ds_global("NAME", site) or NAME)``: the helper returns None, then the plain load.
            report = _helper(READ_GLOBAL, ast.Constant(node.id), self._site(node))
            return ast.copy_location(ast.BoolOp(ast.Or(), [report, node]), node)
        return node

    def visit_Call(self, node):
        self.generic_visit(node)
        if (self._in_function() and isinstance(node.func, ast.Name) and node.func.id == "len"
                and len(node.args) == 1 and not node.keywords and self._shared(node.args[0])):
            node.args[0] = _helper(READ_WHOLE, node.args[0], self._site(node))
        return node

    def visit_Compare(self, node):
        self.generic_visit(node)
        if self._in_function():
            for index, (op, right) in enumerate(zip(node.ops, node.comparators)):
                if isinstance(op, (ast.In, ast.NotIn)) and self._shared(right):
                    node.comparators[index] = _helper(READ_WHOLE, right, self._site(node))
        return node

    # -- patterns: a ``case`` may name a class or a value only by a plain name or attribute
    # lookup, so those stay as they are (their reads are not reported); sub-patterns are visited.

    def visit_MatchValue(self, node):
        return node

    def visit_MatchClass(self, node):
        node.patterns = [self.visit(pattern) for pattern in node.patterns]
        node.kwd_patterns = [self.visit(pattern) for pattern in node.kwd_patterns]
        return node

    def visit_MatchMapping(self, node):
        node.patterns = [self.visit(pattern) for pattern in node.patterns]
        return node

    def visit_For(self, node):
        self.generic_visit(node)
        if self._in_function():
            # ``for x in @ds_iterate(c)`` (a loop point per item): the whole read goes inside.
            holder, field = (node.iter, "args") if _is_iterate_call(node.iter) else (node, "iter")
            target = holder.args[0] if field == "args" else node.iter
            if self._shared(target):
                wrapped = _helper(READ_WHOLE, target, self._site(node))
                if field == "args":
                    holder.args[0] = wrapped
                else:
                    node.iter = wrapped
        return node

    def _shared(self, node: ast.expr) -> bool:
        """An expression that may name shared state: not a local, a literal or a call's result."""
        if isinstance(node, (ast.Attribute, ast.Subscript)):
            return True
        return isinstance(node, ast.Name) and node.id not in self.locals[-1] and node.id not in _BUILTIN_NAMES

    # -- stores

    def _writes(self, targets: list[ast.expr], stmt) -> list[ast.stmt]:
        """The write reports to put just before ``stmt``, which stores to ``targets``."""
        reports = []
        for target in _flattened(targets):
            if isinstance(target, ast.Attribute) and _pure(target.value):
                call = _helper(WRITE_ATTRIBUTE, _loaded(target.value), ast.Constant(target.attr), self._site(stmt))
            elif isinstance(target, ast.Subscript) and _pure(target.value) and _pure(target.slice):
                call = _helper(WRITE_ITEM, _loaded(target.value), _loaded(target.slice), self._site(stmt))
            elif isinstance(target, ast.Name) and target.id in self.shared_globals and target.id not in self.locals[-1]:
                call = _helper(WRITE_GLOBAL, ast.Constant(target.id), self._site(stmt))
            else:
                continue
            reports.append(ast.copy_location(ast.Expr(call), stmt))
        return reports

    def _store(self, node, targets):
        if not self._in_function():
            self.generic_visit(node)
            return node
        reports = self._writes(targets, node)  # made from the targets before their loads are rewritten
        self.generic_visit(node)
        for report in reports:
            self.visit(report.value)  # the owner's own loads (``a.b`` of ``a.b.c = v``) are reads too
        return [*reports, node] if reports else node

    def visit_Assign(self, node):
        return self._store(node, node.targets)

    def visit_AnnAssign(self, node):
        return self._store(node, [node.target] if node.value is not None else [])

    def visit_Delete(self, node):
        return self._store(node, node.targets)

    def visit_AugAssign(self, node):  # a global's ``X += 1`` (attributes and items were split)
        return self._store(node, [node.target])


_BUILTIN_NAMES = frozenset(dir(builtins))


def _flattened(targets: list[ast.expr]) -> list[ast.expr]:
    """The single targets of ``a.x, b[k] = ...`` and ``*rest`` targets."""
    flat = []
    for target in targets:
        if isinstance(target, (ast.Tuple, ast.List)):
            flat.extend(_flattened(target.elts))
        elif isinstance(target, ast.Starred):
            flat.extend(_flattened([target.value]))
        else:
            flat.append(target)
    return flat


def _helper(name: str, *arguments: ast.expr) -> ast.Call:
    return ast.Call(ast.Name(name, ast.Load()), list(arguments), [])


def _is_iterate_call(node: ast.expr) -> bool:
    return (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "@ds_iterate"
            and len(node.args) == 1)


def _pure(node: ast.expr) -> bool:
    """An expression that evaluating again changes nothing and computes the same value: a name, a
    constant, or attributes and subscripts of those."""
    if isinstance(node, (ast.Name, ast.Constant)):
        return True
    if isinstance(node, ast.Attribute):
        return _pure(node.value)
    if isinstance(node, ast.Subscript):
        return _pure(node.value) and _pure(node.slice)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        return _pure(node.operand)
    if isinstance(node, ast.Tuple):
        return all(_pure(element) for element in node.elts)
    return False


def _loaded(node: ast.expr) -> ast.expr:
    """A copy of a store target's part, as a load."""
    loaded = copy.deepcopy(node)
    for child in ast.walk(loaded):
        if hasattr(child, "ctx"):
            child.ctx = ast.Load()
    return loaded


def local_names(function: ast.FunctionDef) -> set[str]:
    """Parameters and names the function assigns (its locals), not looking into nested scopes."""
    arguments = function.args
    names = {a.arg for a in arguments.posonlyargs + arguments.args + arguments.kwonlyargs}
    names |= {a.arg for a in (arguments.vararg, arguments.kwarg) if a is not None}
    pending = list(function.body)
    while pending:
        node = pending.pop()
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
            continue
        if isinstance(node, (ast.Lambda, ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp)):
            continue
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        elif isinstance(node, ast.alias):
            names.add((node.asname or node.name).partition(".")[0])
        pending.extend(ast.iter_child_nodes(node))
    return names



# ---------------------------------------------------------------------- what users call

def benign(target, *attributes: str) -> None:
    """Declare a data race intentional, so the race detector does not report it.

    ``benign(obj)``: every attribute and item of ``obj``; ``benign(obj, "hits", "misses")``: those
    attributes; ``benign("app.stats:Stats.hits")``: a pattern, ``module:Class.attribute`` or
    ``module:GLOBAL``, with ``*`` and ``?`` as wildcards. Right for a statistic that may be off by a
    few, or a lock-free fast path whose reads are single atomic operations -- never to silence a
    race whose outcome matters. A mark made inside a run lasts for that run; one made outside (at
    import, in a fixture), and every pattern, for the rest of the process."""
    if isinstance(target, str):
        if attributes or ":" not in target:
            raise DetschedUsageError(
                f"detsched.benign({target!r}): a pattern names 'module:Class.attribute' (or 'module:GLOBAL'), "
                "with * and ? as wildcards, and takes no attribute names; to mark an object, pass the object")
        race_kinds.BENIGN.patterns.append(target)
        return
    bad = [name for name in attributes if not isinstance(name, str)]
    if bad:
        raise DetschedUsageError(f"detsched.benign(obj, *attributes): attribute names are strings, got {bad[0]!r}")
    me = current()
    races = me.sched.races if me is not None else None
    (races.benign if races is not None else race_kinds.BENIGN).mark(target, attributes)


class unchecked(contextlib.ContextDecorator):
    """``with detsched.unchecked():`` (or ``@detsched.unchecked()``): the accesses the current thread
    makes inside are not checked for races."""

    def __enter__(self):
        me = current()
        if me is not None:
            me.unchecked += 1
        return self

    def __exit__(self, *exc_info):
        me = current()
        if me is not None and me.unchecked:
            me.unchecked -= 1
        return False


# ---------------------------------------------------------------------- what rewritten code calls

def _checker():
    """(me, its run's race detector), or (None, None) when this access is not checked."""
    me = current()
    if me is None or me.detached:
        return None, None
    return me, me.sched.races


#: Objects whose attributes each thread has its own of: never shared.
_THREAD_LOCAL = (_thread._local, _threading_local.local)
#: Owners nobody can write to (so no access of them races), and methods looked up on functions:
#: not tracked, so that a loop over many strings or tuples keeps none of them alive.
_UNCHANGING = frozenset({str, bytes, int, float, complex, bool, tuple, frozenset, range, slice, type(None),
                         super, types.FunctionType, types.MethodType, types.BuiltinFunctionType,
                         types.BuiltinMethodType})


# Invariant: type -> (whether a Python ``__getattr__``/``__getattribute__`` of it handles loads,
# whether a Python ``__setattr__`` handles stores), for every type looked up so far (lookups only).
_ATTRIBUTE_HOOKS: dict[type, tuple[bool, bool]] = {}


def _hooks(cls: type) -> tuple[bool, bool]:
    hooks = _ATTRIBUTE_HOOKS.get(cls)
    if hooks is None:
        python = types.FunctionType
        hooks = _ATTRIBUTE_HOOKS[cls] = (
            isinstance(getattr(cls, "__getattr__", None), python) or isinstance(cls.__getattribute__, python),
            isinstance(cls.__setattr__, python))
    return hooks


def _handled_by_a_hook(owner, name: str, store: bool) -> bool:
    """Whether ``owner.name`` is a call of the class's own ``__getattr__``/``__setattr__`` rather
    than an access of that attribute: a proxy or a context-local (asgiref's ``Local``) keeps the
    value elsewhere, per thread or per context, and the accesses made there are the ones that
    count. An attribute already in the object's ``__dict__`` is taken to be where the hook keeps
    it, as attrs' and pydantic's do."""
    if not _hooks(type(owner))[store]:
        return False
    try:
        return name not in object.__getattribute__(owner, "__dict__")
    except AttributeError:  # no __dict__: the hook keeps it elsewhere
        return True


def read_attribute(owner, name: str, site: str):
    me, detector = _checker()
    if (detector is not None and type(owner) not in _UNCHANGING and not isinstance(owner, _THREAD_LOCAL)
            and not _handled_by_a_hook(owner, name, store=False)):
        if type(owner) in _CONTAINERS:
            if name in _MUTATORS:
                _report(me, detector, owner, race_kinds.WHOLE, None, race_kinds.UPDATE, site)
            elif name in _READERS:
                _report(me, detector, owner, race_kinds.WHOLE, None, race_kinds.WHOLE_READ, site)
        else:
            _report(me, detector, owner, race_kinds.ATTRIBUTE, name, race_kinds.READ, site)
    return owner


def write_attribute(owner, name: str, site: str) -> None:
    me, detector = _checker()
    if detector is not None and not isinstance(owner, _THREAD_LOCAL) and not _handled_by_a_hook(owner, name, True):
        _report(me, detector, owner, race_kinds.ATTRIBUTE, name, race_kinds.WRITE, site)


def read_item(container, key, site: str):
    me, detector = _checker()
    if detector is not None and type(container) not in _UNCHANGING:
        _item(me, detector, container, key, race_kinds.READ, race_kinds.MEMBER_READ, site)
    return container


def write_item(container, key, site: str) -> None:
    me, detector = _checker()
    if detector is not None:
        _item(me, detector, container, key, race_kinds.WRITE, race_kinds.MEMBER_WRITE, site)


def read_whole(container, site: str):
    me, detector = _checker()
    if detector is not None and type(container) not in _UNCHANGING:
        _report(me, detector, container, race_kinds.WHOLE, None, race_kinds.WHOLE_READ, site)
    return container


def read_global(name: str, site: str) -> None:
    me, detector = _checker()
    if detector is not None:
        _report(me, detector, sys._getframe(1).f_globals, race_kinds.ATTRIBUTE, name, race_kinds.READ, site)


def write_global(name: str, site: str) -> None:
    me, detector = _checker()
    if detector is not None:
        _report(me, detector, sys._getframe(1).f_globals, race_kinds.ATTRIBUTE, name, race_kinds.WRITE, site)


def handed_over(fn, site: str) -> None:
    """``fn``, which user code handed over (a pool task, a thread's target), is about to be called
    by detsched's own code: a builtin container method (``results.append``) is then an access of
    its container, as the same call written in user code is."""
    owner = getattr(fn, "__self__", None)
    if type(fn) is types.BuiltinMethodType and type(owner) in _CONTAINERS:
        read_attribute(owner, fn.__name__, site)


def _item(me, detector, container, key, kind: int, member_kind: int, site: str) -> None:
    try:
        hash(key)
    except TypeError:  # a slice (before 3.12) or a list: a read or write of the whole container
        whole_kind = race_kinds.WHOLE_READ if kind == race_kinds.READ else race_kinds.UPDATE
        _report(me, detector, container, race_kinds.WHOLE, None, whole_kind, site)
        return
    _report(me, detector, container, race_kinds.ITEM, key, kind, site)
    if type(container) in _CONTAINERS:
        _report(me, detector, container, race_kinds.WHOLE, None, member_kind, site)


def _report(me, detector, owner, tag: int, key, kind: int, site: str) -> None:
    if me.unchecked:  # not checked, but still a dependency for a partial-order reduction
        detector.depend(owner, tag, key, kind)
        return
    race = detector.access(me.race_id, owner, tag, key, kind, site, _describe)
    if race is not None and detector.failure is None:  # the run goes on: later races are listed too
        detector.failure = FailureInfo("data-race", race.headline(), race.later.thread, race_details(race),
                                       step=me.sched.steps)


def race_details(race: race_kinds.Race) -> str:
    rows = [f"  {access.thread:<16} {access.kind:<6} {access.site}" for access in (race.earlier, race.later)]
    return "\n".join([*rows, "  no happens-before order: no lock, queue, event, start/join or other "
                             "synchronisation between them"])


def _describe(owner, tag: int, key) -> str:
    if isinstance(owner, dict) and "__name__" in owner and tag == race_kinds.ATTRIBUTE:
        return f"global {owner['__name__']}.{key}"  # a module's globals
    if isinstance(owner, types.ModuleType):
        return f"{owner.__name__}.{key}"
    kind = type(owner).__name__
    if tag == race_kinds.ATTRIBUTE:
        return f"{kind}.{key}"
    if tag == race_kinds.ITEM:
        return f"{kind}[{key!r}]"
    return f"{kind} (the whole container)"


def helpers(checked: bool) -> dict[str, object]:
    """The names rewritten code with access reports calls; ``checked`` false: they only pass on."""
    if checked:
        return {READ_ATTRIBUTE: read_attribute, WRITE_ATTRIBUTE: write_attribute, READ_ITEM: read_item,
                WRITE_ITEM: write_item, READ_WHOLE: read_whole, READ_GLOBAL: read_global,
                WRITE_GLOBAL: write_global}
    return {READ_ATTRIBUTE: _pass, WRITE_ATTRIBUTE: _nothing, READ_ITEM: _pass, WRITE_ITEM: _nothing,
            READ_WHOLE: _pass, READ_GLOBAL: _nothing, WRITE_GLOBAL: _nothing}


def _pass(value, *_):
    return value


def _nothing(*_) -> None:
    return None
