"""The linearizability checker on hand-made histories with known answers, against a brute-force
checker on random ones, and the timeline text of a history."""

import contextlib
import io
import itertools
import math
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from detsched._lincheck.checker import Verdict, check
from detsched._lincheck.history import Call, Raised, render_history
from other_pythons import other_interpreters, run_python


# --- sequential models -----------------------------------------------------------------------------

class Register:
    def __init__(self):
        self.value = 0

    def write(self, v):
        self.value = v

    def read(self):
        return self.value


class Queue:
    """FIFO; get() on an empty queue returns None."""

    def __init__(self):
        self.items = []

    def put(self, x):
        self.items.append(x)

    def get(self):
        return self.items.pop(0) if self.items else None


class RaisingQueue(Queue):
    """get() on an empty queue raises IndexError."""

    def get(self):
        return self.items.pop(0)


class ListQueue(list):
    """A model whose state is not in its __dict__: memo keys must still tell its states apart."""

    def put(self, x):
        self.append(x)

    def get(self):
        return self.pop(0) if self else None


class Set:
    def __init__(self):
        self.items = set()

    def add(self, x):
        self.items.add(x)

    def contains(self, x):
        return x in self.items

    def remove(self, x):
        self.items.remove(x)  # KeyError when absent


class Counter:
    def __init__(self):
        self.n = 0

    def incr(self):
        self.n += 1
        return self.n

    def add(self, k):
        self.n += k

    def get(self):
        return self.n


class Map:
    """put returns the previous value, store returns None; pop raises KeyError for a missing key."""

    def __init__(self):
        self.d = {}

    def put(self, k, v):
        old = self.d.get(k)
        self.d[k] = v
        return old

    def store(self, k, v):
        self.d[k] = v

    def get(self, k):
        return self.d.get(k)

    def pop(self, k):
        return self.d.pop(k)


# --- building histories ----------------------------------------------------------------------------

class History:
    """Record calls by hand: ``a = h.call(0, "write", 1)`` invokes, ``h.ret(a, None)`` responds; every
    event takes the next time. ``h.seq(...)`` is a call and its response at once."""

    def __init__(self):
        self.time = 0
        self.open = []  # [thread, name, args, result, invoked, responded]

    def _tick(self):
        self.time += 1
        return self.time - 1

    def call(self, thread, name, *args):
        self.open.append([thread, name, args, None, self._tick(), None])
        return len(self.open) - 1

    def ret(self, handle, result):
        self.open[handle][3:] = [result, self.open[handle][4], self._tick()]

    def seq(self, thread, name, *args, result=None):
        self.ret(self.call(thread, name, *args), result)

    @property
    def calls(self):
        return [Call(i, *fields) for i, fields in enumerate(self.open)]


def outcome(model, call):
    try:
        return getattr(model, call.name)(*call.args)
    except Exception as exc:
        return Raised(type(exc).__name__)


def is_linearization(calls, model, order):
    """Independently of the checker: ``order`` holds every responded call once (and pending ones at
    most once), keeps real-time order, and replays on a fresh model with the recorded results."""
    by_index = {c.index: c for c in calls}
    if len(set(order)) != len(order) or not set(order) <= set(by_index):
        return False
    if any(not c.pending and c.index not in order for c in calls):
        return False
    placed = [by_index[i] for i in order]
    for earlier, later in itertools.combinations(placed, 2):
        if later.responded is not None and later.responded < earlier.invoked:
            return False
    m = model()
    outcomes = [outcome(m, c) for c in placed]  # pending calls act too; only their results are free
    return all(c.pending or got == c.result for c, got in zip(placed, outcomes))


def brute_force(calls, model):
    """Linearizable by trying every subset of pending calls and every order: tiny histories only."""
    done = [c for c in calls if not c.pending]
    pending = [c for c in calls if c.pending]
    for k in range(len(pending) + 1):
        for extra in itertools.combinations(pending, k):
            for order in itertools.permutations(done + list(extra)):
                if is_linearization(calls, model, [c.index for c in order]):
                    return True
    return False


