"""A fire-and-forget task: the order confirmation may still be pending when the handler returns.

``Shop.place_order`` stores the order, starts sending the confirmation e-mail in a task of its
own so the customer need not wait for it, reserves the stock (in-process work that takes a few
loop steps) and writes an audit entry. Nobody keeps the confirmation task, awaits it or cancels
it. The mail and audit clients are blocking, so both calls run in worker threads
(``asyncio.to_thread``).

Under ``asyncio.run`` the stub mail client answers at once: the confirmation is nearly always
sent while the handler is still reserving the stock, before its audit write has even started
(none of 1,000 runs left it unsent, on Python 3.10 to 3.13, with the pool's threads new or already
running, when this example was written). But nothing makes it so: if the mail thread answers after
the audit thread does -- a slow mail server, a busy pool -- the handler returns with the
confirmation never sent, and
``asyncio.run`` cancels it on the way out (in a server, the task may be garbage collected
mid-flight, since the event loop keeps only a weak reference to it).
``detsched run examples/aio_leak.py::main`` interleaves the two worker threads with the event
loop's steps, finds an order in which the mail thread is the slower one (within a few dozen
runs), and reports the task left pending when the main coroutine returned, and where it stands.

The fixed twin keeps every confirmation task and awaits them before the handler returns.
"""

import asyncio


class Shop:
    def __init__(self):
        self.orders = []
        self.reserved = []
        self.confirmations = []
        self.audit = []
        self.sending = []

    def mail(self, order):  # the blocking mail client
        return f"Your order of {order} is confirmed."

    def write_audit(self, entry):  # the blocking audit client
        self.audit.append(entry)

    async def send_confirmation(self, order):
        await asyncio.to_thread(self.mail, order)
        self.confirmations.append(order)

    async def reserve_stock(self, order):
        for _ in range(3):  # in-process work: a few loop steps
            await asyncio.sleep(0)
        self.reserved.append(order)

    async def record(self, entry):
        await asyncio.to_thread(self.write_audit, entry)

    async def place_order(self, order):
        self.orders.append(order)
        asyncio.create_task(self.send_confirmation(order))
        await self.reserve_stock(order)
        await self.record(f"order {order}")

    async def place_order_and_confirm(self, order):
        self.orders.append(order)
        self.sending.append(asyncio.create_task(self.send_confirmation(order)))
        await self.reserve_stock(order)
        await self.record(f"order {order}")
        await asyncio.gather(*self.sending)


async def main():
    shop = Shop()
    await shop.place_order("book")
    assert shop.orders == ["book"]


async def fixed():
    shop = Shop()
    await shop.place_order_and_confirm("book")
    assert shop.confirmations == ["book"]
