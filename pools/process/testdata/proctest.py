"""Python functions the pools/process tests and benchmarks call."""

import os
import signal
import sys
import threading
import time

import slither

_lock = threading.Lock()
_cancelled = []
_barriers = {}


def echo(batch):
    return batch


def noop(batch):
    return batch


def types(batch):
    return [type(x).__name__ for x in batch]


def pid(batch):
    c = slither.context()
    return [{"pid": os.getpid(), "worker": c.worker_id, "pool": c.pool, "session": c.session_id} for _ in batch]


def short(batch):
    return batch[:-1]


def fail(batch):
    raise ValueError(f"cannot handle {len(batch)} items")


def unmappable(batch):
    return [object() for _ in batch]


def segfault(batch):
    import ctypes
    ctypes.string_at(0)
    return batch


def sleep(batch):
    time.sleep(batch[0])
    return batch


def hang(batch):
    while True:
        time.sleep(0.01)


def spin_forever(batch):
    try:
        while True:
            pass
    except slither.Cancelled:
        with _lock:
            _cancelled.append(1)
        raise


def cancelled_count(batch):
    with _lock:
        return [len(_cancelled)] * len(batch)


def shout(batch):
    for x in batch:
        print(f"shout: {x}", file=sys.stderr, flush=True)
    return batch


def bump(batch):
    """Counts calls in the session's state; returns [pid, count] per item."""
    st = slither.session()
    out = []
    for _ in batch:
        st["n"] = st.get("n", 0) + 1
        out.append([os.getpid(), st["n"]])
    return out


def session_count(batch):
    from slither import _context
    return [_context._session_count()] * len(batch)


def no_session(batch):
    return [slither.session() for _ in batch]


def host(batch):
    """Each item [name, args...] -> slither.host_call(name, *args), or the
    HostError text prefixed with "error: "."""
    out = []
    for name, *args in batch:
        try:
            out.append(slither.host_call(name, *args))
        except slither.HostError as e:
            out.append("error: " + str(e))
    return out


def meet(batch):
    """Returns only if two calls run at once in this process: a
    threading.Barrier(2) and then a spin meeting in bytecode (see the
    thread pool's test of the same name)."""
    name, timeout = batch
    with _lock:
        b = _barriers.setdefault(name, [threading.Barrier(2), 0])
    b[0].wait(timeout)
    with _lock:
        b[1] += 1
    deadline = time.monotonic() + timeout
    while b[1] < 2:
        if time.monotonic() > deadline:
            raise RuntimeError(f"spin meeting timed out (GIL enabled: {sys._is_gil_enabled()})")
    return [os.getpid(), threading.get_ident()]


def grow(batch):
    """Allocates batch[0] MB and keeps it, to raise the worker's RSS."""
    global _ballast
    _ballast = bytearray(batch[0] << 20)
    for i in range(0, len(_ballast), 4096):
        _ballast[i] = 1
    return batch


def env(batch):
    """Each item names an environment variable; returns its value or None."""
    return [os.environ.get(k) for k in batch]


def print_long(batch):
    """Writes a line of batch[0] characters to stdout, then a short one."""
    sys.stdout.write("x" * batch[0] + "\n")
    print("after the long line", flush=True)
    return batch


def big_result(batch):
    return [b"r" * n for n in batch]


def spawn_grandchild(batch):
    """Starts `sleep 600` per item (in the worker's process group) and
    returns their pids."""
    import subprocess
    return [subprocess.Popen(["sleep", "600"]).pid for _ in batch]


def spawn_and_sleep(batch):
    """Starts a grandchild `sleep 600`, tells Go its pid through
    host_call("grandchild", pid), then sleeps."""
    import subprocess
    child = subprocess.Popen(["sleep", "600"])
    slither.host_call("grandchild", child.pid)
    time.sleep(600)
    return batch


def bump_close(batch):
    """Bumps the session's count, has Go close the session (host call
    "close_me"), then uses the session's state again."""
    st = slither.session()
    st["n"] = st.get("n", 0) + 1
    slither.host_call("close_me")
    slither.session()["after_close"] = True
    return [st["n"]] * len(batch)


def nested(batch):
    """Each item [name, args...] -> host_call(name, *args), or the
    HostError text prefixed with "error: "."""
    return host(batch)


def chaos(batch):
    """A pure function of its items, slow enough for kills to land mid-batch."""
    time.sleep(0.002 * len(batch))
    return [x * x + 7 for x in batch]


def started_then_sleep(batch):
    """Tells Go it runs (host_call("started")), then sleeps batch[0] s."""
    slither.host_call("started")
    time.sleep(batch[0])
    return batch


def crash_leaking_pipe(batch):
    """[pidfile, new_session]: starts `sleep 600` holding the worker's
    output pipe (fd 4) -- in a session of its own with new_session, out of
    the worker's process group -- writes its pid to pidfile, then crashes."""
    import subprocess
    pidfile, new_session = batch
    child = subprocess.Popen(["sleep", "600"], pass_fds=(4,), start_new_session=new_session)
    with open(pidfile, "w") as f:
        f.write(str(child.pid))
    segfault(batch)


def trace_ids(batch):
    c = slither.context()
    return [[c.trace_id, c.span_id] for _ in batch]


def enter_and_hold(batch):
    """Tells the Go side (host call "entered") which process runs it; the
    Go side's answer, which the test holds back, ends the call."""
    slither.host_call("entered", os.getpid())
    return batch
