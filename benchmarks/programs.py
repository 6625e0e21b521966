"""The programs the benchmarks run, in a module of their own that imports nothing but the
standard library, so that the peers' interpreters (``bench_peers.py``) run exactly what detsched
runs. Every program passes: each tool runs all the runs it is asked for."""

import asyncio
import functools
import threading


def lock_counter_work(state):
    for _ in range(10):
        with state["lock"]:
            state["n"][0] += 1


def lock_counter_setup():
    return {"lock": threading.Lock(), "n": [0]}


def bank_setup():
    return {"locks": [threading.Lock() for _ in range(4)], "balances": [100] * 4, "next": [0]}


def teller(me, state):
    locks, balances = state["locks"], state["balances"]
    for transfer in range(5):
        source, target = me, (me + 1 + transfer) % 4
        if source == target:
            continue
        first, second = sorted((source, target))
        with locks[first], locks[second]:
            balances[source] -= 1
            balances[target] += 1


TELLERS = [functools.partial(teller, me) for me in range(4)]


def run_threads(state, workers):
    threads = [threading.Thread(target=work, args=(state,)) for work in workers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def lock_counter():
    state = lock_counter_setup()
    run_threads(state, [lock_counter_work] * 2)
    assert state["n"][0] == 20


def bank():
    state = bank_setup()
    run_threads(state, TELLERS)
    assert sum(state["balances"]) == 400


async def sleeper(state):
    for _ in range(20):
        await asyncio.sleep(0)
    state["done"] += 1


async def two_tasks():
    state = {"done": 0}
    await asyncio.gather(sleeper(state), sleeper(state))
    assert state["done"] == 2
