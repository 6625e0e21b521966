"""Store points: rewritten user functions behave exactly as before, and read-modify-write races
with no call and no lock in their window are found."""

import threading
import time

import pytest

import detsched
from detsched._instrument import rewrite as rewrite
from detsched._instrument.rewrite import code_objects, rewrite_module
from detsched._explore.explorer import run_once
from detsched._explore.targets import resolve
from detsched.schedule import Points
from detsched.settings import Limits
from detsched.strategies import PositionReplay

COUNTER = 0


class Account:
    def __init__(self):
        self.balance = 100
        self.history = []

    def withdraw(self, amount):
        self.balance -= amount  # load, subtract, store: one statement, two steps
        self.history += [amount]


def plain_lost_update():
    account = Account()
    workers = [threading.Thread(target=account.withdraw, args=(10,)) for _ in range(2)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert account.balance == 80, f"balance is {account.balance}"


def bump_global():
    global COUNTER
    COUNTER += 1


def global_lost_update():
    global COUNTER
    COUNTER = 0
    workers = [threading.Thread(target=bump_global) for _ in range(2)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert COUNTER == 2, f"COUNTER is {COUNTER}"


def test_augmented_attribute_store_race_is_found():
    failure = detsched.explore(plain_lost_update, runs=100).failure
    assert failure.kind == "exception" and "balance is 90" in failure.message
    assert "store self.balance" in failure.timeline()
    assert failure.schedule.preemptions == 1


def test_global_store_race_is_found():
    assert "COUNTER is 1" in detsched.explore(global_lost_update, runs=100).failure.message


def test_without_store_points_the_window_is_atomic():
    assert detsched.explore(plain_lost_update, runs=100, preempt_writes=False).failure is None


def test_functions_get_their_code_back_after_the_run():
    before = Account.withdraw.__code__
    detsched.explore(plain_lost_update, runs=3)
    assert Account.withdraw.__code__ is before


def run_rewritten(source, name, *args):
    namespace = rewrite.helpers(Points())
    exec(rewrite_module(source, "<rewritten>"), namespace)
    return namespace[name](*args)


def test_augmented_item_store_evaluates_target_once():
    source = '''
def f():
    calls = []
    data = {"k": [1]}
    def key():
        calls.append(1)
        return "k"
    data[key()] += [2]
    return data, len(calls)
'''
    assert run_rewritten(source, "f") == ({"k": [1, 2]}, 1)


def test_in_place_operators_keep_their_meaning():
    source = '''
class Box:
    pass
def f():
    box = Box()
    box.items = shared = [1]
    box.items += [2]          # list.__iadd__: the same list grows
    return shared, box.items is shared
'''
    assert run_rewritten(source, "f") == ([1, 2], True)


def test_nonlocal_tuple_and_annotated_stores():
    source = '''
def f():
    total = 0
    pair = [0, 0]
    def add(n):
        nonlocal total
        total += n
    add(3)
    pair[0], pair[1] = 4, 5
    class C:
        pass
    c = C()
    c.x: int = 6
    del pair[1]
    return total, pair, c.x
'''
    assert run_rewritten(source, "f") == (3, [4], 6)


def test_line_numbers_are_kept():
    source = "def f(obj):\n    obj.x = 1\n    obj.y = 2\n    return 1 / 0\n"
    code = code_objects(rewrite_module(source, "<rewritten>"))[("f", 1)][0]
    lines = {line for _, _, line in code.co_lines() if line}
    assert {2, 3, 4} <= lines <= {1, 2, 3, 4}  # the def line is listed from 3.11 on




def test_user_code_called_back_by_a_library_is_not_switched_away_from():
    """A logging formatter runs while logging holds its handler's real lock: switching there would
    leave another thread blocked outside detsched's control."""
    import io
    import logging

    class Tagged(logging.Formatter):
        def format(self, record):
            self.last = record.getMessage()  # a store, in a call: both would be points elsewhere
            return "tagged " + super().format(record)

    handler = logging.StreamHandler(io.StringIO())  # its lock is a real RLock, made before the run
    handler.setFormatter(Tagged())
    log = logging.getLogger("detsched-test-callbacks")
    log.addHandler(handler)
    log.propagate = False

    def main():
        workers = [threading.Thread(target=log.warning, args=("hi %d", n)) for n in range(3)]
        for w in workers:
            w.start()
        for w in workers:
            w.join()

    try:
        assert detsched.explore(main, runs=100).failure is None
    finally:
        log.removeHandler(handler)


REGISTRY = {}


def register(name):
    REGISTRY[name] = len(name)


def names_in_upper_case():
    return [name.upper() for name in REGISTRY]


def iterate_while_another_thread_registers():
    REGISTRY.clear()
    register("a")
    writer = threading.Thread(target=lambda: [register(f"x{i}") for i in range(3)])
    writer.start()
    for _ in range(3):
        names_in_upper_case()
    writer.join()


def test_a_container_resized_during_iteration_is_found():
    failure = detsched.explore(iterate_while_another_thread_registers, runs=500).failure
    assert failure.kind == "exception"
    assert "dictionary changed size during iteration" in failure.message
    assert "next item of dict" in failure.timeline()


def test_loops_keep_their_meaning():
    source = '''
TABLE = {"a": 1, "b": 2, "c": 3}
def f():
    seen = []
    for key in TABLE:
        if key == "b":
            break
        seen.append(key)
    else:
        seen.append("no break")
    for key in TABLE["a":"a"] if False else TABLE:
        pass
    total = sum(TABLE[k] for k in TABLE)
    squares = {k: v * v for k, v in TABLE.items()}
    return seen, total, squares, [k for k in TABLE if TABLE[k] > 1]
'''
    assert run_rewritten(source, "f") == (["a"], 6, {"a": 1, "b": 4, "c": 9}, ["b", "c"])


def test_only_loops_over_shared_containers_are_wrapped():
    source = '''
SHARED = [1]
def f(param):
    local = [1]
    for x in local: pass
    for x in param: pass
    for x in range(2): pass
    for x in SHARED: pass
'''
    code = code_objects(rewrite_module(source, "<rewritten>"))[("f", 3)][0]
    assert code.co_names.count(rewrite.ITERATE) == 1


class Flag:
    def __init__(self):
        self.up = False


def spin_until_flag(set_it):
    flag = Flag()

    def setter():
        if set_it:
            flag.up = True

    thread = threading.Thread(target=setter)
    thread.start()
    while not flag.up:  # a busy wait on a plain attribute: no call, no store, no sleep
        pass
    thread.join()


def test_busy_wait_on_a_plain_flag_sees_the_flag_change():
    assert detsched.explore(lambda: spin_until_flag(True), runs=200).failure is None


def test_busy_wait_that_never_ends_is_a_livelock():
    failure = detsched.explore(lambda: spin_until_flag(False), runs=1, max_steps=500).failure
    assert failure.kind == "livelock"
    assert "poll not flag.up" in failure.timeline()


DONE = threading.Event()


def wait_in_a_loop_that_reads_shared_state():
    """The loop's condition reads a global, but its body waits: not a spin, so time passes only
    as the waits say."""
    threading.Thread(target=time.sleep, args=(10,), daemon=True).start()  # a deadline time could jump to
    start = time.monotonic()
    while not DONE.is_set() and time.monotonic() - start < 3:
        DONE.wait(1)
    assert abs(time.monotonic() - start - 3) < 0.01, time.monotonic() - start


def test_a_loop_that_waits_in_its_body_is_not_spinning():
    DONE.clear()
    assert detsched.explore(wait_in_a_loop_that_reads_shared_state, runs=5).failure is None


def test_functions_sharing_a_line_keep_their_source_order():
    source = "pick = (lambda: 1, lambda x: x)\ndef f(obj):\n    obj.x = 1\n"
    found = code_objects(rewrite_module(source, "<rewritten>"))
    assert [code.co_argcount for code in found[("<lambda>", 1)]] == [0, 1] and len(found[("f", 2)]) == 1


def store_points(source: str) -> list[str]:
    """The store points ``source``'s rewritten code announces, in order, when its ``main()`` runs."""
    announced = []
    namespace = dict(rewrite.helpers(Points()), **{rewrite.POINT: announced.append, rewrite.CALL: lambda d: None})
    exec(rewrite_module(source, "<rewritten>"), namespace)
    namespace["main"]()
    return announced


MATCHING = '''
import enum


class Colour(enum.Enum):
    RED = 1
    BLUE = 2


class Point:
    __match_args__ = ("x", "y")

    def __init__(self, x, y):
        self.x, self.y = x, y


def describe(value):
    match value:
        case Point(0, y=height):
            return f"on the y axis at {height}"
        case Colour.RED:
            return "red"
        case {Colour.RED: shade}:
            return f"a red of {shade}"
        case enum.Enum(name=name):
            return f"another colour: {name}"
        case _:
            return "something else"


def main():
    return [describe(Point(0, 3)), describe(Colour.RED), describe({Colour.RED: "dark"}), describe(Colour.BLUE),
            describe(1)]
'''


def test_class_value_and_mapping_patterns_keep_their_meaning_with_access_reports():
    # A ``case`` names classes and values by plain names and attribute lookups only: reporting
    # those reads would make code that does not compile, and the module would lose its race checks.
    namespace = dict(rewrite.helpers(Points(), report_accesses=False))
    exec(rewrite_module(MATCHING, "<rewritten>", None, points=True, accesses_checked=True), namespace)
    assert namespace["main"]() == ["on the y axis at 3", "red", "a red of dark", "another colour: BLUE", "something else"]


def test_a_store_in_a_nested_function_is_one_point_at_any_depth():
    source = '''
def main():
    counter = [0]

    def outer():
        def inner():
            counter[0] += 1
        inner()
        counter[0] += 1
    outer()
    counter[0] += 1
    return counter
'''
    assert store_points(source) == ["store counter[0]"] * 3


def test_a_method_of_a_class_defined_in_a_function_is_rewritten_once():
    source = '''
def main():
    class Box:
        def put(self, value):
            self.value = value
    Box().put(1)
'''
    assert store_points(source) == ["store self.value"]


FACTORIES = '''
import functools
import threading


def run_twice(work):
    threads = [threading.Thread(target=work) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def make_test():
    counter = [0]

    def worker():
        counter[0] += 1

    def test():
        counter[0] = 0
        run_twice(worker)
        assert counter[0] == 2, f"counter is {counter[0]}"
    return test


def make_partial_test():
    def add(box, amount):
        box["n"] += amount

    box = {"n": 0}
    bump = functools.partial(add, box, 1)

    def test():
        box["n"] = 0
        run_twice(bump)
        assert box["n"] == 2, f"n is {box['n']}"
    return test


def make_callbacks_test():
    totals = {"n": 0}

    def bump():
        totals["n"] += 1

    callbacks = [bump]

    def test():
        totals["n"] = 0
        run_twice(callbacks[0])
        assert totals["n"] == 2, f"n is {totals['n']}"
    return test


def class_in_the_test():
    class Counter:
        def __init__(self):
            self.n = 0

        def bump(self):
            self.n += 1

    counter = Counter()
    run_twice(counter.bump)
    assert counter.n == 2, f"n is {counter.n}"
'''


@pytest.mark.parametrize("factory", ["make_test", "make_partial_test", "make_callbacks_test"])
def test_a_lost_update_in_a_closure_handed_over_directly_is_found(make_module, factory):
    # No module global refers to the test function: only the target's closure reaches the worker.
    module = make_module("closure_factories", FACTORIES)
    failure = detsched.explore(getattr(module, factory)(), runs=500).failure
    assert failure is not None and failure.kind == "exception", failure
    assert "is 1" in failure.message


def test_a_lost_update_in_a_method_of_a_class_defined_in_the_test_is_found(make_module):
    module = make_module("class_in_test", FACTORIES)
    failure = detsched.explore(module.class_in_the_test, runs=500).failure
    assert failure is not None and failure.message.startswith("AssertionError: n is 1")


def test_closures_get_their_code_back_after_the_run(make_module):
    module = make_module("closure_restored", FACTORIES)
    test = module.make_test()
    worker = dict(zip(test.__code__.co_freevars, (cell.cell_contents for cell in test.__closure__)))["worker"]
    before = worker.__code__
    detsched.explore(test, runs=3)
    assert worker.__code__ is before


CALLS = '''
import sys
import threading

SEEN_PROFILERS = []


class Ledger:
    def post(self):
        """Entries go through here."""
        SEEN_PROFILERS.append(sys.getprofile())


def entries():
    yield 1


# Two lambdas on one line, made before any run: told apart by position.
PICK = {"first": lambda: 1, "second": lambda ledger: ledger.post()}


def main():
    ledger = Ledger()
    apply = lambda: ledger.post()

    def work():  # a thread's target is entered by detsched itself: no point there
        apply()

    worker = threading.Thread(target=work)
    worker.start()
    list(entries())
    worker.join()
    PICK["second"](ledger)
'''


def test_call_points_come_from_the_rewritten_code_on_every_version(make_module):
    module = make_module("call_points", CALLS)
    result = run_once(resolve(module.main), PositionReplay(()), 0, Limits(), tracing=True)
    calls = [row.op for row in result.trace if row.op.startswith("call ")]
    # A lambda and a method are entered (named as co_qualname names them); a generator is not.
    assert calls == ["call main.<locals>.<lambda>()", "call Ledger.post()", "call <lambda>()", "call Ledger.post()"]
    assert module.SEEN_PROFILERS == [None] * 2  # no profile hook: one mechanism on every version