def assert_linearizable(calls, model, order=None, partition=None, **options):
    """With ``partition``, the witness need only be a linearization of each part."""
    verdict = check(calls, model, partition=partition, **options)
    assert verdict.linearizable is True and verdict.explanation == "", verdict
    parts = {}
    for c in calls:
        parts.setdefault(None if partition is None else partition(c), []).append(c)
    for part in parts.values():
        indexes = {c.index for c in part}
        assert is_linearization(part, model, [i for i in verdict.order if i in indexes]), verdict
    if order is not None:
        assert verdict.order == order
    return verdict


def assert_not_linearizable(calls, model, **options):
    verdict = check(calls, model, **options)
    assert verdict == Verdict(False, (), verdict.states,
                              f"no sequential order of these {len(calls)} calls returns these results")
    return verdict


# --- register --------------------------------------------------------------------------------------

def test_register_overlapping_writes_and_reads():
    h = History()
    w1 = h.call(0, "write", 1)
    r = h.call(1, "read")
    w2 = h.call(2, "write", 2)
    h.ret(r, 2)  # sees the write that began last: it may take effect first... of the two
    h.ret(w1, None)
    h.ret(w2, None)
    h.seq(1, "read", result=1)  # ...and the other one after
    assert_linearizable(h.calls, Register, order=(2, 1, 0, 3))


def test_register_read_of_a_value_never_written():
    h = History()
    w = h.call(0, "write", 1)
    h.seq(1, "read", result=7)
    h.ret(w, None)
    assert_not_linearizable(h.calls, Register)


def test_register_new_old_inversion():
    # A read that returned the new value completed before another read began, which returned the old one.
    h = History()
    w = h.call(0, "write", 1)
    h.seq(1, "read", result=1)
    h.seq(2, "read", result=0)
    h.ret(w, None)
    assert_not_linearizable(h.calls, Register)


def test_register_stale_read_after_a_completed_write():
    h = History()
    h.seq(0, "write", 1)
    h.seq(1, "read", result=0)
    assert_not_linearizable(h.calls, Register)


# --- queue -----------------------------------------------------------------------------------------

def test_queue_concurrent_puts_may_take_either_order():
    h = History()
    p1 = h.call(0, "put", 1)
    p2 = h.call(1, "put", 2)
    g = h.call(2, "get")
    h.ret(g, None)  # empty: before both puts
    h.ret(p2, None)
    h.ret(p1, None)
    h.seq(2, "get", result=2)
    h.seq(2, "get", result=1)
    assert_linearizable(h.calls, Queue, order=(2, 1, 0, 3, 4))


def test_queue_fifo_order_violated():
    h = History()
    h.seq(0, "put", 1)
    h.seq(0, "put", 2)
    h.seq(1, "get", result=2)
    h.seq(1, "get", result=1)
    assert_not_linearizable(h.calls, Queue)


def test_memo_keys_see_state_outside_dict():
    # Both orders of the puts reach the same set of calls with different queues; a key made of the
    # empty __dict__ alone would cut the second order and say "not linearizable".
    h = History()
    p1 = h.call(0, "put", 1)
    p2 = h.call(1, "put", 2)
    h.ret(p1, None)
    h.ret(p2, None)
    h.seq(0, "get", result=2)
    h.seq(0, "get", result=1)
    assert_linearizable(h.calls, ListQueue, order=(1, 0, 2, 3))


# --- set -------------------------------------------------------------------------------------------

def test_set_linearizable():
    h = History()
    a = h.call(0, "add", 1)
    c = h.call(1, "contains", 1)
    h.ret(c, True)
    r = h.call(1, "remove", 1)
    h.ret(a, None)
    h.ret(r, None)
    h.seq(0, "contains", 1, result=False)
    h.seq(1, "remove", 1, result=Raised("KeyError"))
    assert_linearizable(h.calls, Set, order=(0, 1, 2, 3, 4))


