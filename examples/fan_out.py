"""Fan-out/fan-in where one worker's failure is lost: a thread dies and its result silently goes missing.

``sales_report`` starts one thread per region to add up that region's sales, joins them all and
sums the per-region totals into a company total. One region's export contains a row that is not a
number. ``int("n/a")`` raises in that region's thread; the thread dies, ``threading`` prints a
traceback to stderr (which nobody reads on a server), ``join()`` returns as usual, and the report
comes out with a company total that is simply missing a region. No exception reaches the caller.

``detsched run examples/fan_out.py::main`` treats an uncaught exception in any thread as a
failure, so the lost error is reported with the thread that raised it and its traceback.

The fixed twin runs the regions on a ``ThreadPoolExecutor``: an exception raised in a task is kept
in its future and ``future.result()`` raises it again in the caller, who decides what to do --
here, it lists the regions that failed next to the total, instead of hiding them.
"""

import threading
from concurrent.futures import ThreadPoolExecutor

SALES = {
    "north": ["120", "80", "45"],
    "south": ["60", "75"],
    "west": ["200", "n/a", "15"],  # a gap in the export
    "east": ["90", "30"],
}


def region_total(rows):
    return sum(int(row) for row in rows)


def sales_report(sales):
    totals = {}
    lock = threading.Lock()

    def add_up(region):
        total = region_total(sales[region])
        with lock:
            totals[region] = total

    workers = [threading.Thread(target=add_up, args=(region,), name=region) for region in sales]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return {"total": sum(totals.values()), "regions": sorted(totals)}


def sales_report_with_failures(sales):
    with ThreadPoolExecutor(max_workers=len(sales)) as pool:
        futures = {region: pool.submit(region_total, rows) for region, rows in sales.items()}
    totals, failed = {}, {}
    for region, future in futures.items():
        try:
            totals[region] = future.result()
        except ValueError as error:
            failed[region] = str(error)
    return {"total": sum(totals.values()), "regions": sorted(totals), "failed": failed}


def main():
    sales_report(SALES)


def fixed():
    report = sales_report_with_failures(SALES)
    assert set(report["regions"]) | set(report["failed"]) == set(SALES), f"regions lost: {report}"


if __name__ == "__main__":
    print(sales_report(SALES))  # west's traceback goes to stderr; the total just lacks it
    print(sales_report_with_failures(SALES))
