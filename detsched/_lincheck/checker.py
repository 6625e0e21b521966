"""Is a recorded history linearizable? That is: is there one sequential order of its calls, keeping
every call that returned before another was invoked ahead of that one, in which a sequential model
returns what each call returned (Herlihy & Wing, "Linearizability: a correctness condition for
concurrent objects", TOPLAS 1990)? Calls that never responded may be put anywhere after their
invocation with any result, or left out.

The search is Wing & Gong's ("Testing and verifying concurrent objects", JPDC 1993): repeatedly
linearize one of the calls that may come next, backtracking when some call's response is reached
before the call itself was placed. Lowe's memoization ("Testing for linearizability", Concurrency
and Computation 2017; also in the Knossos and Porcupine checkers) makes it practical: a pair (set of
linearized calls, model state) that was already searched is not searched again, so commuting calls
cost the number of their subsets rather than of their orders. With ``partition``, each part of a
P-compositional model (Horn & Kroening, "Faster linearizability checking via P-compositionality",
FORTE 2015), such as the keys of a map, is checked on its own.

Everything is deterministic: candidates are tried by invocation time and the budget counts states,
not seconds, so a history gets the same verdict and witness on every run and Python version. (One
exception, in the model rather than here: sets of strings pickle in hash order, so for such a model
the state count, and so the verdict at the edge of the budget, may vary between processes; see
``_States``.)"""

from __future__ import annotations

import copy
import pickle
from dataclasses import dataclass
from typing import Callable, Hashable, Sequence

from detsched._lincheck.history import Call, Raised, validate


@dataclass(frozen=True)
class Verdict:
    """The answer for one history."""

    linearizable: bool | None  # None = undecided: the state budget ran out before an answer
    order: tuple[int, ...]  # when linearizable, a witness: Call.index values in linearization order
    states: int  # search states explored
    explanation: str  # one line for people; "" when linearizable


def check(calls: Sequence[Call], model: Callable[[], object], *,
          partition: Callable[[Call], Hashable] | None = None, max_states: int = 1_000_000) -> Verdict:
    """Check ``calls`` against fresh objects made by ``model()``: a call is applied as
    ``getattr(m, call.name)(*call.args)`` and its result must ``==`` the recorded one (an exception
    counts as ``Raised(type name)``). With ``partition``, the calls of each key are checked apart,
    on their own model; the witness then lists the parts one after the other, in the order their
    first calls were invoked, and is only a linearization of each part. At most ``max_states``
    search states are explored in all; past that the verdict is undecided (None)."""
    if isinstance(max_states, bool) or not isinstance(max_states, int) or max_states < 0:
        raise ValueError(f"max_states must be a non-negative integer, not {max_states!r}")
    calls = sorted(calls, key=lambda c: c.invoked)
    validate(calls)
    parts: dict[Hashable, list[Call]] = {}  # insertion order = first invocation of each key
    for call in calls:
        parts.setdefault(None if partition is None else partition(call), []).append(call)

    order: list[int] = []
    states = 0
    undecided = None  # where the first part that ran out of budget is named
    for key, part in parts.items():
        where = "" if partition is None else f"for key {key!r}: "
        found, witness, explored = _search(part, model, max_states - states)
        states += explored
        if found is False:
            return Verdict(False, (), states, where + _no_order(part))
        if found is None:
            undecided = undecided if undecided is not None else where
        else:
            order += [part[i].index for i in witness]
    if undecided is not None:
        return Verdict(None, (), states, f"undecided: {undecided}gave up after {states:,} search states; "
                                         f"raise max_states (now {max_states}) to decide")
    return Verdict(True, tuple(order), states, "")


def _no_order(part: list[Call]) -> str:
    if len(part) == 1:
        return f"the model never gives this result: {part[0].describe()}"
    return f"no sequential order of these {len(part)} calls returns these results"


