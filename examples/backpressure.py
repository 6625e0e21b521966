"""Backpressure with a lock held: a producer blocks on a full queue while holding the lock its
consumer needs.

A metrics pipeline: the producer records each sample in a shared ``stats`` dict and hands it to a
bounded queue, both under one lock so that ``stats`` and the queue agree. The consumer takes a
sample off the queue and then, under the same lock, marks it done in ``stats``. While the queue has
room nothing goes wrong. When it is full, ``put()`` blocks *inside* the lock; the consumer, which
would make room, first needs that lock for its previous sample -- and waits for ever. Whether the
queue is full at that moment depends on how far ahead the producer ran: a consumer that keeps up
hides it, one that falls two samples behind shows it.

``detsched run examples/backpressure.py::main`` reports the deadlock: the producer waits on the
full queue holding the lock, the consumer waits for the lock. The fixed twin puts into the queue
after leaving the lock: backpressure then blocks the producer alone.
"""

import queue
import threading


def run(put_under_lock: bool, samples: int = 3):
    stats, lock = {"sent": 0, "done": 0}, threading.Lock()
    samples_queue = queue.Queue(maxsize=1)

    def produce():
        for sample in range(samples):
            if put_under_lock:
                with lock:
                    stats["sent"] += 1
                    samples_queue.put(sample)  # blocks while full, with the lock held
            else:
                with lock:
                    stats["sent"] += 1
                samples_queue.put(sample)

    def consume():
        for _ in range(samples):
            samples_queue.get()
            with lock:
                stats["done"] += 1

    workers = [threading.Thread(target=produce, name="producer"), threading.Thread(target=consume, name="consumer")]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert stats == {"sent": samples, "done": samples}, stats


def main():
    run(put_under_lock=True)


def fixed():
    run(put_under_lock=False)
