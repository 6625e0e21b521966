"""detsched.hypothesis.schedules(): Hypothesis chooses where the scheduler deviates, shrinks a
failing interleaving to the fewest preemptions, and keeps it in its example database."""

import functools
import threading

import pytest
from hypothesis import Phase, given, seed, settings, strategies as st
from hypothesis.database import InMemoryExampleDatabase

import detsched
from detsched.hypothesis import InterleavingFailure, schedules


class Account:
    """Deposits read and write the balance under the lock, but in two separate regions."""

    def __init__(self):
        self.balance = 0
        self.lock = threading.Lock()

    def deposit(self, amount):
        with self.lock:
            seen = self.balance
        with self.lock:
            self.balance = seen + amount

    def safe_deposit(self, amount):
        with self.lock:
            self.balance += amount


def deposit_twice(deposit_name="deposit", amount=1):
    account = Account()
    threads = [threading.Thread(target=getattr(account, deposit_name), args=(amount,)) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert account.balance == 2 * amount, f"balance {account.balance}, expected {2 * amount}"


def lock_order_deadlock():
    first, second = threading.Lock(), threading.Lock()

    def one():
        with first:
            with second:
                pass

    def other():
        with second:
            with first:
                pass

    threads = [threading.Thread(target=one), threading.Thread(target=other)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def searched(body, *, database=None, examples=300, search_seed=0):
    """Run a Hypothesis search over schedules of ``body``; return the drawn schedules and how each
    example ended (None: passed), then re-raise what the search raised."""
    drawn, outcomes = [], []

    @settings(max_examples=examples, database=database, deadline=None)
    @given(schedules())
    def search(schedule):
        drawn.append(schedule)
        try:
            schedule.run(body)
        except InterleavingFailure as failure:
            outcomes.append(failure)
            raise
        outcomes.append(None)

    # A fixed seed keeps the search reproducible; Hypothesis then leaves its database alone.
    return (search if search_seed is None else seed(search_seed)(search)), drawn, outcomes


@functools.cache
def lost_update(search_seed: int):
    """What a search over ``deposit_twice`` raised, and the last schedule it drew (searched once
    per seed and shared: each search takes seconds)."""
    search, drawn, _ = searched(deposit_twice, search_seed=search_seed)
    with pytest.raises(InterleavingFailure) as caught:
        search()
    return caught.value, drawn[-1]


@pytest.mark.parametrize("search_seed", [0, 1])
def test_lost_update_shrinks_to_one_preemption(search_seed):
    _, last = lost_update(search_seed)
    assert last.schedule.preemptions == 1


def test_fixed_twin_passes_every_example():
    search, drawn, outcomes = searched(lambda: deposit_twice("safe_deposit"), examples=100)
    search()
    assert len(drawn) == 100 and set(outcomes) == {None}


def test_reported_failure_shows_the_interleaving_and_how_to_replay_it():
    failure, _ = lost_update(0)
    text = str(failure)
    assert "exception: AssertionError: balance 1, expected 2" in text
    assert "Interleaving (1 preemption," in text
    assert "Hypothesis keeps this example in its database" in text
    replay_line = next(line.strip() for line in text.splitlines() if line.strip().startswith("detsched.replay("))
    compile(replay_line, "<replay line>", "eval")  # a line a user can paste


def test_reported_schedule_replays_the_failure_outside_hypothesis():
    _, last = lost_update(0)
    failure = detsched.replay(deposit_twice, last.schedule.dumps())
    assert failure.kind == "exception"
    assert failure.message.startswith("AssertionError: balance 1, expected 2")


def test_example_database_replays_the_failing_interleaving_first():
    database = InMemoryExampleDatabase()
    first, _, _ = searched(deposit_twice, database=database, search_seed=None)
    with pytest.raises(InterleavingFailure):
        first()
    again, _, outcomes = searched(deposit_twice, database=database, search_seed=None)
    with pytest.raises(InterleavingFailure):
        again()
    assert outcomes[0] is not None


def test_inputs_and_interleavings_shrink_together():
    drawn, amounts = [], []

    def deposit(amount):
        if amount < 10:  # small deposits are safe: the race needs the two-region path
            deposit_twice("safe_deposit", amount)
        else:
            deposit_twice("deposit", amount)

    @seed(0)
    @settings(max_examples=300, database=None, deadline=None)
    @given(schedules(), st.integers(1, 1000))
    def search(schedule, amount):
        drawn.append(schedule)
        amounts.append(amount)
        schedule.run(lambda: deposit(amount))

    with pytest.raises(InterleavingFailure):
        search()
    assert (amounts[-1], drawn[-1].schedule.preemptions) == (10, 1)


def test_each_failure_kind_is_its_own_exception_type():
    search, _, _ = searched(lock_order_deadlock)
    with pytest.raises(InterleavingFailure) as caught:
        search()
    assert type(caught.value).__name__ == "DeadlockFound"
    assert caught.value.kind == "deadlock"
    assert "deadlock: T" in str(caught.value)


def test_a_drawn_schedule_runs_one_target_once():
    # No shrinking: every example fails the same way, and shrinking would only run it again.
    @settings(max_examples=1, database=None, phases=[Phase.generate])
    @given(schedules())
    def twice(schedule):
        schedule.run(lambda: deposit_twice("safe_deposit"))
        schedule.run(lambda: deposit_twice("safe_deposit"))

    with pytest.raises(detsched.DetschedUsageError, match="a drawn schedule runs one target once"):
        twice()
