"""Two async transfers lock the same two accounts in opposite orders: a deadlock (ABBA).

``transfer`` locks the paying account, records the transfer in the audit log, then locks the
receiving account and moves the money. The audit log's client is blocking, so it writes on a
thread of its own (a one-worker ``ThreadPoolExecutor``, which keeps the entries in order) and the
transfer awaits the write. Alice pays Bob while Bob pays Alice, Bob's request arriving three loop
steps later.

Under ``asyncio.run`` the stub client answers at once, and the test nearly always passes: the
audit thread, started for Alice's write, answers before the loop goes on, so her transfer takes
both locks and finishes before Bob's starts (none of 1,000 runs hung, on Python 3.10 to 3.13, when
this example was written). But nothing makes the audit thread that fast: if it answers Alice after
Bob's request has arrived, Bob's transfer locks Bob's account first, each transfer then holds one
lock and waits for the other's, for ever, and the service hangs. With the audit thread already
running, as in a service that has been up a while, 165 to 179 of 200 runs hung, depending on the
Python version.
``detsched run examples/aio_deadlock.py::main`` interleaves the audit thread with the event loop's
steps; in its first run the thread answers only once the loop has nothing left to do, and it
reports the deadlock: which task waits for which lock, held by which task, with each task's stack.

The fixed twin takes the two locks in one global order (by account name), so no two transfers
can each hold the lock the other needs.
"""

import asyncio
from concurrent.futures import ThreadPoolExecutor


class Account:
    def __init__(self, name, balance):
        self.name = name
        self.balance = balance
        self.lock = asyncio.Lock()


class AuditLog:
    def __init__(self, writer):
        self.writer = writer
        self.entries = []

    def write(self, entry):  # the blocking client's write to the log service
        self.entries.append(entry)

    async def record(self, entry):
        await asyncio.get_running_loop().run_in_executor(self.writer, self.write, entry)


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
    writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="audit")
    audit = AuditLog(writer)
    alice, bob = Account("alice", 100), Account("bob", 100)

    async def request(arrives_after_steps, source, target, amount):
        for _ in range(arrives_after_steps):
            await asyncio.sleep(0)
        await transfer_function(audit, source, target, amount)

    await asyncio.gather(request(0, alice, bob, 30), request(3, bob, alice, 20))
    writer.shutdown()  # both writes are done: this does not wait
    assert (alice.balance, bob.balance) == (90, 110)


async def main():
    await serve(transfer)


async def fixed():
    await serve(ordered_transfer)