def test_set_element_missing_after_completed_add():
    h = History()
    h.seq(0, "add", 1)
    c = h.call(1, "contains", 1)
    h.seq(0, "add", 2)
    h.ret(c, False)
    assert_not_linearizable(h.calls, Set)


# --- counter ---------------------------------------------------------------------------------------

def test_two_concurrent_increments_both_returning_one():
    h = History()
    a = h.call(0, "incr")
    b = h.call(1, "incr")
    h.ret(a, 1)
    h.ret(b, 1)
    assert_not_linearizable(h.calls, Counter)


def test_two_concurrent_increments_returning_one_and_two():
    h = History()
    a = h.call(0, "incr")
    b = h.call(1, "incr")
    h.ret(a, 2)
    h.ret(b, 1)
    assert_linearizable(h.calls, Counter, order=(1, 0))


# --- pending calls ---------------------------------------------------------------------------------

def test_pending_write_observed_by_a_later_read():
    h = History()
    h.call(0, "write", 1)  # never returns
    h.seq(1, "read", result=1)
    assert_linearizable(h.calls, Register, order=(0, 1))


def test_pending_call_dropped():
    h = History()
    h.call(0, "write", 5)  # never returns, and no one saw its effect
    h.seq(1, "read", result=0)
    h.seq(1, "read", result=0)
    assert_linearizable(h.calls, Register, order=(1, 2))


def test_pending_call_cannot_act_before_its_invocation():
    h = History()
    h.seq(1, "read", result=1)
    h.call(0, "write", 1)
    assert_not_linearizable(h.calls, Register)


def test_pending_call_result_is_not_compared():
    calls = [Call(0, 0, "get", (), "anything", 0, None), Call(1, 1, "get", (), None, 1, 2)]
    assert_linearizable(calls, Queue, order=(0, 1))


# --- exceptions as results -------------------------------------------------------------------------

def test_raised_compares_by_type_name_only():
    assert Raised("KeyError", "'a'") == Raised("KeyError", "'b'")
    assert hash(Raised("KeyError", "'a'")) == hash(Raised("KeyError"))
    assert Raised("KeyError") != Raised("IndexError")
    assert Raised("KeyError") != "KeyError"


def test_recorded_exception_matches_a_model_that_raises():
    h = History()
    h.seq(0, "get", result=Raised("IndexError", "pop from empty list"))
    h.seq(0, "put", 1)
    h.seq(1, "get", result=1)
    assert_linearizable(h.calls, RaisingQueue, order=(0, 1, 2))


def test_recorded_exception_against_a_model_that_returns():
    h = History()
    h.seq(0, "get", result=Raised("IndexError"))
    verdict = check(h.calls, Queue)  # returns None instead
    assert verdict == Verdict(False, (), 0, "the model never gives this result: get() raised IndexError")


def test_returned_value_against_a_model_that_raises():
    h = History()
    h.seq(0, "get", result=None)
    assert check(h.calls, RaisingQueue).linearizable is False


def test_exception_of_another_type():
    h = History()
    h.seq(0, "get", result=Raised("KeyError"))
    assert check(h.calls, RaisingQueue).linearizable is False


def test_lenient_equality_never_matches_an_exception():
    class Anything:
        def __eq__(self, other):
            return True

    h = History()
    h.seq(0, "get", result=Anything())
    assert check(h.calls, RaisingQueue).linearizable is False


def test_missing_method_is_a_usage_error():
    h = History()
    h.seq(0, "push", 1)
    with pytest.raises(TypeError, match=r"model Queue has no method 'push'"):
        check(h.calls, Queue)


def test_invalid_histories_are_refused():
    with pytest.raises(ValueError, match="same index"):
        check([Call(0, 0, "read", (), 0, 0, 1), Call(0, 1, "read", (), 0, 2, 3)], Register)
    with pytest.raises(ValueError, match="not after its invocation"):
        check([Call(0, 0, "read", (), 0, 5, 3)], Register)
    with pytest.raises(ValueError, match="max_states"):
        check([], Register, max_states=True)


