"""A worker thread never told to stop: it is left blocked when the test returns.

A background indexer takes documents from a queue until a ``stop`` event is set, checking the
event before each ``get()``. The service's ``close()`` sets the event and returns. If the worker is
between two documents when ``close()`` runs, it sees the event and ends. If it is already blocked
in ``get()`` on the empty queue -- it usually is -- nothing ever wakes it: the thread is left
behind, and the interpreter waits for it at exit (or a test suite hangs at the end). Whether the
worker got to its ``get()`` first is a matter of timing.

``detsched run examples/stop_signal.py::main`` reports the leak: the worker is still blocked in
``get()`` after the test returned. The fixed twin also puts a sentinel into the queue, which wakes
a worker blocked in ``get()``.
"""

import queue
import threading

_STOP = object()


class Indexer:
    def __init__(self, wake_on_close: bool):
        self.documents, self.stop, self.indexed = queue.Queue(), threading.Event(), []
        self.wake_on_close = wake_on_close
        self.worker = threading.Thread(target=self.work, name="indexer")
        self.worker.start()

    def work(self):
        while not self.stop.is_set():
            document = self.documents.get()
            if document is _STOP:
                return
            self.indexed.append(document)

    def close(self):
        self.stop.set()
        if self.wake_on_close:
            self.documents.put(_STOP)


def run(wake_on_close: bool):
    indexer = Indexer(wake_on_close)
    indexer.documents.put("readme")
    indexer.close()


def main():
    run(wake_on_close=False)


def fixed():
    run(wake_on_close=True)
