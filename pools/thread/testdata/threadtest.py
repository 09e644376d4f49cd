"""Python functions the pools/thread tests and benchmarks call."""

import sys
import threading
import time

import slither

_lock = threading.Lock()
_barriers = {}
_spins = {}
_cancelled = []
_hold = threading.Event()


def echo(batch):
    return batch


def tagged(batch):
    """[g, i] -> "g:i:square(i)" so a mixed-up result is caught."""
    return [f"{g}:{i}:{i * i}" for g, i in batch]


def context(batch):
    c = slither.context()
    return [{"worker": c.worker_id, "pool": c.pool, "session": c.session_id or "", "item": x} for x in batch]


def short(batch):
    return batch[:-1]


def fail(batch):
    raise ValueError(f"cannot handle {len(batch)} items")


def meet(batch):
    """Returns only if two calls run at once (batch = [name, timeout_s]).

    First a threading.Barrier(2). Waiting on it releases the GIL, so with the
    GIL on it passes too; the spin meeting that follows does not: each call
    busy-waits in bytecode for the other to arrive. With a long switch
    interval (the test sets one) a GIL build never hands the GIL over during
    the spin, so the meeting times out unless the threads truly run in
    parallel.
    """
    name, timeout = batch
    gil = sys._is_gil_enabled()
    with _lock:
        barrier = _barriers.setdefault(name, threading.Barrier(2))
        state = _spins.setdefault(name, [0])
    try:
        barrier.wait(timeout)
    except threading.BrokenBarrierError:
        raise RuntimeError(
            f"threading.Barrier(2) broke after {timeout}s: the two calls never waited at once "
            f"(GIL enabled: {gil})") from None
    with _lock:
        state[0] += 1
    deadline = time.monotonic() + timeout
    spins = 0
    while state[0] < 2:
        spins += 1
        if time.monotonic() > deadline:
            raise RuntimeError(
                f"spin meeting timed out after {timeout}s: the two calls never ran Python bytecode "
                f"at the same time (GIL enabled: {sys._is_gil_enabled()})")
    return [{"worker": slither.context().worker_id, "gil": gil, "spins": spins}, None]


def spin_forever(batch):
    try:
        while True:
            pass
    except slither.Cancelled:
        with _lock:
            _cancelled.append(slither.context().worker_id)
        raise


def cancelled_count(batch):
    with _lock:
        return [len(_cancelled)] * len(batch)


def hold(batch):
    """Blocks until _release() (run on the main thread by the test)."""
    if not _hold.wait(30):
        raise TimeoutError("hold was never released")
    return batch


def _release():
    _hold.set()


def _rearm():
    _hold.clear()


def noop(batch):
    return batch


def cpu(batch):
    """Pure-Python loop: each item n costs n iterations."""
    out = []
    for n in batch:
        acc = 0
        for i in range(n):
            acc += i ^ (acc & 7)
        out.append(acc)
    return out


_SHARED = [1.5]  # a mutable object made by the main thread: not immortal


def shared(batch):
    """Every result is the same list object, created by another thread: on
    a free-threaded build each new reference to it is an atomic update of
    its shared reference count, which all workers contend on."""
    return [_SHARED for _ in batch]


def fresh(batch):
    """Like shared, but each result is a new list owned by this thread."""
    return [[1.5] for _ in batch]


def bump(batch):
    """Counts calls in the session's state; returns [worker, count] per item."""
    st = slither.session()
    out = []
    for _ in batch:
        st["n"] = st.get("n", 0) + 1
        out.append([slither.context().worker_id, st["n"]])
    return out


def session_count(batch):
    from slither import _context
    return [_context._session_count()] * len(batch)