def test_empty_history():
    assert check([], Register) == Verdict(True, (), 0, "")


# --- budget, memoization, determinism --------------------------------------------------------------

def commuting_adds(n, total):
    """``n`` concurrent add(1) on a counter, then a get() returning ``total``."""
    h = History()
    adds = [h.call(t, "add", 1) for t in range(n)]
    for a in adds:
        h.ret(a, None)
    h.seq(0, "get", result=total)
    return h.calls


class UnpicklableCounter(Counter):
    def __init__(self):
        super().__init__()
        self.log = lambda: None  # a lambda does not pickle: no memo keys


class KeyedCounter(Counter):
    def lincheck_state(self):
        return self.n


def test_undecided_when_the_budget_runs_out():
    verdict = check(commuting_adds(8, 7), Counter, max_states=10)
    assert verdict == Verdict(None, (), 10, "undecided: gave up after 10 search states; "
                                            "raise max_states (now 10) to decide")


def test_memoization_searches_subsets_not_orders():
    calls = commuting_adds(8, 7)  # every order of the adds fails at the get
    verdict = assert_not_linearizable(calls, Counter)
    # One state per nonempty subset of the adds (the counter's value follows from the subset), where
    # the search without memo visits every ordered prefix: 109,600 states.
    assert verdict.states == 2 ** 8 - 1 < math.factorial(8) // 100
    assert check(calls, KeyedCounter) == verdict
    assert check(calls, UnpicklableCounter, max_states=2000).linearizable is None
    assert check(commuting_adds(5, 4), UnpicklableCounter).states == sum(
        math.perm(5, k) for k in range(1, 6))
    assert_linearizable(commuting_adds(8, 8), Counter, order=tuple(range(9)))


def test_unhashable_custom_state_is_a_usage_error():
    class Listed(Counter):
        def lincheck_state(self):
            return [self.n]

    with pytest.raises(TypeError, match=r"lincheck_state\(\) returned an unhashable list"):
        check(commuting_adds(2, 2), Listed)


def test_same_verdict_every_time():
    h = History()
    puts = [h.call(t, "put", t % 2, t) for t in range(6)]
    for p, old in zip(puts, [None, None, 0, 1, 2, 3]):
        h.ret(p, old)
    h.seq(0, "get", 0, result=4)
    first = check(h.calls, Map)
    assert first.linearizable is True
    assert check(h.calls, Map) == first
    assert check(list(reversed(h.calls)), Map) == first


ELSEWHERE = """
from detsched._lincheck.checker import check
from detsched._lincheck.history import Call


class Set:
    def __init__(self):
        self.items = set()

    def add(self, x):
        self.items.add(x)

    def remove(self, x):
        self.items.remove(x)

    def contains(self, x):
        return x in self.items


class FrozenSet(Set):
    def lincheck_state(self):
        return frozenset(self.items)


class Map:
    def __init__(self):
        self.d = {}

    def store(self, k, v):
        self.d[k] = v

    def get(self, k):
        return self.d.get(k)


# Strings, whose hashes change between processes, in sets: their pickles follow hash order, so
# only the verdict and the witness are printed for Set, and all of it for FrozenSet.
# The search first tries the remove before the contains that must precede it, and every subset of
# the other adds, before it backtracks.
calls = [Call(0, 0, "add", ("ant",), None, 0, 20), Call(1, 1, "remove", ("ant",), None, 1, 21),
         Call(2, 2, "contains", ("ant",), True, 2, 22)]
calls += [Call(i, i, "add", (w,), None, i, 20 + i) for i, w in enumerate(["bee", "cat", "dog", "eel", "fox"], 3)]
calls += [Call(8, 0, "contains", ("ant",), False, 40, 41), Call(9, 1, "contains", ("yak",), False, 42, 43)]
for model in (Set, FrozenSet):
    for history in (calls, calls[:-1] + [Call(9, 1, "contains", ("yak",), True, 42, 43)]):
        verdict = check(history, model)
        print(verdict if model is FrozenSet else (verdict.linearizable, verdict.order))
stores = [Call(3 * v + t, t, "store", (k, v), None, 3 * v + t, 20 + 3 * v + t) for v in range(3)
          for t, k in enumerate("abc")]
for result in (0, 1):
    gets = [Call(9 + t, t, "get", (k,), result, 40 + 2 * t, 41 + 2 * t) for t, k in enumerate("abc")]
    print(check(stores + gets, Map))
    print(check(stores + gets, Map, partition=lambda call: call.args[0]))
"""