def _search(calls: list[Call], model: Callable[[], object], budget: int):
    """Wing & Gong's search with Lowe's cache over ``calls`` (sorted by invocation). Returns
    (True, positions in ``calls`` in linearization order, states), or (False | None, [], states)."""
    fresh = model()
    for name in sorted({c.name for c in calls}):
        if not callable(getattr(fresh, name, None)):
            raise TypeError(f"the model {type(fresh).__qualname__} has no method {name!r}, "
                            f"which the history calls")
    states_of = _States(fresh)
    node, _ = states_of.snapshot(fresh)
    # All invocations and responses by time. Walking them from the start, skipping linearized calls,
    # the invocations met before the first response are exactly the calls that may come next.
    events = sorted([(c.invoked, i, False) for i, c in enumerate(calls)] +
                    [(c.responded, i, True) for i, c in enumerate(calls) if not c.pending])
    # Invariant: `done` is the bitmask of the calls on `stack`, `node` is a snapshot of the model
    # after applying them in stack order, and `unanswered` counts the responded calls not in `done`.
    stack: list[tuple[int, object]] = []  # (event position of a linearized call's invocation, node before it)
    done = 0
    unanswered = sum(not c.pending for c in calls)
    # Invariant: each (done, state key) in `seen` is on the current path or was searched fully and
    # leads to no linearization, so meeting it again can only repeat a failure.
    seen: set[tuple[int, Hashable]] = set()
    states = 0
    pos = 0
    while unanswered:
        _, i, is_response = events[pos]  # never past the end: an unanswered call's response is ahead
        call = calls[i]
        if done >> i & 1:
            pos += 1
        elif is_response:  # reached a response before its call was linearized: this branch is dead
            if not stack:
                return False, [], states
            pos, node = stack.pop()
            i = events[pos][1]
            done &= ~(1 << i)
            unanswered += not calls[i].pending
            pos += 1  # try the next candidate at that level
        else:
            after = states_of.restore(node)  # a copy: model methods mutate, and `node` stays for backtracking
            outcome = _apply(after, call)
            if not call.pending and not _same(outcome, call.result):
                pos += 1
                continue
            after_node, key = states_of.snapshot(after)
            if key is not None and (done | 1 << i, key) in seen:
                pos += 1
                continue
            if states == budget:
                return None, [], states
            states += 1
            if key is not None:
                seen.add((done | 1 << i, key))
            stack.append((pos, node))
            node, done, pos = after_node, done | 1 << i, 0
            unanswered -= not call.pending
    return True, [events[p][1] for p, _ in stack], states



def _apply(model: object, call: Call) -> object:
    try:
        return getattr(model, call.name)(*call.args)
    except Exception as exc:  # an outcome like any other; BaseExceptions (Ctrl-C) still stop the check
        return Raised(type(exc).__name__, str(exc))


def _same(outcome: object, recorded: object) -> bool:
    # Checked apart so that a value with a lenient __eq__ (mock.ANY) never matches an exception.
    if isinstance(outcome, Raised) or isinstance(recorded, Raised):
        return isinstance(outcome, Raised) and isinstance(recorded, Raised) and outcome == recorded
    return bool(outcome == recorded)


class _Plain:
    """Its instances keep all their state in ``__dict__``, and copy and pickle in the default way."""


#: What a class overrides to copy or pickle its instances in its own way.
_HOOKS = ("__reduce_ex__", "__reduce__", "__getstate__", "__setstate__", "__deepcopy__")


class _States:
    """Snapshots of model states, to copy them, and their memo keys.

    A snapshot of a plain model (all its state in ``__dict__``, default copying) is the pickle of
    its ``__dict__``: unpickling copies it several times faster than ``copy.deepcopy``, and leaving
    the class out lets a model defined inside a test function pickle. Any other model is kept as an
    object and deep-copied. The memo key is ``lincheck_state()`` if the model defines it, else the
    pickle of the state (of the whole object when its state is not all in ``__dict__``, as for a list
    subclass). Pickles are faithful: different states never share a key, equal states with
    different bytes only miss the cache. When a state does not pickle (a lambda, a lock), the model
    is kept as objects and unkeyed from then on: no memo, still correct.

    Misses change only the number of states, never the witness (the cache prunes only branches that
    fail). A set of strings pickles in hash order, which varies between processes, so such a model's
    state count may too; a ``lincheck_state()`` returning a frozenset makes it stable."""

    def __init__(self, sample: object):
        self.cls = cls = type(sample)
        self.plain = (hasattr(sample, "__dict__") and cls.__basicsize__ == _Plain.__basicsize__
                      and cls.__itemsize__ == 0
                      and all(getattr(cls, hook, None) is getattr(_Plain, hook, None) for hook in _HOOKS))
        self.custom = callable(getattr(sample, "lincheck_state", None))
        self.pickling = self.plain or not self.custom  # a custom key and an unplain model need no pickle

    def snapshot(self, model: object) -> tuple[object, Hashable | None]:
        """(a snapshot that ``restore`` copies, the memo key or None); ``model`` is not used after."""
        data = None
        if self.pickling:
            try:
                data = pickle.dumps(model.__dict__ if self.plain else model, protocol=4)
            except Exception:  # PicklingError, TypeError, AttributeError, depending on the object
                self.pickling = False
        key = self._custom_key(model) if self.custom else data
        return (data if self.plain and data is not None else model), key

    def restore(self, snapshot: object) -> object:
        """A fresh model object in the snapshot's state."""
        if self.plain and isinstance(snapshot, bytes):
            model = self.cls.__new__(self.cls)  # as copy.deepcopy makes a plain object
            model.__dict__.update(pickle.loads(snapshot))
            return model
        return copy.deepcopy(snapshot)

    def _custom_key(self, model: object) -> Hashable:
        key = model.lincheck_state()
        try:
            hash(key)
        except TypeError:
            raise TypeError(f"{self.cls.__qualname__}.lincheck_state() returned an unhashable "
                            f"{type(key).__name__}") from None
        return key
