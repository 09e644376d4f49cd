"""Batch functions for the remote-pool end-to-end tests (cmd/slither/remote_e2e_test.go)."""
import os
import time

import slither


def double(items):
    return [x * 2 for x in items]


def slow_double(items):
    time.sleep(0.002)
    return [x * 2 for x in items]


def sleep_ms(items):
    """Sleep-bound work: sleeps each item's milliseconds (the scale benchmark)."""
    for ms in items:
        time.sleep(ms / 1000)
    return items


def noop(items):
    return items


def whoami(items):
    return [os.getpid() for _ in items]


def fail_hundreds(items):
    """Fails a batch holding a multiple of 100 (other than 0)."""
    for x in items:
        if x and x % 100 == 0:
            raise ValueError(f"no hundreds: {x}")
    return items


def fail_odd_items(items):
    return [slither.failed(f"odd {x}") if x % 2 else x for x in items]


def count(items):
    s = slither.session()
    s["n"] = s.get("n", 0) + len(items)
    return [[s["n"], os.getpid()] for _ in items]


def price(items):
    return [slither.view("price", sku=sku) for sku in items]


def missing_view(items):
    return [slither.view("no_such_view", sku=sku) for sku in items]


def double_hang_once(items):
    """slow_double, except that the first batch holding 25000 hangs until its
    node is killed, after writing that node's pid (this worker's parent) to
    the file named by E2E_HANG_FILE: the test kills the node holding it."""
    if 25000 in items:
        path = os.environ["E2E_HANG_FILE"]
        try:
            fd = os.open(path + ".lock", os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            pass  # the redelivered batch: run it
        else:
            os.close(fd)
            with open(path + ".tmp", "w") as f:
                f.write(str(os.getppid()))
            os.rename(path + ".tmp", path)
            time.sleep(3600)
    return slow_double(items)
