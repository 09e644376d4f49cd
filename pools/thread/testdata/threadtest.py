"""Python functions the pools/thread tests and benchmarks call."""

import sys
import threading
import time
import weakref

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


_spinning = threading.Event()


def spin_forever(batch):
    """Signals _spinning, then loops in bytecode until interrupted."""
    _spinning.set()
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


def rendezvous(batch):
    """[name, parties] -> [this worker's id] once `parties` calls wait here
    at once: run `parties` of them on a pool with that many workers and
    every worker has taken one."""
    name, parties = batch
    with _lock:
        barrier = _barriers.setdefault(name, threading.Barrier(parties))
    barrier.wait(30)
    return [slither.context().worker_id, None]


# Objects whose end the tests observe: a threading.Event per tag, set by a
# weakref.finalize callback when the object is freed.
_freed = {}


class Tracked:
    def __init__(self, tag):
        self.tag = tag


def _freed_event(tag):
    with _lock:
        return _freed.setdefault(tag, threading.Event())


def keep_tracked(batch):
    """Keeps a Tracked(tag) in the session's state and another behind a
    slither.ref, for each tag; returns the refs."""
    out = []
    for tag in batch:
        for t in (tag, tag + ":ref"):
            obj = Tracked(t)
            weakref.finalize(obj, _freed_event(t).set)
            if t == tag:
                slither.session()[t] = obj
            else:
                out.append(slither.ref(obj))
    return out


def freed(tag, timeout):
    """Whether Tracked(tag) is freed within timeout seconds (run on the
    interpreter's main thread: never on the worker that made it)."""
    return _freed_event(tag).wait(timeout)


_started = threading.Event()


def hold_then_keep(batch):
    """Signals _started, blocks until _release(), then keeps a Tracked(tag)
    in the session's state for each tag."""
    _started.set()
    if not _hold.wait(30):
        raise TimeoutError("hold was never released")
    for tag in batch:
        obj = Tracked(tag)
        weakref.finalize(obj, _freed_event(tag).set)
        slither.session()[tag] = obj
    return batch


def _rearm_started():
    _started.clear()


_counted = threading.Lock()


def bump_meet(batch):
    """[name, parties]: meets the other calls (so each runs on its own
    worker), then counts in the session's state, one call at a time, and
    keeps a Tracked(f"{name}:{worker}") there; returns [worker, count]."""
    name, parties = batch
    with _lock:
        barrier = _barriers.setdefault(name, threading.Barrier(parties))
    barrier.wait(30)
    worker = slither.context().worker_id
    with _counted:
        st = slither.session()
        st["n"] = st.get("n", 0) + 1
        obj = Tracked(f"{name}:{worker}")
        weakref.finalize(obj, _freed_event(obj.tag).set)
        st["tracked"] = obj
        return [worker, st["n"]]


def call_host(batch):
    """Each item [name, *args] -> slither.host_call(name, *args), or the
    HostError's text after "error: "."""
    out = []
    for name, *args in batch:
        try:
            out.append(slither.host_call(name, *args))
        except slither.HostError as e:
            out.append("error: " + str(e))
    return out


def start_method(batch):
    import multiprocessing
    return [multiprocessing.get_start_method()] * len(batch)


def trace_ids(batch):
    c = slither.context()
    return [[c.trace_id, c.span_id] for _ in batch]


def enter_and_hold(batch):
    """Tells the Go side (host call "entered") which OS thread runs it, then
    blocks like hold until _release()."""
    slither.host_call("entered", threading.get_native_id())
    return hold(batch)


_inside = [0, 0]  # calls of enter_count_hold running now, and the most at once


def enter_count_hold(batch):
    """enter_and_hold, counting how many such calls run at once."""
    with _lock:
        _inside[0] += 1
        _inside[1] = max(_inside[1], _inside[0])
    try:
        return enter_and_hold(batch)
    finally:
        with _lock:
            _inside[0] -= 1


def _reset_inside():
    _inside[0] = _inside[1] = 0


def host_then_context(batch):
    """Each item [name, *args] -> [slither.host_call(name, *args), this
    call's context after it returned]."""
    out = []
    for name, *args in batch:
        inner = slither.host_call(name, *args)
        c = slither.context()
        out.append([inner, {"worker": c.worker_id, "pool": c.pool, "session": c.session_id or ""}])
    return out


def freed_collecting(tag, timeout):
    """freed, collecting garbage meanwhile: in Direct mode an object made on
    one OS thread and released on another is freed when the first next runs
    Python or at the next collection."""
    import gc
    deadline = time.monotonic() + timeout
    while True:
        gc.collect()
        if _freed_event(tag).wait(0.01):
            return True
        if time.monotonic() > deadline:
            return False


_order = []


def record(batch):
    """Appends the items to _order, in the order the calls run."""
    with _lock:
        _order.extend(batch)
    return batch


# A pause in the drop of a session's state, at its first step: taking
# slither._context's lock. _gate_drops arms it for one _drop_session call,
# which sets drop_entered and waits for drop_go.
drop_entered = threading.Event()
drop_go = threading.Event()


class _GateLock:
    def __init__(self, lock):
        self.lock = lock
        self.armed = True

    def __enter__(self):
        if sys._getframe(1).f_code.co_name == "_drop_session":
            with _lock:
                armed, self.armed = self.armed, False
            if armed:
                drop_entered.set()
                if not drop_go.wait(30):
                    raise TimeoutError("the gated drop was never let go")
        return self.lock.__enter__()

    def __exit__(self, *exc):
        return self.lock.__exit__(*exc)


def _gate_drops():
    from slither import _context
    drop_entered.clear()
    drop_go.clear()
    _context._sessions_lock = _GateLock(_context._sessions_lock)


def _ungate_drops():
    from slither import _context
    drop_go.set()
    if isinstance(_context._sessions_lock, _GateLock):
        _context._sessions_lock = _context._sessions_lock.lock
