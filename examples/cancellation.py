"""Cancellation that leaves work running: a timed-out payment that still goes through.

``checkout`` charges the customer through a slow payment gateway on a ``ThreadPoolExecutor`` and
gives the gateway a deadline: ``future.result(timeout=...)``. On ``TimeoutError`` it calls
``future.cancel()`` and tells the customer the payment failed and they have not been charged.

``Future.cancel()`` only cancels a task that has not started yet. A charge already running keeps
running -- ``cancel()`` returns False, and the code ignores it -- and completes after the customer
has been told it did not. When the gateway is slow, customers are charged for orders they were
told had failed. (With a queue of waiting charges, ``cancel()`` does work for the ones that have
not started, which is why the code looks right in a quick test.) Timeouts run on detsched's
virtual clock, so a 0.3 s charge against a 0.2 s deadline is explored in no time:
``detsched run examples/cancellation.py::main``.

The fixed twin checks what ``cancel()`` returns: if the charge could not be stopped, it waits for
its real outcome instead of guessing.
"""

import threading
import time
from concurrent.futures import ThreadPoolExecutor, TimeoutError


class PaymentGateway:
    def __init__(self):
        self.charged = {}
        self._lock = threading.Lock()

    def charge(self, customer, amount):
        time.sleep(0.3)  # the bank is slow today
        with self._lock:
            self.charged[customer] = self.charged.get(customer, 0) + amount


def checkout(pool, gateway, customer, amount):
    future = pool.submit(gateway.charge, customer, amount)
    try:
        future.result(timeout=0.2)
    except TimeoutError:
        future.cancel()  # does nothing if the charge is already running
        return "failed"
    return "paid"


def checkout_and_confirm(pool, gateway, customer, amount):
    future = pool.submit(gateway.charge, customer, amount)
    try:
        future.result(timeout=0.2)
    except TimeoutError:
        if future.cancel():
            return "failed"
        future.result()  # too late to cancel: the charge is going through
    return "paid"


def serve_customers(checkout_function):
    """Two customers check out at once; nobody may be charged for an order reported as failed."""
    gateway = PaymentGateway()
    outcomes = {}
    with ThreadPoolExecutor(max_workers=1) as pool:
        def shop(customer, amount):
            outcomes[customer] = checkout_function(pool, gateway, customer, amount)

        customers = [threading.Thread(target=shop, args=("alice", 30)),
                     threading.Thread(target=shop, args=("bob", 45))]
        for customer in customers:
            customer.start()
        for customer in customers:
            customer.join()
    for customer, outcome in outcomes.items():
        charged = gateway.charged.get(customer, 0)
        if outcome != "paid":
            assert charged == 0, f"{customer} was charged {charged} for an order reported as {outcome}"


def main():
    serve_customers(checkout)


def fixed():
    serve_customers(checkout_and_confirm)

