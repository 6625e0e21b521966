"""Two async transfers lock the same two accounts in opposite orders: a deadlock (ABBA).

``transfer`` locks the paying account, records the transfer in the audit log (an await), then
locks the receiving account and moves the money. Alice pays Bob while Bob pays Alice, Bob's
request arriving one step later. Under ``asyncio.run`` Alice's transfer always finishes its audit
and takes both locks before Bob's starts, so the test passes every time. If the audit log answers
Alice a little later -- nothing forbids it -- Bob's transfer locks Bob's account first: each
transfer then holds one lock and waits for the other's, for ever, and the service hangs.
``detsched run examples/aio_deadlock.py::main`` reports the wait-for chain: which task waits for
which lock, held by which task, where.

The fixed twin takes the two locks in one global order (by account name), so no two transfers
can each hold the lock the other needs.
"""

import asyncio


class Account:
    def __init__(self, name, balance):
        self.name = name
        self.balance = balance
        self.lock = asyncio.Lock()


class AuditLog:
    def __init__(self):
        self.entries = []

    async def record(self, entry):
        await asyncio.sleep(0)  # the write to the log service
        self.entries.append(entry)


async def transfer(audit, source, target, amount):
    async with source.lock:
        await audit.record(f"{source.name} -> {target.name}: {amount}")
        async with target.lock:
            source.balance -= amount
            target.balance += amount


async def ordered_transfer(audit, source, target, amount):
    first, second = sorted((source, target), key=lambda account: account.name)
    async with first.lock:
        await audit.record(f"{source.name} -> {target.name}: {amount}")
        async with second.lock:
            source.balance -= amount
            target.balance += amount


async def serve(transfer_function):
    audit = AuditLog()
    alice, bob = Account("alice", 100), Account("bob", 100)

    async def request(arrives_after_steps, source, target, amount):
        for _ in range(arrives_after_steps):
            await asyncio.sleep(0)
        await transfer_function(audit, source, target, amount)

    await asyncio.gather(request(0, alice, bob, 30), request(1, bob, alice, 20))
    assert (alice.balance, bob.balance) == (90, 110)


async def main():
    await serve(transfer)


async def fixed():
    await serve(ordered_transfer)
