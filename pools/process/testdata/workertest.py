"""Python functions for the worker's own tests (worker_test.go): failures
outside the user's call, threaded mode, and what crosses the pipes."""

import os
import subprocess
import sys
import threading
import time

import slither

_lock = threading.Lock()
_cancelled = []
_barriers = {}


def echo(batch):
    return batch


def big_int(batch):
    """Each item n -> 7 * 10**n (n + 1 digits)."""
    return [7 * 10 ** n for n in batch]


def digits(batch):
    """Each item (an int) -> how many decimal digits it has."""
    return [len(str(abs(x))) for x in batch]


def many_bytes(batch):
    """One result: a list of batch[0] distinct bytes objects, more than
    IOV_MAX (1,024) of them in one frame."""
    return [[i.to_bytes(4, "big") for i in range(batch[0])]]


def sized(batch):
    """batch[0] bytes."""
    return [b"x" * batch[0]]


class _NoStr(Exception):
    def __str__(self):
        raise RuntimeError("__str__ fails too")

    def __repr__(self):
        raise RuntimeError("__repr__ fails too")


class _BadNotes(list):
    def __iter__(self):
        raise RuntimeError("notes cannot be read")

    def __len__(self):
        raise RuntimeError("notes cannot be counted")


def raise_unprintable(batch):
    raise _NoStr()


def raise_unformattable(batch):
    e = ValueError("its traceback cannot be formatted")
    e.__notes__ = _BadNotes(["a note"])
    raise e


class _BadIter(list):
    def __iter__(self):
        raise KeyError("iterating the result fails")


def unencodable(batch):
    """Each item names a result that cannot go to Go."""
    out = []
    for kind in batch:
        if kind == "set":
            out.append({1, 2})
        elif kind == "object":
            out.append(object())
        elif kind == "intkey":
            out.append({"ok": {1: "x"}})
        elif kind == "surrogate":
            out.append("a\udcffb")
        elif kind == "self":
            x = []
            x.append(x)
            out.append(x)
        elif kind == "deep":
            x = []
            for _ in range(5000):
                x = [x]
            out.append(x)
        elif kind == "baditer":
            out.append(_BadIter([1]))
    return out


def host_set(batch):
    """A host call whose argument has no Go mapping."""
    return [slither.host_call("echo", {1, 2})]


def host_surrogate(batch):
    return [slither.host_call("echo", "a\udcffb")]


def view_bad(batch):
    return [slither.view("v", k=[1, {2}])]


def view_bad_name(batch):
    return [slither.view(42)]


def host(batch):
    """Each item [name, args...] -> slither.host_call(name, *args)."""
    return [slither.host_call(name, *args) for name, *args in batch]


def return_as_cancel_lands(batch):
    """A host call that cancels this call, then a return as soon as the
    worker starts delivering the cancel: the first cancel a worker delivers
    imports ctypes, so "ctypes" in sys.modules says it has begun (the module
    is listed as soon as its import starts)."""
    slither.host_call(batch[0])
    deadline = time.monotonic() + 10
    while "ctypes" not in sys.modules and time.monotonic() < deadline:
        pass
    return batch


def host_cancelled(batch):
    """A host call that Go cancels while it waits: records that Python saw
    slither.Cancelled."""
    try:
        slither.host_call(batch[0])
    except slither.Cancelled:
        with _lock:
            _cancelled.append(1)
        raise
    return batch


def cancel_delivered(batch):
    """Waits until the worker has looked up the C function a cancel is
    delivered with (ctypes caches it on first use, just before the call),
    so that a cancel begun earlier has landed by the time this returns."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        ctypes = sys.modules.get("ctypes")
        api = getattr(ctypes, "pythonapi", None)
        if api is not None and "PyThreadState_SetAsyncExc" in vars(api):
            return [True] * len(batch)
    return [False] * len(batch)


def spin_after_host(batch):
    """A host call (which cancels this call), then a spin until cancelled."""
    try:
        slither.host_call(batch[0])
        while True:
            pass
    except slither.Cancelled:
        with _lock:
            _cancelled.append(1)
        raise


def cancelled_count(batch):
    with _lock:
        return [len(_cancelled)] * len(batch)


def meet(batch):
    """Returns only once two calls run at once in this process (so both
    threads of a ThreadsPerWorker=2 worker are alive)."""
    name, timeout = batch
    with _lock:
        b = _barriers.setdefault(name, threading.Barrier(2))
    b.wait(timeout)
    return [threading.get_ident()] * len(batch)


def segfault(batch):
    import ctypes
    ctypes.string_at(0)
    return batch


def inherited_fds(batch):
    """Which of the worker's protocol fds (3, 4, 5) a child process started
    without closing fds (as os.system does) finds open."""
    script = "for fd in 3 4 5; do [ -e /proc/$$/fd/$fd ] && echo $fd; done; true"
    r = subprocess.run(["/bin/sh", "-c", script], close_fds=False, capture_output=True, text=True, check=True)
    return [[int(x) for x in r.stdout.split()]]


def int_digits_limit(batch):
    return [sys.get_int_max_str_digits() if hasattr(sys, "get_int_max_str_digits") else -1]


# -- the worker's own failures (review 1, item 4) -------------------------------

_failed_calls = []


def _worker():
    """The worker serving this process (slither.host_call is bound to it)."""
    return slither._host.__self__


def internal_error(batch):
    """Fails in the worker's own code after the call began: describe(),
    which turns this call's exception into its error record, raises twice
    (in run() and in execute()), then works again. Records the call's id
    for late_cancel."""
    w = _worker()
    g = type(w).run.__globals__  # the worker module's globals
    real = g["describe"]
    left = [2]

    def failing(exc, *args, **kwargs):
        if left[0] == 0:
            return real(exc, *args, **kwargs)
        left[0] -= 1
        if left[0] == 0:
            g["describe"] = real
        raise RuntimeError("describe() failed")

    g["describe"] = failing
    with _lock:
        _failed_calls.append(w.local.call.id)
    raise ValueError("this call fails")


def stale_calls(batch):
    """The ids of the calls the worker counts as running, other than this one."""
    w = _worker()
    me = w.local.call.id
    with w.running_lock:
        return [[cid for cid in w.running if cid != me]]


def late_cancel(batch):
    """Cancels the calls internal_error failed in, as a cancel frame that
    arrives after its call ended does (the cancel pipe's reader calls
    Worker.cancel)."""
    w = _worker()
    with _lock:
        ids = list(_failed_calls)
    for cid in ids:
        w.cancel(cid)
    return batch


def stray_between_calls(batch):
    """Has an exception (slither.Cancelled, as a stray cancel would be)
    raised in the worker's serving loop on this thread once this call has
    ended, where it takes its next message: a profile hook raises it as the
    loop calls SimpleQueue.get (threaded mode) or Worker.read (one thread),
    before either takes a message."""
    def hook(frame, event, arg):
        if ((event == "c_call" and frame.f_code.co_name == "serve" and getattr(arg, "__name__", "") == "get")
                or (event == "call" and frame.f_code.co_name == "read" and frame.f_back is not None
                    and frame.f_back.f_code.co_name == "main_inline")):
            sys.setprofile(None)
            raise slither.Cancelled()

    sys.setprofile(hook)
    return batch
