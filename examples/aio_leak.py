"""A fire-and-forget task: the order confirmation may still be pending when the handler returns.

``Shop.place_order`` stores the order, starts sending the confirmation e-mail in a task of its
own so the customer need not wait for it, and writes an audit entry. Nobody keeps the task, awaits
it or cancels it. Under ``asyncio.run`` the confirmation task runs while the handler awaits its
audit write, so in this test it always finishes in time and the test passes. But nothing makes it
so: if the audit write answers first, the handler returns with the confirmation never sent, and
``asyncio.run`` cancels it on the way out (in a server, the task may be garbage collected
mid-flight, since the event loop keeps only a weak reference to it).
``detsched run examples/aio_leak.py::main`` reports the task left pending when the main coroutine
returned, and where it stands.

The fixed twin keeps every confirmation task and awaits them before the handler returns.
"""

import asyncio


class Shop:
    def __init__(self):
        self.orders = []
        self.confirmations = []
        self.audit = []
        self.sending = []

    async def send_confirmation(self, order):
        self.confirmations.append(order)

    async def record(self, entry):
        await asyncio.sleep(0)  # the write to the audit service
        self.audit.append(entry)

    async def place_order(self, order):
        self.orders.append(order)
        asyncio.create_task(self.send_confirmation(order))
        await self.record(f"order {order}")

    async def place_order_and_confirm(self, order):
        self.orders.append(order)
        self.sending.append(asyncio.create_task(self.send_confirmation(order)))
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