def checked_here():
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(ELSEWHERE, {})
    return out.getvalue().strip()


def test_same_verdicts_in_another_process():
    here = checked_here()
    assert here.splitlines()[:2] == ["(True, (0, 2, 1, 3, 4, 5, 6, 7, 8, 9))", "(False, ())"]
    assert run_python(sys.executable, ELSEWHERE) == here  # with another hash seed


@pytest.mark.skipif(not other_interpreters(), reason="no other CPython under ~/.pyenv/versions")
@pytest.mark.parametrize("python", other_interpreters())
def test_same_verdicts_on_other_python_versions(python):
    assert run_python(python, ELSEWHERE, stdlib_only=True) == checked_here()


# --- partition -------------------------------------------------------------------------------------

def by_key(call):
    return call.args[0]


def keyed_stores(bad_key=None):
    """On each of three keys, three concurrent stores of 0, 1 and 2, all nine concurrent, then a
    get() of the key that sees the store invoked first (so the search, which tries calls by
    invocation time, must backtrack), or for ``bad_key`` a value never stored."""
    h = History()
    stores = [h.call(t, "store", k, v) for v in range(3) for t, k in enumerate("abc")]
    for s in stores:
        h.ret(s, None)
    for t, k in enumerate("abc"):
        h.seq(t, "get", k, result=99 if k == bad_key else 0)
    return h.calls


def test_partition_agrees_and_explores_fewer_states():
    calls = keyed_stores()
    whole = assert_linearizable(calls, Map)
    split = assert_linearizable(calls, Map, partition=by_key)
    assert split.states < whole.states
    a, b, c = ([i for i in split.order if calls[i].args[0] == k] for k in "abc")
    assert split.order == tuple(a + b + c)  # the parts in the order of their first invocation


def test_partition_names_the_failing_key():
    calls = keyed_stores(bad_key="b")
    assert check(calls, Map).linearizable is False
    split = check(calls, Map, partition=by_key)
    assert split == Verdict(False, (), split.states,
                            "for key 'b': no sequential order of these 4 calls returns these results")


def test_partition_undecided_names_the_key_and_shares_the_budget():
    calls = keyed_stores()
    needed = check(calls, Map, partition=by_key).states
    verdict = check(calls, Map, partition=by_key, max_states=needed - 1)
    assert verdict.linearizable is None and verdict.states == needed - 1
    assert verdict.explanation.startswith("undecided: for key 'c': gave up after")


# --- timeline --------------------------------------------------------------------------------------

def test_render_history_columns():
    h = History()
    w = h.call(0, "write", 1)
    h.seq(1, "read", result=0)
    h.ret(w, None)
    h.call(1, "write", "x" * 50)
    h.seq(0, "read", result=Raised("KeyError", "boom"))
    assert render_history(h.calls) == "\n".join([
        "  time  T0                      T1",
        "  -----------------------------------------------------------------------",
        "     0  write(1) ...",
        "     1                          read() -> 0",
        "     3  ... -> None",
        "     4                          write('xxxxxxxxxxxxxxxxxxxxxxxxxx...) ...",
        "     5  read() raised KeyError",
        "   end                          ... (no response)",
    ])
    assert render_history([]) == "  (no calls recorded)"


def test_long_results_are_cut():
    call = Call(0, 0, "get", ("k" * 100,), list(range(100)), 0, 1)
    assert call.describe() == f"get('{'k' * 26}...) -> [0, 1, 2, 3, 4, 5, 6, 7, 8,..."
    assert max(map(len, render_history([call]).splitlines())) < 80


