"""An actor that waits for a reply from itself.

An account actor owns its state and serves one message at a time from its mailbox; clients
``ask()`` it (send a message with a reply queue, wait for the answer). Deposits are buffered and
applied by a ``"flush"`` message. Asked for the balance while deposits are still buffered, the
actor flushes first -- by *asking itself* ``"flush"``. That message sits in its own mailbox, behind
the one it is serving, and the actor waits for the reply for ever; so do its clients. It only
happens when a deposit arrives before the balance request, which on real threads is a matter of
which client thread starts first.

``detsched run examples/actor_mailbox.py::main`` reports the deadlock (every thread waits on a
queue nothing will fill). The fixed twin applies the buffer inline: an actor never asks itself.
"""

import queue
import threading


class Account:
    def __init__(self, ask_itself: bool):
        self.mailbox = queue.Queue()
        self.balance, self.buffered = 0, []
        self.ask_itself = ask_itself
        self.thread = threading.Thread(target=self.serve, name="actor")

    def ask(self, *message):
        reply = queue.Queue()
        self.mailbox.put((message, reply))
        return reply.get()

    def serve(self):
        while True:
            (kind, *args), reply = self.mailbox.get()
            if kind == "stop":
                reply.put(None)
                return
            reply.put(self.handle(kind, *args))

    def handle(self, kind, *args):
        if kind == "deposit":
            self.buffered.append(args[0])
            return None
        if kind == "flush":
            self.balance += sum(self.buffered)
            self.buffered.clear()
            return None
        if kind == "balance":
            if self.buffered:
                if self.ask_itself:
                    self.ask("flush")  # queued behind the message being served: never answered
                else:
                    self.handle("flush")
            return self.balance
        raise ValueError(kind)


def run(ask_itself: bool):
    account = Account(ask_itself)
    account.thread.start()
    seen = []
    clients = [threading.Thread(target=account.ask, args=("deposit", 10), name="depositor"),
               threading.Thread(target=lambda: seen.append(account.ask("balance")), name="reader")]
    for client in clients:
        client.start()
    for client in clients:
        client.join()
    account.ask("stop")
    account.thread.join()
    assert seen[0] in (0, 10), seen


def main():
    run(ask_itself=True)


def fixed():
    run(ask_itself=False)
