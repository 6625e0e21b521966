"""A pipeline of stages joined by bounded queues, whose shutdown sometimes hangs.

A reader feeds raw lines into a bounded queue, two parser threads turn them into records and put
those into a second bounded queue, and a writer collects the records. Shutdown uses the usual
sentinel: the reader puts one ``STOP`` per parser, and each parser passes a ``STOP`` on to the
writer when it gets one.

The writer stops at the *first* ``STOP``. That is right only if that parser was the last one
still working; the other may still be parsing its last line. Its record then goes into a queue
nobody reads, its own ``STOP`` finds the queue full, and it blocks in ``put()`` for ever -- while
the main thread waits to join it. The pipeline hangs at shutdown, and only when the two parsers
finish close together. ``detsched run examples/pipeline.py::main`` reports which thread waits for
what.

The fixed twin's writer counts the ``STOP`` markers and stops after it has one from every
parser, so every record is written and every stage ends.
"""

import queue
import threading

STOP = object()  # the end-of-stream marker


def parse(line):
    name, _, amount = line.partition(",")
    return name, int(amount)


def run_pipeline(lines, writer_waits_for_every_parser, parsers=2):
    raw = queue.Queue(maxsize=1)
    records = queue.Queue(maxsize=1)
    written = []

    def read():
        for line in lines:
            raw.put(line)
        for _ in range(parsers):
            raw.put(STOP)

    def parse_lines():
        while True:
            line = raw.get()
            if line is STOP:
                records.put(STOP)
                return
            records.put(parse(line))

    def write():
        stops_expected = parsers if writer_waits_for_every_parser else 1
        while stops_expected:
            record = records.get()
            if record is STOP:
                stops_expected -= 1
            else:
                written.append(record)

    stages = [threading.Thread(target=read, name="reader")]
    stages += [threading.Thread(target=parse_lines, name=f"parser-{n}") for n in range(parsers)]
    stages.append(threading.Thread(target=write, name="writer"))
    for stage in stages:
        stage.start()
    for stage in stages:
        stage.join()
    assert len(written) == len(lines), f"wrote {len(written)} of {len(lines)} records"


ORDERS = ["ada,3", "grace,5", "alan,2", "edsger,7"]


def main():
    run_pipeline(ORDERS, writer_waits_for_every_parser=False)


def fixed():
    run_pipeline(ORDERS, writer_waits_for_every_parser=True)

