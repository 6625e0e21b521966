"""Programs the tests write to files: a lost update under a lock taken twice, the bug most CLI and
schedule tests start from, and its fix."""

LOST_UPDATE = """
import threading

def transfer(account, lock):
    with lock:
        balance = account["balance"]
    with lock:
        account["balance"] = balance + 10

def main():
    account, lock = {"balance": 0}, threading.Lock()
    threads = [threading.Thread(target=transfer, args=(account, lock)) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert account["balance"] == 20, f"balance is {account['balance']}, expected 20"
"""
#: The read and the write in one critical section.
LOST_UPDATE_FIXED = LOST_UPDATE.replace('        balance = account["balance"]\n    with lock:\n',
                                        '        balance = account["balance"]\n')
assert LOST_UPDATE_FIXED != LOST_UPDATE
