"""Rewritten modules kept on disk, so that a process rewrites a module only once per change to it.

Rewriting a module costs its parse, three tree passes and a compile: about 13 ms a module, paid in
every process on its first run for every user module loaded -- a pytest session loads installed
plugins' packages (anyio, trio...), and each xdist worker rewrote 188 modules in 2-3 s before its
first run. The rewritten module is a pure function of its source, its file name, the rewriting
asked for, the rewriter's own code and the interpreter's bytecode, so it can be kept: one file per
(module file, rewriting), holding the source's digest and the marshalled code, replaced when either
changes. The cache lives in ``$DETSCHED_CACHE_DIR`` (default: ``$XDG_CACHE_HOME/detsched`` or
``~/.cache/detsched``); an empty ``DETSCHED_CACHE_DIR`` turns it off. Anything that goes wrong
reading or writing it (a read-only home, a truncated file) costs only the rewriting it would save.
"""

from __future__ import annotations

import hashlib
import importlib.util
import marshal
import os
import types

from detsched._instrument import rewrite

#: The files whose code decides what rewriting produces: a change to any makes every entry stale.
_REWRITER_FILES = ("rewrite.py", "accesses.py")
_rewriter_digest: str | None = None


def directory() -> str | None:
    """Where rewritten modules are kept, or None when the cache is off."""
    chosen = os.environ.get("DETSCHED_CACHE_DIR")
    if chosen is not None:
        return chosen or None
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "detsched")


def kind_of(loader, points: bool, races: bool) -> str:
    """What decides the rewriting of a module besides its source and the rewriter: the points and
    access reports asked for, and for a module pytest loaded, pytest's own assertion rewriting."""
    kind = "as-loaded" if not points else "points+races" if races else "points"
    if rewrite.rewrites_asserts(loader):
        import _pytest
        import pytest

        config = getattr(loader, "config", None)
        passes = config.getini("enable_assertion_pass_hook") if config is not None else False
        kind += f"+pytest-{pytest.__version__}-{_pytest.__file__}-{passes}"
    return kind


class Entry:
    """Where the rewriting of one module file, as ``kind``, is kept, for this very source."""

    def __init__(self, source: str, path: str, kind: str):
        self._digest = hashlib.sha256(source.encode("utf-8", "surrogatepass")).digest()
        self._path = _place(path, kind)

    def load(self) -> types.CodeType | None:
        """The module code kept here, if it was kept for this source."""
        if self._path is None:
            return None
        try:
            with open(self._path, "rb") as handle:
                kept = handle.read()
            digest, code = kept[:32], marshal.loads(kept[32:])
        except (OSError, EOFError, ValueError, TypeError):
            return None
        return code if digest == self._digest and isinstance(code, types.CodeType) else None

    def store(self, code: types.CodeType) -> None:
        """Keep ``code`` here for later processes."""
        if self._path is None:
            return
        partial = f"{self._path}.{os.getpid()}"
        try:
            os.makedirs(os.path.dirname(self._path), exist_ok=True)
            with open(partial, "wb") as handle:
                handle.write(self._digest + marshal.dumps(code))
            os.replace(partial, self._path)  # whole or not at all, even with xdist workers writing at once
        except OSError:
            try:
                os.unlink(partial)
            except OSError:
                pass


def _place(path: str, kind: str) -> str | None:
    """The file that keeps ``path`` rewritten as ``kind``, or None when nothing is kept."""
    root = directory()
    if root is None:
        return None
    try:
        rewriter = _rewriter()
    except OSError:  # the rewriter's source is not there to read (a zipped install): keep nothing
        return None
    name = hashlib.sha256(f"{path}\0{kind}\0{rewriter}".encode()).hexdigest()[:32]
    return os.path.join(root, "rewritten", f"{name}.code")


def _rewriter() -> str:
    """What rewriting produces depends on: the rewriter's code and the interpreter's bytecode."""
    global _rewriter_digest
    if _rewriter_digest is None:
        digest = hashlib.sha256(importlib.util.MAGIC_NUMBER)
        here = os.path.dirname(os.path.abspath(__file__))
        for name in _REWRITER_FILES:
            with open(os.path.join(here, name), "rb") as handle:
                digest.update(handle.read())
        _rewriter_digest = digest.hexdigest()
    return _rewriter_digest
