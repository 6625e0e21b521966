"""Try-lock and retry without backoff: a livelock.

Two workers each update two shared resources; each takes the lock of its own resource first, then
*tries* the other's (``acquire(blocking=False)``) and, if that fails, releases its own and starts
again, so that it never holds one lock while waiting for another -- the textbook way to avoid a
deadlock. With no backoff, two workers that start together can take their first locks, fail their
tries, release and retry in lockstep, round after round; each gives up after five rounds. On real
threads the lockstep rarely lasts (one thread gets ahead); a preemption at the same point of each
round keeps it going.

``detsched run examples/livelock.py::main`` finds the lockstep (``RuntimeError: gave up after 5
rounds``). The fixed twin takes the two locks in one global order (by name), which needs no retry.
"""

import threading

ROUNDS = 5


def update(locks, first, second, name, log):
    for _ in range(ROUNDS):
        with locks[first]:
            if locks[second].acquire(blocking=False):
                try:
                    log.append(name)
                    return
                finally:
                    locks[second].release()
        # released our own lock: try again at once (no backoff)
    raise RuntimeError(f"{name} gave up after {ROUNDS} rounds: the other worker always held the lock it needed")


def ordered(locks, first, second, name, log):
    low, high = sorted((first, second))
    with locks[low], locks[high]:
        log.append(name)


def run(work):
    locks, log = {"a": threading.Lock(), "b": threading.Lock()}, []
    workers = [threading.Thread(target=work, args=(locks, "a", "b", "left", log), name="left"),
               threading.Thread(target=work, args=(locks, "b", "a", "right", log), name="right")]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert sorted(log) == ["left", "right"], log


def main():
    run(update)


def fixed():
    run(ordered)
