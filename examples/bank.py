"""A lost update across two lock regions: a bank whose every method takes the lock.

``Bank`` keeps balances in a dict and guards it with one lock; every method takes that lock, so
the class looks thread-safe. ``transfer`` is written from those safe pieces: it reads the
balance, then writes the new one back. Each step is locked, but the transfer as a whole is not:
between reading a balance and writing it back, another thread's transfer can change it, and one
of the two writes is lost.

Run alice -> bob and bob -> alice at the same time and, once in a while, one balance is read by
both transfers before either writes it. One write wins, money appears or vanishes, and the total
is no longer 200. Called from a plain test, ``main()`` almost always passes; ``detsched run
examples/bank.py::main`` finds the interleaving in a few runs and replays it every time.

The fixed twin, ``AtomicBank``, does the whole transfer inside one lock region, so nobody can see
or change a balance half-way through.
"""

import threading


class Bank:
    def __init__(self, balances):
        self._balances = dict(balances)
        self._lock = threading.Lock()

    def balance(self, name):
        with self._lock:
            return self._balances[name]

    def set_balance(self, name, amount):
        with self._lock:
            self._balances[name] = amount

    def total(self):
        with self._lock:
            return sum(self._balances.values())

    def transfer(self, source, target, amount):
        if self.balance(source) < amount:
            raise ValueError(f"{source} cannot pay {amount}")
        # Each call is locked on its own, but another transfer can run between the read and the
        # write: the read-modify-write is not atomic.
        self.set_balance(source, self.balance(source) - amount)
        self.set_balance(target, self.balance(target) + amount)


class AtomicBank(Bank):
    def transfer(self, source, target, amount):
        with self._lock:
            if self._balances[source] < amount:
                raise ValueError(f"{source} cannot pay {amount}")
            self._balances[source] -= amount
            self._balances[target] += amount


def pay_each_other(bank):
    """alice and bob pay each other 10 at the same time; no money may appear or vanish."""
    payments = [threading.Thread(target=bank.transfer, args=("alice", "bob", 10)),
                threading.Thread(target=bank.transfer, args=("bob", "alice", 10))]
    for payment in payments:
        payment.start()
    for payment in payments:
        payment.join()
    total = bank.total()
    assert total == 200, f"total is {total}, expected 200"


def main():
    pay_each_other(Bank({"alice": 100, "bob": 100}))


def fixed():
    pay_each_other(AtomicBank({"alice": 100, "bob": 100}))

