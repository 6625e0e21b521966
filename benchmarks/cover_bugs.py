"""Small bug programs for ``bench_cover.py`` and ``compare.py``: each fails under some interleavings
only, and ``<name>_fixed`` is its twin that never does. They are written the way users write
threaded code, and none is one of the bundled examples."""

import threading


def run_all(*bodies):
    """Start a thread per body, then join them all."""
    threads = [threading.Thread(target=body) for body in bodies]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def split_critical_section(fixed=False):
    """Read and write in two critical sections: a lost update between them."""
    lock, box = threading.Lock(), [0]

    def add():
        if fixed:
            with lock:
                box[0] += 1
            return
        with lock:
            seen = box[0]
        with lock:
            box[0] = seen + 1

    run_all(add, add, add)
    assert box[0] == 3, box


def late_initialisation(fixed=False):
    """A reader that must run after the writer's second critical section, not between the two."""
    lock, state = threading.Lock(), {"ready": False, "value": None}

    def init():
        if fixed:
            with lock:
                state["value"] = 42
                state["ready"] = True
            return
        with lock:
            state["ready"] = True
        with lock:
            state["value"] = 42

    def read():
        with lock:
            if state["ready"]:
                assert state["value"] == 42, "read a half-initialised state"

    run_all(init, read)


def three_stage_order(fixed=False):
    """Fails only if stage 3 runs between stage 1 and stage 2: depth 2 among three threads."""
    lock, log = threading.Lock(), []

    def stage(name):
        def body():
            for _ in range(3):
                with lock:
                    pass
            with lock:
                log.append(name)
        return body

    run_all(stage(1), stage(2), stage(3))
    if fixed:  # the twin accepts every order, as its callers should
        assert sorted(log) == [1, 2, 3], log
    else:
        assert log[:2] != [1, 3], log


def wrong_waiter(fixed=False):
    """One condition for two predicates, and notify() where notify_all() is needed."""
    cond, items = threading.Condition(), []

    def put():
        for n in range(2):
            with cond:
                while len(items) == 1:
                    cond.wait()
                items.append(n)
                cond.notify_all() if fixed else cond.notify()

    def get():
        for _ in range(2):
            with cond:
                while not items:
                    cond.wait()
                items.pop()
                cond.notify_all() if fixed else cond.notify()

    run_all(put, put, get, get)


BUGS = ("split_critical_section", "late_initialisation", "three_stage_order", "wrong_waiter")

for _name in BUGS:  # the fixed twins, <name>_fixed
    globals()[f"{_name}_fixed"] = (lambda function: lambda: function(fixed=True))(globals()[_name])
