"""A worker pool whose tasks append to a shared list: results land in completion order.

``fetch_prices`` asks a (slow) quote service for several stock prices at once, one task per
symbol on a ``ThreadPoolExecutor``. Each task appends its price to a shared list, and when the
pool is done the list is zipped with the symbols.

The list is in the order the tasks *finished*, not the order they were submitted. While every
quote takes as long as every other and the tasks happen to finish in submission order, the zip
pairs each symbol with its own price; when two replies arrive together and finish the other way
round, AAPL gets MSFT's price, and nothing complains. ``detsched run
examples/worker_pool.py::main`` finds an order in which they finish differently.

The fixed twin lets each task *return* its price and collects them with ``pool.map``, which
yields results in the order of its inputs whatever order the tasks finish in: no shared state.
"""

import time
from concurrent.futures import ThreadPoolExecutor

QUOTES = {"AAPL": 189.5, "MSFT": 411.2, "GOOG": 141.8}


def get_quote(symbol):
    time.sleep(0.05)  # a round trip to the quote service
    return QUOTES[symbol]


def fetch_prices(symbols):
    prices = []

    def fetch(symbol):
        prices.append(get_quote(symbol))

    with ThreadPoolExecutor(max_workers=4) as pool:
        for symbol in symbols:
            pool.submit(fetch, symbol)
    return dict(zip(symbols, prices))


def fetch_prices_in_order(symbols):
    with ThreadPoolExecutor(max_workers=4) as pool:
        return dict(zip(symbols, pool.map(get_quote, symbols)))


def check_prices(fetch_function):
    prices = fetch_function(list(QUOTES))
    for symbol, price in prices.items():
        assert price == QUOTES[symbol], f"price of {symbol} is {price}, expected {QUOTES[symbol]}"


def main():
    check_prices(fetch_prices)


def fixed():
    check_prices(fetch_prices_in_order)

