"""Python functions the dispatch tests call."""

import os
import threading
import time

_lock = threading.Lock()
_attempts = {}


def square(batch):
    return [x * x for x in batch]


def noop(batch):
    return batch


def fail_on(batch):
    """Items are ints; a negative one fails its whole batch."""
    bad = [x for x in batch if x < 0]
    if bad:
        raise ValueError(f"negative item {bad[0]}")
    return [x * 10 for x in batch]


def flaky(batch):
    """Items are [key, failures]: the batch fails until its first key has
    been tried `failures` times, then returns the keys."""
    key, failures = batch[0]
    with _lock:
        n = _attempts[key] = _attempts.get(key, 0) + 1
    if n <= failures:
        raise RuntimeError(f"flaky: attempt {n} of {key}")
    return [k for k, _ in batch]


def crash_once(batch):
    """Items are [marker_path, value]: the one call that creates the marker
    file (atomically, across processes) crashes its process."""
    path = batch[0][0]
    try:
        os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    except FileExistsError:
        return [[os.getpid(), v] for _, v in batch]
    os._exit(9)


def sleepy(batch):
    time.sleep(batch[0])
    return batch


def _busy(seconds):
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


def costly(batch):
    """A known cost: 2 ms per call plus 100 us per item. One sleep, not a
    busy loop, so that other load on the machine does not distort it."""
    time.sleep(0.002 + 0.0001 * len(batch))
    return batch


def fail_items(batch):
    """Negative items fail on their own; the rest are multiplied by 10."""
    import slither
    return [slither.failed(f"negative {x}") if x < 0 else x * 10 for x in batch]


def flaky_items(batch):
    """Items [key, failures]: each fails on its own until tried failures+1 times."""
    import slither
    out = []
    for key, failures in batch:
        with _lock:
            n = _attempts[key] = _attempts.get(key, 0) + 1
        out.append(slither.failed(f"{key}: attempt {n}") if n <= failures else key)
    return out


_events = {}


def gate(batch):
    """Items [key, role]: a "wait" item blocks until a "release" item of the
    same key has run (the thread pool shares one interpreter); any other
    role passes. Returns the items."""
    out = []
    for key, role in batch:
        with _lock:
            ev = _events.setdefault(key, threading.Event())
        if role == "release":
            ev.set()
        elif role == "wait" and not ev.wait(120):  # a safety net, not a clock the test reads
            raise TimeoutError(f"gate {key}: never released")
        out.append([key, role])
    return out


def crash_on(batch):
    """Ints: 1000 kills the worker process, a negative one raises (failing
    the batch), the rest are multiplied by 10."""
    if 1000 in batch:
        os._exit(3)
    return fail_on(batch)
