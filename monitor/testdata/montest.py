"""Python functions the monitor's tests run."""

import threading

import slither


@slither.thread_safe
def double(batch):
    return [x * 2 for x in batch]


def noop(batch):
    return batch


_seen = set()
_lock = threading.Lock()


def flaky(batch):
    """Fails the first time it sees a batch (by its first item), then works."""
    with _lock:
        first = batch[0] not in _seen
        _seen.add(batch[0])
    if first:
        raise RuntimeError(f"flaky: first try of batch {batch[0]}")
    return batch


def check(batch):
    for x in batch:
        if x < 0:
            raise ValueError(f"negative: {x}")
    return [x * 10 for x in batch]


def price(batch):
    return [slither.view("price", sku=s) for s in batch]