# --- properties ------------------------------------------------------------------------------------

OPS = st.one_of(
    st.tuples(st.just("put"), st.tuples(st.sampled_from("ab"), st.integers(0, 2))),
    st.tuples(st.just("get"), st.tuples(st.sampled_from("ab"))),
    st.tuples(st.just("pop"), st.tuples(st.sampled_from("ab"))),
)


def run(model, name, args):
    return outcome(model, Call(0, 0, name, args, None, 0, 1))


@settings(max_examples=100, deadline=None, database=None)
@given(st.lists(st.tuples(st.integers(0, 2), OPS), max_size=12))
def test_sequential_histories_linearize_in_their_order(ops):
    m = Map()
    calls = [Call(i, t, name, args, run(m, name, args), 2 * i, 2 * i + 1) for i, (t, (name, args)) in enumerate(ops)]
    verdict = check(calls, Map)
    assert verdict.linearizable is True and verdict.order == tuple(range(len(calls)))
    assert verdict.states == len(calls)


@st.composite
def concurrent_runs(draw):
    """A history from running Map's operations atomically, in a random order, by up to three
    threads: the k-th operation takes effect at time 10 * (k + 1), and its call is invoked before
    and responds after that point, after its thread's previous response and before its thread's
    next invocation. A thread's last call may stay pending (its effect seen by the others), and one
    more pending call may have no effect at all."""
    ops = draw(st.lists(st.tuples(st.integers(0, 2), OPS), max_size=9))
    next_point = {}  # operation -> the point of its thread's next operation
    for k, (t, _) in enumerate(ops):
        later = [j for j in range(k + 1, len(ops)) if ops[j][0] == t]
        if later:
            next_point[k] = 10 * (later[0] + 1)
    m = Map()
    calls = []
    responded = {}  # thread -> time of its last response
    for k, (t, (name, args)) in enumerate(ops):
        point = 10 * (k + 1)
        invoked = draw(st.integers(responded.get(t, 0) + 1, point - 1))
        responded[t] = draw(st.integers(point + 1, next_point.get(k, point + 40) - 2))
        # Distinct event times, keeping the order of the drawn ones; ties between threads may go
        # either way, which keeps every call's window around its point.
        calls.append(Call(k, t, name, args, run(m, name, args), 100 * invoked + 2 * k, 100 * responded[t] + 2 * k + 1))
    for t in sorted(responded):
        last = max(c.index for c in calls if c.thread == t)
        if draw(st.booleans()):
            c = calls[last]
            calls[last] = Call(c.index, c.thread, c.name, c.args, None, c.invoked, None)
    if draw(st.booleans()):
        invoked = 100 * draw(st.integers(0, 10 * (len(ops) + 1))) + 99
        calls.append(Call(len(calls), 3, "put", ("a", 9), None, invoked, None))
    return calls


@settings(max_examples=100, deadline=None, database=None)
@given(concurrent_runs())
def test_interleaved_atomic_runs_are_linearizable(calls):
    assert_linearizable(calls, Map)


@st.composite
def small_histories(draw):
    """Any history of up to five calls, each on its own thread, results drawn at random (mostly
    not linearizable), some pending."""
    n = draw(st.integers(0, 5))
    times = draw(st.permutations(range(2 * n)))
    calls = []
    for i in range(n):
        name, args = draw(OPS)
        a, b = sorted(times[2 * i: 2 * i + 2])
        result = draw(st.sampled_from([None, 0, 1, 2, Raised("KeyError")]))
        calls.append(Call(i, i, name, args, result, a, None if draw(st.integers(0, 4)) == 0 else b))
    return calls


@settings(max_examples=100, deadline=None, database=None)
@given(small_histories())
def test_agrees_with_brute_force(calls):
    expected = brute_force(calls, Map)
    verdict = check(calls, Map)
    assert verdict.linearizable is expected
    if expected:
        assert is_linearization(calls, Map, verdict.order)
    assert check(calls, Map, partition=by_key).linearizable is expected
