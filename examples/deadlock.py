"""A lock-order (ABBA) deadlock: two transfers that lock the same two accounts in opposite orders.

Each ``Account`` has its own lock, so transfers between unrelated accounts run in parallel. A
transfer locks the account it pays from, then the account it pays to, and moves the money while
holding both.

alice -> bob locks alice, then bob; bob -> alice locks bob, then alice. If each transfer takes
its first lock before the other takes its second, each waits for the lock the other holds, for
ever. In production the process just hangs; ``detsched run examples/deadlock.py::main`` reports
the wait-for cycle (which thread waits for which lock, held by whom) with both stacks.

The fixed twin takes the two locks in one global order -- by account number -- whatever the
direction of the payment, so no cycle can form.
"""

import threading


class Account:
    def __init__(self, number, balance):
        self.number = number
        self.balance = balance
        self.lock = threading.Lock()


def transfer(source, target, amount):
    with source.lock:
        with target.lock:
            source.balance -= amount
            target.balance += amount


def ordered_transfer(source, target, amount):
    # Lock the lower account number first, so every transfer takes the locks in the same order.
    first, second = sorted((source, target), key=lambda account: account.number)
    with first.lock:
        with second.lock:
            source.balance -= amount
            target.balance += amount


def pay_each_other(transfer_function):
    alice, bob = Account(1, 100), Account(2, 100)
    payments = [threading.Thread(target=transfer_function, args=(alice, bob, 10)),
                threading.Thread(target=transfer_function, args=(bob, alice, 20))]
    for payment in payments:
        payment.start()
    for payment in payments:
        payment.join()
    assert (alice.balance, bob.balance) == (110, 90), f"balances are {alice.balance} and {bob.balance}"


def main():
    pay_each_other(transfer)


def fixed():
    pay_each_other(ordered_transfer)

